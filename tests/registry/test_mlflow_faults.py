"""The MLflow mirror under faults: credentials, TLS, a server that is down, concurrent first use.

A tiny HTTP(S) server on 127.0.0.1 stands in for the tracking server and records what reaches
it; a port nobody listens on stands in for a server that is down.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from mlflow import MlflowClient

from adapterlab.errors import AccessDenied
from adapterlab.registry.mlflow.mlflow_mirror import check_mirror_access, mirror_alias
from adapterlab.registry.redaction import redact

ADAPTERS = str(Path(sys.executable).with_name("adapters"))
SECRET = "s3cr@t/pw"  # an '@' and a '/' inside: user info ends at the last '@'


@dataclass
class FakeTracking:
    url: str  # without credentials
    requests: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)
    refuse: int | None = None  # answer every call but /health with this status (a server behind auth)

    def with_credentials(self, user: str, password: str) -> str:
        scheme, rest = self.url.split("://")
        return f"{scheme}://{user}:{password}@{rest}"


def _serve(wrap: ssl.SSLContext | None = None) -> Iterator[FakeTracking]:
    fake = FakeTracking(url="")

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            fake.requests.append((self.command, self.path, dict(self.headers), body))
            self.send_response(fake.refuse if fake.refuse and self.path != "/health" else 200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b"{}")

        do_GET = do_POST = do_DELETE = do_PATCH = _answer

        def log_message(self, *args) -> None:  # keep the test output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if wrap is not None:
        server.socket = wrap.wrap_socket(server.socket, server_side=True)
    fake.url = f"{'https' if wrap else 'http'}://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def fake_tracking() -> Iterator[FakeTracking]:
    yield from _serve()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(folder / "key.pem"),
            "-out",
            str(folder / "cert.pem"),
        ],
        check=True,
        capture_output=True,
    )
    return folder / "cert.pem", folder / "key.pem"


@pytest.fixture
def fake_tls_tracking(certificate: tuple[Path, Path]) -> Iterator[FakeTracking]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    yield from _serve(context)


def dead_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed again: nobody listens there


@pytest.fixture
def clean_mlflow_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for key in (
        "MLFLOW_TRACKING_USERNAME",
        "MLFLOW_TRACKING_PASSWORD",
        "MLFLOW_TRACKING_TOKEN",
        "MLFLOW_TRACKING_INSECURE_TLS",
        "MLFLOW_TRACKING_SERVER_CERT_PATH",
        "MLFLOW_TRACKING_CLIENT_CERT_PATH",
    ):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("ADAPTERLAB_MLFLOW_MIRROR", "1")
    return monkeypatch


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# --- what we send -------------------------------------------------------------------------------


def test_url_credentials_travel_as_basic_auth_never_in_the_host(
    fake_tracking, clean_mlflow_env, caplog
) -> None:
    clean_mlflow_env.setenv("MLFLOW_TRACKING_URI", fake_tracking.with_credentials("alice", SECRET))
    with caplog.at_level(logging.WARNING, logger="adapterlab.registry"):
        mirror_alias("model", "production", 3)
        mirror_alias("model", "production", None)
    assert caplog.records == []
    host = fake_tracking.url.removeprefix("http://")
    calls = [(method, path.split("?")[0]) for method, path, _, _ in fake_tracking.requests]
    # the health probe, the credentials check (/health is open behind MLflow's basic auth), the move
    probes = [("GET", "/health"), ("GET", "/api/2.0/mlflow/registered-models/search")]
    assert calls == [
        *probes,
        ("POST", "/api/2.0/mlflow/registered-models/alias"),
        *probes,
        ("DELETE", "/api/2.0/mlflow/registered-models/alias"),
    ]
    for _, _, headers, _ in fake_tracking.requests:
        assert headers["Authorization"] == basic("alice", SECRET) and headers["Host"] == host
    assert json.loads(fake_tracking.requests[2][3]) == {
        "name": "model",
        "alias": "production",
        "version": "3",
    }


@pytest.mark.parametrize(
    "env, url_user",
    [
        ({"MLFLOW_TRACKING_USERNAME": "bob", "MLFLOW_TRACKING_PASSWORD": SECRET}, None),
        ({"MLFLOW_TRACKING_TOKEN": "tok-" + SECRET}, None),
        ({}, "carol"),
        ({"MLFLOW_TRACKING_TOKEN": "tok"}, "carol"),
    ],
    ids=["username-password", "token", "url", "url-and-token"],
)
def test_the_same_authorization_as_mlflows_own_client(env, url_user, fake_tracking, clean_mlflow_env) -> None:
    """Our REST call and MLflow's ``rest_utils`` send one and the same Authorization header."""
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    for key, value in env.items():
        clean_mlflow_env.setenv(key, value)
    uri = (
        fake_tracking.with_credentials(url_user, "p@ss") if url_user else fake_tracking.url
    )  # requests splits at '/'
    clean_mlflow_env.setenv("MLFLOW_TRACKING_URI", uri)
    mirror_alias("model", "production", 1)
    http_request(
        get_default_host_creds(uri),
        "/api/2.0/mlflow/registered-models/alias",
        "POST",
        json={"name": "model", "alias": "production", "version": "1"},
    )
    ours, theirs = fake_tracking.requests[-2][2], fake_tracking.requests[-1][2]
    assert ours.get("Authorization") == theirs.get("Authorization") is not None
    assert SECRET not in fake_tracking.requests[-2][1]  # never in the path or query


