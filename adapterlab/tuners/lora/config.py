"""``LoraConfig``: the fields of a LoRA ``adapter_config.json`` (Hugging Face PEFT's names and defaults)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from adapterlab.config import PeftConfig, PeftType, validate_choice
from adapterlab.errors import InvalidConfig

# Layers LoRA targets when target_modules is unset, by transformers' config.model_type.
DEFAULT_TARGET_MODULES: dict[str, list[str]] = {
    "t5": ["q", "v"],
    "mt5": ["q", "v"],
    "bert": ["query", "value"],
    "roberta": ["query", "value"],
    "xlm-roberta": ["query", "value"],
    "electra": ["query", "value"],
    "gpt2": ["c_attn"],
    "llama": ["q_proj", "v_proj"],
    "mistral": ["q_proj", "v_proj"],
    "qwen2": ["q_proj", "v_proj"],
    "gemma": ["q_proj", "v_proj"],
    "opt": ["q_proj", "v_proj"],
    "bart": ["q_proj", "v_proj"],
    "bloom": ["query_key_value"],
    "gpt_neox": ["query_key_value"],
}

ALL_LINEAR = "all-linear"


@dataclass
class LoraConfig(PeftConfig):
    """LoRA: a frozen weight ``W`` plus a trainable low-rank update ``B @ A`` scaled by alpha / r."""

    # rank of the update (A is r x in, B is out x r)
    r: int = 8
    # module names (list: suffix match), a regex (full match), "all-linear", or None (by model_type)
    target_modules: list[str] | str | None = None
    # module names (or a regex) never to adapt, even when target_modules matches them
    exclude_modules: list[str] | str | None = None
    # the update is scaled by lora_alpha / r (lora_alpha / sqrt(r) with use_rslora)
    lora_alpha: int = 8
    # dropout on the input of the low-rank path only
    lora_dropout: float = 0.0
    # True when the base layer stores its weight as (in, out), as transformers' Conv1D does
    fan_in_fan_out: bool = False
    # which biases train: "none", "all", or "lora_only" (those of adapted layers)
    bias: Literal["none", "all", "lora_only"] = "none"
    # rank-stabilized LoRA (Kalajdzievski 2023): scale by alpha / sqrt(r)
    use_rslora: bool = False
    # modules trained in full and saved with the adapter (task heads join automatically)
    modules_to_save: list[str] | None = None
    # True: Kaiming-uniform A, zero B (update starts at 0); "gaussian": normal A; False: random B too
    init_lora_weights: bool | Literal["gaussian"] = True
    # only adapt these layer indices (with layers_pattern naming the layer list, e.g. "layers")
    layers_to_transform: list[int] | int | None = None
    layers_pattern: list[str] | str | None = None
    # per-module overrides of r and lora_alpha: {"name or regex": value}
    rank_pattern: dict[str, int] = field(default_factory=dict)
    alpha_pattern: dict[str, int] = field(default_factory=dict)
    # DoRA (Liu et al. 2024): learn each output row's magnitude separately from the direction
    use_dora: bool = False

    inert_foreign_fields: ClassVar[dict[str, Any]] = {
        "megatron_config": None,
        "megatron_core": "megatron.core",
        "trainable_token_indices": None,
        "loftq_config": {},
        "eva_config": None,
        "corda_config": None,
        "lora_ga_config": None,
        "velora_config": None,
        "alora_invocation_tokens": None,
        "use_qalora": False,
        "qalora_group_size": 16,
        "monteclora_config": None,
        "layer_replication": None,
        "lora_bias": False,
        "target_parameters": None,
        "use_bdlora": None,
        "arrow_config": None,
        "kasa_config": None,
        "ensure_weight_tying": False,
        "runtime_config": None,
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        self.peft_type = PeftType.LORA
        if isinstance(self.target_modules, (list, tuple, set)):
            self.target_modules = list(dict.fromkeys(self.target_modules))
        if isinstance(self.modules_to_save, (tuple, set)):
            self.modules_to_save = list(self.modules_to_save)
        self._validate()

    def _validate(self) -> None:
        if isinstance(self.r, bool) or not isinstance(self.r, int) or self.r <= 0:
            raise InvalidConfig(f"LoRA rank r must be a positive integer, got {self.r!r}")
        alpha = self.lora_alpha
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha):
            raise InvalidConfig(f"lora_alpha must be a finite number, got {alpha!r}")
        if not isinstance(self.lora_dropout, (int, float)) or not 0 <= self.lora_dropout < 1:
            raise InvalidConfig(f"lora_dropout must be in [0, 1), got {self.lora_dropout!r}")
        validate_choice(self.bias, ("none", "all", "lora_only"), "bias")
        validate_choice(self.init_lora_weights, (True, False, "gaussian"), "init_lora_weights")
        for name, rank in self.rank_pattern.items():
            if isinstance(rank, bool) or not isinstance(rank, int) or rank <= 0:
                raise InvalidConfig(f"rank_pattern[{name!r}] must be a positive integer, got {rank!r}")
        if self.layers_pattern and self.layers_to_transform is None:
            raise InvalidConfig("layers_pattern only applies together with layers_to_transform; set both")
        if isinstance(self.target_modules, str) and self.target_modules != ALL_LINEAR:
            try:
                re.compile(self.target_modules)
            except (re.error, RecursionError, OverflowError) as exc:
                raise InvalidConfig(f"target_modules {self.target_modules!r} is not a valid regex ({exc}); "
                                    "give a list of module names or fix the pattern") from exc
        if isinstance(self.target_modules, str) and self.layers_to_transform is not None:
            if self.target_modules != ALL_LINEAR:
                raise InvalidConfig(
                    "layers_to_transform cannot be combined with a regex target_modules; put the layers in the regex"
                )
