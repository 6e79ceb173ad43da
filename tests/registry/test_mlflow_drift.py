"""Aliases moved in MLflow (as its UI does, through MlflowClient) are reported as drift by ``show`` and
``history``, and ``adapters sync --from-mlflow`` adopts them with history rows.

The MLflow side is the SQLite tracking store of ``registry_env``; a port nobody listens on and a
socket that never answers stand in for a tracking server that is down.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from mlflow import MlflowClient

from adapterlab.cli.main import cli
from adapterlab.registry import promote, register_adapter

NOT_CHECKED = "MLflow not reachable, drift not checked"


def adapters(*args: str, code: int = 0) -> Result:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == code, (result.stdout, result.stderr)
    return result


def mlflow() -> MlflowClient:
    uri = os.environ["MLFLOW_TRACKING_URI"]
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


@pytest.fixture
def drifty(registry_env, tiny_base, make_lora) -> list[int]:
    """``drifty`` 1, 2, 3 mirrored, @production on 2 and @candidate on 3 in both; their MLflow numbers."""
    mirrored = [
        register_adapter(make_lora(seed=seed), name="drifty", base=tiny_base).mlflow_version
        for seed in (1, 2, 3)
    ]
    promote("drifty:2", alias="production")
    promote("drifty:3", alias="candidate")
    return mirrored


def test_no_drift_while_mlflow_follows_the_registry(drifty) -> None:
    for command in (("show", "drifty"), ("history", "drifty")):
        assert adapters(*command).stderr == ""


def test_aliases_moved_in_mlflow_are_reported_by_show_and_history(drifty) -> None:
    mlflow().set_registered_model_alias("drifty", "production", str(drifty[0]))  # moved
    mlflow().set_registered_model_alias("drifty", "staging", str(drifty[1]))  # set
    mlflow().delete_registered_model_alias("drifty", "candidate")  # removed
    for command in (("show", "drifty"), ("history", "drifty"), ("show", "drifty:1", "--json")):
        result = adapters(*command)
        lines = result.stderr.splitlines()
        assert "differ from the registry's (drift)" in lines[0], lines
        assert "  @candidate: removed in MLflow; the registry has it on drifty:3" in lines
        assert (
            f"  @production: MLflow has it on its version {drifty[0]} (drifty:1); the registry on drifty:2"
            in lines
        )
        staging = (
            f"  @staging: MLflow has it on its version {drifty[1]} (drifty:2); the registry on no version"
        )
        assert staging in lines
        assert "--from-mlflow" in lines[-1]
    json.loads(result.stdout)  # stderr carries the drift: --json stays one document
    # the registry itself was not touched by looking
    assert json.loads(adapters("show", "drifty@production", "--json").stdout)["version"] == 2


def test_sync_from_mlflow_adopts_the_moves_with_history_rows(drifty, monkeypatch) -> None:
    mlflow().set_registered_model_alias("drifty", "production", str(drifty[0]))
    mlflow().set_registered_model_alias("drifty", "staging", str(drifty[1]))
    mlflow().delete_registered_model_alias("drifty", "candidate")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")  # the MLflow account sync reads with
    monkeypatch.setenv("ADAPTERLAB_USER", "bob")

    report = json.loads(adapters("sync", "--from-mlflow", "--json").stdout)
    assert report["aliases"] == [
        "drifty@candidate removed (from MLflow)",
        "drifty@production -> 1 (from MLflow)",
        "drifty@staging -> 2 (from MLflow)",
    ]
    assert json.loads(adapters("show", "drifty@production", "--json").stdout)["version"] == 1
    assert json.loads(adapters("show", "drifty@staging", "--json").stdout)["version"] == 2
    adapters("show", "drifty@candidate", code=1)
    history = json.loads(adapters("history", "drifty", "--json").stdout)
    adopted = {row["alias"]: row for row in history[-3:]}
    assert {alias: (row["from_version"], row["to_version"]) for alias, row in adopted.items()} == {
        "candidate": (3, None),
        "production": (2, 1),
        "staging": (None, 2),
    }
    assert {row["actor"] for row in adopted.values()} == {"mlflow:alice"}
    assert all("adopted by bob" in row["reason"] for row in adopted.values())
    # in line now, both ways, and nothing changes the second time
    assert adapters("show", "drifty").stderr == ""
    assert adapters("sync", "--from-mlflow").stdout.strip() == "MLflow is up to date with the registry"
    assert adapters("sync").stdout.strip() == "MLflow is up to date with the registry"
    assert len(json.loads(adapters("history", "drifty", "--json").stdout)) == len(history)


def test_sync_puts_mlflow_back_in_line_instead(drifty) -> None:
    mlflow().set_registered_model_alias("drifty", "production", str(drifty[0]))
    adapters("sync")
    assert int(mlflow().get_model_version_by_alias("drifty", "production").version) == drifty[1]
    assert adapters("show", "drifty").stderr == ""


def test_an_mlflow_alias_on_a_version_the_registry_does_not_know_is_not_adopted(drifty) -> None:
    client = mlflow()
    foreign = client.create_model_version("drifty", source="file:///elsewhere")  # made in MLflow alone
    client.set_registered_model_alias("drifty", "production", foreign.version)
    client.set_registered_model_alias("drifty", "staging", str(drifty[0]))
    lines = adapters("show", "drifty").stderr.splitlines()
    assert (
        f"  @production: MLflow has it on its version {foreign.version} (no registry version); "
        "the registry on drifty:2" in lines
    )
    result = adapters("sync", "--from-mlflow", code=1)
    assert "1 change(s) could not be adopted (1 done)" in result.stderr
    assert f"MLflow's version {foreign.version} mirrors no registry version" in result.stderr
    assert json.loads(adapters("show", "drifty@production", "--json").stdout)["version"] == 2
    assert json.loads(adapters("show", "drifty@staging", "--json").stdout)["version"] == 1  # done stays done


def test_an_alias_that_was_never_mirrored_is_not_drift(
    registry_env, tiny_base, make_lora, monkeypatch
) -> None:
    monkeypatch.setenv("ADAPTERLAB_MLFLOW_MIRROR", "0")
    register_adapter(make_lora(seed=1), name="behind", base=tiny_base)
    promote("behind:1", alias="production")
    monkeypatch.delenv("ADAPTERLAB_MLFLOW_MIRROR")
    assert adapters("show", "behind").stderr == ""  # MLflow is behind (`adapters sync`), not moved
    monkeypatch.setenv("ADAPTERLAB_MLFLOW_MIRROR", "0")
    assert adapters("show", "behind").stderr == ""  # mirror off: nothing to compare


def _refused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A socket that accepts connections and never answers: a hung tracking server."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


@pytest.mark.parametrize("server", ["refused", "silent"])
def test_show_and_history_stay_fast_when_mlflow_is_down(
    drifty, server: str, request: pytest.FixtureRequest, monkeypatch
) -> None:
    refused = f"http://127.0.0.1:{_refused_port()}"
    url = refused if server == "refused" else request.getfixturevalue("silent_server")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    for command in (("show", "drifty", "--json"), ("history", "drifty")):
        started = time.monotonic()
        result = adapters(*command)
        assert time.monotonic() - started < 10, "the probe must bound the wait"
        assert result.stderr.startswith(NOT_CHECKED), result.stderr
    assert json.loads(adapters("show", "drifty", "--json").stdout)["aliases"] == ["candidate"]


def test_sync_from_mlflow_refuses_when_mlflow_is_down(drifty, monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{_refused_port()}")
    result = adapters("sync", "--from-mlflow", code=1)
    assert "does not answer; nothing was changed" in result.stderr
    assert json.loads(adapters("show", "drifty@production", "--json").stdout)["version"] == 2


def test_drift_check_imports_no_mlflow_for_an_sqlite_store(drifty, tmp_path: Path) -> None:
    """``show`` reads an SQLite tracking store with sqlite3: no seconds-long mlflow import."""
    import subprocess
    import sys

    mlflow().set_registered_model_alias("drifty", "production", str(drifty[0]))
    script = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from adapterlab.cli.main import cli\n"
        "result = CliRunner().invoke(cli, ['show', 'drifty'])\n"
        "assert result.exit_code == 0, result.output\n"
        "assert '@production: MLflow has it' in result.stderr, result.stderr\n"
        "print(sorted(name for name in sys.modules if name.split('.')[0] in ('mlflow', 'torch')))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
