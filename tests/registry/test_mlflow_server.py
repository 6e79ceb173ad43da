"""Against a real ``mlflow server`` that proxies artifacts: files, model versions, aliases."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient

from adapterlab.registry import promote, pull, register_adapter

MLFLOW = Path(sys.executable).with_name("mlflow")


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("mlflow-server")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [
            str(MLFLOW),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{folder / 'mlflow.db'}",
            "--artifacts-destination",
            str(folder / "store"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("mlflow server did not start") from None
                time.sleep(1)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


@pytest.mark.slow
def test_registry_through_an_mlflow_server(
    registry_env, mlflow_server, tiny_base, make_lora, monkeypatch, tmp_path
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    name = f"served-{uuid.uuid4().hex[:8]}"  # the server outlives each registry
    version = register_adapter(make_lora(seed=1), name=name, base=tiny_base)
    assert version.artifact_uri.startswith("mlflow-artifacts:/") and version.mlflow_version == 1
    promote(f"{name}:1", alias="production")
    client = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    mirrored = client.get_model_version_by_alias(name, "production")
    assert mirrored.run_id == version.mlflow_run_id and mirrored.tags["sha256"] == version.sha256
    pull(f"{name}@production", tmp_path / "pulled")
    assert (tmp_path / "pulled" / "adapter_model.safetensors").is_file()


@pytest.mark.slow
def test_an_alias_moved_on_the_server_is_drift_until_adopted(
    registry_env, mlflow_server, tiny_base, make_lora, monkeypatch
) -> None:
    """Drift read over the REST API (no mlflow import), adopted with the MLflow account as the actor."""
    import json

    from click.testing import CliRunner

    from adapterlab.cli.main import cli

    def adapters(*args: str) -> tuple[str, str]:
        result = CliRunner().invoke(cli, list(args))
        assert result.exit_code == 0, (result.stdout, result.stderr)
        return result.stdout, result.stderr

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    name = f"drift-{uuid.uuid4().hex[:8]}"
    mirrored = [
        register_adapter(make_lora(seed=seed), name=name, base=tiny_base).mlflow_version for seed in (1, 2)
    ]
    promote(f"{name}:2", alias="production")
    assert adapters("history", name)[1] == ""
    MlflowClient(tracking_uri=mlflow_server).set_registered_model_alias(name, "production", str(mirrored[0]))
    warning = adapters("show", name)[1]
    assert (
        f"@production: MLflow has it on its version {mirrored[0]} ({name}:1); the registry on {name}:2"
        in (warning)
    )
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "carol")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "unused-without-the-auth-app")
    adapters("sync", "--from-mlflow")
    last = json.loads(adapters("history", name, "--json")[0])[-1]
    assert (last["alias"], last["from_version"], last["to_version"], last["actor"]) == (
        "production",
        2,
        1,
        "mlflow:carol",
    )
    assert adapters("show", f"{name}@production")[1] == ""
