"""The training loop on accelerate: accumulation, clipping, schedule, evals, checkpoints, resume.

The loop knows nothing of MLflow or the registry: it reports through ``LoopHooks`` and returns
what happened. ``--resume`` reproduces an uninterrupted run exactly because the global RNG (which
dropout draws from) only advances inside training steps: the data order is a function of
(seed, epoch), evaluation and data-loader start-up run under a saved-and-restored RNG, and a stop
request (Ctrl-C, SIGTERM) is honoured only at an optimizer-step boundary.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapterlab.errors import InvalidConfig
from adapterlab.training.checkpointing import (
    LoopState,
    latest_checkpoint,
    load_checkpoint,
    restore_rng,
    rng_snapshot,
    save_checkpoint,
)
from adapterlab.training.config import TrainConfig
from adapterlab.training.evaluation import evaluate
from adapterlab.training.progress import ProgressBar, ThroughputMeter


class EpochShuffle:
    """A sampler whose order depends only on (seed, epoch), so a resumed run sees the same batches.

    The loop sets ``epoch``. There is deliberately no ``set_epoch``: accelerate calls that with
    its own count of loader iterations, which restarts at 0 in the loader that skips the
    batches a resumed epoch had already done.
    """

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.seed, self.epoch = size, seed, 0

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[int]:
        import torch

        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.size, generator=generator).tolist())


@dataclass
class LoopHooks:
    log_metrics: Callable[[dict[str, float], int], None]  # (metrics, step); main process only
    on_best: Callable[[Any, dict[str, float]], None]  # (unwrapped model, eval metrics); main process only
    stop_requested: Callable[[], bool]  # set by the Ctrl-C / SIGTERM handler of this process


@dataclass
class LoopParts:
    model: Any
    optimizer: Any
    scheduler: Any
    train_loader: Any
    eval_loader: Any
    sampler: EpochShuffle
    total_steps: int
    metric_for_best: str
    num_labels: int | None


@dataclass
class LoopResult:
    state: LoopState
    seconds: float
    samples_per_second: float
    interrupted: bool
    checkpoint: Path | None  # where --resume continues from (set when interrupted)


def plan_steps(config: TrainConfig, batches_per_epoch: int) -> int:
    """Total optimizer steps, from max_steps or (fractional) epochs."""
    if config.max_steps:
        return config.max_steps
    return max(1, math.ceil(config.epochs * math.ceil(batches_per_epoch / config.grad_accum)))


def run_loop(config: TrainConfig, parts: LoopParts, accelerator: Any, hooks: LoopHooks) -> LoopResult:
    checkpoints = Path(config.output) / "checkpoints"
    state = LoopState()
    if config.resume and (found := latest_checkpoint(checkpoints)) is not None:
        state = load_checkpoint(
            found,
            accelerator.unwrap_model(parts.model),
            parts.optimizer,
            parts.scheduler,
            accelerator.process_index,
        )
    parts.model.train()  # from_pretrained returns eval mode; dropout must be on from the first step
    boundary_rng = rng_snapshot()
    bar = ProgressBar(parts.total_steps, initial=state.global_step, enabled=accelerator.is_local_main_process)
    meter = ThroughputMeter(accelerator.num_processes)
    started = time.perf_counter()
    stopped = False
    while state.global_step < parts.total_steps and not stopped:
        boundary_rng, stopped = run_epoch(config, parts, accelerator, hooks, state, bar, meter, boundary_rng)
        if state.global_step < parts.total_steps and not stopped:
            state.epoch, state.batches_done = state.epoch + 1, 0
    if not stopped and state.last_eval_step != state.global_step:
        with meter.paused():
            evaluate_and_keep_best(config, parts, accelerator, hooks, state)
    saved = None
    if stopped:
        saved = save_checkpoint(
            checkpoints, parts.model, parts.optimizer, parts.scheduler, state, boundary_rng, accelerator
        )
    bar.close()
    return LoopResult(state, time.perf_counter() - started, meter.rate(), stopped, saved)


def run_epoch(
    config: TrainConfig,
    parts: LoopParts,
    accelerator: Any,
    hooks: LoopHooks,
    state: LoopState,
    bar: ProgressBar,
    meter: ThroughputMeter,
    boundary_rng: dict,
) -> tuple[dict, bool]:
    """Train from ``state.batches_done`` to the epoch's end (or the last step, or a stop request).

    Returns the RNG snapshot of the last step boundary and whether a stop was requested.
    """
    import torch

    parts.sampler.epoch = state.epoch
    batches = len(parts.train_loader)
    loader = parts.train_loader
    if state.batches_done:
        loader = accelerator.skip_first_batches(loader, state.batches_done)
    iterator = iter(loader)
    upcoming = next(iterator, None)  # starting a loader may draw from the global RNG: undo that
    restore_rng(boundary_rng)
    micro = state.batches_done
    window_loss, window_batches = torch.zeros((), device=accelerator.device), 0
    while upcoming is not None:
        batch, upcoming = upcoming, next(iterator, None)
        micro += 1
        at_boundary = micro % config.grad_accum == 0 or micro == batches
        with contextlib.nullcontext() if at_boundary else accelerator.no_sync(parts.model):
            loss = parts.model(**batch).loss
            accelerator.backward(loss / config.grad_accum)
        window_loss += loss.detach().float()
        window_batches += 1
        meter.count(batch["input_ids"].size(0))
        if not at_boundary:
            continue
        grad_norm = accelerator.clip_grad_norm_(parts.model.parameters(), config.max_grad_norm)
        parts.optimizer.step()
        parts.scheduler.step()
        parts.optimizer.zero_grad(set_to_none=True)
        state.global_step, state.batches_done = state.global_step + 1, micro
        boundary_rng = rng_snapshot()
        bar.advance()
        if state.global_step % config.logging_steps == 0:
            train_loss = accelerator.reduce(window_loss / window_batches, reduction="mean").item()
            window_loss, window_batches = torch.zeros((), device=accelerator.device), 0
            log_train_metrics(parts, accelerator, hooks, state, bar, meter, train_loss, float(grad_norm))
        with meter.paused():
            if config.eval_steps and state.global_step % config.eval_steps == 0:
                evaluate_and_keep_best(config, parts, accelerator, hooks, state)
            if config.save_steps and state.global_step % config.save_steps == 0:
                save_checkpoint(
                    Path(config.output) / "checkpoints",
                    parts.model,
                    parts.optimizer,
                    parts.scheduler,
                    state,
                    boundary_rng,
                    accelerator,
                )
        if any_process_stopping(accelerator, hooks):
            return boundary_rng, True
        if state.global_step >= parts.total_steps:
            break
    if config.eval_steps is None:
        with meter.paused():
            evaluate_and_keep_best(config, parts, accelerator, hooks, state)
    return boundary_rng, any_process_stopping(accelerator, hooks)


def log_train_metrics(
    parts: LoopParts,
    accelerator: Any,
    hooks: LoopHooks,
    state: LoopState,
    bar: ProgressBar,
    meter: ThroughputMeter,
    train_loss: float,
    grad_norm: float,
) -> None:
    metrics = {
        "train_loss": train_loss,
        "learning_rate": parts.scheduler.get_last_lr()[0],
        "grad_norm": grad_norm,
        "samples_per_second": meter.rate(),
    }
    if accelerator.is_main_process:
        hooks.log_metrics(metrics, state.global_step)
    bar.show(loss=train_loss, samples_per_second=metrics["samples_per_second"])


def any_process_stopping(accelerator: Any, hooks: LoopHooks) -> bool:
    """Every process must stop at the same step, or the next gradient all-reduce would hang."""
    if accelerator.num_processes == 1:
        return hooks.stop_requested()
    import torch

    flag = torch.tensor([1.0 if hooks.stop_requested() else 0.0], device=accelerator.device)
    return accelerator.reduce(flag, reduction="sum").item() > 0


def evaluate_and_keep_best(
    config: TrainConfig, parts: LoopParts, accelerator: Any, hooks: LoopHooks, state: LoopState
) -> dict[str, float]:
    """Evaluate (without touching the training RNG), log, and pass an improved model to ``on_best``."""
    saved_rng = rng_snapshot()
    metrics = evaluate(parts.model, parts.eval_loader, accelerator, config.task, parts.num_labels)
    restore_rng(saved_rng)
    name = parts.metric_for_best
    if name not in metrics:
        raise InvalidConfig(
            f"metric_for_best {name!r} is not computed for {config.task}; one of: {', '.join(metrics)}"
        )
    value, best = metrics[name], state.best_metric
    improved = best is None or (value < best if name.endswith("loss") else value > best)
    state.last_eval_step = state.global_step
    if improved:
        state.best_metric, state.best_step, state.best_metrics = value, state.global_step, metrics
    if accelerator.is_main_process:
        hooks.log_metrics(metrics, state.global_step)
        if improved:
            hooks.on_best(accelerator.unwrap_model(parts.model), metrics)
    accelerator.wait_for_everyone()
    return metrics
