"""LoRA's options: DoRA, rsLoRA, inits, rank/alpha patterns, layer selection, embeddings, task heads."""

from __future__ import annotations

import math

import pytest
import torch
from core_bases import make_base, make_inputs, output_of, randomize_adapters
from transformers import BertConfig, BertForQuestionAnswering, BertForTokenClassification

from adapterlab import LoraConfig, PeftModel, get_peft_model, get_peft_model_state_dict
from adapterlab.tuners.lora.layer import Embedding, LoraLayer

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _lora_layers(model: PeftModel) -> dict[str, LoraLayer]:
    return {n: m for n, m in model.get_base_model().named_modules() if isinstance(m, LoraLayer)}


@pytest.mark.parametrize("base", ["bert", "gpt2"])
def test_dora_starts_at_the_base_and_merges_exactly(base) -> None:
    task = {"bert": "SEQ_CLS", "gpt2": "CAUSAL_LM"}[base]
    kind = {"bert": "encoder", "gpt2": "decoder"}[base]
    reference = make_base(base)
    model = get_peft_model(make_base(base), LoraConfig(task_type=task, r=4, use_dora=True))
    inputs = make_inputs(kind)
    torch.testing.assert_close(output_of(model, inputs), output_of(reference, inputs), rtol=0, atol=1e-5)
    keys = get_peft_model_state_dict(model)
    assert any(k.endswith(".lora_magnitude_vector") for k in keys)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name or "magnitude" in name:
                param.add_(torch.randn_like(param) * 0.1)
    adapted = output_of(model, inputs)
    weights = {
        k: v.clone() for k, v in model.get_base_model().state_dict().items() if "base_layer.weight" in k
    }
    model.merge_adapter()
    torch.testing.assert_close(output_of(model, inputs), adapted, rtol=1e-4, atol=1e-5)
    model.unmerge_adapter()
    for key, value in weights.items():
        torch.testing.assert_close(model.get_base_model().state_dict()[key], value, rtol=0, atol=1e-5)


def test_dora_training_step_reaches_the_magnitude() -> None:
    model = get_peft_model(
        make_base("bert"), LoraConfig(task_type="SEQ_CLS", r=4, use_dora=True, lora_dropout=0.1)
    )
    model.train()
    out = model(**make_inputs("encoder"), labels=torch.tensor([0, 1, 2]))
    out.loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert all(g is not None for g in grads.values())
    assert any("magnitude" in n for n in grads)


def test_rslora_scales_by_alpha_over_sqrt_r() -> None:
    model = get_peft_model(make_base("bert"), LoraConfig(r=16, lora_alpha=8, use_rslora=True))
    layer = next(iter(_lora_layers(model).values()))
    assert layer.scaling["default"] == pytest.approx(8 / math.sqrt(16))
    plain = get_peft_model(make_base("bert"), LoraConfig(r=16, lora_alpha=8))
    assert next(iter(_lora_layers(plain).values())).scaling["default"] == pytest.approx(0.5)


@pytest.mark.parametrize("init", [True, "gaussian", False])
def test_init_options(init) -> None:
    model = get_peft_model(make_base("bert"), LoraConfig(r=4, init_lora_weights=init))
    layer = next(iter(_lora_layers(model).values()))
    a, b = layer.lora_A["default"].weight, layer.lora_B["default"].weight
    assert a.abs().sum() > 0
    assert (b.abs().sum() == 0) == (init is not False)
    if init == "gaussian":
        assert a.std().item() == pytest.approx(1 / 4, rel=0.3)


def test_rank_and_alpha_patterns() -> None:
    config = LoraConfig(
        r=4,
        lora_alpha=8,
        target_modules=["query", "value"],
        rank_pattern={"layer.1.attention.self.query": 2},
        alpha_pattern={"value": 32},
    )
    layers = _lora_layers(get_peft_model(make_base("bert"), config))
    assert layers["bert.encoder.layer.1.attention.self.query"].r["default"] == 2
    assert layers["bert.encoder.layer.0.attention.self.query"].r["default"] == 4
    assert layers["bert.encoder.layer.0.attention.self.value"].scaling["default"] == 8.0
    assert layers["bert.encoder.layer.0.attention.self.query"].scaling["default"] == 2.0


def test_layers_to_transform_and_exclude_modules() -> None:
    chosen = get_peft_model(
        make_base("llama"),
        LoraConfig(target_modules=["q_proj", "v_proj"], layers_to_transform=[1], layers_pattern="layers"),
    )
    assert sorted(_lora_layers(chosen)) == [
        "model.layers.1.self_attn.q_proj",
        "model.layers.1.self_attn.v_proj",
    ]
    excluded = get_peft_model(
        make_base("llama"), LoraConfig(target_modules="all-linear", exclude_modules=["k_proj", "down_proj"])
    )
    names = {n.rsplit(".", 1)[-1] for n in _lora_layers(excluded)}
    assert names == {"q_proj", "v_proj", "o_proj", "gate_proj", "up_proj"}  # lm_head (the output) is left out


