"""Shared fixtures: registries on SQLite and PostgreSQL, an MLflow store, tiny models and adapters.

Migrations run once per session (a migrated SQLite template file that each test copies; one
PostgreSQL schema that each test empties), never once per test.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from models import require_postgres, tiny_model
from safetensors.numpy import save_file

POSTGRES_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REGISTRY_TABLES = (
    "base_locations",
    "version_tags",
    "version_metrics",
    "aliases",
    "promotions",
    "adapter_versions",
    "adapters",
    "base_models",
)
TINY_BERT = {"hidden": 32, "layers": 2, "vocab": 64}


@pytest.fixture(autouse=True)
def private_fingerprint_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Each test (and its subprocesses) caches fingerprints in its own folder, never in ~/.cache."""
    path = tmp_path_factory.getbasetemp() / f"fingerprints-{uuid.uuid4().hex}"
    monkeypatch.setenv("ADAPTERLAB_FINGERPRINT_CACHE", str(path))
    return path


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from adapterlab.registry.db.migrate import upgrade

    path = tmp_path_factory.mktemp("template") / "registry.db"
    upgrade(registry_url=f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_schema_url() -> Iterator[str]:
    """One migrated schema for the whole session, dropped at its end."""
    require_postgres()
    from sqlalchemy import create_engine

    from adapterlab.registry.db.migrate import upgrade

    schema = f"adapterlab_test_{uuid.uuid4().hex[:10]}"
    server = create_engine(POSTGRES_SERVER)
    with server.begin() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = f"{POSTGRES_SERVER}?options=-csearch_path%3D{schema}"
    try:
        upgrade(registry_url=url)
        yield url
    finally:
        from adapterlab.registry.api import forget_registries

        forget_registries()
        with server.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        server.dispose()


def empty_postgres(url: str) -> None:
    from sqlalchemy import create_engine

    engine = create_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql(f"TRUNCATE {', '.join(REGISTRY_TABLES)} RESTART IDENTITY CASCADE")
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def registry_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty registry on each backend."""
    from adapterlab.registry.api import forget_registries

    if request.param == "sqlite":
        path = tmp_path / "registry.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
    else:
        url = request.getfixturevalue("postgres_schema_url")
        empty_postgres(url)
        yield url
    forget_registries()


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An initialised SQLite MLflow store (MLflow's own migrations take seconds: run them once)."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    MlflowClient(
        tracking_uri=f"sqlite:///{path}", registry_uri=f"sqlite:///{path}"
    ).search_registered_models()
    return path


@pytest.fixture
def registry_env(
    registry_url: str, tmp_path: Path, mlflow_template: Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    """Points the process (and its subprocesses) at a fresh home, registry and MLflow store."""
    home = tmp_path / "home"
    home.mkdir()
    shutil.copyfile(mlflow_template, home / "mlflow.db")
    monkeypatch.setenv("ADAPTERLAB_HOME", str(home))
    monkeypatch.setenv("ADAPTERLAB_REGISTRY_URL", registry_url)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}")
    monkeypatch.setenv("ADAPTERLAB_USER", "tester")
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")  # no network here
    monkeypatch.delenv("ADAPTERLAB_ARTIFACT_ROOT", raising=False)
    monkeypatch.delenv("ADAPTERLAB_MLFLOW_MIRROR", raising=False)
    return registry_url


def _save_tiny_bert(folder: Path, seed: int) -> Path:
    model = tiny_model(
        "FEATURE_EXTRACTION",
        head=False,
        seed=seed,
        vocab_size=TINY_BERT["vocab"],
        hidden_size=TINY_BERT["hidden"],
        num_hidden_layers=TINY_BERT["layers"],
        intermediate_size=37,
        max_position_embeddings=64,
    )
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT saved as a model folder."""
    return _save_tiny_bert(tmp_path_factory.mktemp("bases") / "tiny-bert", seed=0)


@pytest.fixture(scope="session")
def other_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Same architecture and folder name as ``tiny_base``, different weights."""
    return _save_tiny_bert(tmp_path_factory.mktemp("other") / "tiny-bert", seed=1)


def write_lora(
    folder: Path,
    *,
    seed: int = 0,
    r: int = 4,
    targets: tuple[str, ...] = ("query", "value"),
    task_type: str | None = "FEATURE_EXTRACTION",
    alpha: int = 8,
) -> Path:
    """An HF-PEFT-format LoRA adapter for the tiny BERT, written directly (no torch)."""
    rng = np.random.default_rng(seed)
    hidden = TINY_BERT["hidden"]
    tensors = {}
    for layer in range(TINY_BERT["layers"]):
        for target in targets:
            module = f"base_model.model.encoder.layer.{layer}.attention.self.{target}"
            tensors[f"{module}.lora_A.weight"] = rng.standard_normal((r, hidden)).astype(np.float32)
            tensors[f"{module}.lora_B.weight"] = rng.standard_normal((hidden, r)).astype(np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    config = {
        "peft_type": "LORA",
        "task_type": task_type,
        "r": r,
        "lora_alpha": alpha,
        "lora_dropout": 0.0,
        "target_modules": list(targets),
        "bias": "none",
        "fan_in_fan_out": False,
        "modules_to_save": None,
        "base_model_name_or_path": "tiny-bert",
        "revision": None,
        "inference_mode": True,
        "use_rslora": False,
        "use_dora": False,
        "init_lora_weights": True,
    }
    (folder / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    return folder


@pytest.fixture
def make_lora(tmp_path: Path) -> Callable[..., Path]:
    """``make_lora(seed=1, r=4, ...)`` -> a new adapter folder under the test's tmp_path."""
    counter = iter(range(10**6))

    def make(**options) -> Path:
        return write_lora(tmp_path / "adapters" / f"lora-{next(counter)}", **options)

    return make