@pytest.mark.parametrize(
    "status, user, wording",
    [
        (401, "alice", "refused user 'alice' (HTTP 401)"),
        (401, None, "refused requests without a user and password (HTTP 401)"),
        (403, "alice", "gives no access to its models to user 'alice' (HTTP 403)"),
    ],
)
def test_credentials_the_server_refuses_stop_the_change_before_it_is_made(
    status, user, wording, fake_tracking, clean_mlflow_env
) -> None:
    fake_tracking.refuse = status
    uri = fake_tracking.with_credentials(user, SECRET) if user else fake_tracking.url
    clean_mlflow_env.setenv("MLFLOW_TRACKING_URI", uri)
    with pytest.raises(AccessDenied) as refused:
        check_mirror_access()
    message = str(refused.value)
    assert message.startswith(f"the MLflow server at {redact(uri)} {wording}: ")
    assert "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD" in message
    assert SECRET not in message and "\n" not in message
    assert isinstance(refused.value, PermissionError)
    fake_tracking.refuse = 500  # any other answer is left to the call that follows
    check_mirror_access()
    clean_mlflow_env.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{dead_port()}")
    check_mirror_access()  # down: the change goes ahead, the mirror catches up with `adapters sync`


def test_mlflow_tls_settings_are_honoured(fake_tls_tracking, certificate, clean_mlflow_env, caplog) -> None:
    clean_mlflow_env.setenv("MLFLOW_TRACKING_URI", fake_tls_tracking.with_credentials("alice", SECRET))
    with caplog.at_level(logging.WARNING, logger="adapterlab.registry"):
        mirror_alias("model", "production", 1)  # self-signed: refused without the settings
    assert [r.getMessage() for r in caplog.records if "mirror is behind" in r.getMessage()] != []
    assert fake_tls_tracking.requests == []
    clean_mlflow_env.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", str(certificate[0]))
    mirror_alias("model", "production", 2)
    clean_mlflow_env.delenv("MLFLOW_TRACKING_SERVER_CERT_PATH")
    clean_mlflow_env.setenv("MLFLOW_TRACKING_INSECURE_TLS", "true")
    mirror_alias("model", "production", 3)
    posted = [
        json.loads(body)["version"] for method, _, _, body in fake_tls_tracking.requests if method == "POST"
    ]
    assert posted == ["2", "3"]
    assert all(SECRET not in record.getMessage() for record in caplog.records)