def test_regex_target_modules() -> None:
    model = get_peft_model(make_base("t5"), LoraConfig(target_modules=r".*decoder.*\.(q|v)"))
    assert all(".decoder." in n or n.startswith("decoder.") for n in _lora_layers(model))
    assert len(_lora_layers(model)) == 8  # 2 layers x (self + cross attention) x (q, v)


def test_default_targets_by_model_type() -> None:
    expected = {
        "bert": {"query", "value"},
        "gpt2": {"c_attn"},
        "t5": {"q", "v"},
        "llama": {"q_proj", "v_proj"},
    }
    for base, names in expected.items():
        model = get_peft_model(make_base(base), LoraConfig(r=2))
        assert {n.rsplit(".", 1)[-1] for n in _lora_layers(model)} == names
    assert get_peft_model(make_base("gpt2"), LoraConfig(r=2)).peft_config["default"].fan_in_fan_out


def test_embedding_lora_round_trips(tmp_path) -> None:
    model = get_peft_model(
        make_base("llama"), LoraConfig(task_type="CAUSAL_LM", r=4, target_modules=["embed_tokens"])
    )
    layer = model.get_base_model().model.embed_tokens
    assert isinstance(layer, Embedding)
    inputs = make_inputs("decoder")
    randomize_adapters(model)
    expected = output_of(model, inputs)
    model.save_pretrained(tmp_path)
    keys = set(get_peft_model_state_dict(model))
    assert "base_model.model.model.embed_tokens.lora_embedding_A" in keys
    loaded = PeftModel.from_pretrained(make_base("llama"), tmp_path)
    torch.testing.assert_close(output_of(loaded, inputs), expected, rtol=0, atol=1e-6)
    model.merge_adapter()
    torch.testing.assert_close(output_of(model, inputs), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("head", ["token", "qa"])
def test_task_heads_join_modules_to_save_and_are_saved(head, tmp_path) -> None:
    config = BertConfig(
        vocab_size=64,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        num_labels=2,
    )
    torch.manual_seed(0)
    cls, task, module = {
        "token": (BertForTokenClassification, "TOKEN_CLS", "classifier"),
        "qa": (BertForQuestionAnswering, "QUESTION_ANS", "qa_outputs"),
    }[head]
    model = get_peft_model(cls(config), LoraConfig(task_type=task, r=2))
    assert module in model.peft_config["default"].modules_to_save
    state = get_peft_model_state_dict(model)
    assert f"base_model.model.{module}.weight" in state and f"base_model.model.{module}.bias" in state
    with torch.no_grad():
        getattr(model.get_base_model(), module).modules_to_save["default"].weight.add_(1.0)
    inputs = make_inputs("encoder")
    model.eval()  # from_pretrained loads for inference (eval mode): compare like with like
    expected = output_of(model, inputs) if head == "token" else model(**inputs).start_logits
    model.save_pretrained(tmp_path)
    torch.manual_seed(0)
    loaded = PeftModel.from_pretrained(cls(config), tmp_path)
    got = output_of(loaded, inputs) if head == "token" else loaded(**inputs).start_logits
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


def test_a_training_step_updates_only_the_adapter() -> None:
    model = get_peft_model(make_base("bert"), LoraConfig(task_type="SEQ_CLS", r=4, lora_dropout=0.1))
    model.train()
    frozen = {n: p.clone() for n, p in model.named_parameters() if not p.requires_grad}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    for _ in range(2):
        model(**make_inputs("encoder"), labels=torch.tensor([0, 1, 2])).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    for name, param in model.named_parameters():
        if name in frozen:
            assert torch.equal(param, frozen[name]), name
    assert any(p.abs().sum() > 0 for n, p in model.named_parameters() if "lora_B" in n)


def test_lora_dropout_is_nn_dropout_or_identity_as_in_hf_peft() -> None:
    with_dropout = get_peft_model(make_base("bert"), LoraConfig(r=2, lora_dropout=0.1))
    dropout = next(iter(_lora_layers(with_dropout).values())).lora_dropout["default"]
    assert type(dropout) is torch.nn.Dropout and dropout.p == 0.1
    without = get_peft_model(make_base("bert"), LoraConfig(r=2, lora_dropout=0.0))
    assert isinstance(next(iter(_lora_layers(without).values())).lora_dropout["default"], torch.nn.Identity)


@pytest.mark.parametrize("use_rslora", [False, True])
def test_set_scale_multiplies_the_configured_scaling_rslora_included(use_rslora: bool) -> None:
    model = get_peft_model(make_base("bert"), LoraConfig(r=4, lora_alpha=8, use_rslora=use_rslora))
    layer = next(iter(_lora_layers(model).values()))
    configured = 8 / math.sqrt(4) if use_rslora else 8 / 4
    assert layer.scaling["default"] == pytest.approx(configured)
    layer.set_scale("default", 0.5)
    assert layer.scaling["default"] == pytest.approx(0.5 * configured)
    layer.set_scale("default", 1.0)
    assert layer.scaling["default"] == pytest.approx(configured)
