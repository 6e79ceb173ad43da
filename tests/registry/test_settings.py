"""Where the registry lives when nothing is configured, and what each variable overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapterlab.registry import settings

VARIABLES = (
    "ADAPTERLAB_HOME",
    "ADAPTERLAB_REGISTRY_URL",
    "MLFLOW_TRACKING_URI",
    "ADAPTERLAB_ARTIFACT_ROOT",
    "ADAPTERLAB_USER",
)


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


@pytest.mark.parametrize("folder", ["team?a", "team#a", "team%41", "team a", "équipe-ü"])
def test_a_home_with_url_characters_keeps_everything_inside_it(
    bare_env: Path, monkeypatch: pytest.MonkeyPatch, folder: str, tiny_base: Path, make_lora
) -> None:
    from click.testing import CliRunner

    from adapterlab.cli.main import cli
    from adapterlab.registry.api import forget_registries

    home = bare_env / "homes" / folder
    monkeypatch.setenv("ADAPTERLAB_HOME", str(home))
    monkeypatch.setenv("ADAPTERLAB_MLFLOW_MIRROR", "0")
    assert settings.sqlite_file(settings.registry_url()) == home / "registry.db"
    assert settings.sqlite_file(settings.mlflow_tracking_uri()) == home / "mlflow.db"
    runner = CliRunner()
    try:
        registered = runner.invoke(
            cli, ["register", str(make_lora()), "--name", "x", "--base", str(tiny_base)]
        )
        assert registered.exit_code == 0, registered.output
        pulled = runner.invoke(cli, ["pull", "x:1", "--to", str(bare_env / "pulled")])
        assert pulled.exit_code == 0, pulled.output
    finally:
        forget_registries()
    assert (home / "registry.db").is_file() and (home / "artifacts").is_dir()
    assert sorted(path.name for path in (bare_env / "homes").iterdir()) == [folder]  # nothing beside the home
    assert (bare_env / "pulled" / "adapter_model.safetensors").is_file()


@pytest.mark.parametrize("layout", ["home is a file", "home under a file"])
def test_a_home_that_is_or_lies_under_a_file_is_one_line(
    bare_env: Path, monkeypatch: pytest.MonkeyPatch, layout: str
) -> None:
    from click.testing import CliRunner

    from adapterlab.cli.main import cli

    (bare_env / "file").write_text("not a folder")
    home = bare_env / "file" if layout == "home is a file" else bare_env / "file" / "home"
    monkeypatch.setenv("ADAPTERLAB_HOME", str(home))
    for args in (["list"], ["train", "--no-register"]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 1, result.output
        assert result.stderr.count("\n") == 1 and "choose a folder path" in result.stderr, result.stderr
        assert result.exception is None or isinstance(result.exception, SystemExit)
    assert (bare_env / "file").read_text() == "not a folder"


def test_mlflow_store_and_artifacts_stay_in_a_home_with_url_characters(
    bare_env: Path, monkeypatch: pytest.MonkeyPatch, mlflow_template: Path
) -> None:
    import shutil

    from mlflow import MlflowClient

    from adapterlab.training.tracking import check_tracking_reachable, default_artifact_location

    home = bare_env / "team?a #%41 é"
    home.mkdir()
    shutil.copyfile(mlflow_template, home / "mlflow.db")
    monkeypatch.setenv("ADAPTERLAB_HOME", str(home))
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    uri = settings.mlflow_tracking_uri()
    check_tracking_reachable(uri, "x")
    client = MlflowClient(uri)
    experiment = client.create_experiment("x", artifact_location=default_artifact_location(uri))
    run = client.create_run(experiment)
    (bare_env / "note.txt").write_text("hi")
    client.log_artifact(run.info.run_id, str(bare_env / "note.txt"))
    assert list(home.rglob("note.txt")), sorted(str(p) for p in bare_env.rglob("*"))
    # MLflow itself (store/db/utils.py: _make_parent_dirs_if_sqlite) slices the URL and makes an
    # empty folder named like the quoted path; nothing is ever written into it
    beside = [path for path in bare_env.iterdir() if path.name not in ("note.txt", home.name)]
    assert all(path.is_dir() and not any(path.iterdir()) for path in beside), beside
    assert (home / "mlflow.db").stat().st_size > 0
