"""Fingerprint speed: hashing throughput, and what the fingerprint cache saves on a real-sized base.

``--mode cache`` (the default) writes random weights of mt0-large's shape (mT5-large: d_model 1024,
d_ff 2816, 24 + 24 layers, vocab 250112, untied ``lm_head``; 4.9 GB of float32, sharded like the
Hub's ~2 GB files) once into a temporary folder, removed at the end, and prints:
- the time to fingerprint it uncached (from the page cache: the files were just written),
- the time to resolve it a second time (goal < 0.1 s), and whether both fingerprints agree,
- the time of a second registration against it (``register_adapter``, the real path: SQLite
  registry and MLflow store in a temporary ``ADAPTERLAB_HOME``) next to a registration against a
  tiny mT5 (goal: no longer), each the median of ``--runs`` registrations of new tiny LoRAs.

``--mode throughput`` compares ``fingerprint_checkpoint`` (uncached; chunks hashed on every core)
with one thread running ``hashlib.sha256`` over a ``--gib`` checkpoint read from the page cache.
Goal: >= 1.5 GiB/s and >= 1.3x the single thread. Both modes print figures and assert nothing.

    .venv/bin/python benchmarks/fingerprint.py [--mode cache] [--runs 7] [--scratch DIR]
    .venv/bin/python benchmarks/fingerprint.py --mode throughput [--gib 1.0] [--runs 3]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import statistics
import struct
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from adapterlab.registry.files.fingerprint import fingerprint_checkpoint
from adapterlab.registry.files.fingerprint_cache import RACY_SECONDS

TENSOR_BYTES = 64 * 1024 * 1024  # a mix of big tensors, like a transformer's layers
SHARD_BYTES = 2 * 10**9  # the Hub's default max_shard_size
POOL_FLOATS = 16 * 2**20
MT0_LARGE = {
    "vocab_size": 250112,
    "d_model": 1024,
    "d_ff": 2816,
    "num_layers": 24,
    "num_heads": 16,
    "d_kv": 64,
}
TINY_MT5 = {"vocab_size": 64, "d_model": 16, "d_ff": 24, "num_layers": 2, "num_heads": 2, "d_kv": 8}
LORA_RANK = 2


# --- throughput -------------------------------------------------------------------------------


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


def throughput(options: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="adapterlab-fp-", dir=options.scratch) as scratch:
        path = make_checkpoint(Path(scratch), options.gib)
        size = path.stat().st_size
        single_thread_sha256(path)  # warm the page cache
        ours = best_of(
            options.runs, lambda: fingerprint_checkpoint(path.parent, progress=False, use_cache=False)
        )
        baseline = best_of(options.runs, lambda: single_thread_sha256(path))
    gib = size / 2**30
    print(f"checkpoint: {gib:.2f} GiB, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    for label, times in (("fingerprint_checkpoint", ours), ("hashlib.sha256, 1 thread", baseline)):
        print(
            f"{label:<26} best {gib / min(times):5.2f} GiB/s   median "
            f"{gib / statistics.median(times):5.2f} GiB/s"
        )
    print(
        f"speed-up (best / best): {min(baseline) / min(ours):.2f}x   (median / median): "
        f"{statistics.median(baseline) / statistics.median(ours):.2f}x"
    )


# --- an mT5 checkpoint, written tensor by tensor ------------------------------------------------


def mt5_shapes(dims: dict[str, int]) -> dict[str, tuple[int, ...]]:
    """The tensors of an ``MT5ForConditionalGeneration`` checkpoint (tied embeddings stored once)."""
    d, ff, inner, buckets = dims["d_model"], dims["d_ff"], dims["num_heads"] * dims["d_kv"], 32
    attention = {"q": (inner, d), "k": (inner, d), "v": (inner, d), "o": (d, inner)}
    gated = {"wi_0": (ff, d), "wi_1": (ff, d), "wo": (d, ff)}
    shapes: dict[str, tuple[int, ...]] = {"shared.weight": (dims["vocab_size"], d)}
    for stack, blocks in (
        ("encoder", ("SelfAttention", "DenseReluDense")),
        ("decoder", ("SelfAttention", "EncDecAttention", "DenseReluDense")),
    ):
        for block in range(dims["num_layers"]):
            for index, kind in enumerate(blocks):
                prefix = f"{stack}.block.{block}.layer.{index}"
                for name, shape in (gated if kind == "DenseReluDense" else attention).items():
                    shapes[f"{prefix}.{kind}.{name}.weight"] = shape
                shapes[f"{prefix}.layer_norm.weight"] = (d,)
            if block == 0:
                shapes[f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"] = (
                    buckets,
                    dims["num_heads"],
                )
        shapes[f"{stack}.final_layer_norm.weight"] = (d,)
    shapes["lm_head.weight"] = (dims["vocab_size"], d)  # mt0-large does not tie it
    return shapes


def write_mt5(folder: Path, dims: dict[str, int], seed: int) -> int:
    """A model folder of random float32 weights in ~2 GB shards with an index; returns its bytes."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    shards: list[list[tuple[str, tuple[int, ...]]]] = [[]]
    filled = 0
    for name, shape in mt5_shapes(dims).items():
        size = 4 * math.prod(shape)
        if shards[-1] and filled + size > SHARD_BYTES:
            shards.append([])
            filled = 0
        shards[-1].append((name, shape))
        filled += size
    weight_map = {}
    for number, tensors in enumerate(shards, start=1):
        shard = f"model-{number:05d}-of-{len(shards):05d}.safetensors"
        write_safetensors(folder / shard, tensors, rng)
        weight_map.update(dict.fromkeys((name for name, _ in tensors), shard))
    total = sum(4 * math.prod(shape) for shape in mt5_shapes(dims).values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    config = {
        **dims,
        "model_type": "mt5",
        "architectures": ["MT5ForConditionalGeneration"],
        "num_decoder_layers": dims["num_layers"],
        "feed_forward_proj": "gated-gelu",
        "tie_word_embeddings": False,
        "is_encoder_decoder": True,
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    return total


def write_safetensors(
    path: Path, tensors: list[tuple[str, tuple[int, ...]]], rng: np.random.Generator
) -> None:
    """The safetensors layout (header length, JSON header, raw bytes), one tensor in memory at a time."""
    header, offset = {}, 0
    for name, shape in tensors:
        size = 4 * math.prod(shape)
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)  # the format aligns the data to 8 bytes
    # weights are drawn from a 64 MiB pool of normals at random offsets: as random to the hash as
    # fresh draws, without spending minutes of a shared machine's CPU on 1.2 billion of them
    pool_floats = max(1, min(POOL_FLOATS, offset // 4))
    pool = (rng.standard_normal(pool_floats, dtype=np.float32) * 0.02).tobytes()
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(encoded)) + encoded)
        for _, shape in tensors:
            remaining, start = 4 * math.prod(shape), 4 * int(rng.integers(pool_floats))
            while remaining:
                piece = pool[start : start + remaining]
                handle.write(piece)
                remaining, start = remaining - len(piece), 0


def write_lora(folder: Path, dims: dict[str, int], seed: int) -> Path:
    """A rank-2 LoRA on the q and v projections of the first block of each stack, in HF PEFT's format
    (small on either base, so that the registrations compared differ by their base only)."""
    rng = np.random.default_rng(seed)
    tensors = {}
    for name, shape in mt5_shapes(dims).items():
        if ".block.0." in name and name.endswith((".q.weight", ".v.weight")):
            module, (out_features, in_features) = "base_model.model." + name.removesuffix(".weight"), shape
            tensors[f"{module}.lora_A.weight"] = rng.standard_normal(
                (LORA_RANK, in_features), dtype=np.float32
            )
            tensors[f"{module}.lora_B.weight"] = rng.standard_normal(
                (out_features, LORA_RANK), dtype=np.float32
            )
    folder.mkdir(parents=True)
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    config = {
        "peft_type": "LORA",
        "task_type": "SEQ_2_SEQ_LM",
        "r": LORA_RANK,
        "lora_alpha": 4,
        "lora_dropout": 0.0,
        "target_modules": ["q", "v"],
        "layers_to_transform": [0],
        "layers_pattern": "block",
        "bias": "none",
        "fan_in_fan_out": False,
        "modules_to_save": None,
        "base_model_name_or_path": None,
        "revision": None,
        "inference_mode": True,
        "use_rslora": False,
        "use_dora": False,
        "init_lora_weights": True,
    }
    (folder / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    return folder


# --- the cache ----------------------------------------------------------------------------------


def timed(action: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def wall_and_cpu(action: Callable[[], object]) -> tuple[float, float]:
    """Wall seconds and this process's CPU seconds: on a loaded, shared machine the CPU time is
    what the wall time would be with a core to itself."""
    cpu = time.process_time()
    wall = timed(action)[0]
    return wall, time.process_time() - cpu


def cache(options: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="adapterlab-fp-cache-", dir=options.scratch) as scratch:
        root = Path(scratch)
        home = root / "home"
        # a private registry, MLflow store and fingerprint cache, whatever the shell points at
        os.environ.update(
            ADAPTERLAB_HOME=str(home),
            ADAPTERLAB_REGISTRY_URL=f"sqlite:///{home / 'registry.db'}",
            MLFLOW_TRACKING_URI=f"sqlite:///{home / 'mlflow.db'}",
            ADAPTERLAB_USER="bench",
            ADAPTERLAB_FINGERPRINT_CACHE=str(root / "fingerprints"),
            MLFLOW_DISABLE_TELEMETRY="true",
        )
        os.environ.pop("ADAPTERLAB_ARTIFACT_ROOT", None)
        seconds, size = timed(lambda: write_mt5(root / "mt0-large-random", MT0_LARGE, seed=0))
        print(
            f"wrote mt0-large-shaped checkpoint: {size / 1e9:.2f} GB in "
            f"{len(list((root / 'mt0-large-random').glob('*.safetensors')))} shards, {seconds:.1f} s"
        )
        write_mt5(root / "tiny-mt5", TINY_MT5, seed=1)
        # a base is older than this when it is used; a file modified within RACY_SECONDS is not cached
        time.sleep(RACY_SECONDS + 0.5)
        big = root / "mt0-large-random"
        cold, uncached = timed(lambda: fingerprint_checkpoint(big, progress=False))
        warm_runs = [timed(lambda: fingerprint_checkpoint(big, progress=False)) for _ in range(options.runs)]
        warm, cached = statistics.median(seconds for seconds, _ in warm_runs), warm_runs[-1][1]
        print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
        print(f"fingerprint, uncached (page cache): {cold:8.3f} s  ({size / 2**30 / cold:.2f} GiB/s)")
        print(
            f"fingerprint, later times (cached):  {warm:8.3f} s  (median of {options.runs}) goal < 0.1 s: "
            f"{'met' if warm < 0.1 else 'MISSED'}  ({cold / warm:,.0f}x faster)"
        )
        print(
            f"cached == uncached: {cached == uncached}  ({uncached.fingerprint[:16]}..., "
            f"{uncached.parameter_count:,} parameters)"
        )
        registrations(root, big, size, options.runs)


def registrations(root: Path, big: Path, size: int, runs: int) -> None:
    from adapterlab.registry import register_adapter

    adapters = iter(range(10**6))

    def register(base: Path, dims: dict[str, int], name: str) -> tuple[float, float]:
        number = next(adapters)
        folder = write_lora(root / "adapters" / f"lora-{number}", dims, seed=number)
        return wall_and_cpu(
            lambda: register_adapter(folder, name=name, base=base, base_name=f"bench/{base.name}")
        )

    tiny = root / "tiny-mt5"
    first_tiny = register(tiny, TINY_MT5, "on-tiny")  # creates the registry and the MLflow store
    first_big = register(big, MT0_LARGE, "on-big")  # the base row; its fingerprint is cached by now
    on_big, on_tiny = [], []
    for _ in range(runs):  # interleaved, so a busy moment on the machine hits both alike
        on_big.append(register(big, MT0_LARGE, "on-big"))
        on_tiny.append(register(tiny, TINY_MT5, "on-tiny"))
    big_lora = (root / "adapters" / "lora-1" / "adapter_model.safetensors").stat().st_size
    tiny_lora = (root / "adapters" / "lora-0" / "adapter_model.safetensors").stat().st_size
    gigabytes = f"{size / 1e9:.1f} GB"
    print(
        f"first registrations (not compared): tiny base {first_tiny[0]:.3f} s (creates the stores), "
        f"{gigabytes} base {first_big[0]:.3f} s"
    )
    print(
        f"later registrations (LoRA {big_lora / 2**10:.1f} KiB on the {gigabytes} base, "
        f"{tiny_lora / 2**10:.1f} KiB on the tiny one), median of {runs}:"
    )
    for column, label in ((0, "wall"), (1, "CPU")):
        big_median = statistics.median(times[column] for times in on_big)
        tiny_median = statistics.median(times[column] for times in on_tiny)
        print(
            f"  {label:>4}: {gigabytes} base {big_median:.3f} s {_runs(on_big, column)}, tiny base "
            f"{tiny_median:.3f} s {_runs(on_tiny, column)}, ratio {big_median / tiny_median:.2f} (goal: no "
            "longer, <= 1)"
        )


def _runs(times: list[tuple[float, float]], column: int) -> str:
    return "[" + ", ".join(f"{pair[column]:.3f}" for pair in times) + "]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("cache", "throughput"), default="cache")
    parser.add_argument("--gib", type=float, default=1.0, help="throughput: checkpoint size")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument(
        "--scratch", help="folder for the temporary checkpoint (default: the system's temp dir)"
    )
    options = parser.parse_args()
    (cache if options.mode == "cache" else throughput)(options)


if __name__ == "__main__":
    main()
