"""Every bad input gets its own error class and one clear line that says what to do."""

from __future__ import annotations

import json
import pickle
import re

import pytest
import torch
from core_bases import make_base, randomize_adapters, tiny_bert
from transformers import BertConfig, BertForSequenceClassification

from adapterlab import LoraConfig, PeftConfig, PeftModel, get_peft_model
from adapterlab.errors import (
    AdapterExists,
    AdapterNotFound,
    CheckpointError,
    InvalidConfig,
    ShapeMismatch,
    TargetModuleNotFound,
    UnsupportedModule,
)


def one_line(excinfo: pytest.ExceptionInfo) -> str:
    message = str(excinfo.value)
    assert message and "\n" not in message, message
    return message


def _saved_bert(tmp_path, **config) -> PeftModel:
    model = get_peft_model(make_base("bert"), LoraConfig(task_type="SEQ_CLS", r=4, **config))
    randomize_adapters(model)
    model.save_pretrained(tmp_path)
    return model


def test_target_module_not_found_names_it_and_lists_existing_modules() -> None:
    with pytest.raises(TargetModuleNotFound) as excinfo:
        get_peft_model(make_base("bert"), LoraConfig(target_modules=["query", "q_proj"]))
    message = one_line(excinfo)
    assert "'q_proj'" in message and "query" in message and "value" in message and "dense" in message


def test_a_regex_matching_nothing_is_target_not_found() -> None:
    with pytest.raises(TargetModuleNotFound) as excinfo:
        get_peft_model(make_base("bert"), LoraConfig(target_modules=r".*\.nothing_here"))
    assert "nothing_here" in one_line(excinfo)


def test_failed_injection_leaves_the_base_model_untouched() -> None:
    base = make_base("bert")
    with pytest.raises(UnsupportedModule):
        get_peft_model(base, LoraConfig(target_modules=["query", "output.LayerNorm"]))
    assert not any("lora_" in name or "base_layer" in name for name, _ in base.named_parameters())


def test_unsupported_layer_type_names_module_and_type() -> None:
    with pytest.raises(UnsupportedModule) as excinfo:
        get_peft_model(make_base("bert"), LoraConfig(target_modules=["LayerNorm"]))
    message = one_line(excinfo)
    assert "LayerNorm" in message and "bert.embeddings.LayerNorm" in message and "nn.Linear" in message


@pytest.mark.parametrize("r", [0, -3, 2.5, True])
def test_rank_must_be_a_positive_integer(r) -> None:
    with pytest.raises(InvalidConfig) as excinfo:
        LoraConfig(r=r)
    assert "r must be a positive integer" in one_line(excinfo)


@pytest.mark.parametrize("dropout", [-0.1, 1.0, 1.5])
def test_lora_dropout_must_be_in_zero_one(dropout) -> None:
    with pytest.raises(InvalidConfig) as excinfo:
        LoraConfig(lora_dropout=dropout)
    assert "[0, 1)" in one_line(excinfo)


def test_unknown_task_type_lists_the_valid_ones() -> None:
    with pytest.raises(InvalidConfig) as excinfo:
        LoraConfig(task_type="SEQ_CLASSIFICATION")
    message = one_line(excinfo)
    assert "SEQ_CLASSIFICATION" in message and "SEQ_CLS" in message and "CAUSAL_LM" in message


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("bias", "some", "bias must be one of"),
        ("init_lora_weights", "svd", "init_lora_weights must be"),
        ("rank_pattern", {"query": 0}, "rank_pattern"),
        ("layers_pattern", "layer", "layers_to_transform"),
    ],
)
def test_other_invalid_lora_fields(field, value, expected) -> None:
    with pytest.raises(InvalidConfig) as excinfo:
        LoraConfig(**{field: value})
    assert expected in one_line(excinfo)


def test_adapter_on_a_base_with_other_shapes_names_the_first_key_and_both_shapes(tmp_path) -> None:
    _saved_bert(tmp_path)
    wider = BertForSequenceClassification(
        BertConfig(
            vocab_size=64,
            hidden_size=48,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=37,
            num_labels=3,
        )
    )
    with pytest.raises(ShapeMismatch) as excinfo:
        PeftModel.from_pretrained(wider, tmp_path)
    message = one_line(excinfo)
    assert re.match(
        r"size mismatch for base_model\.model\.\S+: checkpoint shape \(\d+, 32\) != model shape \(\d+, 48\);",
        message,
    )


def test_missing_adapter_folder_and_files(tmp_path) -> None:
    with pytest.raises(CheckpointError) as excinfo:
        PeftModel.from_pretrained(tiny_bert(), tmp_path / "nowhere")
    assert "does not exist" in one_line(excinfo)
    _saved_bert(tmp_path)
    (tmp_path / "adapter_model.safetensors").unlink()
    with pytest.raises(CheckpointError) as excinfo:
        PeftModel.from_pretrained(tiny_bert(), tmp_path)
    assert "adapter_model.safetensors" in one_line(excinfo)
    (tmp_path / "adapter_config.json").unlink()
    with pytest.raises(CheckpointError) as excinfo:
        PeftConfig.from_pretrained(tmp_path)
    assert "adapter_config.json" in one_line(excinfo)
    with pytest.raises(CheckpointError) as excinfo:
        PeftModel.from_pretrained(tiny_bert(), tmp_path / "adapter_model.bin.txt")
    assert "does not exist" in one_line(excinfo)
    (tmp_path / "adapter.safetensors").write_bytes(b"x")
    with pytest.raises(CheckpointError) as excinfo:
        PeftModel.from_pretrained(tiny_bert(), tmp_path / "adapter.safetensors")
    assert "is a file; give the folder save_pretrained wrote" in one_line(excinfo)


