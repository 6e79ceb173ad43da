"""Adapter configurations: the base dataclass every PEFT method's config extends.

A config is what ``adapter_config.json`` holds, field for field, with Hugging Face PEFT's names
and values, so that files move freely between the two libraries. ``PeftConfig.from_pretrained``
reads any method's file and returns the right subclass, chosen by ``peft_type`` through the
method table (:mod:`adapterlab.methods`).
"""

from __future__ import annotations

import dataclasses
import enum
import importlib.metadata
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import packaging.version

import adapterlab.hub as hub
from adapterlab._version import __version__
from adapterlab.errors import CheckpointError, ConfigKeysMissing, InvalidConfig, summarize
from adapterlab.hf_format import CONFIG_NAME, PeftType, TaskType, write_atomically
from adapterlab.methods import get_method
from adapterlab.validation import coerce_enum

# PeftType and TaskType live in hf_format; HF scripts import them from here too (as from peft.config)
__all__ = [
    "PeftConfig",
    "PeftType",
    "TaskType",
    "coerce_enum",
    "default_field",
    "get_peft_config",
    "validate_choice",
]


def _to_json_value(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):  # a sub-config (LoRA's kasa_config)
        return _to_json_value(dataclasses.asdict(value))
    if isinstance(value, (set, frozenset, tuple)):
        return [_to_json_value(v) for v in value]
    if isinstance(value, list):
        return [_to_json_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_json_value(v) for k, v in value.items()}
    return value


def _get_commit_hash(package: str) -> str | None:
    """The git commit ``package`` was installed from (``pip install git+...@<commit>``), if pip recorded one.

    pip writes it into the distribution's ``direct_url.json``; editable and index installs have none.
    """
    try:
        files = importlib.metadata.distribution(package).files or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for path in files:
        if path.name == "direct_url.json":
            vcs_info = json.loads(path.locate().read_text(encoding="utf-8")).get("vcs_info") or {}
            return vcs_info.get("commit_id")
    return None


def _recorded_version() -> str:
    """The version a new config records: ``__version__``, plus ``@<commit>`` for a dev version (as
    HF PEFT does), because a dev version alone does not say which code wrote the adapter."""
    try:
        is_dev = packaging.version.Version(__version__).dev is not None
    except packaging.version.InvalidVersion:
        is_dev = False
    if not is_dev:
        return __version__
    try:
        commit = _get_commit_hash("adapterlab") or "UNKNOWN"
    except Exception as exc:  # a broken install's metadata must never stop a config from being built
        warnings.warn(
            "A dev version of PEFT is used but there was an error while trying to determine the commit hash "
            f"of the installed adapterlab ({summarize(exc)}); the config records {__version__}@UNKNOWN",
            stacklevel=4,
        )
        commit = "UNKNOWN"
    return f"{__version__}@{commit}"


