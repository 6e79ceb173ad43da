"""``adapters export`` and ``adapters predict`` on adapters registered through ``register_adapter``.

Both exports are loaded back the way outside tools load them (HF PEFT and plain transformers)
and must compute what the registry's own ``load`` computes.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner

from adapterlab.cli.main import cli

TEXT = "My parcel never arrived and nobody answers"


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoints) -> Iterator[dict]:
    """A local registry holding a classifier (``tiny-cls``, aliased production) and an LM adapter."""
    from adapterlab.registry import promote, register_adapter
    from adapterlab.registry.api import forget_registries

    home = tmp_path_factory.mktemp("stack-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ADAPTERLAB_HOME", str(home))
        patch.setenv("ADAPTERLAB_REGISTRY_URL", f"sqlite:///{home / 'registry.db'}")
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}")
        patch.delenv("ADAPTERLAB_ARTIFACT_ROOT", raising=False)
        cls = register_adapter(
            tiny_checkpoints.cls_adapter,
            name="tiny-cls",
            base=tiny_checkpoints.cls_base,
            metrics={"eval_accuracy": 0.75},
        )
        promote(cls.ref, alias="production")
        lm = register_adapter(tiny_checkpoints.lm_adapter, name="tiny-lm", base=tiny_checkpoints.lm_base)
        register_adapter(tiny_checkpoints.seq2seq_adapter, name="tiny-t5", base=tiny_checkpoints.seq2seq_base)
        yield {"home": home, "cls": cls, "lm": lm, "checkpoints": tiny_checkpoints}
        forget_registries()


def run_cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def base_folder_of(ref: str) -> Path:
    """Where the registry finds the base of ``ref`` (its registered folder, verified)."""
    from adapterlab.registry import default_registry, locate_base, show

    return locate_base(show(ref).base, database=default_registry().database)


def registry_logits(ref: str, text: str = TEXT) -> torch.Tensor:
    from transformers import AutoTokenizer

    from adapterlab.registry import load

    model = load(ref).eval()
    tokenizer = AutoTokenizer.from_pretrained(base_folder_of(ref))
    with torch.no_grad():
        return model(**tokenizer(text, return_tensors="pt")).logits


def logits_of(model, folder: Path) -> torch.Tensor:
    from transformers import AutoTokenizer

    with torch.no_grad():
        return model.eval()(**AutoTokenizer.from_pretrained(folder)(TEXT, return_tensors="pt")).logits


def test_exported_adapter_loads_in_hf_peft_and_matches_the_registry(registered, tmp_path: Path) -> None:
    import peft  # the reference implementation: proof that the export is plain HF PEFT format
    from transformers import AutoModelForSequenceClassification

    code, out, err = run_cli("export", "tiny-cls@production", "--to", str(tmp_path / "export"), "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["ref"] == "tiny-cls:1" and result["merged"] is False
    folder = tmp_path / "export"
    assert {"adapter_config.json", "adapter_model.safetensors", "labels.json", "README.md"} <= set(
        result["files"]
    )
    card = yaml.safe_load((folder / "README.md").read_text().split("---\n")[1])
    base = registered["cls"].base
    assert card["library_name"] == "peft"
    assert (
        card["adapterlab"]["version"] == 1
        and card["adapterlab"]["base_model_fingerprint"] == base.fingerprint
    )
    assert card["adapterlab"]["metrics"] == {"eval_accuracy": 0.75}

    labels = json.loads((folder / "labels.json").read_text())
    base_folder = registered["checkpoints"].cls_base
    reference = peft.PeftModel.from_pretrained(
        AutoModelForSequenceClassification.from_pretrained(base_folder, id2label=labels["id2label"]), folder
    )
    expected = registry_logits("tiny-cls@production")
    torch.testing.assert_close(logits_of(reference, base_folder), expected, rtol=1e-5, atol=1e-5)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "staging folder left behind"


def test_merged_export_loads_with_plain_transformers(registered, tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    folder = tmp_path / "merged"
    code, out, err = run_cli("export", "tiny-cls:1", "--to", str(folder), "--merged")
    assert code == 0, err
    assert "tiny-cls:1" in out
    assert not (folder / "adapter_config.json").exists()
    assert (folder / "tokenizer.json").is_file()
    card = yaml.safe_load((folder / "README.md").read_text().split("---\n")[1])
    assert card["library_name"] == "transformers" and card["base_model"] == registered["cls"].base.name

    merged = AutoModelForSequenceClassification.from_pretrained(folder)
    assert not any("lora" in name for name, _ in merged.named_parameters())
    assert merged.config.id2label == {0: "no_complaint", 1: "complaint"}
    torch.testing.assert_close(logits_of(merged, folder), registry_logits("tiny-cls:1"), rtol=1e-4, atol=1e-5)


def test_merged_export_of_a_language_model(registered, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    folder = tmp_path / "merged-lm"
    code, _, err = run_cli("export", "tiny-lm", "--to", str(folder), "--merged")
    assert code == 0, err
    merged = AutoModelForCausalLM.from_pretrained(folder)
    torch.testing.assert_close(logits_of(merged, folder), registry_logits("tiny-lm"), rtol=1e-4, atol=1e-5)


def test_export_never_overwrites_and_leaves_nothing_behind(registered, tmp_path: Path) -> None:
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("mine")
    code, _, err = run_cli("export", "tiny-cls", "--to", str(occupied))
    assert code == 1
    assert err.startswith("Error: ") and "not empty" in err and len(err.strip().splitlines()) == 1
    assert [p.name for p in occupied.iterdir()] == ["keep.txt"]

    code, _, err = run_cli("export", "no-such-adapter", "--to", str(tmp_path / "new"))
    assert code == 1 and "no-such-adapter" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["occupied"]

    empty = tmp_path / "empty"
    empty.mkdir()
    assert run_cli("export", "tiny-cls", "--to", str(empty))[0] == 0
    assert (empty / "adapter_config.json").is_file()


def test_export_fails_cleanly_when_the_stored_files_were_altered(registered, tmp_path: Path) -> None:
    from adapterlab.registry import show

    stored = Path(show("tiny-lm").artifact_uri.removeprefix("file://"))
    weights = stored / "adapter_model.safetensors"
    original = weights.read_bytes()
    try:
        weights.write_bytes(original[:-4] + b"\0\0\0\0")
        code, _, err = run_cli("export", "tiny-lm", "--to", str(tmp_path / "out"))
    finally:
        weights.write_bytes(original)
    assert code == 1 and "sha256" in err
    assert list(tmp_path.iterdir()) == []


def test_predict_prints_the_label_and_its_probability(registered) -> None:
    code, out, err = run_cli("predict", "tiny-cls@production", "--text", TEXT, "--json")
    assert code == 0, err
    prediction = json.loads(out)
    expected = torch.softmax(registry_logits("tiny-cls@production")[0], dim=-1)
    best = int(expected.argmax())
    assert prediction["ref"] == "tiny-cls:1"
    assert prediction["label"] == ["no_complaint", "complaint"][best]
    assert prediction["probability"] == pytest.approx(float(expected[best]), abs=1e-6)
    assert sum(prediction["probabilities"].values()) == pytest.approx(1.0)

    code, out, _ = run_cli("predict", "tiny-cls@production", "--text", TEXT)
    assert code == 0
    label, probability = out.strip().split("\t")
    assert label == prediction["label"] and float(probability) == pytest.approx(
        prediction["probability"], abs=1e-4
    )


@pytest.mark.parametrize(("name", "echoes_prompt"), [("tiny-lm", True), ("tiny-t5", False)])
def test_predict_generates_text_for_language_model_adapters(
    registered, name: str, echoes_prompt: bool
) -> None:
    from transformers import AutoTokenizer

    from adapterlab.registry import load, show

    code, out, err = run_cli("predict", name, "--text", "hello world", "--max-new-tokens", "5", "--json")
    assert code == 0, err
    prediction = json.loads(out)
    tokenizer = AutoTokenizer.from_pretrained(base_folder_of(name))
    inputs = tokenizer("hello world", return_tensors="pt", return_token_type_ids=False)
    with torch.no_grad():
        output = load(name).eval().generate(**inputs, max_new_tokens=5, do_sample=False)
    new_tokens = output[0, inputs["input_ids"].shape[1] :] if echoes_prompt else output[0]
    expected = tokenizer.decode(new_tokens, skip_special_tokens=True).strip()
    assert prediction["generated_text"] == expected and expected
    assert prediction["label"] is None and prediction["task_type"] == show(name).task_type


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["predict", "tiny-cls", "--text", "   "], "empty"),
        (["predict", "tiny-cls@staging", "--text", "hi"], "staging"),
        (["predict", "tiny-cls:9", "--text", "hi"], "no version 9"),
    ],
)
def test_predict_bad_input_is_one_clear_line(registered, args: list[str], message: str) -> None:
    code, out, err = run_cli(*args)
    assert code == 1 and out == ""
    assert err.startswith("Error: ") and message in err and len(err.strip().splitlines()) == 1


def test_predict_skips_a_base_folder_whose_weights_changed(registered, tmp_path: Path) -> None:
    """The fingerprint check: the base folder was overwritten with other weights after registering.

    The registry then runs on another recorded copy of the same weights (tiny-cls's base); a
    folder given with --base that holds the changed weights is refused.
    """
    from adapterlab.registry import register_adapter

    checkpoints = registered["checkpoints"]
    base = shutil.copytree(checkpoints.cls_base, tmp_path / "base")
    register_adapter(checkpoints.cls_adapter, name="tiny-cls-moved", base=base)
    shutil.copy(checkpoints.lm_base / "model.safetensors", base / "model.safetensors")
    code, out, err = run_cli("predict", "tiny-cls-moved", "--text", TEXT, "--json")
    assert code == 0, err
    assert (
        json.loads(out)["probabilities"]
        == json.loads(run_cli("predict", "tiny-cls", "--text", TEXT, "--json")[1])["probabilities"]
    )
    code, _, err = run_cli("predict", "tiny-cls-moved", "--text", TEXT, "--base", str(base))
    assert code == 1 and "other weights" in err and "tiny-cls-moved:1" in err


def test_merged_export_refuses_prompt_methods(registered, tmp_path: Path) -> None:
    """Prompt tuning adds virtual tokens at run time: there is nothing to fold into the weights."""
    from transformers import AutoModelForCausalLM

    from adapterlab import PromptTuningConfig, get_peft_model
    from adapterlab.registry import register_adapter

    base = registered["checkpoints"].lm_base
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base),
        PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4),
    )
    model.save_pretrained(tmp_path / "prompt")
    register_adapter(tmp_path / "prompt", name="tiny-prompt", base=base)
    code, _, err = run_cli("export", "tiny-prompt", "--to", str(tmp_path / "merged"), "--merged")
    assert code == 1 and "cannot be merged" in err and "without --merged" in err
    assert not (tmp_path / "merged").exists()
    assert run_cli("export", "tiny-prompt", "--to", str(tmp_path / "plain"))[0] == 0


def test_predict_and_export_import_nothing_heavy_until_they_run() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from click.testing import CliRunner; from adapterlab.cli.main import cli\nfor name "
        "in ('predict', 'export'):\n    assert CliRunner().invoke(cli, [name, '--help']).exit_code == "
        "0\nprint(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers', 'mlflow', "
        "'safetensors'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_predict_without_a_tokenizer_says_what_to_do(registered, tmp_path: Path) -> None:
    from adapterlab.registry import register_adapter

    checkpoints = registered["checkpoints"]
    weights_only = tmp_path / "weights-only-base"
    weights_only.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(checkpoints.cls_base / name, weights_only / name)
    register_adapter(checkpoints.cls_adapter, name="tiny-cls-no-tokenizer", base=weights_only)
    code, _, err = run_cli("predict", "tiny-cls-no-tokenizer", "--text", TEXT)
    assert code == 1 and "no tokenizer found" in err and "tokenizer files" in err
