"""The live-row backward of a prompt model's frozen output layers (an opt-in CPU fast path): the same
forward and gradients as the plain layers, with only the rows that carry gradient multiplied."""

from __future__ import annotations

import copy
import io
from collections.abc import Callable, Iterator

import pytest
import torch
from accelerate.hooks import ModelHook, add_hook_to_module
from core_bases import bert_config, gpt2_config, llama_config, t5_config
from transformers import (
    BartConfig,
    BartForConditionalGeneration,
    BertForSequenceClassification,
    GPT2ForSequenceClassification,
    GPT2LMHeadModel,
    LlamaForCausalLM,
    T5ForConditionalGeneration,
)

import adapterlab
from adapterlab.tuners import cpu_fast_paths as live_rows

VOCAB = 64


LIVE_CLASSES = live_rows.PLAIN_CLASSES


@pytest.fixture(autouse=True)
def opt_in_to_live_rows() -> Iterator[None]:
    live_rows.configure(live_rows=True)
    yield
    live_rows.configure()


def wrapped_names(model: torch.nn.Module) -> set[str]:
    return {name for name, module in model.named_modules() if type(module) in LIVE_CLASSES}


def unwrap(model: torch.nn.Module) -> None:
    for module in model.modules():
        if type(module) in LIVE_CLASSES:
            module.__class__ = LIVE_CLASSES[type(module)]


# -- the product itself ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "live",
    [[0], [0, 5, 6], [], list(range(8))],
    ids=["one row", "some rows", "no rows", "every row"],
)
def test_live_rows_matmul_equals_the_dense_product(live: list[int]) -> None:
    generator = torch.Generator().manual_seed(0)
    grad = torch.zeros(2, 4, 7, dtype=torch.float64)  # (B, T, out): rows B*T = 8
    flat = grad.view(-1, 7)
    flat[live] = torch.randn(len(live), 7, generator=generator, dtype=torch.float64)
    weight = torch.randn(7, 5, generator=generator, dtype=torch.float64)  # (out, in)
    result = live_rows.live_rows_matmul(grad, weight)
    assert result.shape == (2, 4, 5)
    torch.testing.assert_close(result, grad @ weight, rtol=0, atol=1e-12)


def test_a_row_holding_nan_or_inf_is_multiplied_like_any_live_row() -> None:
    grad = torch.zeros(4, 3)
    grad[1, 2] = float("nan")
    grad[3, 0] = float("inf")
    weight = torch.ones(3, 2)
    result = live_rows.live_rows_matmul(grad, weight)
    assert result[1].isnan().all() and result[3].isinf().all()
    assert (result[[0, 2]] == 0).all()


# -- which layers get it ---------------------------------------------------------------------------


def _bart() -> BartForConditionalGeneration:
    return BartForConditionalGeneration(
        BartConfig(
            vocab_size=VOCAB,
            d_model=32,
            encoder_layers=2,
            decoder_layers=2,
            encoder_attention_heads=4,
            decoder_attention_heads=4,
            encoder_ffn_dim=37,
            decoder_ffn_dim=37,
            max_position_embeddings=48,
        )
    )


WRAPPED: dict[str, tuple[Callable[[], torch.nn.Module], str, set[str]]] = {
    "bert": (
        lambda: BertForSequenceClassification(bert_config(num_labels=2, positions=48)),
        "SEQ_CLS",
        {
            f"bert.encoder.layer.1.{n}"
            for n in (
                "attention.self.query",
                "attention.self.key",
                "attention.self.value",
                "attention.output.dense",
                "intermediate.dense",
                "output.dense",
            )
        },
    ),
    "gpt2": (
        lambda: GPT2LMHeadModel(gpt2_config(positions=48)),
        "CAUSAL_LM",
        {f"transformer.h.1.{n}" for n in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")}
        | {"lm_head"},
    ),
    "llama": (
        lambda: LlamaForCausalLM(llama_config(positions=48)),
        "CAUSAL_LM",
        {f"model.layers.1.self_attn.{n}_proj" for n in "qkvo"}
        | {f"model.layers.1.mlp.{n}_proj" for n in ("gate", "up", "down")}
        | {"lm_head"},
    ),
    "t5": (  # T5 keeps each block's sublayers in a list as long as the stack: the stack still wins
        lambda: T5ForConditionalGeneration(t5_config()),
        "SEQ_2_SEQ_LM",
        {f"decoder.block.1.layer.0.SelfAttention.{n}" for n in "qkvo"}
        | {f"decoder.block.1.layer.1.EncDecAttention.{n}" for n in "qkvo"}
        | {
            "decoder.block.1.layer.2.DenseReluDense.wi",
            "decoder.block.1.layer.2.DenseReluDense.wo",
            "lm_head",
        },
    ),
    "bart": (
        _bart,
        "SEQ_2_SEQ_LM",
        {f"model.decoder.layers.1.self_attn.{n}_proj" for n in ("q", "k", "v", "out")}
        | {f"model.decoder.layers.1.encoder_attn.{n}_proj" for n in ("q", "k", "v", "out")}
        | {"model.decoder.layers.1.fc1", "model.decoder.layers.1.fc2", "lm_head"},
    ),
}


@pytest.mark.parametrize("arch", sorted(WRAPPED))
def test_the_last_block_and_the_output_head_are_wrapped(arch: str) -> None:
    factory, task, expected = WRAPPED[arch]
    model = adapterlab.get_peft_model(
        factory(), adapterlab.PromptTuningConfig(task_type=task, num_virtual_tokens=3)
    )
    assert wrapped_names(model.get_base_model()) == expected


def test_an_accelerate_hook_still_runs_and_print_shows_the_model_as_before() -> None:
    torch.manual_seed(0)
    base = BertForSequenceClassification(bert_config(num_labels=2, positions=48))
    before = repr(base.bert)
    calls = []

    class Counting(ModelHook):
        def pre_forward(self, module, *args, **kwargs):
            calls.append(type(module).__name__)
            return args, kwargs

    add_hook_to_module(base.bert.encoder.layer[1].output.dense, Counting())  # as accelerate's dispatch does
    model = adapterlab.get_peft_model(
        base, adapterlab.PromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=3)
    )
    assert "bert.encoder.layer.1.output.dense" in wrapped_names(base)
    assert repr(base.bert) == before
    model(input_ids=torch.arange(2, 8).unsqueeze(0))
    assert calls == ["LiveRowsLinear"]


