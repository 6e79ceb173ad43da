"""Class names travel with the adapter: ``labels.json`` beside ``adapter_config.json``.

A classification head is only useful with its label names, and ``adapter_config.json`` has no
field for them (readers drop unknown keys), so they live in their own small file:
``{"id2label": {"0": "complaint", ...}, "label2id": {"complaint": 0, ...}}`` -- the same shape as
a transformers ``config.json``, so the values can be passed straight to ``from_pretrained``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from adapterlab.errors import CheckpointError

LABELS_FILE = "labels.json"


def write_labels(folder: Path, labels: list[str]) -> None:
    content = {
        "id2label": {str(i): name for i, name in enumerate(labels)},
        "label2id": {name: i for i, name in enumerate(labels)},
    }
    (Path(folder) / LABELS_FILE).write_text(json.dumps(content, indent=2, sort_keys=True) + "\n")


def read_labels(folder: Path | str) -> dict[str, Any] | None:
    """``{"num_labels", "id2label", "label2id"}`` for ``from_pretrained``, or None without the file."""
    path = Path(folder) / LABELS_FILE
    if not path.is_file():
        return None
    try:  # the file comes with a downloaded adapter: any shape may be in it
        content = json.loads(path.read_text(encoding="utf-8"))
        id2label = {int(i): str(name) for i, name in content["id2label"].items()}
        label2id = {str(name): int(i) for name, i in content["label2id"].items()}
    except (OSError, ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
        raise CheckpointError(
            f"{path} is not a valid label file ({type(exc).__name__}); re-save the adapter"
        ) from exc
    return {"num_labels": len(id2label), "id2label": id2label, "label2id": label2id}
