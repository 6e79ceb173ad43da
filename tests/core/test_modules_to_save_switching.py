"""modules_to_save copies when several adapters are active, combined or switched off (HF PEFT's rules)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from adapterlab import LoraConfig, get_peft_model
from adapterlab.errors import InvalidConfig


class DeepMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin0 = nn.Linear(8, 8)
        self.lin1 = nn.Linear(8, 8)
        self.lin2 = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin2(self.lin1(self.lin0(x)))


def two_adapters(saved0: str, saved1: str):
    model = get_peft_model(DeepMLP(), LoraConfig(target_modules=["lin0"], modules_to_save=[saved0]))
    model.add_adapter("other", LoraConfig(target_modules=["lin0"], modules_to_save=[saved1]))
    return model


def test_two_active_adapters_with_copies_of_one_module_are_refused_before_any_change():
    model = two_adapters("lin1", "lin1")
    with pytest.raises(InvalidConfig, match="Only one adapter can be set at a time for ModulesToSaveWrapper"):
        model.base_model.set_adapter(["default", "other"])
    assert model.base_model.active_adapters == ["default"]


def test_each_wrapper_runs_the_active_adapter_it_holds():
    model = two_adapters("lin1", "lin2")
    model.base_model.set_adapter(["default", "other"])
    lin1, lin2 = model.base_model.model.lin1, model.base_model.model.lin2
    assert lin1.active_adapters == ["default"] and lin2.active_adapters == ["other"]
    assert lin2.modules_to_save["other"].weight.requires_grad


def test_weighted_adapter_takes_the_one_trained_copy_and_refuses_two():
    model = get_peft_model(DeepMLP(), LoraConfig(target_modules=["lin0"], modules_to_save=["lin1"]))
    model.add_adapter("other", LoraConfig(target_modules=["lin0"]))
    model.add_weighted_adapter(["default", "other"], weights=[1.0, 1.0], adapter_name="mix")
    copies = model.base_model.model.lin1.modules_to_save
    torch.testing.assert_close(copies["mix"].weight, copies["default"].weight)
    assert copies["mix"].weight is not copies["default"].weight
    assert model.peft_config["mix"].modules_to_save == ["lin1"]
    both = two_adapters("lin1", "lin1")
    with pytest.raises(InvalidConfig, match="target the same module with modules_to_save, but found 1 such"):
        both.add_weighted_adapter(["default", "other"], weights=[1.0, 1.0], adapter_name="mix")
    assert "mix" not in both.peft_config


def test_disabled_adapter_layers_train_nothing_until_enabled_again():
    model = get_peft_model(DeepMLP(), LoraConfig(target_modules=["lin0"], modules_to_save=["lin1"]))
    model.disable_adapter_layers()
    assert not [n for n, p in model.named_parameters() if p.requires_grad]
    model.enable_adapter_layers()
    assert model.base_model.model.lin1.modules_to_save["default"].weight.requires_grad


def test_a_task_model_without_its_head_is_accepted_but_a_missing_user_module_is_not():
    from adapterlab import PeftModelForSequenceClassification
    from adapterlab.errors import TargetModuleNotFound

    model = PeftModelForSequenceClassification(DeepMLP(), LoraConfig(target_modules=["lin0"]))
    assert model.peft_config["default"].modules_to_save == ["classifier", "score"]  # HF's head names, absent
    with pytest.raises(TargetModuleNotFound, match="modules_to_save 'nothing' not found"):
        get_peft_model(DeepMLP(), LoraConfig(target_modules=["lin0"], modules_to_save=["nothing"]))