def test_a_data_parallel_replica_computes_with_its_own_weights() -> None:
    torch.manual_seed(0)
    model = adapterlab.get_peft_model(
        LlamaForCausalLM(llama_config(positions=48)),
        adapterlab.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3),
    )
    head = model.get_base_model().lm_head
    replica = head._replicate_for_data_parallel()  # what DataParallel does for each device
    # replicate() then gives the replica its device's copies of the parameters
    replica._parameters = {
        "weight": torch.nn.Parameter(torch.zeros_like(head.weight), requires_grad=False),
        "bias": None,
    }
    x = torch.randn(2, 32, requires_grad=True)
    assert (replica(x) == 0).all()
    assert not (head(x) == 0).all()


# -- same numbers, fewer rows ----------------------------------------------------------------------


def _gpt2_cls() -> GPT2ForSequenceClassification:
    config = gpt2_config(positions=48)
    config.num_labels, config.pad_token_id = 2, 0  # the head reads each sequence's last non-pad token
    return GPT2ForSequenceClassification(config)


def _batch(kind: str) -> dict[str, torch.Tensor]:
    """Two sequences, the second right-padded with two pad tokens (id 0)."""
    ids = torch.randint(3, VOCAB, (2, 6), generator=torch.Generator().manual_seed(1))
    ids[1, 4:] = 0
    mask = (ids != 0).long()
    if kind == "cls":
        return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([0, 1])}
    labels = ids.masked_fill(mask == 0, -100)
    if kind == "lm":
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}
    targets = labels[:, :4].clone()
    targets[1, 3] = -100  # a padded target
    return {"input_ids": ids, "attention_mask": mask, "labels": targets}  # seq2seq


GRADIENT_CASES: dict[str, tuple[Callable[[], torch.nn.Module], str, str]] = {
    "bert SEQ_CLS": (
        lambda: BertForSequenceClassification(bert_config(num_labels=2, positions=48)),
        "SEQ_CLS",
        "cls",
    ),
    "gpt2 SEQ_CLS": (_gpt2_cls, "SEQ_CLS", "cls"),
    "llama CAUSAL_LM": (lambda: LlamaForCausalLM(llama_config(positions=48)), "CAUSAL_LM", "lm"),
    "gpt2 CAUSAL_LM": (lambda: GPT2LMHeadModel(gpt2_config(positions=48)), "CAUSAL_LM", "lm"),
    "t5 SEQ_2_SEQ_LM": (lambda: T5ForConditionalGeneration(t5_config()), "SEQ_2_SEQ_LM", "seq2seq"),
}
METHODS: dict[str, Callable[[str], adapterlab.PeftConfig]] = {
    "prompt tuning": lambda task: adapterlab.PromptTuningConfig(task_type=task, num_virtual_tokens=3),
    "P-tuning": lambda task: adapterlab.PromptEncoderConfig(task_type=task, num_virtual_tokens=3),
    "prefix tuning": lambda task: adapterlab.PrefixTuningConfig(task_type=task, num_virtual_tokens=3),
}


