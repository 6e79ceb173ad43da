"""``infer_device``: the accelerator torch can use here, by the name torch gives its device type."""

from __future__ import annotations

import torch


def infer_device() -> str:
    """``"cuda"``, ``"xpu"``, ``"mps"`` or ``"npu"`` when one is available, else ``"cpu"`` (HF PEFT's
    helper)."""
    if torch.cuda.is_available():
        return "cuda"
    for name in ("xpu", "mps", "npu"):
        backend = getattr(torch, name, None) or getattr(torch.backends, name, None)
        if backend is not None and getattr(backend, "is_available", lambda: False)():
            return name
    return "cpu"
