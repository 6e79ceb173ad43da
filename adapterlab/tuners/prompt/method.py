"""Prompt tuning, P-tuning and prefix tuning as entries of the method table.

The three share everything but their encoder (:mod:`~adapterlab.tuners.prompt.encoders`) and the
way its output enters the model: prompt tuning and P-tuning prepend virtual token embeddings,
prefix tuning hands every attention layer a key/value prefix (both in
:mod:`~adapterlab.tuners.prompt.injection`). Adapters live in ``peft_model.prompt_encoder``, a
``ModuleDict`` keyed by adapter name that all three methods share, so adapters of different
prompt methods can sit on one model; the active adapter's config picks the method.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from adapterlab.config import PeftType, TaskType
from adapterlab.errors import CheckpointError, InvalidConfig, ShapeMismatch
from adapterlab.methods import PeftMethod
from adapterlab.tuners import cpu_fast_paths
from adapterlab.tuners.prompt import generation, injection
from adapterlab.tuners.prompt.config import (
    PrefixTuningConfig,
    PromptEncoderConfig,
    PromptLearningConfig,
    PromptTuningConfig,
)
from adapterlab.tuners.prompt.encoders import PrefixProjection, PromptEmbedding, PromptEncoder, initial_prompt
from adapterlab.tuners.prompt.model_sizes import fill_model_sizes

if TYPE_CHECKING:
    from adapterlab.peft_model import PeftModel

SAVED_KEY = "prompt_embeddings"
_GENERATIVE_TASKS = (TaskType.CAUSAL_LM, TaskType.SEQ_2_SEQ_LM)


def _active(peft_model: PeftModel) -> tuple[PromptLearningConfig, nn.Module]:
    name = peft_model.active_adapter
    return peft_model.peft_config[name], peft_model.prompt_encoder[name]


def _as_kwargs(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """Model inputs by name (the one positional input a transformers model takes is input_ids)."""
    if len(args) > 1:
        raise TypeError("pass model inputs by name; only input_ids may be positional")
    if args:
        kwargs = {**kwargs, "input_ids": args[0]}
    kwargs.pop("task_ids", None)  # HF PEFT's multitask argument: no prompt method here uses it
    return kwargs


class PromptLearningMethod(PeftMethod):
    """What the three methods share: adapter bookkeeping, checks, save/load of ``prompt_embeddings``."""

    is_prompt_learning = True
    # per-token heads (token classification, extractive QA) would see their outputs shifted by
    # the virtual tokens; prefix tuning adds no positions and supports them
    supported_tasks: tuple[TaskType, ...] = (
        *_GENERATIVE_TASKS,
        TaskType.SEQ_CLS,
        TaskType.FEATURE_EXTRACTION,
    )

    # sizes a saved adapter must share with the model it is loaded on
    fitted_sizes: tuple[str, ...] = ("token_dim",)

    def build_encoder(self, config: PromptLearningConfig, model: nn.Module) -> nn.Module:
        raise NotImplementedError

    def saved_shape(self, config: PromptLearningConfig) -> tuple[int, int]:
        return (config.total_virtual_tokens, config.token_dim)

    def add_adapter(self, peft_model: PeftModel, config: PromptLearningConfig, adapter_name: str) -> None:
        model = peft_model.get_base_model()
        self.check_task(config, model)
        self.check_sizes(config, model)
        encoder = self.build_encoder(config, model).to(model.get_input_embeddings().weight.device)
        encoder.requires_grad_(not config.inference_mode)
        if "prompt_encoder" not in peft_model._modules:
            model.requires_grad_(False)  # once: later adapters must not refreeze trained task heads
            if cpu_fast_paths.live_rows_enabled():  # opt-in: the frozen output layers skip zero gradient rows
                cpu_fast_paths.wrap_live_rows(model)
            peft_model.prompt_encoder = nn.ModuleDict()
        peft_model.prompt_encoder[adapter_name] = encoder

    def check_task(self, config: PromptLearningConfig, model: nn.Module) -> None:
        task = config.task_type
        if task is None:
            raise InvalidConfig(
                f"{config.peft_type} needs task_type (one of "
                f"{', '.join(t.value for t in self.supported_tasks)}) to know where the virtual tokens go"
            )
        if task not in self.supported_tasks:
            raise InvalidConfig(
                f"{config.peft_type} cannot do task_type {task}: per-token outputs would be shifted by the "
                f"virtual tokens; use PREFIX_TUNING or LORA"
            )
        encoder_decoder = bool(getattr(model.config, "is_encoder_decoder", False))
        if encoder_decoder != (task == TaskType.SEQ_2_SEQ_LM):
            kind = "an encoder-decoder" if encoder_decoder else "a decoder-only or encoder-only"
            fit = "SEQ_2_SEQ_LM" if encoder_decoder else "CAUSAL_LM, SEQ_CLS or FEATURE_EXTRACTION"
            raise InvalidConfig(f"{type(model).__name__} is {kind} model; use task_type {fit}, not {task}")

    def check_sizes(self, config: PromptLearningConfig, model: nn.Module) -> None:
        """Fill unset sizes from the model and refuse sizes (e.g. from a saved adapter) that don't fit it."""
        config.check_ready()
        expected = dataclasses.replace(config, token_dim=None, num_attention_heads=None, num_layers=None)
        fill_model_sizes(expected, model.config)
        fill_model_sizes(config, model.config)
        for name in self.fitted_sizes:
            if getattr(config, name) != getattr(expected, name):
                raise ShapeMismatch(
                    f"the adapter has {name}={getattr(config, name)} but {type(model).__name__} needs "
                    f"{getattr(expected, name)}: it was made for another base model; load it on that model"
                )

    def set_adapter(self, peft_model: PeftModel, adapter_name: str) -> None:
        """Forward reads the active adapter's encoder; only it trains (unless loaded frozen)."""
        for name, encoder in peft_model.prompt_encoder.items():
            encoder.requires_grad_(name == adapter_name and not peft_model.peft_config[name].inference_mode)

    def delete_adapter(self, peft_model: PeftModel, adapter_name: str) -> None:
        del peft_model.prompt_encoder[adapter_name]
        if not len(peft_model.prompt_encoder):
            cpu_fast_paths.unwrap_live_rows(peft_model.get_base_model())  # the user's layers as they were

    def adapter_state_dict(self, peft_model: PeftModel, adapter_name: str) -> dict[str, torch.Tensor]:
        # the encoder's output, so the file means the same to any reader (P-tuning's MLP is not kept),
        # computed without dropout: what inference will see
        encoder = peft_model.prompt_encoder[adapter_name]
        was_training = encoder.training
        encoder.eval()
        try:
            with torch.no_grad():
                rows = encoder()
        finally:
            encoder.train(was_training)
        return {SAVED_KEY: rows.detach().float().cpu().contiguous()}

    def load_adapter_state_dict(
        self, peft_model: PeftModel, state_dict: dict[str, torch.Tensor], adapter_name: str
    ) -> None:
        config = peft_model.peft_config[adapter_name]
        if SAVED_KEY not in state_dict:
            raise CheckpointError(
                f"the checkpoint has no {SAVED_KEY!r} tensor; it is not a {config.peft_type} adapter"
            )
        unplaced = sorted(set(state_dict) - {SAVED_KEY})
        if unplaced:
            raise CheckpointError(
                f"the adapter file holds {unplaced[0]!r}, which matches nothing in the model; "
                f"the adapter was made for another base model or config"
            )
        rows = state_dict[SAVED_KEY]
        expected = self.saved_shape(config)
        if tuple(rows.shape) != expected:
            raise ShapeMismatch(
                f"{SAVED_KEY} has shape {tuple(rows.shape)} but the adapter config describes {expected}; "
                f"the files do not belong together, re-save the adapter"
            )
        old = peft_model.prompt_encoder[adapter_name]
        # whatever produced the rows (MLP, LSTM, projection), what is loaded is the rows themselves
        loaded = PromptEmbedding(*expected, initial=rows.float()).to(old.embedding.weight.device)
        loaded.requires_grad_(old.embedding.weight.requires_grad)
        peft_model.prompt_encoder[adapter_name] = loaded

    def forward(self, peft_model: PeftModel, *args: Any, **kwargs: Any) -> Any:
        config, encoder = _active(peft_model)
        return self.run(peft_model.get_base_model(), config, encoder, _as_kwargs(args, kwargs))

    def generate(self, peft_model: PeftModel, *args: Any, **kwargs: Any) -> Any:
        config, encoder = _active(peft_model)
        if config.task_type not in _GENERATIVE_TASKS:
            raise InvalidConfig(
                f"generate() needs a CAUSAL_LM or SEQ_2_SEQ_LM adapter, not {config.task_type}"
            )
        with torch.no_grad():
            return self.run_generate(peft_model.get_base_model(), config, encoder, _as_kwargs(args, kwargs))

    def run(
        self, model: nn.Module, config: PromptLearningConfig, encoder: nn.Module, kwargs: dict[str, Any]
    ) -> Any:
        raise NotImplementedError

    def run_generate(
        self, model: nn.Module, config: PromptLearningConfig, encoder: nn.Module, kwargs: dict[str, Any]
    ) -> Any:
        raise NotImplementedError


