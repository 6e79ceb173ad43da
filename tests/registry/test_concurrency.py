"""8 processes x 25 registrations of one adapter name: versions exactly 1..200, all verified."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from adapterlab.registry import list_versions, pull

PROCESSES, CALLS = 8, 25
WORKER = """
import json, sys
from adapterlab.registry import register_adapter
base, folders = sys.argv[1], json.loads(sys.argv[2])
print(json.dumps([register_adapter(f, name="busy", base=base).version for f in folders]))
"""


@pytest.mark.slow
def test_concurrent_registrations_get_every_version_once(
    registry_env, tiny_base, make_lora, tmp_path: Path
) -> None:
    folders = [str(make_lora(seed=seed, r=1)) for seed in range(PROCESSES * CALLS)]
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(tiny_base), json.dumps(folders[i * CALLS : (i + 1) * CALLS])],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(PROCESSES)
    ]
    returned = []
    for worker in workers:
        out, err = worker.communicate(timeout=600)
        assert worker.returncode == 0, err
        assert "Error" not in err and "Warning" not in err, err
        returned += json.loads(out)
    assert sorted(returned) == list(range(1, PROCESSES * CALLS + 1))
    stored = list_versions()
    assert sorted(row.version for row in stored) == list(range(1, PROCESSES * CALLS + 1))
    for row in stored:
        version = pull(f"busy:{row.version}", tmp_path / "pulled" / str(row.version))
        assert version.mlflow_version is not None
