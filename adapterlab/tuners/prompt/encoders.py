"""The trainable modules of the prompt methods; each produces its virtual-token states.

Every encoder's ``forward()`` takes no input and returns one row per virtual token, ``(T, W)``:

- prompt tuning: ``W = token_dim``, the rows are the parameters (:class:`PromptEmbedding`);
- P-tuning: ``W = token_dim``, an MLP or bidirectional LSTM+MLP reparameterizes a trained
  embedding (:class:`PromptEncoder`, Liu et al. 2021, "GPT Understands, Too", section 3);
- prefix tuning: ``W = num_layers * 2 * token_dim``, a key and a value per layer, either trained
  directly (:class:`PromptEmbedding`) or through an embedding and a two-layer tanh MLP
  (:class:`PrefixProjection`, Li & Liang 2021, section 4.3).

Checkpoints store the encoder's output (``prompt_embeddings``), so a saved adapter of any of
the three always loads as a plain :class:`PromptEmbedding` holding those rows.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torch import nn

from adapterlab.errors import InvalidConfig
from adapterlab.tuners.prompt.config import (
    PromptEncoderConfig,
    PromptEncoderReparameterizationType,
    PromptTuningConfig,
    PromptTuningInit,
)

# the hidden layers of P-tuning's MLP head (the paper's); encoder_num_layers sets only the LSTM's
MLP_LAYERS = 2


class PromptEmbedding(nn.Module):
    """A table of virtual-token states that are trained (or loaded) as they are."""

    def __init__(self, num_tokens: int, width: int, initial: torch.Tensor | None = None) -> None:
        super().__init__()
        self.embedding = nn.Embedding(num_tokens, width)
        if initial is not None:
            with torch.no_grad():
                self.embedding.weight.copy_(initial)

    def forward(self) -> torch.Tensor:
        return self.embedding.weight  # (T, W)


class PromptEncoder(nn.Module):
    """P-tuning: virtual tokens = head(embedding), the head an MLP or a bidirectional LSTM + MLP."""

    def __init__(self, config: PromptEncoderConfig) -> None:
        super().__init__()
        dim, hidden = config.token_dim, config.encoder_hidden_size
        self.embedding = nn.Embedding(config.total_virtual_tokens, dim)
        self.lstm_head: nn.LSTM | None = None
        if config.encoder_reparameterization_type is PromptEncoderReparameterizationType.LSTM:
            self.lstm_head = nn.LSTM(
                input_size=dim,
                hidden_size=hidden,
                num_layers=config.encoder_num_layers,
                dropout=config.encoder_dropout,
                bidirectional=True,
                batch_first=True,
            )
            self.mlp_head = nn.Sequential(
                nn.Linear(2 * hidden, 2 * hidden), nn.ReLU(), nn.Linear(2 * hidden, dim)
            )
        else:
            # the paper's MLP has two hidden layers; encoder_num_layers only shapes the LSTM
            if config.encoder_num_layers != MLP_LAYERS:
                warnings.warn(
                    f"for MLP, the argument `encoder_num_layers` is ignored. Exactly {MLP_LAYERS} MLP layers "
                    "are used.",
                    UserWarning,
                    stacklevel=2,
                )
            self.mlp_head = nn.Sequential(
                nn.Linear(dim, hidden),
                nn.ReLU(),
                nn.Linear(hidden, hidden),
                nn.ReLU(),
                nn.Linear(hidden, dim),
            )

    def forward(self) -> torch.Tensor:
        states = self.embedding.weight  # (T, D)
        if self.lstm_head is not None:
            # the LSTM reads the prompt as one sequence, so each token's state depends on its neighbours
            states = self.lstm_head(states.unsqueeze(0))[0].squeeze(0)  # (T, 2H)
        return self.mlp_head(states)  # (T, D)


class PrefixProjection(nn.Module):
    """Prefix tuning with ``prefix_projection``: keys/values = MLP(embedding), stabler to train."""

    def __init__(self, num_tokens: int, token_dim: int, hidden: int, width: int, zero_init: bool) -> None:
        super().__init__()
        self.embedding = nn.Embedding(num_tokens, token_dim)
        self.transform = nn.Sequential(nn.Linear(token_dim, hidden), nn.Tanh(), nn.Linear(hidden, width))
        if zero_init:
            nn.init.zeros_(self.transform[-1].weight)
            nn.init.zeros_(self.transform[-1].bias)

    def forward(self) -> torch.Tensor:
        return self.transform(self.embedding.weight)  # (T, L * 2 * D)


def initial_prompt(config: PromptTuningConfig, word_embeddings: nn.Module) -> torch.Tensor | None:
    """Starting rows for prompt tuning: None (keep N(0, 1)), or word embeddings of vocabulary
    samples or of the init text, as float32 like the trained rows."""
    total = config.total_virtual_tokens
    weight = word_embeddings.weight
    if config.prompt_tuning_init is PromptTuningInit.SAMPLE_VOCAB:
        token_ids = torch.randint(0, weight.shape[0], (total,), device=weight.device)
    elif config.prompt_tuning_init is PromptTuningInit.TEXT:
        token_ids = torch.tensor(_init_text_token_ids(config, total), device=weight.device)
    else:
        return None
    return word_embeddings(token_ids).detach().float()


def _init_text_token_ids(config: PromptTuningConfig, total: int) -> list[int]:
    from transformers import AutoTokenizer

    # a checkpoint's config must not be able to run code from the hub
    kwargs: dict[str, Any] = {
        k: v for k, v in (config.tokenizer_kwargs or {}).items() if k != "trust_remote_code"
    }
    try:
        tokenizer = AutoTokenizer.from_pretrained(config.tokenizer_name_or_path, **kwargs)
    except (OSError, ValueError) as exc:
        raise InvalidConfig(
            f"cannot load tokenizer {config.tokenizer_name_or_path!r} for prompt_tuning_init='TEXT' ({exc}); "
            f"set tokenizer_name_or_path to a tokenizer folder or hub name"
        ) from None
    token_ids = list(tokenizer(config.prompt_tuning_init_text)["input_ids"])
    if not token_ids:
        raise InvalidConfig("prompt_tuning_init_text tokenizes to no tokens; give a longer text")
    # repeat a short text, cut a long one: every virtual token starts from a real word
    return (token_ids * math.ceil(total / len(token_ids)))[:total]
