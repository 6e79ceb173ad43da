"""Does an adapter fit a base model? Answered from file headers and ``config.json``, no model loaded.

Checked before anything is stored, so an adapter that could only fail later (``predict`` printing
a size-mismatch traceback) is refused at ``register``:

- every module a LoRA adapter targets exists in the base, with the weight shape its A and B need
  (``B @ A`` is the update: (out, in) for ``nn.Linear``, the transpose for GPT-2's ``Conv1D``
  and for embedding tables, (out, in / groups, *kernel) for convolutions, the last two dimensions
  of a 3-D parameter; per layer kind in ``lora_shapes.py``), and trainable token rows have the
  width of their embedding table;
- a prompt-learning adapter's ``token_dim`` is the base's hidden size, and prefix tuning's
  ``num_layers`` its depth;
- the task fits the architecture: a SEQ_2_SEQ_LM adapter needs an encoder-decoder base, a
  CAUSAL_LM adapter a base that is not encoder-only (BERT and its kin, unless ``is_decoder``).

Adapter keys name module paths of the task model (``transformer.h.0.attn.c_attn`` in a
``GPT2LMHeadModel``) while a base folder may be saved with or without the task model's prefix
(``h.0.attn.c_attn`` in a ``GPT2Model``), so a path also matches with its first component removed
or with one of the base's first components added. Task heads (``classifier``, ``score``,
``qa_outputs``, ``modules_to_save``) are built fresh for the adapter's labels, so LoRA inside a
head that the base lacks is not checked; a tied ``lm_head`` (stored once, as the input
embedding) is (vocab_size, hidden size).

Which model types have which head is a table inside transformers that costs importing torch;
registration stays fast by refusing only what ``config.json`` says for certain.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapterlab.errors import IncompatibleAdapter
from adapterlab.hf_format import (
    LORA_A,
    LORA_B,
    LORA_EMBEDDING_A,
    LORA_EMBEDDING_B,
    PROMPT_EMBEDDINGS,
    PeftType,
    TaskType,
)
from adapterlab.registry.files.adapter_folder import AdapterFolder
from adapterlab.registry.files.adapter_layout import PREFIX, TASK_HEADS, TOKEN_DELTA, lora_modules
from adapterlab.registry.files.checkpoint_files import checkpoint_tensors, model_config
from adapterlab.registry.files.lora_shapes import LoraShape, base_path, lora_shape, parameter_fits
from adapterlab.registry.records import BaseSpec

log = logging.getLogger("adapterlab.registry")

Shape = tuple[int, ...]
HIDDEN_SIZE_KEYS = ("hidden_size", "n_embd", "d_model")  # transformers' names for one quantity
LAYER_COUNT_KEYS = ("num_hidden_layers", "num_layers", "n_layer")
OUTPUT_HEAD = "lm_head"  # tied to the input embedding in most language models
# model types that only encode: no causal LM head unless their config says ``is_decoder`` (BERT as a
# decoder); transformers' own table of heads per model type would cost importing it
ENCODER_ONLY = frozenset(
    "albert bert camembert deberta deberta-v2 distilbert electra ernie funnel layoutlm megatron-bert "
    "mobilebert modernbert mpnet roberta xlm-roberta".split()
)
WEIGHT_NAMES = ("weight", "in_proj_weight")  # what LoRA is added to; the second: nn.MultiheadAttention


@dataclass(frozen=True)
class BaseLayout:
    """What a base folder's headers say: its config and its weights' shapes by module path."""

    config: dict[str, Any]
    tensors: dict[str, Shape]  # "transformer.h.0.attn.c_attn.weight" -> (32, 96)
    prefixes: tuple[str, ...]  # the first components of those paths: "transformer", "lm_head"

    @classmethod
    def read(cls, folder: Path) -> BaseLayout:
        tensors = {entry.name: entry.shape for entry in checkpoint_tensors(folder)}
        prefixes = tuple(sorted({name.split(".", 1)[0] for name in tensors}))
        return cls(config=model_config(folder), tensors=tensors, prefixes=prefixes)

    def _path(self, module: str) -> str | None:
        """``module`` as the base names it, the task model's prefix added or removed as needed."""
        candidates = [module, module.partition(".")[2], *(f"{prefix}.{module}" for prefix in self.prefixes)]
        return next(
            (path for path in candidates if any(name.startswith(f"{path}.") for name in self.tensors)), None
        )

    def weight(self, module: str) -> Shape | None:
        """The shape of ``module``'s weight (an nn.MultiheadAttention's in-projection)."""
        path = self._path(module)
        found = next(
            (self.tensors[f"{path}.{name}"] for name in WEIGHT_NAMES if f"{path}.{name}" in self.tensors),
            None,
        )
        if found is None and module.rsplit(".", 1)[-1] == OUTPUT_HEAD:
            return self._tied_output_head()
        return found

    def parameters(self, module: str) -> list[Shape]:
        """The shapes of ``module``'s own 3-D parameters (a MoE block's stacked expert weights)."""
        path = self._path(module)
        return [
            shape
            for name, shape in self.tensors.items()
            if path is not None
            and name.startswith(f"{path}.")
            and "." not in name[len(path) + 1 :]
            and len(shape) == 3
        ]

    def _tied_output_head(self) -> Shape | None:
        vocab, hidden = self.config.get("vocab_size"), self.setting(HIDDEN_SIZE_KEYS)
        return (vocab, hidden) if isinstance(vocab, int) and hidden is not None else None

    def setting(self, keys: tuple[str, ...]) -> int | None:
        """The first of ``keys`` that config.json sets to an integer."""
        return next((self.config[key] for key in keys if isinstance(self.config.get(key), int)), None)


