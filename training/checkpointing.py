"""Training checkpoints that resume to the bit: the same final adapter as an uninterrupted run.

A checkpoint is taken only at an optimizer-step boundary and holds everything the next step
depends on: the trainable tensors, the optimizer and scheduler states, every RNG (dropout draws
from torch's), and the position in the data (epoch + micro-batches consumed; the data order of an
epoch is a pure function of seed and epoch). It is written to a temporary folder and renamed,
so a process killed mid-save never leaves a half checkpoint that ``latest_checkpoint`` would pick.

A run folder is shared and may be handed over, so nothing in it is trusted: nothing is
unpickled. Tensors are safetensors, the RNG states and the loop position are JSON, and the
optimizer and scheduler states (nested dicts of tensors and plain values) are read with torch's
tensor-only loader (``weights_only=True``), which refuses any pickle that would build another
object or call a function.

Layout: ``<output>/checkpoints/step-000050/{trainable.safetensors, optimizer.pt, scheduler.pt,
rng-<rank>.json, state.json}``.
"""

from __future__ import annotations

import base64
import json
import pickle
import random
import shutil
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from adapterlab.errors import CheckpointError, summarize

KEEP_CHECKPOINTS = 2  # older ones are deleted; `best/` is kept separately
START_OVER = "start over without --resume"


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

    snapshot = {
        "python": random.getstate(),
        "numpy": numpy.random.get_state(),
        "torch": torch.get_rng_state(),
    }
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


def rng_to_json(snapshot: dict[str, Any]) -> dict[str, Any]:
    """An RNG snapshot as plain JSON values (torch's byte states as base64)."""
    version, internal, gauss_next = snapshot["python"]
    algorithm, keys, position, has_gauss, cached_gaussian = snapshot["numpy"]
    encoded: dict[str, Any] = {
        "python": [version, list(internal), gauss_next],
        "numpy": [
            algorithm,
            [int(key) for key in keys],
            int(position),
            int(has_gauss),
            float(cached_gaussian),
        ],
        "torch": _bytes_to_text(snapshot["torch"]),
    }
    if "cuda" in snapshot:
        encoded["cuda"] = [_bytes_to_text(state) for state in snapshot["cuda"]]
    return encoded


def rng_from_json(encoded: Any) -> dict[str, Any]:
    """The snapshot ``rng_to_json`` wrote; a value of the wrong shape raises ``ValueError``/``TypeError``."""
    import numpy

    if not isinstance(encoded, dict):
        raise ValueError("the RNG state is not a JSON object")
    version, internal, gauss_next = encoded["python"]
    algorithm, keys, position, has_gauss, cached_gaussian = encoded["numpy"]
    snapshot: dict[str, Any] = {
        "python": (
            int(version),
            tuple(int(value) for value in internal),
            None if gauss_next is None else float(gauss_next),
        ),
        "numpy": (
            str(algorithm),
            numpy.array(keys, dtype=numpy.uint32),
            int(position),
            int(has_gauss),
            float(cached_gaussian),
        ),
        "torch": _text_to_bytes(encoded["torch"]),
    }
    if "cuda" in encoded:
        snapshot["cuda"] = [_text_to_bytes(state) for state in encoded["cuda"]]
    return snapshot


def _bytes_to_text(state: Any) -> str:
    return base64.b64encode(state.cpu().numpy().tobytes()).decode("ascii")


def _text_to_bytes(text: Any) -> Any:
    import torch

    if not isinstance(text, str):
        raise TypeError("a torch RNG state must be base64 text")
    return torch.frombuffer(bytearray(base64.b64decode(text, validate=True)), dtype=torch.uint8)


def trainable_state(model: Any) -> dict[str, Any]:
    return {
        name: param.detach().cpu().contiguous()
        for name, param in model.named_parameters()
        if param.requires_grad
    }


def save_checkpoint(
    root: Path,
    model: Any,
    optimizer: Any,
    scheduler: Any,
    state: LoopState,
    rng: dict[str, Any],
    accelerator: Any,
) -> Path:
    """Write ``step-N`` under ``root`` from every process (RNG files) and return its path."""
    import torch
    from safetensors.torch import save_file

    final = root / f"step-{state.global_step:06d}"
    staging = root / f".staging-step-{state.global_step:06d}"
    if accelerator.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    accelerator.wait_for_everyone()
    (staging / f"rng-{accelerator.process_index}.json").write_text(json.dumps(rng_to_json(rng)))
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


