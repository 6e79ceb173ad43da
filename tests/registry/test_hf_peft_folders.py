"""Adapter folders written by Hugging Face PEFT (the reference) register as they are."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from transformers import AutoModel, AutoModelForSequenceClassification

from adapterlab.registry import register_adapter, show

peft = pytest.importorskip("peft")


def hf_adapter(base: Path, folder: Path, config, classify: bool = False, safe: bool = True) -> Path:
    torch.manual_seed(0)
    model = (AutoModelForSequenceClassification if classify else AutoModel).from_pretrained(base)
    peft.get_peft_model(model, config).save_pretrained(folder, safe_serialization=safe)
    return folder


def test_hf_lora_for_classification_with_its_saved_head(registry_env, tiny_base, tmp_path: Path) -> None:
    config = peft.LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, target_modules=["query", "value"])
    folder = hf_adapter(tiny_base, tmp_path / "lora-cls", config, classify=True)
    version = register_adapter(folder, name="hf-cls", base=tiny_base)
    assert version.peft_type == "LORA" and version.task_type == "SEQ_CLS"
    assert version.trainable_params > 0


def test_hf_legacy_bin_lora(registry_env, tiny_base, tmp_path: Path) -> None:
    config = peft.LoraConfig(r=2, target_modules=["query"])
    folder = hf_adapter(tiny_base, tmp_path / "lora-bin", config, safe=False)
    assert (folder / "adapter_model.bin").is_file()
    assert register_adapter(folder, name="hf-bin", base=tiny_base).version == 1


@pytest.mark.parametrize(
    "config",
    [
        lambda: peft.PromptTuningConfig(task_type="FEATURE_EXTRACTION", num_virtual_tokens=5),
        lambda: peft.PrefixTuningConfig(task_type="FEATURE_EXTRACTION", num_virtual_tokens=3),
    ],
    ids=["prompt-tuning", "prefix-tuning"],
)
def test_hf_prompt_methods(registry_env, tiny_base, tmp_path: Path, config) -> None:
    folder = hf_adapter(tiny_base, tmp_path / "prompt", config())
    version = register_adapter(folder, name="hf-prompt", base=tiny_base)
    assert version.peft_type in {"PROMPT_TUNING", "PREFIX_TUNING"}


def test_hub_snapshot_folder_names_its_base(registry_env, tiny_base, make_lora, tmp_path: Path) -> None:
    snapshot = tmp_path / "hub" / "models--org--tiny-bert" / "snapshots" / "abc123"
    shutil.copytree(tiny_base, snapshot)
    version = register_adapter(make_lora(), name="from-hub", base=snapshot)
    assert (version.base.name, version.base.revision) == ("org/tiny-bert", "abc123")
    assert show("from-hub").base.fingerprint == version.base.fingerprint


def test_hub_id_found_in_the_local_cache(
    registry_env, tiny_base, make_lora, tmp_path: Path, monkeypatch
) -> None:
    cache = tmp_path / "hf-cache"
    snapshot = cache / "models--org--cached-bert" / "snapshots" / "rev42"
    shutil.copytree(tiny_base, snapshot)
    (cache / "models--org--cached-bert" / "refs").mkdir()
    (cache / "models--org--cached-bert" / "refs" / "main").write_text("rev42")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    version = register_adapter(make_lora(), name="cached", base="org/cached-bert")
    assert (version.base.name, version.base.revision) == ("org/cached-bert", "rev42")