def test_corrupt_weights_and_config(tmp_path) -> None:
    _saved_bert(tmp_path)
    weights = tmp_path / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:50])
    with pytest.raises(CheckpointError) as excinfo:
        PeftModel.from_pretrained(tiny_bert(), tmp_path)
    assert "corrupt" in one_line(excinfo) and "adapter_model.safetensors" in str(excinfo.value)
    (tmp_path / "adapter_config.json").write_text("{not json")
    with pytest.raises(CheckpointError) as excinfo:
        PeftModel.from_pretrained(tiny_bert(), tmp_path)
    assert "not valid JSON" in one_line(excinfo)


def test_weights_that_do_not_belong_to_the_config(tmp_path) -> None:
    _saved_bert(tmp_path)
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    config["target_modules"] = ["query", "value", "key"]
    (tmp_path / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError) as excinfo:
        PeftModel.from_pretrained(tiny_bert(), tmp_path)
    assert "lacks" in one_line(excinfo) and "key.lora_A" in str(excinfo.value)


def test_duplicate_adapter_name(tmp_path) -> None:
    model = _saved_bert(tmp_path)
    with pytest.raises(AdapterExists) as excinfo:
        model.add_adapter("default", LoraConfig(r=2))
    assert "'default'" in one_line(excinfo)
    with pytest.raises(AdapterExists):
        model.load_adapter(tmp_path, adapter_name="default")
    model.add_adapter("other", LoraConfig(r=2))
    with pytest.raises(AdapterExists):
        model.add_weighted_adapter(["default", "other"], [1.0, 1.0], "other", combination_type="cat")


def test_unknown_adapter_names(tmp_path) -> None:
    model = _saved_bert(tmp_path).eval()
    with pytest.raises(AdapterNotFound) as excinfo:
        model.set_adapter("nope")
    assert "Adapter nope does not exist" in one_line(excinfo) and "default" in str(excinfo.value)
    with pytest.raises(AdapterNotFound):
        model.delete_adapter("nope")
    ids = torch.randint(2, 60, (2, 5))
    with pytest.raises(AdapterNotFound) as excinfo:
        model(input_ids=ids, adapter_names=["default", "ghost"])
    assert "non-existing adapter(s): ghost" in one_line(excinfo)


class _RunsCode:
    def __reduce__(self):
        return (print, ("this pickle ran code",))


def test_a_bin_pickle_that_would_run_code_is_refused(tmp_path, capsys) -> None:
    _saved_bert(tmp_path)
    (tmp_path / "adapter_model.safetensors").unlink()
    with open(tmp_path / "adapter_model.bin", "wb") as handle:
        pickle.dump({"base_model.model.x": _RunsCode()}, handle)
    with pytest.raises(CheckpointError) as excinfo:
        PeftModel.from_pretrained(tiny_bert(), tmp_path)
    assert "refusing" in one_line(excinfo)
    assert "this pickle ran code" not in capsys.readouterr().out


def test_a_plain_tensor_bin_still_loads(tmp_path) -> None:
    from safetensors.torch import load_file

    model = _saved_bert(tmp_path)
    weights = load_file(tmp_path / "adapter_model.safetensors")
    (tmp_path / "adapter_model.safetensors").unlink()
    torch.save(weights, tmp_path / "adapter_model.bin")
    loaded = PeftModel.from_pretrained(make_base("bert"), tmp_path)
    ids = torch.randint(2, 60, (2, 5))
    torch.testing.assert_close(loaded(input_ids=ids).logits, model(input_ids=ids).logits)


def test_mixed_batch_needs_one_name_per_row(tmp_path) -> None:
    model = _saved_bert(tmp_path).eval()
    with pytest.raises(InvalidConfig) as excinfo:
        model(input_ids=torch.randint(2, 60, (3, 5)), adapter_names=["default", "__base__"])
    assert "one name per row" in one_line(excinfo)


def test_save_onto_a_file_path(tmp_path) -> None:
    model = get_peft_model(make_base("bert"), LoraConfig(r=2))
    (tmp_path / "file").write_text("x")
    with pytest.raises(CheckpointError) as excinfo:
        model.save_pretrained(tmp_path / "file")
    assert "is a file" in one_line(excinfo)


def test_mixed_batch_refuses_dora_adapters() -> None:
    model = get_peft_model(make_base("bert"), LoraConfig(r=2, use_dora=True)).eval()
    with pytest.raises(InvalidConfig) as excinfo:
        model(input_ids=torch.randint(2, 60, (2, 5)), adapter_names=["default", "__base__"])
    assert "DoRA" in one_line(excinfo)


def test_safe_merge_refuses_a_broken_adapter_and_keeps_the_weights() -> None:
    model = get_peft_model(make_base("bert"), LoraConfig(r=2))
    first = model.get_base_model().bert.encoder.layer[0].attention.self.query
    layer = model.get_base_model().bert.encoder.layer[1].attention.self.value
    before = layer.base_layer.weight.clone()
    with torch.no_grad():
        layer.lora_B["default"].weight.fill_(float("nan"))
    with pytest.raises(InvalidConfig) as excinfo:
        model.merge_adapter(safe_merge=True)
    assert "NaN" in one_line(excinfo)
    assert torch.equal(layer.base_layer.weight, before) and not layer.merged
    assert not first.merged  # layers merged before the failure were unmerged again


def test_merging_an_unknown_adapter() -> None:
    model = get_peft_model(make_base("bert"), LoraConfig(r=2))
    with pytest.raises(AdapterNotFound) as excinfo:
        model.merge_and_unload(adapter_names=["nope"])
    assert "'nope'" in one_line(excinfo)
