"""Every kind of LoRA adapterlab's library makes can be registered, checked against its base and loaded.

One row per library feature: a tiny model from a transformers config is saved as the base folder,
``get_peft_model`` + ``save_pretrained`` make the adapter (its trainable tensors randomized so the
update is not zero), ``register_adapter`` checks it against the base's headers, and ``load`` rebuilds
it from the registry with the same outputs as the model in memory. A second table registers adapters
on a base of another width, one per layer kind, and expects IncompatibleAdapter.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from adapterlab.errors import IncompatibleAdapter
from adapterlab.registry import list_versions, load, register_adapter

VOCAB = 64


def _ids() -> dict[str, Any]:
    import torch

    return {"input_ids": torch.tensor([[1, 5, 9, 2, 7, 3]])}


def _pixels(*shape: int) -> Callable[[], dict[str, Any]]:
    def inputs() -> dict[str, Any]:
        import torch

        return {"pixel_values": torch.randn(*shape, generator=torch.Generator().manual_seed(3))}

    return inputs


def _audio() -> dict[str, Any]:
    import torch

    return {"input_values": torch.randn(1, 400, generator=torch.Generator().manual_seed(3))}


def bert(width: int):
    import transformers

    config = transformers.BertConfig(
        vocab_size=VOCAB, hidden_size=width, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37
    )
    return transformers.BertModel(config)


def gpt2(width: int):
    import transformers

    config = transformers.GPT2Config(vocab_size=VOCAB, n_embd=width, n_layer=1, n_head=2, n_positions=32)
    return transformers.GPT2LMHeadModel(config)


def wav2vec2(width: int):
    """Its feature extractor's convolutions are nn.Conv1d (groups=1)."""
    import transformers

    config = transformers.Wav2Vec2Config(
        hidden_size=width,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=37,
        conv_dim=(width, width),
        conv_stride=(5, 2),
        conv_kernel=(10, 3),
        num_conv_pos_embeddings=4,
        num_conv_pos_embedding_groups=2,
    )
    return transformers.Wav2Vec2Model(config)


def mamba(width: int):
    """Its ``conv1d`` is a depthwise nn.Conv1d: groups = channels = 2 * width."""
    import transformers

    config = transformers.MambaConfig(
        vocab_size=VOCAB, hidden_size=width, state_size=4, num_hidden_layers=1, expand=2, use_cache=False
    )
    return transformers.MambaModel(config)


def convnext(width: int):
    """Patch embedding: nn.Conv2d (groups=1); ``dwconv``: depthwise nn.Conv2d (groups = width)."""
    import transformers

    config = transformers.ConvNextConfig(
        num_channels=3, num_stages=2, hidden_sizes=[width, 2 * width], depths=[1, 1], patch_size=4
    )
    return transformers.ConvNextModel(config)


def videomae(width: int):
    """Its patch embedding is an nn.Conv3d over (frames, height, width)."""
    import transformers

    config = transformers.VideoMAEConfig(
        image_size=16,
        patch_size=8,
        num_channels=3,
        num_frames=4,
        tubelet_size=2,
        hidden_size=width,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=37,
    )
    return transformers.VideoMAEModel(config)


def siglip(width: int):
    """Its pooling head attends with an nn.MultiheadAttention."""
    import transformers

    config = transformers.SiglipVisionConfig(
        hidden_size=width,
        intermediate_size=37,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=16,
        patch_size=8,
        vision_use_head=True,
    )
    return transformers.SiglipVisionModel(config)


def gpt_oss(width: int):
    """Its experts keep their weights in 3-D parameters, stored so in its checkpoints too."""
    import transformers

    config = transformers.GptOssConfig(
        vocab_size=VOCAB,
        hidden_size=width,
        intermediate_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
        num_local_experts=3,
        num_experts_per_tok=2,
        layer_types=["full_attention"],
    )
    return transformers.GptOssForCausalLM(config)


@dataclass(frozen=True)
class Row:
    build: Callable[[int], Any]  # width -> model
    inputs: Callable[[], dict[str, Any]]
    lora: dict[str, Any] = field(default_factory=dict)
    width: int = 32
    task_type: str | None = None


def _kasa() -> dict[str, Any]:
    from adapterlab.tuners.lora.variant_configs import KasaConfig

    return {"kasa_config": KasaConfig()}


