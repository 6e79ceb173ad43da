"""What the person at the terminal sees: a progress bar while training, a summary table after."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class ProgressBar:
    """A tqdm bar over optimizer steps showing loss and throughput (tqdm adds the ETA)."""

    def __init__(self, total: int, initial: int, enabled: bool) -> None:
        from tqdm.auto import tqdm

        self._bar = tqdm(
            total=total,
            initial=initial,
            desc="training",
            unit="step",
            disable=not enabled,
            file=sys.stderr,
            dynamic_ncols=True,
        )

    def advance(self) -> None:
        self._bar.update(1)

    def show(self, loss: float, samples_per_second: float) -> None:
        self._bar.set_postfix(loss=f"{loss:.4f}", samples_s=f"{samples_per_second:.1f}", refresh=False)

    def close(self) -> None:
        self._bar.close()


class ThroughputMeter:
    """Training samples per second, counting every process's samples.

    Time spent in ``paused()`` blocks (evaluation, checkpoints) is left out: the figure is the
    speed of training itself, comparable across eval and save settings.
    """

    def __init__(self, processes: int) -> None:
        self.processes, self.samples, self.started, self.excluded = processes, 0, time.perf_counter(), 0.0

    def count(self, batch_size: int) -> None:
        self.samples += batch_size * self.processes

    @contextmanager
    def paused(self) -> Iterator[None]:
        began = time.perf_counter()
        try:
            yield
        finally:
            self.excluded += time.perf_counter() - began

    def rate(self) -> float:
        return self.samples / max(time.perf_counter() - self.started - self.excluded, 1e-9)


def summary_table(rows: list[tuple[str, Any]]) -> str:
    """Two aligned columns, e.g. ``[("adapter", "quickstart-complaints:3"), ("eval_accuracy", 0.91)]``."""
    width = max(len(name) for name, _ in rows)
    lines = []
    for name, value in rows:
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        lines.append(f"  {name.ljust(width)}  {shown}")
    rule = "  " + "-" * (width + 2 + max(len(line) - width - 4 for line in lines))
    return "\n".join([rule, *lines, rule])