def _continues_cache(kwargs: dict[str, Any]) -> bool:
    """A call that passes a filled cache continues a sequence whose virtual tokens are already in it."""
    cache = kwargs.get("cache", kwargs.get("past_key_values"))
    return cache is not None and cache.get_seq_length() > 0


def _encoder_prompt(rows: torch.Tensor, num_virtual_tokens: int) -> torch.Tensor:
    """The rows fed in front of the input, ``(N, D)``. Encoder-decoder adapters hold a second set
    for the decoder (HF PEFT's layout) that HF PEFT never feeds; we keep it only for the format."""
    # no slice when there is nothing to cut: its backward would allocate and copy the whole table
    return rows if rows.shape[0] == num_virtual_tokens else rows[:num_virtual_tokens]


class VirtualTokenMethod(PromptLearningMethod):
    """Prompt tuning and P-tuning: virtual token embeddings in front of the input."""

    def run(
        self, model: nn.Module, config: PromptLearningConfig, encoder: nn.Module, kwargs: dict[str, Any]
    ) -> Any:
        num = config.num_virtual_tokens
        if _continues_cache(kwargs):
            injection.extend_attention_mask(kwargs, num)
            return model(**kwargs)
        prompts = _encoder_prompt(encoder(), num)
        pad_labels = config.task_type == TaskType.CAUSAL_LM
        return model(
            **injection.prepend_virtual_tokens(
                kwargs, prompts, model.get_input_embeddings(), pad_labels=pad_labels
            )
        )

    def run_generate(
        self, model: nn.Module, config: PromptLearningConfig, encoder: nn.Module, kwargs: dict[str, Any]
    ) -> Any:
        prompts = _encoder_prompt(encoder(), config.num_virtual_tokens)
        encoder_decoder = config.task_type == TaskType.SEQ_2_SEQ_LM
        return generation.generate_with_prompt(model, prompts, kwargs, encoder_decoder=encoder_decoder)


