"""Training: fine-tune a transformers model with a PEFT method and log the run to MLflow.

``train(TrainConfig(...))`` is the library form of ``adapters train``. Names resolve lazily so
that importing this package (e.g. from the CLI) costs nothing until a run starts.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY_EXPORTS = {
    "TrainConfig": "adapterlab.training.config",
    "train": "adapterlab.training.pipeline",
    "TrainResult": "adapterlab.training.pipeline",
    "read_labels": "adapterlab.labels",
}

__all__ = list(_LAZY_EXPORTS)


def __getattr__(name: str) -> Any:
    module_name = _LAZY_EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'adapterlab.training' has no attribute {name!r}")
    return getattr(importlib.import_module(module_name), name)