def check_adapter_fits(
    folder: AdapterFolder, task_type: str | None, base: BaseSpec, base_folder: Path | None
) -> None:
    """Raise IncompatibleAdapter unless the adapter in ``folder`` fits ``base`` (module names, shapes, task).

    ``base_folder`` is a local copy of the base (verified), None when there is none on this
    machine: then there are no headers to read and the check is skipped with a note.
    """
    if base_folder is None:
        log.warning(
            "Note: the folder of base %s is not on this machine; the adapter's modules and shapes are "
            "not checked against it (pass the base's folder to check them)",
            base.name,
        )
        return
    layout = BaseLayout.read(base_folder)
    problem = _task_problem(task_type, layout.config)
    if problem is None and folder.peft_type == PeftType.LORA:
        problem = _lora_problem(folder, layout) or _token_problem(folder, layout)
    elif problem is None:
        problem = _prompt_problem(folder, layout)
    if problem is not None:
        raise IncompatibleAdapter(
            f"adapter {folder.path} does not fit base {base.name}: {problem}; pass the base it was trained on"
        )


def _task_problem(task_type: str | None, config: dict[str, Any]) -> str | None:
    model_type = config.get("model_type", "the base")
    if task_type == TaskType.SEQ_2_SEQ_LM and config and not config.get("is_encoder_decoder"):
        return f"task {task_type} needs an encoder-decoder model, and {model_type!r} is not one"
    if task_type == TaskType.CAUSAL_LM and model_type in ENCODER_ONLY and not config.get("is_decoder"):
        return (
            f"task {task_type} needs a model that generates text, and {model_type!r} is an encoder-only "
            "model (its config.json does not set is_decoder)"
        )
    return None


def _lora_problem(folder: AdapterFolder, layout: BaseLayout) -> str | None:
    heads = {OUTPUT_HEAD, *TASK_HEADS, *(folder.config.get("modules_to_save") or [])}
    for module, parts in sorted(lora_modules(folder.shapes)[0].items()):
        path = base_path(module)
        weight, parameters = layout.weight(path), layout.parameters(path)
        if weight is None and not parameters:
            if heads.isdisjoint(module.split(".")):
                return f"module {module!r} is not in the base"
            continue  # a head the base lacks is built fresh for the adapter
        for a_name, b_name in ((LORA_A, LORA_B), (LORA_EMBEDDING_A, LORA_EMBEDDING_B)):
            if a_name not in parts:
                continue
            a, b = parts[a_name], parts[b_name]
            shape = lora_shape(module, a, b, folder.config)  # not None: the folder's layout was checked
            if not _fits(shape, weight, parameters):
                found = list(weight) if weight is not None else " or ".join(str(list(p)) for p in parameters)
                return (
                    f"module {module!r} has weight {found} in the base, but the adapter's {a_name} "
                    f"{list(a)} and {b_name} {list(b)} make an update of {list(shape.update)}"
                )
    return None


def _token_problem(folder: AdapterFolder, layout: BaseLayout) -> str | None:
    """``trainable_token_indices``' rows (n, dim) replace rows of an embedding table (vocab, dim)."""
    for key, delta in sorted(folder.shapes.items()):
        if not key.endswith(f".{TOKEN_DELTA}"):
            continue
        module = key.removeprefix(PREFIX).removesuffix(f".{TOKEN_DELTA}")
        table = layout.weight(module)
        if table is None:
            return f"module {module!r} is not in the base"
        if len(delta) != 2 or len(table) != 2 or delta[1] != table[1]:
            return (
                f"module {module!r} has weight {list(table)} in the base, the adapter's token rows "
                f"{list(delta)}"
            )
    return None


def _fits(shape: LoraShape, weight: Shape | None, parameters: list[Shape]) -> bool:
    """Either orientation of a matrix fits: ``fan_in_fan_out`` in a config is one flag for all
    layers, which HF PEFT rewrites per layer kind it meets, so it cannot say which are Conv1D."""
    update = shape.update
    if weight is not None and (update == weight or (len(weight) == 2 and update == weight[::-1])):
        return True
    return any(parameter_fits(update, shape.rank, parameter) for parameter in parameters)


def _prompt_problem(folder: AdapterFolder, layout: BaseLayout) -> str | None:
    hidden = layout.setting(HIDDEN_SIZE_KEYS)
    dim = folder.config.get("token_dim")
    if not isinstance(dim, int) and folder.peft_type != PeftType.PREFIX_TUNING:
        dim = folder.shapes[PROMPT_EMBEDDINGS][-1]  # older writers leave token_dim out
    if hidden is not None and isinstance(dim, int) and dim != hidden:
        return f"the adapter's token_dim is {dim}, the base's hidden size is {hidden}"
    layers, base_layers = folder.config.get("num_layers"), layout.setting(LAYER_COUNT_KEYS)
    if folder.peft_type == PeftType.PREFIX_TUNING and isinstance(layers, int) and base_layers is not None:
        if layers != base_layers:
            return f"the adapter's prefix spans {layers} layers, the base has {base_layers}"
    return None