@dataclass
class PeftConfig:
    """Fields shared by every method's config (the base of ``adapter_config.json``)."""

    # which method; set by each subclass, never by the user
    peft_type: PeftType | str | None = None
    # the task: picks the PeftModelFor... class and the heads that are trained along
    task_type: TaskType | str | None = None
    # the base model the adapter was trained on (a hub name or a folder)
    base_model_name_or_path: str | None = None
    # the base model's revision (a git ref on the hub), if any
    revision: str | None = None
    # True: adapter weights are frozen (how adapters are loaded for serving)
    inference_mode: bool = False
    # HF PEFT's hook for custom auto classes; kept for round trips
    auto_mapping: dict[str, Any] | None = None
    # the version of the library that wrote the config (here adapterlab's); filled in when unset
    peft_version: str | None = None

    # HF PEFT fields that adapterlab does not implement, with the value at which they do nothing;
    # a file that sets one of them otherwise is refused rather than silently misread.
    inert_foreign_fields: ClassVar[dict[str, Any]] = {}

    def __post_init__(self) -> None:
        self.peft_type = coerce_enum(PeftType, self.peft_type, "peft_type")
        self.task_type = coerce_enum(TaskType, self.task_type, "task_type")
        if self.peft_version is None:
            self.peft_version = _recorded_version()

    @property
    def is_prompt_learning(self) -> bool:
        return False

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _to_json_value(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def save_pretrained(self, save_directory: str | os.PathLike[str]) -> None:
        """Write ``adapter_config.json`` into ``save_directory`` (created if needed), atomically."""
        folder = Path(save_directory)
        if folder.exists() and not folder.is_dir():
            raise CheckpointError(f"{folder} is a file; save_pretrained needs a folder path")
        folder.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"
        write_atomically(folder / CONFIG_NAME, text.encode("utf-8"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PeftConfig:
        """Build the config for ``data["peft_type"]`` (any method) or for ``cls`` when it is concrete."""
        target = cls
        peft_type = data.get("peft_type")
        if peft_type is not None:
            method_config = get_method(coerce_enum(PeftType, peft_type, "peft_type")).config_class
            if not issubclass(method_config, cls):
                raise InvalidConfig(f"the config is for {peft_type}, not for {cls.__name__}")
            target = method_config
        elif cls is PeftConfig:
            raise InvalidConfig('the config has no peft_type; add e.g. "peft_type": "LORA"')
        return target(**target._known_fields(data))

    @classmethod
    def _known_fields(cls, data: dict[str, Any]) -> dict[str, Any]:
        names = {f.name for f in dataclasses.fields(cls) if f.init}
        inert = {**PeftConfig.inert_foreign_fields, **cls.inert_foreign_fields}
        unknown = []
        for key, value in data.items():
            if key in names:
                continue
            if key in inert:
                if value not in (inert[key], None, {}, [], False):
                    raise InvalidConfig(
                        f"{key}={value!r} is a Hugging Face PEFT feature adapterlab does not support; "
                        f"remove it from the config"
                    )
            else:
                unknown.append(key)
        if unknown:
            warnings.warn(
                f"Unexpected keyword arguments {sorted(unknown)} for class {cls.__name__}, these are "
                "ignored. The config was probably written by a newer PEFT version.",
                stacklevel=3,
            )
        return {key: value for key, value in data.items() if key in names}

    @classmethod
    def from_json_file(cls, path_json_file: str | os.PathLike[str]) -> dict[str, Any]:
        """HF PEFT's: the JSON object in ``path_json_file`` (an ``adapter_config.json``), as a dict."""
        path = Path(path_json_file)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (
            OSError,
            UnicodeDecodeError,
            json.JSONDecodeError,
            RecursionError,
        ) as exc:  # RecursionError: nested too deeply
            raise CheckpointError(f"{path} is not valid JSON ({exc}); re-save the adapter") from None
        if not isinstance(data, dict):
            raise CheckpointError(f"{path} must hold a JSON object; re-save the adapter")
        data.pop("runtime_config", None)  # HF PEFT's run-time options: never part of a saved adapter
        return data

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike[str],
        subfolder: str | None = None,
        **kwargs: Any,
    ) -> PeftConfig:
        """Read ``adapter_config.json`` from a folder or a Hub repo id. As in HF PEFT, ``kwargs``
        are Hub options (``revision``, ``token``, ``cache_dir``, ``local_files_only``,
        ``force_download``) or fields that override the file's."""
        options, overrides = hub.split_options(kwargs)
        data = cls.from_json_file(
            hub.adapter_folder(pretrained_model_name_or_path, subfolder, options) / CONFIG_NAME
        )
        if "peft_type" not in data:  # any JSON file would otherwise pass for an adapter config
            raise ConfigKeysMissing(
                f"The {cls.__name__} config that is trying to be loaded is missing required keys: "
                "{'peft_type'}. It is not an adapter config; give the folder save_pretrained wrote"
            )
        data.update(overrides)
        return cls.from_dict(data)


def get_peft_config(config_dict: dict[str, Any]) -> PeftConfig:
    """HF PEFT's: the config of ``config_dict["peft_type"]`` built from a dict."""
    return PeftConfig.from_dict(config_dict)


def validate_choice(value: Any, choices: tuple[Any, ...], field_name: str) -> None:
    """Raise InvalidConfig unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise InvalidConfig(f"{field_name} must be one of {', '.join(map(repr, choices))}, got {value!r}")


def default_field(value: Any) -> Any:
    """A dataclass field with a fresh copy of a mutable default."""
    return field(default_factory=lambda: type(value)(value))
