"""``LoraConfig``: the fields of a LoRA ``adapter_config.json`` (Hugging Face PEFT's names and defaults)."""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

from adapterlab.config import PeftConfig, PeftType, validate_choice
from adapterlab.errors import InvalidConfig, InvalidConfigType, UnsupportedFeature
from adapterlab.tuners.lora.variant_configs import BdLoraConfig, KasaConfig, VeloraConfig, as_subconfig

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

# init_lora_weights: the named initializations (adapterlab.tuners.lora.init), besides True and False
NAMED_INITS = ("gaussian", "pissa", "olora", "orthogonal", "mica")
# HF PEFT's initializations that need data, a quantizer or gradients: refused by name
HF_ONLY_INITS = ("loftq", "eva", "corda", "lora_ga")
# HF PEFT's LoRA fields for features adapterlab lacks (see LoraConfig): each is off when falsy
FOREIGN_FEATURE_FIELDS = (
    "megatron_config",
    "loftq_config",
    "eva_config",
    "corda_config",
    "lora_ga_config",
    "alora_invocation_tokens",
    "use_qalora",
    "monteclora_config",
    "layer_replication",
    "arrow_config",
    "runtime_config",
)
# the initializations that leave the base weight alone and start B at zero (False: random, for tests);
# the only ones LoRA on raw parameters (target_parameters), KaSA and BD-LoRA work with
INIT_KEEPS_BASE = (True, False, "gaussian")
PISSA_NITER = re.compile(r"pissa_niter_(\d+)")


