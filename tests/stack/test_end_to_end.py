"""The team topology end to end, without Docker: what ``docker compose up`` gives a team.

The registry on PostgreSQL, an ``mlflow server`` on PostgreSQL whose artifacts it proxies to a
stand-in object store; ``adapters train`` (the quickstart on the real MiniLM, fewer steps),
``adapters promote``, then checks through MLflow's REST API and its UI in a real browser, and
``adapters pull`` files that load and predict. The MLflow server killed mid-training is here too:
it shares the training run's setup.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from models import minilm_dir

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

NAME = "quickstart-complaints"
# few optimizer steps, evaluated at the end, so the quickstart takes seconds, not minutes
FAST = ("--max-steps", "6", "--eval-steps", "6", "--save-steps", "6", "--logging-steps", "2")
COMPLAINT = "My order arrived broken and nobody answers my emails, I want a refund"


def rest(server_url: str, endpoint: str, **query: str) -> dict:
    url = f"{server_url}/api/2.0/mlflow/{endpoint}?{urllib.parse.urlencode(query, doseq=True)}"
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def rest_post(server_url: str, endpoint: str, body: dict) -> dict:
    request = urllib.request.Request(
        f"{server_url}/api/2.0/mlflow/{endpoint}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def runs_of(server_url: str, experiment: str = "adapterlab") -> list[dict]:
    found = rest(server_url, "experiments/get-by-name", experiment_name=experiment)
    experiment_id = found["experiment"]["experiment_id"]
    return rest_post(server_url, "runs/search", {"experiment_ids": [experiment_id]}).get("runs", [])


def artifact_paths(server_url: str, run_id: str, path: str) -> set[str]:
    listing = rest(server_url, "artifacts/list", run_id=run_id, path=path)
    return {entry["path"] for entry in listing.get("files", [])}


def sha256_of(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in folder.rglob("*")
        if p.is_file()
    }


@pytest.fixture
def team(tmp_path: Path, password_databases, start_mlflow, adapters_cli):
    """A migrated registry database and an MLflow server, both reached with a password, as teams do."""
    server = start_mlflow(password_databases.url(password_databases.mlflow))
    env = {
        "ADAPTERLAB_HOME": str(tmp_path / "home"),
        "ADAPTERLAB_REGISTRY_URL": password_databases.url(password_databases.registry),
        "MLFLOW_TRACKING_URI": server.url,
    }
    upgraded = adapters_cli("db", "upgrade", env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    return {"server": server, "env": env, "databases": password_databases}


def test_train_promote_then_mlflow_browser_and_pull_agree(
    team, tmp_path: Path, adapters_cli, mlflow_model_page
) -> None:
    server, env = team["server"], team["env"]
    trained = adapters_cli("train", *FAST, env=env)
    assert trained.returncode == 0, trained.stderr[-3000:]
    promoted = adapters_cli("promote", NAME, "--alias", "production", env=env)
    assert promoted.returncode == 0, promoted.stderr

    # MLflow's REST API: the run finished with its metrics and the adapter as an artifact
    (run,) = runs_of(server.url)
    assert run["info"]["status"] == "FINISHED"
    metrics = {metric["key"]: metric["value"] for metric in run["data"]["metrics"]}
    assert {"eval_accuracy", "eval_loss", "train_loss"} <= set(metrics)
    run_id = run["info"]["run_id"]
    run_files = artifact_paths(server.url, run_id, "adapter")
    assert {"adapter/adapter_config.json", "adapter/adapter_model.safetensors"} <= run_files
    # ... stored through the server's proxy in the object store, not on the client
    (run_adapter,) = server.artifacts.rglob(f"{run_id}/artifacts/adapter")

    # pull: checksum-verified files, identical to the run's artifact, that load and predict
    pulled = adapters_cli("pull", f"{NAME}@production", "--to", str(tmp_path / "pulled"), env=env)
    assert pulled.returncode == 0, pulled.stderr
    assert sha256_of(run_adapter) == sha256_of(tmp_path / "pulled")
    predicted = adapters_cli("predict", f"{NAME}@production", "--text", COMPLAINT, "--json", env=env)
    assert predicted.returncode == 0, predicted.stderr
    prediction = json.loads(predicted.stdout)
    assert prediction["ref"] == f"{NAME}:1"
    label, probability = predict_from_files(tmp_path / "pulled", COMPLAINT)
    assert prediction["label"] == label and prediction["probability"] == pytest.approx(probability, abs=1e-5)
    assert label in ("complaint", "no_complaint")

    # the registry's mirror: the MLflow model version carries the alias and points back at the run
    mirror_warnings = [
        line
        for line in (trained.stderr + promoted.stderr).splitlines()
        if "not mirrored" in line or "was not updated" in line
    ]
    assert mirror_warnings == [], "the registry did not mirror into MLflow"
    version = rest(server.url, "registered-models/alias", name=NAME, alias="production")["model_version"]
    assert version["version"] == "1" and version["run_id"] == run_id
    model = rest(server.url, "registered-models/get", name=NAME)["registered_model"]
    assert model["aliases"] == [{"alias": "production", "version": "1"}]

    # the UI, in a real browser: the model's page lists version 1 with its alias
    rows = mlflow_model_page(server.url, NAME)
    assert "@ production" in rows[1], rows

    # the database password is in no output, no file (logs included) and no MLflow param or tag
    secret = team["databases"].password
    outputs = [trained, promoted, pulled, predicted]
    assert not [result.command for result in outputs if secret in result.stdout + result.stderr]
    assert not [
        str(path) for path in tmp_path.rglob("*") if path.is_file() and secret.encode() in path.read_bytes()
    ]
    assert secret not in json.dumps(run["data"])
    params = {param["key"]: param["value"] for param in run["data"]["params"]}
    assert params["name"] == NAME  # the params are there, only the secret is not


def predict_from_files(folder: Path, text: str) -> tuple[str, float]:
    """What the pulled files predict when loaded by hand: the base MiniLM + the adapter folder."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from adapterlab import PeftModel

    base = minilm_dir()
    id2label = {
        int(i): name for i, name in json.loads((folder / "labels.json").read_text())["id2label"].items()
    }
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=len(id2label))
    model = PeftModel.from_pretrained(model, folder).eval()
    inputs = AutoTokenizer.from_pretrained(base)(text, return_tensors="pt", truncation=True)
    with torch.no_grad():
        probabilities = torch.softmax(model(**inputs).logits[0], dim=-1)
    best = int(probabilities.argmax())
    return id2label[best], float(probabilities[best])