class PromptTuningMethod(VirtualTokenMethod):
    peft_type = PeftType.PROMPT_TUNING
    config_class = PromptTuningConfig

    def build_encoder(self, config: PromptTuningConfig, model: nn.Module) -> nn.Module:
        initial = None if config.inference_mode else initial_prompt(config, model.get_input_embeddings())
        return PromptEmbedding(config.total_virtual_tokens, config.token_dim, initial=initial)


class PTuningMethod(VirtualTokenMethod):
    peft_type = PeftType.P_TUNING
    config_class = PromptEncoderConfig

    def build_encoder(self, config: PromptEncoderConfig, model: nn.Module) -> nn.Module:
        if config.inference_mode:  # a loaded adapter is the encoder's output; no MLP to train
            return PromptEmbedding(config.total_virtual_tokens, config.token_dim)
        return PromptEncoder(config)


class PrefixTuningMethod(PromptLearningMethod):
    """Prefix tuning: a key/value prefix in every attention layer, through the model's cache."""

    peft_type = PeftType.PREFIX_TUNING
    config_class = PrefixTuningConfig
    supported_tasks = (*PromptLearningMethod.supported_tasks, TaskType.TOKEN_CLS, TaskType.QUESTION_ANS)
    fitted_sizes = ("token_dim", "num_layers", "num_attention_heads")

    def saved_shape(self, config: PromptLearningConfig) -> tuple[int, int]:
        return (config.num_virtual_tokens, config.num_layers * 2 * config.token_dim)

    def add_adapter(self, peft_model: PeftModel, config: PrefixTuningConfig, adapter_name: str) -> None:
        _refuse_gradient_checkpointing(peft_model.get_base_model())
        super().add_adapter(peft_model, config, adapter_name)

    def build_encoder(self, config: PrefixTuningConfig, model: nn.Module) -> nn.Module:
        num, width = self.saved_shape(config)
        if config.prefix_projection and not config.inference_mode:
            return PrefixProjection(
                num, config.token_dim, config.encoder_hidden_size, width, config.init_weights == "zero"
            )
        table = PromptEmbedding(num, width)
        if config.init_weights == "zero":
            nn.init.zeros_(table.embedding.weight)
        return table

    def _cache(
        self, model: nn.Module, config: PromptLearningConfig, encoder: nn.Module, batch_size: int
    ) -> Any:
        return injection.prefix_cache(
            encoder(),
            config,
            batch_size,
            model.dtype,
            encoder_decoder=config.task_type == TaskType.SEQ_2_SEQ_LM,
        )

    def run(
        self, model: nn.Module, config: PromptLearningConfig, encoder: nn.Module, kwargs: dict[str, Any]
    ) -> Any:
        num = config.num_virtual_tokens
        encoder_decoder = config.task_type == TaskType.SEQ_2_SEQ_LM
        injection.extend_attention_mask(
            kwargs, num, "decoder_attention_mask" if encoder_decoder else "attention_mask"
        )
        if kwargs.get("position_ids") is not None and not encoder_decoder:
            kwargs["position_ids"] = kwargs["position_ids"] + num  # the prefix holds positions 0..N-1
        if _continues_cache(kwargs):
            return model(**kwargs)
        if model.training:
            _refuse_gradient_checkpointing(model)
        cache = self._cache(model, config, encoder, injection.batch_size_of(kwargs))
        kwargs[injection.cache_argument(model)] = cache
        outputs = model(**kwargs)
        injection.check_prefix_consumed(cache, num, model)
        return outputs

    def run_generate(
        self, model: nn.Module, config: PromptLearningConfig, encoder: nn.Module, kwargs: dict[str, Any]
    ) -> Any:
        return generation.generate_with_prefix(
            model,
            lambda batch_size: self._cache(model, config, encoder, batch_size),
            config.num_virtual_tokens,
            kwargs,
            encoder_decoder=config.task_type == TaskType.SEQ_2_SEQ_LM,
            cache_key=injection.cache_argument(model),
        )


def _refuse_gradient_checkpointing(model: nn.Module) -> None:
    # checkpointed layers recompute their forward, and the prefix cache would be appended to twice
    if any(getattr(module, "gradient_checkpointing", False) for module in model.modules()):
        raise InvalidConfig(
            "prefix tuning does not work with gradient checkpointing; call "
            "model.gradient_checkpointing_disable() or use prompt tuning / P-tuning"
        )


PROMPT_TUNING = PromptTuningMethod()
P_TUNING = PTuningMethod()
PREFIX_TUNING = PrefixTuningMethod()
