"""``adapters sync`` upgrades versions mirrored before they were MLflow Models.

Such a version's MLflow model version has the bare adapter files as its source: MLflow cannot
load it (no ``MLmodel``), and a model version's source cannot be changed. So sync publishes the
version's model folder (``pyfunc_model.py``), creates a new MLflow model version from it (same
tags) and records that number; the alias step of the same sync then moves MLflow's aliases onto
it. The old MLflow version is left in place (MLflow users may refer to it by number) and is
found again by nobody: the registry now records the new one.
"""

from __future__ import annotations

from itertools import groupby

from sqlalchemy import select

from adapterlab.registry.db.database import Database
from adapterlab.registry.db.store import record_mlflow_version
from adapterlab.registry.db.tables import adapters, versions
from adapterlab.registry.mlflow.mlflow_mirror import create_mirrored_version, mlflow_client
from adapterlab.registry.mlflow.pyfunc_model import model_uri
from adapterlab.registry.names import Ref
from adapterlab.registry.queries import show
from adapterlab.registry.redaction import error_summary


def upgrade_to_models(database: Database, upgraded: list[str], failed: list[str]) -> None:
    """Re-mirror every mirrored version whose MLflow source is not its model folder; appends
    ``NAME:N`` to ``upgraded`` or a line to ``failed``."""
    with database.reading() as connection:
        mirrored = connection.execute(
            select(adapters.c.name, versions.c.version, versions.c.mlflow_version)
            .join(adapters, adapters.c.id == versions.c.adapter_id)
            .where(versions.c.mlflow_version.is_not(None))
            .order_by(adapters.c.name, versions.c.version)
        ).all()
    for name, rows in groupby(mirrored, key=lambda row: row[0]):
        try:
            sources = _mlflow_sources(name)
        except Exception as exc:  # MLflow raises many types; report and go on with the others
            failed.append(f"{name}: {error_summary(exc)}")
            continue
        for _, number, mlflow_version in rows:
            record = show(database, Ref(name, version=number))
            if sources.get(mlflow_version, model_uri(record)) == model_uri(record):
                continue  # already a model (or gone from MLflow: not ours to recreate here)
            try:
                created = create_mirrored_version(record)
            except Exception as exc:
                failed.append(f"{record.ref}: {error_summary(exc)}")
                continue
            record_mlflow_version(database, name, number, created)
            upgraded.append(record.ref)


def _mlflow_sources(name: str) -> dict[int, str]:
    found = mlflow_client().search_model_versions(f"name = '{name}'")  # names never hold quotes
    return {int(version.version): version.source for version in found}
