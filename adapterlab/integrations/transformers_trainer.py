"""The transformers ``Trainer`` treats an adapterlab ``PeftModel`` as it treats HF PEFT's.

A PEFT tutorial script runs unchanged with ``from adapterlab import ...``: default
``TrainingArguments``, ``compute_metrics``, adapter-only checkpoints, ``resume_from_checkpoint`` and
``load_best_model_at_end``. The Trainer special-cases PEFT models in two ways, and only knows HF
PEFT's classes (and nothing at all when HF ``peft`` is not installed), so it has to be told:

1. The predicate ``_is_peft_model(model)`` (``transformers.trainer_utils`` in 5.x, ``transformers.trainer``
   in 4.x; 5.x modules import it by name) decides, for a PEFT model, to read the *base* model:
   the dataset columns to keep (its ``forward`` signature, so ``remove_unused_columns`` keeps
   ``labels`` and ``token_type_ids``), ``label_names`` (``labels`` in its ``forward``),
   ``can_return_loss``, ``model_accepts_loss_kwargs`` (whether ``num_items_in_batch`` is passed to
   ``forward``), the label-smoothing shift for causal LMs, NEFTune's embedding layer, and that a
   quantized base with adapters may be trained. We wrap it: adapterlab's ``PeftModel`` answers True,
   every other model gets transformers' own answer.
2. ``Trainer._save``, ``_load_from_checkpoint`` and ``_load_best_model`` test
   ``isinstance(model, peft.PeftModel)`` or call ``model.load_adapter(folder, <existing name>)``,
   which adapterlab refuses (an existing name is an error). We wrap the three methods: for an
   adapterlab model a checkpoint is ``save_pretrained``'s folder (``adapter_config.json`` +
   ``adapter_model.safetensors``, other adapters in sub-folders; no ``model.safetensors``), and
   resuming or reloading the best checkpoint copies each adapter's tensors back *in place* (the
   optimizer's parameters stay the same objects). Any other model runs transformers' own code.

Both are installed the moment ``transformers.trainer`` is imported (a one-shot import hook set up by
``import adapterlab``), or at once if it already was; importing adapterlab alone imports neither
torch nor transformers. Single-process and DDP training are covered; under FSDP and DeepSpeed,
which shard the parameters, the Trainer's own checkpointing runs unchanged (full state, untested).
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import os
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

TRAINER_MODULE = "transformers.trainer"
_MARK = "__adapterlab_trainer_integration__"  # set on everything we wrapped, so wrapping happens once


def is_adapterlab_model(model: object) -> bool:
    """True for an adapterlab ``PeftModel`` (without importing torch when none can exist yet)."""
    peft_model = sys.modules.get("adapterlab.peft_model")
    return peft_model is not None and isinstance(model, peft_model.PeftModel)


# -- 1. the predicate -------------------------------------------------------------------------


def _knowing_adapterlab(is_peft_model: Callable[[object], bool]) -> Callable[[object], bool]:
    @functools.wraps(is_peft_model)
    def _is_peft_model(model: object) -> bool:
        return is_adapterlab_model(model) or is_peft_model(model)

    setattr(_is_peft_model, _MARK, True)
    return _is_peft_model


def _teach_predicate() -> None:
    # Rebind it wherever a transformers module holds it: the defining module (so later
    # ``from ..trainer_utils import _is_peft_model`` gets ours) and each that imported it by name.
    for name, module in list(sys.modules.items()):
        if not name.startswith("transformers") or module is None:
            continue
        predicate = getattr(module, "_is_peft_model", None)
        if callable(predicate) and not getattr(predicate, _MARK, False):
            module._is_peft_model = _knowing_adapterlab(predicate)


# -- 2. checkpoints ---------------------------------------------------------------------------


def _adapterlab_model(trainer: Any, model: Any = None) -> Any:
    """The adapterlab PeftModel the trainer trains (under DDP / torch.compile wrappers), or None."""
    model = trainer.model if model is None else model
    model = trainer.accelerator.unwrap_model(model)
    model = getattr(model, "_orig_mod", model)  # torch.compile
    return model if is_adapterlab_model(model) else None


def save_checkpoint(trainer: Any, model: Any, output_dir: str | None, state_dict: dict | None) -> None:
    """``Trainer._save`` for an adapterlab model: the adapters, the tokenizer and the training args."""
    from adapterlab.errors import InvalidConfig

    if state_dict is not None:
        raise InvalidConfig(
            "Trainer._save was handed a state_dict; adapterlab checkpoints the live adapter only: "
            "call trainer.save_model() without one"
        )
    if not trainer.args.should_save:
        return
    output_dir = output_dir if output_dir is not None else trainer.args.output_dir
    os.makedirs(output_dir, exist_ok=True)
    model.save_pretrained(output_dir)
    # what Trainer._save writes next to any model, so a checkpoint folder looks as it always does
    tokenizer = getattr(trainer, "processing_class", None)
    if tokenizer is None:
        tokenizer = getattr(trainer.data_collator, "tokenizer", None)
    if tokenizer is not None:
        tokenizer.save_pretrained(output_dir)
    import torch
    from transformers.trainer import TRAINING_ARGS_NAME

    torch.save(trainer.args, os.path.join(output_dir, TRAINING_ARGS_NAME))


def load_checkpoint(model: Any, folder: str | os.PathLike[str]) -> None:
    """Copy every adapter of ``model`` back from a checkpoint folder ``save_pretrained`` wrote, in place.

    The adapter ``default`` lies in the folder itself, any other in ``<folder>/<name>/``; the
    tensors go into the existing parameters, so the optimizer and ``requires_grad`` are untouched.
    """
    from adapterlab.checkpoint import read_adapter_weights, set_peft_model_state_dict
    from adapterlab.errors import CheckpointError

    root = os.fspath(folder)
    if not os.path.isdir(root):
        raise CheckpointError(
            f"no checkpoint folder at {root}; pass a checkpoint-<step> folder the Trainer wrote"
        )
    # every file read before any adapter changes, so a missing one leaves the model as it was
    weights = {
        name: read_adapter_weights(root if name == "default" else os.path.join(root, name))
        for name in model.peft_config
    }
    for name, tensors in weights.items():
        set_peft_model_state_dict(model, tensors, adapter_name=name)


def _with_adapterlab(
    method: Callable[..., Any], ours: Callable[..., Any], *, model_argument: bool = False
) -> Callable[..., Any]:
    """``method`` of Trainer, running ``ours(trainer, model, *args)`` when the model is adapterlab's."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        explicit = kwargs.get("model", args[1] if len(args) > 1 else None) if model_argument else None
        model = _adapterlab_model(self, explicit)
        # FSDP and DeepSpeed shard the parameters: their own checkpointing is the one that can gather them
        sharded = getattr(self, "is_deepspeed_enabled", False) or getattr(self, "is_fsdp_enabled", False)
        if model is None or sharded:
            return method(self, *args, **kwargs)
        return ours(self, model, *args, **kwargs)

    setattr(wrapper, _MARK, True)
    return wrapper


