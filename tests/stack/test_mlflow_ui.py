"""The MLflow UI, opened in a real browser, shows a registered model's versions and aliases."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


def test_model_page_shows_the_version_and_its_alias(
    postgres_database,
    mlflow_server,
    mlflow_model_page,
    tiny_checkpoints,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The registry's own flow (register, register, promote) mirrored into MLflow, seen in its UI."""
    from adapterlab.registry import promote, register_adapter
    from adapterlab.registry.api import forget_registries
    from adapterlab.registry.db.migrate import upgrade

    registry_url = postgres_database().url
    monkeypatch.setenv("ADAPTERLAB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ADAPTERLAB_REGISTRY_URL", registry_url)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    second = shutil.copytree(tiny_checkpoints.cls_adapter, tmp_path / "second")
    (second / "README.md").write_text("same weights, another model card: another version")
    try:
        upgrade(registry_url=registry_url)
        versions = [
            register_adapter(folder, name="ui-check", base=tiny_checkpoints.cls_base)
            for folder in (tiny_checkpoints.cls_adapter, second)
        ]
        promote("ui-check:1", alias="production")
    finally:
        forget_registries()
    assert [version.mlflow_version for version in versions] == [1, 2], "the registry did not mirror to MLflow"

    rows = mlflow_model_page(mlflow_server.url, "ui-check")
    assert "@ production" in rows[1], rows
    # The alias is on version 1 only: a page that printed it everywhere would not pass.
    assert "production" not in rows[2], rows
    # The files went through the server's proxy into the stand-in object store.
    keys = {version.artifact_uri.rstrip("/").rsplit("/", 1)[-1] for version in versions}  # one folder each
    stored = {path.parent.name for path in mlflow_server.artifacts.rglob("adapter_config.json")}
    assert len(keys) == 2 and keys <= stored, (keys, stored)


def test_browser_check_reads_versions_and_aliases_set_in_mlflow_directly(
    mlflow_server, mlflow_model_page
) -> None:
    """A control for the test above: the same page check, with the model made by MLflow's own client."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)
    run = client.create_run(client.create_experiment("control"))
    client.log_text(run.info.run_id, "{}", "adapter/adapter_config.json")
    client.create_registered_model("control")
    for _ in range(2):
        client.create_model_version("control", f"runs:/{run.info.run_id}/adapter", run_id=run.info.run_id)
    client.set_registered_model_alias("control", "staging", "2")
    rows = mlflow_model_page(mlflow_server.url, "control")
    assert "@ staging" in rows[2] and "staging" not in rows[1], rows


def shown_pair(chunks: list[str], key: str, value: str) -> bool:
    """Whether the page shows ``key`` with ``value`` right after it (a tag table's row)."""
    return any(chunks[i : i + 2] == [key, value] for i in range(len(chunks) - 1))


def test_mlflow_shows_run_names_and_each_versions_metrics_creator_and_base(
    postgres_database, mlflow_server, chromium, tiny_checkpoints, tmp_path: Path, monkeypatch
) -> None:
    """Two trainings through the real pipeline, then MLflow's run list and version page in Chromium."""
    from mlflow import MlflowClient
    from stack import browser

    from adapterlab.registry.api import forget_registries
    from adapterlab.registry.db.migrate import upgrade
    from adapterlab.training import TrainConfig, train

    registry_url = postgres_database().url
    monkeypatch.setenv("ADAPTERLAB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ADAPTERLAB_REGISTRY_URL", registry_url)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    monkeypatch.setenv("ADAPTERLAB_USER", "ui-tester")
    data = tmp_path / "mine.csv"
    data.write_text(
        "text,label\n" + "".join(f"box {i} is {('light', 'heavy')[i % 2]},{i % 2}\n" for i in range(24))
    )
    upgrade(registry_url=registry_url)
    try:
        results = [
            train(
                TrainConfig(
                    base=str(tiny_checkpoints.cls_base),
                    data=str(data),
                    name="ui-runs",
                    experiment="ui-runs",
                    max_steps=2,
                    eval_steps=2,
                    batch_size=8,
                    peft={"r": rank},
                )
            )
            for rank in (2, 4)
        ]
    finally:
        forget_registries()
    client = MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)
    experiment = client.get_experiment_by_name("ui-runs")
    names = {result.run_id: client.get_run(result.run_id).info.run_name for result in results}
    assert [names[result.run_id].split("-1")[0] for result in results] == [
        "ui-runs-lora-r2",
        "ui-runs-lora-r4",
    ]

    runs_shot = tmp_path / "mlflow-run-list.png"
    runs_page = browser.page_text(
        chromium(f"{mlflow_server.url}/#/experiments/{experiment.experiment_id}/runs", screenshot=runs_shot)
    )
    assert runs_shot.stat().st_size > 10_000, "the screenshot is (nearly) empty"
    assert all(runs_page.count(name) == 1 for name in names.values()), runs_page

    second = results[1]
    version_shot = tmp_path / "mlflow-model-version.png"
    version_page = browser.page_text(
        chromium(f"{mlflow_server.url}/#/models/ui-runs/versions/{second.version}", screenshot=version_shot)
    )
    assert version_shot.stat().st_size > 10_000, "the screenshot is (nearly) empty"
    assert shown_pair(version_page, "created_by", "ui-tester"), (
        version_page
    )  # MLflow's own "Created by" is empty
    for key, value in second.metrics.items():
        assert shown_pair(version_page, f"metric.{key}", f"{value:.6g}"), (key, version_page)
    assert shown_pair(version_page, "base", "tiny-bert-cls"), version_page
    assert names[second.run_id] in version_page  # "Source Run" names the run that trained it

    model_page = browser.page_text(chromium(f"{mlflow_server.url}/#/models/ui-runs"))
    assert shown_pair(model_page, "base", "tiny-bert-cls"), model_page  # the model list filters on it
    assert "Created by" in model_page
