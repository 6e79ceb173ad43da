"""Getting adapters back out: ``pull`` (verified files) and ``load`` (a ready ``PeftModel``)."""

from __future__ import annotations

from pathlib import Path

from adapterlab.registry.artifacts import download_adapter
from adapterlab.registry.queries import show
from adapterlab.registry.records import AdapterVersion


def pull(ref: str, to_dir: Path | str, registry_url: str | None = None) -> AdapterVersion:
    """Download the files of ``ref`` into ``to_dir`` (absent or empty), verified against their sha256."""
    version = show(ref, registry_url)
    download_adapter(version.artifact_uri, version.sha256, Path(to_dir))
    return version
