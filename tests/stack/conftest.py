"""Fixtures of the team-stack tests: real PostgreSQL, ``mlflow server``, headless Chromium, tiny checkpoints.

What they start lives in ``servers.py`` (databases, MLflow servers, the ``adapters`` process) and
``browser.py`` (Chromium, MLflow's rendered tables); the tiny models in ``tests/models.py``.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from models import require_postgres, save_lora_adapter, save_tiny_model
from stack import browser
from stack.servers import (
    CommandResult,
    Database,
    MlflowServer,
    PasswordDatabases,
    PrivateCluster,
    create_database,
    drop_database,
    postgres_execute,
    run_adapters,
    start_mlflow_server,
    start_private_cluster,
    stop_private_cluster,
)

LABELS = ("no_complaint", "complaint")


@pytest.fixture
def postgres_database() -> Iterator[Callable[[], Database]]:
    """Creates fresh, uniquely named databases on demand; drops them afterwards."""
    require_postgres()
    created: list[Database] = []

    def create() -> Database:
        created.append(create_database())
        return created[-1]

    yield create
    for database in created:
        drop_database(database.name)


@pytest.fixture
def start_mlflow(
    tmp_path: Path, postgres_database: Callable[[], Database]
) -> Iterator[Callable[[str], MlflowServer]]:
    """``start_mlflow(backend_uri)`` -> a running server, stopped after the test.

    It depends on ``postgres_database`` so that servers stop before their databases are dropped.
    """
    started: list[MlflowServer] = []

    def start(backend_uri: str) -> MlflowServer:
        started.append(start_mlflow_server(tmp_path / f"mlflow-{len(started)}", backend_uri))
        return started[-1]

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """A real MLflow tracking server on PostgreSQL with proxied artifacts, shared by a module's tests."""
    require_postgres()
    database = create_database()
    try:
        server = start_mlflow_server(tmp_path_factory.mktemp("mlflow"), database.url)
        yield server
        server.stop()
    finally:
        drop_database(database.name)


@pytest.fixture
def chromium(tmp_path: Path) -> Callable[..., str]:
    """Renders a page in headless Chromium; returns its DOM after the JS app has run."""
    binary = shutil.which("chromium")
    if binary is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")

    def render(url: str, *, screenshot: Path | None = None, budget_ms: int = 20000) -> str:
        profile = tmp_path / f"chromium-profile-{uuid.uuid4().hex[:8]}"
        return browser.render(binary, url, profile, screenshot=screenshot, budget_ms=budget_ms)

    return render


@pytest.fixture
def mlflow_model_page(chromium: Callable[..., str], tmp_path: Path) -> Callable[[str, str], dict[int, str]]:
    """Opens MLflow's page of a registered model in Chromium (screenshot kept in tmp_path): its rows."""

    def open_page(server_url: str, model: str) -> dict[int, str]:
        shot = tmp_path / f"mlflow-model-{model}.png"
        dom = chromium(f"{server_url}/#/models/{model}", screenshot=shot)
        assert shot.stat().st_size > 10_000, "the screenshot is (nearly) empty"
        return browser.version_rows(dom)

    return open_page


@dataclass(frozen=True)
class TinyCheckpoints:
    cls_base: Path  # BERT sequence classifier (2 classes, no label names)
    cls_adapter: Path  # LoRA SEQ_CLS adapter on it, with labels.json (LABELS) as training writes it
    lm_base: Path  # GPT-2 causal LM
    lm_adapter: Path  # LoRA CAUSAL_LM adapter on it
    seq2seq_base: Path  # T5
    seq2seq_adapter: Path  # LoRA SEQ_2_SEQ_LM adapter on it


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> TinyCheckpoints:
    from adapterlab.labels import write_labels

    root = tmp_path_factory.mktemp("stack-models")
    # no label names on the classifier, like MiniLM: they travel in the adapter's labels.json
    cls_base = save_tiny_model(root / "tiny-bert-cls", "SEQ_CLS")
    cls_adapter = save_lora_adapter(cls_base, root / "cls-adapter", "SEQ_CLS")
    write_labels(cls_adapter, list(LABELS))
    lm_base = save_tiny_model(root / "tiny-gpt2", "CAUSAL_LM")
    lm_adapter = save_lora_adapter(lm_base, root / "lm-adapter", "CAUSAL_LM")
    seq2seq_base = save_tiny_model(root / "tiny-t5", "SEQ_2_SEQ_LM")
    seq2seq_adapter = save_lora_adapter(seq2seq_base, root / "seq2seq-adapter", "SEQ_2_SEQ_LM")
    return TinyCheckpoints(cls_base, cls_adapter, lm_base, lm_adapter, seq2seq_base, seq2seq_adapter)


@pytest.fixture
def password_databases(postgres_database: Callable[[], Database]) -> Iterator[PasswordDatabases]:
    token = uuid.uuid4().hex[:10]
    role, password = f"adapterlab_pw_{token}", f"sekrit-pw-{token}"
    postgres_execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    databases = PasswordDatabases(role, password, postgres_database().name, postgres_database().name)
    try:
        for name in (databases.registry, databases.mlflow):
            postgres_execute(f'ALTER DATABASE "{name}" OWNER TO {role}')
        yield databases
    finally:
        for name in (databases.registry, databases.mlflow):  # before the role that owns them
            postgres_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        postgres_execute(f"DROP ROLE IF EXISTS {role}")


@pytest.fixture
def adapters_cli() -> Callable[..., CommandResult]:
    """Runs ``adapters ARGS`` in a fresh process (as a user would), with extra environment."""
    return run_adapters


@pytest.fixture
def private_postgres() -> Iterator[PrivateCluster]:
    cluster = start_private_cluster()
    if cluster is None:
        pytest.skip("needs PostgreSQL's server binaries (/usr/lib/postgresql/<version>/bin)")
    try:
        yield cluster
    finally:
        stop_private_cluster(cluster)
