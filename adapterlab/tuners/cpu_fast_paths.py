"""CPU training fast paths: the same numbers as the plain layers, computed the way CPU BLAS is fast.

The adapter layers read like the papers (LoRA's forward is ``result + lora_B(lora_A(dropout(x))) *
scaling``). On CPU, where training is compute-bound, three pieces of this module replace parts of
that plain computation with equal results (tests/core/test_cpu_fast_paths.py proves it):

- **keep-mask dropout** (:func:`keep_mask`): ``nn.Dropout`` spends most of its CPU time drawing one
  random number per element; here each 64-bit draw yields four 16-bit uniforms, about 8x faster.
- **the fused low-rank update** (:func:`lora_linear_update`): LoRA's linear path as one autograd
  function whose backward runs every GEMM in the orientation CPU BLAS is fast at, with dropout's
  mask applied inside and ``scaling / (1 - p)`` folded into the tiny B.
- **live rows** (:func:`wrap_live_rows`, prompt methods only, opt-in): the frozen output layers
  multiply only the gradient rows that are nonzero in backward.

They run only on CPU tensors. The switch: ``ADAPTERLAB_CPU_FAST_PATHS=0`` in the environment, or
``configure(enabled=False)``, turns them all off (the plain path runs everywhere). Live rows changes the
class of the user's frozen layers, so it is off unless asked for: ``ADAPTERLAB_LIVE_ROWS=1`` or
``configure(live_rows=True)`` before the prompt adapter is added; deleting the last prompt adapter
puts the layers' classes back.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from adapterlab.tuners.prompt.model_sizes import layer_counts

ENABLED_ENV = "ADAPTERLAB_CPU_FAST_PATHS"
LIVE_ROWS_ENV = "ADAPTERLAB_LIVE_ROWS"

# set by configure(); None: the environment decides
_settings: dict[str, bool | None] = {"enabled": None, "live_rows": None}


def configure(enabled: bool | None = None, live_rows: bool | None = None) -> None:
    """Turn the CPU fast paths on or off (``enabled``) and opt in to live rows (``live_rows``).

    ``None`` hands the decision back to the environment (``ADAPTERLAB_CPU_FAST_PATHS``,
    ``ADAPTERLAB_LIVE_ROWS``)."""
    _settings["enabled"] = enabled
    _settings["live_rows"] = live_rows


def enabled() -> bool:
    """Whether the fast paths may run (on CPU tensors); on unless switched off."""
    if _settings["enabled"] is not None:
        return bool(_settings["enabled"])
    return os.environ.get(ENABLED_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def live_rows_enabled() -> bool:
    """Whether prompt methods give their frozen output layers the live-row backward; off unless asked."""
    if _settings["live_rows"] is not None:
        return bool(_settings["live_rows"]) and enabled()
    return os.environ.get(LIVE_ROWS_ENV, "0").strip().lower() in ("1", "true", "yes", "on") and enabled()


# -- keep-mask dropout ----------------------------------------------------------------------------


def random_int16(n: int) -> torch.Tensor:
    """``n`` uniform int16 values on CPU, from torch's default generator.

    One 64-bit draw from torch seeds NumPy's PCG64, which fills the bits about 1.7x faster than
    torch's Mersenne Twister; so ``torch.manual_seed`` still decides every mask.
    """
    seed = int(torch.empty((), dtype=torch.int64).random_(-(2**63), None)) & (2**64 - 1)
    bits = np.random.PCG64(seed).random_raw((n + 3) // 4)
    return torch.from_numpy(bits.view(np.int16)[:n])


def keep_mask(x: torch.Tensor, p: float) -> tuple[torch.Tensor, float]:
    """``(mask, scale)`` for dropout ``p`` on CPU tensor ``x``: dropout is ``x * mask * scale``.

    ``mask`` is uint8, 0 or 1 per element of ``x`` (a quarter of a float mask's memory traffic in
    the passes that touch it, and as fast to multiply by; a bool mask is not). ``p`` is rounded to
    a multiple of 1/65536 and ``scale`` is the exact 1 / (1 - rounded p), so the output stays
    unbiased.
    """
    dropped = round(p * 65536)
    uniform16 = random_int16(x.numel()).view(x.shape)
    mask = torch.empty(x.shape, dtype=torch.uint8)
    return torch.ge(uniform16, dropped - 32768, out=mask), 65536 / (65536 - dropped)


# -- the fused low-rank update --------------------------------------------------------------------


class _LowRankUpdate(torch.autograd.Function):
    """``result + ((x * mask) @ A.T) @ B_scaled.T`` with the backward written out.

    Autograd's own backward forms B's (out x r) gradient as ``grad.T @ hidden``, a transposed,
    skinny product several times slower on CPU than ``(hidden.T @ grad).T``, and multiplies the
    gradient by B as laid out, twice as slow as by a transposed copy.

    Shapes: x (..., in), mask like x or None, A (r, in), B_scaled (out, r), result (..., out).
    """

    @staticmethod
    def forward(
        ctx: Any,
        result: torch.Tensor,
        x: torch.Tensor,
        mask: torch.Tensor | None,
        a: torch.Tensor,
        b_scaled: torch.Tensor,
    ) -> torch.Tensor:
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


def low_rank_update(
    result: torch.Tensor, x: torch.Tensor, mask: torch.Tensor | None, a: torch.Tensor, b_scaled: torch.Tensor
) -> torch.Tensor:
    """``result + ((x * mask) @ a.T) @ b_scaled.T`` (``mask`` None: no dropout)."""
    return _LowRankUpdate.apply(result, x, mask, a, b_scaled)


def takes_lora_linear(
    x: torch.Tensor, result: torch.Tensor, dropout: nn.Module, lora_a: nn.Module, lora_b: nn.Module
) -> bool:
    """Whether :func:`lora_linear_update` may replace the plain path for these tensors and modules."""
    return (
        x.device.type == "cpu"
        and type(dropout) in (nn.Dropout, nn.Identity)  # a dropout module swapped in by the user runs as is
        and type(lora_a) is nn.Linear
        and type(lora_b) is nn.Linear
        and lora_b.bias is None
        and x.dtype == result.dtype == lora_a.weight.dtype
        and enabled()
    )


def lora_linear_update(
    result: torch.Tensor,
    x: torch.Tensor,
    dropout: nn.Module,
    a: torch.Tensor,
    b: torch.Tensor,
    scaling: float,
) -> torch.Tensor:
    """``result + B(A(dropout(x))) * scaling`` as one fused update (equal to the plain path).

    ``dropout`` is the layer's ``nn.Dropout`` (or ``nn.Identity``): only its ``p`` and training mode
    are read; the mask comes from :func:`keep_mask`."""
    mask, keep_scale = None, 1.0
    if isinstance(dropout, nn.Dropout) and dropout.training and dropout.p > 0:
        mask, keep_scale = keep_mask(x, dropout.p)
    # scaling and dropout's 1 / (1 - p) folded into the tiny B (out x r) instead of passes over the
    # (..., in) input or the (..., out) output
    return low_rank_update(result, x, mask, a, b * (scaling * keep_scale))


# -- live rows (prompt methods) -------------------------------------------------------------------
#
# Under a prompt method every base weight is frozen, so the base's backward computes only input
# gradients, ``grad_x = grad_y @ W``. Near the output most rows of ``grad_y`` are exactly zero (a
# classification head reads one position per sequence; a language-model loss skips the virtual
# tokens and padding), and a zero row of ``grad_y`` gives a zero row of ``grad_x``. In the last
# block and the output head, multiplying only the live rows saves nearly all the backward's work;
# the blocks below see dense gradients (keys and values spread them), so only those are wrapped.
# A row holding NaN or inf is live and is multiplied as before, so results equal the dense product.


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


def _live_rows_forward(module: nn.Module, x: torch.Tensor, dense_forward: Any) -> torch.Tensor:
    # only frozen layers (else weight gradients are needed) and only on CPU: on an accelerator,
    # finding the live rows would make the host wait for the device in the middle of backward
    frozen = not module.weight.requires_grad and (module.bias is None or not module.bias.requires_grad)
    if frozen and x.requires_grad and x.device.type == "cpu" and torch.is_grad_enabled() and enabled():
        return _LiveRowsInputGrad.apply(x, module, dense_forward)
    return dense_forward(module, x)


# The layers change class rather than get an instance ``forward``: a class travels with every copy
# of the module (deepcopy, pickle, DataParallel's replicas, which copy ``__dict__`` and would keep an
# instance forward bound to the original). ``_get_name`` keeps ``print(model)`` as it was.


class LiveRowsLinear(nn.Linear):
    """``nn.Linear`` with the live-row backward."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _live_rows_forward(self, x, nn.Linear.forward)

    def _get_name(self) -> str:
        return "Linear"