# --- what we print ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("postgresql://u:p@ss@host/db", "postgresql://***@host/db"),
        ("postgresql+psycopg://u:pa/s?s#@db:5432/r?x=1", "postgresql+psycopg://***@db:5432/r?x=1"),
        ("http://user:pass@host:5000", "http://***@host:5000"),
        (
            "connection to 'http://a:b@h1' and https://c:d@h2/x failed",
            "connection to 'http://***@h1' and https://***@h2/x failed",
        ),
        ("host=db user=u password=hunter2 dbname=r", "host=db user=u password=*** dbname=r"),
        ("sqlite:////tmp/home/registry.db", "sqlite:////tmp/home/registry.db"),
        ("http://host:5000/api/2.0/mlflow", "http://host:5000/api/2.0/mlflow"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


def run_cli(
    *args: str, env: dict[str, str], timeout: float = 240
) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    result = subprocess.run(
        [ADAPTERS, *args], capture_output=True, text=True, env={**os.environ, **env}, timeout=timeout
    )
    return result, time.monotonic() - start


def test_a_down_server_is_given_seconds_not_minutes(
    registry_env, tiny_base, make_lora, monkeypatch, tmp_path
) -> None:
    """MLflow's own retries would take minutes; the probe answers at once (timed in-process: no imports)."""
    from adapterlab.errors import RegistryUnavailable
    from adapterlab.registry import promote, register_adapter

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://u:{SECRET}@127.0.0.1:{dead_port()}")
    monkeypatch.setenv("ADAPTERLAB_ARTIFACT_ROOT", (tmp_path / "home" / "artifacts").as_uri())
    start = time.monotonic()
    version = register_adapter(make_lora(seed=1), name="quick", base=tiny_base)
    promote("quick:1", alias="production")
    assert time.monotonic() - start < 10 and version.mlflow_version is None
    monkeypatch.delenv("ADAPTERLAB_ARTIFACT_ROOT")  # now the files would go through the dead server
    start = time.monotonic()
    with pytest.raises(RegistryUnavailable, match="does not answer"):
        register_adapter(make_lora(seed=2), name="quick", base=tiny_base)
    assert time.monotonic() - start < 10


def test_database_and_mlflow_errors_quote_no_secret(registry_env, tiny_base, make_lora) -> None:
    port = dead_port()
    failing = [
        (("--registry-url", f"postgresql://u:{SECRET}@127.0.0.1:{port}/db", "list"), {}),
        (
            (
                "register",
                str(make_lora(seed=1)),
                "--name",
                "x",
                "--base",
                str(tiny_base),
            ),  # artifacts proxied by a dead server
            {"MLFLOW_TRACKING_URI": f"http://u:{SECRET}@127.0.0.1:{port}"},
        ),
    ]
    for args, env in failing:
        result, _ = run_cli(*args, env=env)
        assert result.returncode == 1 and result.stderr.startswith("Error: "), result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert "s3cr" not in result.stderr and "pw@" not in result.stderr, result.stderr


# --- a server that is down, and catching up ---------------------------------------------------


def test_a_down_server_costs_seconds_and_sync_catches_up(
    registry_env, tiny_base, make_lora, tmp_path
) -> None:
    home = tmp_path / "home"
    down = {
        "MLFLOW_TRACKING_URI": f"http://u:{SECRET}@127.0.0.1:{dead_port()}",
        "ADAPTERLAB_ARTIFACT_ROOT": (home / "artifacts").as_uri(),
    }
    up: dict[str, str] = {}  # the home's SQLite MLflow store, as registry_env set it
    base = ("--base", str(tiny_base))
    first, baseline = run_cli("register", str(make_lora(seed=1)), "--name", "late", *base, env=up)
    assert first.returncode == 0
    assert run_cli("promote", "late:1", "--alias", "production", env=up)[0].returncode == 0

    # a fresh process spends most of its time importing; on a busy machine that alone can take
    # 10 s, so the process is compared with one whose MLflow was up (the mirror's own cost is
    # timed in-process in test_a_down_server_is_given_seconds_not_minutes)
    registered, seconds = run_cli(
        "register", str(make_lora(seed=2)), "--name", "late", *base, "--json", env=down
    )
    assert registered.returncode == 0 and seconds < baseline + 10, registered.stderr
    assert (
        json.loads(registered.stdout)["version"] == 2
        and json.loads(registered.stdout)["mlflow_version"] is None
    )
    assert "the MLflow mirror is behind: late:2 was not mirrored" in registered.stderr
    for args in (
        ("promote", "late:2", "--alias", "production"),
        ("promote", "late:1", "--alias", "staging"),
        ("demote", "late", "--alias", "production"),
    ):
        result, seconds = run_cli(*args, env=down)
        assert result.returncode == 0 and seconds < baseline + 10 and "mirror is behind" in result.stderr, (
            result.stderr
        )
    assert run_cli("promote", "late:2", "--alias", "production", env=down)[0].returncode == 0
    for result in (registered,):
        assert SECRET not in result.stderr + result.stdout and "s3cr" not in result.stderr

    uri = os.environ["MLFLOW_TRACKING_URI"]
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    assert client.get_registered_model("late").aliases == {"production": 1}  # behind
    synced, _ = run_cli("sync", "--json", env=up)
    assert synced.returncode == 0, synced.stderr
    assert json.loads(synced.stdout) == {
        "versions": ["late:2"],
        "aliases": ["late@production -> 2", "late@staging -> 1"],
        "failed": [],
    }
    versions = {
        v.tags["adapterlab.version"]: int(v.version) for v in client.search_model_versions("name = 'late'")
    }
    assert client.get_registered_model("late").aliases == {
        "production": versions["2"],
        "staging": versions["1"],
    }
    again, _ = run_cli("sync", "--json", env=up)
    assert json.loads(again.stdout) == {"versions": [], "aliases": [], "failed": []}
    assert len(client.search_model_versions("name = 'late'")) == 2

    refused, seconds = run_cli("sync", env=down)
    assert refused.returncode == 1 and seconds < baseline + 10 and "does not answer" in refused.stderr
    assert SECRET not in refused.stderr and "s3cr" not in refused.stderr


def test_sync_removes_an_alias_the_registry_dropped_and_finds_versions_mlflow_already_has(
    registry_env, tiny_base, make_lora
) -> None:
    from sqlalchemy import update

    from adapterlab.registry import Registry, demote, promote, register_adapter
    from adapterlab.registry.db.tables import versions

    first = register_adapter(make_lora(seed=1), name="m", base=tiny_base)
    promote("m:1", alias="staging")
    uri = os.environ["MLFLOW_TRACKING_URI"]
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    os.environ["ADAPTERLAB_MLFLOW_MIRROR"] = "0"
    try:
        demote("m", alias="staging")  # MLflow keeps @staging: behind
    finally:
        del os.environ["ADAPTERLAB_MLFLOW_MIRROR"]
    registry = Registry.open()
    with registry.database.writing() as connection:  # a registration that died before recording its number
        connection.execute(update(versions).values(mlflow_version=None))
    report = registry.sync()
    assert report.versions == ["m:1"] and report.aliases == ["m@staging removed"]
    assert len(client.search_model_versions("name = 'm'")) == 1  # found, not created twice
    assert client.get_registered_model("m").aliases == {}
    assert registry.sync().to_dict() == {"versions": [], "aliases": [], "failed": []}
    registry.close()
    assert first.mlflow_version == 1


@pytest.mark.slow
def test_concurrent_first_use_of_a_fresh_home_mirrors_every_version(tiny_base, make_lora, tmp_path) -> None:
    home = tmp_path / "fresh"  # no registry, no MLflow store yet: the embedded defaults
    unset = (
        "ADAPTERLAB_REGISTRY_URL",
        "MLFLOW_TRACKING_URI",
        "ADAPTERLAB_ARTIFACT_ROOT",
        "ADAPTERLAB_MLFLOW_MIRROR",
    )
    env = {
        **{k: v for k, v in os.environ.items() if k not in unset},
        "ADAPTERLAB_HOME": str(home),
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    folders = [make_lora(seed=seed) for seed in range(4)]
    workers = [
        subprocess.Popen(
            [ADAPTERS, "register", str(folder), "--name", "first-use", "--base", str(tiny_base), "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for folder in folders
    ]
    results = [(worker.communicate(timeout=300), worker.returncode) for worker in workers]
    assert all(code == 0 and "Warning" not in err for (_, err), code in results), results
    assert sorted(json.loads(out)["version"] for (out, _), _ in results) == [1, 2, 3, 4]
    assert all(json.loads(out)["mlflow_version"] is not None for (out, _), _ in results)
    uri = f"sqlite:///{home / 'mlflow.db'}"
    mirrored = MlflowClient(tracking_uri=uri, registry_uri=uri).search_model_versions("name = 'first-use'")
    assert sorted(v.tags["adapterlab.version"] for v in mirrored) == ["1", "2", "3", "4"]
