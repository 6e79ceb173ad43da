"""Opening the registry database: engines, sessions, the schema check, SQLite's write lock.

Transactions are Core connections (the registry never imports the ORM: see ``tables.py``).

SQLite serialises writers with ``BEGIN IMMEDIATE`` (taken by write sessions only, so readers in
WAL mode never wait) and a long busy timeout; PostgreSQL locks the adapter's row with
``SELECT ... FOR UPDATE``. A new embedded SQLite file is created at the head revision on first
use; any other database whose revision differs from this code's is refused, naming the
command that upgrades it.
"""

from __future__ import annotations

import fcntl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    IntegrityError,
    InterfaceError,
    NoSuchModuleError,
    OperationalError,
)

from adapterlab.errors import AdapterExists, RegistryUnavailable, summarize
from adapterlab.registry import settings
from adapterlab.registry.db.revisions import known_revisions, upgrade_engine
from adapterlab.registry.redaction import redact

# The Alembic head this code expects (a test checks it against migrations/versions).
SCHEMA_REVISION = "0002_base_locations"
UPGRADE_HINT = "run `adapters db upgrade`"
SUPPORTED_BACKENDS = ("sqlite", "postgresql")  # the migrations and the locking are written for these two
_WRITE_OPTION = "adapterlab_write"
_WRITE_ATTEMPTS = 8
T = TypeVar("T")


@dataclass(frozen=True)
class Database:
    """An opened, schema-checked registry database; ``close()`` releases its connections."""

    url: str
    engine: Engine  # use ``reading()`` / ``writing()``, which translate lost connections
    write_engine: Engine  # the same pool; takes SQLite's write lock at BEGIN

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """One read transaction; a lost connection becomes RegistryUnavailable."""
        with _connection_errors(self.url), self.engine.begin() as connection:
            yield connection

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        """One write transaction (SQLite: holds the write lock from its start)."""
        with _connection_errors(self.url), self.write_engine.begin() as connection:
            yield connection

    def write_retrying(self, action: Callable[[Connection], T], what: str) -> T:
        """Run ``action`` in a write transaction, again from the start if it loses a race.

        Unique constraints are the last line of defence against concurrent writers (two first
        versions of one new adapter, two first settings of one alias): the loser retries.
        """
        for attempt in range(_WRITE_ATTEMPTS):
            try:
                with self.writing() as connection:
                    return action(connection)
            except IntegrityError as exc:
                if attempt == _WRITE_ATTEMPTS - 1:
                    raise AdapterExists(
                        f"could not {what}: {summarize(exc.orig, first_line=True, limit=None)}"
                    ) from exc
        raise AssertionError("unreachable")


@contextmanager
def _connection_errors(url: str) -> Iterator[None]:
    try:
        yield
    except (OperationalError, InterfaceError) as exc:
        raise unreachable(url, exc) from exc


def display_url(url: str) -> str:
    """The URL with its user info masked, safe to print (a password may hold '@')."""
    try:
        return redact(make_url(url).render_as_string(hide_password=False))
    except (ArgumentError, ValueError):  # ValueError: e.g. a port that is not a number
        return "<unparseable URL>"


