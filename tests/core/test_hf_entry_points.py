"""HF PEFT's other entry points: AutoPeftModelFor..., load_peft_weights, get_peft_config and
prepare_model_for_kbit_training."""

from __future__ import annotations

from pathlib import Path

import peft
import pytest
import torch
from core_bases import bert_config, llama_config
from transformers import BertForSequenceClassification, LlamaForCausalLM

import adapterlab
from adapterlab.errors import CheckpointError, InvalidConfig

IDS = torch.arange(2, 10).unsqueeze(0)


def logits(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=IDS, attention_mask=torch.ones_like(IDS)).logits.float()


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, torch.Tensor]:
    """A tiny BERT saved as a base folder, and a LoRA adapter for it (random B) whose config names
    that folder; returns the adapter folder and the adapted logits."""
    torch.manual_seed(0)
    BertForSequenceClassification(bert_config(num_labels=2)).save_pretrained(tmp_path / "base")
    base = BertForSequenceClassification.from_pretrained(tmp_path / "base")
    model = adapterlab.get_peft_model(base, adapterlab.LoraConfig(task_type="SEQ_CLS", r=4))
    assert model.peft_config["default"].base_model_name_or_path == str(tmp_path / "base")
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_()
    model.save_pretrained(tmp_path / "adapter")
    return tmp_path / "adapter", logits(model.eval())


def test_auto_peft_model_loads_the_base_its_config_names(saved) -> None:
    adapter, expected = saved
    ours = adapterlab.AutoPeftModelForSequenceClassification.from_pretrained(adapter)
    assert type(ours) is adapterlab.PeftModelForSequenceClassification
    torch.testing.assert_close(logits(ours), expected)
    theirs = peft.AutoPeftModelForSequenceClassification.from_pretrained(str(adapter))
    torch.testing.assert_close(logits(theirs), expected)


def test_auto_peft_model_sends_each_keyword_where_it_belongs(saved) -> None:
    adapter, expected = saved
    # dtype is the base model's; autocast_adapter_dtype the adapter's
    model = adapterlab.AutoPeftModelForSequenceClassification.from_pretrained(
        adapter, dtype=torch.bfloat16, autocast_adapter_dtype=False, is_trainable=True
    )
    dtypes = {name: p.dtype for name, p in model.named_parameters()}
    assert dtypes["base_model.model.bert.embeddings.word_embeddings.weight"] == torch.bfloat16
    assert {d for n, d in dtypes.items() if "lora_" in n} == {torch.bfloat16}
    assert any(p.requires_grad for n, p in model.named_parameters() if "lora_" in n)
    torch.testing.assert_close(logits(model), expected, atol=0.1, rtol=0.05)


@pytest.mark.parametrize(
    ("auto_class", "message"),
    [
        (
            "AutoPeftModelForCausalLM",
            "is for task_type SEQ_CLS; load it with AutoPeftModelForSequenceClassification",
        ),
        ("AutoPeftModel", "cannot tell which transformers class to load"),
    ],
)
def test_auto_peft_model_for_the_wrong_task_says_which_class(saved, auto_class: str, message: str) -> None:
    adapter, _ = saved
    with pytest.raises(InvalidConfig, match=message) as error:
        getattr(adapterlab, auto_class).from_pretrained(adapter)
    assert "\n" not in str(error.value)


def test_auto_peft_model_with_a_missing_base_says_so(saved) -> None:
    adapter, _ = saved
    for file in (adapter.parent / "base").iterdir():
        file.unlink()
    (adapter.parent / "base").rmdir()
    with pytest.raises(
        InvalidConfig, match="cannot load the base model .* named in the adapter config"
    ) as error:
        adapterlab.AutoPeftModelForSequenceClassification.from_pretrained(adapter)
    assert "\n" not in str(error.value)


