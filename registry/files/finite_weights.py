"""Refusing weights that hold NaN or infinity before they are registered.

A diverged run saves NaNs without complaint, and the adapter then loads and runs and answers
garbage. Every floating-point tensor is scanned on its raw bits (an exponent of all ones means
inf or NaN in every IEEE-style format), which needs only numpy and works for bfloat16 and the
8-bit floats that numpy has no dtype for. Files are read in bounded chunks through a memory map.
"""

from __future__ import annotations

from pathlib import Path

from adapterlab.errors import CheckpointError
from adapterlab.registry.files.checkpoint_files import TensorEntry

# safetensors dtype -> (bytes per element, mask of the exponent bits, value when not finite)
_SPECIALS = {
    "F64": (8, 0x7FF0000000000000, 0x7FF0000000000000),
    "F32": (4, 0x7F800000, 0x7F800000),
    "F16": (2, 0x7C00, 0x7C00),
    "BF16": (2, 0x7F80, 0x7F80),
    "F8_E5M2": (1, 0x7C, 0x7C),
    "F8_E4M3": (1, 0x7F, 0x7F),  # the "fn" variant: no infinities, NaN is S.1111.111
}
_CHUNK = 1 << 24  # elements per read: bounded memory for any tensor size


def check_finite(entries: list[TensorEntry], source: Path) -> None:
    """Raise CheckpointError naming the first tensor (by name) that holds NaN or inf."""
    for entry in sorted(entries, key=lambda item: item.name):
        if entry.dtype in _SPECIALS and entry.length and not _finite(entry):
            raise CheckpointError(
                f"tensor {entry.name!r} in {source} holds NaN or infinite values (a diverged run?); "
                "refusing to register it: retrain or pick an earlier checkpoint"
            )


def _finite(entry: TensorEntry) -> bool:
    import numpy as np

    width, mask, special = _SPECIALS[entry.dtype]
    bits = np.dtype(f"<u{width}")
    count = entry.length // width
    if entry.buffer is not None:
        values = np.frombuffer(entry.buffer, dtype=bits, count=count)
    else:
        values = np.memmap(entry.path, dtype=bits, mode="r", offset=entry.offset, shape=(count,))
    for start in range(0, count, _CHUNK):
        if np.any((values[start : start + _CHUNK] & bits.type(mask)) == bits.type(special)):
            return False
    return True
