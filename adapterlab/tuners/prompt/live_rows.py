"""Input gradients of the frozen base's last block, computed only for the rows that carry gradient.

Under a prompt method every weight of the base model is frozen, so its backward computes input
gradients only, ``grad_x = grad_y @ W`` for each linear layer. Near the output most rows of
``grad_y`` are exactly zero:

- a sequence-classification head reads one position per sequence (BERT's pooler the first, the
  ``score`` heads of GPT-2 and Llama the last real token), so 1 row of every ``N + L`` is live;
- a language-model loss skips the virtual tokens and padding (label -100).

A zero row of ``grad_y`` gives a zero row of ``grad_x``, yet the dense GEMM computes it all the
same. In the last transformer block that is nearly all of the block's backward: its feed-forward,
output and query projections see only the live rows. Its key and value projections spread the
gradient to every row (each live query attends to all keys), so the blocks below see dense
gradients and gain nothing; that is why only the last block and the output head are wrapped.

The wrapped layers compute the same forward (the module's own), and a backward that multiplies
only the live rows, ``(k, out) @ (out, in)``, scattering them into zeros. The result equals the
dense product row for row: a row of zeros times a finite ``W`` is zero, and a row holding NaN or inf is
live and is multiplied as before. It applies only when the layer's weight and bias are frozen
(otherwise the layer runs its own forward, weight gradients and all) and only on CPU, where
training is compute-bound; on an accelerator, finding the live rows would make the host wait for
the device in the middle of backward.

Which block is last is a heuristic over the module tree, and it decides speed only: wrapping any
frozen linear layer, or none, leaves every output and gradient unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from adapterlab.tuners.prompt.model_sizes import layer_counts


class _LiveRowsInputGrad(torch.autograd.Function):
    """``module``'s own forward of ``x``; backward multiplies only the nonzero gradient rows."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, module: nn.Module, dense_forward: Any) -> torch.Tensor:
        # (out, in) for nn.Linear; transformers' Conv1D stores (in, out), hence the transpose
        ctx.weight = module.weight.t() if isinstance(module, Conv1D) else module.weight
        return dense_forward(module, x)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        # under autocast the forward multiplied a lower-precision copy of the weight
        return live_rows_matmul(grad_output, ctx.weight.to(grad_output.dtype)), None, None


def live_rows_matmul(grad_output: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``grad_output @ weight`` for ``grad_output`` (..., out) and ``weight`` (out, in), computing
    only the rows of ``grad_output`` that hold a nonzero value; the other rows are zero."""
    rows = grad_output.reshape(-1, grad_output.shape[-1])  # (M, out)
    live = rows.any(dim=1).nonzero().squeeze(1)  # (k,)
    if live.numel() == rows.shape[0]:
        return grad_output @ weight
    result = rows.new_zeros(rows.shape[0], weight.shape[1])  # (M, in)
    if live.numel():
        result.index_copy_(0, live, rows.index_select(0, live) @ weight)
    return result.view(*grad_output.shape[:-1], weight.shape[1])


def _forward(module: nn.Module, x: torch.Tensor, dense_forward: Any) -> torch.Tensor:
    frozen = not module.weight.requires_grad and (module.bias is None or not module.bias.requires_grad)
    if frozen and x.requires_grad and x.device.type == "cpu" and torch.is_grad_enabled():
        return _LiveRowsInputGrad.apply(x, module, dense_forward)
    return dense_forward(module, x)


# The layers change class rather than get an instance ``forward``: a class travels with every
# copy of the module (deepcopy, pickle, DataParallel's replicas, which copy ``__dict__`` and would
# keep an instance forward bound to the original). ``_get_name`` keeps ``print(model)`` as it was.


class LiveRowsLinear(nn.Linear):
    """``nn.Linear`` with the live-row backward."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _forward(self, x, nn.Linear.forward)

    def _get_name(self) -> str:
        return "Linear"


class LiveRowsConv1D(Conv1D):
    """transformers' ``Conv1D`` (GPT-2) with the live-row backward."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _forward(self, x, Conv1D.forward)

    def _get_name(self) -> str:
        return "Conv1D"


# exactly these classes: subclasses (quantized linears, LoRA layers) compute something else
LIVE_ROWS_CLASSES: dict[type[nn.Module], type[nn.Module]] = {nn.Linear: LiveRowsLinear, Conv1D: LiveRowsConv1D}


def last_block(model: nn.Module) -> nn.Module | None:
    """The model's last transformer block: the last member of the last outermost ``ModuleList``
    whose length is a layer count of the model's config (the decoder's, for encoder-decoders)."""
    counts = layer_counts(model.config)
    stacks: list[tuple[str, nn.ModuleList]] = []
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) in counts:
            # lists inside a block (T5 keeps its sublayers in one) are not the stack of blocks
            if not any(name.startswith(f"{outer}.") for outer, _ in stacks):
                stacks.append((name, module))
    return stacks[-1][1][-1] if stacks else None


def wrap_output_layers(model: nn.Module) -> list[nn.Module]:
    """Give the linear layers of ``model``'s last block and its output head the live-row
    backward; returns the layers changed."""
    candidates: list[nn.Module] = []
    block = last_block(model)
    if block is not None:
        candidates.extend(block.modules())
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is not None:
        candidates.append(head)
    wrapped = []
    for module in candidates:
        live_class = LIVE_ROWS_CLASSES.get(type(module))
        if live_class is not None:
            module.__class__ = live_class
            wrapped.append(module)
    return wrapped
