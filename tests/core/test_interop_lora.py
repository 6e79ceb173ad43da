"""LoRA checkpoints interoperate with Hugging Face PEFT in both directions.

Every case builds the same tiny base twice (same seed), wraps one copy with adapterlab and one with
the reference ``peft`` using the same config, randomizes the adapter weights of the writer (so the
adapted output differs from the base), saves, and loads the folder with the other library into a
fresh copy of the base. Outputs must agree to 1e-5, both writers must produce the same tensor keys
and shapes, each library must read the other's ``adapter_config.json``, and both must report the
same trainable-parameter counts and ``print_trainable_parameters()`` line.
"""

from __future__ import annotations

import copy
import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
from core_bases import bert_config, gpt2_config, llama_config, t5_config
from models import minilm_dir
from safetensors import safe_open
from transformers import (
    AutoModelForSequenceClassification,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertForTokenClassification,
    GPT2LMHeadModel,
    LlamaForCausalLM,
    LlamaForSequenceClassification,
    T5ForConditionalGeneration,
)

import adapterlab
from adapterlab.errors import InvalidConfig

peft = pytest.importorskip("peft")

VOCAB = 64
BATCH, SEQ = 2, 7


# base name -> (factory, kind of inputs it takes)
BASES: dict[str, tuple[Callable[[], torch.nn.Module], str]] = {
    "bert-cls": (lambda: BertForSequenceClassification(bert_config()), "encoder"),
    "bert-tok": (lambda: BertForTokenClassification(bert_config()), "encoder"),
    "bert-qa": (lambda: BertForQuestionAnswering(bert_config(num_labels=2)), "encoder"),
    "gpt2": (lambda: GPT2LMHeadModel(gpt2_config()), "decoder"),
    "t5": (lambda: T5ForConditionalGeneration(t5_config()), "seq2seq"),
    "llama": (lambda: LlamaForCausalLM(llama_config()), "decoder"),
    "llama-cls": (lambda: LlamaForSequenceClassification(llama_config()), "decoder"),
    "minilm": (
        lambda: AutoModelForSequenceClassification.from_pretrained(minilm_dir(), num_labels=2),
        "encoder",
    ),
}


@dataclass(frozen=True)
class Case:
    base: str
    lora: dict[str, Any] = field(default_factory=dict)


