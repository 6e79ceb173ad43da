"""LoRA on ``nn.MultiheadAttention`` and on named parameters (``target_parameters``, e.g. MoE expert
weights): the update each applies, merging, several adapters, training, Hugging Face PEFT's
checkpoints both ways (same keys and shapes, same outputs), and the options each refuses, by name."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from core_bases import gpt2_config, llama_config
from safetensors import safe_open
from torch import nn
from transformers import GPT2LMHeadModel, LlamaForCausalLM, MixtralConfig, MixtralForCausalLM

import adapterlab
from adapterlab.errors import InvalidConfig, TargetModuleNotFound, UnsupportedFeature
from adapterlab.tuners.lora.layer import MultiheadAttention, ParamWrapper

peft = pytest.importorskip("peft")

EXPERTS, HIDDEN, INTER = 3, 6, 4


class Attention(nn.Module):
    """An nn.MultiheadAttention (embed 8, 2 heads) and a linear head."""

    def __init__(self, **options: Any) -> None:
        super().__init__()
        self.mha = nn.MultiheadAttention(8, 2, batch_first=True, **options)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x (B, T, 8)
        hidden, _ = self.mha(x, x, x)
        return self.head(hidden)  # (B, T, 3)


class Experts(nn.Module):
    """Expert weights stacked in 3-D parameters, as transformers' MoE blocks keep them: (E, out, in), or
    (E, in, out) with ``is_transposed``. Every token goes through every expert (enough for the tests)."""

    def __init__(self, transposed: bool) -> None:
        super().__init__()
        self.is_transposed = transposed
        up, down = (HIDDEN, 2 * INTER), (INTER, HIDDEN)  # (in, out)
        self.gate_up_proj = nn.Parameter(torch.randn(EXPERTS, *(up if transposed else up[::-1])) * 0.3)
        self.down_proj = nn.Parameter(torch.randn(EXPERTS, *(down if transposed else down[::-1])) * 0.3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x (N, H)
        up = self.gate_up_proj if self.is_transposed else self.gate_up_proj.transpose(1, 2)  # (E, H, 2I)
        down = self.down_proj if self.is_transposed else self.down_proj.transpose(1, 2)  # (E, I, H)
        gate, value = (x @ up).chunk(2, dim=-1)  # (E, N, I) each
        return (F.silu(gate) * value @ down).sum(0)  # (N, H)


class MoE(nn.Module):
    def __init__(self, transposed: bool = False) -> None:
        super().__init__()
        self.proj = nn.Linear(HIDDEN, HIDDEN)
        self.experts = Experts(transposed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.experts(self.proj(x))


def _mixtral() -> nn.Module:
    config = MixtralConfig(
        vocab_size=40,
        hidden_size=16,
        intermediate_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        num_local_experts=3,
        num_experts_per_tok=2,
    )
    return MixtralForCausalLM(config)


@dataclass(frozen=True)
class Case:
    base: Callable[[], nn.Module]
    inputs: dict[str, torch.Tensor]
    lora: dict[str, Any]
    # HF PEFT 0.21 adds an nn.MultiheadAttention's out_proj update twice (its open PR #3774 fixes that;
    # adapterlab adds it once): outputs are compared with that update zeroed, keys and shapes as written
    zero_out_proj: bool = False


GEN = torch.Generator().manual_seed(1)
ATTENTION_IN = {"x": torch.randn(2, 5, 8, generator=GEN)}
MOE_IN = {"x": torch.randn(7, HIDDEN, generator=GEN)}
IDS_IN = {"input_ids": torch.randint(1, 40, (2, 6), generator=GEN)}
BOTH_EXPERT_WEIGHTS = ["experts.gate_up_proj", "experts.down_proj"]

CASES = {
    "mha": Case(Attention, ATTENTION_IN, {"target_modules": ["mha"]}, zero_out_proj=True),
    "mha-and-head-rslora": Case(
        Attention,
        ATTENTION_IN,
        {"target_modules": ["mha", "head"], "use_rslora": True, "lora_alpha": 16},
        zero_out_proj=True,
    ),
    "experts": Case(MoE, MOE_IN, {"target_modules": [], "target_parameters": BOTH_EXPERT_WEIGHTS}),
    "experts-transposed-and-module": Case(
        lambda: MoE(transposed=True),
        MOE_IN,
        {
            "target_modules": ["proj"],
            "target_parameters": ["gate_up_proj"],
            "rank_pattern": {"gate_up_proj": 2},
        },
    ),
    "linear-weight-params-only": Case(MoE, MOE_IN, {"target_parameters": ["proj.weight"]}),
    "mixtral-experts": Case(
        _mixtral, IDS_IN, {"target_modules": [], "target_parameters": BOTH_EXPERT_WEIGHTS}
    ),
}


def _base(case: Case) -> nn.Module:
    torch.manual_seed(0)
    return case.base().eval()


def _output(model: nn.Module, case: Case) -> torch.Tensor:
    with torch.no_grad():
        out = model(**case.inputs)
    return out.logits if hasattr(out, "logits") else out


def _randomized(lib: Any, base: nn.Module, **lora: Any) -> Any:
    """``base`` with a LoRA adapter of ``lib`` whose tensors are seeded random (so it changes the output)."""
    config = lib.LoraConfig(**{"r": 4, "init_lora_weights": False, **copy.deepcopy(lora)})
    model = lib.get_peft_model(base, config)
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for _, param in sorted(model.named_parameters()):
            if param.requires_grad:
                param.add_(torch.randn(param.shape, generator=gen) * 0.2)
    return model.eval()


def _shapes(folder: Path) -> dict[str, tuple[int, ...]]:
    with safe_open(str(folder / "adapter_model.safetensors"), "pt") as f:
        return {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}


# -- Hugging Face PEFT's checkpoints, both ways -------------------------------------------------


@pytest.mark.parametrize("name", list(CASES))
def test_checkpoints_interoperate_both_ways(name: str, tmp_path: Path) -> None:
    case = CASES[name]
    shapes, configs = {}, {}
    for writer, reader in ((adapterlab, peft), (peft, adapterlab)):
        model = _randomized(writer, _base(case), **case.lora)
        if case.zero_out_proj:
            with torch.no_grad():
                model.base_model.model.mha.base_layer.out_proj.lora_B["default"].weight.zero_()
        expected = _output(model, case)
        assert not torch.allclose(expected, _output(_base(case), case), atol=1e-4), "adapter is a no-op"
        folder = tmp_path / writer.__name__
        model.save_pretrained(str(folder))
        loaded = reader.PeftModel.from_pretrained(_base(case), str(folder)).eval()
        torch.testing.assert_close(_output(loaded, case), expected, atol=1e-5, rtol=0)
        shapes[writer.__name__] = _shapes(folder)
        configs[writer.__name__] = json.loads((folder / "adapter_config.json").read_text())
    assert shapes["adapterlab"] == shapes["peft"]
    if "rank_pattern" in case.lora:  # r=2 for the expert weights: (E * 2, in)
        assert shapes["peft"]["base_model.model.experts.lora_A.weight"] == (EXPERTS * 2, HIDDEN)
    for key in ("target_modules", "target_parameters"):
        ours, theirs = configs["adapterlab"][key], configs["peft"][key]
        assert (sorted(ours) if ours else ours) == (sorted(theirs) if theirs else theirs), key


def test_checkpoint_keys_and_shapes_are_hf_peft_layout(tmp_path: Path) -> None:
    _randomized(adapterlab, _base(CASES["mha"]), target_modules=["mha"]).save_pretrained(
        str(tmp_path / "mha")
    )
    assert _shapes(tmp_path / "mha") == {
        "base_model.model.mha.lora_A.weight": (4, 8),  # in_proj: (r, embed)
        "base_model.model.mha.lora_B.weight": (24, 4),  # (3 * embed, r)
        "base_model.model.mha.base_layer.out_proj.lora_A.weight": (4, 8),
        "base_model.model.mha.base_layer.out_proj.lora_B.weight": (8, 4),
    }
    model = _randomized(adapterlab, _base(CASES["experts"]), **CASES["experts"].lora)
    model.save_pretrained(str(tmp_path / "experts"))
    assert _shapes(tmp_path / "experts") == {
        # down_proj, registered later, wraps outside: (E * r, in) and (out, r * E)
        "base_model.model.experts.lora_A.weight": (EXPERTS * 4, INTER),
        "base_model.model.experts.lora_B.weight": (HIDDEN, 4 * EXPERTS),
        "base_model.model.experts.base_layer.lora_A.weight": (EXPERTS * 4, HIDDEN),
        "base_model.model.experts.base_layer.lora_B.weight": (2 * INTER, 4 * EXPERTS),
    }


@pytest.mark.parametrize("name", ["mha-and-head-rslora", "experts", "mixtral-experts"])
def test_trainable_counts_match_hf_peft(name: str) -> None:
    case = CASES[name]
    ours = adapterlab.get_peft_model(_base(case), adapterlab.LoraConfig(r=4, **copy.deepcopy(case.lora)))
    theirs = peft.get_peft_model(_base(case), peft.LoraConfig(r=4, **copy.deepcopy(case.lora)))
    assert ours.get_nb_trainable_parameters() == theirs.get_nb_trainable_parameters()


# -- what the update is ---------------------------------------------------------------------------


def test_mha_adds_the_update_to_in_proj_and_out_proj() -> None:
    model = _randomized(adapterlab, _base(CASES["mha"]), target_modules=["mha"])
    layer = model.base_model.model.mha
    assert isinstance(layer, MultiheadAttention)
    by_hand = _base(CASES["mha"])
    with torch.no_grad():
        scaling = layer.scaling["default"]  # lora_alpha 8 / r 4
        assert scaling == 2.0
        by_hand.mha.in_proj_weight += (
            layer.lora_B["default"].weight @ layer.lora_A["default"].weight * scaling
        )
        out = layer.base_layer.out_proj
        by_hand.mha.out_proj.weight += out.lora_B["default"].weight @ out.lora_A["default"].weight * scaling
    torch.testing.assert_close(
        _output(model, CASES["mha"]), _output(by_hand, CASES["mha"]), atol=1e-6, rtol=0
    )


@pytest.mark.parametrize("transposed", [False, True])
def test_each_expert_gets_its_own_rank_r_update(transposed: bool) -> None:
    case = Case(lambda: MoE(transposed), MOE_IN, {})
    model = _randomized(adapterlab, _base(case), target_modules=[], target_parameters=["gate_up_proj"], r=2)
    layer = model.base_model.model.experts
    assert isinstance(layer, ParamWrapper) and layer.parameter_name == "gate_up_proj"
    a, b = layer.lora_A["default"].weight, layer.lora_B["default"].weight  # (E * r, in), (out, r * E)
    by_hand = _base(case)
    with torch.no_grad():
        for e in range(EXPERTS):
            # expert e: A's rows e*r .. e*r+r-1; B's columns j*E + e
            delta = b[:, e::EXPERTS] @ a[e * 2 : (e + 1) * 2] * layer.scaling["default"]  # (out, in)
            by_hand.experts.gate_up_proj[e] += delta.T if transposed else delta
    torch.testing.assert_close(_output(model, case), _output(by_hand, case), atol=1e-6, rtol=0)


def test_a_parameter_with_its_own_parametrization_gets_the_update_on_top() -> None:
    class PlusOne(nn.Module):
        def forward(self, weight: torch.Tensor) -> torch.Tensor:
            return weight + 1

    base = nn.Sequential(nn.Linear(2, 2, bias=False))
    nn.init.ones_(base[0].weight)
    nn.utils.parametrize.register_parametrization(base[0], "weight", PlusOne())
    config = adapterlab.LoraConfig(r=2, lora_alpha=6, target_parameters=["0.weight"], init_lora_weights=False)
    model = adapterlab.get_peft_model(base, config)
    layer = model.base_model.model[0]
    nn.init.ones_(layer.lora_A["default"].weight)
    nn.init.ones_(layer.lora_B["default"].weight)
    x = torch.ones(1, 2)
    # (1 + 1 + delta 2 * 6/2) per weight, two inputs of 1
    assert torch.equal(model(x), torch.full((1, 2), 16.0))
    assert torch.equal(model(x), torch.full((1, 2), 16.0))  # the call left nothing behind
    with pytest.raises(UnsupportedFeature, match="its own parametrization"):
        model.merge_adapter()
    assert torch.equal(model.unload()(x), torch.full((1, 2), 4.0))


# -- merging, switching, training -----------------------------------------------------------------


@pytest.mark.parametrize("name", ["mha-and-head-rslora", "experts", "experts-transposed-and-module"])
def test_merging_gives_the_same_output_and_unload_restores_the_base(name: str) -> None:
    case = CASES[name]
    base_state = {k: v.clone() for k, v in _base(case).state_dict().items()}
    model = _randomized(adapterlab, _base(case), **case.lora)
    expected = _output(model, case)
    model.merge_adapter()
    torch.testing.assert_close(_output(model, case), expected, atol=1e-5, rtol=1e-5)
    model.unmerge_adapter()
    torch.testing.assert_close(_output(model, case), expected, atol=1e-5, rtol=1e-5)
    with model.disable_adapter():
        torch.testing.assert_close(_output(model, case), _output(_base(case), case), atol=1e-6, rtol=0)
    merged = copy.deepcopy(model).merge_and_unload()
    torch.testing.assert_close(_output(merged, case), expected, atol=1e-5, rtol=1e-5)
    unloaded = model.unload()
    for merged_or_not in (merged, unloaded):
        assert not any(isinstance(m, adapterlab.tuners.lora.LoraLayer) for m in merged_or_not.modules())
        assert set(merged_or_not.state_dict()) == set(base_state)
    for key, value in unloaded.state_dict().items():
        torch.testing.assert_close(value, base_state[key], atol=1e-6, rtol=0)


def test_unloaded_attention_is_plain_torch_again() -> None:
    model = _randomized(adapterlab, _base(CASES["mha"]), target_modules=["mha"])
    merged = model.merge_and_unload()
    assert type(merged.mha) is nn.MultiheadAttention
    assert type(merged.mha.out_proj) is nn.modules.linear.NonDynamicallyQuantizableLinear
    assert isinstance(merged.mha.in_proj_weight, nn.Parameter)


@pytest.mark.parametrize("name", ["mha", "experts"])
def test_two_adapters_switch_and_delete(name: str) -> None:
    case = CASES[name]
    model = _randomized(adapterlab, _base(case), **case.lora)
    first = _output(model, case)
    wrappers = [m for m in model.modules() if isinstance(m, (ParamWrapper, MultiheadAttention))]
    model.add_adapter(
        "second", adapterlab.LoraConfig(r=2, init_lora_weights=False, **copy.deepcopy(case.lora))
    )
    assert [m for m in model.modules() if isinstance(m, (ParamWrapper, MultiheadAttention))] == wrappers
    model.set_adapter("second")
    assert not torch.allclose(_output(model, case), first, atol=1e-4)
    model.set_adapter("default")
    torch.testing.assert_close(_output(model, case), first, atol=0, rtol=0)
    model.delete_adapter("second")
    assert all("second" not in layer.r for layer in model.base_model.lora_layers())


def test_training_reaches_both_projections_and_leaves_the_base_alone() -> None:
    model = adapterlab.get_peft_model(_base(CASES["mha"]), adapterlab.LoraConfig(target_modules=["mha"]))
    attention = model.base_model.model.mha.base_layer
    in_proj, before = attention.in_proj_weight, attention.in_proj_weight.detach().clone()
    model(**ATTENTION_IN).square().sum().backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert len(grads) == 4 and all(
        g is not None and g.abs().sum() > 0 for n, g in grads.items() if "lora_B" in n
    )
    assert attention.in_proj_weight is in_proj and not in_proj.requires_grad and in_proj.grad is None
    assert torch.equal(in_proj, before)
    assert not attention.out_proj.base_layer.weight.requires_grad


def test_low_cpu_mem_usage_leaves_parameter_adapters_on_meta() -> None:
    base = adapterlab.inject_adapter_in_model(
        adapterlab.LoraConfig(target_modules=["mha"]), Attention(), low_cpu_mem_usage=True
    )
    assert (
        base.mha.lora_A["default"].weight.is_meta
        and base.mha.base_layer.out_proj.lora_B["default"].weight.is_meta
    )
    moe = adapterlab.inject_adapter_in_model(
        adapterlab.LoraConfig(target_parameters=["gate_up_proj"]), MoE(), low_cpu_mem_usage=True
    )
    assert moe.experts.lora_A["default"].weight.is_meta


# -- refused, by name, before anything changes ---------------------------------------------------


@pytest.mark.parametrize(
    "option, pattern",
    [
        ({"use_dora": True}, "DoRA"),
        ({"lora_bias": True}, "lora_bias"),
        ({"init_lora_weights": "pissa"}, "pissa"),
    ],
)
def test_mha_refuses_options_it_cannot_honour(option: dict[str, Any], pattern: str) -> None:
    base = Attention()
    with pytest.raises(UnsupportedFeature, match=pattern):
        adapterlab.get_peft_model(base, adapterlab.LoraConfig(target_modules=["mha"], **option))
    assert type(base.mha) is nn.MultiheadAttention


def test_mha_with_separate_key_value_sizes_is_refused() -> None:
    base = Attention(kdim=4, vdim=4)
    with pytest.raises(UnsupportedFeature, match="kdim == vdim == embed_dim"):
        adapterlab.get_peft_model(base, adapterlab.LoraConfig(target_modules=["mha"]))
    assert type(base.mha) is nn.MultiheadAttention


@pytest.mark.parametrize("name", ["mha", "experts"])
def test_mixed_batches_are_refused(name: str) -> None:
    case = CASES[name]
    model = _randomized(adapterlab, _base(case), **case.lora)
    rows = next(iter(case.inputs.values())).shape[0]
    with pytest.raises(UnsupportedFeature, match="does not support mixed adapter batches"):
        model(**case.inputs, adapter_names=["default"] * rows)


@pytest.mark.parametrize(
    "option, error, pattern",
    [
        ({"lora_dropout": 0.1}, InvalidConfig, "lora_dropout"),
        ({"use_dora": True}, InvalidConfig, "use_dora"),
        ({"lora_bias": True}, InvalidConfig, "lora_bias"),
        ({"init_lora_weights": "olora"}, UnsupportedFeature, "olora"),
        ({"target_parameters": "experts.gate_up_proj"}, InvalidConfig, "list of parameter names"),
        ({"velora_config": adapterlab.VeloraConfig(num_groups=2)}, InvalidConfig, "velora_config"),
        ({"kasa_config": adapterlab.KasaConfig()}, InvalidConfig, "kasa_config"),
    ],
)
def test_target_parameters_refuses_options_it_cannot_honour(
    option: dict[str, Any], error: type[Exception], pattern: str
) -> None:
    with pytest.raises(error, match=pattern):
        adapterlab.LoraConfig(**{"target_parameters": ["experts.gate_up_proj"], **option})


def test_parameters_that_cannot_be_wrapped_are_refused_before_any_change() -> None:
    class TopLevel(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.param = nn.Parameter(torch.zeros(4, 4))
            self.inner = nn.Module()
            self.inner.cube = nn.Parameter(torch.zeros(2, 2, 2, 2))

    with pytest.raises(UnsupportedFeature, match="top-level module"):
        adapterlab.get_peft_model(TopLevel(), adapterlab.LoraConfig(target_parameters=["param"]))
    with pytest.raises(UnsupportedFeature, match="4 dimensions"):
        adapterlab.get_peft_model(TopLevel(), adapterlab.LoraConfig(target_parameters=["inner.cube"]))
    with pytest.raises(TargetModuleNotFound, match="match no parameter"):
        adapterlab.get_peft_model(MoE(), adapterlab.LoraConfig(target_parameters=["experts.nothing"]))
    base = MoE()
    with pytest.raises(InvalidConfig, match="target_modules adapts too"):
        adapterlab.get_peft_model(
            base, adapterlab.LoraConfig(target_modules=["proj"], target_parameters=["proj.weight"])
        )
    assert type(base.proj) is nn.Linear


def test_adapters_must_name_the_same_parameters() -> None:
    model = adapterlab.get_peft_model(MoE(), adapterlab.LoraConfig(target_parameters=["gate_up_proj"]))
    with pytest.raises(InvalidConfig, match="all adapters must target the same set of parameters"):
        model.add_adapter("other", adapterlab.LoraConfig(target_parameters=["down_proj"]))
    assert "other" not in model.peft_config
    with pytest.raises(UnsupportedFeature, match="target_parameters"):
        model.add_weighted_adapter(["default"], [0.5], "half")


def test_a_linear_weight_as_parameter_equals_the_module_as_target() -> None:
    torch.manual_seed(0)
    base = LlamaForCausalLM(llama_config()).eval()
    by_module = _randomized(adapterlab, copy.deepcopy(base), target_modules=["gate_proj"])
    by_parameter = adapterlab.get_peft_model(
        copy.deepcopy(base),
        adapterlab.LoraConfig(r=4, target_modules=[], target_parameters=["gate_proj.weight"]),
    )
    for (name, value), (other, target) in zip(
        sorted((n, p) for n, p in by_module.named_parameters() if "lora_" in n),
        sorted((n, p) for n, p in by_parameter.named_parameters() if "lora_" in n),
        strict=True,
    ):
        assert name == other and value.shape == target.shape
        target.data.copy_(value)
    ids = IDS_IN["input_ids"] % 64
    with torch.no_grad():
        torch.testing.assert_close(by_parameter(input_ids=ids).logits, by_module(input_ids=ids).logits)


def test_expert_adapters_train_and_load_in_any_order(tmp_path: Path) -> None:
    case = CASES["mixtral-experts"]
    model = adapterlab.get_peft_model(_base(case), adapterlab.LoraConfig(r=2, **copy.deepcopy(case.lora)))
    model.train()
    model(**case.inputs).logits.square().mean().backward()
    grads = {n: p.grad for n, p in model.named_parameters() if "lora_" in n}
    assert len(grads) == 4 and all(g is not None for g in grads.values())  # A, B of 2 expert weights, 1 layer
    assert all(g.abs().sum() > 0 for n, g in grads.items() if "lora_B" in n)  # B is 0: only it moves first
    model = _randomized(adapterlab, _base(case), **case.lora)
    model.add_adapter(
        "other", adapterlab.LoraConfig(r=2, init_lora_weights=False, **copy.deepcopy(case.lora))
    )
    expected = {}
    for name in ("default", "other"):
        model.set_adapter(name)
        expected[name] = _output(model, case)
    model.save_pretrained(str(tmp_path))
    loaded = adapterlab.PeftModel.from_pretrained(_base(case), str(tmp_path / "other"), adapter_name="other")
    loaded.load_adapter(str(tmp_path), adapter_name="default")
    for name in ("default", "other"):
        loaded.set_adapter(name)
        torch.testing.assert_close(_output(loaded.eval(), case), expected[name], atol=1e-6, rtol=0)


def test_a_model_type_without_defaults_needs_explicit_target_modules() -> None:
    with pytest.raises(InvalidConfig, match="target_modules=\\[\\] to adapt the parameters only"):
        adapterlab.get_peft_model(_mixtral(), adapterlab.LoraConfig(target_parameters=BOTH_EXPERT_WEIGHTS))


def test_conv1d_modules_and_a_parameter_save_and_reload(tmp_path: Path) -> None:
    # adapting a Conv1D module records fan_in_fan_out=True, which target_parameters leaves alone
    torch.manual_seed(0)
    base = GPT2LMHeadModel(gpt2_config()).eval()
    model = _randomized(
        adapterlab, copy.deepcopy(base), target_modules=["c_attn"], target_parameters=["mlp.c_fc.weight"]
    )
    assert model.peft_config["default"].fan_in_fan_out
    model.save_pretrained(str(tmp_path))
    loaded = adapterlab.PeftModel.from_pretrained(copy.deepcopy(base), str(tmp_path)).eval()
    ids = IDS_IN["input_ids"] % 64
    with torch.no_grad():
        torch.testing.assert_close(
            loaded(input_ids=ids).logits, model(input_ids=ids).logits, atol=1e-6, rtol=0
        )


def test_mha_inside_a_transformer_encoder_layer() -> None:
    torch.manual_seed(0)
    base = nn.Sequential(nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)).eval()
    model = _randomized(adapterlab, copy.deepcopy(base), target_modules=["self_attn"])
    x = ATTENTION_IN["x"]
    assert model.base_model.model[0].self_attn.batch_first  # the layer's own checks read the wrapped module
    fast_path = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(
        False
    )  # the fused path reads the weights itself (module docstring)
    try:
        with torch.no_grad():
            unmerged = model(x)
            assert not torch.allclose(unmerged, base(x), atol=1e-4)
            model.merge_adapter()
            torch.testing.assert_close(model(x), unmerged, atol=1e-5, rtol=1e-5)
    finally:
        torch.backends.mha.set_fastpath_enabled(fast_path)


def test_targeted_parameter_names_lists_full_names_in_adapting_order() -> None:
    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin0, self.lin1 = nn.Linear(4, 4), nn.Linear(4, 2)
            self.block = nn.Sequential(nn.Linear(4, 4))

    model = adapterlab.get_peft_model(
        Model(), adapterlab.LoraConfig(target_parameters=["lin0.weight", "lin1.weight", "0.weight"])
    )
    assert model.targeted_parameter_names == ["lin0.weight", "lin1.weight", "block.0.weight"]
    assert model.targeted_module_names == []  # HF PEFT keeps the two lists apart
