"""``mlflow models serve -m models:/NAME@production`` answers ``POST /invocations`` as ``adapters predict``.

The whole path is real: ``adapters register`` and ``promote`` in fresh processes against an
``mlflow server`` on loopback (PostgreSQL behind it, artifacts proxied), MLflow's own CLI
resolving the alias through that server, its scoring server loading the model with
adapterlab's loader, and an HTTP request to it. Without the slow tests, the wrong-base case
still runs MLflow's scoring server through adapterlab's loader.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from stack.servers import start_model_server, wait_until_healthy

TEXT = "My parcel never arrived and nobody answers"


def invocations(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"{url}/invocations",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture
def served_classifier(mlflow_server, tiny_checkpoints, adapters_cli, tmp_path: Path) -> dict[str, str]:
    """``served-cls`` registered and promoted to production through the MLflow server."""
    env = {
        "ADAPTERLAB_HOME": str(tmp_path / "home"),
        "ADAPTERLAB_REGISTRY_URL": f"sqlite:///{tmp_path / 'registry.db'}",
        "MLFLOW_TRACKING_URI": mlflow_server.url,
    }
    name = f"served-cls-{tmp_path.name[-8:]}"
    folders = (str(tiny_checkpoints.cls_adapter), "--base", str(tiny_checkpoints.cls_base))
    registered = adapters_cli("register", *folders, "--name", name, env=env)
    assert registered.returncode == 0 and "not mirrored" not in registered.stderr, registered.stderr
    promoted = adapters_cli("promote", f"{name}:1", "--alias", "production", env=env)
    assert promoted.returncode == 0 and "behind" not in promoted.stderr, promoted.stderr
    return {"name": name, **env}


@pytest.mark.slow  # 30 s on an idle 2-core machine (the scoring server imports torch and loads the model)
def test_mlflow_models_serve_answers_invocations_like_adapters_predict(
    served_classifier, adapters_cli, tmp_path: Path
) -> None:
    env = dict(served_classifier)
    name = env.pop("name")
    server = start_model_server(f"models:/{name}@production", tmp_path / "serve.log", env)
    try:
        wait_until_healthy(server, timeout=180)
        status, answer = invocations(server.url, {"inputs": [TEXT, "thanks, all good"]})
        assert status == 200, answer
        status, split = invocations(server.url, {"dataframe_split": {"columns": ["text"], "data": [[TEXT]]}})
        assert status == 200, split
        status, refused = invocations(server.url, {"inputs": ["   "]})
    finally:
        server.stop()
    predicted = adapters_cli("predict", f"{name}@production", "--text", TEXT, "--json", env=env)
    assert predicted.returncode == 0, predicted.stderr
    expected = json.loads(predicted.stdout)
    first, second = answer["predictions"]
    assert first["label"] == expected["label"] and first["score"] == pytest.approx(
        expected["probability"], abs=1e-6
    )
    assert second["label"] in ("no_complaint", "complaint") and 0 < second["score"] <= 1
    assert split["predictions"] == [first]
    assert status >= 400 and "non-empty texts" in json.dumps(refused)


def test_a_served_model_whose_base_has_other_weights_stops_with_one_clear_line(
    served_classifier, tiny_checkpoints, tmp_path: Path
) -> None:
    env = dict(served_classifier, ADAPTERLAB_BASE=str(tiny_checkpoints.lm_base))
    name = env.pop("name")
    server = start_model_server(f"models:/{name}@production", tmp_path / "serve.log", env)
    try:
        with pytest.raises(RuntimeError, match="exited"):
            wait_until_healthy(server, timeout=180)
    finally:
        server.stop()
    lines = [line for line in server.log_tail().splitlines() if "BaseModelMismatch" in line]
    assert lines and "holds other weights" in lines[-1] and str(tiny_checkpoints.lm_base) in lines[-1]
