"""Adapter checkpoints in Hugging Face PEFT's format.

A folder holds ``adapter_config.json`` and ``adapter_model.safetensors``; the adapter named
``default`` is saved in the folder itself, any other in ``<folder>/<adapter_name>/``. Tensor keys
carry no adapter name (it is put back on load, so one file loads under any name). Which tensors
belong to an adapter is the method's business (its ``adapter_state_dict`` hook); the
``modules_to_save`` copies are added here, the same way for every method. Files are written to a
temporary name in the target folder and renamed, so a crash never leaves half a file.
"""

from __future__ import annotations

import io
import os
import pickle
import re
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import torch

import adapterlab.hub as hub
from adapterlab.errors import AdapterNotFound, CheckpointError, InvalidConfig, ShapeMismatch, summarize
from adapterlab.hf_format import MODEL_PREFIX, SAFETENSORS_WEIGHTS_NAME, WEIGHTS_NAME, write_atomically
from adapterlab.methods import get_method
from adapterlab.tuners.modules_to_save import ModulesToSaveWrapper

if TYPE_CHECKING:
    from adapterlab.config import PeftConfig
    from adapterlab.peft_model import PeftModel


class LoadResult(NamedTuple):
    missing_keys: list[str]
    unexpected_keys: list[str]


def _modules_to_save(
    peft_model: PeftModel, adapter_name: str
) -> Iterable[tuple[str, dict[str, torch.Tensor]]]:
    """(module path, the adapter's copy's tensors) of every modules_to_save wrapper holding the adapter."""
    for path, module in peft_model.named_modules():
        if isinstance(module, ModulesToSaveWrapper) and adapter_name in module.modules_to_save:
            yield path, module.modules_to_save[adapter_name].state_dict(keep_vars=True)


def get_peft_model_state_dict(
    model: PeftModel,
    state_dict: dict[str, torch.Tensor] | None = None,
    adapter_name: str = "default",
    unwrap_compiled: bool = False,
    save_embedding_layers: str | bool = "auto",
) -> dict[str, torch.Tensor]:
    """The adapter's tensors under HF PEFT's checkpoint keys (no adapter name), detached.

    HF PEFT's signature: ``state_dict`` (``model.state_dict()``-style, e.g. gathered from shards)
    supplies the values instead of the live parameters; ``unwrap_compiled`` looks through
    ``torch.compile``; ``save_embedding_layers=False`` leaves out the full embedding tables that
    LoRA saves when it targets ``embed_tokens`` / ``lm_head`` ("auto" and True keep them).
    """
    if unwrap_compiled:
        model = getattr(model, "_orig_mod", model)
    if adapter_name not in model.peft_config:
        raise AdapterNotFound(f"no adapter named {adapter_name!r}; loaded: {', '.join(model.peft_config)}")
    # get_method, not model.method_for: a model from inject_adapter_in_model is no PeftModel
    method = get_method(model.peft_config[adapter_name].peft_type)
    state = dict(method.adapter_state_dict(model, adapter_name))
    for path, tensors in _modules_to_save(model, adapter_name):
        state.update({f"{path}.{key}": value for key, value in tensors.items()})
    state = _apply_save_embedding_layers(model, state, save_embedding_layers)
    if state_dict is not None:
        state = _values_from(model, state, state_dict)
    return {strip_wrapper_prefixes(key): value.detach() for key, value in state.items()}


def _apply_save_embedding_layers(
    model: PeftModel, state: dict[str, torch.Tensor], save_embedding_layers: str | bool
) -> dict[str, torch.Tensor]:
    """``state`` with or without the full embedding tables, with HF PEFT's warnings about the choice."""
    # the only full base weights a LoRA file holds are those tables (a lora_only bias is a .bias)
    tables = [key for key in state if key.endswith(".base_layer.weight")]
    if save_embedding_layers is False:
        return {key: value for key, value in state.items() if key not in tables}
    if save_embedding_layers == "auto" and tables:
        warnings.warn(
            "Setting `save_embedding_layers` to `True` as embedding layers found in `target_modules`. "
            "Pass save_embedding_layers=False to save the adapter alone (the base tables are then needed "
            "unchanged to load it)",
            UserWarning,
            stacklevel=4,
        )
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if save_embedding_layers is True and not hasattr(base, "get_input_embeddings"):
        warnings.warn(
            "Could not identify embedding layer(s) because the model is not a 🤗 transformers model. No "
            "embedding table is saved",
            UserWarning,
            stacklevel=4,
        )
    return state


# module names that wrappers (FSDP, activation checkpointing) insert into every path inside them
WRAPPER_PREFIXES = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.")


