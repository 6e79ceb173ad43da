"""``modules_to_save``: modules trained in full next to the adapter (task heads such as ``classifier``).

The original module stays, frozen, as ``original_module``; each adapter gets its own trainable copy
in ``modules_to_save[adapter_name]``. Checkpoints store the copy under the module's plain path
(``base_model.model.classifier.weight``), as Hugging Face PEFT does. Works with every method.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from adapterlab.errors import InvalidConfig, TargetModuleNotFound, UnsupportedModule

# modules that only hold others: they have no forward of their own to wrap
CONTAINERS = (nn.ModuleDict, nn.ModuleList, nn.ParameterDict, nn.ParameterList)


class ModulesToSaveWrapper(nn.Module):
    # HF PEFT's names for the container of per-adapter copies (as on adapter layers)
    adapter_layer_names = ("modules_to_save",)
    other_param_names: tuple[str, ...] = ()  # no other per-adapter state

    def __init__(self, module: nn.Module, adapter_name: str) -> None:
        super().__init__()
        self.original_module = module
        self.modules_to_save = nn.ModuleDict()
        self.active_adapter: str | None = None
        self.disable_adapters = False
        self.batch_plan = None  # a mixed_batch.BatchPlan while a mixed batch runs
        self.add_adapter(adapter_name)

    def add_adapter(self, adapter_name: str) -> None:
        self.original_module.requires_grad_(False)
        if adapter_name not in self.modules_to_save:
            self.modules_to_save[adapter_name] = copy.deepcopy(self.original_module)

    def set_adapter(self, adapter_name: str | None, trainable: bool = True) -> None:
        """Use ``adapter_name``'s copy (None: the original); only that copy trains, if ``trainable``."""
        self.active_adapter = adapter_name if adapter_name in self.modules_to_save else None
        self.original_module.requires_grad_(False)
        for name, module in self.modules_to_save.items():
            module.requires_grad_(trainable and name == self.active_adapter)

    def delete_adapter(self, adapter_name: str) -> None:
        del self.modules_to_save[adapter_name]
        if self.active_adapter == adapter_name:
            self.active_adapter = None

    def __getattr__(self, name: str) -> Any:
        """A name the wrapper lacks (``weight``, ``out_features``) is the active copy's, as in HF PEFT."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            if (
                name.startswith("__")
                or "_modules" not in self.__dict__
                or name in ("original_module", "modules_to_save", "_active_adapter")
            ):
                raise
            active = self.active_adapter
            if active is not None and not self.disable_adapters and active not in self.modules_to_save:
                raise AttributeError(
                    f"'{type(self).__name__}' object has no attribute '{name}': its active adapter "
                    f"{active!r} does not exist here"
                ) from None
            return getattr(self.active_module, name)

    @property
    def active_adapter(self) -> str | None:
        """The adapter whose copy runs (None: the original); HF PEFT stores it as ``_active_adapter``,
        which its tests and some scripts set directly."""
        return self._active_adapter

    @active_adapter.setter
    def active_adapter(self, name: str | None) -> None:
        self._active_adapter = name

    @property
    def active_adapters(self) -> list[str]:
        return [] if self.active_adapter is None else [self.active_adapter]

    @property
    def active_module(self) -> nn.Module:
        if self.disable_adapters or self.active_adapter is None:
            return self.original_module
        return self.modules_to_save[self.active_adapter]

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        # the wrapped module's own signature: it may be called with keyword arguments only
        if self.batch_plan is not None and not self.disable_adapters:
            return self._mixed_batch_forward(args, kwargs)
        return self.active_module(*args, **kwargs)

    def _mixed_batch_forward(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor:
        """Each row group through its adapter's copy. The batch is the first tensor argument; the
        rows are cut from it alone, so only modules whose other arguments are not per-row work."""
        if args:
            batch_key: int | str = 0
            x = args[0]
        else:
            batch_key, x = next(
                ((k, v) for k, v in kwargs.items() if isinstance(v, torch.Tensor)), (None, None)
            )
        if not isinstance(x, torch.Tensor):
            raise InvalidConfig(
                "adapter_names (mixed batches) needs a tensor input to "
                f"{type(self.original_module).__name__}; run one adapter per call instead"
            )

        def run(module: nn.Module, batch: torch.Tensor) -> torch.Tensor:
            if batch_key == 0:
                out = module(batch, *args[1:], **kwargs)
            else:
                out = module(*args, **{**kwargs, batch_key: batch})
            if not isinstance(out, torch.Tensor):
                raise InvalidConfig(
                    "adapter_names (mixed batches) supports modules_to_save modules that return one "
                    f"tensor; {type(self.original_module).__name__} returns {type(out).__name__}: run one "
                    "adapter per call"
                )
            return out

        result = run(self.original_module, x)
        for name, rows in self.batch_plan.rows_for(self.modules_to_save, x):
            result = result.index_copy(0, rows, run(self.modules_to_save[name], x.index_select(0, rows)))
        return result


def attach_modules_to_save(
    model: nn.Module, module_names: list[str] | None, adapter_name: str, optional: tuple[str, ...] = ()
) -> None:
    """Give ``adapter_name`` a copy of every module whose path ends with one of ``module_names`` (HF's rule).

    The copies stay inactive until ``set_adapter`` is called on the wrappers. ``optional``: names that
    may match nothing (the task heads a PeftModelFor... class adds, which a model may lack).
    """
    if not module_names:
        return
    _refuse_containers(model, module_names)
    found = set()
    for key, module in list(model.named_modules(remove_duplicate=False)):
        name = next((n for n in module_names if key.endswith(n)), None)
        if name is None or ".original_module" in key or ".modules_to_save." in key:
            continue
        parent_name, _, child_name = key.rpartition(".")
        parent = model.get_submodule(parent_name)
        if isinstance(module, ModulesToSaveWrapper):
            module.add_adapter(adapter_name)
        elif not isinstance(parent, ModulesToSaveWrapper):
            module = ModulesToSaveWrapper(module, adapter_name)
            setattr(parent, child_name, module)
        else:
            continue
        found.add(name)
    missing = [n for n in module_names if n not in found]
    # Task heads are added for every model of a task type, under each name a head may have
    # (classifier / score); only names the user gave must exist.
    if missing and not found and any(name not in optional for name in module_names):
        raise TargetModuleNotFound(
            f"modules_to_save {', '.join(map(repr, missing))} not found in the base model; "
            f"give module names that exist, e.g. the task head"
        )


def _refuse_containers(model: nn.Module, module_names: list[str]) -> None:
    """Raise UnsupportedModule, before anything is wrapped, if a name selects a container module."""
    for key, module in model.named_modules():
        if isinstance(module, CONTAINERS) and any(key.endswith(name) for name in module_names):
            raise UnsupportedModule(
                f"modules_to_save cannot be applied to modules of type {type(module).__name__} ({key!r}): it "
                "only holds other modules; list the modules inside it instead"
            )
