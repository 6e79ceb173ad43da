"""An adapter is registered only on a base it fits: modules, shapes and task read from headers.

Bases are tiny GPT-2, mT5, Llama and BERT models built from transformers configs and saved as folders;
adapters are made with adapterlab's ``get_peft_model`` and ``save_pretrained`` on the same models.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from adapterlab.errors import BaseModelMismatch, IncompatibleAdapter
from adapterlab.registry import list_bases, list_versions, register_adapter

VOCAB = 64


def _gpt2(width: int = 32):
    import transformers

    config = transformers.GPT2Config(vocab_size=VOCAB, n_embd=width, n_layer=2, n_head=2, n_positions=32)
    return transformers.GPT2LMHeadModel(config)


def _mt5():
    import transformers

    config = transformers.MT5Config(
        vocab_size=VOCAB, d_model=32, d_kv=16, d_ff=64, num_layers=2, num_heads=2, decoder_start_token_id=0
    )
    return transformers.MT5ForConditionalGeneration(config)


def _llama():
    import transformers

    config = transformers.LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
    )
    return transformers.LlamaForCausalLM(config)


def _bert_classifier():
    import transformers

    config = transformers.BertConfig(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37
    )
    return transformers.BertForSequenceClassification(config)


def _adapter(model, folder: Path, config) -> Path:
    from adapterlab import get_peft_model

    get_peft_model(model, config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Base folders and adapter folders, built once for the module."""
    import torch

    from adapterlab import LoraConfig, PromptTuningConfig

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("compat")
    found: dict[str, Path] = {}
    gpt2, mt5, llama = _gpt2(), _mt5(), _llama()
    gpt2.save_pretrained(found.setdefault("gpt2", root / "gpt2"))  # lm_head is tied: not stored
    _gpt2(width=48).save_pretrained(found.setdefault("gpt2-wide", root / "gpt2-wide"))
    mt5.save_pretrained(found.setdefault("mt5", root / "mt5"))
    # the bare decoder (keys without "model."), in shards: the adapter's paths carry the prefix
    llama.model.save_pretrained(found.setdefault("llama", root / "llama"), max_shard_size="40KB")
    found["gpt2-lora"] = _adapter(
        gpt2,
        root / "gpt2-lora",
        LoraConfig(task_type="CAUSAL_LM", r=4, target_modules=["c_attn", "wte"]),
    )
    found["mt5-lora"] = _adapter(
        mt5, root / "mt5-lora", LoraConfig(task_type="SEQ_2_SEQ_LM", r=4, target_modules=["q", "v"])
    )
    found["llama-lora"] = _adapter(
        llama,
        root / "llama-lora",
        LoraConfig(task_type="CAUSAL_LM", r=4, target_modules=["q_proj", "v_proj"]),
    )
    found["bert-prompt"] = _adapter(
        _bert_classifier(),
        root / "bert-prompt",
        PromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=3),
    )
    return found


def test_the_llama_base_is_sharded(folders) -> None:
    assert (folders["llama"] / "model.safetensors.index.json").is_file()


@pytest.mark.parametrize(
    ("adapter", "base"),
    [("gpt2-lora", "gpt2"), ("mt5-lora", "mt5"), ("llama-lora", "llama"), ("bert-prompt", "tiny_base")],
)
def test_adapters_on_their_own_architecture_are_registered(
    registry_env, folders, tiny_base, adapter: str, base: str
) -> None:
    base_folder = tiny_base if base == "tiny_base" else folders[base]
    version = register_adapter(folders[adapter], name="fits", base=base_folder)
    assert version.version == 1


def test_an_mt5_lora_on_gpt2_is_refused_before_anything_is_stored(registry_env, folders, tmp_path) -> None:
    with pytest.raises(
        IncompatibleAdapter, match=r"task SEQ_2_SEQ_LM needs an encoder-decoder model.*'gpt2'"
    ):
        register_adapter(folders["mt5-lora"], name="wrong", base=folders["gpt2"])
    assert list_versions() == [] and list_bases() == []
    assert not (tmp_path / "home" / "artifacts").exists()


def test_a_causal_lm_adapter_on_an_encoder_only_base_is_refused(
    registry_env, tiny_base, make_lora, tmp_path
) -> None:
    """Read from config.json: model_type bert without is_decoder has no causal LM head."""
    adapter = make_lora(seed=1, task_type="CAUSAL_LM")
    with pytest.raises(IncompatibleAdapter, match=r"CAUSAL_LM .* 'bert' is an encoder-only model"):
        register_adapter(adapter, name="wrong", base=tiny_base)
    assert list_versions() == []
    decoder = tmp_path / "bert-decoder"
    shutil.copytree(tiny_base, decoder)
    config = json.loads((decoder / "config.json").read_text())
    (decoder / "config.json").write_text(json.dumps({**config, "is_decoder": True}))
    assert register_adapter(adapter, name="fits", base=decoder).version == 1


