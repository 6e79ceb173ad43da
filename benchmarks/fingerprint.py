"""Fingerprint throughput: a 1 GiB safetensors checkpoint read from the page cache.

Compares ``fingerprint_checkpoint`` (chunks hashed on every core) with one thread running
``hashlib.sha256`` over the same file. Goal: >= 1.5 GiB/s and >= 1.3x the single thread.
Prints figures; asserts nothing.

    .venv/bin/python benchmarks/fingerprint.py [--gib 1.0] [--runs 3]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from adapterlab.registry.files.fingerprint import fingerprint_checkpoint

TENSOR_BYTES = 64 * 1024 * 1024  # a mix of big tensors, like a transformer's layers


def make_checkpoint(folder: Path, gib: float) -> Path:
    rng = np.random.default_rng(0)
    count = max(1, int(gib * 2**30) // TENSOR_BYTES)
    block = rng.integers(0, 2**31, size=TENSOR_BYTES // 4, dtype=np.int32).view(np.float32)
    tensors = {f"layers.{i}.weight": np.roll(block, i) for i in range(count)}
    tensors["embed.weight"] = rng.standard_normal((1000, 64)).astype(np.float32)
    save_file(tensors, str(folder / "model.safetensors"))
    return folder / "model.safetensors"


def single_thread_sha256(path: Path) -> None:
    with open(path, "rb") as handle:
        hashlib.file_digest(handle, "sha256")


def best_of(runs: int, action) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=3)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="adapterlab-fp-") as scratch:
        path = make_checkpoint(Path(scratch), options.gib)
        size = path.stat().st_size
        single_thread_sha256(path)  # warm the page cache
        ours = best_of(options.runs, lambda: fingerprint_checkpoint(path.parent, progress=False))
        baseline = best_of(options.runs, lambda: single_thread_sha256(path))
    gib = size / 2**30
    print(f"checkpoint: {gib:.2f} GiB, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    for label, times in (("fingerprint_checkpoint", ours), ("hashlib.sha256, 1 thread", baseline)):
        print(f"{label:<26} best {gib / min(times):5.2f} GiB/s   median {gib / statistics.median(times):5.2f} GiB/s")
    print(f"speed-up (best / best): {min(baseline) / min(ours):.2f}x   (median / median): "
          f"{statistics.median(baseline) / statistics.median(ours):.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
