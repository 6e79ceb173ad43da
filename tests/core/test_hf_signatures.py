"""A user's HF PEFT call runs unchanged: the entry points take HF PEFT's parameters, in its order,
and each option either does what it does in HF PEFT or is refused in one clear line."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from pathlib import Path

import peft
import pytest
import torch
from core_bases import bert_config, llama_config
from safetensors.torch import load_file, save_file
from transformers import BertForSequenceClassification, LlamaForCausalLM

import adapterlab
from adapterlab.errors import InvalidConfig

ENTRY_POINTS: list[tuple[str, Callable, Callable]] = [
    ("get_peft_model", peft.get_peft_model, adapterlab.get_peft_model),
    ("PeftModel.__init__", peft.PeftModel.__init__, adapterlab.PeftModel.__init__),
    ("PeftModel.from_pretrained", peft.PeftModel.from_pretrained, adapterlab.PeftModel.from_pretrained),
    ("PeftModel.load_adapter", peft.PeftModel.load_adapter, adapterlab.PeftModel.load_adapter),
    ("PeftModel.save_pretrained", peft.PeftModel.save_pretrained, adapterlab.PeftModel.save_pretrained),
    ("PeftModel.add_adapter", peft.PeftModel.add_adapter, adapterlab.PeftModel.add_adapter),
    ("get_peft_model_state_dict", peft.get_peft_model_state_dict, adapterlab.get_peft_model_state_dict),
    ("set_peft_model_state_dict", peft.set_peft_model_state_dict, adapterlab.set_peft_model_state_dict),
    ("load_peft_weights", peft.load_peft_weights, adapterlab.load_peft_weights),
    ("get_peft_config", peft.get_peft_config, adapterlab.get_peft_config),
    (
        "prepare_model_for_kbit_training",
        peft.prepare_model_for_kbit_training,
        adapterlab.prepare_model_for_kbit_training,
    ),
    (
        "AutoPeftModelForCausalLM.from_pretrained",
        peft.AutoPeftModelForCausalLM.from_pretrained,
        adapterlab.AutoPeftModelForCausalLM.from_pretrained,
    ),
]


def named_parameters(function: Callable) -> list[str]:
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [p.name for p in inspect.signature(function).parameters.values() if p.kind in kinds]


@pytest.mark.parametrize(("name", "theirs", "ours"), ENTRY_POINTS, ids=[e[0] for e in ENTRY_POINTS])
def test_positional_parameters_match_hf_peft(name: str, theirs: Callable, ours: Callable) -> None:
    # every parameter HF PEFT lets a caller pass by position is ours too, at the same position
    assert named_parameters(ours)[: len(named_parameters(theirs))] == named_parameters(theirs)


def bert() -> BertForSequenceClassification:
    torch.manual_seed(0)
    return BertForSequenceClassification(bert_config(num_labels=2)).eval()


def lora(**kwargs) -> adapterlab.LoraConfig:
    return adapterlab.LoraConfig(task_type="SEQ_CLS", r=4, **kwargs)


def test_save_pretrained_positional_safe_serialization(tmp_path: Path) -> None:
    model = adapterlab.get_peft_model(bert(), lora())
    model.save_pretrained(tmp_path, True)  # HF's second positional parameter
    assert (tmp_path / "adapter_model.safetensors").is_file()


def test_save_embedding_layers_false_leaves_the_targeted_tables_out(tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = adapterlab.LoraConfig(task_type="CAUSAL_LM", r=4, target_modules=["embed_tokens", "q_proj"])
    model = adapterlab.get_peft_model(LlamaForCausalLM(llama_config()), config)
    model.save_pretrained(tmp_path / "auto")
    model.save_pretrained(tmp_path / "without", save_embedding_layers=False)
    table = "base_model.model.model.embed_tokens.base_layer.weight"
    assert table in load_file(tmp_path / "auto" / "adapter_model.safetensors")
    without = load_file(tmp_path / "without" / "adapter_model.safetensors")
    assert table not in without
    assert "base_model.model.model.embed_tokens.lora_embedding_A" in without


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m, d: m.save_pretrained(d, save_embedding_layers="yes"), "save_embedding_layers must be"),
        (
            lambda m, d: adapterlab.PeftModel.from_pretrained(bert(), d, ephemeral_gpu_offload=True),
            "ephemeral_gpu_offload",
        ),
        (lambda m, d: m.load_adapter(d, "other", ephemeral_gpu_offload=True), "ephemeral_gpu_offload"),
        (lambda m, d: adapterlab.get_peft_model(bert(), lora(), mixed=True), "mixed=True"),
        (
            lambda m, d: adapterlab.set_peft_model_state_dict(m, {}, ignore_mismatched_sizes=True),
            "mismatched",
        ),
    ],
    ids=[
        "save_embedding_layers",
        "gpu offload",
        "gpu offload on load",
        "mixed",
        "mismatched sizes",
    ],
)
def test_options_adapterlab_does_not_implement_are_refused_in_one_line(
    call, message: str, tmp_path: Path
) -> None:
    model = adapterlab.get_peft_model(bert(), lora())
    model.save_pretrained(tmp_path / "saved")
    files_before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(InvalidConfig, match=message) as error:
        call(model, tmp_path / "saved")
    assert "\n" not in str(error.value)
    assert sorted(p.name for p in tmp_path.rglob("*")) == files_before
    assert list(model.peft_config) == ["default"]


@pytest.mark.parametrize("autocast", [True, False])
def test_autocast_adapter_dtype_on_a_bfloat16_base(autocast: bool, tmp_path: Path) -> None:
    def lora_dtypes(model: torch.nn.Module, adapter: str) -> set[torch.dtype]:
        return {p.dtype for n, p in model.named_parameters() if "lora_" in n and f".{adapter}" in n}

    expected = torch.float32 if autocast else torch.bfloat16
    model = adapterlab.get_peft_model(bert().to(torch.bfloat16), lora(), autocast_adapter_dtype=autocast)
    assert lora_dtypes(model, "default") == {expected}
    model.add_adapter("second", lora(), autocast_adapter_dtype=autocast)
    assert lora_dtypes(model, "second") == {expected}
    model.save_pretrained(tmp_path)
    loaded = adapterlab.PeftModel.from_pretrained(
        bert().to(torch.bfloat16), tmp_path, autocast_adapter_dtype=autocast
    )
    assert lora_dtypes(loaded, "default") == {expected}
    ids = torch.arange(2, 8).unsqueeze(0)
    with torch.no_grad():
        assert loaded(input_ids=ids).logits.dtype == torch.bfloat16


def test_key_mapping_renames_keys_before_loading(tmp_path: Path) -> None:
    source = adapterlab.get_peft_model(bert(), lora())
    with torch.no_grad():
        for name, param in source.named_parameters():
            if "lora_B" in name:
                param.normal_()
    source.save_pretrained(tmp_path)
    # a file written for an older layout of the model: "bert." was "encoder_model."
    path = tmp_path / "adapter_model.safetensors"
    save_file({k.replace(".bert.", ".encoder_model."): v for k, v in load_file(path).items()}, path)
    mapping = {r"^encoder_model\.": "bert."}
    loaded = adapterlab.PeftModel.from_pretrained(bert(), tmp_path, key_mapping=mapping)
    target = adapterlab.get_peft_model(bert(), lora(), adapter_name="first")
    target.load_adapter(tmp_path, "mapped", key_mapping=mapping, torch_device="cpu")
    ids = torch.arange(2, 8).unsqueeze(0)
    target.set_adapter("mapped")
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=ids).logits, source(input_ids=ids).logits)
        torch.testing.assert_close(target(input_ids=ids).logits, source(input_ids=ids).logits)


def test_get_peft_model_state_dict_takes_values_from_a_given_state_dict() -> None:
    model = adapterlab.get_peft_model(bert(), lora())
    full = {k: torch.full_like(v, 3.0) for k, v in model.state_dict().items()}
    state = adapterlab.get_peft_model_state_dict(model, full)
    assert state.keys() == adapterlab.get_peft_model_state_dict(model).keys()
    assert all(bool((t == 3.0).all()) for t in state.values())
    compiled = torch.compile(model)
    assert adapterlab.get_peft_model_state_dict(compiled, unwrap_compiled=True).keys() == state.keys()


def test_get_peft_model_records_the_base_revision(tmp_path: Path) -> None:
    model = adapterlab.get_peft_model(bert(), lora(), revision="v2.0")
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "adapter_config.json").read_text())["revision"] == "v2.0"
    with pytest.warns(UserWarning, match="replaced by revision='v3'"):
        adapterlab.get_peft_model(bert(), lora(revision="v2.0"), revision="v3")