def wait_for_training_loop(server_url: str, timeout: float = 300) -> None:
    """Returns once the run has logged its inputs (params, datasets): the training loop starts next."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            runs = runs_of(server_url)
        except OSError:  # the experiment does not exist yet
            runs = []
        if runs and len(runs[0].get("inputs", {}).get("dataset_inputs", [])) == 2:  # train + eval
            return
        time.sleep(0.2)
    raise AssertionError("the training run never logged its inputs")


def test_mlflow_server_killed_mid_training(team, tmp_path: Path, adapters_cli, start_mlflow) -> None:
    """Training finishes anyway, keeps the adapter, exits non-zero and says how to register it later."""
    server, env = team["server"], team["env"]
    output = tmp_path / "run"
    command = [
        str(Path(sys.executable).with_name("adapters")),
        "train",
        "--output",
        str(output),
        # the kill comes before the first step, so a few small steps and a small eval split do
        "--max-steps",
        "3",
        "--eval-steps",
        "3",
        "--save-steps",
        "3",
        "--logging-steps",
        "1",
        "--batch-size",
        "4",
        "--max-length",
        "32",
        "--eval-split",
        "0.05",
    ]
    training = subprocess.Popen(
        command, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for_training_loop(server.url)
        server.kill()
        stdout, stderr = training.communicate(timeout=900)
    finally:
        if training.poll() is None:
            training.send_signal(signal.SIGKILL)
    assert training.returncode != 0, stdout[-2000:]
    assert (output / "adapter" / "adapter_model.safetensors").is_file(), (
        f"no adapter saved; stderr:\n{stderr[-3000:]}"
    )
    # the command may stand on its own line or be quoted in backticks inside the one-line error
    lines = re.findall(r"`?(adapters register [^`\n]+)`?", stdout + stderr)
    assert len(lines) == 1, f"expected one `adapters register ...` line in:\n{stderr[-3000:]}"
    register_line = shlex.split(lines[0])
    assert str(output / "adapter") in register_line

    # the server comes back (same database, same object store): the printed line registers the adapter
    databases = team["databases"]
    revived = start_mlflow(databases.url(databases.mlflow))
    registered = adapters_cli(*register_line[1:], env={**env, "MLFLOW_TRACKING_URI": revived.url})
    assert registered.returncode == 0, registered.stderr
    shown = adapters_cli("show", NAME, "--json", env={**env, "MLFLOW_TRACKING_URI": revived.url})
    version = json.loads(shown.stdout)
    assert version["version"] == 1 and "eval_accuracy" in version["metrics"]
