"""The compose stack, checked by parsing: there is no Docker engine on CI machines.

Its MLflow basic-auth config runs for real in ``test_mlflow_auth.py`` (no Docker needed there).

The README's "For teams" section is parsed too, so the services, ports, defaults and client
settings it promises cannot drift from what ``docker-compose.yml`` actually starts.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_VAR = re.compile(r"\$\{(\w+):-([^}]*)\}")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def teams_section() -> str:
    readme = (ROOT / "README.md").read_text()
    _, found, section = readme.partition("\n## For teams\n")
    assert found, "README.md has no '## For teams' section"
    return section.split("\n## ", 1)[0]


def with_defaults(value: str) -> str:
    """A compose string as it is with no `.env`: every ``${VAR:-default}`` replaced by its default."""
    return COMPOSE_VAR.sub(lambda match: match.group(2), value)


def published_ports(service: dict) -> dict[int, tuple[str, int]]:
    """container port -> (host address, host port), from ``HOST:HOSTPORT:CONTAINERPORT`` entries."""
    ports = {}
    for entry in service.get("ports", []):
        host, host_port, container_port = with_defaults(str(entry)).split(":")
        ports[int(container_port)] = (host, int(host_port))
    return ports


def readme_table(section: str, header: str) -> list[list[str]]:
    lines = section.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip().strip("`") for cell in line.strip("|").split("|")])
    return rows


def readme_exports(section: str) -> dict[str, str]:
    return dict(re.findall(r"^\s+export (\w+)=(\S+)$", section, flags=re.MULTILINE))


def test_the_stack_has_the_services_the_readme_lists(compose, teams_section) -> None:
    listed = {row[0] for row in readme_table(teams_section, "| service |")}
    assert listed == set(compose["services"])
    assert {"postgres", "minio", "create-bucket", "mlflow", "migrate", "adapters"} <= listed


def test_every_published_port_is_bound_to_localhost_and_matches_the_readme(compose, teams_section) -> None:
    promised = {row[0]: row[2] for row in readme_table(teams_section, "| service |") if row[2]}
    for name, service in compose["services"].items():
        for host, host_port in published_ports(service).values():
            assert host == "127.0.0.1", f"{name} publishes beyond localhost"
            assert f"127.0.0.1:{host_port}" in promised.get(name, ""), f"README misses {name}'s port"
    published_services = {name for name, service in compose["services"].items() if service.get("ports")}
    assert published_services == set(promised)


def test_data_lives_in_named_volumes(compose) -> None:
    declared = set(compose["volumes"])
    mounts = {
        name: {str(volume).split(":")[0] for volume in service.get("volumes", [])}
        for name, service in compose["services"].items()
    }
    assert "postgres-data" in mounts["postgres"]
    assert "minio-data" in mounts["minio"]
    assert "mlflow-auth" in mounts["mlflow"]
    # bind mounts: files of this checkout, and the caller's folder
    used = {source for sources in mounts.values() for source in sources if not source.startswith((".", "$"))}
    assert used == declared


def test_services_start_in_order_on_health_and_one_shots_complete(compose) -> None:
    services = compose["services"]
    for name in ("postgres", "minio", "mlflow"):
        assert services[name]["healthcheck"]["test"], f"{name} has no healthcheck"
    assert services["create-bucket"]["depends_on"]["minio"]["condition"] == "service_healthy"
    assert services["mlflow"]["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "create-bucket": {"condition": "service_completed_successfully"},
    }
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["adapters"]["depends_on"] == {
        "migrate": {"condition": "service_completed_successfully"},
        "mlflow": {"condition": "service_healthy"},
    }
    for one_shot in ("create-bucket", "migrate"):
        assert services[one_shot]["restart"] == "no"


def test_mlflow_server_uses_postgres_and_proxies_artifacts_to_the_object_store(compose) -> None:
    mlflow = compose["services"]["mlflow"]
    command = [with_defaults(str(part)) for part in mlflow["command"]]
    assert command[:2] == ["mlflow", "server"]
    assert "--serve-artifacts" in command
    assert command[command.index("--artifacts-destination") + 1] == "s3://mlflow-artifacts"
    environment = {key: with_defaults(str(value)) for key, value in mlflow["environment"].items()}
    backend = urlsplit(environment["MLFLOW_BACKEND_STORE_URI"])
    assert (backend.scheme, backend.hostname, backend.path) == ("postgresql+psycopg", "postgres", "/mlflow")
    assert environment["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    # The server answers other containers by their service name, not only localhost.
    assert "mlflow:5000" in command[command.index("--allowed-hosts") + 1].split(",")
    create_db = (ROOT / "docker/postgres/create-databases.sql").read_text()
    assert "CREATE DATABASE mlflow;" in create_db
    assert any("create-databases.sql" in str(volume) for volume in compose["services"]["postgres"]["volumes"])


def test_clients_reach_the_stack_with_the_settings_the_readme_promises(compose, teams_section) -> None:
    services = compose["services"]
    exports = readme_exports(teams_section)
    assert set(exports) == {
        "ADAPTERLAB_REGISTRY_URL",
        "MLFLOW_TRACKING_URI",
        "MLFLOW_TRACKING_USERNAME",
        "MLFLOW_TRACKING_PASSWORD",
    }
    postgres_env = {
        key: with_defaults(str(value)) for key, value in services["postgres"]["environment"].items()
    }
    for name in ("adapters", "migrate"):
        inside = {key: with_defaults(str(value)) for key, value in services[name]["environment"].items()}
        assert set(exports) <= set(inside)
        registry = urlsplit(inside["ADAPTERLAB_REGISTRY_URL"])
        outside = urlsplit(exports["ADAPTERLAB_REGISTRY_URL"])
        # Same database and credentials; only the address differs (service name vs published port).
        assert (registry.scheme, registry.username, registry.password, registry.path) == (
            outside.scheme,
            outside.username,
            outside.password,
            outside.path,
        )
        assert (registry.hostname, registry.port) == ("postgres", 5432)
        assert inside["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
        for credential in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            assert inside[credential] == exports[credential]
    assert outside.username == postgres_env["POSTGRES_USER"]
    assert outside.password == postgres_env["POSTGRES_PASSWORD"]
    assert outside.path == "/" + postgres_env["POSTGRES_DB"]
    assert (outside.hostname, outside.port) == published_ports(services["postgres"])[5432]
    tracking = urlsplit(exports["MLFLOW_TRACKING_URI"])
    assert (tracking.hostname, tracking.port) == published_ports(services["mlflow"])[5000]


def test_every_setting_with_a_default_is_documented_with_that_default(teams_section) -> None:
    compose_text = (ROOT / "docker-compose.yml").read_text()
    in_compose: dict[str, set[str]] = {}
    for variable, default in COMPOSE_VAR.findall(compose_text):
        in_compose.setdefault(variable, set()).add(default)
    assert all(len(defaults) == 1 for defaults in in_compose.values()), in_compose
    documented = {row[0]: row[1] for row in readme_table(teams_section, "| variable |")}
    assert documented == {variable: defaults.pop() for variable, defaults in in_compose.items()}


def test_migrate_runs_the_schema_upgrade_with_the_cli_image(compose) -> None:
    migrate = compose["services"]["migrate"]
    assert migrate["build"]["target"] == "adapters"
    assert migrate["command"] == ["db", "upgrade"]
    assert compose["services"]["adapters"]["build"]["target"] == "adapters"
    assert compose["services"]["mlflow"]["build"]["target"] == "mlflow-server"


def test_dockerfile_installs_cpu_torch_before_the_project() -> None:
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    stages = {line.split(" AS ")[1]: line.split()[1] for line in lines if line.startswith("FROM ")}
    assert stages["python-base"] == "python:3.11-slim"
    assert {"mlflow-server", "adapters"} <= set(stages)
    adapters_stage = lines[lines.index("FROM python-base AS adapters") :]
    torch_step = next(i for i, line in enumerate(adapters_stage) if "torch==2.13.0" in line)
    project_step = next(i for i, line in enumerate(adapters_stage) if line.startswith('RUN pip install ".'))
    assert "download.pytorch.org/whl/cpu" in adapters_stage[torch_step]
    assert torch_step < project_step
    mlflow_stage = " ".join(lines[lines.index("FROM python-base AS mlflow-server") :])
    assert all(package in mlflow_stage for package in ("mlflow[auth]==", "psycopg", "boto3"))
    for folder in ("adapterlab", "registry", "training", "cli", "migrations"):
        assert f"COPY {folder} ./{folder}" in adapters_stage


def test_dockerignore_keeps_local_state_and_secrets_out_of_images() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".env", ".venv", ".adapterlab"} <= ignored


def test_postgres_is_not_published_on_5432_by_default(compose, teams_section) -> None:
    """A PostgreSQL already on this machine's 5432 (a developer's own) must not stop the stack."""
    host_ports = [
        port for service in compose["services"].values() for _, port in published_ports(service).values()
    ]
    assert 5432 not in host_ports
    postgres_port = compose["services"]["postgres"]["ports"][0]
    assert postgres_port.startswith("${POSTGRES_BIND:-127.0.0.1}:${POSTGRES_PORT:-"), (
        "the port must be overridable"
    )
    tunnel = re.search(r"ssh -N -L (\d+):127.0.0.1:(\d+) -L (\d+):127.0.0.1:(\d+)", teams_section)
    assert tunnel, "the README shows no SSH tunnel for teammates"
    published = {port for _, port in published_ports(compose["services"]["postgres"]).values()}
    published |= {port for _, port in published_ports(compose["services"]["mlflow"]).values()}
    assert {int(port) for port in tunnel.groups()} == published


def test_the_cli_container_works_in_the_callers_folder(compose) -> None:
    """`docker compose run --rm adapters train --data ./mine.csv` reads the caller's ./mine.csv."""
    adapters = compose["services"]["adapters"]
    binds = {str(volume).rsplit(":", 1)[1]: str(volume).rsplit(":", 1)[0] for volume in adapters["volumes"]}
    # ${PWD} is the caller's working folder (compose reads it from the calling shell), not the compose
    # file's folder, which a relative "." would mean
    assert binds[adapters["working_dir"]] == "${PWD:-.}"
    assert adapters["working_dir"] == "/work"
    assert adapters["user"] == "${ADAPTERLAB_UID:-10001}:${ADAPTERLAB_GID:-10001}"
    assert adapters["environment"]["ADAPTERLAB_USER"] == "${USER:-adapterlab}"
    dockerfile = (ROOT / "Dockerfile").read_text()
    # any uid can use the home volume (compose runs the CLI as the caller's uid)
    assert "chmod 1777 /data" in dockerfile and "HOME=/data" in dockerfile


