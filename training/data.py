"""Read the training data (CSV, JSON/JSONL, Parquet, Hub datasets) and split off the eval set.

Everything here runs before any model is built, so bad data (a missing column, an empty file, an
eval label never seen in training) fails in a second with one line that says what to fix.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapterlab.errors import InvalidConfig, summarize
from adapterlab.hf_format import TaskType
from adapterlab.training.config import TrainConfig, labelled

# file suffix -> the `datasets` builder that reads it
FILE_BUILDERS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
# which config fields name the columns each task needs
TASK_COLUMNS = {
    TaskType.SEQ_CLS: ("text_column", "label_column"),
    TaskType.TOKEN_CLS: ("text_column", "label_column"),
    TaskType.SEQ_2_SEQ_LM: ("text_column", "target_column"),
    TaskType.CAUSAL_LM: ("text_column", "target_column"),
}


@dataclass(frozen=True)
class TrainingData:
    train: Any  # datasets.Dataset
    eval: Any  # datasets.Dataset
    source: str  # what was loaded (a resolved path or a Hub name), for MLflow's dataset input
    labels: list[str] | None  # class / tag names in id order; None for generation tasks


def load_training_data(config: TrainConfig) -> TrainingData:
    """Load, check and split the data named by ``config`` (``resolve``d already)."""
    table = load_table(config.data, config.data_split)
    check_columns(table, config, config.data)
    if config.eval_data:
        train, evaluation = table, load_table(config.eval_data, config.data_split)
        check_columns(evaluation, config, config.eval_data)
    else:
        train, evaluation = split_eval(table, config)
    labels = label_names(train, evaluation, config)
    if len(evaluation) == 0 or len(train) == 0:
        raise InvalidConfig(
            f"{config.data} has too few rows ({len(table)}) to hold out an eval split of "
            f"{config.eval_split}; add rows or pass --eval-data"
        )
    return TrainingData(train=train, eval=evaluation, source=describe_source(config.data), labels=labels)


def load_table(source: str, split: str) -> Any:
    """One split of a local file/folder or a Hub dataset, as a ``datasets.Dataset``."""
    import datasets

    path = Path(source).expanduser()
    try:
        if path.is_file():
            builder = FILE_BUILDERS.get(path.suffix.lower())
            if builder is None:
                raise InvalidConfig(
                    f"cannot read {path.name}: use a {', '.join(sorted(FILE_BUILDERS))} file or a Hub "
                    "dataset name"
                )
            extra = {"delimiter": "\t"} if path.suffix.lower() == ".tsv" else {}
            table = datasets.load_dataset(builder, data_files=str(path), split="train", **extra)
        elif path.is_dir():
            table = datasets.load_dataset(str(path), split=split)
        elif looks_like_path(source):
            raise InvalidConfig(f"data file {source} does not exist")
        else:
            table = datasets.load_dataset(source, split=split)
    except InvalidConfig:
        raise
    except Exception as exc:  # datasets raises many types (FileNotFound, ConnectionError, ValueError, ...)
        if "corresponds to no data" in str(exc):  # a file with a header and no rows
            raise InvalidConfig(f"dataset {source} is empty") from exc
        raise InvalidConfig(f"cannot load dataset {source!r}: {summarize(exc, limit=300)}") from exc
    if len(table) == 0:
        raise InvalidConfig(f"dataset {source} is empty")
    return table


def looks_like_path(source: str) -> bool:
    """A Hub name is ``name`` or ``org/name``; anything with a suffix or a path prefix is a file."""
    return (
        source.startswith((".", "/", "~"))
        or Path(source).suffix.lower() in FILE_BUILDERS
        or source.count("/") > 1
    )


def describe_source(source: str) -> str:
    path = Path(source).expanduser()
    return str(path.resolve()) if path.exists() else source


def check_columns(table: Any, config: TrainConfig, source: str) -> None:
    """Every column the task needs is present and has no missing values."""
    available = list(table.column_names)
    for option in TASK_COLUMNS[TaskType(config.task)]:
        column = getattr(config, option)
        if column not in available:
            flag = "--" + option.replace("_", "-")
            raise InvalidConfig(
                f"column {column!r} ({flag}) not found in {source}; available columns: {', '.join(available)}"
            )
        missing = [row for row, value in enumerate(table[column]) if value is None or value == []]
        if missing:
            raise InvalidConfig(
                f"column {column!r} of {source} is empty in {len(missing)} row(s), first row {missing[0]}"
            )


def split_eval(table: Any, config: TrainConfig) -> tuple[Any, Any]:
    """Hold out ``eval_split`` of the rows; stratified by class for sequence classification."""
    rng = random.Random(config.seed)
    if config.task == TaskType.SEQ_CLS:
        by_class: dict[str, list[int]] = {}
        for row, label in enumerate(table[config.label_column]):
            by_class.setdefault(str(label), []).append(row)
        groups = [by_class[name] for name in sorted(by_class)]
    else:
        groups = [list(range(len(table)))]
    eval_rows: list[int] = []
    for rows in groups:
        rng.shuffle(rows)
        eval_rows.extend(rows[: round(len(rows) * config.eval_split)])
    held_out = set(eval_rows)
    train_rows = [row for row in range(len(table)) if row not in held_out]
    return table.select(train_rows), table.select(sorted(eval_rows))


def label_names(train: Any, evaluation: Any, config: TrainConfig) -> list[str] | None:
    """Class (or tag) names seen in training, sorted; an eval label outside them is an error."""
    if not labelled(config.task):
        return None
    train_labels = flatten_labels(train[config.label_column], config.task)
    names = sorted(train_labels)
    if len(names) < 2 and config.task == TaskType.SEQ_CLS:
        raise InvalidConfig(f"column {config.label_column!r} has only one class ({names}); need at least two")
    unknown = sorted(flatten_labels(evaluation[config.label_column], config.task) - train_labels)
    if unknown:
        raise InvalidConfig(
            f"eval data has label(s) {', '.join(unknown)} that never occur in the training data "
            f"(known: {', '.join(names)})"
        )
    return names


def flatten_labels(values: list[Any], task: str) -> set[str]:
    if task == TaskType.TOKEN_CLS:
        return {str(tag) for row in values for tag in row}
    return {str(value) for value in values}
