"""Teammates reach MLflow behind its basic-auth app, as ``docker-compose.yml`` starts it.

A real ``mlflow server --app-name basic-auth`` on loopback, configured by the stack's own
``docker/mlflow/basic_auth.ini`` and the admin account the compose file passes; the admin creates a
teammate's account with the README's own command, then the ``adapters`` console script works as
that teammate. A wrong password, or none, is refused before anything is written.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from stack.servers import ROOT, MlflowAuth, MlflowServer, start_mlflow_server

pytestmark = [pytest.mark.slow]

TEAMMATE, TEAMMATE_PASSWORD = "alice", "alice-s3cret-passphrase"
WRONG_PASSWORD = "not-alices-passphrase"


def compose_admin() -> MlflowAuth:
    """The admin account ``docker-compose.yml`` gives the server when no ``.env`` overrides it."""
    environment = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["mlflow"][
        "environment"
    ]

    def default(variable: str) -> str:
        return re.fullmatch(r"\$\{\w+:-([^}]*)\}", environment[variable])[1]

    return MlflowAuth(default("MLFLOW_AUTH_ADMIN_USERNAME"), default("MLFLOW_AUTH_ADMIN_PASSWORD"))


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    folder = tmp_path_factory.mktemp("mlflow-auth")
    server = start_mlflow_server(folder, f"sqlite:///{folder / 'mlflow.db'}", compose_admin())
    try:
        create_account_as_the_readme_says(server)
        yield server
    finally:
        server.stop()


def create_account_as_the_readme_says(server: MlflowServer) -> None:
    """Runs the README's ``curl`` command (its address and the placeholder password filled in)."""
    readme = (ROOT / "README.md").read_text()
    command = re.search(r"^    (curl -u .*\\\n.*users/create)$", readme, flags=re.MULTILINE)
    assert command, "README.md shows no command that creates an MLflow account"
    command = (
        command[1].replace("http://127.0.0.1:5000", server.url).replace('"..."', f'"{TEAMMATE_PASSWORD}"')
    )
    assert f'"username": "{TEAMMATE}"' in command
    assert shutil.which("curl"), "the README's command needs curl"
    done = subprocess.run(
        ["bash", "-c", f"set -o pipefail; {command} --fail-with-body --silent --show-error"],
        env={"PATH": "/usr/bin:/bin", "MLFLOW_ADMIN_PASSWORD": server.auth.admin_password},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, f"{shlex.quote(command)}: {done.stderr}{done.stdout}"
    assert json.loads(done.stdout)["user"]["username"] == TEAMMATE


def as_admin(server: MlflowServer, endpoint: str, **query: str) -> dict:
    return server.rest("GET", endpoint, query, user=server.auth.admin, password=server.auth.admin_password)


def client_env(server: MlflowServer, home: Path, password: str | None) -> dict[str, str]:
    env = {"ADAPTERLAB_HOME": str(home), "MLFLOW_TRACKING_URI": server.url}
    if password is None:  # none at all, even if the calling shell has some
        return {**env, "MLFLOW_TRACKING_USERNAME": "", "MLFLOW_TRACKING_PASSWORD": ""}
    return {**env, "MLFLOW_TRACKING_USERNAME": TEAMMATE, "MLFLOW_TRACKING_PASSWORD": password}


def register_args(tiny_checkpoints, name: str) -> tuple[str, ...]:
    return (
        "register",
        str(tiny_checkpoints.cls_adapter),
        "--name",
        name,
        "--base",
        str(tiny_checkpoints.cls_base),
    )


def test_a_teammate_account_registers_promotes_and_syncs(
    auth_server, tmp_path: Path, adapters_cli, tiny_checkpoints
) -> None:
    env = client_env(auth_server, tmp_path / "home", TEAMMATE_PASSWORD)
    registered = adapters_cli(*register_args(tiny_checkpoints, "team-auth"), "--json", env=env)
    assert registered.returncode == 0, registered.stderr
    assert "mirror is behind" not in registered.stderr
    assert json.loads(registered.stdout)["mlflow_version"] == 1
    version = as_admin(auth_server, "model-versions/get", name="team-auth", version="1")["model_version"]
    assert {tag["key"]: tag["value"] for tag in version["tags"]}["adapterlab.version"] == "1"

    promoted = adapters_cli("promote", "team-auth", "--alias", "production", env=env)
    assert promoted.returncode == 0, promoted.stderr
    assert "mirror is behind" not in promoted.stderr
    model = as_admin(auth_server, "registered-models/get", name="team-auth")["registered_model"]
    assert model["aliases"] == [{"alias": "production", "version": "1"}]

    # a version registered with the mirror off reaches MLflow through `adapters sync`, as alice
    lm_env = {**env, "ADAPTERLAB_MLFLOW_MIRROR": "0"}
    lm = (
        "register",
        str(tiny_checkpoints.lm_adapter),
        "--name",
        "team-lm",
        "--base",
        str(tiny_checkpoints.lm_base),
    )
    assert adapters_cli(*lm, env=lm_env).returncode == 0
    synced = adapters_cli("sync", env=env)
    assert synced.returncode == 0, synced.stderr
    assert "mirrored team-lm:1" in synced.stdout
    assert as_admin(auth_server, "model-versions/get", name="team-lm", version="1")["model_version"]


def test_a_wrong_or_missing_password_is_refused_before_anything_is_written(
    auth_server, tmp_path: Path, adapters_cli, tiny_checkpoints
) -> None:
    home = tmp_path / "home"
    teammate = client_env(auth_server, home, TEAMMATE_PASSWORD)
    assert adapters_cli(*register_args(tiny_checkpoints, "team-refused"), env=teammate).returncode == 0
    assert adapters_cli("promote", "team-refused", "--alias", "production", env=teammate).returncode == 0
    before = as_admin(auth_server, "registered-models/get", name="team-refused")["registered_model"]
    lm = ("register", str(tiny_checkpoints.lm_adapter), "--name", "team-refused-lm", "--base")
    attempts = [
        (*lm, str(tiny_checkpoints.lm_base)),
        ("promote", "team-refused", "--alias", "staging"),
        ("demote", "team-refused", "--alias", "production"),
        ("sync",),
    ]
    for password, who in [
        (WRONG_PASSWORD, f"user '{TEAMMATE}'"),
        (None, "requests without a user and password"),
    ]:
        refusal = (
            f"Error: the MLflow server at {auth_server.url} refused {who} (HTTP 401): set MLFLOW_TRACKING_"
        )
        env = client_env(auth_server, home, password)
        # files stored elsewhere than MLflow: still refused before they are stored or the version is written
        local_files = {**env, "ADAPTERLAB_ARTIFACT_ROOT": (tmp_path / "artifacts").as_uri()}
        for args, extra in [(attempt, env) for attempt in attempts] + [(attempts[0], local_files)]:
            refused = adapters_cli(*args, env=extra)
            assert refused.returncode == 1, (args, refused.stdout, refused.stderr)
            assert refused.stdout == ""
            assert refused.stderr.startswith(refusal) and refused.stderr.count("\n") == 1, refused.stderr
            assert WRONG_PASSWORD not in refused.stderr and "Traceback" not in refused.stderr

    # nothing half-written: the registry, its files and MLflow are as they were before the refusals
    env = client_env(auth_server, home, WRONG_PASSWORD)
    listed = adapters_cli("list", "--json", env=env)
    assert [(row["name"], row["version"]) for row in json.loads(listed.stdout)] == [("team-refused", 1)]
    shown = adapters_cli("show", "team-refused", "--json", env=env)
    assert shown.returncode == 0 and WRONG_PASSWORD not in shown.stdout + shown.stderr
    assert json.loads(shown.stdout)["aliases"] == ["production"]
    history = adapters_cli("history", "team-refused", "--json", env=env)
    assert [row["alias"] for row in json.loads(history.stdout)] == ["production"]
    assert not (tmp_path / "artifacts").exists()
    assert as_admin(auth_server, "registered-models/get", name="team-refused")["registered_model"] == before
    found = as_admin(auth_server, "registered-models/search", filter="name = 'team-refused-lm'")
    assert found.get("registered_models", []) == []
