"""Training: fine-tune a transformers model with a PEFT method and log the run to MLflow.

``train(TrainConfig(...))`` is the library form of ``adapters train``. Names resolve lazily so
that importing this package (e.g. from the CLI) costs nothing until a run starts.
"""

from __future__ import annotations

from adapterlab.lazy import lazy_exports

_LAZY_EXPORTS = {
    "TrainConfig": "adapterlab.training.config",
    "train": "adapterlab.training.pipeline",
    "TrainResult": "adapterlab.training.pipeline",
    "read_labels": "adapterlab.labels",
}

__all__ = list(_LAZY_EXPORTS)

__getattr__, __dir__ = lazy_exports("adapterlab.training", _LAZY_EXPORTS, globals())