def strip_wrapper_prefixes(key: str) -> str:
    """A parameter path as it reads without the wrappers around the model: the checkpoint keys of an
    adapter saved from an FSDP-wrapped model are those of the plain model, so it loads anywhere."""
    for prefix in WRAPPER_PREFIXES:
        key = key.replace(prefix, "")
    return key


def _values_from(
    model: PeftModel, state: dict[str, torch.Tensor], state_dict: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """``state``'s keys with the values ``state_dict`` holds for the same parameters."""
    full_names = {id(tensor): name for name, tensor in model.state_dict(keep_vars=True).items()}
    result = {}
    for key, tensor in state.items():
        name = full_names.get(id(tensor))
        if name is None or name not in state_dict:
            raise CheckpointError(
                f"the state_dict passed lacks {name or key!r}; pass the whole model.state_dict() of this "
                "model"
            )
        result[key] = state_dict[name]
    return result


def set_peft_model_state_dict(
    model: PeftModel,
    peft_model_state_dict: dict[str, torch.Tensor],
    adapter_name: str = "default",
    ignore_mismatched_sizes: bool = False,
    low_cpu_mem_usage: bool = False,
) -> LoadResult:
    """Load a checkpoint state dict (HF keys) into adapter ``adapter_name`` of ``model``.

    Raises ShapeMismatch on the first tensor whose shape differs and CheckpointError when the file
    lacks a tensor the adapter has or holds one it cannot place. ``low_cpu_mem_usage`` (HF PEFT's
    hint to skip initializing weights that are about to be overwritten) changes nothing here: the
    adapter's tensors already exist at their final size and are filled in place.
    """
    if ignore_mismatched_sizes:
        raise InvalidConfig(
            "adapterlab does not load adapters with mismatched tensor shapes; load the adapter on the base "
            "model it was trained for, or drop ignore_mismatched_sizes"
        )
    if adapter_name not in model.peft_config:
        raise AdapterNotFound(f"no adapter named {adapter_name!r}; loaded: {', '.join(model.peft_config)}")
    remaining = dict(peft_model_state_dict)
    save_targets: dict[str, torch.Tensor] = {}
    for path, tensors in _modules_to_save(model, adapter_name):
        for key, target in tensors.items():
            if f"{path}.{key}" in remaining:
                save_targets[f"{path}.{key}"] = target
    load_into_model(save_targets, {k: remaining.pop(k) for k in save_targets}, required=list(save_targets))
    model.method_for(adapter_name).load_adapter_state_dict(model, remaining, adapter_name)
    return LoadResult(missing_keys=[], unexpected_keys=[])


@torch.no_grad()
def load_into_model(
    targets: dict[str, torch.Tensor | None], state_dict: dict[str, torch.Tensor], required: list[str]
) -> None:
    """Copy ``state_dict`` into the ``targets`` tensors (same keys), checking every shape first."""
    missing = [key for key in required if key not in state_dict]
    if missing:
        raise CheckpointError(
            f"the adapter file lacks {len(missing)} tensor(s) its config needs, first {missing[0]!r}; "
            f"the file does not belong to this config (re-save the adapter)"
        )
    unplaced = [key for key in state_dict if targets.get(key) is None]
    if unplaced:
        raise CheckpointError(
            f"the adapter file holds {unplaced[0]!r}, which matches nothing in the model; "
            f"the adapter was made for another base model or config"
        )
    for key, value in state_dict.items():
        target = targets[key]
        if target.shape != value.shape:
            raise ShapeMismatch(
                f"size mismatch for {key}: checkpoint shape {tuple(value.shape)} != model shape "
                f"{tuple(target.shape)}; the adapter was trained on a base model with other dimensions"
            )
    for key, value in state_dict.items():
        target = targets[key]
        if target.is_meta:
            continue
        target.copy_(value.to(device=target.device, dtype=target.dtype))


def save_adapters(
    peft_model: PeftModel,
    save_directory: str | os.PathLike[str],
    selected_adapters: list[str] | None = None,
    save_embedding_layers: str | bool = "auto",
    safe_serialization: bool = True,
    convert: Callable[[dict[str, torch.Tensor], PeftConfig], tuple[dict[str, torch.Tensor], PeftConfig]]
    | None = None,
) -> None:
    """Write each selected adapter (default: all) in HF PEFT's folder layout.

    ``convert`` maps each adapter's tensors and config to what is written instead (PiSSA/OLoRA saved
    as a plain LoRA: :mod:`adapterlab.tuners.lora.initial_conversion`).

    ``safe_serialization=False`` writes the legacy ``adapter_model.bin`` (a pickle holding only a dict of
    tensors, which readers load with ``torch.load(weights_only=True)``), for tools that need it.
    """

    folder = Path(save_directory)
    if folder.exists() and not folder.is_dir():
        raise CheckpointError(f"{folder} is a file; save_pretrained needs a folder path")
    names = list(peft_model.peft_config) if selected_adapters is None else list(selected_adapters)
    for name in names:
        if name not in peft_model.peft_config:
            raise AdapterNotFound(
                f"no adapter named {name!r} to save; loaded: {', '.join(peft_model.peft_config)}"
            )
    for name in names:
        tensors = {
            k: v.contiguous().clone().cpu()
            for k, v in get_peft_model_state_dict(
                peft_model, adapter_name=name, save_embedding_layers=save_embedding_layers
            ).items()
        }
        config = peft_model.peft_config[name]
        if convert is not None:
            tensors, config = convert(tensors, config)
        target = folder if name == "default" else folder / name
        target.mkdir(parents=True, exist_ok=True)
        if safe_serialization:
            write_atomically(target / SAFETENSORS_WEIGHTS_NAME, _safetensors_bytes(tensors))
        else:
            write_atomically(target / WEIGHTS_NAME, _pickle_bytes(tensors))
        saved_mode = config.inference_mode
        config.inference_mode = True  # a saved adapter loads frozen unless asked otherwise
        try:
            config.save_pretrained(target)
        finally:
            config.inference_mode = saved_mode


def _safetensors_bytes(tensors: dict[str, torch.Tensor]) -> bytes:
    from safetensors.torch import save

    return save(tensors, metadata={"format": "pt"})


def _pickle_bytes(tensors: dict[str, torch.Tensor]) -> bytes:
    buffer = io.BytesIO()
    torch.save(tensors, buffer)
    return buffer.getvalue()


def remap_keys(
    weights: dict[str, torch.Tensor], key_mapping: dict[str, str] | None
) -> dict[str, torch.Tensor]:
    """HF PEFT's ``key_mapping``: regex -> replacement, applied to each key without its
    ``base_model.model.`` prefix; the first pattern that matches a key renames it."""
    if not key_mapping:
        return weights
    prefix = MODEL_PREFIX
    result = {}
    for key, tensor in weights.items():
        bare = key.removeprefix(prefix)
        for pattern, replacement in key_mapping.items():
            bare, count = re.subn(pattern, replacement, bare)
            if count:
                break
        result[prefix + bare if key.startswith(prefix) else bare] = tensor
    return result


def load_peft_weights(
    model_id: str | os.PathLike[str],
    device: str | None = None,
    key_mapping: dict[str, str] | None = None,
    **hf_hub_download_kwargs: Any,
) -> dict[str, torch.Tensor]:
    """HF PEFT's: a saved adapter's tensors (a folder, or a Hub repo id) read onto ``device``, under
    the file's keys (renamed by ``key_mapping``); ``subfolder`` and the Hub options as for
    ``PeftModel.from_pretrained``."""
    subfolder = hf_hub_download_kwargs.pop("subfolder", None)
    return read_adapter_weights(hub.locate(model_id, subfolder, hf_hub_download_kwargs), device, key_mapping)


def read_adapter_weights(
    folder: str | os.PathLike[str],
    device: str | torch.device | None = None,
    key_mapping: dict[str, str] | None = None,
) -> dict[str, torch.Tensor]:
    """The tensors of ``adapter_model.safetensors`` (or a legacy ``adapter_model.bin``) in ``folder``,
    read onto ``device`` (default CPU), under their keys renamed by ``key_mapping``."""
    return remap_keys(_read_weight_file(Path(folder), device or "cpu"), key_mapping)


def _read_weight_file(folder: Path, device: str | torch.device) -> dict[str, torch.Tensor]:
    path = folder / SAFETENSORS_WEIGHTS_NAME
    if path.is_file():
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device=str(device))
        except Exception as exc:  # safetensors raises its own error types for corrupt files
            raise CheckpointError(
                f"{path} is corrupt or not a safetensors file ({exc}); re-save the adapter"
            ) from None
    legacy = folder / WEIGHTS_NAME
    if legacy.is_file():
        return _read_legacy_pickle(legacy, device)
    raise CheckpointError(
        f"no {SAFETENSORS_WEIGHTS_NAME} (or {WEIGHTS_NAME}) in {folder}; point at a folder written by "
        "save_pretrained"
    )


def _read_legacy_pickle(path: Path, device: str | torch.device) -> dict[str, torch.Tensor]:
    # A .bin is a pickle, and unpickling can run arbitrary code: only torch's tensor-only loader may read it.
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"refusing {path}: it is a pickle that would run code or load non-tensor objects "
            f"({summarize(exc, first_line=True, limit=None)}); convert it to safetensors from a trusted "
            "source"
        ) from None
    except Exception as exc:
        raise CheckpointError(f"{path} is corrupt ({exc.__class__.__name__}); re-save the adapter") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} does not hold a dict of tensors; re-save the adapter")
    return state