def test_a_module_the_base_lacks_is_named(registry_env, folders) -> None:
    with pytest.raises(
        IncompatibleAdapter, match=r"module 'model\.layers\.0\.self_attn\.q_proj' is not in the base"
    ):
        register_adapter(folders["llama-lora"], name="wrong", base=folders["gpt2"])
    assert list_versions() == []


def test_a_lora_of_another_width_is_refused_with_both_shapes(registry_env, folders) -> None:
    message = (
        r"adapter .*gpt2-lora does not fit base gpt2-wide: module 'transformer\.h\.0\.attn\.c_attn' has "
        r"weight \[48, 144\] in the base, but the adapter's lora_A\.weight \[4, 32\] and lora_B\.weight "
        r"\[96, 4\] make an update of \[96, 32\]; pass the base it was trained on"
    )
    with pytest.raises(IncompatibleAdapter, match=message):
        register_adapter(folders["gpt2-lora"], name="wrong", base=folders["gpt2-wide"])


def _with_output_head_lora(adapter: Path, folder: Path) -> Path:
    """``adapter`` plus a LoRA on ``lm_head`` (written directly: get_peft_model would also save the
    tied base weight, which the registry refuses)."""
    import numpy as np
    from safetensors.numpy import load_file, save_file

    shutil.copytree(adapter, folder)
    tensors = load_file(folder / "adapter_model.safetensors")
    tensors["base_model.model.lm_head.lora_A.weight"] = np.zeros((4, 32), np.float32)
    tensors["base_model.model.lm_head.lora_B.weight"] = np.zeros((VOCAB, 4), np.float32)
    save_file(tensors, folder / "adapter_model.safetensors")
    config = json.loads((folder / "adapter_config.json").read_text())
    config["target_modules"] = [*config["target_modules"], "lm_head"]
    (folder / "adapter_config.json").write_text(json.dumps(config))
    return folder


def test_a_tied_output_head_is_sized_from_the_config(registry_env, folders, tmp_path) -> None:
    """GPT-2 stores ``lm_head`` once, as ``wte``: its shape is (vocab_size, n_embd)."""
    import transformers

    adapter = _with_output_head_lora(folders["gpt2-lora"], tmp_path / "with-head")
    assert register_adapter(adapter, name="fits", base=folders["gpt2"]).version == 1
    bigger = tmp_path / "gpt2-vocab"
    config = transformers.GPT2Config(vocab_size=VOCAB + 8, n_embd=32, n_layer=2, n_head=2, n_positions=32)
    transformers.GPT2LMHeadModel(config).save_pretrained(bigger)
    with pytest.raises(IncompatibleAdapter, match=r"module 'lm_head' has weight \[72, 32\]"):
        register_adapter(adapter, name="wrong", base=bigger)


def test_a_prompt_of_another_width_is_refused(registry_env, folders) -> None:
    with pytest.raises(IncompatibleAdapter, match="token_dim is 32, the base's hidden size is 48"):
        register_adapter(folders["bert-prompt"], name="wrong", base=folders["gpt2-wide"])


def test_same_files_with_another_base_are_refused(registry_env, tiny_base, other_base, make_lora) -> None:
    folder = make_lora(seed=1)
    first = register_adapter(folder, name="a", base=tiny_base)
    with pytest.raises(BaseModelMismatch, match="belongs to base tiny-bert"):
        register_adapter(folder, name="a", base=other_base)
    assert register_adapter(folder, name="a", base=tiny_base).version == first.version
    assert [row.version for row in list_versions()] == [1] and len(list_bases()) == 1


def test_a_base_without_its_folder_is_registered_with_a_note(
    registry_env, tiny_base, make_lora, tmp_path, caplog
) -> None:
    copy = tmp_path / "gone-bert"
    shutil.copytree(tiny_base, copy)
    register_adapter(make_lora(seed=1), name="a", base=copy, base_name="org/gone-bert")
    shutil.rmtree(copy)
    with caplog.at_level(logging.WARNING, logger="adapterlab.registry"):
        version = register_adapter(make_lora(seed=2), name="b", base="org/gone-bert")
    assert version.version == 1
    assert "folder of base org/gone-bert is not on this machine" in caplog.text
