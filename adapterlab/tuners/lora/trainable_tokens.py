"""``trainable_token_indices``: a few rows of an embedding table train in full next to LoRA.

Useful for new special tokens: instead of training (and saving) the whole table, each adapter holds
new values for the chosen rows only, ``token_adapter.trainable_tokens_delta`` (n_rows, dim), and the
lookup reads the table with those rows replaced:

    W' = W.index_copy(0, indices, delta)       # (vocab, dim)
    y  = embedding(x, W')

The rows start as the base's own (the model starts equal to the base). Checkpoint key as in Hugging
Face PEFT: ``<embedding path>.token_adapter.trainable_tokens_delta``. Not supported (refused by
name): tables tied to the output layer, an embedding that LoRA also targets, mixed batches.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from adapterlab.errors import InvalidConfig, TargetModuleNotFound, UnsupportedFeature
from adapterlab.tuners.lora.layer import LoraLayer


class TokenAdapter(nn.Module):
    """Per adapter: the token indices and their trainable rows (and the base's rows, to unmerge)."""

    def __init__(self) -> None:
        super().__init__()
        self.trainable_tokens_delta = nn.ParameterDict()
        self.token_indices: dict[str, list[int]] = {}
        self.trainable_tokens_original: dict[str, torch.Tensor] = {}  # not saved: the base has them


class TrainableTokensWrapper(nn.Module):
    """An ``nn.Embedding`` whose rows ``token_indices`` come from the active adapter."""

    def __init__(self, base_layer: nn.Embedding) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.token_adapter = TokenAdapter()
        self.active_adapters: list[str] = []
        self.merged_adapters: list[str] = []
        self.disable_adapters = False
        self.batch_plan = None  # set by mixed_batch; refused in forward

    @property
    def adapter_names(self) -> list[str]:
        return list(self.token_adapter.token_indices)

    def add_adapter(self, name: str, indices: list[int]) -> None:
        weight = self.base_layer.weight
        if any(not 0 <= i < weight.shape[0] for i in indices):
            raise InvalidConfig(
                f"trainable_token_indices {indices} reach outside the vocabulary of {weight.shape[0]}"
            )
        rows = weight.detach()[torch.tensor(indices, device=weight.device)].clone()  # (n, dim)
        self.token_adapter.token_indices[name] = list(indices)
        self.token_adapter.trainable_tokens_original[name] = rows.clone()
        self.token_adapter.trainable_tokens_delta[name] = nn.Parameter(rows)

    def delete_adapter(self, name: str) -> None:
        del self.token_adapter.trainable_tokens_delta[name]
        del self.token_adapter.token_indices[name]
        del self.token_adapter.trainable_tokens_original[name]
        self.active_adapters = [a for a in self.active_adapters if a != name]

    def table(self, names: list[str]) -> torch.Tensor:
        """The embedding table with adapters ``names``' rows put in."""
        weight = self.base_layer.weight
        for name in names:
            index = torch.tensor(self.token_adapter.token_indices[name], device=weight.device)
            weight = weight.index_copy(0, index, self.token_adapter.trainable_tokens_delta[name].to(weight))
        return weight

    def merge(self, adapter_names: list[str] | None = None) -> None:
        names = [
            n
            for n in (self.active_adapters if adapter_names is None else adapter_names)
            if n in self.token_adapter.token_indices and n not in self.merged_adapters
        ]
        self.base_layer.weight.data = self.table(names).detach()
        self.merged_adapters.extend(names)

    def unmerge(self) -> None:
        weight = self.base_layer.weight
        while self.merged_adapters:
            name = self.merged_adapters.pop()
            index = torch.tensor(self.token_adapter.token_indices[name], device=weight.device)
            weight.data.index_copy_(0, index, self.token_adapter.trainable_tokens_original[name].to(weight))

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if self.batch_plan is not None:
            raise UnsupportedFeature(
                "mixed batches (adapter_names=...) with trainable_token_indices are not "
                "supported; run one adapter per batch"
            )
        if self.disable_adapters and self.merged_adapters:
            self.unmerge()
        if self.disable_adapters or self.merged_adapters or not self.active_adapters:
            return self.base_layer(x, *args, **kwargs)
        base = self.base_layer
        return F.embedding(
            x,
            self.table(self.active_adapters),
            base.padding_idx,
            base.max_norm,
            base.norm_type,
            base.scale_grad_by_freq,
            base.sparse,
        )


def attach_trainable_tokens(
    model: nn.Module, indices: list[int] | dict[str, list[int]], adapter_name: str
) -> None:
    """Give ``adapter_name`` trainable rows in the embeddings ``indices`` names (a list: the input
    embedding)."""
    if isinstance(indices, dict):
        targets = dict(indices)
    else:
        embedding = model.get_input_embeddings()
        targets = {next(n for n, m in model.named_modules() if m is embedding): list(indices)}
    found = {}
    for name, wanted in targets.items():
        named = [(key, m) for key, m in model.named_modules() if key == name or key.endswith(f".{name}")]
        if any(isinstance(m, LoraLayer) for _, m in named):
            raise UnsupportedFeature(
                f"trainable_token_indices on {name!r}, which LoRA also targets, is not "
                f"supported; leave the embedding out of target_modules"
            )
        matches = [key for key, m in named if isinstance(m, (nn.Embedding, TrainableTokensWrapper))]
        if not matches:
            raise TargetModuleNotFound(
                f"trainable_token_indices names {name!r}, which is no nn.Embedding of the model"
            )
        found.update({key: wanted for key in matches})
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    for key in found:
        module = model.get_submodule(key)
        base = module.base_layer if isinstance(module, TrainableTokensWrapper) else module
        if output is not None and getattr(output, "weight", None) is base.weight:
            raise UnsupportedFeature(
                f"trainable_token_indices on {key!r}, whose table is tied to the output layer, "
                f"is not supported; untie the embeddings or use modules_to_save"
            )
    for key, wanted in found.items():
        module = model.get_submodule(key)
        if not isinstance(module, TrainableTokensWrapper):
            module = TrainableTokensWrapper(module)
            parent_name, _, child_name = key.rpartition(".")
            setattr(model.get_submodule(parent_name), child_name, module)
        module.add_adapter(adapter_name, wanted)
