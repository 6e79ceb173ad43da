"""The CLI starts fast: importing it (and ``adapterlab.registry``) pulls in no heavy library."""

from __future__ import annotations

import json
import subprocess
import sys

from click.testing import CliRunner

import adapterlab
from adapterlab.cli.main import cli

HEAVY = ("torch", "transformers", "mlflow", "accelerate", "datasets", "safetensors")


def _modules_after(statement: str) -> set[str]:
    code = f"import sys, json; {statement}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return set(json.loads(out))


def test_importing_the_cli_and_registry_imports_no_heavy_library() -> None:
    loaded = _modules_after("import adapterlab, adapterlab.cli.main, adapterlab.registry, adapterlab.errors")
    assert not [name for name in loaded if name.split(".")[0] in HEAVY]


def test_version_and_help() -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert adapterlab.__version__ in result.output
    result = runner.invoke(cli, ["--help"])
    assert result.exit_code == 0
    assert "Example:" in result.output


def test_console_script_runs_as_a_subprocess() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "adapterlab.cli", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert adapterlab.__version__ in result.stdout


def test_unknown_public_name_is_an_attribute_error() -> None:
    try:
        adapterlab.NoSuchThing  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchThing" in str(exc)
    else:
        raise AssertionError("expected AttributeError")
