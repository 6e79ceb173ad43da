"""The ``README.md`` model card ``save_pretrained`` writes next to an adapter, as HF PEFT does.

The Hugging Face Hub reads the card's YAML front matter: ``library_name: peft`` marks the repo as
a PEFT adapter (so the Hub shows how to load it) and ``base_model`` links it to its base. A card
the user already wrote is kept word for word; only ``library_name`` is added to its front matter
when missing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from adapterlab.errors import CheckpointError

if TYPE_CHECKING:
    from adapterlab.peft_model import PeftModel

CARD_NAME = "README.md"
_FENCE = "---"


def _yaml_value(text: str) -> str:
    return json.dumps(text)  # a JSON string is a valid YAML scalar, quotes and newlines escaped


def add_library_name(card: str) -> str:
    """``card`` with ``library_name: peft`` in its front matter (a front matter is added if it has none)."""
    lines = card.splitlines()
    if lines and lines[0].strip() == _FENCE:
        end = next((i for i, line in enumerate(lines[1:], 1) if line.strip() == _FENCE), None)
        if end is not None:
            if any(line.startswith("library_name:") for line in lines[1:end]):
                return card
            return "\n".join([*lines[:end], "library_name: peft", *lines[end:]]) + "\n"
    return f"{_FENCE}\nlibrary_name: peft\n{_FENCE}\n{card}"


def new_card(peft_model: PeftModel) -> str:
    """A card for a folder that has none: front matter, the adapters, and how to load them."""
    configs = peft_model.peft_config
    # the Hub links the card to base_model: only a transformers base (with a config) has a Hub name
    base = getattr(getattr(peft_model.get_base_model(), "config", None), "name_or_path", None) or None
    front = [_FENCE, "library_name: peft"]
    if base:
        front.append(f"base_model: {_yaml_value(base)}")
    front += ["tags:", *(f"- {_yaml_value(str(c.peft_type).lower())}" for c in configs.values()), _FENCE]
    rows = [f"| `{name}` | {c.peft_type} | {c.task_type or '-'} |" for name, c in configs.items()]
    load_base = f"AutoModel.from_pretrained({_yaml_value(base)})" if base else "<the base model>"
    body = f"""
# Adapter{f" for {base}" if base else ""}

Parameter-efficient fine-tuning weights in Hugging Face PEFT's format (`adapter_config.json` and
`adapter_model.safetensors`), written by adapterlab. They hold only the adapter: load them on top of
the base model they were trained on.

| adapter | method | task |
|---|---|---|
{chr(10).join(rows)}

## How to use

```python
from transformers import AutoModel
from peft import PeftModel  # or: from adapterlab import PeftModel

base = {load_base}
model = PeftModel.from_pretrained(base, "<this folder or repo>")
```

The adapter named `default` is stored at the top of the folder; any other adapter in a sub-folder
of its name (`PeftModel.load_adapter(folder + "/<name>", adapter_name="<name>")`).

## Training details

Describe the data, the hyperparameters and the evaluation here: a card that says what the adapter
was trained for, on what, and how well it does helps whoever finds it next.

## Limitations

An adapter inherits the base model's biases and limits, and adds those of its training data; say
where it was evaluated and where it should not be used.
"""
    return "\n".join(front) + "\n" + body


def write_model_card(folder: Path, peft_model: PeftModel) -> None:
    """Create ``folder/README.md``, or add ``library_name: peft`` to the one there."""
    from adapterlab.checkpoint import write_atomically

    path = folder / CARD_NAME
    if path.is_symlink():
        raise CheckpointError(f"{path} is a symbolic link; refusing to write through it (remove it)")
    if path.exists():
        try:
            card = add_library_name(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            raise CheckpointError(f"{path} is not UTF-8 text; fix or remove it, then save again") from None
    else:
        card = new_card(peft_model)
    write_atomically(path, card.encode("utf-8"))