class LiveRowsConv1D(Conv1D):
    """transformers' ``Conv1D`` (GPT-2) with the live-row backward."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _live_rows_forward(self, x, Conv1D.forward)

    def _get_name(self) -> str:
        return "Conv1D"


# exactly these classes: subclasses (quantized linears, LoRA layers) compute something else
LIVE_ROWS_CLASSES: dict[type[nn.Module], type[nn.Module]] = {
    nn.Linear: LiveRowsLinear,
    Conv1D: LiveRowsConv1D,
}
PLAIN_CLASSES: dict[type[nn.Module], type[nn.Module]] = {
    live: plain for plain, live in LIVE_ROWS_CLASSES.items()
}


def last_block(model: nn.Module) -> nn.Module | None:
    """The model's last transformer block: the last member of the last outermost ``ModuleList``
    whose length is a layer count of the model's config (the decoder's, for encoder-decoders).

    Which block is last decides speed only: wrapping any frozen linear layer, or none, leaves
    every output and gradient unchanged."""
    counts = layer_counts(model.config)
    stacks: list[tuple[str, nn.ModuleList]] = []
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) in counts:
            # lists inside a block (T5 keeps its sublayers in one) are not the stack of blocks
            if not any(name.startswith(f"{outer}.") for outer, _ in stacks):
                stacks.append((name, module))
    return stacks[-1][1][-1] if stacks else None


def wrap_live_rows(model: nn.Module) -> list[nn.Module]:
    """Give the linear layers of ``model``'s last block and its output head the live-row backward;
    returns the layers changed."""
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


def unwrap_live_rows(model: nn.Module) -> None:
    """Give every live-row layer under ``model`` its original class back."""
    for module in model.modules():
        plain_class = PLAIN_CLASSES.get(type(module))
        if plain_class is not None:
            module.__class__ = plain_class
