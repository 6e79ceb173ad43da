"""Where an adapter's files are: a local folder, or a Hugging Face Hub repo fetched into the cache.

``PeftModel.from_pretrained(model, "org/adapter")`` takes either, as HF PEFT does. A path that is
a folder on disk always wins; anything else that is a valid repo id is fetched with
``huggingface_hub`` (a dependency of transformers), which keeps the files in its usual cache, so
``HF_HUB_OFFLINE=1``, ``HF_HUB_CACHE`` and ``HF_TOKEN`` work as for transformers models. Only the
adapter's own files are fetched: its config and its weights.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from adapterlab.errors import CheckpointError
from adapterlab.hf_format import CONFIG_NAME, SAFETENSORS_WEIGHTS_NAME, WEIGHTS_NAME


@dataclass(frozen=True)
class HubOptions:
    """What HF PEFT passes on to ``huggingface_hub`` when an adapter comes from the Hub."""

    revision: str | None = None
    token: str | bool | None = None
    cache_dir: str | os.PathLike[str] | None = None
    local_files_only: bool = False
    force_download: bool = False


OPTION_NAMES = frozenset(f.name for f in fields(HubOptions))


def split_options(kwargs: dict[str, Any]) -> tuple[HubOptions, dict[str, Any]]:
    """HF PEFT's ``**kwargs``: the Hub options among them, and the rest."""
    options = HubOptions(**{k: v for k, v in kwargs.items() if k in OPTION_NAMES})
    return options, {k: v for k, v in kwargs.items() if k not in OPTION_NAMES}


def locate(model_id: str | os.PathLike[str], subfolder: str | None, kwargs: dict[str, Any]) -> Path:
    """:func:`adapter_folder` for a caller whose ``**kwargs`` may hold only Hub options."""
    options, unknown = split_options(kwargs)
    if unknown:
        raise TypeError(f"unexpected keyword argument {next(iter(unknown))!r}")
    return adapter_folder(model_id, subfolder, options)


def adapter_folder(
    model_id: str | os.PathLike[str], subfolder: str | None = None, options: HubOptions | None = None
) -> Path:
    """The local folder holding the adapter ``model_id`` (a folder, or a Hub repo id)."""
    folder = Path(model_id) / subfolder if subfolder else Path(model_id)
    if folder.is_dir() or Path(model_id).exists() or not _is_repo_id(str(model_id)):
        return _checked(folder)
    return _checked(_fetch(str(model_id), subfolder, options or HubOptions()))


def _checked(folder: Path) -> Path:
    if folder.is_file():
        raise CheckpointError(
            f"{folder} is a file; give the folder save_pretrained wrote (it holds {CONFIG_NAME})"
        )
    if not folder.is_dir():
        raise CheckpointError(
            f"adapter folder {folder} does not exist; give the folder save_pretrained wrote or a Hub repo id"
        )
    if not (folder / CONFIG_NAME).is_file():
        raise CheckpointError(f"{folder / CONFIG_NAME} not found; give the folder save_pretrained wrote")
    return folder


def _is_repo_id(name: str) -> bool:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def _fetch(repo_id: str, subfolder: str | None, options: HubOptions) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    prefix = f"{subfolder.strip('/')}/" if subfolder else ""
    where = f"{repo_id}" + (f" (revision {options.revision})" if options.revision else "")
    try:
        root = snapshot_download(
            repo_id,
            revision=options.revision,
            token=options.token,
            cache_dir=options.cache_dir,
            local_files_only=options.local_files_only,
            force_download=options.force_download,
            allow_patterns=[prefix + name for name in (CONFIG_NAME, SAFETENSORS_WEIGHTS_NAME, WEIGHTS_NAME)],
        )
    except (RepositoryNotFoundError, GatedRepoError) as exc:
        raise CheckpointError(
            f"{repo_id} is neither a local folder nor a Hub repo you can read ({type(exc).__name__}); check "
            f"the path or name, or log in (HF_TOKEN) for a private or gated repo"
        ) from None
    except RevisionNotFoundError:
        raise CheckpointError(
            f"{repo_id} has no revision {options.revision!r}; give a branch, tag or commit"
        ) from None
    except LocalEntryNotFoundError:
        raise CheckpointError(
            f"{where} is not a local folder, and not in the local Hugging Face cache while the Hub cannot "
            "be reached (offline or no network); check the path, or download the adapter where there is a "
            "network"
        ) from None
    except (HfHubHTTPError, OSError) as exc:
        raise CheckpointError(
            f"{where} is not a local folder, and fetching it from the Hub failed ({type(exc).__name__}); "
            f"check the path, or the network for a Hub repo"
        ) from None
    return Path(root) / prefix if prefix else Path(root)


def upload_folder(
    folder: str | os.PathLike[str],
    repo_id: str,
    *,
    commit_message: str,
    private: bool | None,
    token: str | bool | None,
    revision: str | None,
    create_pr: bool,
) -> str:
    """Upload ``folder``'s files to the Hub model repo ``repo_id`` (created if missing); the commit's URL."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    from adapterlab.errors import HubError, InvalidConfig

    if not _is_repo_id(repo_id):
        raise InvalidConfig(f"{repo_id!r} is not a valid Hub repo id; use 'user-or-org/name'")
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        commit = api.upload_folder(
            repo_id=repo_id,
            folder_path=str(folder),
            commit_message=commit_message,
            revision=revision,
            create_pr=create_pr,
            repo_type="model",
        )
    except HfHubHTTPError as exc:
        status = getattr(exc.response, "status_code", None)
        raise HubError(
            f"the Hub refused the upload to {repo_id} (HTTP {status}); log in with a token that may write "
            f"there (HF_TOKEN or `hf auth login`)"
        ) from None
    except (
        OSError
    ) as exc:  # offline mode, no network, DNS: huggingface_hub's and requests' errors are OSErrors
        raise HubError(
            f"cannot reach the Hugging Face Hub to upload {repo_id} ({type(exc).__name__}); check the "
            "network and HF_HUB_OFFLINE, or save_pretrained() to a folder and upload it later"
        ) from None
    return str(getattr(commit, "commit_url", commit))
