"""Configs of the prompt-learning methods: prompt tuning, P-tuning and prefix tuning.

Field names and defaults are those of Hugging Face PEFT, so ``adapter_config.json`` files move
between the two libraries. The model sizes (``token_dim``, ``num_layers``, ...) may be left unset:
:func:`adapterlab.tuners.prompt.model_sizes.fill_model_sizes` fills them from the base model's
config when the adapter is created.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from adapterlab.config import PeftConfig, PeftType, coerce_enum
from adapterlab.errors import InvalidConfig


class PromptTuningInit(str, enum.Enum):
    """How prompt tuning starts its virtual tokens."""

    TEXT = "TEXT"  # the embeddings of a tokenized text, repeated or cut to length
    SAMPLE_VOCAB = "SAMPLE_VOCAB"  # the embeddings of random vocabulary tokens
    RANDOM = "RANDOM"  # N(0, 1) soft tokens (may lie off the embedding manifold)

    def __str__(self) -> str:
        return self.value


class PromptEncoderReparameterizationType(str, enum.Enum):
    """The network P-tuning puts between its trained embedding and the virtual tokens."""

    MLP = "MLP"
    LSTM = "LSTM"

    def __str__(self) -> str:
        return self.value


def _require_positive(config: PeftConfig, names: tuple[str, ...], *, optional: bool = True) -> None:
    for name in names:
        value = getattr(config, name)
        if value is None and optional:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise InvalidConfig(f"{name} must be a positive integer, got {value!r}")


@dataclass
class PromptLearningConfig(PeftConfig):
    """Fields shared by the methods that feed the frozen model virtual tokens."""

    # how many virtual tokens the adapter adds (per transformer submodule)
    num_virtual_tokens: int | None = None
    # width of a virtual token: the model's hidden size (for prefix tuning: heads * head_dim of K/V)
    token_dim: int | None = None
    # 2 for encoder-decoder models (a prompt for each stack), else 1
    num_transformer_submodules: int | None = None
    # attention heads of the model (for prefix tuning: key/value heads)
    num_attention_heads: int | None = None
    # transformer layers of the model (prefix tuning builds keys and values for each)
    num_layers: int | None = None
    # extra modules trained and saved in full (e.g. the classification head)
    modules_to_save: list[str] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        # num_virtual_tokens may be set after construction (as in HF PEFT); check_ready() requires it
        _require_positive(self, ("num_virtual_tokens", "token_dim", "num_attention_heads", "num_layers"))
        if self.num_transformer_submodules not in (None, 1, 2):
            raise InvalidConfig(
                f"num_transformer_submodules must be 1 or 2 (2 for encoder-decoder models), "
                f"got {self.num_transformer_submodules!r}"
            )

    @property
    def is_prompt_learning(self) -> bool:
        return True

    def check_ready(self) -> None:
        """Raise InvalidConfig unless the fields left open at construction are set (adapter creation)."""
        if self.num_virtual_tokens is None:
            raise InvalidConfig(
                "num_virtual_tokens is required, e.g. PromptTuningConfig(num_virtual_tokens=20)"
            )
        _require_positive(self, ("num_virtual_tokens",), optional=False)

    @property
    def total_virtual_tokens(self) -> int:
        """Rows of the prompt table: one set of virtual tokens per transformer submodule."""
        return self.num_virtual_tokens * (self.num_transformer_submodules or 1)


@dataclass
class PromptTuningConfig(PromptLearningConfig):
    """Prompt tuning (Lester et al., 2021): the virtual token embeddings are the parameters."""

    prompt_tuning_init: PromptTuningInit | str = PromptTuningInit.RANDOM
    # the text whose token embeddings start the prompt (TEXT init only)
    prompt_tuning_init_text: str | None = None
    # the tokenizer for prompt_tuning_init_text (TEXT init only)
    tokenizer_name_or_path: str | None = None
    # extra AutoTokenizer.from_pretrained arguments (TEXT init only)
    tokenizer_kwargs: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.peft_type = (
            PeftType.PROMPT_TUNING
        )  # the class decides the method, whatever was passed (as in HF PEFT)
        super().__post_init__()
        self.prompt_tuning_init = coerce_enum(PromptTuningInit, self.prompt_tuning_init, "prompt_tuning_init")
        if self.prompt_tuning_init is PromptTuningInit.TEXT:
            if not self.prompt_tuning_init_text:
                raise InvalidConfig(
                    "When prompt_tuning_init='TEXT', prompt_tuning_init_text can't be None: give the text "
                    "the prompt starts from"
                )
            if not self.tokenizer_name_or_path:
                raise InvalidConfig(
                    "When prompt_tuning_init='TEXT', tokenizer_name_or_path can't be None: give a tokenizer "
                    "folder or name"
                )
        elif self.tokenizer_kwargs:
            raise InvalidConfig("tokenizer_kwargs is only used with prompt_tuning_init='TEXT'; remove it")


@dataclass
class PromptEncoderConfig(PromptLearningConfig):
    """P-tuning (Liu et al., 2021): an MLP or LSTM maps trained embeddings to the virtual tokens."""

    encoder_reparameterization_type: PromptEncoderReparameterizationType | str = (
        PromptEncoderReparameterizationType.MLP
    )
    # hidden width of the MLP/LSTM; unset: token_dim
    encoder_hidden_size: int | None = None
    # LSTM layers (the MLP always has two hidden layers)
    encoder_num_layers: int = 2
    # dropout between LSTM layers
    encoder_dropout: float = 0.0

    def __post_init__(self) -> None:
        self.peft_type = (
            PeftType.P_TUNING
        )  # the class decides the method, whatever was passed (as in HF PEFT)
        super().__post_init__()
        self.encoder_reparameterization_type = coerce_enum(
            PromptEncoderReparameterizationType,
            self.encoder_reparameterization_type,
            "encoder_reparameterization_type",
        )
        _require_positive(self, ("encoder_hidden_size",))
        _require_positive(self, ("encoder_num_layers",), optional=False)
        if not 0.0 <= float(self.encoder_dropout) < 1.0:
            raise InvalidConfig(f"encoder_dropout must be in [0, 1), got {self.encoder_dropout!r}")


@dataclass
class PrefixTuningConfig(PromptLearningConfig):
    """Prefix tuning (Li & Liang, 2021): trained keys and values prepended in every attention layer."""

    # None: random start; "zero": the prefix starts as all-zero keys and values
    init_weights: str | None = None
    # hidden width of the projection MLP (prefix_projection only); unset: token_dim
    encoder_hidden_size: int | None = None
    # train an embedding plus a two-layer MLP instead of the keys and values directly
    prefix_projection: bool = False

    def __post_init__(self) -> None:
        self.peft_type = (
            PeftType.PREFIX_TUNING
        )  # the class decides the method, whatever was passed (as in HF PEFT)
        super().__post_init__()
        if self.init_weights not in (None, "zero"):
            raise InvalidConfig(f"init_weights must be None or 'zero', got {self.init_weights!r}")
        _require_positive(self, ("encoder_hidden_size",))
