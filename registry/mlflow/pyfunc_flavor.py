"""The loader of adapterlab's MLflow Models: ``mlflow.pyfunc.load_model("models:/NAME@production")``.

MLflow calls ``_load_pyfunc(data_path, model_config)`` with the model folder's ``adapter/``
(written by ``pyfunc_model.py``). The adapter's files are checked against the sha256 recorded
beside them, its base model is found on this machine by fingerprint (``locate_base``: the
folder or Hub id in ``model_config["base"]`` or ``$ADAPTERLAB_BASE`` when given, else the
configured registry's recorded folders, the Hugging Face cache, the Hub), and the result answers
``predict`` with one row per text: ``{"label", "score"}`` for a classifier, the generated text
for a language model.

This module is imported by MLflow in the serving process: nothing heavy at the top.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from adapterlab.errors import (
    AdapterlabError,
    AdapterNotFound,
    BaseModelMismatch,
    BaseModelNotFound,
    CheckpointError,
    ChecksumMismatch,
    InvalidConfig,
)
from adapterlab.registry import settings
from adapterlab.registry.base_locations import locate_base
from adapterlab.registry.db.database import Database
from adapterlab.registry.mlflow.pyfunc_model import IDENTITY_FILE, IDENTITY_FORMAT, MAX_NEW_TOKENS
from adapterlab.registry.records import BaseSpec

BASE_ENV = "ADAPTERLAB_BASE"  # the base's folder or Hub id on a serving host, when not in model_config
_ALTERED = "the MLflow model folder was altered: restore it from a backup or re-register the adapter"


@dataclass(frozen=True)
class Identity:
    """``adapterlab.json``: the version a model folder holds, and its base."""

    name: str
    version: int
    task_type: str | None
    sha256: str
    base: BaseSpec

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"


def _load_pyfunc(data_path: str, model_config: dict[str, Any] | None = None) -> AdapterPredictor:
    """The adapter in ``data_path`` on its (fingerprint-verified) base, ready to ``predict``."""
    from adapterlab.registry.deploy.predict import check_predictable, load_tokenizer

    adapter = Path(data_path)
    found = read_identity(adapter.parent / IDENTITY_FILE)
    check_predictable(found.ref, found.task_type)
    given = dict(model_config or {}).get("base") or os.environ.get(BASE_ENV) or None
    database = configured_registry()
    try:
        verify_adapter(adapter, found, database)
        base_folder = locate_base(found.base, given=given, database=database)
    except (BaseModelNotFound, BaseModelMismatch) as exc:
        # the CLI's advice (--base) means nothing to a serving process: say what it reads instead
        raise type(exc)(
            f"{found.ref}: {exc} (MLflow: set {BASE_ENV}=FOLDER|HUB_ID or model_config={{'base': ...}})"
        ) from exc
    finally:
        if database is not None:
            database.close()
    tokenizer = load_tokenizer(base_folder)
    if tokenizer is None:
        raise InvalidConfig(
            f"no tokenizer in the base folder {base_folder} of {found.ref}; use a base folder that "
            f"holds its tokenizer files ({BASE_ENV})"
        )
    return AdapterPredictor(found, _peft_model(found, adapter, base_folder), tokenizer)


def read_identity(path: Path) -> Identity:
    """``adapterlab.json``, checked field by field (it came from an artifact store)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        base = data["base"]
        spec = BaseSpec(**{field.name: base[field.name] for field in fields(BaseSpec)})
        found = Identity(
            name=data["name"],
            version=int(data["version"]),
            task_type=data.get("task_type"),
            sha256=data["sha256"],
            base=spec,
        )
        valid = data["format"] == IDENTITY_FORMAT and all(
            isinstance(value, str) for value in (found.name, found.sha256, spec.name, spec.fingerprint)
        )
    except (OSError, ValueError, TypeError, KeyError, RecursionError) as exc:
        raise CheckpointError(f"{path} is missing or unreadable ({exc}); {_ALTERED}") from exc
    if not valid or not isinstance(spec.hub_id, str | None):
        raise CheckpointError(f"{path} is not an adapterlab model description; {_ALTERED}")
    return found


