"""What the registry hands out: plain frozen dataclasses, never ORM rows.

``to_dict()`` is exactly what the CLI prints with ``--json``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import Any


def iso_time(moment: datetime) -> str:
    """ISO 8601 in UTC; SQLite hands timestamps back without their zone."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class BaseSpec:
    """A base model as the store records it: its identity (the weights' fingerprint; the Hub id and
    revision when known) and size. Where its files lie is no part of it (``BaseLocation``)."""

    name: str
    fingerprint: str
    hub_id: str | None
    revision: str | None
    model_type: str | None
    parameter_count: int
    tensor_count: int
    size_bytes: int

    @property
    def portable_name(self) -> str:
        """What files written for others call this base: its Hub id, else its registered name."""
        return self.hub_id or self.name


@dataclass(frozen=True)
class BaseModelInfo(BaseSpec):
    """A registered base model, with when it was registered and how many adapters it has."""

    created_at: str
    adapter_count: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class BaseLocation:
    """A folder known to hold a base's weights, on one machine."""

    name: str  # the base's registered name
    fingerprint: str
    path: str
    host: str
    added_by: str
    created_at: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def base_spec_fields(row: Any) -> dict[str, Any]:
    """The :class:`BaseSpec` fields of a ``base_models`` row."""
    return {f.name: getattr(row, f.name) for f in fields(BaseSpec)}


@dataclass(frozen=True)
class Promotion:
    """One move of an alias; ``to_version`` None means the alias was removed."""

    name: str
    alias: str
    from_version: int | None
    to_version: int | None
    actor: str
    reason: str | None
    created_at: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class VersionSummary:
    """One row of ``adapters list``."""

    name: str
    version: int
    base: str
    task_type: str | None
    peft_type: str
    aliases: list[str]
    metrics: dict[str, float]
    created_at: str

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "aliases": list(self.aliases), "metrics": dict(self.metrics)}


@dataclass(frozen=True)
class AdapterVersion:
    """One version of an adapter, everything ``adapters show`` knows about it."""

    name: str
    version: int
    base: BaseModelInfo
    task_type: str | None
    peft_type: str
    config: dict[str, Any]
    artifact_uri: str
    sha256: str
    size_bytes: int
    trainable_params: int
    metrics: dict[str, float]
    tags: dict[str, str]
    aliases: list[str]
    description: str | None
    mlflow_run_id: str | None
    mlflow_version: int | None
    created_by: str
    created_at: str
    history: list[Promotion] = field(default_factory=list)

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["base"] = {
            "name": self.base.name,
            "fingerprint": self.base.fingerprint,
            "hub_id": self.base.hub_id,
            "revision": self.base.revision,
            "model_type": self.base.model_type,
            "parameter_count": self.base.parameter_count,
        }
        data["history"] = [event.to_dict() for event in self.history]
        data["config"] = dict(self.config)
        data["metrics"] = dict(self.metrics)
        data["tags"] = dict(self.tags)
        data["aliases"] = list(self.aliases)
        return data
