"""Shortening a long ``target_modules`` list of full module names, as HF PEFT does on injection.

Tools that list every layer by its full dotted path (``model.layers.0.self_attn.q_proj``, ...) make
configs with hundreds of names that are slow to match and hard to read. After injection, such a
list is replaced by the shortest name suffixes that select exactly the same modules: every chosen
suffix matches only targeted modules, and every targeted module is matched by one of them. The
adapted layers do not change; only the saved config gets shorter (and matches HF PEFT's).
"""

from __future__ import annotations

from collections.abc import Iterable

from adapterlab.errors import InvalidConfig

# lists shorter than this are left as the user wrote them (HF PEFT's threshold)
MIN_TARGET_MODULES_FOR_OPTIMIZATION = 20


def _suffixes(name: str) -> list[str]:
    """The dotted suffixes of ``name``, shortest first: ``a.b.c`` -> ``c``, ``b.c``, ``a.b.c``."""
    parts = name.split(".")
    return [".".join(parts[i:]) for i in range(len(parts) - 1, -1, -1)]


def find_minimal_target_modules(target_modules: Iterable[str], other_module_names: Iterable[str]) -> set[str]:
    """The shortest suffixes that match every name in ``target_modules`` and none in ``other_module_names``.

    A suffix matches a name equal to it or ending with ``.<suffix>`` (the ``target_modules`` list rule).
    """
    if isinstance(target_modules, str) or not target_modules:
        raise InvalidConfig(f"target_modules should be a list or set of strings, got {target_modules!r}")
    targets = set(target_modules)
    if "" in targets:
        raise InvalidConfig("target_modules should not contain an empty string; remove it")
    others = set(other_module_names)
    common = targets & others
    if common:
        raise InvalidConfig(
            "target_modules and other_module_names contain common elements "
            f"({', '.join(sorted(common)[:5])}); a module cannot be both targeted and not targeted"
        )
    # every suffix of a non-targeted name is unusable: choosing it would also select that module
    forbidden = {suffix for name in others for suffix in _suffixes(name)}
    chosen: set[str] = set()
    uncovered = set(targets)
    # shortest candidates first, so one short suffix ("k_proj") can cover many targets at once
    candidates = sorted(
        {s for name in targets for s in _suffixes(name)} - forbidden, key=lambda s: (s.count("."), s)
    )
    for suffix in candidates:
        covered = {name for name in uncovered if name == suffix or name.endswith(f".{suffix}")}
        if covered:
            chosen.add(suffix)
            uncovered -= covered
        if not uncovered:
            break
    return chosen
