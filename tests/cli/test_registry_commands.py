"""The registry commands end to end through click's CliRunner, parsing ``--json``."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from adapterlab.cli.main import cli


def run(*args: str, code: int = 0):
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == code, result.output
    return result


def run_json(*args: str):
    return json.loads(run(*args, "--json").stdout)


def register(folder: Path, base: Path, name: str = "complaints", *extra: str) -> dict:
    return run_json("register", str(folder), "--name", name, "--base", str(base), *extra)


def test_register_list_show_bases(registry_env, tiny_base, make_lora) -> None:
    first = register(
        make_lora(seed=1),
        tiny_base,
        "complaints",
        "--metric",
        "accuracy=0.8",
        "--tag",
        "team=nlp",
        "--base-name",
        "org/tiny-bert",
        "--task",
        "FEATURE_EXTRACTION",
    )
    second = register(
        make_lora(seed=2), tiny_base, "complaints", "--metric", "accuracy=0.9", "--base-name", "org/tiny-bert"
    )
    register(
        make_lora(seed=3), tiny_base, "other", "--metric", "accuracy=0.85", "--base-name", "org/tiny-bert"
    )
    assert (first["version"], second["version"]) == (1, 2)

    listed = run_json("list", "--base", "org/tiny-bert")
    assert [(row["name"], row["version"]) for row in listed] == [
        ("complaints", 2),
        ("complaints", 1),
        ("other", 1),
    ]
    assert set(listed[0]) >= {
        "name",
        "version",
        "base",
        "task_type",
        "peft_type",
        "aliases",
        "metrics",
        "created_at",
    }
    ranked = run_json("list", "--sort", "accuracy", "--desc", "--limit", "2")
    assert [row["metrics"]["accuracy"] for row in ranked] == [0.9, 0.85]
    assert "no base model 'nothing'; see `adapters bases`" in run("list", "--base", "nothing", code=1).stderr
    assert len(run_json("list", "--method", "lora", "--task", "FEATURE_EXTRACTION")) == 3

    shown = run_json("show", "complaints:1")
    assert shown == first
    assert shown["base"]["name"] == "org/tiny-bert" and len(shown["sha256"]) == 64
    assert {
        "config",
        "tags",
        "artifact_uri",
        "size_bytes",
        "trainable_params",
        "mlflow_run_id",
        "history",
    } <= set(shown)
    assert run_json("show", "complaints")["version"] == 2

    bases = run_json("bases")
    assert [(base["name"], base["adapter_count"]) for base in bases] == [("org/tiny-bert", 2)]
    table = run("list").stdout
    assert table.splitlines()[0].split()[:3] == ["NAME", "VERSION", "BASE"] and "complaints" in table


def test_promote_demote_history(registry_env, tiny_base, make_lora) -> None:
    register(make_lora(seed=1), tiny_base, "complaints", "--metric", "accuracy=0.8")
    register(make_lora(seed=2), tiny_base, "complaints", "--metric", "accuracy=0.95")
    run_json("promote", "complaints:1", "--alias", "production", "--reason", "first")
    moved = run_json("promote", "complaints:2", "--alias", "production", "--require", "accuracy>=0.9")
    assert (moved["from_version"], moved["to_version"], moved["actor"]) == (1, 2, "tester")
    assert run_json("show", "complaints@production")["version"] == 2
    assert run_json("list", "--alias", "production")[0]["aliases"] == ["production"]

    refused = run("promote", "complaints:1", "--alias", "production", "--require", "accuracy>=0.9", code=1)
    assert refused.stderr.startswith("Error: ") and len(refused.stderr.strip().splitlines()) == 1
    assert run_json("show", "complaints@production")["version"] == 2

    run_json("demote", "complaints", "--alias", "production", "--reason", "incident")
    history = run_json("history", "complaints")
    assert [(e["from_version"], e["to_version"], e["reason"]) for e in history] == [
        (None, 1, "first"),
        (1, 2, None),
        (2, None, "incident"),
    ]
    assert run_json("show", "complaints:2")["history"] == history[1:]
    run("show", "complaints@production", code=1)


def test_pull_downloads_verified_files(registry_env, tiny_base, make_lora, tmp_path: Path) -> None:
    folder = make_lora(seed=1)
    register(folder, tiny_base)
    target = tmp_path / "pulled"
    result = run("pull", "complaints:1", "--to", str(target))
    assert "verified" in result.stdout
    assert sorted(p.name for p in target.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    assert (target / "adapter_model.safetensors").read_bytes() == (
        folder / "adapter_model.safetensors"
    ).read_bytes()


def test_diff_compares_configs_metrics_and_lora_deltas(
    registry_env, tiny_base, make_lora, tmp_path: Path
) -> None:
    register(make_lora(seed=1, r=4), tiny_base, "complaints", "--metric", "accuracy=0.8")
    register(make_lora(seed=1, r=4, alpha=16), tiny_base, "complaints", "--metric", "accuracy=0.9")
    plot = tmp_path / "deltas.png"
    result = run_json("diff", "complaints:1", "complaints:2", "--plot", str(plot))
    assert result["config"] == {"lora_alpha": {"a": 8, "b": 16}}
    assert abs(result["metrics"]["accuracy"]["delta"] - 0.1) < 1e-9
    assert len(result["modules"]) == 4  # 2 layers x (query, value)
    for row in result["modules"]:  # same A and B, twice the scaling: twice the norm, same direction
        assert abs(row["norm_b"] - 2 * row["norm_a"]) < 1e-6 * row["norm_b"]
        assert abs(row["cosine"] - 1) < 1e-9
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "lora_alpha" in run("diff", "complaints:1", "complaints:2").stdout


def test_base_fingerprint_prints_hex_alone_or_json(tiny_base) -> None:
    plain = run("base", "fingerprint", str(tiny_base)).stdout.strip()
    assert len(plain) == 64 and int(plain, 16) >= 0
    data = run_json("base", "fingerprint", str(tiny_base))
    assert data["fingerprint"] == plain and data["tensor_count"] > 0 and data["parameter_count"] > 0


def test_every_registry_command_has_an_example() -> None:
    for command in (
        "register",
        "list",
        "show",
        "bases",
        "diff",
        "promote",
        "demote",
        "history",
        "pull",
        "db",
        "base",
    ):
        assert "Example:" in run(command, "--help").stdout, command
