"""Registering adapters: versions, identical content, bases, metrics, records."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapterlab.errors import AdapterNotFound, BaseModelMismatch
from adapterlab.registry import list_bases, list_versions, register_adapter, show


def test_register_allocates_versions_and_records_everything(registry_env, tiny_base, make_lora) -> None:
    first = register_adapter(
        make_lora(seed=1),
        name="complaints",
        base=tiny_base,
        metrics={"accuracy": 0.8},
        tags={"team": "nlp"},
        description="first try",
    )
    second = register_adapter(make_lora(seed=2), name="complaints", base=tiny_base, metrics={"accuracy": 0.9})
    assert (first.version, second.version) == (1, 2)
    assert first.base.name == "tiny-bert" and len(first.base.fingerprint) == 64
    assert first.peft_type == "LORA" and first.task_type == "FEATURE_EXTRACTION"
    assert first.trainable_params == 2 * 2 * (4 * 32 + 32 * 4)
    assert first.metrics == {"accuracy": 0.8} and first.tags == {"team": "nlp"}
    assert first.created_by == "tester" and first.config["r"] == 4
    assert first.mlflow_version is not None
    latest = show("complaints")
    assert latest.version == 2 and latest.to_dict()["base"]["fingerprint"] == first.base.fingerprint


def test_identical_content_returns_the_existing_version(registry_env, tiny_base, make_lora) -> None:
    folder = make_lora(seed=3)
    first = register_adapter(folder, name="same", base=tiny_base)
    again = register_adapter(folder, name="same", base=tiny_base, metrics={"accuracy": 1.0})
    assert again.version == first.version == 1
    assert [row.version for row in list_versions()] == [1]


def test_registered_base_name_is_accepted_and_unknown_base_suggests_names(
    registry_env, tiny_base, make_lora
) -> None:
    register_adapter(make_lora(seed=1), name="a", base=tiny_base, base_name="org/tiny-bert")
    by_name = register_adapter(make_lora(seed=2), name="b", base="org/tiny-bert")
    assert by_name.base.name == "org/tiny-bert"
    with pytest.raises(AdapterNotFound, match="org/tiny-bert"):
        register_adapter(make_lora(seed=3), name="c", base="org/tiny-berd")
    assert [base.adapter_count for base in list_bases()] == [2]


def test_same_name_on_another_base_is_refused(registry_env, tiny_base, other_base, make_lora) -> None:
    register_adapter(make_lora(seed=1), name="a", base=tiny_base)
    with pytest.raises(BaseModelMismatch, match="another name"):
        register_adapter(make_lora(seed=2), name="a", base=other_base)
    assert [row.version for row in list_versions()] == [1]
    assert len(list_bases()) == 1  # the refused registration wrote nothing, not even the base


def test_artifacts_are_stored_under_the_home(registry_env, tiny_base, make_lora, tmp_path: Path) -> None:
    version = register_adapter(make_lora(seed=1), name="a", base=tiny_base)
    assert version.artifact_uri.startswith((tmp_path / "home" / "artifacts").as_uri())
    stored = Path(version.artifact_uri.removeprefix("file://"))
    assert sorted(p.name for p in stored.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
