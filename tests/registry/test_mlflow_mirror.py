"""Each version is an MLflow model version; aliases follow promote / demote."""

from __future__ import annotations

import os

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from adapterlab.registry import demote, promote, register_adapter
from adapterlab.registry.mlflow.pyfunc_model import model_uri


def client() -> MlflowClient:
    uri = os.environ["MLFLOW_TRACKING_URI"]
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def test_versions_and_aliases_are_mirrored(registry_env, tiny_base, make_lora) -> None:
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    experiment = client().create_experiment(
        "training", artifact_location=(os.environ["ADAPTERLAB_HOME"] + "/runs")
    )
    run = client().create_run(experiment)
    first = register_adapter(
        make_lora(seed=1),
        name="mirrored",
        base=tiny_base,
        mlflow_run_id=run.info.run_id,
        metrics={"eval_accuracy": 0.9125, "eval_loss": 0.25},
    )
    second = register_adapter(make_lora(seed=2), name="mirrored", base=tiny_base)

    mirrored = client().get_model_version("mirrored", str(first.mlflow_version))
    assert mirrored.run_id == run.info.run_id and mirrored.source == model_uri(first)  # an MLflow Model
    assert mirrored.tags["base"] == "tiny-bert" and mirrored.tags["fingerprint"] == first.base.fingerprint
    assert mirrored.tags["task"] == "FEATURE_EXTRACTION" and mirrored.tags["method"] == "LORA"
    assert mirrored.tags["sha256"] == first.sha256 and mirrored.tags["adapterlab.version"] == "1"
    # what MLflow's version page cannot show by itself: the metrics and who registered it
    assert mirrored.tags["metric.eval_accuracy"] == "0.9125" and mirrored.tags["metric.eval_loss"] == "0.25"
    assert mirrored.tags["created_by"] == "tester" == first.created_by
    assert "metric.eval_accuracy" not in client().get_model_version("mirrored", "2").tags
    # MLflow's model list filters by base
    (model,) = client().search_registered_models(filter_string="tags.base = 'tiny-bert'")
    assert model.name == "mirrored" and model.tags["base"] == "tiny-bert"
    assert client().search_registered_models(filter_string="tags.base = 'other-base'") == []

    promote("mirrored:1", alias="production")
    assert int(client().get_model_version_by_alias("mirrored", "production").version) == first.mlflow_version
    promote("mirrored:2", alias="production")
    assert int(client().get_model_version_by_alias("mirrored", "production").version) == second.mlflow_version
    demote("mirrored", alias="production")
    with pytest.raises(MlflowException):
        client().get_model_version_by_alias("mirrored", "production")


def test_mirror_can_be_turned_off(registry_env, tiny_base, make_lora, monkeypatch) -> None:
    monkeypatch.setenv("ADAPTERLAB_MLFLOW_MIRROR", "0")
    version = register_adapter(make_lora(seed=1), name="unmirrored", base=tiny_base)
    assert version.mlflow_version is None
    promote("unmirrored:1", alias="production")
    assert client().search_registered_models(filter_string="name='unmirrored'") == []
