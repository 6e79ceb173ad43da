"""Faults of the team stack: secrets that must not leak, a database that restarts under us.

The secret is both the databases' password and a password in the MLflow tracking URL.

Both run the real topology: the registry on PostgreSQL and an ``mlflow server`` on PostgreSQL
with proxied artifacts, driven through the ``adapters`` console script in fresh processes. The
restart happens on a PostgreSQL server of the test's own, so that it cuts no connection of other
tests (session-scoped engines elsewhere) or of other people sharing the machine's server.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def rest(server_url: str, endpoint: str, **query: str) -> dict:
    url = f"{server_url}/api/2.0/mlflow/{endpoint}?{urllib.parse.urlencode(query)}"
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def file_texts(folder: Path) -> dict[Path, str]:
    """Every file under ``folder`` as text (binary files decoded leniently: a secret is still found)."""
    return {
        path: path.read_bytes().decode("utf-8", "replace") for path in folder.rglob("*") if path.is_file()
    }


def test_a_database_password_never_appears_in_output_logs_or_mlflow(
    tmp_path: Path, password_databases, start_mlflow, adapters_cli, tiny_checkpoints
) -> None:
    secret = password_databases.password
    server = start_mlflow(password_databases.url(password_databases.mlflow))
    registry_url = password_databases.url(password_databases.registry)
    # the tracking URL carries credentials too: they travel as basic auth (this server ignores
    # them), never as part of the host name (an alias move must still reach the server)
    tracking_url = server.url.replace("http://", f"http://mlflow-user:{secret}@")
    env = {
        "ADAPTERLAB_HOME": str(tmp_path / "home"),
        "ADAPTERLAB_REGISTRY_URL": registry_url,
        "MLFLOW_TRACKING_URI": tracking_url,
    }
    ok = [
        ("db", "upgrade"),
        ("db", "current"),
        (
            "register",
            str(tiny_checkpoints.cls_adapter),
            "--name",
            "pw-check",
            "--base",
            str(tiny_checkpoints.cls_base),
            "--metric",
            "eval_accuracy=0.5",
        ),
        ("list",),
        ("show", "pw-check", "--json"),
        ("promote", "pw-check", "--alias", "production"),
        ("pull", "pw-check@production", "--to", str(tmp_path / "pulled")),
        ("predict", "pw-check@production", "--text", "where is my parcel", "--json"),
        ("export", "pw-check", "--to", str(tmp_path / "exported")),
    ]
    failing = [
        ("show", "no-such-adapter"),
        ("promote", "pw-check", "--alias", "production", "--require", "eval_accuracy>=0.9"),
        ("--registry-url", password_databases.url("no_such_database"), "list"),
        ("--registry-url", password_databases.url(password_databases.registry, host="127.0.0.1:1"), "list"),
        (
            "--registry-url",
            password_databases.url(password_databases.registry, host="127.0.0.1:notaport"),
            "list",
        ),
        ("--registry-url", registry_url.replace("+psycopg", "+nosuchdriver"), "list"),
    ]
    results = [adapters_cli(*args, env=env) for args in ok]
    with ThreadPoolExecutor(max_workers=3) as pool:  # independent of each other: save the start-up time
        results += list(pool.map(lambda args: adapters_cli(*args, env=env), failing))
    problems = [
        f"{r.command}: {r.stderr}"
        for r in results[: len(ok)]
        if r.returncode != 0 or "mirror is behind" in r.stderr
    ]
    for result in results[len(ok) :]:
        error = result.stderr.strip()
        if result.returncode != 1 or not error.startswith("Error: ") or len(error.splitlines()) != 1:
            problems.append(
                f"{result.command}: expected one 'Error: ' line and exit 1, got {result.returncode}: {error}"
            )
    problems += [f"{r.command} printed the password" for r in results if secret in r.stdout + r.stderr]
    assert [problem.replace(secret, "***") for problem in problems] == []  # the report itself leaks nothing

    leaks = [str(path) for path, text in file_texts(tmp_path).items() if secret in text]
    assert leaks == [], f"the password was written to {leaks}"  # includes the MLflow server's log
    model = rest(server.url, "registered-models/get", name="pw-check")["registered_model"]
    version = rest(server.url, "model-versions/get", name="pw-check", version="1")["model_version"]
    assert secret not in json.dumps(model) + json.dumps(version)
    assert model["aliases"] == [{"alias": "production", "version": "1"}]


def test_postgres_restarted_between_two_commands(
    tmp_path: Path, private_postgres, start_mlflow, adapters_cli, tiny_checkpoints
) -> None:
    """The CLI, this process's pooled registry engine and the MLflow server all outlive the restart."""
    from adapterlab.registry import show
    from adapterlab.registry.api import forget_registries

    registry_url = private_postgres.url(private_postgres.create_database())
    server = start_mlflow(private_postgres.url(private_postgres.create_database()))
    env = {
        "ADAPTERLAB_HOME": str(tmp_path / "home"),
        "ADAPTERLAB_REGISTRY_URL": registry_url,
        "MLFLOW_TRACKING_URI": server.url,
    }
    assert adapters_cli("db", "upgrade", env=env).returncode == 0
    first = adapters_cli(
        "register",
        str(tiny_checkpoints.cls_adapter),
        "--name",
        "restart-check",
        "--base",
        str(tiny_checkpoints.cls_base),
        env=env,
    )
    assert first.returncode == 0, first.stderr
    try:
        assert show("restart-check", registry_url=registry_url).version == 1  # pools a connection here too
        private_postgres.control("-m", "fast", "restart")  # every open connection is cut
        second = adapters_cli("promote", "restart-check:1", "--alias", "production", env=env)
        assert second.returncode == 0, second.stderr
        assert "was not updated" not in second.stderr  # the MLflow server answered the alias move too
        shown = adapters_cli("show", "restart-check@production", "--json", env=env)
        assert json.loads(shown.stdout)["version"] == 1
        assert show("restart-check@production", registry_url=registry_url).version == 1
        model = rest(server.url, "registered-models/get", name="restart-check")["registered_model"]
        assert model["aliases"] == [{"alias": "production", "version": "1"}]
    finally:
        forget_registries()
