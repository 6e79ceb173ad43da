"""Where the registry lives: the home folder, the database URL, MLflow's tracking URI.

Everything is read from the environment at call time (never cached), so tests and the CLI's
``--registry-url`` can point one process at several registries.

A path is a path, whatever characters it holds: URLs are built with SQLAlchemy's ``URL.create``
(which quotes ``?``, ``#``, ``%``, ``@`` ...) and read back with ``make_url``, never by string
formatting or slicing, so ``ADAPTERLAB_HOME='/tmp/team?a'`` keeps the database in that folder.
"""

from __future__ import annotations

import getpass
import os
from pathlib import Path

from adapterlab.errors import InvalidConfig

HOME_FOLDER = ".adapterlab"


def adapterlab_home() -> Path:
    """``$ADAPTERLAB_HOME``; else the nearest ``.adapterlab`` folder in the working directory or above
    it (as git finds ``.git``); else ``./.adapterlab``, which a writing command creates.

    A home that is a file, or lies under one, is refused here, before anything tries to create it.
    """
    configured = os.environ.get("ADAPTERLAB_HOME")
    if configured:
        home = Path(configured).expanduser().absolute()
    else:
        home = found_home() or Path.cwd() / HOME_FOLDER
    return usable_folder(home, "ADAPTERLAB_HOME")


def found_home() -> Path | None:
    """The nearest ``.adapterlab`` folder in the working directory or one of its parents."""
    here = Path.cwd()
    return next(
        (folder / HOME_FOLDER for folder in (here, *here.parents) if (folder / HOME_FOLDER).is_dir()), None
    )


def home_is_configured() -> bool:
    """Whether the user chose where the registry lives (a found ``.adapterlab`` counts as chosen)."""
    return bool(os.environ.get("ADAPTERLAB_HOME") or os.environ.get("ADAPTERLAB_REGISTRY_URL")) or (
        found_home() is not None
    )


def usable_folder(folder: Path, what: str) -> Path:
    """``folder``, unless it or one of its parents exists as something other than a folder."""
    for path in (folder, *folder.parents):
        if path.exists() or path.is_symlink():
            if not path.is_dir():
                where = "is a file" if path == folder else f"lies under the file {path}"
                raise InvalidConfig(f"{what} {folder} {where}; choose a folder path")
            break
    return folder


def sqlite_url(file: Path) -> str:
    """The ``sqlite:///`` URL of ``file``, quoted so that any character in the path stays in the path."""
    from sqlalchemy.engine import URL

    return URL.create("sqlite", database=str(file)).render_as_string(hide_password=False)


def sqlite_file(url: str) -> Path | None:
    """The database file an ``sqlite:`` URL names (absolute), or None for other URLs and in-memory
    databases."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    if not url.startswith("sqlite"):
        return None
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return None
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database).expanduser().absolute()


def registry_url(override: str | None = None) -> str:
    """The registry's SQLAlchemy URL: ``override``, ``$ADAPTERLAB_REGISTRY_URL`` or SQLite in the home."""
    if override:
        return override
    configured = os.environ.get("ADAPTERLAB_REGISTRY_URL")
    if configured:
        return configured
    return sqlite_url(adapterlab_home() / "registry.db")


def mlflow_tracking_uri() -> str:
    """``$MLFLOW_TRACKING_URI``, default an SQLite MLflow store in the home (never ``./mlruns``)."""
    configured = os.environ.get("MLFLOW_TRACKING_URI")
    if configured:
        return configured
    return sqlite_url(adapterlab_home() / "mlflow.db")


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
    """Whether versions and aliases are mirrored into MLflow's model registry
    (``ADAPTERLAB_MLFLOW_MIRROR``)."""
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
