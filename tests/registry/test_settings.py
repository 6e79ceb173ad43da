"""Where the registry lives when nothing is configured, and what each variable overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapterlab.registry import settings

VARIABLES = ("ADAPTERLAB_HOME", "ADAPTERLAB_REGISTRY_URL", "MLFLOW_TRACKING_URI", "ADAPTERLAB_ARTIFACT_ROOT",
             "ADAPTERLAB_USER")  # fmt: skip


@pytest.fixture
def bare_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_defaults_live_in_dot_adapterlab_of_the_working_directory(bare_env: Path) -> None:
    home = bare_env / ".adapterlab"
    assert settings.adapterlab_home() == home
    assert settings.registry_url() == f"sqlite:///{home / 'registry.db'}"
    assert settings.mlflow_tracking_uri() == f"sqlite:///{home / 'mlflow.db'}"
    assert settings.artifact_root() == (home / "artifacts").as_uri()


def test_each_variable_and_the_cli_option_override(bare_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADAPTERLAB_HOME", str(bare_env / "team"))
    assert settings.registry_url() == f"sqlite:///{bare_env / 'team' / 'registry.db'}"
    monkeypatch.setenv("ADAPTERLAB_REGISTRY_URL", "postgresql://registry@db/adapters")
    assert settings.registry_url() == "postgresql://registry@db/adapters"
    assert settings.registry_url("sqlite:///other.db") == "sqlite:///other.db"  # --registry-url wins
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert settings.mlflow_tracking_uri() == "http://127.0.0.1:5000"
    assert settings.artifact_root() == "mlflow-artifacts:/adapterlab"  # the server's proxied store
    monkeypatch.setenv("ADAPTERLAB_USER", "ci-bot")
    assert settings.current_user() == "ci-bot"
