"""``LoraModel``: puts LoRA layers into a transformers model and manages the adapters on them.

The transformers model stays reachable as ``.model`` (so checkpoint keys read
``base_model.model.<module path>.lora_A.weight``); each targeted module is replaced in place by a
:mod:`~adapterlab.tuners.lora.layer` wrapper holding the original as ``base_layer``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from adapterlab.errors import AdapterNotFound, InvalidConfig
from adapterlab.tuners.lora import kasa, variants
from adapterlab.tuners.lora.config import DEFAULT_TARGET_MODULES, LoraConfig
from adapterlab.tuners.lora.layer import LoraLayer
from adapterlab.tuners.lora.layer_types import check_adaptable, make_lora_layer
from adapterlab.tuners.lora.target_parameters import (
    parameter_targets,
    parameters_settle_targets,
    wrap_parameters,
)
from adapterlab.tuners.lora.trainable_tokens import TrainableTokensWrapper, attach_trainable_tokens
from adapterlab.tuners.lora.weight_tying import (
    is_tied_target,
    plan_weight_tying,
    tie_lora,
    tie_modules_to_save,
)
from adapterlab.tuners.minimal_targets import MIN_TARGET_MODULES_FOR_OPTIMIZATION, find_minimal_target_modules
from adapterlab.tuners.mixed_batch import adapter_layers
from adapterlab.tuners.modules_to_save import ModulesToSaveWrapper
from adapterlab.tuners.targeting import (
    check_all_targets_found,
    is_excluded,
    is_target,
    pattern_value,
    resolve_target_modules,
    warn_unused_excludes,
)
from adapterlab.tuners.tuners_utils import BaseTuner


class LoraModel(BaseTuner, nn.Module):
    prefix = "lora_"

    def __init__(self, model: nn.Module, peft_config: dict[str, Any]) -> None:
        super().__init__()
        self.model = model
        self.peft_config = peft_config  # shared with the PeftModel: adapter name -> config
        self.active_adapters: list[str] = []
        self.targeted_module_names: list[str] = []  # every module adapted so far, in order (HF PEFT's)
        self.targeted_parameter_names: list[str] = []  # every parameter adapted so far (target_parameters)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.model(*args, **kwargs)

    def lora_layers(self) -> list[LoraLayer]:
        return [m for m in self.model.modules() if isinstance(m, LoraLayer)]

    def adapter_aware_layers(self) -> list[nn.Module]:
        return adapter_layers(self.model)

    def token_layers(self) -> list[TrainableTokensWrapper]:
        return [m for m in self.model.modules() if isinstance(m, TrainableTokensWrapper)]

    # -- adding and removing adapters -------------------------------------------------------

    def inject_adapter(self, config: LoraConfig, adapter_name: str, low_cpu_mem_usage: bool = False) -> None:
        """Create adapter ``adapter_name`` on every module (and parameter) ``config`` targets; with
        ``low_cpu_mem_usage`` its LoRA tensors end on the meta device, for a load to fill (HF PEFT's
        option)."""
        plan_weight_tying(self.model, config)
        targets = self._module_targets(config)
        kasa.check_not_mixed(self.peft_config, config)
        inside_lora = {f"{name}." for name, m in self.model.named_modules() if isinstance(m, LoraLayer)}
        candidates = {
            key: module
            for key, module in self.model.named_modules()
            if key and not any(key.startswith(prefix) for prefix in inside_lora)
        }
        tied = [key for key in candidates if is_tied_target(config, key)]  # follow the embedding: last
        matched = [key for key in candidates if is_target(config, targets, key) and key not in tied]
        excluded = [key for key in candidates if is_excluded(config, key)]
        parameters = parameter_targets(self.model, config, adapter_name, self.peft_config, matched + tied)
        if not parameters_settle_targets(config, targets, matched + tied, parameters):
            check_all_targets_found(targets, candidates, matched, excluded)  # before any change to the model
        warn_unused_excludes(config, list(candidates))
        for key in matched + tied:
            check_adaptable(key, candidates[key], adapter_options(config, key))
            variants.check(config, key, candidates[key], pattern_value(config.rank_pattern, key, config.r))
        adapted = []
        for key in matched + tied:
            adapted.append(self._adapt_module(key, config, adapter_name))
            if key not in self.targeted_module_names:
                self.targeted_module_names.append(key)
        for key in tied:
            tie_lora(self.model.get_submodule(key), self.model.get_input_embeddings(), adapter_name)
        if getattr(config, "modules_to_tie", None):
            tie_modules_to_save(self.model, config, adapter_name)
        for key, layer in wrap_parameters(self.model, parameters):
            layer.add_adapter(adapter_name, **adapter_options(config, key))
            adapted.append(layer)
        for target in parameters:
            if target.key not in self.targeted_parameter_names:
                self.targeted_parameter_names.append(target.key)
        if config.trainable_token_indices:
            attach_trainable_tokens(self.model, config.trainable_token_indices, adapter_name)
        if isinstance(targets, list) and len(targets) >= MIN_TARGET_MODULES_FOR_OPTIMIZATION:
            # a long list of full names is saved as the few suffixes that select the same modules
            chosen = set(matched)
            others = [key for key in candidates if key not in chosen]
            config.target_modules = sorted(find_minimal_target_modules(chosen, others))
        if low_cpu_mem_usage:
            for layer in adapted:
                layer.release_to_meta(adapter_name)

    def _module_targets(self, config: LoraConfig) -> list[str] | str:
        """The explicit target_modules of ``config`` (recorded in it), from defaults if it has none."""
        if config.target_modules is None and config.target_parameters:
            if not hasattr(self.model, "config"):
                # parameters only, on a plain torch module (no model_type, so no defaults, as in HF PEFT);
                # the config keeps target_modules=None, as HF PEFT saves it
                return []
            model_type = getattr(self.model.config, "model_type", None)
            if model_type not in DEFAULT_TARGET_MODULES:
                raise InvalidConfig(
                    f"no default target_modules for model_type {model_type!r}; with target_parameters set "
                    "target_modules=[] to adapt the parameters only, or name the modules to adapt too"
                )
        targets = resolve_target_modules(
            config.target_modules, self.model, DEFAULT_TARGET_MODULES, config.task_type
        )
        config.target_modules = targets
        return targets

    def _adapt_module(self, key: str, config: LoraConfig, adapter_name: str) -> LoraLayer:
        module = self.model.get_submodule(key)
        if not isinstance(module, LoraLayer):
            module = make_lora_layer(key, module)
            parent_name, _, child_name = key.rpartition(".")
            setattr(self.model.get_submodule(parent_name), child_name, module)
            if module.fan_in_fan_out:
                config.fan_in_fan_out = True  # HF PEFT records that Conv1D layers store (in, out)
        module.add_adapter(adapter_name, **adapter_options(config, key))
        variants.attach(module, adapter_name, config, key)
        return module

    def delete_adapter(self, adapter_name: str) -> None:
        for layer in self.adapter_aware_layers():
            if adapter_name in getattr(
                layer, "r", getattr(layer, "modules_to_save", None) or layer.adapter_names
            ):
                layer.delete_adapter(adapter_name)

    # -- which adapters run -----------------------------------------------------------------

    def set_adapter(self, adapter_names: str | list[str]) -> None:
        """Make ``adapter_names`` the active adapter(s); only active adapters train."""
        names = [adapter_names] if isinstance(adapter_names, str) else list(adapter_names)
        self._check_one_copy_each(names)
        self.active_adapters = names
        for layer in self.lora_layers():
            # model-wide, as in HF PEFT: a layer lacking an active adapter lists it and skips it in forward
            layer.active_adapters = list(names)
        for tokens in self.token_layers():
            tokens.active_adapters = [n for n in names if n in tokens.adapter_names]
        for module in self.model.modules():
            if isinstance(module, ModulesToSaveWrapper):  # each runs the one active adapter it holds
                module.set_adapter(next((n for n in names if n in module.modules_to_save), None))
        self.refresh_trainable()

    def _check_one_copy_each(self, names: list[str]) -> None:
        """Refuse active adapters that both hold a full copy of one module (modules_to_save) or its
        token rows (trainable tokens): only one copy can run, so which one would be arbitrary."""
        for path, module in self.model.named_modules():
            if isinstance(module, ModulesToSaveWrapper):
                held = [n for n in names if n in module.modules_to_save]
            elif isinstance(module, TrainableTokensWrapper):
                held = [n for n in names if n in module.adapter_names]
            else:
                continue
            if len(held) > 1:
                raise InvalidConfig(
                    f"Only one adapter can be set at a time for {type(module).__name__}: {path!r} has its "
                    f"own copy in each of {', '.join(map(repr, held))}; activate only one of them"
                )

    def refresh_trainable(self) -> None:
        """Base frozen; active adapters (not in inference mode) and the chosen biases train."""
        trainable = {n for n in self.active_adapters if not self.peft_config[n].inference_mode}
        self.model.requires_grad_(False)  # adapter tensors are switched back on below, found by structure
        for layer in self.lora_layers():
            for adapter in layer.adapter_names:
                layer.set_requires_grad([adapter], adapter in trainable)
        for tokens in self.token_layers():
            for adapter, rows in tokens.token_adapter.trainable_tokens_delta.items():
                rows.requires_grad_(adapter in trainable)
        for module in self.model.modules():
            if (
                isinstance(module, ModulesToSaveWrapper)
                and module.active_adapter in trainable
                and not module.disable_adapters
            ):
                module.modules_to_save[module.active_adapter].requires_grad_(True)
        for config_name in trainable:
            self._train_biases(self.peft_config[config_name].bias)

    def set_requires_grad(self, adapter_names: str | list[str], requires_grad: bool = True) -> None:
        """Switch gradients of the named adapters' tensors (LoRA, modules_to_save copies, token rows) on
        or off, whichever adapter is active (HF PEFT's); the next set_adapter decides them afresh."""
        names = [adapter_names] if isinstance(adapter_names, str) else list(adapter_names)
        self._check_names(names)
        for layer in self.model.modules():
            if isinstance(layer, LoraLayer):
                layer.set_requires_grad([n for n in names if n in layer.r], requires_grad)
                continue
            if isinstance(layer, ModulesToSaveWrapper):
                containers = [getattr(layer, attr) for attr in layer.adapter_layer_names]
            elif isinstance(layer, TrainableTokensWrapper):
                containers = [layer.token_adapter.trainable_tokens_delta]
            else:
                continue
            for container in containers:
                for name in names:
                    if name in container:
                        container[name].requires_grad_(requires_grad)

    def _train_biases(self, bias: str) -> None:
        if bias == "all":
            for name, param in self.model.named_parameters():
                if name == "bias" or name.endswith(".bias"):
                    param.requires_grad_(True)
        elif bias == "lora_only":
            for layer in self.lora_layers():
                if getattr(layer.base_layer, "bias", None) is not None:
                    layer.base_layer.bias.requires_grad_(True)

    @contextmanager
    def disable_adapter(self) -> Iterator[None]:
        layers = self.adapter_aware_layers()
        for layer in layers:
            layer.disable_adapters = True
        try:
            yield
        finally:
            for layer in layers:
                layer.disable_adapters = False

    def _get_kasa_loss(self, adapter_names: str | list[str] | None = None) -> torch.Tensor | float:
        """KaSA's regularizers (adapterlab.tuners.lora.kasa) over the KaSA layers of ``adapter_names``
        (default: the active adapters), for the training loop to add to its loss; 0.0 if there are none.
        HF PEFT's name, private there too."""
        names = [adapter_names] if isinstance(adapter_names, str) else adapter_names or self.active_adapters
        return kasa.model_loss(self.model, self.peft_config, names)

    # -- merging ----------------------------------------------------------------------------

    def merge_adapter(self, adapter_names: list[str] | None = None, safe_merge: bool = False) -> None:
        """Add the adapters' updates into the base weights (they stay removable with unmerge_adapter)."""
        self._check_names(adapter_names)
        layers = self.lora_layers()
        self._check_mergeable(layers, adapter_names)
        already = [len(layer.merged_adapters) for layer in layers]
        try:
            for layer in layers:
                layer.merge(safe_merge=safe_merge, adapter_names=adapter_names)
        except Exception:
            for layer, keep in zip(layers, already, strict=True):  # all or nothing
                layer.unmerge(keep)
            raise
        for tokens in self.token_layers():
            tokens.merge(adapter_names)

    def unmerge_adapter(self) -> None:
        for layer in [*self.lora_layers(), *self.token_layers()]:
            layer.unmerge()

    def merge_and_unload(
        self, progressbar: bool = False, safe_merge: bool = False, adapter_names: list[str] | None = None
    ) -> nn.Module:
        """Merge the adapters into the base weights and return the plain transformers model."""
        self._check_names(adapter_names)
        return self._unload(merge=True, safe_merge=safe_merge, adapter_names=adapter_names)

    def unload(self) -> nn.Module:
        """Remove every LoRA layer without merging: the base model as it was."""
        return self._unload(merge=False)

    def _unload(
        self, merge: bool, safe_merge: bool = False, adapter_names: list[str] | None = None
    ) -> nn.Module:
        if merge:
            self._check_mergeable(self.lora_layers(), adapter_names)
        # parents found up front, by object: unloading a wrapper moves the paths of what is inside it
        places = {
            id(child): (parent, name)
            for parent in self.model.modules()
            for name, child in parent.named_children()
        }
        for module in list(self.model.modules()):
            if isinstance(module, LoraLayer):
                replacement = module.unloaded(merge, safe_merge, adapter_names)
            elif isinstance(module, TrainableTokensWrapper):
                if merge:
                    module.merge(adapter_names)
                else:
                    module.unmerge()
                replacement = module.base_layer
            elif isinstance(module, ModulesToSaveWrapper):
                replacement = module.active_module  # the trained head is kept either way, as in HF PEFT
            else:
                continue
            parent, name = places[id(module)]
            setattr(parent, name, replacement)
        return self.model

    @staticmethod
    def _check_mergeable(layers: list[LoraLayer], adapter_names: list[str] | None) -> None:
        """Every layer is checked before the first one is touched: merging is all or nothing."""
        for layer in layers:
            layer.check_mergeable(layer.active_adapters if adapter_names is None else adapter_names)

    def _check_names(self, adapter_names: list[str] | None) -> None:
        for name in adapter_names or []:
            if name not in self.peft_config:
                raise AdapterNotFound(f"no adapter named {name!r}; loaded: {', '.join(self.peft_config)}")

    @torch.no_grad()
    def add_weighted_adapter(
        self,
        adapters: list[str],
        weights: list[float],
        adapter_name: str,
        combination_type: str = "svd",
        svd_rank: int | None = None,
    ) -> None:
        """Combine existing adapters into a new one (see adapterlab.tuners.lora.merge)."""
        from adapterlab.tuners.lora.merge import add_weighted_adapter

        add_weighted_adapter(self, adapters, weights, adapter_name, combination_type, svd_rank)


def adapter_options(config: LoraConfig, key: str) -> dict[str, Any]:
    """What ``add_adapter`` gets for the module or parameter named ``key``."""
    return {
        "r": pattern_value(config.rank_pattern, key, config.r),
        "alpha": pattern_value(config.alpha_pattern, key, config.lora_alpha),
        "dropout": config.lora_dropout,
        "use_rslora": config.use_rslora,
        "init_lora_weights": config.init_lora_weights,
        "use_dora": config.use_dora,
        "lora_bias": config.lora_bias,
    }