CASES: dict[str, Case] = {
    "bert-seq-cls-defaults": Case("bert-cls", {"task_type": "SEQ_CLS"}),
    "bert-token-cls": Case("bert-tok", {"task_type": "TOKEN_CLS"}),
    "bert-question-ans": Case("bert-qa", {"task_type": "QUESTION_ANS"}),
    "gpt2-conv1d": Case("gpt2", {"task_type": "CAUSAL_LM", "fan_in_fan_out": True}),
    "t5-seq2seq": Case("t5", {"task_type": "SEQ_2_SEQ_LM"}),
    "llama-causal": Case("llama", {"task_type": "CAUSAL_LM"}),
    "llama-seq-cls-score": Case("llama-cls", {"task_type": "SEQ_CLS"}),
    "minilm-seq-cls": Case("minilm", {"task_type": "SEQ_CLS", "r": 8, "lora_alpha": 16}),
    "dora-llama": Case("llama", {"task_type": "CAUSAL_LM", "use_dora": True}),
    "dora-bert": Case(
        "bert-cls", {"task_type": "SEQ_CLS", "use_dora": True, "target_modules": ["query", "dense"]}
    ),
    "dora-gpt2-conv1d": Case("gpt2", {"task_type": "CAUSAL_LM", "use_dora": True, "fan_in_fan_out": True}),
    # LoRA variants (tests/core/test_lora_variants_hf.py covers MiCA, whose init this table's
    # init_lora_weights=False would override); KaSA's reader truncates the fresh base as the writer did
    "kasa-llama": Case("llama", {"task_type": "CAUSAL_LM", "kasa_config": {"beta": 0.01}}),
    "velora-llama": Case("llama", {"task_type": "CAUSAL_LM", "velora_config": {"num_groups": 4}}),
    "velora-gpt2-conv1d": Case("gpt2", {"task_type": "CAUSAL_LM", "velora_config": {"init_type": "random"}}),
    "bdlora-llama": Case(
        "llama",
        {
            "task_type": "CAUSAL_LM",
            "target_modules": ["q_proj", "v_proj", "o_proj"],
            "use_bdlora": {
                "target_modules_bd_a": ["o_proj"],
                "target_modules_bd_b": ["q_proj", "v_proj"],
                "nblocks": 2,
            },
        },
    ),
    "rslora-bert": Case("bert-cls", {"task_type": "SEQ_CLS", "use_rslora": True, "r": 4, "lora_alpha": 8}),
    "embedding-llama": Case(
        "llama", {"task_type": "CAUSAL_LM", "target_modules": ["embed_tokens", "q_proj"]}
    ),
    "embedding-bert": Case(
        "bert-cls", {"task_type": "SEQ_CLS", "target_modules": ["word_embeddings", "value"]}
    ),
    "lora-bias-llama": Case("llama", {"task_type": "CAUSAL_LM", "lora_bias": True}),
    "dora-embedding-llama": Case(
        "llama", {"task_type": "CAUSAL_LM", "use_dora": True, "target_modules": ["embed_tokens", "q_proj"]}
    ),
    "trainable-tokens-llama": Case("llama", {"task_type": "CAUSAL_LM", "trainable_token_indices": [1, 3, 5]}),
    "trainable-tokens-by-name-bert": Case(
        "bert-cls", {"task_type": "SEQ_CLS", "trainable_token_indices": {"word_embeddings": [2, 4]}}
    ),
    "bias-all": Case("bert-cls", {"task_type": "SEQ_CLS", "bias": "all"}),
    "bias-lora-only": Case("bert-cls", {"task_type": "SEQ_CLS", "bias": "lora_only"}),
    "rank-alpha-pattern": Case(
        "llama",
        {
            "task_type": "CAUSAL_LM",
            "target_modules": ["q_proj", "v_proj", "o_proj"],
            "rank_pattern": {"q_proj": 2, "layers.1.self_attn.v_proj": 6},
            "alpha_pattern": {"o_proj": 3, "layers.0.self_attn.q_proj": 5},
        },
    ),
    "modules-to-save-explicit": Case(
        "llama", {"task_type": "CAUSAL_LM", "target_modules": ["q_proj"], "modules_to_save": ["lm_head"]}
    ),
    "modules-to-save-plus-head": Case("bert-cls", {"task_type": "SEQ_CLS", "modules_to_save": ["pooler"]}),
    "target-regex-bert": Case(
        "bert-cls", {"task_type": "SEQ_CLS", "target_modules": r".*\.attention\.self\.(query|key)"}
    ),
    "target-regex-t5": Case("t5", {"task_type": "SEQ_2_SEQ_LM", "target_modules": r".*decoder.*\.(q|o)$"}),
    "all-linear-llama": Case("llama", {"task_type": "CAUSAL_LM", "target_modules": "all-linear"}),
    "all-linear-gpt2": Case("gpt2", {"task_type": "CAUSAL_LM", "target_modules": "all-linear"}),
    "all-linear-bert-cls": Case("bert-cls", {"task_type": "SEQ_CLS", "target_modules": "all-linear"}),
    "layers-to-transform": Case(
        "llama", {"task_type": "CAUSAL_LM", "layers_to_transform": [1], "layers_pattern": "layers"}
    ),
    "exclude-modules": Case(
        "llama",
        {"task_type": "CAUSAL_LM", "target_modules": "all-linear", "exclude_modules": ["o_proj", "up_proj"]},
    ),
}

# the fields DESIGN.md promises in adapter_config.json; each must match the reference's value
CORE_CONFIG_KEYS = (
    "peft_type task_type base_model_name_or_path revision inference_mode r lora_alpha lora_dropout "
    "target_modules exclude_modules fan_in_fan_out bias modules_to_save use_rslora use_dora "
    "init_lora_weights layers_to_transform layers_pattern rank_pattern alpha_pattern"
).split()


