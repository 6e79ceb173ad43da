"""Prompt tuning, P-tuning and prefix tuning checkpoints interoperate with Hugging Face PEFT.

For every method x {GPT-2, Llama (grouped-query attention), T5, mT5, BART, BERT and GPT-2
classifiers}: one library writes the adapter (random prompt weights, task head randomized), the
other loads it into a fresh copy of the same seeded base; logits must agree to 1e-4 and the
greedy / beam / seeded-sampling generations must be identical. Where HF PEFT itself fails under
transformers 5 we say so and check ours alone against a reference:

- prefix tuning on the classifiers (BERT, GPT-2): HF raises "Model does not support past key values";
- ``generate`` on decoder-only models: HF PEFT 0.21 looks for the cache under the old
  ``past_key_values`` name, so it prepends the virtual tokens again at every decoding step (prompt
  tuning, P-tuning) or hands the model a prefix it drops (prefix tuning, all bases). There we
  compare HF's first generated token only, and check every generation of ours against a greedy
  loop that recomputes the whole sequence through ``forward`` (whose logits match HF's).
"""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from core_bases import bert_config, gpt2_config, llama_config, t5_config
from safetensors import safe_open
from transformers import (
    BartConfig,
    BartForConditionalGeneration,
    BertForSequenceClassification,
    GPT2ForSequenceClassification,
    GPT2LMHeadModel,
    LlamaForCausalLM,
    MT5Config,
    MT5ForConditionalGeneration,
    T5ForConditionalGeneration,
)

import adapterlab

peft = pytest.importorskip("peft")

VOCAB, BATCH, SEQ, VIRTUAL = 64, 2, 6, 4
NEW_TOKENS = 5


def _gpt2_classifier() -> GPT2ForSequenceClassification:
    config = gpt2_config(positions=48)
    config.num_labels, config.pad_token_id = 3, 0  # the head reads each row's last non-pad token
    return GPT2ForSequenceClassification(config)


def _bart_config() -> BartConfig:
    return BartConfig(
        vocab_size=VOCAB,
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=37,
        decoder_ffn_dim=37,
        max_position_embeddings=48,
        # T5's token ids, which the generation checks below decode with
        pad_token_id=0,
        bos_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
        forced_bos_token_id=None,
        forced_eos_token_id=None,
    )


BASES: dict[str, tuple[Callable[[], torch.nn.Module], str]] = {
    "gpt2": (lambda: GPT2LMHeadModel(gpt2_config(positions=48)), "CAUSAL_LM"),
    "llama": (lambda: LlamaForCausalLM(llama_config(positions=48)), "CAUSAL_LM"),
    "t5": (lambda: T5ForConditionalGeneration(t5_config(layers=3)), "SEQ_2_SEQ_LM"),
    "bert-cls": (lambda: BertForSequenceClassification(bert_config(positions=48)), "SEQ_CLS"),
    "gpt2-cls": (lambda: _gpt2_classifier(), "SEQ_CLS"),
    "bart": (lambda: BartForConditionalGeneration(_bart_config()), "SEQ_2_SEQ_LM"),
    "mt5": (lambda: MT5ForConditionalGeneration(MT5Config(**t5_config(layers=2).to_dict())), "SEQ_2_SEQ_LM"),
}

METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    "prompt": ("PromptTuningConfig", {}),
    "ptuning": ("PromptEncoderConfig", {"encoder_hidden_size": 16}),
    "prefix": ("PrefixTuningConfig", {}),
}
# variants whose trained modules differ from what is saved (the encoder's output)
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "ptuning-lstm": (
        "PromptEncoderConfig",
        {"encoder_reparameterization_type": "LSTM", "encoder_hidden_size": 8},
    ),
    "prefix-projection": ("PrefixTuningConfig", {"prefix_projection": True, "encoder_hidden_size": 8}),
}
CASES = [(method, base) for method in METHODS for base in BASES] + [
    (v, b) for v in VARIANTS for b in ("gpt2", "t5")
]


@pytest.fixture(scope="module")
def fresh_base() -> Callable[[str], torch.nn.Module]:
    """One seeded instance per base; every call returns a copy with the same weights."""
    built: dict[str, torch.nn.Module] = {}

    def build(name: str) -> torch.nn.Module:
        if name not in built:
            with torch.random.fork_rng():
                torch.manual_seed(0)
                built[name] = BASES[name][0]().eval()
        return copy.deepcopy(built[name])

    return build


