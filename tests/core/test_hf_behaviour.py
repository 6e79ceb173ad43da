"""HF PEFT behaviours that scripts and HF PEFT's own test suite rely on, each once a bug here.

Small torch models stand in for transformers ones where the behaviour is the same; the comparison
with HF PEFT itself is ``benchmarks/peft_suite``.
"""

from __future__ import annotations

import json

import pytest
import torch
from core_bases import make_base, make_inputs, output_of, randomize_adapters
from torch import nn

from adapterlab import (
    LoraConfig,
    PeftModel,
    PrefixTuningConfig,
    PromptEncoderConfig,
    PromptTuningConfig,
    get_base_model_state_dict,
    get_layer_status,
    get_model_status,
    get_peft_model,
    get_peft_model_state_dict,
    inject_adapter_in_model,
    set_base_model_state_dict,
    set_peft_model_state_dict,
)
from adapterlab.errors import (
    AdapterNotFound,
    HubError,
    InvalidConfig,
    ShapeMismatch,
)
from adapterlab.tuners.lora.layer import LoraLayer
from adapterlab.tuners.tuners_utils import BaseTunerLayer, _get_submodules


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin0 = nn.Linear(6, 8)
        self.drop = nn.Dropout(0.5)
        self.lin1 = nn.Linear(8, 3)
        self.custom_marker = "mine"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin1(self.drop(torch.relu(self.lin0(x))))