@pytest.fixture(scope="module")
def templates() -> Callable[[str], torch.nn.Module]:
    """One seeded instance per base; every use gets a deepcopy, so all copies share weights."""
    cache: dict[str, torch.nn.Module] = {}

    def build(name: str) -> torch.nn.Module:
        if name not in cache:
            torch.manual_seed(0)
            cache[name] = BASES[name][0]().eval()
        return copy.deepcopy(cache[name])

    return build


def _inputs(kind: str) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(1, VOCAB, (BATCH, SEQ), generator=gen)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if kind == "encoder":  # right padding in the second row exercises the mask
        batch["attention_mask"][1, -2:] = 0
    if kind == "seq2seq":
        batch["decoder_input_ids"] = torch.randint(1, VOCAB, (BATCH, 4), generator=gen)
    return batch


def _outputs(model: torch.nn.Module, kind: str) -> tuple[torch.Tensor, ...]:
    with torch.no_grad():
        out = model(**_inputs(kind))
    if "start_logits" in out:
        return out.start_logits, out.end_logits
    return (out.logits,)


def _randomize_adapter(model: torch.nn.Module) -> None:
    """Give every trainable tensor (LoRA A/B, DoRA magnitude, biases, saved heads) a seeded random value."""
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for _, param in sorted(model.named_parameters()):
            if param.requires_grad:
                param.add_(torch.randn(param.shape, generator=gen) * 0.2)


def _wrap(lib: Any, base: torch.nn.Module, lora: dict[str, Any]) -> Any:
    config = lib.LoraConfig(init_lora_weights=False, **copy.deepcopy(lora))
    return lib.get_peft_model(base, config)


def _tensor_shapes(folder: Path) -> dict[str, tuple[int, ...]]:
    with safe_open(str(folder / "adapter_model.safetensors"), "pt") as f:
        return {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}


def _normalized(value: Any) -> Any:
    # target_modules is a set in memory, so writers list it in any order
    if isinstance(value, list):
        return sorted(value, key=str)
    return value


