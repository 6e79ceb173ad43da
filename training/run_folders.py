"""Run folders: each training run writes into its own folder, so no run overwrites another's files.

Without ``--output``, a run of adapter NAME gets ``<home>/runs/NAME/<UTC time>`` (``-2``, ``-3``
... added when another run of NAME started in the same second), and ``--resume`` continues the
newest of them. An explicit ``--output`` is the run folder itself: a new run there is refused once
it holds a run, and ``--resume`` continues it.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from itertools import chain, count
from pathlib import Path

RUN_FILES = ("run.json", "checkpoints", "best", "adapter")  # what a run writes into its folder
_RUN_NAME = re.compile(r"(?P<stamp>\d{8}-\d{6})(?:-(?P<n>\d+))?")


def new_run_folder(runs: Path, now: datetime | None = None) -> Path:
    """A folder under ``runs`` that no run has used, named for ``now`` (default: this second, UTC)."""
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%d-%H%M%S")
    names = chain([stamp], (f"{stamp}-{n}" for n in count(2)))
    return next(runs / name for name in names if not (runs / name).exists())


def latest_run_folder(runs: Path) -> Path | None:
    """The newest run folder under ``runs`` (by the time in its name), or None when there is none."""
    if not runs.is_dir():
        return None
    found = [
        (match["stamp"], int(match["n"] or 1), folder)
        for folder in runs.iterdir()
        if folder.is_dir() and (match := _RUN_NAME.fullmatch(folder.name))
    ]
    return max(found)[2] if found else None


def holds_run(folder: Path) -> bool:
    """Whether a run has written into ``folder``."""
    return any((folder / name).exists() for name in RUN_FILES)