@dataclass
class CheckpointContents:
    tensors: dict[str, Any]  # trainable parameter name -> tensor
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    rng: dict[str, Any]  # as rng_snapshot returns it
    state: LoopState


def read_checkpoint(path: Path, process_index: int = 0) -> CheckpointContents:
    """Every file of a checkpoint, read without unpickling; any fault is one ``CheckpointError``.

    Cheap (adapter-sized files), so ``train`` calls it before loading the model, and again to load.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        rng_file = path / f"rng-{process_index}.json"
        if not rng_file.exists():
            rng_file = path / "rng-0.json"
        if not rng_file.exists() and any(path.glob("rng-*.pt")):
            raise CheckpointError(
                f"checkpoint {path} was written by an older adapterlab (pickled RNG states, "
                f"which are no longer read); {START_OVER}"
            )
        return CheckpointContents(
            tensors=load_file(str(path / "trainable.safetensors")),
            optimizer=_read_plain_state(path / "optimizer.pt"),
            scheduler=_read_plain_state(path / "scheduler.pt"),
            rng=_read_rng(rng_file),
            state=_read_loop_state(path / "state.json"),
        )
    except CheckpointError:
        raise
    except (OSError, ValueError, TypeError, KeyError, RuntimeError, SafetensorError) as exc:
        # RecursionError (deeply nested JSON) is a RuntimeError; binascii.Error a ValueError
        raise CheckpointError(
            f"cannot resume from {path}: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}; "
            f"{START_OVER}"
        ) from exc


def _read_rng(file: Path) -> dict[str, Any]:
    """An RNG snapshot, tried on the live generators (then put back) so a bad one fails here, not mid-load."""
    snapshot = rng_from_json(json.loads(file.read_text()))
    current = rng_snapshot()
    try:
        restore_rng(snapshot)
    finally:
        restore_rng(current)
    return snapshot


def _read_plain_state(file: Path) -> dict[str, Any]:
    """An optimizer or scheduler state: tensors and plain values only, never code."""
    import torch

    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"refusing {file}: it is a pickle that would run code or build objects other than "
            f"tensors and plain values; {START_OVER}"
        ) from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"{file} does not hold a state dict; {START_OVER}")
    return state


def _read_loop_state(file: Path) -> LoopState:
    values = json.loads(file.read_text())
    known = {field.name for field in fields(LoopState)}
    if not isinstance(values, dict) or not set(values) <= known:
        raise CheckpointError(
            f"{file} is not a loop state (expected the keys {', '.join(sorted(known))}); {START_OVER}"
        )
    state = LoopState(**values)
    counters = (state.global_step, state.epoch, state.batches_done)
    if not all(isinstance(value, int) and not isinstance(value, bool) and value >= 0 for value in counters):
        raise CheckpointError(
            f"{file} holds a step, epoch or batch count that is not a non-negative integer; {START_OVER}"
        )
    return state


def load_checkpoint(path: Path, model: Any, optimizer: Any, scheduler: Any, process_index: int) -> LoopState:
    """Restore tensors, optimizer, scheduler and this process's RNG; return the loop position."""
    import torch

    contents = read_checkpoint(path, process_index)
    params = dict(model.named_parameters())
    missing = sorted(set(trainable_state(model)) - set(contents.tensors))
    unexpected = sorted(set(contents.tensors) - set(params))
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint {path} does not fit this model/config (missing {missing[:3]}, unexpected "
            f"{unexpected[:3]}); resume with the same options or start over without --resume"
        )
    try:
        with torch.no_grad():
            for name, tensor in contents.tensors.items():
                params[name].copy_(tensor)
        optimizer.load_state_dict(contents.optimizer)
        scheduler.load_state_dict(contents.scheduler)
        restore_rng(contents.rng)
    except (ValueError, TypeError, KeyError, IndexError, RuntimeError) as exc:
        raise CheckpointError(
            f"cannot resume from {path}: {type(exc).__name__}: {summarize(exc)}; {START_OVER}"
        ) from exc
    return contents.state
