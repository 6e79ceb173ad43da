"""The Hugging Face Hub, seen from the registry: its local cache, and the Hub itself only when online.

Whether the Hub can be reached is decided at once, before any download: ``HF_HUB_OFFLINE`` set,
or no TCP connection to the endpoint within ``PROBE_SECONDS``, means offline. Without that
probe a missing model costs a minute of huggingface_hub's retries before it says so. Both the
cache folder and the endpoint are read from the environment when used, not when
huggingface_hub was first imported. huggingface_hub is imported inside the functions.
"""

from __future__ import annotations

import os
import re
import socket
import threading
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_ENDPOINT = "https://huggingface.co"
PROBE_SECONDS = 2.0
HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?")
_TRUE = {"1", "ON", "YES", "TRUE"}  # huggingface_hub's spelling of a set flag
# what a base needs from its repository: config, tokenizer and weights, never code
_MODEL_FILES = ["*.json", "*.txt", "*.model", "*.tiktoken"]


def endpoint() -> str:
    return os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT


def cached_snapshot(repo_id: str, revision: str | None = None) -> Path | None:
    """The cached snapshot of a Hub model id at ``revision`` (None: main), without touching the network."""
    if not HUB_ID.fullmatch(repo_id):
        return None
    try:
        from huggingface_hub import snapshot_download

        return Path(
            snapshot_download(
                repo_id, revision=revision, local_files_only=True, cache_dir=os.environ.get("HF_HUB_CACHE")
            )
        )
    except Exception:  # not cached (or no huggingface_hub): the caller says what it tried
        return None


def hub_reachable() -> bool:
    """False at once when offline: ``HF_HUB_OFFLINE`` set, or the endpoint (or the proxy to it) refuses
    or stays silent for ``PROBE_SECONDS``, name resolution included."""
    from urllib.request import getproxies, proxy_bypass  # costly to import: only when probing

    if os.environ.get("HF_HUB_OFFLINE", "").upper() in _TRUE:
        return False
    address = urlsplit(endpoint())
    proxy = getproxies().get(address.scheme)
    if proxy and not proxy_bypass(address.hostname or ""):
        address = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    if not address.hostname:
        return False
    port = address.port or (443 if address.scheme == "https" else 80)
    answers: list[bool] = []
    # a thread, because name resolution ignores socket timeouts and may hang far longer
    probe = threading.Thread(target=lambda: answers.append(_connects(address.hostname, port)), daemon=True)
    probe.start()
    probe.join(PROBE_SECONDS)
    return bool(answers and answers[0])


def _connects(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=PROBE_SECONDS).close()
    except OSError:
        return False
    return True


def download_snapshot(repo_id: str, revision: str | None = None) -> Path:
    """The model's files at ``revision``, downloaded into the Hugging Face cache (call when online)."""
    from huggingface_hub import HfApi, snapshot_download

    files = HfApi(endpoint=endpoint()).list_repo_files(repo_id, revision=revision)
    # one weights format: safetensors when the repository has them, else the PyTorch files
    weights = "*.safetensors" if any(name.endswith(".safetensors") for name in files) else "*.bin"
    return Path(
        snapshot_download(
            repo_id,
            revision=revision,
            allow_patterns=[*_MODEL_FILES, weights],
            cache_dir=os.environ.get("HF_HUB_CACHE"),
            endpoint=endpoint(),
        )
    )