def create_registry_engine(url: str) -> Engine:
    """An engine for ``url``; plain ``postgresql://`` URLs use psycopg 3, the driver we ship."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        # never echo the URL itself: an unparseable one may still hold a password
        raise RegistryUnavailable(
            "invalid registry URL (check ADAPTERLAB_REGISTRY_URL or --registry-url): "
            "expected e.g. sqlite:///path/registry.db or postgresql://user@host:5432/db"
        ) from exc
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in SUPPORTED_BACKENDS:
        raise RegistryUnavailable(
            f"unsupported registry database {parsed.get_backend_name()!r} in {display_url(url)}: the "
            "registry runs on SQLite or PostgreSQL (sqlite:///path/registry.db or "
            "postgresql://user@host:5432/db)"
        )
    try:
        if parsed.get_backend_name() == "sqlite":
            return _sqlite_engine(parsed)
        return create_engine(parsed, pool_pre_ping=True)
    except (NoSuchModuleError, ImportError) as exc:  # an unknown driver, or one that is not installed
        raise RegistryUnavailable(
            f"unsupported registry URL {display_url(url)}: {type(exc).__name__}: {redact(str(exc))} "
            "(use sqlite:/// or postgresql:// with the psycopg driver adapterlab installs)"
        ) from exc


def _sqlite_engine(url) -> Engine:
    if url.database and url.database != ":memory:":
        folder = Path(url.database).expanduser().absolute().parent
        settings.usable_folder(folder, "the registry database's folder").mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 60})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        # let SQLAlchemy's "begin" event emit BEGIN itself (pysqlite would defer it)
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.execute("PRAGMA journal_mode=WAL")  # readers never wait for the writer
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:
        write = connection.get_execution_options().get(_WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def open_database(url: str | None = None, *, create: bool = True) -> Database:
    """The registry database at ``url`` (or the configured one), checked to be reachable and up to date.

    A missing embedded SQLite registry is created, unless ``create`` is False (read-only commands):
    then it is an error saying where it was looked for.
    """
    resolved = settings.registry_url(url)
    if not create:
        _check_exists(resolved, explicit=url is not None)
    engine = create_registry_engine(resolved)
    try:
        _check_schema(resolved, engine)
    except BaseException:
        engine.dispose()
        raise
    return Database(
        url=resolved, engine=engine, write_engine=engine.execution_options(**{_WRITE_OPTION: True})
    )


def _check_exists(url: str, explicit: bool) -> None:
    file = settings.sqlite_file(url)
    if file is None:
        return
    settings.usable_folder(file.parent, "the registry database's folder")
    if file.exists():
        return
    create = "run `adapters train` or `adapters register` to create one"
    if not explicit and not settings.home_is_configured():
        raise RegistryUnavailable(
            f"no registry found here or above ({Path.cwd()} has no {settings.HOME_FOLDER} folder, nor do its "
            f"parents); {create}, or set ADAPTERLAB_HOME"
        )
    raise RegistryUnavailable(
        f"no registry at {file}; {create} there, or point ADAPTERLAB_HOME / --registry-url at an existing one"
    )


def unreachable(url: str, exc: Exception) -> RegistryUnavailable:
    reason = summarize(getattr(exc, "orig", None) or exc, first_line=True, limit=None)
    return RegistryUnavailable(
        f"cannot reach the registry database at {display_url(url)}: {redact(reason)} "
        "(check --registry-url / ADAPTERLAB_REGISTRY_URL)"
    )


def current_revision(engine: Engine, url: str) -> str | None:
    """The Alembic revision stamped in the database, or None when it has no registry tables."""
    try:
        with engine.connect() as connection:
            if not engine.dialect.has_table(connection, "alembic_version"):
                return None
            return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except DBAPIError as exc:
        raise unreachable(url, exc) from exc


def _check_schema(url: str, engine: Engine) -> None:
    revision = current_revision(engine, url)
    if revision is None and engine.dialect.name == "sqlite":
        revision = _create_embedded(url, engine)
    if revision == SCHEMA_REVISION:
        return
    if revision is None:
        raise RegistryUnavailable(
            f"the registry database at {display_url(url)} has no registry schema; {UPGRADE_HINT}"
        )
    if revision not in known_revisions():  # newer than this code: `db upgrade` could not help
        raise unknown_revision_error(revision, url)
    raise RegistryUnavailable(
        f"the registry database at {display_url(url)} is at schema revision {revision}, "
        f"this adapterlab needs {SCHEMA_REVISION}; {UPGRADE_HINT} (or upgrade adapterlab)"
    )


def _create_embedded(url: str, engine: Engine) -> str | None:
    """Create a new SQLite registry at head; concurrent first users wait for the first one."""
    database = engine.url.database
    if not database or database == ":memory:":
        upgrade_engine(engine)
        return current_revision(engine, url)
    with file_lock(Path(database + ".lock")):
        if current_revision(engine, url) is None:
            with engine.connect() as connection:
                if inspect(connection).get_table_names():
                    return None  # not ours, or half-made: leave it to `adapters db upgrade`
            upgrade_engine(engine)
        return current_revision(engine, url)


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (created if needed), held for the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def unknown_revision_error(revision: str, url: str) -> RegistryUnavailable:
    """A database stamped by a newer adapterlab: no migration here can move it, so say what can."""
    return RegistryUnavailable(
        f"the registry database at {display_url(url)} is at schema revision {revision!r}, which this "
        f"adapterlab does not know (its revisions: {', '.join(known_revisions())}); it was migrated by a "
        "newer adapterlab: upgrade adapterlab (pip install -U adapterlab) to use it"
    )
