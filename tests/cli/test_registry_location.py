"""The registry is where you left it: found by walking up to ``.adapterlab``, never created by reading,
and named in every error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from adapterlab.cli.main import cli
from adapterlab.registry.api import forget_registries

READ_ONLY = {
    "list": ("list",),
    "show": ("show", "a"),
    "history": ("history", "a"),
    "diff": ("diff", "a:1", "a:2"),
    "bases": ("bases",),
    "pull": ("pull", "a", "--to", "{tmp}/out"),
    "predict": ("predict", "a", "--text", "hello"),
    "export": ("export", "a", "--to", "{tmp}/out"),
}


@pytest.fixture
def nowhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder with no registry configured and no ``.adapterlab`` in it or above it."""
    for name in (
        "ADAPTERLAB_HOME",
        "ADAPTERLAB_REGISTRY_URL",
        "MLFLOW_TRACKING_URI",
        "ADAPTERLAB_ARTIFACT_ROOT",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ADAPTERLAB_MLFLOW_MIRROR", "0")
    monkeypatch.setenv("ADAPTERLAB_USER", "tester")
    assert not any((folder / ".adapterlab").exists() for folder in (tmp_path, *tmp_path.parents))
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    forget_registries()


def invoke(*args: str, code: int = 0):
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == code, result.output
    return result


@pytest.mark.parametrize("command", READ_ONLY, ids=list(READ_ONLY))
def test_read_only_commands_never_create_a_registry(nowhere: Path, command: str) -> None:
    args = [word.format(tmp=nowhere) for word in READ_ONLY[command]]
    result = invoke(*args, code=1)
    assert result.stderr.splitlines() == [
        f"Error: no registry found here or above ({nowhere} has no .adapterlab folder, nor do its parents); "
        "run `adapters train` or `adapters register` to create one, or set ADAPTERLAB_HOME"
    ]
    assert list(nowhere.iterdir()) == []  # no .adapterlab, no output folder


def test_a_configured_home_without_a_registry_is_named(nowhere: Path, monkeypatch) -> None:
    monkeypatch.setenv("ADAPTERLAB_HOME", str(nowhere / "team"))
    result = invoke("list", code=1)
    assert f"Error: no registry at {nowhere / 'team' / 'registry.db'}; run `adapters train`" in result.stderr
    assert not (nowhere / "team").exists()


def test_the_registry_is_found_from_nested_folders_and_named_in_errors(
    nowhere: Path, tiny_base: Path, make_lora, monkeypatch
) -> None:
    project = nowhere / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    invoke("register", str(make_lora(seed=1)), "--name", "a", "--base", str(tiny_base))
    assert (project / ".adapterlab" / "registry.db").is_file()
    nested = project / "src" / "deep"
    nested.mkdir(parents=True)
    monkeypatch.chdir(nested)
    forget_registries()
    assert [row["name"] for row in json.loads(invoke("list", "--json").stdout)] == ["a"]
    missing = invoke("show", "b", code=1)
    database = project / ".adapterlab" / "registry.db"
    assert missing.stderr.strip().endswith(f"(registry: sqlite:///{database})")
    assert not (nested / ".adapterlab").exists()


def test_adapterlab_home_wins_over_a_found_folder(
    nowhere: Path, tiny_base: Path, make_lora, monkeypatch
) -> None:
    (nowhere / ".adapterlab").mkdir()
    monkeypatch.setenv("ADAPTERLAB_HOME", str(nowhere / "elsewhere"))
    invoke("register", str(make_lora(seed=1)), "--name", "a", "--base", str(tiny_base))
    assert (nowhere / "elsewhere" / "registry.db").is_file()
    assert list((nowhere / ".adapterlab").iterdir()) == []