def verify_adapter(adapter: Path, found: Identity, database: Database | None) -> None:
    """The adapter files match the sha256 beside them and, when the registry holds the version, its
    record (the source of truth, as for ``adapters pull``)."""
    from adapterlab.registry.mlflow.artifacts import verify_folder
    from adapterlab.registry.names import Ref
    from adapterlab.registry.queries import show

    verify_folder(adapter, found.sha256, str(adapter))
    if database is None:
        return
    try:
        recorded = show(database, Ref(found.name, version=found.version)).sha256
    except AdapterNotFound:
        return  # a registry that does not hold the version vouches for nothing
    if recorded != found.sha256:
        raise ChecksumMismatch(
            f"{adapter} does not hold the files the registry records for {found.ref} ({found.sha256[:12]}... "
            f"!= {recorded[:12]}...); {_ALTERED}"
        )


def configured_registry() -> Database | None:
    """The configured registry database when it exists and answers, else None (a serving host may
    have only the model folder and the base)."""
    from adapterlab.registry.db.database import open_database

    url = settings.registry_url()
    sqlite_file = settings.sqlite_file(url)
    if sqlite_file is not None and not sqlite_file.is_file():
        return None  # opening it would create an empty registry
    try:
        return open_database(url)
    except AdapterlabError:
        return None


def _peft_model(found: Identity, adapter: Path, base_folder: Path):
    from adapterlab import PeftModel
    from adapterlab.labels import read_labels
    from adapterlab.registry.loading import base_from_pretrained

    base = base_from_pretrained(base_folder, found.task_type, read_labels(adapter))
    return PeftModel.from_pretrained(base, adapter).eval()


class AdapterPredictor:
    """What ``_load_pyfunc`` returns: ``predict(texts)`` as ``adapters predict`` computes it."""

    def __init__(self, found: Identity, model: Any, tokenizer: Any) -> None:
        self.identity = found
        self.model = model
        self.tokenizer = tokenizer

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> list[Any]:
        """One row per text: ``{"label", "score"}`` (classification) or the generated text (at most
        ``params["max_new_tokens"]`` tokens)."""
        from adapterlab.registry.deploy.predict import CLASSIFICATION, classify, generate

        ref, task_type = self.identity.ref, self.identity.task_type or ""
        texts = input_texts(model_input)
        if task_type in CLASSIFICATION:
            rows = [classify(self.model, self.tokenizer, text, ref, task_type) for text in texts]
            return [{"label": row.label, "score": row.probability} for row in rows]
        max_new_tokens = int((params or {}).get("max_new_tokens") or MAX_NEW_TOKENS)
        return [
            generate(self.model, self.tokenizer, text, ref, task_type, max_new_tokens).generated_text
            for text in texts
        ]


def input_texts(model_input: Any) -> list[str]:
    """The texts of a string, a list of them, a pandas Series or one-column DataFrame, or a numpy array."""
    if isinstance(model_input, str):
        model_input = [model_input]
    elif hasattr(model_input, "columns"):  # a DataFrame: its ``text`` column, or its only one
        columns = list(model_input.columns)
        if "text" not in columns and len(columns) != 1:
            raise InvalidConfig(f"pass one column of texts (or a 'text' column), not {len(columns)} columns")
        model_input = model_input["text" if "text" in columns else columns[0]]
    if hasattr(model_input, "tolist"):  # pandas Series, numpy array (serving's ``{"inputs": [...]}``)
        model_input = model_input.tolist()
    texts = [row[0] if isinstance(row, list) and len(row) == 1 else row for row in model_input]
    if not texts or not all(isinstance(text, str) and text.strip() for text in texts):
        raise InvalidConfig("pass one or more non-empty texts (a list of strings, or a column of them)")
    return texts
