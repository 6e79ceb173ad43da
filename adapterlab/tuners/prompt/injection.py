"""The one place where virtual tokens enter the frozen model.

Two ways in:

- :func:`prepend_virtual_tokens` (prompt tuning, P-tuning): the virtual token embeddings
  ``(N, D)`` go in front of the input embeddings, ``(B, L, D) -> (B, N + L, D)``; the attention
  mask gets N ones in front, ``token_type_ids`` N zeros, ``position_ids`` the positions
  ``0..N-1`` (the real tokens move to ``N..N+L-1``), LM labels N ``-100`` (no loss on them).
- :func:`prefix_cache` (prefix tuning): the states ``(N, L * 2 * D)`` become a key/value cache of
  N positions in every attention layer, a transformers ``DynamicCache`` (an
  ``EncoderDecoderCache`` around it for encoder-decoder models, where the decoder's self-attention
  reads it). Encoder-only models such as BERT take the same cache: their self-attention layers
  concatenate it in front of their own keys and values.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn
from transformers import DynamicCache, EncoderDecoderCache

from adapterlab.errors import UnsupportedModule
from adapterlab.tuners.prompt.config import PromptLearningConfig

IGNORE_INDEX = -100  # label value the transformers losses skip


def batch_size_of(kwargs: dict[str, Any]) -> int:
    """Batch size from ``input_ids`` or ``inputs_embeds`` (one of them is required)."""
    for key in ("input_ids", "inputs_embeds"):
        if kwargs.get(key) is not None:
            return kwargs[key].shape[0]
    raise ValueError("pass input_ids or inputs_embeds")


def _prepend(tensor: torch.Tensor, num_tokens: int, value: int | float) -> torch.Tensor:
    front = torch.full((tensor.shape[0], num_tokens), value, dtype=tensor.dtype, device=tensor.device)
    return torch.cat((front, tensor), dim=1)


def extend_attention_mask(kwargs: dict[str, Any], num_tokens: int, key: str = "attention_mask") -> None:
    """Let every real token attend to the N virtual positions in front of it (2D masks)."""
    mask = kwargs.get(key)
    if mask is not None:
        kwargs[key] = _prepend(mask, num_tokens, 1)


def prepend_virtual_tokens(
    kwargs: dict[str, Any], prompts: torch.Tensor, word_embeddings: nn.Module, *, pad_labels: bool
) -> dict[str, Any]:
    """Model kwargs with ``prompts`` ``(N, D)`` in front of every sequence of the batch."""
    kwargs = dict(kwargs)
    input_ids = kwargs.pop("input_ids", None)
    embeds = kwargs.get("inputs_embeds")
    if embeds is None:
        if input_ids is None:
            raise ValueError("pass input_ids or inputs_embeds")
        embeds = word_embeddings(input_ids)  # (B, L, D)
    batch, num = embeds.shape[0], prompts.shape[0]
    prompts = prompts.to(embeds.dtype).unsqueeze(0).expand(batch, -1, -1)  # (B, N, D)
    kwargs["inputs_embeds"] = torch.cat((prompts, embeds), dim=1)  # (B, N + L, D)
    extend_attention_mask(kwargs, num)
    if kwargs.get("token_type_ids") is not None:
        kwargs["token_type_ids"] = _prepend(kwargs["token_type_ids"], num, 0)
    if kwargs.get("position_ids") is not None:
        positions = kwargs["position_ids"]
        virtual = torch.arange(num, dtype=positions.dtype, device=positions.device).expand(
            positions.shape[0], -1
        )
        kwargs["position_ids"] = torch.cat((virtual, positions + num), dim=1)
    if pad_labels and kwargs.get("labels") is not None:
        kwargs["labels"] = _prepend(kwargs["labels"], num, IGNORE_INDEX)
    return kwargs


def _layer_rows(num_layers: int, encoder_decoder: bool) -> list[tuple[int, int]]:
    """Which rows of the ``2 * num_layers`` key/value rows each layer reads.

    Decoder-only: layer ``l`` reads rows ``2l`` (keys) and ``2l + 1`` (values). Encoder-decoder:
    Hugging Face PEFT reads the rows as a doubled list ``[0..2L-1, 0..2L-1]`` in chunks of four
    (self-attention key/value, then a cross-attention pair it discards), so layer ``l`` reads
    ``4l mod 2L`` and ``4l + 1 mod 2L``. We follow it: a checkpoint must mean the same in both.
    """
    if not encoder_decoder:
        return [(2 * layer, 2 * layer + 1) for layer in range(num_layers)]
    rows = 2 * num_layers
    return [((4 * layer) % rows, (4 * layer + 1) % rows) for layer in range(num_layers)]


def prefix_cache(
    states: torch.Tensor,
    config: PromptLearningConfig,
    batch_size: int,
    dtype: torch.dtype,
    *,
    encoder_decoder: bool,
) -> DynamicCache | EncoderDecoderCache:
    """A cache holding the prefix: per layer, keys and values ``(B, H, N, head_dim)``."""
    num, layers, heads = config.num_virtual_tokens, config.num_layers, config.num_attention_heads
    kv = states.to(dtype).view(num, 2 * layers, heads, config.token_dim // heads)  # (N, 2L, H, hd)
    kv = kv.permute(1, 2, 0, 3).unsqueeze(1).expand(-1, batch_size, -1, -1, -1)  # (2L, B, H, N, hd)
    pairs = [(kv[k], kv[v]) for k, v in _layer_rows(layers, encoder_decoder)]
    if encoder_decoder:
        # cross-attention keys/values come from the encoder's output, computed by the model itself
        return EncoderDecoderCache(DynamicCache(pairs), DynamicCache())
    return DynamicCache(pairs)


def cache_argument(model: nn.Module) -> str:
    """The name under which ``model.forward`` takes a key/value cache (transformers renamed
    ``past_key_values`` to ``cache``); task heads that only pass ``**kwargs`` on get the new name."""
    parameters = inspect.signature(model.forward).parameters
    for name in ("cache", "past_key_values"):
        if name in parameters:
            return name
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return "cache"
    raise UnsupportedModule(
        f"{type(model).__name__}.forward takes no key/value cache, so prefix tuning cannot reach its "
        f"attention layers; use prompt tuning or P-tuning for this model"
    )


def check_prefix_consumed(
    cache: DynamicCache | EncoderDecoderCache, num_virtual_tokens: int, model: nn.Module
) -> None:
    """A model that silently drops the cache would train nothing: its layers must have appended
    their own keys and values to the prefix."""
    if cache.get_seq_length() <= num_virtual_tokens:
        raise UnsupportedModule(
            f"{type(model).__name__} ignored the prefix key/value cache, so prefix tuning has no effect "
            f"on it; use prompt tuning or P-tuning for this model"
        )
