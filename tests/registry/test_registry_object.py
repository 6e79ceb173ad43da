"""The ``Registry`` object: every verb on one opened registry, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapterlab.errors import AdapterNotFound, InvalidConfig, PromotionRefused, RegistryUnavailable
from adapterlab.registry import Registry, default_registry, show


@pytest.fixture
def registry(registry_env: str):
    with Registry.open(registry_env) as opened:
        yield opened


def test_register_list_show_history_on_one_object(
    registry: Registry, registry_env: str, tiny_base, make_lora
) -> None:
    first = registry.register(make_lora(seed=1), name="complaints", base=tiny_base, metrics={"accuracy": 0.8})
    second = registry.register(
        make_lora(seed=2), name="complaints", base=tiny_base, metrics={"accuracy": 0.9}
    )
    assert (first.version, second.version) == (1, 2)
    assert registry.url == registry_env
    assert [(row.name, row.version) for row in registry.list_versions()] == [
        ("complaints", 2),
        ("complaints", 1),
    ]
    assert [row.version for row in registry.list_versions(sort="accuracy", descending=True, limit=1)] == [2]
    assert registry.show("complaints").version == 2 and registry.show("complaints:1").metrics == {
        "accuracy": 0.8
    }
    assert [base.adapter_count for base in registry.list_bases()] == [1]
    assert registry.history("complaints") == []
    with pytest.raises(AdapterNotFound, match="no version 3"):
        registry.show("complaints:3")


def test_promote_and_demote_move_aliases_with_history(registry: Registry, tiny_base, make_lora) -> None:
    registry.register(make_lora(seed=1), name="a", base=tiny_base, metrics={"accuracy": 0.8})
    registry.register(make_lora(seed=2), name="a", base=tiny_base, metrics={"accuracy": 0.95})
    with pytest.raises(PromotionRefused, match="accuracy"):
        registry.promote("a:1", alias="production", require=["accuracy>=0.9"])
    promoted = registry.promote("a:2", alias="production", reason="best", require=["accuracy>=0.9"])
    assert (promoted.from_version, promoted.to_version, promoted.reason) == (None, 2, "best")
    assert registry.show("a@production").version == 2
    assert registry.list_versions(alias="production")[0].aliases == ["production"]
    demoted = registry.demote("a", alias="production")
    assert (demoted.from_version, demoted.to_version) == (2, None)
    assert [(event.from_version, event.to_version) for event in registry.history("a")] == [
        (None, 2),
        (2, None),
    ]
    with pytest.raises(AdapterNotFound, match="no alias @production"):
        registry.show("a@production")


def test_pull_load_and_diff_take_references(registry: Registry, tiny_base, make_lora, tmp_path: Path) -> None:
    registry.register(make_lora(seed=1, r=4), name="a", base=tiny_base)
    registry.register(make_lora(seed=2, r=4), name="a", base=tiny_base)
    pulled = registry.pull("a:1", tmp_path / "pulled")
    assert pulled.ref == "a:1" and (tmp_path / "pulled" / "adapter_config.json").is_file()
    model = registry.load("a:2")
    assert type(model).__name__.startswith("PeftModel") and not model.training
    changes = registry.diff("a:1", "a:2")
    assert (changes.a, changes.b, changes.same_base) == ("a:1", "a:2", True)
    assert changes.modules is not None and len(changes.modules) == 4  # 2 layers x (query, value)


def test_bad_references_are_refused_before_any_query(registry: Registry) -> None:
    with pytest.raises(InvalidConfig, match="invalid version"):
        registry.show("a:zero")
    with pytest.raises(InvalidConfig, match="invalid alias"):
        registry.promote("a:1", alias="has space")


def test_two_objects_on_one_database_see_each_others_writes(
    registry: Registry, registry_env: str, tiny_base, make_lora
) -> None:
    with Registry.open(registry_env) as other:
        registry.register(make_lora(seed=1), name="a", base=tiny_base)
        assert other.show("a").version == 1
    assert registry.show("a").version == 1  # closing one leaves the other open


def test_module_functions_are_the_default_registrys_methods(registry_env: str, tiny_base, make_lora) -> None:
    default = default_registry()
    assert default is default_registry(registry_env)  # one per URL, opened once
    default.register(make_lora(seed=1), name="a", base=tiny_base)
    assert show("a") == default.show("a")


def test_an_unreachable_database_fails_at_open(tmp_path: Path) -> None:
    with pytest.raises(RegistryUnavailable, match="cannot reach"):
        Registry.open("postgresql+psycopg://postgres@127.0.0.1:1/none")
    opened = Registry.open(f"sqlite:///{tmp_path / 'new' / 'r.db'}")  # a new embedded registry is created
    assert (
        repr(opened) == f"Registry('sqlite:///{tmp_path / 'new' / 'r.db'}')" and opened.list_versions() == []
    )
    opened.close()
