"""Fill a prompt config's unset sizes from the base model's transformers config.

transformers configs name the same size differently (GPT-2 ``n_embd``/``n_layer``/``n_head``,
T5 ``d_model``/``num_layers``/``num_heads``, BART ``d_model``/``decoder_layers``, BERT and Llama
``hidden_size``/``num_hidden_layers``/``num_attention_heads``); ``attribute_map`` aliases most of
them, and we try the remaining spellings in order.
"""

from __future__ import annotations

from typing import Any

from adapterlab.config import PeftType, TaskType
from adapterlab.errors import InvalidConfig
from adapterlab.tuners.prompt.config import PromptLearningConfig

_WIDTH_NAMES = ("hidden_size", "n_embd", "d_model")
_LAYER_NAMES = ("num_hidden_layers", "num_layers", "n_layer")
# decoder stacks of encoder-decoder models, where prefix tuning puts its keys and values
_DECODER_LAYER_NAMES = ("num_decoder_layers", "decoder_layers")
_HEAD_NAMES = ("num_attention_heads", "n_head", "num_heads", "encoder_attention_heads")


def _first_size(model_config: Any, names: tuple[str, ...]) -> int | None:
    for name in names:
        value = getattr(model_config, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _required_size(model_config: Any, names: tuple[str, ...], field_name: str) -> int:
    value = _first_size(model_config, names)
    if value is None:
        raise InvalidConfig(
            f"cannot read {field_name} from the model config (looked for {', '.join(names)}); "
            f"set {field_name} in the adapter config"
        )
    return value


def layer_counts(model_config: Any) -> set[int]:
    """Every stack depth the config names: its layers, and its decoder's for encoder-decoders."""
    model_config = text_config(model_config)
    names = _LAYER_NAMES + _DECODER_LAYER_NAMES
    return {size for name in names if (size := _first_size(model_config, (name,))) is not None}


def text_config(model_config: Any) -> Any:
    """The language part of a (possibly multimodal) transformers config."""
    get_text_config = getattr(model_config, "get_text_config", None)
    return get_text_config() if callable(get_text_config) else model_config


def fill_model_sizes(config: PromptLearningConfig, model_config: Any) -> None:
    """Set ``config``'s unset sizes in place from ``model_config`` (a transformers config)."""
    model_config = text_config(model_config)
    if config.num_transformer_submodules is None:
        config.num_transformer_submodules = 2 if config.task_type == TaskType.SEQ_2_SEQ_LM else 1
    if config.num_layers is None:
        decoder_layers = None
        if config.peft_type == PeftType.PREFIX_TUNING and config.task_type == TaskType.SEQ_2_SEQ_LM:
            decoder_layers = _first_size(model_config, _DECODER_LAYER_NAMES)
        config.num_layers = decoder_layers or _required_size(model_config, _LAYER_NAMES, "num_layers")
    token_dim_was_set = config.token_dim is not None
    if config.token_dim is None:
        config.token_dim = _required_size(model_config, _WIDTH_NAMES, "token_dim")
    if config.num_attention_heads is None:
        config.num_attention_heads = _required_size(model_config, _HEAD_NAMES, "num_attention_heads")
    if config.peft_type == PeftType.PREFIX_TUNING and not token_dim_was_set:
        _fit_prefix_to_key_value_heads(config, model_config)
    if getattr(config, "encoder_hidden_size", "absent") is None:
        config.encoder_hidden_size = config.token_dim


def _fit_prefix_to_key_value_heads(config: PromptLearningConfig, model_config: Any) -> None:
    """Prefix keys/values have the attention's K/V shape: with grouped-query attention (Llama
    ``num_key_value_heads``) or a head size that is not ``hidden / heads`` (T5 ``d_kv``) that is
    narrower or wider than the hidden size."""
    head_dim = (
        _first_size(model_config, ("head_dim", "d_kv")) or config.token_dim // config.num_attention_heads
    )
    kv_heads = _first_size(model_config, ("num_key_value_heads",)) or config.num_attention_heads
    config.num_attention_heads = kv_heads
    config.token_dim = kv_heads * head_dim