class KeywordHead(nn.Module):
    """A module only ever called with keyword arguments."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(6, 6)

    def forward(self, *, hidden: torch.Tensor) -> torch.Tensor:
        return self.proj(hidden)


class KeywordModel(nn.Module):
    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.lin0 = nn.Linear(6, 6)
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(hidden=self.lin0(x))
        return out[0] if isinstance(out, tuple) else out


class TupleHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(6, 6)

    def forward(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.proj(hidden), hidden


def lora_mlp(**kwargs) -> PeftModel:
    torch.manual_seed(0)
    return get_peft_model(MLP(), LoraConfig(target_modules=["lin0"], **kwargs))


def test_from_pretrained_for_inference_is_in_eval_mode(tmp_path) -> None:
    model = lora_mlp(lora_dropout=0.5)
    randomize_adapters(model)
    model.save_pretrained(tmp_path)
    loaded = PeftModel.from_pretrained(MLP(), tmp_path)
    assert not loaded.training and not any(m.training for m in loaded.modules())
    x = torch.randn(4, 6)
    torch.testing.assert_close(loaded(x), loaded(x), rtol=0, atol=0)  # dropout off: two calls agree
    trainable = PeftModel.from_pretrained(MLP(), tmp_path, is_trainable=True)
    assert trainable.training
    trainable.load_adapter(tmp_path, adapter_name="other")
    assert not trainable.training  # an adapter loaded for inference switches to eval, as in HF PEFT


def test_state_dict_of_an_fsdp_wrapped_model_has_plain_keys() -> None:
    import torch.distributed as dist
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    model = lora_mlp(init_lora_weights=False).eval()
    plain = get_peft_model_state_dict(model)
    dist.init_process_group(backend="gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        wrapped = FSDP(model, use_orig_params=True, device_id="cpu")
        x = torch.randn(3, 6)
        with torch.no_grad():
            expected = wrapped(x)
        state = get_peft_model_state_dict(wrapped)
    finally:
        dist.destroy_process_group()
    assert set(state) == set(plain) and not any("_fsdp_wrapped_module" in key for key in state)
    fresh = lora_mlp().eval()
    set_peft_model_state_dict(fresh, state)
    torch.testing.assert_close(fresh(x), expected)


def test_a_base_module_named_like_an_adapter_is_frozen() -> None:
    class Named(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin0 = nn.Linear(4, 4)
            self.lora_gate = nn.Linear(4, 4)  # a base layer whose name merely contains "lora_"

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.lora_gate(self.lin0(x))

    model = get_peft_model(Named(), LoraConfig(target_modules=["lin0"]))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {
        "base_model.model.lin0.lora_A.default.weight",
        "base_model.model.lin0.lora_B.default.weight",
    }


def test_modules_to_save_called_with_keyword_arguments_only() -> None:
    torch.manual_seed(0)
    model = get_peft_model(
        KeywordModel(KeywordHead()), LoraConfig(target_modules=["lin0"], modules_to_save=["head"])
    )
    x = torch.randn(2, 6)
    assert model(x).shape == (2, 6)
    model.add_adapter("other", LoraConfig(target_modules=["lin0"], modules_to_save=["head"]))
    model.eval()
    assert model(x, adapter_names=["default", "other"]).shape == (2, 6)


def test_mixed_batch_through_a_modules_to_save_returning_a_tuple_is_a_clear_error() -> None:
    torch.manual_seed(0)

    class TupleModel(KeywordModel):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.lin0(x))[0]

    model = get_peft_model(
        TupleModel(TupleHead()), LoraConfig(target_modules=["lin0"], modules_to_save=["head"])
    )
    model.add_adapter("other", LoraConfig(target_modules=["lin0"], modules_to_save=["head"]))
    assert model(torch.randn(2, 6)).shape == (2, 6)  # one adapter per call works
    with pytest.raises(InvalidConfig, match="returns tuple") as excinfo:
        model.eval()(torch.randn(2, 6), adapter_names=["default", "other"])
    assert "\n" not in str(excinfo.value)


@pytest.mark.parametrize("bias", ["all", "lora_only"])
def test_two_adapters_may_not_both_train_the_shared_biases(bias: str) -> None:
    model = lora_mlp(bias=bias)
    with pytest.raises(InvalidConfig, match="supports only 1 adapter with bias"):
        model.add_adapter("other", LoraConfig(target_modules=["lin0"], bias=bias))
    assert list(model.peft_config) == ["default"]
    model.add_adapter("plain", LoraConfig(target_modules=["lin0"]))  # bias="none" is fine beside it


def test_error_classes_have_hf_peft_s_built_in_bases() -> None:
    model = lora_mlp()
    with pytest.raises(ValueError):
        model.set_adapter("nope")
    with pytest.raises(AdapterNotFound):
        model.delete_adapter("nope")
    state = get_peft_model_state_dict(model)
    state["base_model.model.lin0.lora_A.weight"] = torch.zeros(3, 3)
    with pytest.raises(RuntimeError) as excinfo:
        set_peft_model_state_dict(model, state)
    assert isinstance(excinfo.value, ShapeMismatch)


@pytest.mark.parametrize("config_class", [PromptTuningConfig, PromptEncoderConfig, PrefixTuningConfig])
def test_prompt_configs_build_with_defaults_and_need_virtual_tokens_only_when_used(config_class) -> None:
    config = config_class(task_type="SEQ_CLS")
    assert config.num_virtual_tokens is None
    with pytest.raises(InvalidConfig, match="num_virtual_tokens is required"):
        get_peft_model(make_base("bert"), config)
    config.num_virtual_tokens = 4
    model = get_peft_model(make_base("bert"), config)
    assert output_of(model, make_inputs("encoder")).shape[0] == 3


def test_disable_adapter_stops_training_and_restores_it() -> None:
    model = lora_mlp(modules_to_save=["lin1"])
    before = {n for n, p in model.named_parameters() if p.requires_grad}
    assert before
    with model.disable_adapter():
        assert not any(p.requires_grad for p in model.parameters())
    assert {n for n, p in model.named_parameters() if p.requires_grad} == before


def test_active_adapters_lists_every_active_adapter() -> None:
    model = lora_mlp()
    model.add_adapter("other", LoraConfig(target_modules=["lin0"]))
    assert model.active_adapters == ["default"]
    model.base_model.set_adapter(["default", "other"])
    assert model.active_adapters == ["default", "other"]


def test_attribute_access_reaches_the_tuner_and_the_base_model() -> None:
    model = lora_mlp()
    assert isinstance(model.lin0, LoraLayer)  # the base model's submodule
    assert model.base_model.lin0 is model.lin0  # the tuner forwards too, as HF PEFT's does
    assert model.custom_marker == "mine"  # a plain attribute of the base model
    assert model.prefix == "lora_"  # the tuner's
    with pytest.raises(AttributeError, match="no_such_thing"):
        _ = model.no_such_thing
    bert = get_peft_model(make_base("bert"), PromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=2))
    assert bert.config.model_type == "bert" and bert.num_labels == bert.get_base_model().num_labels


def test_base_tuner_layer_and_submodule_helpers() -> None:
    model = lora_mlp()
    layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
    assert layers == [model.base_model.model.lin0]
    layer = layers[0]
    assert layer.get_base_layer() is layer.base_layer and layer.weight is layer.base_layer.weight
    assert layer.active_adapter == "default" and not layer.merged
    parent, target, name = _get_submodules(model.base_model.model, "lin0")
    assert parent is model.base_model.model and target is layer and name == "lin0"
    assert model.targeted_module_names == ["lin0"]


def test_inject_adapter_in_model_and_base_state_dict_round_trip() -> None:
    torch.manual_seed(0)
    base = MLP()
    original = {k: v.clone() for k, v in base.state_dict().items()}
    model = inject_adapter_in_model(LoraConfig(target_modules=["lin0"]), base)
    assert model is base and isinstance(model.lin0, LoraLayer)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {
        "lin0.lora_A.default.weight",
        "lin0.lora_B.default.weight",
    }
    with pytest.raises(InvalidConfig, match="nothing to inject"):
        inject_adapter_in_model(PromptTuningConfig(num_virtual_tokens=2), MLP())

    peft_model = lora_mlp(modules_to_save=["lin1"])
    state = get_base_model_state_dict(peft_model)
    assert set(state) == set(original)
    lora_a = peft_model.base_model.model.lin0.lora_A["default"].weight.clone()
    zeros = {k: torch.zeros_like(v) for k, v in state.items()}
    set_base_model_state_dict(peft_model, zeros)
    assert all(not v.any() for v in get_base_model_state_dict(peft_model).values())
    torch.testing.assert_close(peft_model.base_model.model.lin0.lora_A["default"].weight, lora_a)
    with pytest.raises(RuntimeError, match="stray"):
        set_base_model_state_dict(peft_model, {**zeros, "stray.weight": torch.zeros(1)})


def test_saved_config_records_the_writer_s_version(tmp_path) -> None:
    import adapterlab

    model = lora_mlp()
    model.save_pretrained(tmp_path)
    data = json.loads((tmp_path / "adapter_config.json").read_text())
    assert data["peft_version"] == adapterlab.__version__


def test_save_pretrained_writes_a_model_card_and_keeps_an_existing_one(tmp_path) -> None:
    model = lora_mlp()
    model.save_pretrained(tmp_path / "new")
    card = (tmp_path / "new" / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: peft\n") and "PeftModel.from_pretrained" in card
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "README.md").write_text("---\nmeta: hello\n---\nMy words\n")
    model.save_pretrained(tmp_path / "old")
    assert (
        tmp_path / "old" / "README.md"
    ).read_text() == "---\nmeta: hello\nlibrary_name: peft\n---\nMy words\n"


def test_from_pretrained_takes_a_device_map(tmp_path) -> None:
    lora_mlp().save_pretrained(tmp_path)
    loaded = PeftModel.from_pretrained(MLP(), tmp_path, device_map={"": "cpu"})
    assert loaded.device.type == "cpu"


def test_layer_and_model_status() -> None:
    model = lora_mlp()
    model.add_adapter("other", LoraConfig(target_modules=["lin0", "lin1"]))
    layers = get_layer_status(model)
    assert [s.name for s in layers] == ["model.lin0", "model.lin1"]  # relative to the tuner, as in HF PEFT
    assert [s.module_type for s in layers] == ["lora.Linear", "lora.Linear"]
    assert layers[0].available_adapters == ["default", "other"] and layers[0].requires_grad["default"] is True
    status = model.get_model_status()
    # as in HF PEFT, the active adapter is model-wide: listed even by a layer that lacks it
    assert status.active_adapters == ["default"] and layers[1].active_adapters == ["default"]
    assert status.requires_grad == {"default": True, "other": False}
    assert status.peft_types == {"default": "LORA", "other": "LORA"} and status.num_adapter_layers == 2
    assert get_model_status(model).available_adapters == ["default", "other"]
    assert status.quantization_backend is None  # only unquantized layers are adapted
    with pytest.raises(InvalidConfig, match="No adapter layers found in the model"):
        get_layer_status(MLP())


def test_status_lists_modules_to_save_copies():
    model = get_peft_model(MLP(), LoraConfig(target_modules=["lin0"], modules_to_save=["lin1"]))
    saved = get_layer_status(model)[1]
    assert (saved.name, saved.module_type, saved.active_adapters) == (
        "model.lin1",
        "ModulesToSaveWrapper",
        ["default"],
    )
    assert saved.requires_grad == {"default": True} and saved.available_adapters == ["default"]
    model.base_model.model.lin1.modules_to_save["default"].weight.requires_grad = False
    assert get_model_status(model).requires_grad == {"default": "irregular"}


def test_push_to_hub_offline_is_one_clear_line(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HubError) as excinfo:
        lora_mlp().push_to_hub("someone/an-adapter", token="not-a-real-token")
    message = str(excinfo.value)
    assert "\n" not in message and "someone/an-adapter" in message and "not-a-real-token" not in message
    with pytest.raises(InvalidConfig, match="not a valid Hub repo id"):
        lora_mlp().push_to_hub("not a repo id")


def test_save_pretrained_without_safetensors_writes_a_tensor_only_bin_that_loads(tmp_path) -> None:
    model = lora_mlp().eval()
    randomize_adapters(model)
    model.save_pretrained(tmp_path, safe_serialization=False)
    assert (tmp_path / "adapter_model.bin").is_file() and not (
        tmp_path / "adapter_model.safetensors"
    ).exists()
    assert set(torch.load(tmp_path / "adapter_model.bin", weights_only=True)) == set(
        get_peft_model_state_dict(model)
    )
    x = torch.randn(2, 6)
    torch.manual_seed(0)  # the same base weights as lora_mlp's
    torch.testing.assert_close(PeftModel.from_pretrained(MLP(), tmp_path)(x), model(x))


def test_merging_twice_warns_and_changes_nothing() -> None:
    model = lora_mlp(init_lora_weights=False).eval()
    model.merge_adapter()
    weight = model.base_model.model.lin0.base_layer.weight.clone()
    with pytest.warns(UserWarning, match="All adapters are already merged, nothing to do"):
        model.merge_adapter()
    torch.testing.assert_close(model.base_model.model.lin0.base_layer.weight, weight, rtol=0, atol=0)


def test_adapter_layers_switched_off_stay_off_after_a_disable_adapter_block() -> None:
    model = lora_mlp()
    layer = model.base_model.model.lin0
    model.disable_adapter_layers()  # the tuner's, reached through PeftModel's attribute forwarding
    assert layer.disable_adapters and not layer.lora_A["default"].weight.requires_grad
    with model.disable_adapter():
        pass
    assert layer.disable_adapters
    model.enable_adapter_layers()
    assert not layer.disable_adapters and layer.lora_A["default"].weight.requires_grad
    assert model.base_model.active_adapter == "default"


def test_the_config_passed_is_the_config_used(tmp_path) -> None:
    config = LoraConfig(target_modules=["lin0"])
    model = get_peft_model(MLP(), config)
    assert model.peft_config["default"] is config
    model.save_pretrained(tmp_path)
    loaded_config = LoraConfig(target_modules=["lin0"])
    loaded = PeftModel.from_pretrained(MLP(), tmp_path, config=loaded_config)
    assert loaded.peft_config["default"] is loaded_config and loaded_config.inference_mode


def test_a_merged_adapter_cannot_be_deleted_until_unmerged() -> None:
    model = lora_mlp(init_lora_weights=False)
    model.add_adapter("other", LoraConfig(target_modules=["lin0"]))
    model.merge_adapter()
    with pytest.raises(ValueError, match=r"Cannot delete adapter\(s\) \['default'\] while they are merged"):
        model.delete_adapter("default")
    assert set(model.peft_config) == {"default", "other"}
    model.delete_adapter("other")  # not merged: fine
    model.unmerge_adapter()
    model.delete_adapter("default")
    assert not model.peft_config


def test_deleting_every_adapter_leaves_none_active() -> None:
    model = lora_mlp()
    model.add_adapter("other", LoraConfig(target_modules=["lin0"]))
    model.set_adapter("other")
    model.delete_adapter("other")
    assert model.active_adapters == ["default"]
    model.delete_adapter("default")
    assert model.active_adapters == [] and not model.peft_config


def test_modules_to_save_wrapper_reports_its_active_copy() -> None:
    model = lora_mlp(modules_to_save=["lin1"])
    wrapper = model.base_model.model.lin1
    assert wrapper.active_adapters == ["default"] and wrapper.adapter_layer_names == ("modules_to_save",)


def test_modules_to_save_wrapper_reads_through_to_the_active_copy() -> None:
    model = lora_mlp(modules_to_save=["lin1"])
    wrapper = model.base_model.model.lin1
    assert wrapper.weight is wrapper.modules_to_save["default"].weight and wrapper.out_features == 3
    with model.disable_adapter():
        assert wrapper.weight is wrapper.original_module.weight


def test_attribute_access_on_an_unbuilt_model_is_an_attribute_error_not_a_recursion() -> None:
    bare = PeftModel.__new__(PeftModel)  # as copy/pickle create it, before __init__ or __setstate__
    with pytest.raises(AttributeError):
        _ = bare.anything


def test_check_target_module_exists_follows_the_config_s_rules() -> None:
    from adapterlab.tuners.tuners_utils import check_target_module_exists

    config = LoraConfig(target_modules=["q"], layers_to_transform=[1], exclude_modules=["model.layers.1.x.q"])
    assert check_target_module_exists(config, "model.layers.1.attn.q")
    assert not check_target_module_exists(config, "model.layers.0.attn.q")  # layer 0 not transformed
    assert not check_target_module_exists(config, "model.layers.1.x.q")  # excluded
    assert not check_target_module_exists(config, "model.layers.1.attn.qq")