def _velora() -> dict[str, Any]:
    from adapterlab.tuners.lora.variant_configs import VeloraConfig

    return {"velora_config": VeloraConfig(num_groups=4)}


def _bdlora() -> dict[str, Any]:
    from adapterlab.tuners.lora.variant_configs import BdLoraConfig

    blocks = BdLoraConfig(
        target_modules_bd_a=["attention.output.dense"], target_modules_bd_b=["query"], nblocks=2
    )
    return {"target_modules": ["query", "attention.output.dense"], "use_bdlora": blocks}


CAUSAL = "CAUSAL_LM"
ROWS: dict[str, Row] = {
    "linear": Row(bert, _ids, {"target_modules": ["query", "value"]}),
    "gpt2-conv1d": Row(gpt2, _ids, {"target_modules": ["c_attn", "c_fc"]}, task_type=CAUSAL),
    "embedding": Row(gpt2, _ids, {"target_modules": ["wte"]}, task_type=CAUSAL),
    "conv1d": Row(wav2vec2, _audio, {"target_modules": ["conv_layers.0.conv", "conv_layers.1.conv"]}),
    "conv1d-grouped": Row(mamba, _ids, {"target_modules": ["conv1d"], "r": 16}, width=8),
    "conv2d": Row(convnext, _pixels(1, 3, 32, 32), {"target_modules": ["patch_embeddings"]}, width=8),
    "conv2d-grouped": Row(
        convnext, _pixels(1, 3, 32, 32), {"target_modules": ["stages.0.layers.0.dwconv"], "r": 8}, width=8
    ),
    "conv3d": Row(videomae, _pixels(1, 4, 3, 16, 16), {"target_modules": ["projection"]}),
    "multihead-attention": Row(siglip, _pixels(1, 3, 16, 16), {"target_modules": ["head.attention"]}),
    "target-parameters": Row(
        gpt_oss,
        _ids,
        {"target_modules": [], "target_parameters": ["gate_up_proj", "down_proj"]},
        width=16,
        task_type=CAUSAL,
    ),
    "dora": Row(bert, _ids, {"target_modules": ["query", "value"], "use_dora": True}),
    "lora-bias": Row(bert, _ids, {"target_modules": ["query", "value"], "lora_bias": True}),
    "trainable-tokens": Row(bert, _ids, {"target_modules": ["query"], "trainable_token_indices": [1, 5]}),
    # the tied output layer: LoRA shared with the embedding, or (untied) saved with its base table
    "tied-lm-head": Row(
        gpt2, _ids, {"target_modules": ["c_attn", "lm_head"], "ensure_weight_tying": True}, task_type=CAUSAL
    ),
    "untied-lm-head": Row(gpt2, _ids, {"target_modules": ["c_attn", "lm_head"]}, task_type=CAUSAL),
    "kasa": Row(bert, _ids, {"target_modules": ["query", "value"], **_kasa()}),
    "velora": Row(bert, _ids, {"target_modules": ["query", "value"], **_velora()}),
    "bdlora": Row(bert, _ids, {**_bdlora()}),
    "mica": Row(bert, _ids, {"target_modules": ["query", "value"], "init_lora_weights": "mica"}),
}
# the wrong-width base each layer kind is refused on
WRONG_WIDTH = {
    "linear": 48,
    "gpt2-conv1d": 48,
    "embedding": 48,
    "conv1d": 48,
    "conv1d-grouped": 12,
    "conv2d": 12,
    "conv2d-grouped": 12,
    "conv3d": 48,
    "multihead-attention": 48,
    "target-parameters": 24,
}


def _first_output(model, inputs: dict[str, Any]):
    import torch

    with torch.no_grad():
        return model(**inputs)[0]


