"""The wheel carries every module under its ``adapterlab.*`` name, and the CI runs the README."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {
    "adapterlab": "adapterlab",
    "registry": "adapterlab/registry",
    "training": "adapterlab/training",
    "cli": "adapterlab/cli",
    "migrations": "adapterlab/migrations",
}


def test_wheel_contains_every_module_under_its_namespaced_name(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("adapterlab-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())

    expected = set()
    for folder, installed in FOLDERS.items():
        for source in (ROOT / folder).rglob("*.py"):
            if "__pycache__" in source.parts:
                continue
            expected.add(f"{installed}/{source.relative_to(ROOT / folder).as_posix()}")
    assert expected, "no sources found"
    missing = sorted(expected - names)
    assert not missing, f"modules missing from the wheel: {missing[:10]}"
    assert "adapterlab/py.typed" in names
    # no generic top-level package may be installed
    top_level = {
        name.split("/")[0] for name in names if not name.split("/")[0].endswith((".dist-info", ".data"))
    }
    assert top_level == {"adapterlab"}


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text().splitlines()
    assert readme[0].startswith("# adapterlab")
    header = next(i for i, line in enumerate(readme) if line.startswith("Set up and run the tests"))
    command = next(line.strip() for line in readme[header + 1 :] if line.startswith("    "))
    assert "pytest" in command and "ruff check" in command and "torch==2.13.0" in command
    assert command.index("torch==2.13.0") < command.index("-e '.[dev]'")
    assert "Set up and run the tests" in (ROOT / ".ci" / "run").read_text()


def test_readme_main_job_is_the_offline_quickstart_training() -> None:
    readme = (ROOT / "README.md").read_text().splitlines()
    header = next(i for i, line in enumerate(readme) if line.startswith("Set up and run the main job"))
    command = next(line.strip() for line in readme[header + 1 :] if line.startswith("    "))
    assert command.index("torch==2.13.0") < command.index("-e '.[quickstart]'")
    assert command.endswith(".venv/bin/adapters train")


def test_test_modules_have_unique_basenames() -> None:
    # pytest's default import mode puts each test folder on sys.path: two test_x.py files in
    # different folders collide at collection time (a stale __pycache__ hides this locally)
    names = [path.name for path in (ROOT / "tests").rglob("test_*.py")]
    assert len(names) == len(set(names)), sorted({name for name in names if names.count(name) > 1})
