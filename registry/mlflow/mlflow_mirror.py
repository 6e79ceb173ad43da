"""The MLflow mirror: every version is also an MLflow model version, every alias an MLflow alias.

The registry database stays the source of truth; MLflow numbers its model versions itself, so
the registry records which MLflow version mirrors each of its own. Creating model versions goes
through ``MlflowClient`` (imported here, lazily). Moving an alias must stay fast (``adapters
promote`` imports no mlflow), so it talks to a tracking server's REST API (``mlflow_http``, with
MLflow's credentials and TLS settings), or writes the one alias row of an SQLite tracking store
directly, and only falls back to the client otherwise.

A mirror that fails is reported as a one-line warning and never fails the command: the
registry's own change is already committed. A server that is down is found by a health probe
of a few seconds, not by MLflow's minutes of retries. What was not mirrored is derivable
(versions whose ``mlflow_version`` is unset; aliases that differ from MLflow's), and
``adapters sync`` (``mirror_sync.py``) brings MLflow up to date later.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from adapterlab.registry import settings
from adapterlab.registry.db.database import file_lock
from adapterlab.registry.mlflow.mlflow_http import (
    is_http,
    mlflow_call_settings,
    require_access,
    require_server,
    rest_call,
)
from adapterlab.registry.mlflow.pyfunc_model import publish_model
from adapterlab.registry.records import AdapterVersion
from adapterlab.registry.redaction import error_summary

log = logging.getLogger("adapterlab.registry")
_ATTEMPTS = 5
SYNC_HINT = "run `adapters sync` once MLflow is reachable"
_clients: dict[str, object] = {}  # tracking URI -> a client whose store is initialised


def mlflow_client():
    """A client of the configured tracking URI whose store is initialised (one per URI and process)."""
    uri = settings.mlflow_tracking_uri()
    if uri not in _clients:
        _clients[uri] = _new_client(uri)
    return _clients[uri]


def _new_client(uri: str):
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from mlflow import MlflowClient

    # MLflow creates and migrates its tables on first use, already in the client's constructor
    # (the tracking store) and then in the first registry call: one process at a time, or
    # concurrent first registrations in a fresh home break each other's migrations
    with _writer_turn(uri):
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
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


def reachable_tracking_uri() -> str:
    """The tracking URI, after a quick health probe when it is a server (TrackingServerDown if it is not
    up)."""
    return require_server(settings.mlflow_tracking_uri())


def check_mirror_access() -> None:
    """Before a change the mirror follows: AccessDenied when MLflow answers but refuses our credentials,
    so that the change is refused whole instead of leaving MLflow behind until someone notices. A
    server that is down does not stop it (the mirror catches up with `adapters sync`)."""
    if settings.mlflow_mirror_enabled():
        require_access(settings.mlflow_tracking_uri())


def mirror_version(version: AdapterVersion) -> int | None:
    """Create the MLflow model version of ``version``; returns its MLflow version number.

    None (with a warning naming the way to catch up) when the mirror is off or MLflow failed.
    """
    if not settings.mlflow_mirror_enabled():
        return None
    try:
        return create_mirrored_version(version)
    except Exception as exc:  # MLflow raises many types; the registry's version already exists
        log.warning(
            "Warning: the MLflow mirror is behind: %s was not mirrored (%s); %s",
            version.ref,
            error_summary(exc),
            SYNC_HINT,
        )
        return None


def create_mirrored_version(version: AdapterVersion) -> int:
    """Create the MLflow model version of ``version`` (raises on failure)."""
    uri = reachable_tracking_uri()
    with mlflow_call_settings():
        source = publish_model(version)  # first: an MLflow version never points at a missing model
        client = mlflow_client()
        with _writer_turn(uri):
            return _retry(lambda: _create_model_version(client, version, source))


def _create_model_version(client, version: AdapterVersion, source: str) -> int:
    from mlflow.exceptions import MlflowException

    try:  # the base as a tag lets MLflow's model list filter by it (`tags.base = '...'`)
        model_tags = {"adapterlab": "adapter", "base": version.base.name}
        client.create_registered_model(version.name, tags=model_tags)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        client.set_registered_model_tag(version.name, "base", version.base.name)  # models made before
    created = client.create_model_version(
        version.name,
        source=source,  # an MLflow Model folder (pyfunc_model.py)
        run_id=version.mlflow_run_id,
        tags=version_tags(version),
        description=version.description,
    )
    return int(created.version)


def version_tags(version: AdapterVersion) -> dict[str, str]:
    """What MLflow's model version page shows of ``version``: identity, metrics and who registered it.

    MLflow's "Created by" column shows a version's ``user_id``, which neither its REST API nor its
    client can set (MLflow leaves it empty), so the registering user travels as ``created_by``.
    """
    return {
        "base": version.base.name,
        "fingerprint": version.base.fingerprint,
        "task": version.task_type or "",
        "method": version.peft_type,
        "sha256": version.sha256,
        "adapterlab.version": str(version.version),
        "created_by": version.created_by,
        **{f"metric.{key}": f"{value:.6g}" for key, value in sorted(version.metrics.items())},
    }


def mirror_alias(name: str, alias: str, mlflow_version: int | None) -> None:
    """Point MLflow's ``alias`` at ``mlflow_version`` (None: remove it); warns on failure."""
    if not settings.mlflow_mirror_enabled():
        return
    try:
        set_mirrored_alias(name, alias, mlflow_version)
    except Exception as exc:
        log.warning(
            "Warning: the MLflow mirror is behind: alias @%s of %s was not updated (%s); %s",
            alias,
            name,
            error_summary(exc),
            SYNC_HINT,
        )


def alias_left_behind(name: str, alias: str, version: int) -> None:
    """Say that MLflow's ``alias`` could not follow: its target version is not mirrored yet."""
    if settings.mlflow_mirror_enabled():
        log.warning(
            "Warning: the MLflow mirror is behind: %s:%s is not mirrored, so MLflow's alias @%s was not "
            "moved; %s",
            name,
            version,
            alias,
            SYNC_HINT,
        )


def set_mirrored_alias(name: str, alias: str, mlflow_version: int | None) -> None:
    """Point MLflow's ``alias`` at ``mlflow_version`` (None: remove it); raises on failure."""
    uri = reachable_tracking_uri()
    if is_http(uri):
        _retry(lambda: _rest_alias(uri, name, alias, mlflow_version))
    elif _sqlite_path(uri) is not None:
        with _writer_turn(uri):
            _retry(lambda: _sqlite_alias(uri, name, alias, mlflow_version))
    else:
        with mlflow_call_settings():
            _retry(lambda: _client_alias(name, alias, mlflow_version))


def _rest_alias(uri: str, name: str, alias: str, version: int | None) -> None:
    if version is None:
        rest_call(uri, "DELETE", "registered-models/alias", {"name": name, "alias": alias})
    else:
        rest_call(
            uri, "POST", "registered-models/alias", {"name": name, "alias": alias, "version": str(version)}
        )


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
        database.execute(
            f"DELETE FROM registered_model_aliases WHERE {scope} AND alias = ?", (*values, alias)
        )
        if version is not None:
            names = "name, alias, version" + (", workspace" if scoped else "")
            row = (name, alias, version, *values[1:])
            database.execute(
                f"INSERT INTO registered_model_aliases ({names}) VALUES ({', '.join('?' * len(row))})", row
            )
        database.execute(
            f"UPDATE registered_models SET last_updated_time = ? WHERE {scope}",
            (int(time.time() * 1000), *values),
        )


def _client_alias(name: str, alias: str, version: int | None) -> None:
    client = mlflow_client()
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
