"""Moving aliases: ``promote`` (with requirements on metrics) and ``demote``, each in one transaction.

Every move is written to the promotion history together with the alias change, so the history
is exactly the sequence of states the alias went through.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Connection, Row, delete, insert, select, update

from adapterlab.errors import AdapterNotFound, InvalidConfig, PromotionRefused
from adapterlab.registry import settings
from adapterlab.registry.db.database import Database
from adapterlab.registry.db.tables import aliases, metrics, promotions, utc_now, versions
from adapterlab.registry.mlflow.mlflow_mirror import alias_left_behind, check_mirror_access, mirror_alias
from adapterlab.registry.names import Ref, validate_alias, validate_name
from adapterlab.registry.queries import find_adapter, resolve_ref
from adapterlab.registry.records import Promotion, iso_time

_COMPARISONS = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
    "==": operator.eq,
    "=": operator.eq,
}
_REQUIREMENT = re.compile(r"\s*([A-Za-z0-9_][A-Za-z0-9._/-]*)\s*(>=|<=|==|>|<|=)\s*([-+0-9.eE]+|inf|-inf)\s*")


@dataclass(frozen=True)
class Requirement:
    metric: str
    comparison: str
    value: float

    def __str__(self) -> str:
        return f"{self.metric}{self.comparison}{self.value:g}"


def parse_requirement(text: str) -> Requirement:
    """``'eval_accuracy>=0.9'`` -> Requirement."""
    match = _REQUIREMENT.fullmatch(text)
    if match is None:
        raise InvalidConfig(
            f"invalid requirement {text!r}: use METRIC>=VALUE (or >, <=, <, ==), e.g. eval_accuracy>=0.9"
        )
    try:
        value = float(match[3])
    except ValueError as exc:
        raise InvalidConfig(f"invalid number in requirement {text!r}") from exc
    return Requirement(match[1], match[2], value)


def promote(
    database: Database,
    ref: Ref,
    *,
    alias: str,
    reason: str | None = None,
    require: Iterable[str | Requirement] = (),
) -> Promotion:
    """Point ``alias`` of the adapter at the version ``ref`` names, if every requirement holds."""
    alias = validate_alias(alias)
    requirements = [item if isinstance(item, Requirement) else parse_requirement(item) for item in require]
    check_mirror_access()
    promotion, mlflow_version = database.write_retrying(
        lambda connection: _move_alias(connection, ref, alias, reason, requirements), f"move alias @{alias}"
    )
    if mlflow_version is not None:
        mirror_alias(promotion.name, alias, mlflow_version)
    else:  # never mirrored (mirror off or failed): nothing to point at until `adapters sync`
        alias_left_behind(promotion.name, alias, promotion.to_version)
    return promotion


def _alias_row(adapter: Row, alias: str) -> ColumnElement[bool]:
    return (aliases.c.adapter_id == adapter.id) & (aliases.c.alias == alias)


def _alias_target(
    connection: Connection, adapter: Row, alias: str, lock: bool = False
) -> tuple[ColumnElement[bool], int | None]:
    """The condition selecting ``alias``'s row of ``adapter``, and the version it points at (None: unset)."""
    this_alias = _alias_row(adapter, alias)
    query = select(versions.c.version).join(aliases, aliases.c.version_id == versions.c.id).where(this_alias)
    return this_alias, connection.scalar(query.with_for_update(of=aliases) if lock else query)


def _move_alias(
    connection: Connection, ref: Ref, alias: str, reason: str | None, requirements: list[Requirement]
) -> tuple[Promotion, int | None]:
    adapter, version = resolve_ref(connection, ref)
    found = connection.execute(
        select(metrics.c.key, metrics.c.value).where(metrics.c.version_id == version.id)
    )
    _check_requirements(f"{adapter.name}:{version.version}", dict(found.all()), requirements)
    _, previous = _alias_target(connection, adapter, alias, lock=True)
    _point(connection, adapter, alias, previous, version)
    promotion = _record(connection, adapter, alias, previous, version.version, reason)
    return promotion, version.mlflow_version


def _point(connection: Connection, adapter: Row, alias: str, previous: int | None, version: Row) -> None:
    """Make ``alias`` of ``adapter`` (now on ``previous``, None: unset) point at ``version``."""
    if previous is None:
        connection.execute(
            insert(aliases).values(
                adapter_id=adapter.id, alias=alias, version_id=version.id, updated_at=utc_now()
            )
        )
    else:
        moved = update(aliases).where(_alias_row(adapter, alias))
        connection.execute(moved.values(version_id=version.id, updated_at=utc_now()))


def adopt_alias(
    database: Database, name: str, alias: str, version: int | None, *, actor: str, reason: str
) -> Promotion:
    """Record a move made outside the registry (in MLflow's UI): ``alias`` of ``name`` is now on
    ``version`` (None: removed). Written with its history row like any move; nothing is mirrored back."""

    def move(connection: Connection) -> Promotion:
        adapter = find_adapter(connection, name)
        this_alias, previous = _alias_target(connection, adapter, alias, lock=True)
        if version is None:
            connection.execute(delete(aliases).where(this_alias))
        else:
            target = resolve_ref(connection, Ref(name, version=version))[1]
            _point(connection, adapter, alias, previous, target)
        return _record(connection, adapter, alias, previous, version, reason, actor)

    return database.write_retrying(move, f"adopt alias @{alias}")


def demote(database: Database, name: str, *, alias: str, reason: str | None = None) -> Promotion:
    """Remove ``alias`` from adapter ``name``."""
    validate_name(name)
    alias = validate_alias(alias)
    check_mirror_access()
    with database.writing() as connection:
        adapter = find_adapter(connection, name)
        this_alias, previous = _alias_target(connection, adapter, alias)
        if previous is None:
            raise AdapterNotFound(f"{name} has no alias @{alias}; see `adapters show {name}`")
        connection.execute(delete(aliases).where(this_alias))
        promotion = _record(connection, adapter, alias, previous, None, reason)
    mirror_alias(name, alias, None)
    return promotion


def _check_requirements(label: str, metrics: dict[str, float], requirements: list[Requirement]) -> None:
    for requirement in requirements:
        if requirement.metric not in metrics:
            known = ", ".join(sorted(metrics)) or "none"
            raise PromotionRefused(
                f"{label} has no metric {requirement.metric!r} (it has: {known}); nothing changed"
            )
        value = metrics[requirement.metric]
        if not _COMPARISONS[requirement.comparison](value, requirement.value):
            raise PromotionRefused(
                f"{label} fails {requirement}: {requirement.metric} is {value:g}; nothing changed"
            )


def _record(
    connection: Connection,
    adapter: Row,
    alias: str,
    previous: int | None,
    target: int | None,
    reason: str | None,
    actor: str | None = None,
) -> Promotion:
    """Append the move to the promotion history, in the transaction that makes it (``actor`` None: the
    current user)."""
    event = dict(
        alias=alias,
        from_version=previous,
        to_version=target,
        actor=actor or settings.current_user(),
        reason=reason,
    )
    created_at = utc_now()
    connection.execute(insert(promotions).values(adapter_id=adapter.id, created_at=created_at, **event))
    return Promotion(name=adapter.name, created_at=iso_time(created_at), **event)
