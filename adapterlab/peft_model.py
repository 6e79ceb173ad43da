"""``PeftModel``: a transformers model with one or more adapters, and its task-specific classes.

Method-specific work goes through the method table (:mod:`adapterlab.methods`); this class owns
what every method shares: the adapters' configs, which adapter is active, task heads trained in
full (``modules_to_save``), mixed batches, counting parameters and checkpoints.

Attribute access works as in HF PEFT, which users and libraries rely on: a name that is not an
attribute, parameter or submodule of the ``PeftModel`` itself is looked up on ``base_model`` (the
tuner, e.g. ``LoraModel``; for prompt methods the transformers model) and then on the transformers
model, so ``model.config``, ``model.lin0``, ``model.prefix`` or a custom attribute of the base
model all resolve. That lookup is the one ``__getattr__`` below.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

import adapterlab.checkpoint as checkpoint
import adapterlab.hub as hub
import adapterlab.model_card as model_card
import adapterlab.status as status
from adapterlab.config import PeftConfig
from adapterlab.errors import AdapterExists, AdapterNotFound, InvalidConfig
from adapterlab.hf_format import TASKS, TaskType
from adapterlab.integrations.forward_signature import shows_base_forward_signature
from adapterlab.methods import PeftMethod, get_method
from adapterlab.tuners.mixed_batch import adapter_layers, make_plan, mixed_batch
from adapterlab.tuners.modules_to_save import ModulesToSaveWrapper, attach_modules_to_save
from adapterlab.tuners.tuners_utils import BaseTunerLayer


class PeftModel(nn.Module):
    """A base model plus adapters. Build it with :func:`adapterlab.get_peft_model` or ``from_pretrained``."""

    # task heads trained and saved along with the adapter (names as transformers uses them)
    head_modules: ClassVar[tuple[str, ...]] = ()
    # the task a PeftModelFor... class serves (None on PeftModel itself); its head modules follow
    class_task: ClassVar[TaskType | None] = None
    # True inside ``with model.disable_adapter():``
    adapters_disabled: bool = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "class_task" in cls.__dict__ and "head_modules" not in cls.__dict__:
            cls.head_modules = TASKS[cls.class_task].head_modules

    def __init__(
        self,
        model: nn.Module,
        peft_config: PeftConfig,
        adapter_name: str = "default",
        autocast_adapter_dtype: bool = True,
        low_cpu_mem_usage: bool = False,
    ) -> None:
        super().__init__()
        self.peft_type = peft_config.peft_type
        self.peft_config: dict[str, PeftConfig] = {}
        self.active_adapter: str = adapter_name
        self.base_model = get_method(peft_config.peft_type).wrap_base_model(model, self.peft_config)
        self.add_adapter(adapter_name, peft_config, autocast_adapter_dtype=autocast_adapter_dtype)
        self.set_adapter(adapter_name)

    # -- adapters -------------------------------------------------------------------------

    def method_for(self, adapter_name: str) -> PeftMethod:
        return get_method(self.peft_config[adapter_name].peft_type)

    @property
    def active_peft_config(self) -> PeftConfig:
        return self.peft_config[self.active_adapter]

    @property
    def active_adapters(self) -> list[str]:
        """Every active adapter (LoRA's tuner may run several at once: ``base_model.set_adapter([...])``)."""
        if self._is_tuner():
            return list(self.base_model.active_adapters)
        return [self.active_adapter] if self.active_adapter in self.peft_config else []

    def __getattr__(self, name: str) -> Any:
        """HF PEFT's forwarding: own parameters/submodules first, then ``base_model`` (the tuner, which in
        turn forwards to the transformers model; for prompt methods the transformers model itself)."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            # dunders (copy, pickle) and a model still being built (no base_model yet) forward nothing
            if (
                name.startswith("__")
                or name == "base_model"
                or "base_model" not in self.__dict__.get("_modules", {})
            ):
                raise
        return getattr(self.__dict__["_modules"]["base_model"], name)

    def add_adapter(
        self,
        adapter_name: str,
        peft_config: PeftConfig,
        low_cpu_mem_usage: bool = False,
        autocast_adapter_dtype: bool = True,
    ) -> None:
        """Add a new (inactive, unless it is the first) adapter; ``set_adapter`` switches to it.

        HF PEFT's parameters: with ``autocast_adapter_dtype`` (the default) LoRA weights on a float16
        or bfloat16 base are kept in float32 for stable training; False keeps the base's dtype.
        ``low_cpu_mem_usage`` is a hint HF PEFT uses to skip initializing weights that a load will
        overwrite; adapter weights here are small and always initialized, so it changes nothing.
        """
        if adapter_name in self.peft_config:
            raise AdapterExists(f"Adapter with name {adapter_name!r} already exists; pick another name")
        _check_one_bias_trainer(self.peft_config, peft_config, adapter_name)
        prefix = get_method(peft_config.peft_type).prefix
        if prefix and adapter_name in prefix:
            warnings.warn(
                f"Adapter name '{adapter_name}' should not be contained in the prefix '{prefix}'. HF PEFT "
                "tells such an adapter's tensors apart from others by name and may re-initialize them when "
                "loading it; pick another name",
                UserWarning,
                stacklevel=2,
            )
        if (
            get_method(peft_config.peft_type).is_prompt_learning
            != get_method(self.peft_type).is_prompt_learning
        ):
            raise InvalidConfig(
                f"cannot add a {peft_config.peft_type} adapter to a {self.peft_type} model; "
                f"prompt-learning and LoRA adapters need separate models"
            )
        config = (
            peft_config  # kept, not copied: HF PEFT scripts (and tests) hold on to the object they passed
        )
        if self.head_modules and hasattr(config, "modules_to_save"):
            config.modules_to_save = list(
                dict.fromkeys([*(config.modules_to_save or []), *self.head_modules])
            )
        self.peft_config[adapter_name] = config
        try:
            self.method_for(adapter_name).add_adapter(self, config, adapter_name)
            if not autocast_adapter_dtype:
                self.method_for(adapter_name).keep_base_dtype(self, adapter_name)
            attach_modules_to_save(
                self.get_base_model(),
                getattr(config, "modules_to_save", None),
                adapter_name,
                optional=self.head_modules,
            )
        except Exception:
            del self.peft_config[adapter_name]
            raise
        if adapter_name != self.active_adapter:
            self.set_adapter(self.active_adapter)  # keep the active adapter's training state

    def set_adapter(self, adapter_name: str, inference_mode: bool = False) -> None:
        """Make ``adapter_name`` the adapter forward and generate use (and the only one that trains);
        with ``inference_mode`` (HF PEFT's option) nothing trains, whatever the adapter's config says."""
        if adapter_name not in self.peft_config:
            raise AdapterNotFound(_no_such_adapter(adapter_name, self.peft_config))
        self.method_for(adapter_name).set_adapter(self, adapter_name)
        trainable = not (self.peft_config[adapter_name].inference_mode or inference_mode)
        for module in self.modules():
            if isinstance(module, ModulesToSaveWrapper):
                module.set_adapter(adapter_name, trainable)
        if not trainable:
            for param in self.parameters():  # the base is frozen already; this catches the adapter's tensors
                param.requires_grad_(False)
        self.active_adapter = adapter_name

    def delete_adapter(self, adapter_name: str) -> None:
        if adapter_name not in self.peft_config:
            raise AdapterNotFound(_no_such_adapter(adapter_name, self.peft_config))
        if any(adapter_name in getattr(layer, "merged_adapters", ()) for layer in self.modules()):
            raise InvalidConfig(
                f"Cannot delete adapter(s) {[adapter_name]} while they are merged. Please unmerge them first."
            )
        self.method_for(adapter_name).delete_adapter(self, adapter_name)
        for module in self.modules():
            if isinstance(module, ModulesToSaveWrapper) and adapter_name in module.modules_to_save:
                module.delete_adapter(adapter_name)
        del self.peft_config[adapter_name]
        if self._is_tuner():
            self.base_model.active_adapters = [
                a for a in self.base_model.active_adapters if a != adapter_name
            ]
        if self.active_adapter == adapter_name and self.peft_config:
            self.set_adapter(next(iter(self.peft_config)))

    @contextmanager
    def disable_adapter(self) -> Iterator[None]:
        """Run the base model alone inside the ``with`` block (merged adapters are unmerged).

        Nothing trains inside the block: every parameter that requires grad is switched off, and
        switched back on when the block ends, as HF PEFT does with the adapters' parameters. Layers
        switched off before the block stay off, unless only some were: that mix is warned about and, as
        in HF PEFT, every layer is switched back on at the end.
        """
        layers = adapter_layers(self)
        was_disabled = [layer.disable_adapters for layer in layers]
        if len(set(was_disabled)) > 1:
            was_disabled = [False] * len(layers)
            warnings.warn(
                "The model contains some adapter layers that are enabled and others that are disabled; "
                "this is probably a mistake. Leaving the disable_adapter block will enable all of them.",
                UserWarning,
                stacklevel=3,
            )
        training = [param for param in self.parameters() if param.requires_grad]
        for layer in layers:
            layer.disable_adapters = True
        for param in training:
            param.requires_grad_(False)
        self.adapters_disabled = True
        try:
            yield
        finally:
            for layer, disabled in zip(layers, was_disabled, strict=True):
                layer.disable_adapters = disabled
            for param in training:
                param.requires_grad_(True)
            self.adapters_disabled = False

    @property
    def modules_to_save(self) -> set[str] | None:
        names = {n for c in self.peft_config.values() for n in (getattr(c, "modules_to_save", None) or [])}
        return names or None

    # -- running ----------------------------------------------------------------------------

    @shows_base_forward_signature  # inspect.signature(model.forward) lists the base model's parameters
    def forward(self, *args: Any, adapter_names: list[str] | None = None, **kwargs: Any) -> Any:
        """Run the model; ``adapter_names`` (one per row, ``"__base__"`` for none) mixes adapters in one
        batch."""
        with self._mixed_batch(adapter_names, repeats=1):
            return self._running_method().forward(self, *args, **kwargs)

    def generate(self, *args: Any, adapter_names: list[str] | None = None, **kwargs: Any) -> Any:
        """``transformers`` generation through the adapters (``adapter_names`` as in ``forward``)."""
        generation_config = kwargs.get("generation_config") or getattr(
            self.get_base_model(), "generation_config", None
        )
        beams = kwargs.get("num_beams") or getattr(generation_config, "num_beams", 1) or 1
        returns = (
            kwargs.get("num_return_sequences") or getattr(generation_config, "num_return_sequences", 1) or 1
        )
        with self._mixed_batch(adapter_names, repeats=max(beams, returns)):
            return self._running_method().generate(self, *args, **kwargs)

    def _running_method(self) -> PeftMethod:
        # Inside disable_adapter() every method runs the base model as is: PeftMethod's own
        # forward/generate call base_model directly, and adapter layers are switched off.
        return _BASE_ONLY if self.adapters_disabled else self.method_for(self.active_adapter)

    def _mixed_batch(self, adapter_names: list[str] | None, repeats: int) -> Any:
        if adapter_names is None:
            return nullcontext()
        method = self.method_for(self.active_adapter)
        if method.is_prompt_learning:
            raise InvalidConfig(
                "adapter_names (mixed batches) works with LoRA adapters, not prompt-learning ones"
            )
        if self.training:  # as HF PEFT: mixed batches are for inference (dropout, gradients per row)
            raise InvalidConfig(
                "Cannot pass `adapter_names` when the model is in training mode. Call model.eval() first"
            )
        layers = adapter_layers(self)
        if any(getattr(layer, "merged", False) for layer in layers):
            raise InvalidConfig(
                "Cannot pass `adapter_names` when there are merged adapters, please call `unmerge_adapter` "
                "first."
            )
        if any(getattr(self.peft_config.get(n), "use_dora", False) for n in adapter_names):
            raise InvalidConfig(
                "Cannot pass `adapter_names` when DoRA is enabled. Mixed batches run plain LoRA adapters only"
            )
        return mixed_batch(layers, make_plan(adapter_names, set(self.peft_config), repeats))

    # -- the base model ---------------------------------------------------------------------

    def get_base_model(self) -> nn.Module:
        """The transformers model (with the adapter layers in it)."""
        return getattr(self.base_model, "model", self.base_model) if self._is_tuner() else self.base_model

    def _is_tuner(self) -> bool:
        # the model's kind, fixed at creation (adapters of one model are all injection or all prompt methods)
        return not get_method(self.peft_type).is_prompt_learning

    @property
    def config(self) -> Any:
        return self.get_base_model().config

    @property
    def targeted_module_names(self) -> list[str]:
        """Paths (in the transformers model) of the modules the adapters adapt, in the order they were
        adapted, as HF PEFT lists them."""
        return list(getattr(self.base_model, "targeted_module_names", []))

    @property
    def targeted_parameter_names(self) -> list[str]:
        """Full names of the parameters adapted through ``target_parameters`` (HF PEFT's attribute)."""
        return list(getattr(self.base_model, "targeted_parameter_names", []))

    @property
    def generation_config(self) -> Any:
        return getattr(self.get_base_model(), "generation_config", None)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return self.get_base_model().dtype

    def get_input_embeddings(self) -> nn.Module:
        return self.get_base_model().get_input_embeddings()

    def get_output_embeddings(self) -> nn.Module | None:
        return self.get_base_model().get_output_embeddings()

    def can_generate(self) -> bool:
        base = self.get_base_model()
        return bool(getattr(base, "can_generate", lambda: False)())

    def gradient_checkpointing_enable(
        self, gradient_checkpointing_kwargs: dict[str, Any] | None = None
    ) -> None:
        self.get_base_model().gradient_checkpointing_enable(
            gradient_checkpointing_kwargs=gradient_checkpointing_kwargs
        )

    def enable_input_require_grads(self) -> None:
        self.get_base_model().enable_input_require_grads()

    # -- injection-method operations (LoRA) -------------------------------------------------

    def _tuner(self, operation: str) -> Any:
        if not self._is_tuner() or not hasattr(self.base_model, operation):
            raise InvalidConfig(f"{operation} is not available for {self.peft_type} adapters")
        return getattr(self.base_model, operation)

    def merge_adapter(self, adapter_names: list[str] | None = None, safe_merge: bool = False) -> None:
        """Add the adapters' updates (default: the active ones) into the base weights; undo with
        unmerge_adapter."""
        merge = self._tuner("merge_adapter")
        names = set(self.active_adapters if adapter_names is None else adapter_names)
        holding = [layer for layer in self.modules() if isinstance(layer, BaseTunerLayer)]
        if holding and all(
            names & set(layer._adapter_names()) <= set(layer.merged_adapters) for layer in holding
        ):
            warnings.warn("All adapters are already merged, nothing to do.", UserWarning, stacklevel=2)
            return
        merge(adapter_names=adapter_names, safe_merge=safe_merge)

    def unmerge_adapter(self) -> None:
        self._tuner("unmerge_adapter")()

    def merge_and_unload(
        self, progressbar: bool = False, safe_merge: bool = False, adapter_names: list[str] | None = None
    ) -> nn.Module:
        """Merge the adapters into the base weights and return the plain transformers model."""
        return self._tuner("merge_and_unload")(
            progressbar=progressbar, safe_merge=safe_merge, adapter_names=adapter_names
        )

    def unload(self) -> nn.Module:
        """Take the adapter layers out (unmerged) and return the plain transformers model."""
        return self._tuner("unload")()

    def add_weighted_adapter(
        self,
        adapters: list[str],
        weights: list[float],
        adapter_name: str,
        combination_type: str = "svd",
        svd_rank: int | None = None,
    ) -> None:
        """Add ``adapter_name``: a weighted combination (``linear``, ``cat`` or ``svd``) of existing
        adapters."""
        self._tuner("add_weighted_adapter")(adapters, weights, adapter_name, combination_type, svd_rank)
        self.set_adapter(self.active_adapter)

    # -- counting ---------------------------------------------------------------------------

    def get_nb_trainable_parameters(self) -> tuple[int, int]:
        """(trainable, all) parameters of the whole model, each shared tensor counted once."""
        return status.count_parameters(self)

    def print_trainable_parameters(self) -> None:
        trainable, total = self.get_nb_trainable_parameters()
        print(
            f"trainable params: {trainable:,d} || all params: {total:,d} || trainable%: "
            f"{100 * trainable / total:.4f}"
        )

    # -- checkpoints ------------------------------------------------------------------------

    def save_pretrained(
        self,
        save_directory: str | os.PathLike[str],
        safe_serialization: bool = True,
        selected_adapters: list[str] | None = None,
        save_embedding_layers: str | bool = "auto",
        is_main_process: bool = True,
        path_initial_model_for_weight_conversion: str | None = None,
    ) -> None:
        """Write ``adapter_config.json`` + ``adapter_model.safetensors`` (other adapters in sub-folders).

        HF PEFT's parameters, in its order. ``safe_serialization=False`` writes the legacy
        ``adapter_model.bin`` instead. ``save_embedding_layers``: "auto" and True save the full
        embedding tables LoRA targets (``embed_tokens`` / ``lm_head``), False leaves them out.
        ``path_initial_model_for_weight_conversion``: the folder a PiSSA/OLoRA adapter was saved to
        right after ``get_peft_model``; the adapter is then saved as a plain LoRA of twice the rank
        that applies to the original base model (:mod:`adapterlab.tuners.lora.initial_conversion`).
        """
        if save_embedding_layers not in ("auto", True, False):
            raise InvalidConfig(
                f"save_embedding_layers must be 'auto', True or False, not {save_embedding_layers!r}"
            )
        convert = None
        if path_initial_model_for_weight_conversion is not None:
            from adapterlab.tuners.lora.initial_conversion import converter

            names = list(self.peft_config) if selected_adapters is None else selected_adapters
            configs = [self.peft_config[n] for n in names if n in self.peft_config]
            convert = converter(path_initial_model_for_weight_conversion, configs)
        if is_main_process:
            checkpoint.save_adapters(
                self, save_directory, selected_adapters, save_embedding_layers, safe_serialization, convert
            )
            model_card.write_model_card(Path(save_directory), self)

    def push_to_hub(
        self,
        repo_id: str,
        *,
        commit_message: str = "Upload adapter",
        private: bool | None = None,
        token: str | bool | None = None,
        revision: str | None = None,
        create_pr: bool = False,
        **save_kwargs: Any,
    ) -> str:
        """Save the adapters (as ``save_pretrained``) and upload them to the Hub repo ``repo_id``; returns the
        commit URL. ``save_kwargs`` go to ``save_pretrained``."""
        import tempfile

        with tempfile.TemporaryDirectory() as folder:
            self.save_pretrained(folder, **save_kwargs)
            return hub.upload_folder(
                folder,
                repo_id,
                commit_message=commit_message,
                private=private,
                token=token,
                revision=revision,
                create_pr=create_pr,
            )

    def get_layer_status(self) -> list[status.TunerLayerStatus]:
        """One entry per adapter layer: active, merged, trainable adapters (see :mod:`adapterlab.status`)."""
        return status.get_layer_status(self)

    def get_model_status(self) -> status.TunerModelStatus:
        """The adapter layers' statuses folded into one (see :mod:`adapterlab.status`)."""
        return status.get_model_status(self)

    @classmethod
    def from_pretrained(
        cls,
        model: nn.Module,
        model_id: str | os.PathLike[str],
        adapter_name: str = "default",
        is_trainable: bool = False,
        config: PeftConfig | None = None,
        autocast_adapter_dtype: bool = True,
        ephemeral_gpu_offload: bool = False,
        low_cpu_mem_usage: bool = False,
        key_mapping: dict[str, str] | None = None,
        *,
        subfolder: str | None = None,
        torch_device: str | None = None,
        device_map: str | dict[str, Any] | None = None,
        **hub_options: Any,
    ) -> PeftModel:
        """Load a saved adapter (a folder, or a Hub repo id) onto ``model``, ready for inference: frozen and
        in eval mode (dropout off) unless ``is_trainable``, which leaves it trainable and in train mode.

        HF PEFT's parameters; ``hub_options`` are ``revision``, ``token``, ``cache_dir``,
        ``local_files_only`` and ``force_download``, for adapters fetched from the Hub. The adapter's
        tensors are created beside the layers they adapt, so they follow the base model's own
        placement; ``device_map={"": device}`` moves the whole model to ``device`` afterwards, and
        any other map is the one the base model was loaded with (accepted, as HF PEFT does).
        """
        folder = _locate_adapter(model_id, subfolder, hub_options, ephemeral_gpu_offload)
        config = config if config is not None else PeftConfig.from_pretrained(folder)
        config.inference_mode = not is_trainable
        target_cls = cls
        if cls is PeftModel and config.task_type is not None:
            target_cls = MODEL_TYPE_TO_PEFT_MODEL_MAPPING[TaskType(config.task_type)]
        weights = checkpoint.read_adapter_weights(folder, torch_device, key_mapping)
        peft_model = target_cls(model, config, adapter_name, autocast_adapter_dtype=autocast_adapter_dtype)
        checkpoint.set_peft_model_state_dict(peft_model, weights, adapter_name)
        if isinstance(device_map, dict) and set(device_map) == {""}:
            peft_model.to(device_map[""])
        if not is_trainable:
            peft_model.eval()
        return peft_model

    def load_adapter(
        self,
        model_id: str | os.PathLike[str],
        adapter_name: str,
        is_trainable: bool = False,
        torch_device: str | None = None,
        autocast_adapter_dtype: bool = True,
        ephemeral_gpu_offload: bool = False,
        low_cpu_mem_usage: bool = False,
        key_mapping: dict[str, str] | None = None,
        *,
        subfolder: str | None = None,
        **hub_options: Any,
    ) -> checkpoint.LoadResult:
        """Load a saved adapter as ``adapter_name`` next to the ones present (it does not become active).
        Parameters as in :meth:`from_pretrained`; ``torch_device`` is where the file is read to."""
        if adapter_name in self.peft_config:
            raise AdapterExists(f"Adapter with name {adapter_name!r} already exists; pick another name")
        folder = _locate_adapter(model_id, subfolder, hub_options, ephemeral_gpu_offload)
        config = PeftConfig.from_pretrained(folder)
        config.inference_mode = not is_trainable
        weights = checkpoint.read_adapter_weights(folder, torch_device, key_mapping)
        self.add_adapter(adapter_name, config, autocast_adapter_dtype=autocast_adapter_dtype)
        try:
            result = checkpoint.set_peft_model_state_dict(self, weights, adapter_name)
        except Exception:
            self.delete_adapter(adapter_name)
            raise
        if not is_trainable:
            self.eval()  # as HF PEFT: an adapter loaded for inference switches the model to eval mode
        return result


def _check_one_bias_trainer(configs: dict[str, PeftConfig], new: PeftConfig, new_name: str) -> None:
    """Refuse a second adapter that trains biases: the biases are the base model's, shared by every
    adapter, so two adapters would train (and save) the same tensors (HF PEFT refuses it too)."""
    if getattr(new, "bias", "none") == "none":
        return
    others = [name for name, config in configs.items() if getattr(config, "bias", "none") != "none"]
    if others:
        raise InvalidConfig(
            f"The model supports only 1 adapter with bias. When using multiple adapters, set bias='none' for "
            f"all adapters but one: adapter {new_name!r} trains biases (bias={new.bias!r}) but adapter "
            f"{others[0]!r} already does, and the base model's biases are shared"
        )


def _locate_adapter(
    model_id: str | os.PathLike[str],
    subfolder: str | None,
    hub_options: dict[str, Any],
    ephemeral_gpu_offload: bool,
) -> Path:
    """The adapter's local folder (fetched first if ``model_id`` is a Hub repo)."""
    if ephemeral_gpu_offload:
        raise InvalidConfig(
            "ephemeral_gpu_offload (HF PEFT's CUDA staging of offloaded adapter weights) is not implemented; "
            "adapterlab loads adapters onto the base layers' devices, drop the argument"
        )
    return hub.locate(model_id, subfolder, hub_options)


_BASE_ONLY = PeftMethod()


class PeftModelForSequenceClassification(PeftModel):
    class_task = TaskType.SEQ_CLS


class PeftModelForTokenClassification(PeftModel):
    class_task = TaskType.TOKEN_CLS


class PeftModelForQuestionAnswering(PeftModel):
    class_task = TaskType.QUESTION_ANS


class PeftModelForCausalLM(PeftModel):
    class_task = TaskType.CAUSAL_LM


class PeftModelForSeq2SeqLM(PeftModel):
    class_task = TaskType.SEQ_2_SEQ_LM


class PeftModelForFeatureExtraction(PeftModel):
    class_task = TaskType.FEATURE_EXTRACTION


# task type -> the PeftModel class for it (HF PEFT's name; ``adapterlab.mapping`` re-exports it)
MODEL_TYPE_TO_PEFT_MODEL_MAPPING: dict[TaskType, type[PeftModel]] = {
    cls.class_task: cls
    for cls in (
        PeftModelForSequenceClassification,
        PeftModelForSeq2SeqLM,
        PeftModelForCausalLM,
        PeftModelForTokenClassification,
        PeftModelForQuestionAnswering,
        PeftModelForFeatureExtraction,
    )
}


def _no_such_adapter(adapter_name: str, loaded: dict[str, Any]) -> str:
    """HF PEFT's wording (scripts match on it), with the name escaped: it is the caller's text."""
    return f"Adapter {repr(str(adapter_name))[1:-1]} does not exist; loaded: {', '.join(loaded)}"