def test_load_peft_weights_reads_the_file_as_hf_peft_does(saved) -> None:
    adapter, _ = saved
    ours = adapterlab.load_peft_weights(str(adapter))
    theirs = peft.load_peft_weights(str(adapter))
    assert ours.keys() == theirs.keys()
    for key, tensor in ours.items():
        assert torch.equal(tensor, theirs[key])
    renamed = adapterlab.load_peft_weights(str(adapter), key_mapping={r"^bert\.": "encoder."})
    assert any(key.startswith("base_model.model.encoder.") for key in renamed)
    with pytest.raises(TypeError, match="unexpected keyword argument 'revison'"):
        adapterlab.load_peft_weights(str(adapter), revison="v1")
    with pytest.raises(CheckpointError, match="does not exist"):
        adapterlab.load_peft_weights(str(adapter / "nothing"))


def test_get_peft_config_builds_the_method_config() -> None:
    data = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 16, "target_modules": ["q_proj"]}
    config = adapterlab.get_peft_config(dict(data))
    assert isinstance(config, adapterlab.LoraConfig)
    assert (config.r, set(config.target_modules)) == (16, {"q_proj"})
    assert peft.get_peft_config(dict(data)).r == config.r
    with pytest.raises(InvalidConfig, match="no peft_type"):
        adapterlab.get_peft_config({"r": 4})


def llama_bf16() -> LlamaForCausalLM:
    torch.manual_seed(0)
    return LlamaForCausalLM(llama_config()).to(torch.bfloat16)


def test_prepare_for_kbit_training_freezes_and_upcasts_a_half_precision_model() -> None:
    model = adapterlab.prepare_model_for_kbit_training(llama_bf16())
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert not any(p.requires_grad for p in model.parameters())
    assert not model.model.layers[0].gradient_checkpointing  # only quantized models get it


def test_prepare_for_kbit_training_on_a_quantized_model_checkpoints_and_trains_the_adapter() -> None:
    model = llama_bf16()
    # bitsandbytes is CUDA-only, so this flag (what transformers sets on a model it loaded in 8-bit)
    # stands in for the quantization
    model.is_loaded_in_8bit = True
    model = adapterlab.prepare_model_for_kbit_training(model)
    assert model.model.layers[0].gradient_checkpointing
    assert model.get_input_embeddings()(IDS).requires_grad  # what reentrant checkpointing needs
    peft_model = adapterlab.get_peft_model(model, adapterlab.LoraConfig(task_type="CAUSAL_LM", r=4)).train()
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_()
    peft_model(input_ids=IDS, labels=IDS).loss.backward()
    grads = [p.grad for n, p in peft_model.named_parameters() if "lora_A" in n]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)


def test_prepare_for_kbit_training_keeps_the_dtype_of_gptq_models() -> None:
    model = llama_bf16()
    model.quantization_method = "gptq"  # GPTQ kernels need their own dtype
    model = adapterlab.prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert not model.model.layers[0].gradient_checkpointing


def test_prepare_for_kbit_training_passes_the_checkpointing_options_on() -> None:
    model = llama_bf16()
    model.is_loaded_in_4bit = True
    for reentrant in (True, False):
        options = {"use_reentrant": reentrant} if not reentrant else None  # None: the reentrant default
        model = adapterlab.prepare_model_for_kbit_training(model, gradient_checkpointing_kwargs=options)
        assert model.model.layers[0]._gradient_checkpointing_func.keywords["use_reentrant"] is reentrant


@pytest.mark.parametrize(
    ("module", "name"),
    [("peft.tuners.lora", n) for n in ("LoraConfig", "LoraLayer", "LoraModel")]
    + [
        ("peft.tuners", n)
        for n in (
            "LoraConfig",
            "LoraModel",
            "PromptTuningConfig",
            "PromptEncoderConfig",
            "PrefixTuningConfig",
        )
    ],
)
def test_names_scripts_import_from_peft_submodules_exist(module: str, name: str) -> None:
    import importlib

    assert hasattr(importlib.import_module(module), name)  # the reference has it...
    assert hasattr(importlib.import_module(module.replace("peft", "adapterlab", 1)), name)  # ...and so do we


def test_a_qlora_style_loop_over_lora_layers_finds_them() -> None:
    from adapterlab.tuners.lora import LoraLayer

    model = adapterlab.get_peft_model(llama_bf16(), adapterlab.LoraConfig(task_type="CAUSAL_LM", r=4))
    layers = [module for module in model.modules() if isinstance(module, LoraLayer)]
    assert len(layers) == 4  # q_proj and v_proj of two layers
