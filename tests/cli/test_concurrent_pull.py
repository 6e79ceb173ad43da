"""Several ``adapters pull`` processes into one folder at once: one wins, the others succeed or say why.

Each process downloads into its own staging folder and renames it into place; a loser whose
rename fails finds the folder holding the same verified files (success) or gets one clear line.
Nothing half-written is left: the folder is complete and no staging folder remains.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from adapterlab.registry import register_adapter
from adapterlab.registry.files.adapter_folder import folder_files, manifest_digest

ADAPTERS = str(Path(sys.executable).with_name("adapters"))
PULLS = 4


@pytest.mark.slow
def test_concurrent_pulls_into_one_folder(
    registry_env, tiny_base, make_lora, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ADAPTERLAB_MLFLOW_MIRROR", "0")
    version = register_adapter(make_lora(), name="x", base=tiny_base)
    target = tmp_path / "pulls" / "same"
    processes = [
        subprocess.Popen(
            [ADAPTERS, "pull", "x:1", "--to", str(target)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=os.environ.copy(),
        )
        for _ in range(PULLS)
    ]
    outcomes = [(process.wait(timeout=300), *process.communicate()) for process in processes]
    assert any(code == 0 for code, _, _ in outcomes), outcomes
    for code, stdout, stderr in outcomes:
        assert "Traceback" not in stderr
        if code == 0:
            assert stdout.startswith("Pulled x:1"), stdout
        else:
            assert code == 1, stderr
            (line,) = stderr.splitlines()
            assert line.startswith("Error: ") and "pull into a new folder" in line, line
    assert manifest_digest(folder_files(target)) == version.sha256
    assert sorted(path.name for path in target.parent.iterdir()) == ["same"]  # no staging folder left


class RacingRepository:
    """An artifact store whose download lets a concurrent pull finish first (with ``winner_files``)."""

    def __init__(self, files: Path, target: Path, winner_files: Path) -> None:
        self.files, self.target, self.winner_files = files, target, winner_files

    def download_artifacts(self, _path: str, dst_path: str) -> str:
        import shutil

        shutil.copytree(
            self.winner_files, self.target, dirs_exist_ok=True
        )  # the other process got there first
        shutil.copytree(self.files, dst_path, dirs_exist_ok=True)
        return dst_path


@pytest.mark.parametrize("winner", ["same files", "other files"])
def test_losing_the_rename_race(
    winner: str, make_lora, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from adapterlab.errors import AdapterExists
    from adapterlab.registry.mlflow import artifacts

    files = make_lora(seed=1)
    winner_files = files if winner == "same files" else make_lora(seed=2)
    target = tmp_path / "pulls" / "same"
    monkeypatch.setattr(artifacts, "_repository", lambda uri: RacingRepository(files, target, winner_files))
    sha256 = manifest_digest(folder_files(files))
    if winner == "same files":
        assert artifacts.download_adapter("file:///anywhere", sha256, target) == target
    else:
        with pytest.raises(AdapterExists, match="filled by someone else during the pull"):
            artifacts.download_adapter("file:///anywhere", sha256, target)
    assert manifest_digest(folder_files(target)) == manifest_digest(folder_files(winner_files))
    assert sorted(path.name for path in target.parent.iterdir()) == ["same"]
