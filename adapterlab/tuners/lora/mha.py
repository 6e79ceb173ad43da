"""LoRA on ``nn.MultiheadAttention`` (PyTorch's attention module, as in ``nn.TransformerEncoderLayer``).

``nn.MultiheadAttention`` projects query, key and value with one raw parameter, ``in_proj_weight``
(3 * embed, embed), and reads its output projection's ``weight`` itself instead of calling
``out_proj``: there is no linear forward to wrap. This layer adapts both projections with each
adapter: its own A (r, embed) and B (3 * embed, r) update ``in_proj_weight``, and ``out_proj`` is
wrapped in a LoRA :class:`~adapterlab.tuners.lora.layer.Linear` holding the same adapters. While the
module runs, both weights read as ``W + scaling * B @ A``
(:mod:`~adapterlab.tuners.lora.weight_space`); merging writes both.

Hugging Face PEFT up to at least 0.21 adds the out_proj update twice (its merge writes
``W + dW`` and then merges ``dW`` again, also on every unmerged forward: its PR #3774); here it is
added once, as LoRA defines it, so an adapter with a nonzero out_proj update gives other outputs there.

Checkpoint keys are Hugging Face PEFT's: ``mha.lora_A.weight`` (in_proj) and
``mha.base_layer.out_proj.lora_A.weight``. Query, key and value must have one size (``kdim`` and
``vdim`` equal to ``embed_dim``, so the projection is packed). DoRA, lora_bias, PiSSA/OLoRA
initializations and mixed batches are refused; lora_dropout has no effect (the update acts on the
weights, never on the inputs), as in Hugging Face PEFT.

``nn.TransformerEncoderLayer`` in eval mode may take PyTorch's fused fast path, which reads the
attention (and feed-forward) weights itself and so skips any unmerged LoRA layer, here as in
Hugging Face PEFT: merge the adapter for such inference, or turn the fast path off with
``torch.backends.mha.set_fastpath_enabled(False)``.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from adapterlab.errors import UnsupportedFeature
from adapterlab.tuners.lora import init
from adapterlab.tuners.lora.layer import Linear
from adapterlab.tuners.lora.weight_space import Shift, WeightSpaceLayer

# initializations that rewrite the base weight from its own decomposition: not for the packed in_proj
BASE_REWRITING_INITS = ("pissa", "olora")


class MultiheadAttention(WeightSpaceLayer):
    """LoRA around an ``nn.MultiheadAttention``: each adapter updates ``in_proj_weight`` and
    ``out_proj.weight``."""

    def __init__(self, base_layer: nn.MultiheadAttention) -> None:
        super().__init__(base_layer, base_layer.embed_dim, 3 * base_layer.embed_dim)
        base_layer.out_proj = Linear(base_layer.out_proj)

    def __getattr__(self, name: str) -> Any:
        # Code written for nn.MultiheadAttention (nn.TransformerEncoderLayer's checks) reads its
        # attributes (batch_first, num_heads, in_proj_bias, ...): answer those from the wrapped module.
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name.startswith("__") or name == "base_layer" or "_modules" not in self.__dict__:
                raise
            return getattr(self.base_layer, name)

    @property
    def out_proj_layer(self) -> Linear:
        return self.base_layer.out_proj

    def adapted_weight(self) -> nn.Parameter:
        return self.base_layer.in_proj_weight

    def add_adapter(
        self, name: str, r: int, alpha: float, dropout: float, use_rslora: bool, **kw: Any
    ) -> None:
        check_options("nn.MultiheadAttention", kw)
        super().add_adapter(name, r, alpha, dropout, use_rslora, **kw)
        self.add_factors(name, r, self.adapted_weight())
        init.initialize(self, name, kw.get("init_lora_weights", True))
        self.out_proj_layer.add_adapter(name, r, alpha, dropout, use_rslora, **kw)

    def release_to_meta(self, name: str) -> None:
        super().release_to_meta(name)
        self.out_proj_layer.release_to_meta(name)

    def delete_adapter(self, name: str) -> None:
        super().delete_adapter(name)
        self.out_proj_layer.delete_adapter(name)

    def shifts(self, names: list[str]) -> list[Shift]:
        out_proj = self.out_proj_layer
        return [
            ("in_proj_weight", sum(self.get_delta_weight(n) for n in names)),
            ("out_proj.base_layer.weight", sum(out_proj.get_delta_weight(n) for n in names)),
        ]

    def check_mergeable(self, names: list[str]) -> None:
        super().check_mergeable(names)
        self.out_proj_layer.check_mergeable(names)

    def merge(self, safe_merge: bool = False, adapter_names: list[str] | None = None) -> None:
        super().merge(safe_merge=safe_merge, adapter_names=adapter_names)
        self.out_proj_layer.merge(safe_merge=safe_merge, adapter_names=adapter_names)

    def unmerge(self, keep: int = 0) -> None:
        super().unmerge(keep)
        self.out_proj_layer.unmerge(keep)

    def unloaded(self, merge: bool, safe_merge: bool, adapter_names: list[str] | None) -> nn.Module:
        attention = super().unloaded(merge, safe_merge, adapter_names)
        attention.out_proj = self.out_proj_layer.base_layer
        return attention


def check_packed(name: str, module: nn.MultiheadAttention) -> None:
    """Raise UnsupportedFeature unless ``module`` (found at ``name``) packs q, k, v in in_proj_weight."""
    if not module._qkv_same_embed_dim:
        raise UnsupportedFeature(
            "Only same embed for query/key/value is supported as of now for MultiheadAttention: LoRA on "
            f"{name!r} needs kdim == vdim == embed_dim; leave this attention layer out of target_modules"
        )


def check_options(name: str, options: dict[str, Any]) -> None:
    """Refuse the adapter options (``add_adapter``'s keywords) this layer cannot honour, by name."""
    if options.get("use_dora"):
        raise UnsupportedFeature(
            f"MultiheadAttention does not support DoRA (yet), please set use_dora to False or leave {name!r} "
            "out of target_modules"
        )
    init_weights = options.get("init_lora_weights", True)
    refused = {
        "lora_bias=True": options.get("lora_bias"),
        f"init_lora_weights={init_weights!r}": isinstance(init_weights, str)
        and init_weights.startswith(BASE_REWRITING_INITS),
    }
    for option, used in refused.items():
        if used:
            raise UnsupportedFeature(
                f"{option} is not supported on nn.MultiheadAttention ({name!r}); change that option or "
                "leave the attention layer out of target_modules"
            )
