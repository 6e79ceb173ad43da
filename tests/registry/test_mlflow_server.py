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
