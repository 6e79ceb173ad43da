"""Prompt adapters on one model, the inputs they rewrite, their initializations and every bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from core_bases import bert_config, gpt2_config, llama_config, t5_config
from models import minilm_dir
from safetensors.torch import load_file, save_file
from transformers import (
    BertForSequenceClassification,
    BertForTokenClassification,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    GPT2LMHeadModel,
    LlamaForCausalLM,
    T5ForConditionalGeneration,
)

import adapterlab
from adapterlab.errors import CheckpointError, InvalidConfig, ShapeMismatch, UnsupportedModule
from adapterlab.tuners.prompt.encoders import PromptEmbedding

VOCAB = 64
IDS = torch.randint(3, VOCAB, (2, 6), generator=torch.Generator().manual_seed(1))


def gpt2(width: int = 32) -> GPT2LMHeadModel:
    torch.manual_seed(0)
    return GPT2LMHeadModel(gpt2_config(positions=48, width=width)).eval()


def bert(width: int = 32, layers: int = 2) -> BertForSequenceClassification:
    torch.manual_seed(0)
    return BertForSequenceClassification(
        bert_config(num_labels=2, positions=48, width=width, layers=layers)
    ).eval()


def llama(layers: int = 2) -> LlamaForCausalLM:
    torch.manual_seed(0)
    return LlamaForCausalLM(llama_config(positions=48, layers=layers)).eval()


def t5() -> T5ForConditionalGeneration:
    torch.manual_seed(0)
    return T5ForConditionalGeneration(t5_config()).eval()


def prompt(task_type: str = "CAUSAL_LM", **kwargs) -> adapterlab.PromptTuningConfig:
    return adapterlab.PromptTuningConfig(task_type=task_type, num_virtual_tokens=3, **kwargs)


def prefix(task_type: str = "CAUSAL_LM", **kwargs) -> adapterlab.PrefixTuningConfig:
    return adapterlab.PrefixTuningConfig(task_type=task_type, num_virtual_tokens=3, **kwargs)


# -- what the virtual tokens do to the inputs ------------------------------------------------------


def test_lm_labels_get_ignore_index_for_virtual_tokens():
    model = adapterlab.get_peft_model(gpt2(), prompt())
    out = model(input_ids=IDS, labels=IDS)
    assert out.logits.shape[1] == 3 + IDS.shape[1]
    # no loss on the virtual tokens themselves; the last of them predicts the first real token
    logits = out.logits[:, 2:-1]
    expected = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), IDS.reshape(-1))
    torch.testing.assert_close(out.loss, expected)


@pytest.mark.parametrize("config", [prompt(), prefix()], ids=["prompt", "prefix"])
def test_explicit_positions_equal_the_default(config):
    model = adapterlab.get_peft_model(gpt2(), config)
    positions = torch.arange(IDS.shape[1]).expand(2, -1)
    with torch.no_grad():
        torch.testing.assert_close(
            model(input_ids=IDS, position_ids=positions).logits, model(input_ids=IDS).logits
        )


def test_token_type_ids_get_zeros_for_virtual_tokens():
    model = adapterlab.get_peft_model(bert(), prompt("SEQ_CLS"))
    with torch.no_grad():
        plain = model(input_ids=IDS).logits
        zeros = model(input_ids=IDS, token_type_ids=torch.zeros_like(IDS)).logits
        ones = model(input_ids=IDS, token_type_ids=torch.ones_like(IDS)).logits
    torch.testing.assert_close(plain, zeros)
    assert not torch.allclose(plain, ones)


def test_prefix_on_bert_attends_to_the_prefix_only_where_the_mask_allows():
    model = adapterlab.get_peft_model(bert(), prefix("SEQ_CLS"))
    mask = torch.ones_like(IDS)
    mask[1, -2:] = 0
    with torch.no_grad():
        padded = model(input_ids=IDS, attention_mask=mask).logits[1]
        shorter = model(input_ids=IDS[1:, :-2]).logits[0]
    torch.testing.assert_close(padded, shorter, atol=1e-5, rtol=0)


# -- initializations ----------------------------------------------------------------------------


def test_sample_vocab_init_uses_rows_of_the_word_embeddings():
    base = gpt2()
    model = adapterlab.get_peft_model(base, prompt(prompt_tuning_init="SAMPLE_VOCAB"))
    rows = model.prompt_encoder["default"]()
    vocab = base.get_input_embeddings().weight
    assert all(any(torch.equal(row, word) for word in vocab) for row in rows)


def test_text_init_uses_the_embeddings_of_the_text_repeated():
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = minilm_dir()
    base = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2)
    config = adapterlab.PromptTuningConfig(
        task_type="SEQ_CLS",
        num_virtual_tokens=9,
        prompt_tuning_init="TEXT",
        prompt_tuning_init_text="great",
        tokenizer_name_or_path=str(folder),
    )
    model = adapterlab.get_peft_model(base, config)
    ids = AutoTokenizer.from_pretrained(folder)("great")["input_ids"]  # [CLS] great [SEP]
    expected = base.get_input_embeddings().weight[torch.tensor(ids * 3)]
    torch.testing.assert_close(model.prompt_encoder["default"]().detach(), expected)


def test_text_init_with_a_missing_tokenizer_says_what_to_set(tmp_path):
    config = prompt(
        prompt_tuning_init="TEXT", prompt_tuning_init_text="hi", tokenizer_name_or_path=str(tmp_path)
    )
    with pytest.raises(InvalidConfig, match="tokenizer_name_or_path"):
        adapterlab.get_peft_model(gpt2(), config)


def test_zero_initialized_prefix_is_all_zeros():
    for projection in (False, True):
        model = adapterlab.get_peft_model(gpt2(), prefix(init_weights="zero", prefix_projection=projection))
        assert not model.prompt_encoder["default"]().any()


# -- several adapters on one model ----------------------------------------------------------------


def test_add_set_delete_and_save_several_prompt_adapters(tmp_path):
    model = adapterlab.get_peft_model(gpt2(), prompt())
    model.add_adapter("pre", prefix())
    model.add_adapter("enc", adapterlab.PromptEncoderConfig(task_type="CAUSAL_LM", num_virtual_tokens=2))
    outputs = {}
    for name in ("default", "pre", "enc"):
        model.set_adapter(name)
        trainable = {n.split(".")[1] for n, p in model.named_parameters() if p.requires_grad}
        assert trainable == {name}
        with torch.no_grad():
            outputs[name] = model(input_ids=IDS).logits[:, -IDS.shape[1] :]
    assert not torch.allclose(outputs["default"], outputs["pre"])
    model.save_pretrained(tmp_path)
    assert (tmp_path / "pre" / "adapter_model.safetensors").is_file()

    reloaded = adapterlab.PeftModel.from_pretrained(gpt2(), tmp_path)
    reloaded.load_adapter(tmp_path / "pre", "pre")
    reloaded.load_adapter(tmp_path / "enc", "enc")
    for name, expected in outputs.items():
        reloaded.set_adapter(name)
        with torch.no_grad():
            torch.testing.assert_close(reloaded(input_ids=IDS).logits[:, -IDS.shape[1] :], expected)

    model.delete_adapter("pre")
    assert "pre" not in model.prompt_encoder and set(model.peft_config) == {"default", "enc"}


def test_p_tuning_loads_as_its_output_and_keeps_training(tmp_path):
    config = adapterlab.PromptEncoderConfig(
        task_type="CAUSAL_LM",
        num_virtual_tokens=3,
        encoder_reparameterization_type="LSTM",
        encoder_dropout=0.5,
    )
    model = adapterlab.get_peft_model(gpt2(), config).eval()
    with torch.no_grad():
        expected = model(input_ids=IDS).logits
    model.train()  # saving takes the encoder's output without dropout all the same
    model.save_pretrained(tmp_path)
    assert set(load_file(tmp_path / "adapter_model.safetensors")) == {"prompt_embeddings"}
    loaded = adapterlab.PeftModel.from_pretrained(gpt2(), tmp_path, is_trainable=True)
    encoder = loaded.prompt_encoder["default"]
    assert isinstance(encoder, PromptEmbedding) and encoder.embedding.weight.requires_grad
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=IDS).logits, expected)
    frozen = adapterlab.PeftModel.from_pretrained(gpt2(), tmp_path)
    assert frozen.get_nb_trainable_parameters()[0] == 0


# -- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make_model", "config", "message"),
    [
        (gpt2, prompt(task_type=None), "needs task_type"),
        (bert, prompt("TOKEN_CLS"), "TOKEN_CLS"),
        (
            bert,
            adapterlab.PromptEncoderConfig(task_type="QUESTION_ANS", num_virtual_tokens=2),
            "QUESTION_ANS",
        ),
        (gpt2, prompt("SEQ_2_SEQ_LM"), "decoder-only or encoder-only"),
        (t5, prefix("CAUSAL_LM"), "encoder-decoder"),
    ],
    ids=["no-task", "prompt-token-cls", "ptuning-qa", "seq2seq-on-gpt2", "causal-on-t5"],
)
def test_method_task_pairs_that_cannot_work(make_model, config, message):
    with pytest.raises(InvalidConfig, match=message):
        adapterlab.get_peft_model(make_model(), config)


def test_prefix_tuning_supports_token_classification():
    torch.manual_seed(0)
    base = BertForTokenClassification(bert_config(num_labels=5, positions=512))
    model = adapterlab.get_peft_model(base, prefix("TOKEN_CLS"))
    assert model(input_ids=IDS, labels=torch.zeros_like(IDS)).logits.shape == (*IDS.shape, 5)


def test_generate_needs_a_generative_task():
    model = adapterlab.get_peft_model(bert(), prompt("SEQ_CLS"))
    with pytest.raises(InvalidConfig, match="generate"):
        model.generate(input_ids=IDS)


def test_prefix_tuning_refuses_gradient_checkpointing():
    base = gpt2()
    base.gradient_checkpointing_enable()
    with pytest.raises(InvalidConfig, match="gradient checkpointing"):
        adapterlab.get_peft_model(base, prefix())
    model = adapterlab.get_peft_model(gpt2(), prefix())
    model.gradient_checkpointing_enable()
    model.train()
    with pytest.raises(InvalidConfig, match="gradient checkpointing"):
        model(input_ids=IDS)


def test_prefix_on_a_model_that_drops_the_cache_is_refused():
    torch.manual_seed(0)
    base = DistilBertForSequenceClassification(
        DistilBertConfig(vocab_size=VOCAB, dim=32, n_layers=2, n_heads=4, hidden_dim=37)
    )
    model = adapterlab.get_peft_model(base, prefix("SEQ_CLS"))
    with pytest.raises(UnsupportedModule, match="prompt tuning or P-tuning"):
        model(input_ids=IDS)


@pytest.mark.parametrize(
    ("writer", "reader", "config"),
    [
        (lambda: bert(32), lambda: bert(48), prompt("SEQ_CLS")),
        (
            lambda: gpt2(32),
            lambda: gpt2(48),
            adapterlab.PromptEncoderConfig(task_type="CAUSAL_LM", num_virtual_tokens=2),
        ),
        (lambda: llama(2), lambda: llama(3), prefix()),
    ],
    ids=["prompt-width", "ptuning-width", "prefix-layers"],
)
def test_adapter_for_another_base_is_a_shape_mismatch(writer, reader, config, tmp_path):
    adapterlab.get_peft_model(writer(), config).save_pretrained(tmp_path)
    with pytest.raises(ShapeMismatch, match="another base model"):
        adapterlab.PeftModel.from_pretrained(reader(), tmp_path)


def test_token_dim_that_does_not_fit_the_model_is_refused():
    with pytest.raises(ShapeMismatch, match="token_dim"):
        adapterlab.get_peft_model(gpt2(), prompt(token_dim=48))


def _saved(tmp_path: Path) -> Path:
    adapterlab.get_peft_model(gpt2(), prompt()).save_pretrained(tmp_path)
    return tmp_path


def test_checkpoint_with_the_wrong_prompt_shape_is_refused(tmp_path):
    folder = _saved(tmp_path)
    save_file({"prompt_embeddings": torch.zeros(5, 32)}, folder / "adapter_model.safetensors")
    with pytest.raises(ShapeMismatch, match="prompt_embeddings"):
        adapterlab.PeftModel.from_pretrained(gpt2(), folder)


def test_checkpoint_without_prompt_embeddings_is_refused(tmp_path):
    folder = _saved(tmp_path)
    save_file({"something_else": torch.zeros(3, 32)}, folder / "adapter_model.safetensors")
    with pytest.raises(CheckpointError):
        adapterlab.PeftModel.from_pretrained(gpt2(), folder)


def test_bad_config_file_values_are_refused(tmp_path):
    folder = _saved(tmp_path)
    config = json.loads((folder / "adapter_config.json").read_text())
    config["num_virtual_tokens"] = 0
    (folder / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(InvalidConfig, match="num_virtual_tokens"):
        adapterlab.PeftModel.from_pretrained(gpt2(), folder)
