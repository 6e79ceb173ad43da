"""Where the registry lives: the home folder, the database URL, MLflow's tracking URI.

Everything is read from the environment at call time (never cached), so tests and the CLI's
``--registry-url`` can point one process at several registries.
"""

from __future__ import annotations

import getpass
import os
from pathlib import Path


def adapterlab_home() -> Path:
    """``$ADAPTERLAB_HOME``, default ``./.adapterlab`` (relative to the working directory)."""
    return Path(os.environ.get("ADAPTERLAB_HOME") or ".adapterlab").expanduser().absolute()


def registry_url(override: str | None = None) -> str:
    """The registry's SQLAlchemy URL: ``override``, ``$ADAPTERLAB_REGISTRY_URL`` or SQLite in the home."""
    if override:
        return override
    configured = os.environ.get("ADAPTERLAB_REGISTRY_URL")
    if configured:
        return configured
    return f"sqlite:///{adapterlab_home() / 'registry.db'}"


def mlflow_tracking_uri() -> str:
    """``$MLFLOW_TRACKING_URI``, default an SQLite MLflow store in the home (never ``./mlruns``)."""
    configured = os.environ.get("MLFLOW_TRACKING_URI")
    if configured:
        return configured
    return f"sqlite:///{adapterlab_home() / 'mlflow.db'}"


def artifact_root() -> str:
    """Where adapter files are stored through MLflow's artifact store.

    ``$ADAPTERLAB_ARTIFACT_ROOT`` (any MLflow artifact URI: ``s3://``, ``gs://``, ...); with an
    ``mlflow server`` as tracking URI its proxied store; else ``<home>/artifacts``.
    """
    configured = os.environ.get("ADAPTERLAB_ARTIFACT_ROOT")
    if configured:
        return configured.rstrip("/")
    if mlflow_tracking_uri().startswith(("http://", "https://")):
        return "mlflow-artifacts:/adapterlab"
    return (adapterlab_home() / "artifacts").as_uri()


def mlflow_mirror_enabled() -> bool:
    """Whether versions and aliases are mirrored into MLflow's model registry (``ADAPTERLAB_MLFLOW_MIRROR``)."""
    return os.environ.get("ADAPTERLAB_MLFLOW_MIRROR", "1").strip().lower() not in {"0", "false", "no", "off"}


def current_user() -> str:
    """Who is acting, for the promotion history: ``$ADAPTERLAB_USER`` or the OS user."""
    configured = os.environ.get("ADAPTERLAB_USER")
    if configured:
        return configured
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers) and no USER variable
        return "unknown"
