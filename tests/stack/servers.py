"""Real servers for the team-stack tests: PostgreSQL databases and clusters, ``mlflow server``, the CLI.

The topology is the one ``docker-compose.yml`` starts, without Docker: an MLflow tracking server
on 127.0.0.1 whose backend is a fresh PostgreSQL database and whose artifacts it proxies
(``--serve-artifacts``) to a folder standing in for the object store. The fixtures that start
and stop them are in ``conftest.py``.
"""

from __future__ import annotations

import base64
import configparser
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models import POSTGRES

MLFLOW = Path(sys.executable).with_name("mlflow")
ROOT = Path(__file__).resolve().parents[2]


def postgres_execute(statement: str) -> None:
    import psycopg

    with psycopg.connect(POSTGRES, autocommit=True, connect_timeout=5) as connection:
        connection.execute(statement)


@dataclass(frozen=True)
class Database:
    name: str

    @property
    def url(self) -> str:
        """As the ``postgres`` superuser (trust auth on loopback)."""
        return f"postgresql+psycopg://postgres@127.0.0.1:5432/{self.name}"


def create_database() -> Database:
    name = f"stack_{uuid.uuid4().hex[:12]}"
    postgres_execute(f'CREATE DATABASE "{name}"')
    return Database(name)


def drop_database(name: str) -> None:
    postgres_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class ServerProcess:
    """One server process group on loopback, and the file its output goes to."""

    url: str
    log: Path
    process: subprocess.Popen

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            # The server forks uvicorn workers: signal the whole group it leads.
            os.killpg(self.process.pid, sig)
            try:  # uvicorn drains keep-alive connections on SIGTERM: a few seconds, then no more waiting
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)

    def kill(self) -> None:
        """Dies the way a crashed server does: no shutdown, connections cut."""
        self.stop(signal.SIGKILL)

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


@dataclass(frozen=True)
class MlflowAuth:
    """MLflow's basic-auth app as ``docker-compose.yml`` configures it: the admin account from
    ``MLFLOW_AUTH_ADMIN_*``, the rest from ``docker/mlflow/basic_auth.ini``."""

    admin: str
    admin_password: str
    secret_key: str = "adapterlab-test-secret-key"

    def environment(self, folder: Path) -> dict[str, str]:
        """The server's environment: the compose file's variables, the config file written in ``folder``."""
        return {
            "MLFLOW_AUTH_CONFIG_PATH": str(self.write_config(folder)),
            "MLFLOW_AUTH_ADMIN_USERNAME": self.admin,
            "MLFLOW_AUTH_ADMIN_PASSWORD": self.admin_password,
            "MLFLOW_FLASK_SERVER_SECRET_KEY": self.secret_key,
        }

    @staticmethod
    def write_config(folder: Path) -> Path:
        """The stack's own config file, its accounts database moved from the container's volume to
        ``folder``: every other key is what the container reads."""
        config = configparser.ConfigParser()
        config.read(ROOT / "docker/mlflow/basic_auth.ini")
        config["mlflow"]["database_uri"] = f"sqlite:///{folder / 'basic_auth.db'}"
        path = folder / "basic_auth.ini"
        with path.open("w") as sink:
            config.write(sink)
        return path


@dataclass
class MlflowServer(ServerProcess):
    """One ``mlflow server`` process group, its database and its artifact folder."""

    artifacts: Path
    auth: MlflowAuth | None = None

    def rest(self, method: str, endpoint: str, body: dict[str, Any], *, user: str, password: str) -> dict:
        """``method`` on ``/api/2.0/mlflow/ENDPOINT`` with HTTP basic auth, as ``curl -u`` sends it."""
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        url, data = f"{self.url}/api/2.0/mlflow/{endpoint}", json.dumps(body).encode()
        if method == "GET":  # the body travels as the query
            url, data = f"{url}?{urllib.parse.urlencode(body)}", None
        headers = {"Content-Type": "application/json", "Authorization": f"Basic {token}"}
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"{}")