def _config(lib: Any, method: str, task_type: str) -> Any:
    class_name, kwargs = {**METHODS, **VARIANTS}[method]
    return getattr(lib, class_name)(task_type=task_type, num_virtual_tokens=VIRTUAL, **kwargs)


def _inputs(task_type: str, *, padded: bool = True) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(3, VOCAB, (BATCH, SEQ), generator=gen)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if padded:
        batch["attention_mask"][1, -2:] = 0
    if task_type == "SEQ_2_SEQ_LM":
        batch["decoder_input_ids"] = torch.randint(3, VOCAB, (BATCH, 3), generator=gen)
    if task_type == "SEQ_CLS":
        batch["token_type_ids"] = torch.zeros_like(ids)
        batch["token_type_ids"][:, SEQ // 2 :] = 1
    return batch


def _logits(model: Any, task_type: str) -> torch.Tensor:
    with torch.no_grad():
        return model(**_inputs(task_type)).logits


def _randomize_heads(model: Any) -> None:
    """Give the trained task head a seeded random value (prompt weights already start random)."""
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, param in sorted(model.named_parameters()):
            if param.requires_grad and "prompt_encoder" not in name:
                param.add_(torch.randn(param.shape, generator=gen) * 0.5)


def _write(lib: Any, method: str, base_name: str, fresh_base: Callable, folder: Path) -> Any:
    base = fresh_base(base_name)
    torch.manual_seed(3)
    model = lib.get_peft_model(base, _config(lib, method, BASES[base_name][1]))
    _randomize_heads(model)
    model.eval()
    model.save_pretrained(folder)
    return model


def _assert_adapter_changes_output(logits: torch.Tensor, base: torch.nn.Module, task_type: str) -> None:
    base_logits = _logits(base, task_type)
    # decoder-only prompt methods also return logits for the virtual positions in front
    assert not torch.allclose(logits[:, -base_logits.shape[1] :], base_logits, atol=1e-3)


def _hf_forward_fails(method: str, base_name: str) -> bool:
    return method.startswith("prefix") and base_name in ("bert-cls", "gpt2-cls")


@pytest.mark.parametrize(("method", "base_name"), CASES)
@pytest.mark.parametrize("direction", ["hf-to-ours", "ours-to-hf"])
def test_logits_match_across_libraries(method, base_name, direction, fresh_base, tmp_path):
    task_type = BASES[base_name][1]
    writer, reader = (peft, adapterlab) if direction == "hf-to-ours" else (adapterlab, peft)
    written = _write(writer, method, base_name, fresh_base, tmp_path)
    loaded = reader.PeftModel.from_pretrained(fresh_base(base_name), tmp_path).eval()
    hf_model, ours = (written, loaded) if writer is peft else (loaded, written)
    with safe_open(str(tmp_path / "adapter_model.safetensors"), "pt") as f:
        saved = f.get_tensor("prompt_embeddings")
    config = loaded.peft_config["default"]
    width = config.num_layers * 2 * config.token_dim if method.startswith("prefix") else config.token_dim
    rows = VIRTUAL if method.startswith("prefix") else VIRTUAL * config.num_transformer_submodules
    assert tuple(saved.shape) == (rows, width)

    ours_logits = _logits(ours, task_type)
    if _hf_forward_fails(method, base_name):
        with pytest.raises(ValueError, match="past key values"):
            _logits(hf_model, task_type)
        # HF still reads and writes the file: the same rows on both sides
        assert torch.equal(hf_model.get_prompt_embedding_to_save("default"), saved)
        _assert_adapter_changes_output(ours_logits, fresh_base(base_name), task_type)
        return
    torch.testing.assert_close(ours_logits, _logits(hf_model, task_type), atol=1e-4, rtol=0)
    _assert_adapter_changes_output(ours_logits, fresh_base(base_name), task_type)


def _trainable_line(model: Any) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        model.print_trainable_parameters()
    return out.getvalue().strip()


@pytest.mark.parametrize(("method", "base_name"), CASES)
def test_trainable_parameters_match_hf(method, base_name, fresh_base):
    task_type = BASES[base_name][1]
    lines = [
        _trainable_line(lib.get_peft_model(fresh_base(base_name), _config(lib, method, task_type)))
        for lib in (peft, adapterlab)
    ]
    assert lines[0] == lines[1]


GENERATIONS = {
    "greedy": {"do_sample": False},
    "beam": {"do_sample": False, "num_beams": 3, "num_return_sequences": 2},
    "sample": {"do_sample": True, "top_k": 8},
}
GENERATIVE_CASES = [(m, b) for m, b in CASES if BASES[b][1] != "SEQ_CLS"]
# HF PEFT 0.21 looks for the cache under ``past_key_values``; transformers 5 calls it ``cache``, so
# for decoder-only models HF prepends the virtual tokens again at every decoding step: only its
# first generated token is right there.
HF_RIGHT_AFTER_PREFILL = {"gpt2": False, "llama": False, "t5": True, "bart": True, "mt5": True}


def _generate(
    model: Any, task_type: str, settings: dict[str, Any], new_tokens: int = NEW_TOKENS
) -> torch.Tensor:
    batch = _inputs(task_type, padded=False)
    batch.pop("decoder_input_ids", None)
    torch.manual_seed(4)
    return model.generate(**batch, max_new_tokens=new_tokens, pad_token_id=0, **settings)


@pytest.mark.parametrize(
    ("method", "base_name"), [c for c in GENERATIVE_CASES if not c[0].startswith("prefix")]
)
def test_generations_match_hf(method, base_name, fresh_base, tmp_path):
    task_type = BASES[base_name][1]
    theirs = _write(peft, method, base_name, fresh_base, tmp_path)
    ours = adapterlab.PeftModel.from_pretrained(fresh_base(base_name), tmp_path).eval()
    new_tokens = NEW_TOKENS if HF_RIGHT_AFTER_PREFILL[base_name] else 1
    for mode, settings in GENERATIONS.items():
        generated = _generate(ours, task_type, settings, new_tokens)
        assert torch.equal(generated, _generate(theirs, task_type, settings, new_tokens)), mode


def _recomputed_greedy(model: Any, task_type: str) -> torch.Tensor:
    """Greedy decoding without any cache: every step runs the whole sequence through forward."""
    batch = _inputs(task_type, padded=False)
    ids = batch["input_ids"]
    with torch.no_grad():
        if task_type == "SEQ_2_SEQ_LM":
            out = torch.zeros((BATCH, 1), dtype=torch.long)
            for _ in range(NEW_TOKENS):
                logits = model(
                    input_ids=ids, attention_mask=batch["attention_mask"], decoder_input_ids=out
                ).logits
                out = torch.cat((out, logits[:, -1].argmax(-1, keepdim=True)), dim=1)
            return out
        for _ in range(NEW_TOKENS):
            logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
            ids = torch.cat((ids, logits[:, -1].argmax(-1, keepdim=True)), dim=1)
        return ids


@pytest.mark.parametrize(("method", "base_name"), GENERATIVE_CASES)
def test_cached_generation_decodes_what_forward_predicts(method, base_name, fresh_base, tmp_path):
    """Our forward equals HF's (above); our cached generation must agree with that forward at every step."""
    task_type = BASES[base_name][1]
    _write(peft, method, base_name, fresh_base, tmp_path)
    ours = adapterlab.PeftModel.from_pretrained(fresh_base(base_name), tmp_path).eval()
    greedy = _generate(ours, task_type, GENERATIONS["greedy"])
    assert torch.equal(greedy, _recomputed_greedy(ours, task_type))
    for mode in ("beam", "sample"):
        out = _generate(ours, task_type, GENERATIONS[mode])
        assert out.shape[0] == BATCH * GENERATIONS[mode].get("num_return_sequences", 1)


@pytest.mark.parametrize(("method", "base_name"), [(m, b) for m in METHODS for b in ("gpt2", "llama")])
def test_left_padding_does_not_change_generation(method, base_name, fresh_base):
    """A left-padded row generates what it generates alone (masks and positions cover the prompt)."""
    task_type = BASES[base_name][1]
    torch.manual_seed(3)
    model = adapterlab.get_peft_model(fresh_base(base_name), _config(adapterlab, method, task_type)).eval()
    ids = _inputs(task_type, padded=False)["input_ids"]
    padded = ids.clone()
    padded[1, :2] = 0
    mask = torch.ones_like(ids)
    mask[1, :2] = 0
    for settings in (GENERATIONS["greedy"], {"do_sample": False, "num_beams": 3}):
        batch_out = model.generate(
            input_ids=padded, attention_mask=mask, max_new_tokens=NEW_TOKENS, pad_token_id=0, **settings
        )
        alone = model.generate(input_ids=ids[1:, 2:], max_new_tokens=NEW_TOKENS, pad_token_id=0, **settings)
        assert torch.equal(batch_out[1, -NEW_TOKENS:], alone[0, -NEW_TOKENS:])