def _save(trainer: Any, model: Any, output_dir: str | None = None, state_dict: dict | None = None) -> None:
    save_checkpoint(trainer, model, output_dir, state_dict)


def _load_from_checkpoint(trainer: Any, model: Any, resume_from_checkpoint: str, *_: Any, **__: Any) -> None:
    load_checkpoint(model, resume_from_checkpoint)


def _load_best_model(trainer: Any, model: Any) -> None:
    load_checkpoint(model, trainer.state.best_model_checkpoint)


_CHECKPOINT_METHODS: dict[str, tuple[Callable[..., Any], bool]] = {
    # Trainer method -> (our version, whether the method takes an explicit ``model`` argument)
    "_save": (_save, False),
    "_load_from_checkpoint": (_load_from_checkpoint, True),
    "_load_best_model": (_load_best_model, False),
}


def _teach_trainer(trainer_class: type) -> None:
    for name, (ours, model_argument) in _CHECKPOINT_METHODS.items():
        method = getattr(trainer_class, name, None)
        if method is not None and not getattr(method, _MARK, False):
            setattr(trainer_class, name, _with_adapterlab(method, ours, model_argument=model_argument))


def install() -> None:
    """Teach the (imported) transformers Trainer about adapterlab's models; safe to call again."""
    trainer_module = sys.modules[TRAINER_MODULE]
    _teach_predicate()
    _teach_trainer(trainer_module.Trainer)


# -- when ---------------------------------------------------------------------------------------


class _InstallAfterImport(importlib.abc.MetaPathFinder):
    """Runs :func:`install` right after ``transformers.trainer`` has been imported, then leaves."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != TRAINER_MODULE:
            return None
        sys.meta_path.remove(self)
        spec = next(
            (
                found
                for finder in sys.meta_path
                if hasattr(finder, "find_spec")
                and (found := finder.find_spec(fullname, path, target)) is not None
            ),
            None,
        )
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        loader = spec.loader
        original_exec_module = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            original_exec_module(module)
            install()

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def enable() -> None:
    """Install now if transformers' Trainer is imported, else as soon as it is. Idempotent."""
    if TRAINER_MODULE in sys.modules:
        install()
    elif not any(isinstance(finder, _InstallAfterImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _InstallAfterImport())
