"""Tiny models for every task (built from config classes, with MiniLM's tokenizer) and a clean home."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from models import save_tiny_model


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """task -> a tiny model folder that has a head for it (seeded, so identical every session)."""
    root = tmp_path_factory.mktemp("tiny-models")
    # one seed for the three, drawn in this order: the bases every training test was tuned on
    bert = save_tiny_model(
        root / "tiny-bert", "FEATURE_EXTRACTION", head=False, seed=0, max_position_embeddings=128
    )
    gpt2 = save_tiny_model(root / "tiny-gpt2", "CAUSAL_LM", seed=None)
    t5 = save_tiny_model(root / "tiny-t5", "SEQ_2_SEQ_LM", seed=None)
    return {"seq-cls": bert, "token-cls": bert, "causal-lm": gpt2, "seq2seq": t5}


@pytest.fixture(scope="session")
def task_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """task -> a small JSONL file with learnable structure (so a few steps lower the loss)."""
    root = tmp_path_factory.mktemp("task-data")
    colours = ["red", "green", "blue", "black", "white", "yellow"]
    rows = {
        "seq-cls": [
            {
                "text": f"the {c} box is {'heavy' if i % 2 else 'light'}",
                "label": "heavy" if i % 2 else "light",
            }
            for i, c in enumerate(colours * 4)
        ],
        "token-cls": [
            {"text": ["paris", "is", "in", c], "label": ["LOC", "O", "O", "COL"]} for c in colours * 4
        ],
        "seq2seq": [{"text": f"colour {c}", "target": c} for c in colours * 4],
        "causal-lm": [{"text": f"say {c}:", "target": c} for c in colours * 4],
    }
    files = {}
    for task, items in rows.items():
        files[task] = root / f"{task}.jsonl"
        files[task].write_text("".join(json.dumps(item) + "\n" for item in items))
    return files


@pytest.fixture
def train_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mlflow_template: Path) -> Path:
    """A fresh ADAPTERLAB_HOME with the default (embedded) registry and MLflow store in it."""
    home = tmp_path / "home"
    home.mkdir()
    shutil.copyfile(mlflow_template, home / "mlflow.db")  # MLflow's migrations take seconds: reuse them
    monkeypatch.setenv("ADAPTERLAB_HOME", str(home))
    for name in ("ADAPTERLAB_REGISTRY_URL", "MLFLOW_TRACKING_URI", "ADAPTERLAB_ARTIFACT_ROOT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("ADAPTERLAB_MLFLOW_MIRROR", "0")
    return home


@pytest.fixture
def mlflow_runs(train_home: Path):
    """A function listing every MLflow run in the home's embedded store."""

    def runs() -> list:
        from mlflow import MlflowClient

        client = MlflowClient(f"sqlite:///{train_home / 'mlflow.db'}")
        return client.search_runs([e.experiment_id for e in client.search_experiments()])

    return runs