def wait_until_healthy(server: ServerProcess, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"the server exited with {server.process.returncode}:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(f"{server.url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    server.stop()
    raise RuntimeError(f"the server is not healthy after {timeout:.0f}s:\n{server.log_tail()}")


def start_mlflow_server(folder: Path, backend_uri: str, auth: MlflowAuth | None = None) -> MlflowServer:
    """``mlflow server`` on a free loopback port; behind the basic-auth app (``--app-name basic-auth``)
    when ``auth`` is given, as the compose stack starts it."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    artifacts = folder / "object-store"
    log = folder / "mlflow-server.log"
    command = [
        str(MLFLOW),
        "server",
        "--backend-store-uri",
        backend_uri,
        "--serve-artifacts",
        "--artifacts-destination",
        str(artifacts),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        *(("--app-name", "basic-auth") if auth else ()),
    ]
    # Background jobs (huey consumers: several processes) serve GenAI features these tests don't use.
    environment = {
        **os.environ,
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        **(auth.environment(folder) if auth else {}),
    }
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command,
            cwd=folder,
            env=environment,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = MlflowServer(f"http://127.0.0.1:{port}", log, process, artifacts, auth)
    wait_until_healthy(server)
    return server


def start_model_server(model_uri: str, log: Path, env: dict[str, str]) -> ServerProcess:
    """``mlflow models serve -m MODEL_URI --env-manager local`` on a free loopback port, not yet
    waited for (``wait_until_healthy``: it answers once the model is loaded)."""
    port = free_port()
    command = [
        str(MLFLOW),
        *("models", "serve", "-m", model_uri, "--env-manager", "local"),
        *("--host", "127.0.0.1", "-p", str(port), "-w", "1"),
    ]
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command,
            # the CLI runs ``uvicorn`` by name: this interpreter's scripts first, as in an activated venv
            env={**os.environ, "PATH": f"{MLFLOW.parent}{os.pathsep}{os.environ.get('PATH', '')}", **env},
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # the CLI starts uvicorn as a child: stop the group
        )
    return ServerProcess(f"http://127.0.0.1:{port}", log, process)


@dataclass(frozen=True)
class PasswordDatabases:
    """Databases owned by a role that has a password (loopback trust auth still lets it in)."""

    role: str
    password: str
    registry: str  # database names
    mlflow: str

    def url(self, database: str, host: str = "127.0.0.1:5432") -> str:
        return f"postgresql+psycopg://{self.role}:{self.password}@{host}/{database}"


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stdout: str
    stderr: str
    command: str


@dataclass(frozen=True)
class PrivateCluster:
    """A PostgreSQL server of this test's own: restarting it disturbs nobody else's connections."""

    folder: Path
    port: int
    pg_ctl: list[str]  # the command prefix, run as the ``postgres`` user when we are root

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        import psycopg

        name = f"stack_{uuid.uuid4().hex[:12]}"
        info = f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"
        with psycopg.connect(info, autocommit=True, connect_timeout=5) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return name

    def control(self, *args: str) -> None:
        subprocess.run(
            [
                *self.pg_ctl,
                "-D",
                str(self.folder / "data"),
                "-l",
                str(self.folder / "server.log"),
                "-w",
                *args,
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )


def start_private_cluster() -> PrivateCluster | None:
    """A new PostgreSQL cluster on a free port (None: no server binaries here); stop it with
    ``stop_private_cluster``."""
    binaries = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    if not binaries or not (binaries[-1] / "initdb").is_file():
        return None
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []  # initdb refuses root
    folder = Path(tempfile.mkdtemp(prefix="adapterlab-pg-"))  # not under pytest's root-only tmp folders
    if as_postgres:
        shutil.chown(folder, "postgres")
    port = free_port()
    subprocess.run(
        [
            *as_postgres,
            str(binaries[-1] / "initdb"),
            "-D",
            str(folder / "data"),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    cluster = PrivateCluster(folder, port, [*as_postgres, str(binaries[-1] / "pg_ctl")])
    cluster.control("-o", f"-p {port} -k {folder} -c listen_addresses=127.0.0.1", "start")
    return cluster


def stop_private_cluster(cluster: PrivateCluster) -> None:
    cluster.control("-m", "immediate", "stop")
    shutil.rmtree(cluster.folder, ignore_errors=True)


def run_adapters(*args: str, env: dict[str, str], timeout: float = 600) -> CommandResult:
    """``adapters ARGS`` in a fresh process (as a user would), with extra environment."""
    executable = Path(sys.executable).with_name("adapters")
    environment = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **env}
    done = subprocess.run(
        [str(executable), *args], env=environment, capture_output=True, text=True, timeout=timeout
    )
    return CommandResult(done.returncode, done.stdout, done.stderr, " ".join(["adapters", *args]))
