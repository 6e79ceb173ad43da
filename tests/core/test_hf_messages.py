"""HF PEFT's messages and warnings that scripts and HF PEFT's own tests match (``match=...``), and the
small HF behaviours around them; ours keep our error classes and add what to do."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from adapterlab import (
    LoraConfig,
    PromptTuningConfig,
    get_peft_model,
    get_peft_model_state_dict,
    inject_adapter_in_model,
)
from adapterlab.errors import AdapterNotFound, InvalidConfig, TargetModuleNotFound, UnsupportedModule


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin0 = nn.Linear(6, 8)
        self.drop = nn.Dropout(0.5)
        self.lin1 = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin1(self.drop(torch.relu(self.lin0(x))))


def test_dev_version_is_recorded_with_the_install_commit(monkeypatch):
    import adapterlab.config as config_module

    monkeypatch.setattr(config_module, "__version__", "0.3.0.dev1")
    monkeypatch.setattr(config_module, "_get_commit_hash", lambda package: "abc123")
    assert LoraConfig().peft_version == "0.3.0.dev1@abc123"
    monkeypatch.setattr(config_module, "_get_commit_hash", lambda package: None)
    assert PromptTuningConfig(num_virtual_tokens=2).peft_version == "0.3.0.dev1@UNKNOWN"

    def broken(package: str) -> str:
        raise OSError("unreadable metadata")

    monkeypatch.setattr(config_module, "_get_commit_hash", broken)
    with pytest.warns(UserWarning, match="error while trying to determine the commit hash"):
        assert LoraConfig().peft_version == "0.3.0.dev1@UNKNOWN"
    monkeypatch.setattr(config_module, "__version__", "0.3.0")  # a release records its version alone
    assert LoraConfig().peft_version == "0.3.0"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"target_modules": ".*foo", "layers_to_transform": [0]},
            "`layers_to_transform` cannot be used when",
        ),
        ({"target_modules": ".*foo", "layers_pattern": ["bar"]}, "`layers_pattern` cannot be used when"),
        ({"target_modules": ["foo"], "layers_pattern": ["bar"]}, "When `layers_pattern` is specified"),
    ],
)
def test_layer_selection_conflicts_carry_hf_wording(kwargs, message):
    with pytest.raises(InvalidConfig, match=message):
        LoraConfig(**kwargs)


def test_targeting_errors_say_when_exclusions_left_nothing():
    with pytest.raises(TargetModuleNotFound, match="All modules were excluded"):
        get_peft_model(
            MLP(),
            LoraConfig(target_modules=["lin0", "lin1", "drop"], exclude_modules=["lin0", "lin1", "drop"]),
        )
    with pytest.raises(TargetModuleNotFound, match="No modules were targeted for adaptation"):
        get_peft_model(MLP(), LoraConfig(target_modules=["lin0", "nothing"], exclude_modules=["lin0"]))
    with pytest.warns(UserWarning, match="exclude_modules=.* but no modules were excluded"):
        get_peft_model(MLP(), LoraConfig(target_modules=["lin1"], exclude_modules=["nothing"]))


def test_targeted_module_names_in_the_order_adapters_added_them():
    model = get_peft_model(MLP(), LoraConfig(target_modules=["lin1"]))
    model.add_adapter("other", LoraConfig(target_modules=["lin0", "lin1"]))
    assert model.targeted_module_names == ["lin1", "lin0"]


def test_get_peft_model_on_a_model_with_adapters_warns():
    base = MLP()
    get_peft_model(base, LoraConfig(target_modules=["lin0"]))
    with pytest.warns(UserWarning, match="You are trying to modify a model with PEFT for a second time"):
        get_peft_model(base, LoraConfig(target_modules=["lin1"]))


def test_state_dict_of_a_model_with_injected_adapters():
    model = inject_adapter_in_model(LoraConfig(target_modules=["lin0"], modules_to_save=["lin1"]), MLP())
    assert set(model.peft_config) == {"default"}
    assert set(get_peft_model_state_dict(model)) == {
        "lin0.lora_A.weight",
        "lin0.lora_B.weight",
        "lin1.weight",
        "lin1.bias",
    }


def test_modules_to_save_refuses_container_modules():
    class WithList(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin0 = nn.Linear(4, 4)
            self.blocks = nn.ModuleList([nn.Linear(4, 4)])

    model = WithList()
    with pytest.raises(
        UnsupportedModule, match="modules_to_save cannot be applied to modules of type ModuleList"
    ):
        get_peft_model(model, LoraConfig(target_modules=["lin0"], modules_to_save=["blocks"]))
    assert isinstance(model.blocks, nn.ModuleList)  # nothing was wrapped


def test_adapter_name_inside_the_tensor_prefix_warns(recwarn):
    from adapterlab.mapping import PEFT_TYPE_TO_PREFIX_MAPPING

    assert PEFT_TYPE_TO_PREFIX_MAPPING == {"LORA": "lora_"}
    model = get_peft_model(MLP(), LoraConfig(target_modules=["lin0"]), adapter_name="adapter")
    assert not any("should not be contained in the prefix" in str(w.message) for w in recwarn)
    with pytest.warns(UserWarning, match="Adapter name 'lora' should not be contained in the prefix 'lora_'"):
        model.add_adapter("lora", LoraConfig(target_modules=["lin0"]))


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: LoraConfig(use_dora=True, megatron_config={"x": 1}), "DoRA does not support megatron_core"),
        (
            lambda: PromptTuningConfig(
                num_virtual_tokens=2, prompt_tuning_init="TEXT", prompt_tuning_init_text="hi"
            ),
            "When prompt_tuning_init='TEXT', tokenizer_name_or_path can't be None",
        ),
        (
            lambda: get_peft_model(
                MLP(), LoraConfig(target_modules=["lin0"], r=7, init_lora_weights="orthogonal")
            ),
            "Orthogonal initialization requires the LoRA rank to be even, got 7 instead",
        ),
        (
            lambda: get_peft_model(
                nn.Sequential(nn.Conv2d(4, 4, 3, groups=2)), LoraConfig(target_modules=["0"], r=1)
            ),
            "Targeting a Conv2d with groups=2 and rank 1. Currently, support is limited",
        ),
    ],
)
def test_refusals_carry_hf_wording(build, message):
    with pytest.raises(InvalidConfig, match=message):
        build()


def test_olora_is_case_insensitive_as_in_hf():
    assert LoraConfig(init_lora_weights="OLoRA").init_lora_weights == "olora"


def test_mixed_batch_refusals_carry_hf_wording():
    model = get_peft_model(MLP(), LoraConfig(target_modules=["lin0"])).eval()
    x = torch.rand(3, 6)
    with pytest.raises(AdapterNotFound, match=r"Trying to infer with non-existing adapter\(s\): a, b"):
        model(x, adapter_names=["b", "a", "default"])
    with pytest.raises(
        InvalidConfig, match="Length of `adapter_names` should be the same as the number of inputs"
    ):
        model(x, adapter_names=["default"] * 2)
    model.merge_adapter()
    with pytest.raises(InvalidConfig, match="Cannot pass `adapter_names` when there are merged adapters"):
        model(x, adapter_names=["default"] * 3)
    dora = get_peft_model(MLP(), LoraConfig(target_modules=["lin0"], use_dora=True)).eval()
    with pytest.raises(InvalidConfig, match="Cannot pass `adapter_names` when DoRA is enabled"):
        dora(x, adapter_names=["default"] * 3)


def test_missing_target_modules_without_a_default_carry_hf_wording():
    with pytest.raises(InvalidConfig, match="Please specify `target_modules`"):
        get_peft_model(MLP(), LoraConfig())


def test_config_takes_the_name_of_the_model_the_adapter_is_added_to(recwarn):
    model = MLP()
    get_peft_model(model, LoraConfig(target_modules=["lin0"], base_model_name_or_path="mine"))
    assert not any("renamed" in str(w.message) for w in recwarn)  # an unnamed model keeps the user's name
    named = MLP()
    named.name_or_path = "org/base"
    config = LoraConfig(target_modules=["lin0"], base_model_name_or_path="mine")
    with pytest.warns(UserWarning, match="was renamed from 'mine' to 'org/base'"):
        get_peft_model(named, config)
    assert config.base_model_name_or_path == "org/base"


def test_p_tuning_mlp_warns_that_encoder_num_layers_is_ignored(recwarn):
    from adapterlab import PromptEncoder, PromptEncoderConfig

    sizes = {
        "num_virtual_tokens": 4,
        "token_dim": 8,
        "encoder_hidden_size": 8,
        "num_transformer_submodules": 1,
    }
    PromptEncoder(PromptEncoderConfig(**sizes))
    assert not recwarn.list
    with pytest.warns(UserWarning, match="for MLP, the argument `encoder_num_layers` is ignored"):
        PromptEncoder(PromptEncoderConfig(encoder_num_layers=3, **sizes))


def test_disable_adapter_warns_on_a_mix_of_enabled_and_disabled_layers_and_enables_all_after() -> None:
    model = get_peft_model(MLP(), LoraConfig(target_modules=["lin0", "lin1"]))
    lin0, lin1 = model.base_model.model.lin0, model.base_model.model.lin1
    lin0.enable_adapters(False)
    with pytest.warns(UserWarning, match="some adapter layers that are enabled and others that are disabled"):
        with model.disable_adapter():
            assert lin0.disable_adapters and lin1.disable_adapters
    assert not lin0.disable_adapters and not lin1.disable_adapters


def test_disable_adapter_is_silent_when_all_layers_agree(recwarn: pytest.WarningsRecorder) -> None:
    model = get_peft_model(MLP(), LoraConfig(target_modules=["lin0", "lin1"]))
    with model.disable_adapter():
        pass
    model.disable_adapter_layers()
    with model.disable_adapter():
        pass
    assert not [w for w in recwarn if "adapter layers" in str(w.message)]
    assert model.base_model.model.lin0.disable_adapters  # a uniform "off" is kept, not switched on


@pytest.mark.parametrize("target_modules", [None, [], ""])
def test_target_parameters_matching_nothing_without_target_modules_is_refused(target_modules) -> None:
    config = LoraConfig(target_modules=target_modules, target_parameters=["lin0.nothing"])
    with pytest.raises(
        TargetModuleNotFound, match="No `target_modules` passed but also no `target_parameters`"
    ):
        get_peft_model(MLP(), config)


def test_target_parameters_given_as_a_string_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="`target_parameters` must be a list of strings or None"):
        LoraConfig(target_parameters="lin0.weight")


def test_the_half_of_targets_that_matches_nothing_is_warned_about() -> None:
    from adapterlab.tuners.lora.param_wrapper import ParamWrapper

    with pytest.warns(
        RuntimeWarning, match=r"target_modules=\{'nothing'\} were set but no module was matched"
    ):
        model = get_peft_model(
            MLP(), LoraConfig(target_modules=["nothing"], target_parameters=["lin0.weight"])
        )
    assert isinstance(model.base_model.model.lin0, ParamWrapper)
    with pytest.warns(
        RuntimeWarning, match=r"target_parameters=\['lin0.nothing'\] were set but no parameter"
    ):
        model = get_peft_model(MLP(), LoraConfig(target_modules=["lin1"], target_parameters=["lin0.nothing"]))
    assert isinstance(model.base_model.model.lin0, nn.Linear) and hasattr(
        model.base_model.model.lin1, "lora_A"
    )


def test_a_parameter_of_a_targeted_module_is_refused_in_hf_words() -> None:
    config = LoraConfig(target_modules=["lin0"], target_parameters=["lin0.weight"])
    with pytest.raises(
        InvalidConfig, match="Trying to wrap an `nn.Parameter` of layer 'lin0' of type Linear"
    ):
        get_peft_model(MLP(), config)


def test_adapter_layers_print_with_hf_peft_names() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(10, 4)
            self.conv = nn.Conv2d(4, 4, 3)
            self.lin = nn.Linear(4, 4)
            self.experts = nn.Linear(4, 4)

    config = LoraConfig(target_modules=["emb", "conv", "lin"], target_parameters=["experts.weight"])
    model = get_peft_model(Net(), config).base_model.model
    names = {name: repr(getattr(model, name)).split("(", 1)[0] for name in ["emb", "conv", "lin", "experts"]}
    assert names == {
        "emb": "lora.Embedding",
        "conv": "lora.Conv2d",
        "lin": "lora.Linear",
        "experts": "lora.ParamWrapper",
    }
    assert "(base_layer): Linear(in_features=4" in repr(model.lin)


class _TinyLM(nn.Module):
    """A model with transformers' embedding accessors and an ``embed_tokens``, as HF PEFT's tests use."""

    def __init__(self) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(10, 4)
        self.lin = nn.Linear(4, 4)

    def get_input_embeddings(self) -> nn.Module:
        return self.embed_tokens

    def get_output_embeddings(self) -> None:
        return None


def test_saving_targeted_embedding_tables_says_so(recwarn: pytest.WarningsRecorder) -> None:
    model = get_peft_model(_TinyLM(), LoraConfig(target_modules=["embed_tokens", "lin"]))
    with pytest.warns(
        UserWarning, match="Setting `save_embedding_layers` to `True` as embedding layers found"
    ):
        state = get_peft_model_state_dict(model)
    assert "base_model.model.embed_tokens.base_layer.weight" in state
    state = get_peft_model_state_dict(model, save_embedding_layers=True)  # asked for: no warning
    assert "base_model.model.embed_tokens.base_layer.weight" in state
    assert not [w for w in recwarn if "save_embedding_layers" in str(w.message)]


def test_embedding_tables_of_a_plain_torch_model_are_not_guessed() -> None:
    class Plain(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed_tokens = nn.Embedding(10, 4)

    model = get_peft_model(Plain(), LoraConfig(target_modules=["embed_tokens"]))
    with pytest.warns(UserWarning, match="Could not identify embedding layer"):
        state = get_peft_model_state_dict(model, save_embedding_layers=True)
    assert sorted(state) == [
        "base_model.model.embed_tokens.lora_embedding_A",
        "base_model.model.embed_tokens.lora_embedding_B",
    ]


def test_a_layer_active_adapter_set_through_hf_peft_storage_counts() -> None:
    model = get_peft_model(MLP(), LoraConfig(target_modules=["lin0", "lin1"]))
    model.add_adapter("other", LoraConfig(target_modules=["lin0", "lin1"]))
    lin0 = model.base_model.model.lin0
    lin0._active_adapter = "other"  # HF PEFT's attribute: a name (or a list of names)
    assert lin0.active_adapters == ["other"] and lin0.active_adapter == "other"
    assert model.get_model_status().active_adapters == "irregular"
    lin0.set_adapter(["default", "other"])
    assert lin0._active_adapter == ["default", "other"]


@pytest.mark.parametrize(
    "attention, options, message",
    [
        (
            lambda: nn.MultiheadAttention(8, 2, kdim=4, vdim=4),
            {},
            "Only same embed for query/key/value is supported as of now for MultiheadAttention",
        ),
        (
            lambda: nn.MultiheadAttention(8, 2),
            {"use_dora": True},
            r"MultiheadAttention does not support DoRA \(yet\), please set use_dora to False",
        ),
    ],
)
def test_multihead_attention_refusals_carry_hf_wording(attention, options, message) -> None:
    model = nn.Sequential()
    model.add_module("mha", attention())
    with pytest.raises(InvalidConfig, match=message):
        get_peft_model(model, LoraConfig(target_modules=["mha"], **options))


def test_a_modules_to_save_copy_set_active_through_hf_peft_storage_runs() -> None:
    model = get_peft_model(MLP(), LoraConfig(target_modules=["lin0"], modules_to_save=["lin1"]))
    model.add_adapter("other", LoraConfig(target_modules=["lin0"], modules_to_save=["lin1"]))
    wrapper = model.base_model.model.lin1
    wrapper._active_adapter = "other"  # HF PEFT's attribute
    assert wrapper.active_adapter == "other" and wrapper.weight is wrapper.modules_to_save["other"].weight
    wrapper._active_adapter = "does-not-exist"
    with pytest.raises(
        AttributeError, match="has no attribute 'weight': its active adapter 'does-not-exist'"
    ):
        _ = wrapper.weight
