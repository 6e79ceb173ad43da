"""Training checkpoints that resume to the bit: the same final adapter as an uninterrupted run.

A checkpoint is taken only at an optimizer-step boundary and holds everything the next step
depends on: the trainable tensors, the optimizer and scheduler states, every RNG (dropout draws
from torch's), and the position in the data (epoch + micro-batches consumed; the data order of an
epoch is a pure function of seed and epoch). It is written to a temporary folder and renamed,
so a process killed mid-save never leaves a half checkpoint that ``latest_checkpoint`` would pick.

Layout: ``<output>/checkpoints/step-000050/{trainable.safetensors, optimizer.pt, scheduler.pt,
rng-<rank>.pt, state.json}``.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from adapterlab.errors import CheckpointError, summarize

KEEP_CHECKPOINTS = 2  # older ones are deleted; `best/` is kept separately


@dataclass
class LoopState:
    global_step: int = 0  # optimizer steps done
    epoch: int = 0  # current epoch (0-based)
    batches_done: int = 0  # micro-batches of `epoch` already consumed (per process)
    best_metric: float | None = None
    best_step: int | None = None
    best_metrics: dict[str, float] | None = None  # every eval metric at the best step
    last_eval_step: int | None = None


def rng_snapshot() -> dict[str, Any]:
    import numpy
    import torch

    snapshot = {"python": random.getstate(), "numpy": numpy.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        snapshot["cuda"] = torch.cuda.get_rng_state_all()
    return snapshot


def restore_rng(snapshot: dict[str, Any]) -> None:
    import numpy
    import torch

    random.setstate(snapshot["python"])
    numpy.random.set_state(snapshot["numpy"])
    torch.set_rng_state(snapshot["torch"])
    if "cuda" in snapshot and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(snapshot["cuda"])


def trainable_state(model: Any) -> dict[str, Any]:
    return {name: param.detach().cpu().contiguous() for name, param in model.named_parameters() if param.requires_grad}


def save_checkpoint(root: Path, model: Any, optimizer: Any, scheduler: Any, state: LoopState,
                    rng: dict[str, Any], accelerator: Any) -> Path:
    """Write ``step-N`` under ``root`` from every process (RNG files) and return its path."""
    import torch
    from safetensors.torch import save_file

    final = root / f"step-{state.global_step:06d}"
    staging = root / f".staging-step-{state.global_step:06d}"
    if accelerator.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    accelerator.wait_for_everyone()
    torch.save(rng, staging / f"rng-{accelerator.process_index}.pt")
    if accelerator.is_main_process:
        save_file(trainable_state(accelerator.unwrap_model(model)), str(staging / "trainable.safetensors"))
        torch.save(optimizer.state_dict(), staging / "optimizer.pt")
        torch.save(scheduler.state_dict(), staging / "scheduler.pt")
        (staging / "state.json").write_text(json.dumps(asdict(state), indent=2))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(final, ignore_errors=True)
        staging.rename(final)
        for old in sorted(root.glob("step-*"))[:-KEEP_CHECKPOINTS]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def latest_checkpoint(root: Path) -> Path | None:
    complete = sorted(path for path in root.glob("step-*") if (path / "state.json").is_file())
    return complete[-1] if complete else None


def load_checkpoint(path: Path, model: Any, optimizer: Any, scheduler: Any, process_index: int) -> LoopState:
    """Restore tensors, optimizer, scheduler and this process's RNG; return the loop position."""
    import torch
    from safetensors.torch import load_file

    # weights_only=False: these files hold numpy RNG state and were written by our own earlier run
    try:
        tensors = load_file(str(path / "trainable.safetensors"))
        params = dict(model.named_parameters())
        missing = sorted(set(trainable_state(model)) - set(tensors))
        unexpected = sorted(set(tensors) - set(params))
        if missing or unexpected:
            raise CheckpointError(
                f"checkpoint {path} does not fit this model/config (missing {missing[:3]}, unexpected {unexpected[:3]}); "
                "resume with the same options or start over without --resume"
            )
        with torch.no_grad():
            for name, tensor in tensors.items():
                params[name].copy_(tensor)
        optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=False))
        scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=False))
        rng_file = path / f"rng-{process_index}.pt"
        restore_rng(torch.load(rng_file if rng_file.exists() else path / "rng-0.pt", weights_only=False))
        return LoopState(**json.loads((path / "state.json").read_text()))
    except CheckpointError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise CheckpointError(f"cannot resume from {path}: {summarize(exc)}") from exc