def _randomized(model, seed: int) -> None:
    """Trainable tensors drawn at random: zero-initialized factors would hide a wrong load."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # in place: tensors shared by tied modules stay shared
        for param in model.parameters():
            if param.requires_grad:
                param.copy_(torch.randn(param.shape, generator=generator, dtype=param.dtype) * 0.1)


def make_adapter(row: Row, root: Path, seed: int = 1):
    """(base folder, adapter folder, the PeftModel in memory, eval mode)."""
    import torch

    from adapterlab import LoraConfig, get_peft_model

    torch.manual_seed(0)
    model = row.build(row.width)
    base_folder = root / "base"
    model.save_pretrained(base_folder)
    peft_model = get_peft_model(
        model,
        LoraConfig(
            task_type=row.task_type,
            r=row.lora.get("r", 4),
            **{key: value for key, value in row.lora.items() if key != "r"},
        ),
    )
    _randomized(peft_model, seed)
    peft_model.save_pretrained(root / f"adapter-{seed}")
    return base_folder, root / f"adapter-{seed}", peft_model.eval()


@pytest.mark.parametrize("kind", list(ROWS))
def test_every_lora_registers_and_loads_with_the_same_outputs(registry_env, tmp_path, kind: str) -> None:
    import torch

    row = ROWS[kind]
    base_folder, adapter, in_memory = make_adapter(row, tmp_path)
    version = register_adapter(adapter, name=kind, base=base_folder, task_type=row.task_type)
    assert version.version == 1 and list_versions()[0].name == kind
    inputs = row.inputs()
    expected = _first_output(in_memory, inputs)
    got = _first_output(load(kind), inputs)
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("kind", list(WRONG_WIDTH))
def test_every_layer_kind_is_refused_on_a_base_of_another_width(registry_env, tmp_path, kind: str) -> None:
    row = ROWS[kind]
    _, adapter, _ = make_adapter(row, tmp_path)
    wrong = tmp_path / "wrong-base"
    row.build(WRONG_WIDTH[kind]).save_pretrained(wrong)
    with pytest.raises(IncompatibleAdapter, match=r"does not fit base .*: module '.*' has weight \[\d"):
        register_adapter(adapter, name=kind, base=wrong, task_type=row.task_type)
    assert list_versions() == []


def test_token_rows_of_another_width_are_refused(registry_env, tmp_path) -> None:
    import numpy as np
    from safetensors.numpy import load_file, save_file

    base, adapter, _ = make_adapter(ROWS["trainable-tokens"], tmp_path)
    tensors = load_file(adapter / "adapter_model.safetensors")
    key = "base_model.model.embeddings.word_embeddings.token_adapter.trainable_tokens_delta"
    save_file({**tensors, key: np.zeros((2, 48), np.float32)}, adapter / "adapter_model.safetensors")
    message = (
        r"module 'embeddings\.word_embeddings' has weight \[64, 32\] in the base, the adapter's token rows "
        r"\[2, 48\]"
    )
    with pytest.raises(IncompatibleAdapter, match=message):
        register_adapter(adapter, name="tokens", base=base)
    assert list_versions() == []


def _two_versions(row: Row, kind: str, root: Path):
    """Versions 1 and 2 of ``kind`` on one base (same seed, same weights); the second's PeftModel."""
    base, first, _ = make_adapter(row, root / "a", seed=1)
    _, second, in_memory = make_adapter(row, root / "b", seed=2)
    for folder in (first, second):
        register_adapter(folder, name=kind, base=base, task_type=row.task_type)
    return in_memory


@pytest.mark.parametrize("kind", ["linear", "gpt2-conv1d", "embedding", "conv1d", "conv2d", "conv3d", "kasa"])
def test_diff_measures_each_module_s_update(registry_env, tmp_path, kind: str) -> None:
    """``adapters diff``'s norm of a module's delta is the norm of the update the library applies."""
    import torch

    from adapterlab.registry import Registry

    in_memory = _two_versions(ROWS[kind], kind, tmp_path)
    with Registry.open() as registry:
        result = registry.diff(f"{kind}:1", f"{kind}:2")
    assert result.modules and result.note is None
    for row in result.modules:
        layer = in_memory.base_model.model.get_submodule(row.module)
        expected = torch.linalg.norm(layer.get_delta_weight("default").double()).item()
        assert row.norm_b == pytest.approx(expected, rel=1e-4), row.module
        assert row.cosine is not None and -1 <= row.cosine <= 1


@pytest.mark.parametrize("kind", ["conv1d-grouped", "conv2d-grouped", "bdlora", "target-parameters"])
def test_diff_names_the_modules_whose_update_is_not_one_product(registry_env, tmp_path, kind: str) -> None:
    from adapterlab.registry import Registry

    _two_versions(ROWS[kind], kind, tmp_path)
    with Registry.open() as registry:
        result = registry.diff(f"{kind}:1", f"{kind}:2")
    assert result.note is not None and "left out of the delta comparison" in result.note
    skipped = result.note.rsplit(": ", 1)[1].split(", ")
    assert skipped and not {row.module for row in result.modules} & set(skipped)
