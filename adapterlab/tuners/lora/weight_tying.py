"""``ensure_weight_tying``: keep an adapter tied where the base model ties its output layer (``lm_head``)
to the input embeddings.

Many language models share one matrix between ``embed_tokens`` and ``lm_head`` (transformers'
``_tied_weights_keys``, ``config.tie_word_embeddings``). An adapter that trains a copy of one of them
(``modules_to_save``) or adds LoRA to one (``target_modules``) unties them. With
``ensure_weight_tying=True`` the adapter goes on the input embedding and every module tied to it
shares the adapter's tensors: the same trained copy, or, for LoRA on an ``nn.Linear`` head, the
embedding's A and B transposed (the head computes ``x @ E.T``, so its update is the embedding's
update transposed: head A = embedding B.T, head B = embedding A.T). Without the option a warning
says that the adapter breaks the tie.
"""

from __future__ import annotations

import re
import warnings
from typing import Any

from torch import nn

from adapterlab.hf_format import EMBEDDING_LAYER_NAMES
from adapterlab.tuners.lora.config import LoraConfig
from adapterlab.tuners.modules_to_save import ModulesToSaveWrapper, attach_modules_to_save

# path segments adapter wrappers insert before a wrapped module's own parameters
WRAPPER_SEGMENT = re.compile(r"\b(base_layer|original_module)\.")


def tied_module_names(model: nn.Module) -> list[str]:
    """Paths of the modules whose weight is tied to the input embeddings (the embedding itself left
    out); none when the model's config sets ``tie_word_embeddings=False``."""
    if getattr(getattr(model, "config", None), "tie_word_embeddings", None) is False:
        return []
    keys = getattr(model, "_tied_weights_keys", None)
    if not keys:
        return []
    if isinstance(keys, dict):  # transformers 5: {tied parameter: source parameter}, per submodule
        embedding = {id(p) for p in model.get_input_embeddings().parameters()}
        on_embedding = {
            WRAPPER_SEGMENT.sub("", name)
            for name, p in model.named_parameters(remove_duplicate=False)
            if id(p) in embedding
        }
        pairs = {}
        for prefix, module in model.named_modules():
            sub_keys = getattr(module, "_tied_weights_keys", None)
            if isinstance(sub_keys, dict):
                pairs.update({_join(prefix, k): _join(prefix, v) for k, v in sub_keys.items()})
        names = [tied for tied, source in pairs.items() if source in on_embedding]
    else:  # transformers 4: a list of the tied parameters
        names = list(keys)
    return sorted({name.rpartition(".")[0] for name in names})


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _names_an_embedding(names: list[str] | str | None) -> bool:
    if isinstance(names, str):
        return any(re.fullmatch(names, layer) for layer in EMBEDDING_LAYER_NAMES)
    return any(name.split(".")[-1] in EMBEDDING_LAYER_NAMES for name in names or [])