def _trainable_line(model: Any, capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    model.print_trainable_parameters()
    return capsys.readouterr().out.strip()


def _save_and_cross_load(
    writer: Any, reader: Any, case: Case, templates: Callable[[str], torch.nn.Module], out: Path
) -> None:
    kind = BASES[case.base][1]
    base_out = _outputs(templates(case.base), kind)
    model = _wrap(writer, templates(case.base), case.lora)
    _randomize_adapter(model)
    model.eval()
    expected = _outputs(model, kind)
    assert not all(torch.allclose(a, b, atol=1e-4) for a, b in zip(expected, base_out, strict=True)), (
        "adapter is a no-op"
    )
    model.save_pretrained(str(out))

    config = reader.PeftConfig.from_pretrained(str(out))
    assert config.peft_type == "LORA"
    loaded = reader.PeftModel.from_pretrained(templates(case.base), str(out)).eval()
    for got, want in zip(_outputs(loaded, kind), expected, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("case_name", list(CASES))
def test_lora_checkpoints_interoperate(
    case_name: str, templates: Callable[[str], torch.nn.Module], tmp_path: Path, capsys: Any
) -> None:
    case = CASES[case_name]
    ours_dir, theirs_dir = tmp_path / "ours", tmp_path / "theirs"

    ours = _wrap(adapterlab, templates(case.base), case.lora)
    theirs = _wrap(peft, templates(case.base), case.lora)
    assert ours.get_nb_trainable_parameters() == theirs.get_nb_trainable_parameters()
    assert _trainable_line(ours, capsys) == _trainable_line(theirs, capsys)

    _save_and_cross_load(adapterlab, peft, case, templates, ours_dir)
    _save_and_cross_load(peft, adapterlab, case, templates, theirs_dir)

    assert _tensor_shapes(ours_dir) == _tensor_shapes(theirs_dir)
    ours_json = json.loads((ours_dir / "adapter_config.json").read_text())
    theirs_json = json.loads((theirs_dir / "adapter_config.json").read_text())
    for key in CORE_CONFIG_KEYS:
        assert _normalized(ours_json.get(key)) == _normalized(theirs_json.get(key)), key
    shared = (ours_json.keys() & theirs_json.keys()) - {"peft_version"}  # each library records its own
    assert {k: _normalized(ours_json[k]) for k in shared} == {k: _normalized(theirs_json[k]) for k in shared}


def _two_adapter_model(lib: Any, templates: Callable[[str], torch.nn.Module]) -> Any:
    model = _wrap(lib, templates("llama"), {"task_type": "CAUSAL_LM"})
    model.add_adapter("second", lib.LoraConfig(task_type="CAUSAL_LM", r=4, target_modules=["k_proj"]))
    model.set_adapter("second")
    _randomize_adapter(model)  # set_adapter makes "second" the trainable one
    return model.eval()


@pytest.mark.parametrize("writer_name", ["adapterlab", "peft"])
def test_named_adapter_lands_in_its_subfolder_and_loads_across(
    writer_name: str, templates: Callable[[str], torch.nn.Module], tmp_path: Path
) -> None:
    writer, reader = (adapterlab, peft) if writer_name == "adapterlab" else (peft, adapterlab)
    model = _two_adapter_model(writer, templates)
    expected = _outputs(model, "decoder")
    model.save_pretrained(str(tmp_path))

    # a model card (README.md) may sit beside them; only the adapter files are the format
    files = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("adapter_*"))
    assert files == [
        "adapter_config.json",
        "adapter_model.safetensors",
        "second/adapter_config.json",
        "second/adapter_model.safetensors",
    ]
    assert set(_tensor_shapes(tmp_path / "second")) == {
        f"base_model.model.model.layers.{i}.self_attn.k_proj.lora_{ab}.weight" for i in (0, 1) for ab in "AB"
    }
    loaded = reader.PeftModel.from_pretrained(templates("llama"), str(tmp_path))
    loaded.load_adapter(str(tmp_path / "second"), adapter_name="second")
    loaded.set_adapter("second")
    torch.testing.assert_close(_outputs(loaded.eval(), "decoder")[0], expected[0], atol=1e-5, rtol=0)


def test_legacy_bin_checkpoint_from_peft_loads(
    templates: Callable[[str], torch.nn.Module], tmp_path: Path
) -> None:
    model = _wrap(peft, templates("bert-cls"), {"task_type": "SEQ_CLS"})
    _randomize_adapter(model)
    model.eval().save_pretrained(str(tmp_path), safe_serialization=False)
    assert (tmp_path / "adapter_model.bin").is_file() and not (
        tmp_path / "adapter_model.safetensors"
    ).exists()
    loaded = adapterlab.PeftModel.from_pretrained(templates("bert-cls"), str(tmp_path)).eval()
    torch.testing.assert_close(
        _outputs(loaded, "encoder")[0], _outputs(model, "encoder")[0], atol=1e-5, rtol=0
    )


def test_config_keys_from_a_newer_writer_warn_and_are_dropped(
    templates: Callable[[str], torch.nn.Module], tmp_path: Path
) -> None:
    model = _wrap(peft, templates("bert-cls"), {"task_type": "SEQ_CLS"})
    _randomize_adapter(model)
    model.eval().save_pretrained(str(tmp_path))
    config_path = tmp_path / "adapter_config.json"
    config_path.write_text(json.dumps({**json.loads(config_path.read_text()), "lora_future_knob": 3}))
    with pytest.warns(UserWarning, match="lora_future_knob"):
        loaded = adapterlab.PeftModel.from_pretrained(templates("bert-cls"), str(tmp_path)).eval()
    torch.testing.assert_close(
        _outputs(loaded, "encoder")[0], _outputs(model, "encoder")[0], atol=1e-5, rtol=0
    )


@pytest.mark.parametrize(
    "feature",
    [{"layer_replication": [[0, 2], [1, 2]]}],
)
def test_peft_features_we_lack_are_refused_not_silently_dropped(
    feature: dict[str, Any], templates: Callable[[str], torch.nn.Module], tmp_path: Path
) -> None:
    with warnings.catch_warnings():  # HF PEFT warns about some of these itself; only our refusal matters
        warnings.simplefilter("ignore")
        _wrap(peft, templates("bert-cls"), {"task_type": "SEQ_CLS", **feature}).save_pretrained(str(tmp_path))
    name = next(iter(feature))
    with pytest.raises(InvalidConfig, match=name):
        adapterlab.PeftModel.from_pretrained(templates("bert-cls"), str(tmp_path))
