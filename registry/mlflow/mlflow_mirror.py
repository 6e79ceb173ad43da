"""The MLflow mirror: every version is also an MLflow model version, every alias an MLflow alias.

The registry database stays the source of truth; MLflow numbers its model versions itself, so
the registry records which MLflow version mirrors each of its own. Creating model versions goes
through ``MlflowClient`` (imported here, lazily). Moving an alias must stay fast (``adapters
promote`` imports no mlflow), so it talks to a tracking server's REST API, or writes the one
alias row of an SQLite tracking store directly, and only falls back to the client otherwise.
A mirror that fails is reported as a warning: the registry's own change is already committed.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from adapterlab.errors import summarize
from adapterlab.registry import settings
from adapterlab.registry.db.database import file_lock
from adapterlab.registry.records import AdapterVersion

log = logging.getLogger("adapterlab.registry")
_ATTEMPTS = 5
_clients: dict[str, object] = {}  # tracking URI -> a client whose store is initialised


def _client():
    uri = settings.mlflow_tracking_uri()
    if uri not in _clients:
        _clients[uri] = _new_client(uri)
    return _clients[uri]


def _new_client(uri: str):
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    with _writer_turn(uri):  # MLflow creates its tables on first use: one process at a time
        client.search_registered_models(max_results=1)
    return client


@contextmanager
def _writer_turn(uri: str) -> Iterator[None]:
    """Serialise writers of an SQLite tracking store: SQLite turns their collisions into errors."""
    sqlite_file = _sqlite_path(uri)
    if sqlite_file is None:
        yield
        return
    with file_lock(sqlite_file.with_name(sqlite_file.name + ".lock")):
        yield


def _sqlite_path(uri: str) -> Path | None:
    return settings.sqlite_file(uri)  # parsed, not sliced: a home may hold '?', '#', '%'


def mirror_version(version: AdapterVersion) -> int | None:
    """Create the MLflow model version of ``version``; returns its MLflow version number."""
    if not settings.mlflow_mirror_enabled():
        return None
    try:
        client, uri = _client(), settings.mlflow_tracking_uri()
        with _writer_turn(uri):
            return _retry(lambda: _create_model_version(client, version))
    except Exception as exc:  # MLflow raises many types; the registry's version already exists
        log.warning("Warning: %s:%s was not mirrored to MLflow: %s", version.name, version.version, summarize(exc, first_line=True, limit=None))
        return None


def _create_model_version(client, version: AdapterVersion) -> int:
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(version.name, tags={"adapterlab": "adapter"})
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    tags = {
        "base": version.base.name,
        "fingerprint": version.base.fingerprint,
        "task": version.task_type or "",
        "method": version.peft_type,
        "sha256": version.sha256,
        "adapterlab.version": str(version.version),
    }
    created = client.create_model_version(
        version.name,
        source=version.artifact_uri,
        run_id=version.mlflow_run_id,
        tags=tags,
        description=version.description,
    )
    return int(created.version)


def mirror_alias(name: str, alias: str, mlflow_version: int | None) -> None:
    """Point MLflow's ``alias`` at ``mlflow_version`` (None: remove it)."""
    if not settings.mlflow_mirror_enabled():
        return
    uri = settings.mlflow_tracking_uri()
    try:
        if uri.startswith(("http://", "https://")):
            _retry(lambda: _rest_alias(uri, name, alias, mlflow_version))
        elif _sqlite_path(uri) is not None:
            with _writer_turn(uri):
                _retry(lambda: _sqlite_alias(uri, name, alias, mlflow_version))
        else:
            _retry(lambda: _client_alias(name, alias, mlflow_version))
    except Exception as exc:
        log.warning("Warning: MLflow alias @%s of %s was not updated: %s", alias, name, summarize(exc, first_line=True, limit=None))


def _rest_alias(uri: str, name: str, alias: str, version: int | None) -> None:
    endpoint = f"{uri.rstrip('/')}/api/2.0/mlflow/registered-models/alias"
    headers = {"Content-Type": "application/json"}
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if version is None:
        request = urllib.request.Request(
            f"{endpoint}?{urllib.parse.urlencode({'name': name, 'alias': alias})}", method="DELETE", headers=headers
        )
    else:
        body = json.dumps({"name": name, "alias": alias, "version": str(version)}).encode()
        request = urllib.request.Request(endpoint, data=body, method="POST", headers=headers)
    with urllib.request.urlopen(request, timeout=30):
        pass


def _sqlite_alias(uri: str, name: str, alias: str, version: int | None) -> None:
    """The rows MLflow's own ``set_registered_model_alias`` writes, written with the standard
    library's sqlite3 (no mlflow, no SQLAlchemy reflection: a promotion stays fast)."""
    with closing(sqlite3.connect(_sqlite_path(uri), timeout=60)) as database, database:
        columns = {row[1] for row in database.execute("PRAGMA table_info(registered_model_aliases)")}
        if not columns:
            raise LookupError("the MLflow store has no model registry tables")
        scoped = "workspace" in columns  # MLflow 3.5+ scopes registry rows by workspace
        model = database.execute(
            f"SELECT {'workspace' if scoped else 'name'} FROM registered_models WHERE name = ?", (name,)
        ).fetchone()
        if model is None:
            raise LookupError(f"MLflow has no registered model {name!r}")
        scope, values = ("name = ? AND workspace = ?", (name, model[0])) if scoped else ("name = ?", (name,))
        database.execute(f"DELETE FROM registered_model_aliases WHERE {scope} AND alias = ?", (*values, alias))
        if version is not None:
            names = "name, alias, version" + (", workspace" if scoped else "")
            row = (name, alias, version, *values[1:])
            database.execute(f"INSERT INTO registered_model_aliases ({names}) VALUES ({', '.join('?' * len(row))})", row)
        database.execute(f"UPDATE registered_models SET last_updated_time = ? WHERE {scope}", (int(time.time() * 1000), *values))


def _client_alias(name: str, alias: str, version: int | None) -> None:
    client = _client()
    if version is None:
        client.delete_registered_model_alias(name, alias)
    else:
        client.set_registered_model_alias(name, alias, str(version))


def _retry(action):
    """Run ``action``, retrying a few times: SQLite tracking stores report lock contention as errors."""
    for attempt in range(_ATTEMPTS):
        try:
            return action()
        except Exception:
            if attempt == _ATTEMPTS - 1:
                raise
            time.sleep(0.05 * 2**attempt)