def plan_weight_tying(model: nn.Module, config: LoraConfig) -> None:
    """Warn where the adapter unties tied embeddings; with ``ensure_weight_tying`` on a tied model,
    move the adapter onto the input embedding: ``config`` gets it in ``modules_to_save`` (or
    ``target_modules``) instead of the tied modules, which it lists in ``modules_to_tie`` (or
    ``target_modules_to_tie``, not saved) for :func:`tie_modules_to_save` / the LoRA injection."""
    to_save = _names_an_embedding(config.modules_to_save)
    in_targets = _names_an_embedding(config.target_modules)
    tied = tied_module_names(model)
    if not config.ensure_weight_tying:
        if tied and (to_save or in_targets):
            warnings.warn(
                "Model has `tie_word_embeddings=True` and a tied layer is part of the adapter, but "
                "`ensure_weight_tying` is not set to True: the adapter unties them, which can break merging "
                "or exporting. Set ensure_weight_tying=True in the LoraConfig to keep them tied",
                UserWarning,
                stacklevel=4,
            )
        return
    if not tied:
        warnings.warn(
            "You have requested `ensure_weight_tying`, but no tied modules were found in the model; the "
            "option does nothing here",
            UserWarning,
            stacklevel=4,
        )
    elif to_save:
        config.modules_to_tie = tied
        config.modules_to_save = _with_embedding(model, config.modules_to_save, tied)
    elif in_targets:
        config.target_modules_to_tie = tied
        if isinstance(config.target_modules, str):
            config.target_modules = rf"(?:{config.target_modules}|^{re.escape(_embedding_name(model))}$)"
        else:
            config.target_modules = _with_embedding(model, config.target_modules, tied)
    elif _names_module(config.target_modules, _embedding_name(model)):
        # a reload: the saved config names the input embedding by its path (GPT-2's transformer.wte),
        # the tied head having been taken out when the adapter was made
        config.target_modules_to_tie = tied
    else:
        warnings.warn(
            "You have requested `ensure_weight_tying`, but no tied modules are added in either "
            "`modules_to_save` or `target_modules`; the option does nothing here",
            UserWarning,
            stacklevel=4,
        )


def _names_module(names: list[str] | str | None, path: str) -> bool:
    """Whether a list of target names selects the module at ``path`` (as a full path or its suffix)."""
    if names is None or isinstance(names, str):
        return False
    return any(path == name or path.endswith(f".{name}") for name in names)


def _embedding_name(model: nn.Module) -> str:
    embedding = model.get_input_embeddings()
    return next(name for name, module in model.named_modules() if module is embedding)


def _with_embedding(model: nn.Module, names: list[str], tied: list[str]) -> list[str]:
    """``names`` with the input embedding's path added and the names of tied modules taken out."""
    result = list(dict.fromkeys([*names, _embedding_name(model)]))
    for key in tied:
        match = next((n for n in result if re.match(rf"(^|.*\.){n}($|\..*)", key)), None)
        if match is not None:
            result.remove(match)
    return result


def tie_modules_to_save(model: nn.Module, config: Any, adapter_name: str) -> None:
    """Give every module in ``config.modules_to_tie`` a modules_to_save copy that shares the input
    embedding's trained copy (set up by :func:`plan_weight_tying`)."""
    source_name = _embedding_name(model)
    attach_modules_to_save(model, [source_name], adapter_name)
    source = model.get_submodule(source_name).modules_to_save[adapter_name]
    for name in config.modules_to_tie:
        module = model.get_submodule(name)
        if not isinstance(module, ModulesToSaveWrapper):
            parent_name, _, child_name = name.rpartition(".")
            module = ModulesToSaveWrapper(module, adapter_name)
            setattr(model.get_submodule(parent_name), child_name, module)
        module.add_adapter(adapter_name)
        module.modules_to_save[adapter_name].weight = source.weight


def is_tied_target(config: Any, key: str) -> bool:
    """Whether module ``key`` gets its LoRA tensors from the input embedding's (``target_modules_to_tie``)."""
    tied = getattr(config, "target_modules_to_tie", None) or []
    return any(key == name or key.endswith(f".{name}") for name in tied)


def tie_lora(layer: nn.Module, source: nn.Module, adapter_name: str) -> None:
    """Make ``layer``'s LoRA tensors of ``adapter_name`` those of the embedding ``source``: shared as is
    for another embedding, transposed for a linear head (see the module doc)."""
    a, b = source.lora_embedding_A[adapter_name], source.lora_embedding_B[adapter_name]
    if adapter_name in layer.lora_embedding_A:
        layer.lora_embedding_A[adapter_name], layer.lora_embedding_B[adapter_name] = a, b
    else:
        # views of the embedding's storage, as in HF PEFT: the optimizer updates the shared values
        # through both parameters, so the head and the embedding never drift apart
        layer.lora_A[adapter_name].weight = nn.Parameter(b.t())
        layer.lora_B[adapter_name].weight = nn.Parameter(a.t())