def _gradients(
    model: torch.nn.Module, batch: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad()
    torch.manual_seed(7)  # the same dropout masks in both models
    loss = model(**batch).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def fast_and_plain(
    base: torch.nn.Module, config: adapterlab.PeftConfig
) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Two prompt models with the same prompt weights on copies of ``base``: the first with the
    live-row layers, the second with the plain ones; both in training mode."""
    torch.manual_seed(1)
    fast = adapterlab.get_peft_model(copy.deepcopy(base), copy.deepcopy(config)).train()
    torch.manual_seed(1)
    plain = adapterlab.get_peft_model(copy.deepcopy(base), copy.deepcopy(config)).train()
    unwrap(plain)
    return fast, plain


@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("case", sorted(GRADIENT_CASES))
def test_gradients_equal_the_plain_layers_while_dead_rows_are_skipped(
    case: str, method: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    factory, task, kind = GRADIENT_CASES[case]
    torch.manual_seed(0)
    base = factory()
    fast, plain = fast_and_plain(base, METHODS[method](task))
    calls: list[tuple[int, int]] = []  # (live rows, rows) of each wrapped layer's backward
    original = live_rows.live_rows_matmul

    def spy(grad_output: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        rows = grad_output.reshape(-1, grad_output.shape[-1])
        calls.append((int(rows.any(dim=1).sum()), rows.shape[0]))
        return original(grad_output, weight)

    monkeypatch.setattr(live_rows, "live_rows_matmul", spy)
    batch = _batch(kind)
    fast_loss, fast_grads = _gradients(fast, batch)
    plain_loss, plain_grads = _gradients(plain, batch)
    torch.testing.assert_close(fast_loss, plain_loss, rtol=0, atol=0)
    assert fast_grads.keys() == plain_grads.keys()
    for name, grad in fast_grads.items():
        torch.testing.assert_close(grad, plain_grads[name], msg=name)
    assert calls, "no wrapped layer ran its live-row backward"
    assert any(live < total for live, total in calls), "no gradient had a dead row to skip"


def test_a_trainable_layer_in_the_last_block_keeps_its_own_backward() -> None:
    torch.manual_seed(0)
    base = BertForSequenceClassification(bert_config(num_labels=2, positions=48))
    config = adapterlab.PromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=3)
    fast, plain = fast_and_plain(base, config)
    for model in (fast, plain):
        model.get_base_model().bert.encoder.layer[1].output.dense.requires_grad_(True)
    batch = _batch("cls")
    _, fast_grads = _gradients(fast, batch)
    _, plain_grads = _gradients(plain, batch)
    name = "base_model.bert.encoder.layer.1.output.dense.weight"
    assert name in fast_grads
    for key, grad in fast_grads.items():
        torch.testing.assert_close(grad, plain_grads[key], msg=key)


def test_outputs_deep_copies_and_pickles_are_unchanged() -> None:
    torch.manual_seed(0)
    base = LlamaForCausalLM(llama_config(positions=48))
    config = adapterlab.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3)
    fast, plain = (model.eval() for model in fast_and_plain(base, config))
    batch = _batch("lm")
    with torch.no_grad():
        expected = plain(**batch).logits
        assert torch.equal(fast(**batch).logits, expected)
    twin = copy.deepcopy(fast)
    assert wrapped_names(twin) == wrapped_names(fast) != set()
    buffer = io.BytesIO()
    torch.save(fast, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    with torch.no_grad():
        assert torch.equal(twin(**batch).logits, expected)
        assert torch.equal(loaded(**batch).logits, expected)


def test_gradients_under_bfloat16_autocast_equal_the_plain_layers() -> None:
    torch.manual_seed(0)
    base = BertForSequenceClassification(bert_config(num_labels=2, positions=48))
    config = adapterlab.PromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=3)
    fast, plain = fast_and_plain(base, config)
    batch = _batch("cls")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, fast_grads = _gradients(fast, batch)
        _, plain_grads = _gradients(plain, batch)
    for name, grad in fast_grads.items():
        assert grad.dtype == torch.float32
        torch.testing.assert_close(grad, plain_grads[name], msg=name)


@pytest.mark.parametrize("case", ["bert SEQ_CLS", "llama CAUSAL_LM"])
def test_gradients_with_gradient_checkpointing_equal_the_plain_layers(case: str) -> None:
    factory, task, kind = GRADIENT_CASES[case]
    torch.manual_seed(0)
    base = factory()
    base.gradient_checkpointing_enable()  # the blocks' forward runs again inside backward
    config = METHODS["prompt tuning"](task)
    fast, plain = fast_and_plain(base, config)
    batch = _batch(kind)
    fast_loss, fast_grads = _gradients(fast, batch)
    plain_loss, plain_grads = _gradients(plain, batch)
    torch.testing.assert_close(fast_loss, plain_loss, rtol=0, atol=0)
    for name, grad in fast_grads.items():
        torch.testing.assert_close(grad, plain_grads[name], msg=name)


def test_a_compiled_model_trains_with_the_same_gradients() -> None:
    config = bert_config(num_labels=2, positions=48)
    config.hidden_dropout_prob = config.attention_probs_dropout_prob = (
        0.0  # compiled dropout draws other masks
    )
    torch.manual_seed(0)
    fast, plain = fast_and_plain(BertForSequenceClassification(config), METHODS["prompt tuning"]("SEQ_CLS"))
    batch = _batch("cls")
    plain_loss, plain_grads = _gradients(plain, batch)
    compiled_loss, _ = _gradients(torch.compile(fast), batch)  # the gradients land in fast's parameters
    torch.testing.assert_close(compiled_loss, plain_loss)
    for name, param in fast.named_parameters():
        if param.requires_grad:
            torch.testing.assert_close(param.grad, plain_grads[name], msg=name)