def valid_init(init: object) -> bool:
    return (
        init is True
        or init is False
        or init in NAMED_INITS
        or (isinstance(init, str) and PISSA_NITER.fullmatch(init) is not None)
    )


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
    # True: Kaiming-uniform A, zero B (update starts at 0); "gaussian": normal A; False: random B too;
    # "orthogonal", "pissa", "pissa_niter_K", "olora": see adapterlab.tuners.lora.init
    init_lora_weights: bool | str = True
    # only adapt these layer indices (with layers_pattern naming the layer list, e.g. "layers")
    layers_to_transform: list[int] | int | None = None
    layers_pattern: list[str] | str | None = None
    # per-module overrides of r and lora_alpha: {"name or regex": value}
    rank_pattern: dict[str, int] = field(default_factory=dict)
    alpha_pattern: dict[str, int] = field(default_factory=dict)
    # DoRA (Liu et al. 2024): learn each output row's magnitude separately from the direction
    use_dora: bool = False
    # a trainable bias on lora_B (zero at init); merging adds it to the base layer's bias
    lora_bias: bool = False
    # rows of the input embedding (or {embedding name: rows}) trained in full next to LoRA
    trainable_token_indices: list[int] | dict[str, list[int]] | None = None
    # LoRA variants (one at a time; see adapterlab.tuners.lora.variants). KaSA: truncate W's r smallest
    # singular directions and learn a diagonal between A and B; VeLoRA: compress A's input for the
    # backward; BD-LoRA: block-diagonal A or B. MiCA is init_lora_weights="mica".
    kasa_config: KasaConfig | None = None
    velora_config: VeloraConfig | None = None
    use_bdlora: BdLoraConfig | None = None
    # parameters to adapt directly (names as target_modules, ending in the parameter's name), e.g. MoE
    # expert weights ["experts.gate_up_proj"]; see adapterlab.tuners.lora.param_wrapper
    target_parameters: list[str] | None = None

    # HF PEFT's LoRA fields for features adapterlab does not implement. They are accepted with HF's
    # defaults (so HF's calls and files work unchanged, and saved configs carry the same keys); a
    # value that would switch the feature on is refused by name in _refuse_foreign_features.
    megatron_config: dict[str, Any] | None = None
    megatron_core: str | None = "megatron.core"
    loftq_config: dict[str, Any] = field(default_factory=dict)
    eva_config: Any = None
    corda_config: Any = None
    lora_ga_config: Any = None
    alora_invocation_tokens: list[int] | None = None
    use_qalora: bool = False
    qalora_group_size: int = 16
    monteclora_config: Any = None
    layer_replication: list[tuple[int, int]] | None = None
    arrow_config: Any = None
    # keep the adapter tied where the model ties lm_head to the input embeddings (see weight_tying)
    ensure_weight_tying: bool = False
    # HF PEFT's run-time options (GPU offload for DoRA); never saved, as in HF PEFT
    runtime_config: Any = None

    def __post_init__(self) -> None:
        self.peft_type = PeftType.LORA  # the class decides the method, whatever was passed (as in HF PEFT)
        super().__post_init__()
        if isinstance(self.target_modules, (list, tuple, set)):
            self.target_modules = list(dict.fromkeys(self.target_modules))
        if isinstance(self.modules_to_save, (tuple, set)):
            self.modules_to_save = list(self.modules_to_save)
        self.kasa_config = as_subconfig(self.kasa_config, KasaConfig, "kasa_config")
        self.velora_config = as_subconfig(self.velora_config, VeloraConfig, "velora_config")
        self.use_bdlora = as_subconfig(self.use_bdlora, BdLoraConfig, "use_bdlora")
        if isinstance(self.init_lora_weights, str) and self.init_lora_weights.lower() == "olora":
            # HF PEFT compares this one name case-insensitively ("OLoRA", the paper's spelling), pissa not
            self.init_lora_weights = "olora"
        self._validate()

    @property
    def variant(self) -> str | None:
        """The LoRA variant this config asks for (a field name, or "mica"); None for plain LoRA."""
        return next(iter(self._variants()), None)

    def _variants(self) -> list[str]:
        fields = ("use_dora", "kasa_config", "velora_config", "use_bdlora")
        asked = [name for name in fields if getattr(self, name)]
        return asked + ["mica"] * (self.init_lora_weights == "mica")

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data.pop("runtime_config")  # a run-time option, not part of the adapter (as in HF PEFT)
        return data

    def _refuse_foreign_features(self) -> None:
        """Refuse by name any HF-only feature field set to a value that would switch it on."""
        for name in FOREIGN_FEATURE_FIELDS:
            value = getattr(self, name)
            if name == "runtime_config":
                if value is not None and getattr(value, "ephemeral_gpu_offload", False):
                    raise UnsupportedFeature(
                        "runtime_config.ephemeral_gpu_offload (a Hugging Face PEFT feature) is not "
                        "supported by adapterlab; leave it False"
                    )
                continue
            if value not in (None, {}, [], False):
                raise UnsupportedFeature(
                    f"{name}={value!r} is a Hugging Face PEFT feature adapterlab does not support; "
                    f"remove it from the config"
                )

    def _validate(self) -> None:
        # lora_bias first: its conflicts are the user's choice to fix, whatever else the config asks for
        if self.lora_bias and self.init_lora_weights not in (True, False):
            raise InvalidConfig(
                f"The argument lora_bias=True is only supported with init_lora_weights=True or "
                f"False, got {self.init_lora_weights!r}"
            )
        if self.lora_bias and self.use_dora:
            raise InvalidConfig("The argument lora_bias=True is not supported with DoRA; set use_dora=False")
        if self.use_dora and self.megatron_config:
            raise UnsupportedFeature(
                "DoRA does not support megatron_core, please set `use_dora=False` (and note that "
                "megatron_config is not supported by adapterlab at all: remove it)"
            )
        self._refuse_foreign_features()
        self._validate_variant()
        if isinstance(self.r, bool) or not isinstance(self.r, int) or self.r <= 0:
            raise InvalidConfig(f"LoRA rank r must be a positive integer, got {self.r!r}")
        alpha = self.lora_alpha
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha):
            raise InvalidConfig(f"lora_alpha must be a finite number, got {alpha!r}")
        if not isinstance(self.lora_dropout, (int, float)) or not 0 <= self.lora_dropout < 1:
            raise InvalidConfig(f"lora_dropout must be in [0, 1), got {self.lora_dropout!r}")
        validate_choice(self.bias, ("none", "all", "lora_only"), "bias")
        if self.init_lora_weights in HF_ONLY_INITS:
            raise UnsupportedFeature(
                f"init_lora_weights={self.init_lora_weights!r} (a Hugging Face PEFT initialization from "
                "data) is not supported by adapterlab; use True, 'gaussian', 'orthogonal', 'pissa' or "
                "'olora'"
            )
        if not valid_init(self.init_lora_weights):
            raise InvalidConfig(
                f"init_lora_weights must be True, False, {', '.join(map(repr, NAMED_INITS))} or "
                f"'pissa_niter_K' (K an integer), got {self.init_lora_weights!r}"
            )
        self._warn_unconvertible()
        self._validate_target_parameters()
        self._validate_token_indices()

    def _validate_target_parameters(self) -> None:
        names = self.target_parameters
        if names is None:
            return
        if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
            raise InvalidConfigType(
                f"`target_parameters` must be a list of strings or None. Got {names!r}; write a list of "
                "parameter names, e.g. ['experts.gate_up_proj']"
            )
        self.target_parameters = list(names)
        if not names:
            return
        # LoRA on a parameter changes the weight, not the input: these options have nothing to act on.
        # (fan_in_fan_out is left alone: it describes Conv1D modules, and is set when target_modules
        # adapts one; HF PEFT refuses it here, so its own saves of such a config do not load there.)
        refused = {"lora_dropout": self.lora_dropout, "use_dora": self.use_dora, "lora_bias": self.lora_bias}
        refused.update({name: getattr(self, name) for name in self._variants() if hasattr(self, name)})
        for option, value in refused.items():
            if value:
                raise InvalidConfig(
                    f"{option}={value!r} does not work with target_parameters (LoRA on nn.Parameter); "
                    f"leave {option} at its default"
                )
        if self.init_lora_weights not in INIT_KEEPS_BASE:
            raise UnsupportedFeature(
                f"init_lora_weights={self.init_lora_weights!r} is not supported with target_parameters; use "
                "True, False or 'gaussian'"
            )

    def _validate_variant(self) -> None:
        asked = self._variants()
        if len(asked) > 1:
            raise InvalidConfig(f"LoRA variants {' and '.join(asked)} cannot be combined; choose one")
        if (
            asked
            and asked[0] in ("kasa_config", "use_bdlora")
            and self.init_lora_weights not in INIT_KEEPS_BASE
        ):
            raise InvalidConfig(
                f"{asked[0]} works with init_lora_weights True, False or 'gaussian', got "
                f"{self.init_lora_weights!r}"
            )
        if self.use_bdlora and self.lora_bias:
            raise InvalidConfig(
                "lora_bias=True is not supported with BD-LoRA (use_bdlora); set lora_bias=False"
            )

    def _warn_unconvertible(self) -> None:
        """PiSSA/OLoRA with rsLoRA and rank/alpha patterns cannot be saved converted to a plain LoRA
        later (see adapterlab.tuners.lora.initial_conversion); the user may not need that, so only warn."""
        init = str(self.init_lora_weights)
        if (
            self.use_rslora
            and (self.rank_pattern or self.alpha_pattern)
            and init.startswith(("pissa", "olora"))
        ):
            warnings.warn(
                "Using Rank-Stabilized LoRA with rank_pattern/alpha_pattern and post-training conversion of "
                "modified base weights (PiSSA/OLoRA) means that you won't be able to pass "
                "`path_initial_model_for_weight_conversion` to `save_pretrained`; if you need that, drop "
                "use_rslora or the patterns",
                UserWarning,
                stacklevel=4,
            )

    def _validate_token_indices(self) -> None:
        indices = self.trainable_token_indices
        lists = indices.values() if isinstance(indices, dict) else [indices] if indices is not None else []
        for value in lists:
            if not isinstance(value, (list, tuple)) or not all(
                isinstance(i, int) and not isinstance(i, bool) for i in value
            ):
                raise InvalidConfig(
                    "trainable_token_indices must be a list of token ids or a dict of embedding name -> "
                    f"list, got {indices!r}"
                )
        if isinstance(indices, dict) and self.modules_to_save and set(indices) & set(self.modules_to_save):
            raise InvalidConfig(
                "an embedding is both in modules_to_save and trainable_token_indices; choose one"
            )
        for name, rank in self.rank_pattern.items():
            if isinstance(rank, bool) or not isinstance(rank, int) or rank <= 0:
                raise InvalidConfig(f"rank_pattern[{name!r}] must be a positive integer, got {rank!r}")
        if isinstance(self.target_modules, str) and self.target_modules != ALL_LINEAR:
            try:
                re.compile(self.target_modules)
            except (re.error, RecursionError, OverflowError) as exc:
                raise InvalidConfig(
                    f"target_modules {self.target_modules!r} is not a valid regex ({exc}); "
                    "give a list of module names or fix the pattern"
                ) from exc
            for name in ("layers_to_transform", "layers_pattern"):
                if getattr(self, name) is not None:
                    raise InvalidConfig(
                        f"`{name}` cannot be used when `target_modules` is a str. A str is a regex: "
                        "put the layers in it instead"
                    )
        if self.layers_pattern and self.layers_to_transform is None:
            raise InvalidConfig(
                "When `layers_pattern` is specified, `layers_to_transform` must also be specified: "
                "layers_pattern names the layer list, layers_to_transform the indices in it; set both"
            )
