"""Bad input: one clear line on stderr, exit code 1, and nothing written anywhere."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from adapterlab.cli.main import cli
from adapterlab.registry import list_bases, list_versions, register_adapter


def fails(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


def nothing_written() -> None:
    assert list_versions() == [] and list_bases() == []
    assert not (Path(os.environ["ADAPTERLAB_HOME"]) / "artifacts").exists()


@pytest.mark.parametrize(
    "name",
    ["../x", "", "has space", "x" * 200, "tab\there", "new\nline", "bell\x07"],
    ids=["dotdot", "empty", "spaces", "200-chars", "tab", "newline", "control"],
)
def test_invalid_adapter_name(registry_env, tiny_base, make_lora, name: str) -> None:
    message = fails("register", str(make_lora()), "--name", name, "--base", str(tiny_base))
    assert "name" in message
    nothing_written()


def test_unknown_ref_suggests_close_matches(registry_env, tiny_base, make_lora) -> None:
    register_adapter(make_lora(), name="complaints", base=tiny_base)
    assert "did you mean complaints" in fails("show", "complaint")
    assert "no version 7" in fails("show", "complaints:7")


def test_folder_without_adapter_config(registry_env, tiny_base, make_lora) -> None:
    folder = make_lora()
    (folder / "adapter_config.json").unlink()
    assert "adapter_config.json" in fails("register", str(folder), "--name", "a", "--base", str(tiny_base))
    nothing_written()


def test_invalid_json_config(registry_env, tiny_base, make_lora) -> None:
    folder = make_lora()
    (folder / "adapter_config.json").write_text('{"peft_type": "LORA",')
    assert "not valid JSON" in fails("register", str(folder), "--name", "a", "--base", str(tiny_base))
    nothing_written()


def test_unknown_peft_type(registry_env, tiny_base, make_lora) -> None:
    folder = make_lora()
    config = json.loads((folder / "adapter_config.json").read_text())
    (folder / "adapter_config.json").write_text(json.dumps({**config, "peft_type": "MYSTERY"}))
    assert "MYSTERY" in fails("register", str(folder), "--name", "a", "--base", str(tiny_base))
    nothing_written()


def test_missing_weights(registry_env, tiny_base, make_lora) -> None:
    folder = make_lora()
    (folder / "adapter_model.safetensors").unlink()
    assert "no adapter weights" in fails("register", str(folder), "--name", "a", "--base", str(tiny_base))
    nothing_written()


def test_corrupt_weights(registry_env, tiny_base, make_lora) -> None:
    folder = make_lora()
    weights = folder / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])  # truncated: the last tensor is incomplete
    assert "corrupt" in fails("register", str(folder), "--name", "a", "--base", str(tiny_base))
    nothing_written()


def test_weights_whose_keys_do_not_match_the_config(registry_env, tiny_base, make_lora) -> None:
    folder = make_lora(targets=("query", "key"))
    config = json.loads((folder / "adapter_config.json").read_text())
    (folder / "adapter_config.json").write_text(json.dumps({**config, "target_modules": ["query", "value"]}))
    assert "not in target_modules" in fails("register", str(folder), "--name", "a", "--base", str(tiny_base))
    nothing_written()


def test_weights_whose_rank_does_not_match_the_config(registry_env, tiny_base, make_lora) -> None:
    folder = make_lora(r=4)
    config = json.loads((folder / "adapter_config.json").read_text())
    (folder / "adapter_config.json").write_text(json.dumps({**config, "r": 8}))
    assert "r=8" in fails("register", str(folder), "--name", "a", "--base", str(tiny_base))
    nothing_written()


def test_tampered_artifact_on_pull(registry_env, tiny_base, make_lora, tmp_path: Path) -> None:
    version = register_adapter(make_lora(), name="a", base=tiny_base)
    stored = Path(version.artifact_uri.removeprefix("file://")) / "adapter_model.safetensors"
    data = bytearray(stored.read_bytes())
    data[-1] ^= 0xFF
    stored.write_bytes(bytes(data))
    target = tmp_path / "pulled"
    assert "sha256" in fails("pull", "a:1", "--to", str(target))
    assert not target.exists()
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".pull-")] == []


def test_unreachable_database_names_the_url_without_its_password(registry_env) -> None:
    url = "postgresql://admin:s3cret@127.0.0.1:1/registry"
    message = fails("--registry-url", url, "list")
    assert "postgresql://***@127.0.0.1:1/registry" in message and "s3cret" not in message


def test_out_of_date_schema_names_the_upgrade_command(registry_env) -> None:
    from adapterlab.registry.db.migrate import downgrade, upgrade

    downgrade("base", registry_url=registry_env)
    try:
        assert "adapters db upgrade" in fails("list")
    finally:
        upgrade(registry_url=registry_env)


def test_require_on_a_metric_the_version_does_not_have(registry_env, tiny_base, make_lora) -> None:
    register_adapter(make_lora(), name="a", base=tiny_base, metrics={"loss": 0.3})
    message = fails("promote", "a:1", "--alias", "production", "--require", "accuracy>=0.9")
    assert "no metric 'accuracy'" in message and "loss" in message
    assert list_versions()[0].aliases == []
    assert CliRunner().invoke(cli, ["history", "a", "--json"]).stdout.strip() == "[]"


def test_alias_of_another_adapters_version(registry_env, tiny_base, make_lora) -> None:
    register_adapter(make_lora(seed=1), name="a", base=tiny_base)
    register_adapter(make_lora(seed=2), name="b", base=tiny_base)
    CliRunner().invoke(cli, ["promote", "b:1", "--alias", "production"])
    message = fails("show", "a@production")
    assert "belongs to b" in message
    assert "no alias @production" in fails("demote", "a", "--alias", "production")
    assert [row.aliases for row in list_versions(alias="production")] == [["production"]]


def test_alias_rows_cannot_point_at_another_adapters_version(registry_env, tiny_base, make_lora) -> None:
    """The composite foreign key holds even for writers that bypass the library."""
    from sqlalchemy import insert, select
    from sqlalchemy.exc import IntegrityError

    from adapterlab.registry.db.database import open_database
    from adapterlab.registry.db.tables import adapters, aliases, utc_now, versions

    register_adapter(make_lora(seed=1), name="a", base=tiny_base)
    register_adapter(make_lora(seed=2), name="b", base=tiny_base)
    database = open_database()
    with pytest.raises(IntegrityError), database.writing() as connection:
        a = connection.scalar(select(adapters.c.id).where(adapters.c.name == "a"))
        b_version = connection.scalar(select(versions.c.id).join(adapters).where(adapters.c.name == "b"))
        connection.execute(
            insert(aliases).values(
                adapter_id=a, alias="production", version_id=b_version, updated_at=utc_now()
            )
        )
    database.close()


def test_invalid_alias_and_requirement(registry_env, tiny_base, make_lora) -> None:
    register_adapter(make_lora(), name="a", base=tiny_base, metrics={"accuracy": 0.9})
    assert "invalid alias" in fails("promote", "a:1", "--alias", "has space")
    assert "invalid requirement" in fails(
        "promote", "a:1", "--alias", "production", "--require", "accuracy>>1"
    )
    assert list_versions()[0].aliases == []


def test_unknown_task_type_and_non_numeric_metric(registry_env, tiny_base, make_lora) -> None:
    folder = str(make_lora())
    assert "SEQ_CLS" in fails(
        "register", folder, "--name", "a", "--base", str(tiny_base), "--task", "CLASSIFY"
    )
    assert "must be a number" in fails(
        "register", folder, "--name", "a", "--base", str(tiny_base), "--metric", "acc=high"
    )
    nothing_written()


def test_pull_into_a_non_empty_folder_is_refused(registry_env, tiny_base, make_lora, tmp_path: Path) -> None:
    register_adapter(make_lora(), name="a", base=tiny_base)
    target = tmp_path / "busy"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    assert "not an empty folder" in fails("pull", "a:1", "--to", str(target))
    assert [p.name for p in target.iterdir()] == ["keep.txt"]
