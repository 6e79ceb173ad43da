"""Data loading: every file format, the stratified split, and each bad-data case as one clear error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adapterlab.errors import InvalidConfig
from adapterlab.training.config import TrainConfig, resolve
from adapterlab.training.data import load_training_data

ROWS = [{"text": f"message number {i}", "label": "complaint" if i % 3 else "no_complaint"} for i in range(30)]


def write(path: Path, rows: list[dict]) -> Path:
    import pandas

    frame = pandas.DataFrame(rows)
    {
        ".csv": lambda: frame.to_csv(path, index=False),
        ".json": lambda: frame.to_json(path, orient="records"),
        ".jsonl": lambda: frame.to_json(path, orient="records", lines=True),
        ".parquet": lambda: frame.to_parquet(path),
    }[path.suffix]()
    return path


@pytest.mark.parametrize("suffix", [".csv", ".json", ".jsonl", ".parquet"])
def test_every_file_format_loads_and_splits_stratified(suffix: str, tmp_path: Path, train_home: Path) -> None:
    data = load_training_data(
        resolve(TrainConfig(data=str(write(tmp_path / f"d{suffix}", ROWS)), eval_split=0.3))
    )
    assert (len(data.train), len(data.eval)) == (21, 9)
    assert data.labels == ["complaint", "no_complaint"]
    assert sorted(data.eval["label"]).count("no_complaint") == 3  # 10 of 30 rows, 30% held out


def test_the_split_is_a_function_of_the_seed(tmp_path: Path, train_home: Path) -> None:
    path = str(write(tmp_path / "d.csv", ROWS))
    first, again, other = (load_training_data(resolve(TrainConfig(data=path, seed=s))) for s in (1, 1, 2))
    assert first.eval["text"] == again.eval["text"] != other.eval["text"]


def test_the_quickstart_dataset_is_balanced_and_large_enough(train_home: Path) -> None:
    data = load_training_data(resolve(TrainConfig()))
    labels = list(data.train["label"]) + list(data.eval["label"])
    assert len(labels) >= 400
    assert abs(labels.count("complaint") - labels.count("no_complaint")) <= len(labels) * 0.1
    assert len(set(data.train["text"]) & set(data.eval["text"])) == 0


def test_missing_column_lists_the_available_ones(tmp_path: Path, train_home: Path) -> None:
    path = str(write(tmp_path / "d.csv", ROWS))
    with pytest.raises(
        InvalidConfig, match=r"column 'body' \(--text-column\) not found .*available columns: text, label"
    ):
        load_training_data(resolve(TrainConfig(data=path, text_column="body")))


def test_unknown_label_in_eval_data(tmp_path: Path, train_home: Path) -> None:
    train = str(write(tmp_path / "train.csv", ROWS))
    evaluation = str(write(tmp_path / "eval.csv", [{"text": "hi", "label": "spam"}, *ROWS[:3]]))
    with pytest.raises(InvalidConfig, match="eval data has label.*spam.*never occur"):
        load_training_data(resolve(TrainConfig(data=train, eval_data=evaluation)))


def test_empty_dataset(tmp_path: Path, train_home: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    with pytest.raises(InvalidConfig, match="empty"):
        load_training_data(resolve(TrainConfig(data=str(path))))
    header_only = tmp_path / "header.csv"
    header_only.write_text("text,label\n")
    with pytest.raises(InvalidConfig, match="is empty"):
        load_training_data(resolve(TrainConfig(data=str(header_only))))


def test_missing_file_unknown_format_and_unreachable_hub_name(tmp_path: Path, train_home: Path) -> None:
    with pytest.raises(InvalidConfig, match="does not exist"):
        load_training_data(resolve(TrainConfig(data=str(tmp_path / "nope.csv"))))
    odd = tmp_path / "data.xlsx"
    odd.write_text("x")
    with pytest.raises(InvalidConfig, match="cannot read data.xlsx"):
        load_training_data(resolve(TrainConfig(data=str(odd))))
    with pytest.raises(InvalidConfig, match="cannot load dataset 'someone/no-such-dataset'"):
        load_training_data(resolve(TrainConfig(data="someone/no-such-dataset")))


def test_empty_values_and_too_few_rows(tmp_path: Path, train_home: Path) -> None:
    path = tmp_path / "holes.jsonl"
    path.write_text(
        "".join(json.dumps(row) + "\n" for row in [*ROWS[:5], {"text": None, "label": "complaint"}])
    )
    with pytest.raises(InvalidConfig, match="column 'text' .* empty in 1 row"):
        load_training_data(resolve(TrainConfig(data=str(path))))
    tiny = str(write(tmp_path / "two.csv", ROWS[1:3]))
    with pytest.raises(InvalidConfig, match="too few rows|only one class"):
        load_training_data(resolve(TrainConfig(data=tiny)))


def test_token_labels_are_checked_per_word(tmp_path: Path, train_home: Path) -> None:
    train = tmp_path / "t.jsonl"
    train.write_text("".join(json.dumps({"words": ["a", "b"], "tags": ["X", "O"]}) + "\n" for _ in range(4)))
    evaluation = tmp_path / "e.jsonl"
    evaluation.write_text(json.dumps({"words": ["a"], "tags": ["NEW"]}) + "\n")
    config = TrainConfig(
        task="token-cls", data=str(train), eval_data=str(evaluation), text_column="words", label_column="tags"
    )
    with pytest.raises(InvalidConfig, match="NEW"):
        load_training_data(resolve(config))
