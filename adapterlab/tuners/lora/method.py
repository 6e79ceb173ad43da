"""LoRA's entry in the method table (:mod:`adapterlab.methods`): how the core builds, switches and saves
it."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from adapterlab.config import PeftType
from adapterlab.hf_format import EMBEDDING_LAYER_NAMES
from adapterlab.methods import PeftMethod
from adapterlab.tuners.lora.config import LoraConfig
from adapterlab.tuners.lora.layer import LoraLayer
from adapterlab.tuners.lora.model import LoraModel
from adapterlab.tuners.lora.trainable_tokens import TrainableTokensWrapper

if TYPE_CHECKING:
    from adapterlab.peft_model import PeftModel


def remove_adapter_name(key: str, adapter_name: str) -> str:
    """``x.lora_A.default.weight`` -> ``x.lora_A.weight``; ``x.lora_embedding_A.default`` ->
    ``x.lora_embedding_A``."""
    if key.endswith(f".{adapter_name}"):
        return key[: -len(adapter_name) - 1]
    return key.replace(f".{adapter_name}.", ".")


def _layer_tensors(layer: LoraLayer | TrainableTokensWrapper, adapter_name: str) -> dict[str, nn.Parameter]:
    """One layer's tensors of ``adapter_name``, under the checkpoint suffixes."""
    if isinstance(layer, TrainableTokensWrapper):
        return {
            "token_adapter.trainable_tokens_delta": layer.token_adapter.trainable_tokens_delta[adapter_name]
        }
    if adapter_name in layer.lora_A:
        tensors = {
            "lora_A.weight": layer.lora_A[adapter_name].weight,
            "lora_B.weight": layer.lora_B[adapter_name].weight,
        }
        if layer.lora_B[adapter_name].bias is not None:  # lora_bias
            tensors["lora_B.bias"] = layer.lora_B[adapter_name].bias
    else:
        tensors = {
            "lora_embedding_A": layer.lora_embedding_A[adapter_name],
            "lora_embedding_B": layer.lora_embedding_B[adapter_name],
        }
    if adapter_name in layer.lora_magnitude_vector:
        tensors["lora_magnitude_vector"] = layer.lora_magnitude_vector[adapter_name]
    if adapter_name in layer.lora_variant:
        tensors.update(layer.lora_variant[adapter_name].checkpoint_tensors(layer, adapter_name))
    return tensors


def _holds(layer: nn.Module, adapter_name: str) -> bool:
    """Whether ``layer`` holds tensors of ``adapter_name`` that the checkpoint stores."""
    if isinstance(layer, TrainableTokensWrapper):
        return adapter_name in layer.adapter_names
    return isinstance(layer, LoraLayer) and adapter_name in layer.r


def _transformers_model(model: nn.Module) -> nn.Module:
    """The model the adapters were put into: a PeftModel's base, or ``model`` itself when the adapter
    layers were injected into it directly (``inject_adapter_in_model``)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _targeted_embedding_tables(peft_model: PeftModel, config: LoraConfig) -> dict[str, torch.Tensor]:
    """HF PEFT saves the full base tables of targeted input/output embeddings (vocabularies may be
    resized)."""
    targets = config.target_modules
    if isinstance(targets, str):
        names = [n for n, _ in _transformers_model(peft_model).named_modules()]
        targeted = any(
            re.fullmatch(targets, n) and re.match(rf"(.*\.)?({'|'.join(EMBEDDING_LAYER_NAMES)})$", n)
            for n in names
        )
    else:
        targeted = any(name in (targets or []) for name in EMBEDDING_LAYER_NAMES)
    base = _transformers_model(peft_model)
    if not targeted or not hasattr(base, "get_input_embeddings"):  # a plain torch model: tables unknown
        return {}
    tables = [base.get_input_embeddings(), base.get_output_embeddings()]
    result = {}
    for path, module in peft_model.named_modules():
        if isinstance(module, LoraLayer) and any(module is table for table in tables):
            result.update(
                {f"{path}.base_layer.{k}": v for k, v in module.base_layer.state_dict(keep_vars=True).items()}
            )
    return result


class LoraMethod(PeftMethod):
    peft_type = PeftType.LORA
    config_class = LoraConfig
    prefix = LoraModel.prefix

    def wrap_base_model(self, model: nn.Module, peft_config: dict[str, Any]) -> nn.Module:
        return LoraModel(model, peft_config)

    def add_adapter(self, peft_model: PeftModel, config: LoraConfig, adapter_name: str) -> None:
        try:
            peft_model.base_model.inject_adapter(config, adapter_name)
        except Exception:
            peft_model.base_model.delete_adapter(adapter_name)  # leave no half-built adapter behind
            raise

    def keep_base_dtype(self, peft_model: PeftModel, adapter_name: str) -> None:
        for layer in peft_model.modules():
            if isinstance(layer, LoraLayer) and adapter_name in layer.r:
                layer.cast_adapter(adapter_name, layer.adapted_weight().dtype)

    def set_adapter(self, peft_model: PeftModel, adapter_name: str | list[str]) -> None:
        peft_model.base_model.set_adapter(adapter_name)

    def delete_adapter(self, peft_model: PeftModel, adapter_name: str) -> None:
        peft_model.base_model.delete_adapter(adapter_name)

    def adapter_state_dict(self, peft_model: PeftModel, adapter_name: str) -> dict[str, torch.Tensor]:
        config = peft_model.peft_config[adapter_name]
        result: dict[str, torch.Tensor] = {}
        for path, layer in peft_model.named_modules():
            if _holds(layer, adapter_name):
                result.update(
                    {f"{path}.{suffix}": t for suffix, t in _layer_tensors(layer, adapter_name).items()}
                )
                if (
                    config.bias == "lora_only"
                    and isinstance(layer, LoraLayer)
                    and getattr(layer.base_layer, "bias", None) is not None
                ):
                    result[f"{path}.base_layer.bias"] = layer.base_layer.bias
        result.update(_targeted_embedding_tables(peft_model, config))
        if config.bias == "all":
            others = [n for n in peft_model.peft_config if n != adapter_name]
            for key, value in peft_model.state_dict(keep_vars=True).items():
                if key.endswith(".bias") and not any(f".{n}." in key for n in others):
                    result.setdefault(remove_adapter_name(key, adapter_name), value)
        return result

    def load_adapter_state_dict(
        self, peft_model: PeftModel, state_dict: dict[str, torch.Tensor], adapter_name: str
    ) -> None:
        from adapterlab.checkpoint import load_into_model

        targets: dict[str, torch.Tensor] = {}
        for path, layer in peft_model.named_modules():
            if _holds(layer, adapter_name):
                targets.update(
                    {f"{path}.{suffix}": t for suffix, t in _layer_tensors(layer, adapter_name).items()}
                )
        params = dict(peft_model.named_parameters(remove_duplicate=False))
        for key in state_dict:
            if (
                key not in targets
            ):  # biases (bias="all"/"lora_only"), by their plain path or with the name put back
                named = f"{key.rpartition('.')[0]}.{adapter_name}.{key.rpartition('.')[2]}"
                targets[key] = params.get(key, params.get(named))
        load_into_model(targets, state_dict, required=[k for k in targets if "lora_" in k])


LORA = LoraMethod()
