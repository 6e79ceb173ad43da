"""Every mirrored version is an MLflow Model: ``mlflow.pyfunc.load_model("models:/NAME@production")``.

Its predictions must be ``adapters predict``'s; its base is found by fingerprint (or given with
``ADAPTERLAB_BASE`` / ``model_config``), and a missing or wrong base is one clear line.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from models import minilm_dir, save_lora_adapter, save_tiny_model

from adapterlab.cli.main import cli
from adapterlab.errors import (
    BaseModelMismatch,
    BaseModelNotFound,
    CheckpointError,
    ChecksumMismatch,
    InvalidConfig,
)
from adapterlab.registry import promote, register_adapter, show
from adapterlab.registry.files.adapter_folder import folder_files, manifest_digest

TEXTS = ["My parcel never arrived and nobody answers", "Thanks, the delivery was quick"]
LABELS = ["no_complaint", "complaint"]


@dataclass(frozen=True)
class Checkpoints:
    minilm_adapter: Path  # LoRA SEQ_CLS on the real MiniLM, with labels.json
    gpt2_base: Path  # tiny GPT-2 with MiniLM's tokenizer
    gpt2_adapter: Path  # LoRA CAUSAL_LM on it


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> Checkpoints:
    from adapterlab.labels import write_labels

    root = tmp_path_factory.mktemp("pyfunc-models")
    minilm_adapter = save_lora_adapter(minilm_dir(), root / "minilm-cls", "SEQ_CLS")
    write_labels(minilm_adapter, LABELS)
    gpt2_base = save_tiny_model(root / "tiny-gpt2", "CAUSAL_LM")
    gpt2_adapter = save_lora_adapter(gpt2_base, root / "gpt2-lm", "CAUSAL_LM")
    return Checkpoints(minilm_adapter, gpt2_base, gpt2_adapter)


def cli_prediction(ref: str, text: str, *options: str) -> dict:
    result = CliRunner().invoke(cli, ["predict", ref, "--text", text, "--json", *options])
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def mlflow_source(name: str, alias: str) -> Path:
    uri = os.environ["MLFLOW_TRACKING_URI"]
    version = MlflowClient(tracking_uri=uri, registry_uri=uri).get_model_version_by_alias(name, alias)
    return Path(version.source.removeprefix("file://"))


def test_a_classifier_version_loads_and_predicts_like_adapters_predict(
    registry_env, checkpoints: Checkpoints
) -> None:
    version = register_adapter(checkpoints.minilm_adapter, name="minilm-cls", base=minilm_dir())
    promote(version.ref, alias="production")

    source = mlflow_source("minilm-cls", "production")
    flavor = yaml.safe_load((source / "MLmodel").read_text())["flavors"]["python_function"]
    assert (
        flavor["loader_module"] == "adapterlab.registry.mlflow.pyfunc_flavor" and flavor["data"] == "adapter"
    )
    assert {"python_env.yaml", "requirements.txt", "adapterlab.json"} <= {p.name for p in source.iterdir()}
    assert manifest_digest(folder_files(source / "adapter")) == version.sha256  # the registry's files, all
    assert (
        json.loads((source / "adapterlab.json").read_text())["base"]["fingerprint"]
        == version.base.fingerprint
    )

    model = mlflow.pyfunc.load_model("models:/minilm-cls@production")
    rows = model.predict(TEXTS)
    expected = [cli_prediction("minilm-cls@production", text) for text in TEXTS]
    assert [row["label"] for row in rows] == [each["label"] for each in expected]
    assert [row["score"] for row in rows] == pytest.approx(
        [each["probability"] for each in expected], abs=1e-6
    )
    assert {row["label"] for row in rows} <= set(LABELS)
    assert model.predict(pd.DataFrame({"text": TEXTS})) == rows
    assert model.predict(pd.Series(TEXTS)) == rows
    assert model.predict(np.array(TEXTS)) == rows  # what serving makes of {"inputs": [...]}
    for bad in (["  "], [], pd.DataFrame({"a": TEXTS, "b": TEXTS}), [1, 2]):
        with pytest.raises(InvalidConfig) as refused:
            model.predict(bad)
        assert "\n" not in str(refused.value)


def test_a_version_of_a_task_without_predictions_says_so_on_load(registry_env, tiny_base, make_lora) -> None:
    version = register_adapter(make_lora(seed=1), name="features", base=tiny_base)  # FEATURE_EXTRACTION
    with pytest.raises(InvalidConfig, match="features:1 is a FEATURE_EXTRACTION adapter; predict runs"):
        mlflow.pyfunc.load_model(f"models:/features/{version.mlflow_version}")


def test_a_language_model_version_generates_the_text_adapters_predict_does(
    registry_env, checkpoints: Checkpoints
) -> None:
    version = register_adapter(checkpoints.gpt2_adapter, name="gpt2-lm", base=checkpoints.gpt2_base)
    promote(version.ref, alias="production")

    model = mlflow.pyfunc.load_model("models:/gpt2-lm@production")
    prompts = ["hello world", TEXTS[0]]
    expected = [cli_prediction("gpt2-lm@production", text)["generated_text"] for text in prompts]
    assert model.predict(prompts) == expected and all(expected)
    short = cli_prediction("gpt2-lm@production", prompts[0], "--max-new-tokens", "3")["generated_text"]
    assert model.predict(prompts[:1], params={"max_new_tokens": 3}) == [short]
    assert len(short) < len(expected[0])


def test_the_base_is_found_by_fingerprint_or_given_and_a_wrong_or_missing_one_is_one_line(
    registry_env, checkpoints: Checkpoints, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = register_adapter(checkpoints.gpt2_adapter, name="gpt2-here", base=checkpoints.gpt2_base)
    expected = cli_prediction(reference.ref, "hello")["generated_text"]
    moved = shutil.copytree(checkpoints.gpt2_base, tmp_path / "tiny-gpt2-elsewhere")
    version = register_adapter(checkpoints.gpt2_adapter, name="gpt2-moved", base=moved)
    promote(version.ref, alias="production")
    with monkeypatch.context() as isolated:  # no registry to ask: only the Hugging Face cache and the Hub
        isolated.setenv("ADAPTERLAB_REGISTRY_URL", f"sqlite:///{tmp_path / 'absent.db'}")
        isolated.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # a closed port: offline at once
        with pytest.raises(BaseModelNotFound) as missing:
            mlflow.pyfunc.load_model("models:/gpt2-moved@production")
    message = str(missing.value)
    assert "ADAPTERLAB_BASE" in message and version.base.fingerprint[:12] in message and "\n" not in message
    assert str(moved) not in message  # the model folder holds no local path to leak
    assert not (tmp_path / "absent.db").exists()  # an unconfigured registry is not created

    assert mlflow.pyfunc.load_model("models:/gpt2-moved@production").predict(["hello"]) == [expected]
    shutil.rmtree(moved)  # the folder it was registered from is gone...
    # ...but the registry knows another folder with the same weights (where gpt2-here was registered from)
    assert mlflow.pyfunc.load_model("models:/gpt2-moved@production").predict("hello") == [expected]

    monkeypatch.setenv("ADAPTERLAB_BASE", str(checkpoints.gpt2_base))  # given: same weights
    assert mlflow.pyfunc.load_model("models:/gpt2-moved@production").predict(["hello"]) == [expected]
    monkeypatch.setenv("ADAPTERLAB_BASE", str(minilm_dir()))  # given: other weights
    with pytest.raises(BaseModelMismatch) as wrong:
        mlflow.pyfunc.load_model("models:/gpt2-moved@production")
    assert "holds other weights" in str(wrong.value) and "\n" not in str(wrong.value)
    loaded = mlflow.pyfunc.load_model(  # model_config wins over the environment
        "models:/gpt2-moved@production", model_config={"base": str(checkpoints.gpt2_base)}
    )
    assert loaded.predict(pd.DataFrame({"prompt": ["hello"]})) == [expected]
    monkeypatch.setenv("MLFLOW_PYFUNC_INFERENCE_CONFIG", json.dumps({"base": str(checkpoints.gpt2_base)}))
    assert mlflow.pyfunc.load_model("models:/gpt2-moved@production").predict("hello") == [
        expected
    ]  # serve's way


def test_altered_files_in_the_model_folder_are_refused(registry_env, checkpoints: Checkpoints) -> None:
    version = register_adapter(checkpoints.gpt2_adapter, name="gpt2-altered", base=checkpoints.gpt2_base)
    promote(version.ref, alias="production")
    source = mlflow_source("gpt2-altered", "production")
    weights = source / "adapter" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(ChecksumMismatch) as altered:
        mlflow.pyfunc.load_model("models:/gpt2-altered@production")
    assert "sha256" in str(altered.value) and "\n" not in str(altered.value)

    # the digest beside the files altered to match: the registry's record still refuses them
    identity = json.loads((source / "adapterlab.json").read_text())
    identity["sha256"] = manifest_digest(folder_files(source / "adapter"))
    (source / "adapterlab.json").write_text(json.dumps(identity))
    with pytest.raises(ChecksumMismatch, match="the registry records for gpt2-altered:1") as altered:
        mlflow.pyfunc.load_model("models:/gpt2-altered@production")
    assert "\n" not in str(altered.value)

    (source / "adapterlab.json").write_text('{"format": 1, "name": "gpt2-altered"}')
    with pytest.raises(CheckpointError, match="adapterlab.json is missing or unreadable") as garbled:
        mlflow.pyfunc.load_model("models:/gpt2-altered@production")
    assert "re-register" in str(garbled.value) and "\n" not in str(garbled.value)


def test_the_loader_module_imports_nothing_heavy() -> None:
    code = (
        "import sys, adapterlab.registry.mlflow.pyfunc_flavor\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers', 'mlflow'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_sync_turns_versions_mirrored_as_bare_files_into_mlflow_models(
    registry_env, checkpoints: Checkpoints, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, an MLflow version's source was the adapter files alone, which MLflow cannot load."""
    from adapterlab.registry import Registry
    from adapterlab.registry.db.store import record_mlflow_version

    monkeypatch.setenv("ADAPTERLAB_MLFLOW_MIRROR", "0")
    version = register_adapter(checkpoints.gpt2_adapter, name="gpt2-old", base=checkpoints.gpt2_base)
    monkeypatch.delenv("ADAPTERLAB_MLFLOW_MIRROR")
    uri = os.environ["MLFLOW_TRACKING_URI"]
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model("gpt2-old")
    tags = {"adapterlab.version": "1", "sha256": version.sha256}
    legacy = client.create_model_version("gpt2-old", source=version.artifact_uri, tags=tags)
    registry = Registry.open()
    record_mlflow_version(registry.database, "gpt2-old", 1, int(legacy.version))
    promote(version.ref, alias="production")
    assert client.get_registered_model("gpt2-old").aliases == {"production": 1}
    with pytest.raises(MlflowException, match="MLmodel"):
        mlflow.pyfunc.load_model("models:/gpt2-old@production")

    report = registry.sync()
    assert report.to_dict() == {
        "versions": ["gpt2-old:1"],
        "aliases": ["gpt2-old@production -> 1"],
        "failed": [],
    }
    assert client.get_registered_model("gpt2-old").aliases == {"production": 2}
    assert (
        show("gpt2-old:1").mlflow_version == 2 and len(client.search_model_versions("name = 'gpt2-old'")) == 2
    )
    expected = cli_prediction("gpt2-old@production", "hello")["generated_text"]
    assert mlflow.pyfunc.load_model("models:/gpt2-old@production").predict(["hello"]) == [expected]
    assert registry.sync().to_dict() == {"versions": [], "aliases": [], "failed": []}
    registry.close()
