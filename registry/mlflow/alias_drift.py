"""Aliases moved in MLflow behind the registry's back: found for ``show``/``history``, adopted by sync.

Anyone with access to MLflow's UI can move, set or delete a model's alias there; the registry
never hears of it. ``alias_drift`` compares the two for one adapter. It must keep ``adapters
show`` fast and must never hang on a server that is down, so it reads MLflow without importing
mlflow: a tracking server through one REST call after the usual few-second health probe, an SQLite
tracking store with the standard library's sqlite3 (read-only). Only other stores use the client.

An alias whose registry version was never mirrored is not drift: MLflow is merely behind, and
``adapters sync`` catches it up. Adopting MLflow's state (``adapters sync --from-mlflow``) writes
each change to the registry with a promotion-history row like any other move.
"""

from __future__ import annotations

import sqlite3
import urllib.error
from contextlib import closing
from dataclasses import dataclass, field

from sqlalchemy import select

from adapterlab.registry import settings
from adapterlab.registry.db.database import Database
from adapterlab.registry.db.tables import aliases, versions
from adapterlab.registry.mlflow.mlflow_http import (
    PROBE_TIMEOUT_S,
    is_http,
    mlflow_call_settings,
    rest_call,
    server_answers,
)
from adapterlab.registry.mlflow.mlflow_mirror import mlflow_client
from adapterlab.registry.queries import find_adapter
from adapterlab.registry.redaction import error_summary

NOT_CHECKED = "MLflow not reachable, drift not checked"


@dataclass(frozen=True)
class AliasDrift:
    """One alias on which MLflow and the registry disagree (None: that side has no such alias)."""

    name: str
    alias: str
    registry_version: int | None
    mlflow_version: int | None  # MLflow's own version number
    mirrors: int | None  # the registry version MLflow's target mirrors (None: none, or no target)

    def text(self) -> str:
        ours = f"{self.name}:{self.registry_version}" if self.registry_version is not None else "no version"
        if self.mlflow_version is None:
            return f"@{self.alias}: removed in MLflow; the registry has it on {ours}"
        theirs = f"{self.name}:{self.mirrors}" if self.mirrors is not None else "no registry version"
        return (
            f"@{self.alias}: MLflow has it on its version {self.mlflow_version} ({theirs}); "
            f"the registry on {ours}"
        )


@dataclass(frozen=True)
class DriftReport:
    """What ``alias_drift`` found for one adapter; ``checked`` False when MLflow could not be asked."""

    name: str
    checked: bool
    drift: list[AliasDrift] = field(default_factory=list)
    reason: str | None = None  # why it was not checked

    def lines(self) -> list[str]:
        if not self.checked:
            return [f"{NOT_CHECKED} ({self.reason})"] if self.reason else [NOT_CHECKED]
        if not self.drift:
            return []
        return [
            f"Warning: MLflow's aliases of {self.name} differ from the registry's (drift):",
            *(f"  {item.text()}" for item in self.drift),
            "  `adapters sync` puts MLflow back in line; `adapters sync --from-mlflow` adopts MLflow's",
        ]


def alias_drift(database: Database, name: str) -> DriftReport | None:
    """How MLflow's aliases of adapter ``name`` differ from the registry's (None: the mirror is off)."""
    if not settings.mlflow_mirror_enabled():
        return None
    registry_aliases, mirrored = registry_state(database, name)
    try:
        found = mlflow_aliases(settings.mlflow_tracking_uri(), name)
    except Exception as exc:  # down, refused, timed out, an unreadable store: never fail `show`
        return DriftReport(name, checked=False, reason=error_summary(exc))
    if found is None:
        return DriftReport(name, checked=False, reason="the tracking server did not answer its health check")
    return DriftReport(name, checked=True, drift=compare(name, registry_aliases, mirrored, found))


def registry_state(database: Database, name: str) -> tuple[dict[str, tuple[int, int | None]], dict[int, int]]:
    """``{alias: (version, mlflow_version)}`` and ``{mlflow_version: version}`` of adapter ``name``."""
    with database.reading() as connection:
        adapter = find_adapter(connection, name)
        numbers = connection.execute(
            select(versions.c.version, versions.c.mlflow_version).where(versions.c.adapter_id == adapter.id)
        ).all()
        held = connection.execute(
            select(aliases.c.alias, versions.c.version, versions.c.mlflow_version)
            .join(versions, versions.c.id == aliases.c.version_id)
            .where(aliases.c.adapter_id == adapter.id)
        ).all()
    mirrored = {mlflow_version: number for number, mlflow_version in numbers if mlflow_version is not None}
    return {alias: (number, mlflow_version) for alias, number, mlflow_version in held}, mirrored


def compare(
    name: str,
    registry_aliases: dict[str, tuple[int, int | None]],
    mirrored: dict[int, int],
    found: dict[str, int],
) -> list[AliasDrift]:
    drift = []
    for alias in sorted(set(registry_aliases) | set(found)):
        number, mlflow_version = registry_aliases.get(alias, (None, None))
        if number is not None and mlflow_version is None:
            continue  # never mirrored: MLflow is behind, not moved (`adapters sync`)
        theirs = found.get(alias)
        if theirs != mlflow_version:
            drift.append(AliasDrift(name, alias, number, theirs, mirrored.get(theirs)))
    return drift


def mlflow_aliases(uri: str, name: str) -> dict[str, int] | None:
    """``{alias: MLflow version}`` of the registered model ``name`` (None: the server did not answer)."""
    if is_http(uri):
        if not server_answers(uri):
            return None
        try:
            answer = rest_call(uri, "GET", "registered-models/get", {"name": name}, timeout=PROBE_TIMEOUT_S)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:  # no such model in MLflow: it holds no aliases
                return {}
            raise
        found = answer.get("registered_model", {}).get("aliases", [])
        return {item["alias"]: int(item["version"]) for item in found}
    sqlite_file = settings.sqlite_file(uri)
    if sqlite_file is not None:
        return _sqlite_aliases(sqlite_file.as_uri(), name) if sqlite_file.exists() else {}
    return _client_aliases(name)


def _sqlite_aliases(file_uri: str, name: str) -> dict[str, int]:
    """The rows MLflow's ``get_registered_model`` reads, read-only with sqlite3 (no mlflow import)."""
    with closing(sqlite3.connect(f"{file_uri}?mode=ro", uri=True, timeout=PROBE_TIMEOUT_S)) as database:
        columns = {row[1] for row in database.execute("PRAGMA table_info(registered_model_aliases)")}
        if not columns:  # a store that never held a registered model
            return {}
        query = "SELECT alias, version FROM registered_model_aliases WHERE name = ?"
        if "workspace" in columns:  # MLflow 3.5+ scopes rows by workspace: the model's own, as when writing
            query += " AND workspace = (SELECT workspace FROM registered_models WHERE name = ? LIMIT 1)"
        rows = database.execute(query, (name, name) if "workspace" in columns else (name,)).fetchall()
    return {alias: int(version) for alias, version in rows}


def _client_aliases(name: str) -> dict[str, int]:
    from mlflow.exceptions import MlflowException

    with mlflow_call_settings():
        try:
            model = mlflow_client().get_registered_model(name)
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return {}
            raise
    return {alias: int(version) for alias, version in (model.aliases or {}).items()}
