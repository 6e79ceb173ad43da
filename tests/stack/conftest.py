"""Real servers for the team-stack tests: PostgreSQL databases, ``mlflow server``, headless Chromium.

The topology is the one ``docker-compose.yml`` starts, without Docker: an MLflow tracking server
on 127.0.0.1 whose backend is a fresh PostgreSQL database and whose artifacts it proxies
(``--serve-artifacts``) to a folder standing in for the object store.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

POSTGRES = "host=127.0.0.1 port=5432 user=postgres dbname=test"
POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/{database}"
MLFLOW = Path(sys.executable).with_name("mlflow")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def postgres_execute(statement: str) -> None:
    import psycopg

    with psycopg.connect(POSTGRES, autocommit=True, connect_timeout=5) as connection:
        connection.execute(statement)


def require_postgres() -> None:
    try:
        postgres_execute("SELECT 1")
    except Exception as exc:  # any failure to connect means: no server here
        pytest.skip(f"PostgreSQL is not running on 127.0.0.1:5432 ({exc.__class__.__name__})")


@pytest.fixture
def postgres_database() -> Iterator[Callable[[], str]]:
    """Creates fresh, uniquely named databases on demand; drops them afterwards."""
    require_postgres()
    created: list[str] = []

    def create() -> str:
        name = f"stack_{uuid.uuid4().hex[:12]}"
        postgres_execute(f'CREATE DATABASE "{name}"')
        created.append(name)
        return name

    yield create
    for name in created:
        postgres_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class MlflowServer:
    """One ``mlflow server`` process group, its database and its artifact folder."""

    url: str
    database: str
    artifacts: Path
    log: Path
    process: subprocess.Popen

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            # The server forks uvicorn workers: signal the whole group it leads.
            os.killpg(self.process.pid, sig)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)

    def kill(self) -> None:
        """Dies the way a crashed server does: no shutdown, connections cut."""
        self.stop(signal.SIGKILL)

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


def wait_until_healthy(server: MlflowServer, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {server.process.returncode}:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(f"{server.url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    server.stop()
    raise RuntimeError(f"mlflow server not healthy after {timeout:.0f}s:\n{server.log_tail()}")


def start_mlflow_server(folder: Path, database: str) -> MlflowServer:
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    artifacts = folder / "object-store"
    log = folder / "mlflow-server.log"
    command = [
        str(MLFLOW),
        "server",
        "--backend-store-uri",
        POSTGRES_URL.format(database=database),
        "--serve-artifacts",
        "--artifacts-destination",
        str(artifacts),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    # Background jobs (huey consumers: several processes) serve GenAI features these tests don't use.
    environment = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command,
            cwd=folder,
            env=environment,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = MlflowServer(f"http://127.0.0.1:{port}", database, artifacts, log, process)
    wait_until_healthy(server)
    return server


@pytest.fixture
def mlflow_server(tmp_path: Path, postgres_database: Callable[[], str]) -> Iterator[MlflowServer]:
    """A real MLflow tracking server on PostgreSQL with proxied artifacts, for one test."""
    server = start_mlflow_server(tmp_path / "mlflow", postgres_database())
    yield server
    server.stop()


@pytest.fixture
def chromium(tmp_path: Path) -> Callable[..., str]:
    """Renders a page in headless Chromium; returns its DOM after the JS app has run."""
    binary = shutil.which("chromium")
    if binary is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")

    def render(url: str, *, screenshot: Path | None = None, budget_ms: int = 20000) -> str:
        profile = tmp_path / f"chromium-profile-{uuid.uuid4().hex[:8]}"
        base = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}"]
        if screenshot is not None:
            subprocess.run(
                [*base, "--window-size=1400,1000", f"--screenshot={screenshot}", url],
                check=True,
                capture_output=True,
                timeout=120,
            )
        dom = subprocess.run(
            [*base, "--dump-dom", url], check=True, capture_output=True, text=True, timeout=120
        )
        return dom.stdout

    return render