def mlflow_auth_config_reader():
    """MLflow's own reader of the basic-auth config file, loaded alone: its package's ``__init__`` builds
    MLflow's whole server app (seconds, and its dependencies' warnings). ``test_mlflow_auth.py`` starts
    that app for real, with this file."""
    import importlib.util

    package = Path(importlib.util.find_spec("mlflow").origin).parent
    spec = importlib.util.spec_from_file_location("mlflow_auth_config", package / "server/auth/config.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.read_auth_config


def test_mlflow_asks_for_credentials_and_clients_have_them(compose, monkeypatch) -> None:
    read_auth_config = mlflow_auth_config_reader()
    mlflow = compose["services"]["mlflow"]
    command = [with_defaults(str(part)) for part in mlflow["command"]]
    assert command[command.index("--app-name") + 1] == "basic-auth"
    environment = {key: with_defaults(str(value)) for key, value in mlflow["environment"].items()}
    assert environment["MLFLOW_FLASK_SERVER_SECRET_KEY"]  # the auth app refuses to start without it
    mounts = {str(volume).split(":")[1]: str(volume).split(":")[0] for volume in mlflow["volumes"]}
    ini = ROOT / mounts[environment["MLFLOW_AUTH_CONFIG_PATH"]]
    monkeypatch.setenv("MLFLOW_AUTH_CONFIG_PATH", str(ini))
    for variable in ("MLFLOW_AUTH_ADMIN_USERNAME", "MLFLOW_AUTH_ADMIN_PASSWORD"):
        monkeypatch.setenv(variable, environment[variable])
    config = read_auth_config()  # MLflow's own reader of the file the server is given
    assert config.default_permission == "EDIT"
    auth_database = config.database_uri.removeprefix("sqlite:///")
    assert any(
        auth_database.startswith(target + "/") for target in mounts if not mounts[target].startswith(".")
    ), "the accounts must live in a volume, or they vanish with the container"
    clients = {key: with_defaults(str(value)) for key, value in compose["x-registry-env"].items()}
    assert (clients["MLFLOW_TRACKING_USERNAME"], clients["MLFLOW_TRACKING_PASSWORD"]) == (
        config.admin_username,
        config.admin_password,
    )
    # the health check stays unauthenticated (MLflow leaves /health open), so it needs no password
    assert "/health" in " ".join(mlflow["healthcheck"]["test"])
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "chown mlflow /var/lib/mlflow-auth" in dockerfile


def test_readme_says_how_teammates_reach_the_stack_behind_authentication(teams_section) -> None:
    for promise in ("basic-auth", "/api/2.0/mlflow/users/create", "ssh -N -L", "TLS", "MLFLOW_BIND=0.0.0.0"):
        assert promise in teams_section, promise
