"""HF PEFT's tuner helpers that scripts call directly: get_model_config, key prefixes, set_requires_grad."""

from __future__ import annotations

import dataclasses

import pytest
from torch import nn

from adapterlab import LoraConfig, get_peft_model
from adapterlab.errors import AdapterNotFound
from adapterlab.tuners.tuners_utils import (
    BaseTuner,
    _filter_state_dict_by_key_prefixes,
    _get_tuner_state_dict_key_prefixes,
)
from adapterlab.utils import DUMMY_MODEL_CONFIG


class _ToDict:
    def to_dict(self) -> dict:
        return {"model_type": "bert", "hidden_size": 4}


@dataclasses.dataclass
class _Dataclass:
    model_type: str = "gpt2"


def _with_config(config: object) -> nn.Module:
    model = nn.Linear(2, 2)
    model.config = config
    return model


def test_get_model_config_reads_every_kind_of_config() -> None:
    assert BaseTuner.get_model_config(_with_config(_ToDict())) == {"model_type": "bert", "hidden_size": 4}
    assert BaseTuner.get_model_config(_with_config(_Dataclass())) == {"model_type": "gpt2"}
    assert BaseTuner.get_model_config(_with_config({"model_type": "t5"})) == {"model_type": "t5"}
    no_config = BaseTuner.get_model_config(nn.Linear(2, 2))
    assert no_config == DUMMY_MODEL_CONFIG == {"model_type": "custom"}
    no_config["model_type"] = "changed"  # a copy: the shared default stays as it is
    assert DUMMY_MODEL_CONFIG == {"model_type": "custom"}


def test_key_prefixes_select_the_adapter_s_state_dict_entries_by_structure() -> None:
    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin0 = nn.Linear(4, 4)
            self.lora_lookalike = nn.Linear(4, 4)  # a base module, though named like an adapter part

    model = get_peft_model(Model(), LoraConfig(target_modules=["lin0"]))
    model.add_adapter("other", LoraConfig(target_modules=["lin0"]))
    prefixes = _get_tuner_state_dict_key_prefixes(model)
    selected = _filter_state_dict_by_key_prefixes(model.state_dict(), prefixes)
    assert sorted(selected) == [
        f"base_model.model.lin0.lora_{p}.{a}.weight" for p in "AB" for a in ("default", "other")
    ]
    only_other = _get_tuner_state_dict_key_prefixes(model, adapter_name="other")
    assert "base_model.model.lin0.lora_A.other" in only_other and not any(".default" in p for p in only_other)
    assert "lin0.lora_A" in _get_tuner_state_dict_key_prefixes(model.base_model.model)  # an injected model
    # "." boundaries: "a.b" covers "a.b.c" but not "a.bc"
    assert _filter_state_dict_by_key_prefixes({"a.b.c": 1, "a.bc": 2, "x.a.b": 3}, {"a.b"}) == {"a.b.c": 1}


def test_set_requires_grad_switches_one_adapter_s_tensors_whichever_is_active() -> None:
    base = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 2))
    model = get_peft_model(base, LoraConfig(target_modules=["0"]), adapter_name="a0")
    model.add_adapter("a1", LoraConfig(target_modules=["0", "1"], modules_to_save=["2"]))

    def grads(adapter: str) -> set[bool]:
        return {
            p.requires_grad
            for n, p in model.named_parameters()
            if f".{adapter}." in n or n.endswith(f".{adapter}")
        }

    assert grads("a0") == {True} and grads("a1") == {False}
    model.set_requires_grad(adapter_names="a1")
    assert grads("a0") == {True} and grads("a1") == {True}
    assert model.active_adapter == "a0"  # nothing else changed
    model.set_requires_grad(adapter_names=["a0", "a1"], requires_grad=False)
    assert grads("a0") == {False} and grads("a1") == {False}
    with pytest.raises(AdapterNotFound):
        model.set_requires_grad("ghost")


def test_hf_error_names_catch_our_errors() -> None:
    import adapterlab

    model = get_peft_model(nn.Sequential(nn.Linear(2, 2)), LoraConfig(target_modules=["0"]))
    with pytest.raises(
        adapterlab.NoMatchingPeftModuleError, match="Target modules 'nope' not found in the base model"
    ):
        model.add_adapter("other", LoraConfig(target_modules=["nope"]))
    assert issubclass(adapterlab.NoMatchingPeftModuleError, ValueError)
    assert issubclass(adapterlab.NoMatchingPeftModuleError, adapterlab.PeftError)
    assert list(model.peft_config) == ["default"]  # the failed adapter left nothing behind


def test_set_adapter_in_inference_mode_trains_nothing() -> None:
    model = get_peft_model(
        nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2)),
        LoraConfig(target_modules=["0"], modules_to_save=["1"]),
    )
    model.add_adapter("other", LoraConfig(target_modules=["0"], modules_to_save=["1"]))
    model.set_adapter("other", inference_mode=True)
    assert model.active_adapter == "other"
    assert not any(p.requires_grad for p in model.parameters())
    model.set_adapter("other")  # back to training: only "other"'s tensors
    trainable = sorted(n for n, p in model.named_parameters() if p.requires_grad)
    assert trainable and all(".other." in n for n in trainable)


def test_a_modules_to_save_wrapper_switched_directly_trains_its_copy() -> None:
    from adapterlab.tuners.modules_to_save import ModulesToSaveWrapper

    wrapper = ModulesToSaveWrapper(nn.Linear(2, 2), "a")
    wrapper.add_adapter("b")
    wrapper.set_adapter("b")  # HF PEFT's call: trainable unless said otherwise
    assert wrapper.active_adapters == ["b"]
    assert all(p.requires_grad for p in wrapper.modules_to_save["b"].parameters())
    assert not any(p.requires_grad for p in wrapper.modules_to_save["a"].parameters())


def test_every_adapter_holding_layer_lists_its_adapter_attributes() -> None:
    # HF PEFT's tests and tools read adapter_layer_names + other_param_names of any such layer
    from adapterlab.tuners.modules_to_save import ModulesToSaveWrapper

    model = get_peft_model(
        nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2)),
        LoraConfig(target_modules=["0"], modules_to_save=["1"]),
    )
    for layer in model.base_model.adapter_holding_layers():
        names = layer.adapter_layer_names + layer.other_param_names
        assert all(
            "default" in getattr(layer, name) for name in layer.adapter_layer_names if getattr(layer, name)
        )
        assert names
    assert ModulesToSaveWrapper.other_param_names == ()
