"""How the registry's everyday commands scale: 100,000 versions, 1,000 adapters, 20 bases.

Seeds an embedded SQLite registry with bulk inserts, registers one real adapter through the
API (so `promote` also moves its MLflow alias), then times fresh `adapters` processes, as a
user would run them. Goal: each command under 0.5 s wall. Prints figures; asserts nothing.

    .venv/bin/python benchmarks/registry_scale.py [--versions 100000 --adapters 1000 --bases 20]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file
from sqlalchemy import insert

from adapterlab.registry.settings import sqlite_url

ADAPTERS = str(Path(sys.executable).with_name("adapters"))


def seed(url: str, versions: int, adapters: int, bases: int) -> None:
    from adapterlab.registry.db import tables
    from adapterlab.registry.db.database import open_database

    now = datetime.now(timezone.utc)
    per_adapter = versions // adapters
    database = open_database(url)
    with database.writing() as connection:
        connection.execute(
            insert(tables.base_models),
            [
                dict(
                    id=b + 1,
                    name=f"org/base-{b}",
                    fingerprint=f"{b:064x}",
                    parameter_count=10**9,
                    tensor_count=300,
                    size_bytes=4 * 10**9,
                    model_type="t5",
                    created_at=now,
                )
                for b in range(bases)
            ],
        )
        connection.execute(
            insert(tables.adapters),
            [
                dict(
                    id=a + 1,
                    name=f"adapter-{a:04d}",
                    base_model_id=a % bases + 1,
                    task_type="SEQ_CLS",
                    latest_version=per_adapter,
                    created_at=now,
                )
                for a in range(adapters)
            ],
        )
        rows = [
            dict(
                id=a * per_adapter + v + 1,
                adapter_id=a + 1,
                version=v + 1,
                peft_type="LORA",
                config_json='{"peft_type": "LORA", "r": 8}',
                artifact_uri=f"file:///nowhere/{a}/{v}",
                sha256=f"{a * per_adapter + v:064x}",
                size_bytes=10**6,
                trainable_params=10**5,
                created_by="bench",
                created_at=now,
            )
            for a in range(adapters)
            for v in range(per_adapter)
        ]
        connection.execute(insert(tables.versions), rows)
        connection.execute(
            insert(tables.metrics),
            [dict(version_id=row["id"], key="accuracy", value=(row["id"] % 1000) / 1000) for row in rows],
        )
        connection.execute(
            insert(tables.aliases),
            [
                dict(adapter_id=a + 1, alias="production", version_id=a * per_adapter + 1, updated_at=now)
                for a in range(adapters)
            ],
        )
    database.close()


def real_adapter(folder: Path, base: Path) -> None:
    from adapterlab.registry import register_adapter

    base.mkdir(parents=True)
    save_file({"w": np.ones((8, 8), dtype=np.float32)}, str(base / "model.safetensors"))
    folder.mkdir(parents=True)
    save_file(
        {
            "base_model.model.q.lora_A.weight": np.ones((2, 8), dtype=np.float32),
            "base_model.model.q.lora_B.weight": np.ones((8, 2), dtype=np.float32),
        },
        str(folder / "adapter_model.safetensors"),
    )
    (folder / "adapter_config.json").write_text(
        json.dumps({"peft_type": "LORA", "r": 2, "target_modules": ["q"]})
    )
    register_adapter(folder, name="real", base=base, base_name="org/base-0", metrics={"accuracy": 0.9})


def timed(args: list[str], runs: int) -> tuple[float, float, float, int]:
    """Wall seconds (best, median) and the child's CPU seconds (median): on a shared, loaded
    machine the CPU time is what the wall time would be with a core to itself."""
    walls, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        result = subprocess.run(args, capture_output=True, text=True)
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        if result.returncode != 0:
            raise SystemExit(f"{' '.join(args)} failed: {result.stderr.strip()}")
    return min(walls), statistics.median(walls), statistics.median(cpus), len(result.stdout)


def in_process(url: str) -> None:
    """The database work alone, without the interpreter's start and imports."""
    from adapterlab.registry import list_versions, promote, show

    for label, action in (
        ("list_versions(base='org/base-7')", lambda: list_versions(base="org/base-7", registry_url=url)),
        ("show('adapter-0421:57')", lambda: show("adapter-0421:57", url)),
        (
            "promote('adapter-0421:98', alias='staging')",
            lambda: promote("adapter-0421:98", alias="staging", registry_url=url),
        ),
    ):
        start = time.perf_counter()
        action()
        print(f"in process: {label:<52} {time.perf_counter() - start:.3f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, default=100_000)
    parser.add_argument("--adapters", type=int, default=1_000)
    parser.add_argument("--bases", type=int, default=20)
    parser.add_argument("--runs", type=int, default=5)
    options = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="adapterlab-scale-"))
    os.environ.update(ADAPTERLAB_HOME=str(home), ADAPTERLAB_USER="bench", MLFLOW_DISABLE_TELEMETRY="true")
    os.environ.pop("ADAPTERLAB_REGISTRY_URL", None)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    url = sqlite_url(home / "registry.db")  # quoted: a temp folder may hold any character
    start = time.perf_counter()
    seed(url, options.versions, options.adapters, options.bases)
    real_adapter(home / "real-adapter", home / "real-base")
    print(
        f"seeded {options.versions:,} versions / {options.adapters:,} adapters / {options.bases} bases "
        f"in {time.perf_counter() - start:.1f} s ({(home / 'registry.db').stat().st_size / 2**20:.0f} MiB)"
    )

    commands = {
        "python -c 'import adapterlab.cli.main'": [sys.executable, "-c", "import adapterlab.cli.main"],
        "adapters --version": [ADAPTERS, "--version"],
        "adapters list --base org/base-7 --json": [ADAPTERS, "list", "--base", "org/base-7", "--json"],
        "adapters list --base org/base-7 --sort accuracy --desc --limit 10 --json": [
            ADAPTERS,
            "list",
            "--base",
            "org/base-7",
            "--sort",
            "accuracy",
            "--desc",
            "--limit",
            "10",
            "--json",
        ],
        "adapters show adapter-0421:57 --json": [ADAPTERS, "show", "adapter-0421:57", "--json"],
        "adapters show adapter-0421@production --json": [
            ADAPTERS,
            "show",
            "adapter-0421@production",
            "--json",
        ],
        "adapters promote adapter-0421:99 --alias production": [
            ADAPTERS,
            "promote",
            "adapter-0421:99",
            "--alias",
            "production",
        ],
        "adapters promote real:1 --alias production (MLflow alias too)": [
            ADAPTERS,
            "promote",
            "real:1",
            "--alias",
            "production",
        ],
    }
    in_process(url)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'command':<78} {'min s':>7} {'median s':>9} {'cpu s':>7} {'stdout':>10}")
    for label, args in commands.items():
        best, median, cpu, size = timed(args, options.runs)
        flag = "" if median < 0.5 else "  (over 0.5 s)"
        print(f"{label:<78} {best:7.3f} {median:9.3f} {cpu:7.3f} {size:10,}{flag}")


if __name__ == "__main__":
    main()
