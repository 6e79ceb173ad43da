"""The low-rank path of a LoRA linear layer as one autograd function.

``result + ((x * mask) @ A.T) @ B_scaled.T`` with the backward written out, so every GEMM runs in
the orientation CPU BLAS is fast at: autograd's own backward forms B's (out x r) gradient as
``grad.T @ hidden``, a transposed, skinny product several times slower than
``(hidden.T @ grad).T``, and multiplies the gradient by B as laid out, twice as slow as by a
transposed copy. Nothing else changes: same values, same gradients.

Shapes: x (..., in), mask like x or None, A (r, in), B_scaled (out, r), result (..., out).
"""

from __future__ import annotations

from typing import Any

import torch


class _LowRankUpdate(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, result: torch.Tensor, x: torch.Tensor, mask: torch.Tensor | None,
                a: torch.Tensor, b_scaled: torch.Tensor) -> torch.Tensor:
        dropped = x if mask is None else x * mask
        flat_x = dropped.reshape(-1, dropped.shape[-1])  # (N, in)
        hidden = flat_x @ a.T  # (N, r)
        out = torch.addmm(result.reshape(-1, result.shape[-1]), hidden, b_scaled.T)  # (N, out)
        ctx.save_for_backward(flat_x, hidden, a, b_scaled, mask)
        return out.view(result.shape)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        flat_x, hidden, a, b_scaled, mask = ctx.saved_tensors
        flat_grad = grad.reshape(-1, grad.shape[-1])  # (N, out)
        # B^T copied to (r, out): multiplying by its transposed view is ~2x faster than by B itself
        grad_hidden = flat_grad @ b_scaled.t().contiguous().t()  # (N, r)
        grad_a = grad_hidden.T @ flat_x if ctx.needs_input_grad[3] else None
        grad_b = (hidden.T @ flat_grad).T if ctx.needs_input_grad[4] else None
        grad_x = None
        if ctx.needs_input_grad[1]:
            grad_x = (grad_hidden @ a).view(*grad.shape[:-1], a.shape[1])
            if mask is not None:
                grad_x.mul_(mask)
        return grad if ctx.needs_input_grad[0] else None, grad_x, None, grad_a, grad_b


def low_rank_update(result: torch.Tensor, x: torch.Tensor, mask: torch.Tensor | None,
                    a: torch.Tensor, b_scaled: torch.Tensor) -> torch.Tensor:
    """``result + ((x * mask) @ a.T) @ b_scaled.T`` (``mask`` None: no dropout)."""
    return _LowRankUpdate.apply(result, x, mask, a, b_scaled)
