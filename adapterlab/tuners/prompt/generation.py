"""``generate()`` for the prompt methods, on top of transformers' own generation loop.

The virtual tokens enter once, at the first step: prompt tuning and P-tuning hand ``generate``
input embeddings with the prompt in front (transformers uses them for the first forward and the
token ids after that); prefix tuning swaps the prefix cache in when transformers prepares the
first forward, after beam search or sampling has expanded the batch. Later steps only read the
cache, and their attention mask -- which ``generate`` grows by one per step -- starts N
positions longer to cover the virtual tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from adapterlab.tuners.prompt.injection import extend_attention_mask, prepend_virtual_tokens


def _with_full_attention_mask(kwargs: dict[str, Any], key: str) -> dict[str, Any]:
    kwargs = dict(kwargs)
    if kwargs.get("attention_mask") is None:
        tokens = kwargs.get(key)
        kwargs["attention_mask"] = torch.ones(tokens.shape[:2], dtype=torch.long, device=tokens.device)
    return kwargs


def generate_with_prompt(
    model: nn.Module, prompts: torch.Tensor, kwargs: dict[str, Any], *, encoder_decoder: bool
) -> torch.Tensor:
    """Generate with ``prompts`` ``(N, D)`` in front of the input (of the encoder's input for
    encoder-decoder models). Decoder-only models return the input ids followed by the new ones."""
    input_ids = kwargs.get("input_ids")
    if input_ids is None:
        raise ValueError("generate() with a prompt adapter needs input_ids")
    kwargs = _with_full_attention_mask(kwargs, "input_ids")
    prepared = prepend_virtual_tokens(kwargs, prompts, model.get_input_embeddings(), pad_labels=False)
    if not encoder_decoder:
        # given both, transformers runs the embeddings first and continues from the ids
        prepared["input_ids"] = input_ids
    return model.generate(**prepared)


@contextmanager
def _first_step_injection(model: nn.Module, inject: Callable[[dict[str, Any]], None]) -> Iterator[None]:
    """Let ``inject`` edit the inputs of the first forward of ``model.generate``."""
    had_own = "prepare_inputs_for_generation" in vars(model)
    original = model.prepare_inputs_for_generation

    def prepare_inputs_for_generation(
        input_ids: torch.Tensor, *args: Any, inputs_embeds: torch.Tensor | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        model_inputs = original(input_ids, *args, inputs_embeds=inputs_embeds, **kwargs)
        if kwargs.get("is_first_iteration"):
            inject(model_inputs)
        return model_inputs

    model.prepare_inputs_for_generation = prepare_inputs_for_generation
    try:
        yield
    finally:
        if had_own:
            model.prepare_inputs_for_generation = original
        else:
            del model.prepare_inputs_for_generation


def generate_with_prefix(
    model: nn.Module,
    build_cache: Callable[[int], Any],
    num_virtual_tokens: int,
    kwargs: dict[str, Any],
    *,
    encoder_decoder: bool,
    cache_key: str,
) -> torch.Tensor:
    """Generate with a prefix cache ``build_cache(batch_size)`` in place at the first step."""
    if kwargs.get("input_ids") is None:
        raise ValueError("generate() with a prefix adapter needs input_ids")
    ids_key = "decoder_input_ids" if encoder_decoder else "input_ids"
    if not encoder_decoder:
        kwargs = _with_full_attention_mask(kwargs, "input_ids")
        extend_attention_mask(kwargs, num_virtual_tokens)

    def inject(model_inputs: dict[str, Any]) -> None:
        key = next((k for k in ("cache", "past_key_values") if k in model_inputs), cache_key)
        model_inputs[key] = build_cache(model_inputs[ids_key].shape[0])

    with _first_step_injection(model, inject):
        return model.generate(**kwargs)
