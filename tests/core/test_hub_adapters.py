"""Adapters by Hub repo id: fetched through huggingface_hub's cache, tested offline on a cache we
fill ourselves (the layout huggingface_hub writes: refs/<revision> names a snapshot folder)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from core_bases import bert_config
from huggingface_hub import constants
from transformers import BertForSequenceClassification

import adapterlab
from adapterlab.errors import CheckpointError

REPO = "acme/bert-lora"
COMMITS = {"main": "a" * 40, "v1": "b" * 40}


def base() -> BertForSequenceClassification:
    torch.manual_seed(0)
    return BertForSequenceClassification(bert_config(num_labels=2)).eval()


def trained_adapter(folder: Path, seed: int) -> torch.Tensor:
    """Save a LoRA adapter with random B (so it changes the output) and return its logits."""
    model = adapterlab.get_peft_model(base(), adapterlab.LoraConfig(task_type="SEQ_CLS", r=4))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator))
    model.save_pretrained(folder)
    return logits(model)


def logits(model: torch.nn.Module) -> torch.Tensor:
    ids = torch.arange(2, 8).unsqueeze(0)
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, dict[str, torch.Tensor]]:
    """An offline Hugging Face cache holding REPO at two revisions, the second also in a subfolder."""
    cache = tmp_path / "hub"
    repo = cache / f"models--{REPO.replace('/', '--')}"
    expected = {}
    for seed, (revision, commit) in enumerate(COMMITS.items()):
        snapshot = repo / "snapshots" / commit
        expected[revision] = trained_adapter(snapshot, seed)
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / revision).write_text(commit)
    expected["subfolder"] = trained_adapter(repo / "snapshots" / COMMITS["main"] / "task", seed=7)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache, expected


def test_from_pretrained_takes_a_hub_repo_id(hub_cache) -> None:
    _, expected = hub_cache
    model = adapterlab.PeftModel.from_pretrained(base(), REPO)
    torch.testing.assert_close(logits(model), expected["main"])
    assert adapterlab.PeftConfig.from_pretrained(REPO).r == 4


def test_revision_subfolder_and_cache_dir_pick_what_hf_peft_picks(hub_cache) -> None:
    cache, expected = hub_cache
    at_tag = adapterlab.PeftModel.from_pretrained(base(), REPO, revision="v1", cache_dir=cache)
    torch.testing.assert_close(logits(at_tag), expected["v1"])
    in_subfolder = adapterlab.PeftModel.from_pretrained(base(), REPO, subfolder="task")
    torch.testing.assert_close(logits(in_subfolder), expected["subfolder"])
    model = adapterlab.PeftModel.from_pretrained(base(), REPO)
    model.load_adapter(REPO, "tagged", revision="v1", local_files_only=True)
    model.set_adapter("tagged")
    torch.testing.assert_close(logits(model), expected["v1"])


def test_a_repo_missing_from_an_offline_cache_is_one_clear_error(hub_cache) -> None:
    with pytest.raises(CheckpointError, match="not in the local Hugging Face cache") as error:
        adapterlab.PeftModel.from_pretrained(base(), "acme/no-such-adapter")
    assert "\n" not in str(error.value)
    with pytest.raises(CheckpointError, match="not in the local Hugging Face cache"):
        adapterlab.PeftModel.from_pretrained(base(), REPO, revision="v9")


def test_a_path_that_is_no_folder_and_no_repo_id_says_so(tmp_path: Path) -> None:
    with pytest.raises(
        CheckpointError, match="does not exist; give the folder save_pretrained wrote or a Hub repo id"
    ):
        adapterlab.PeftModel.from_pretrained(base(), str(tmp_path / "nothing" / "here" / "x"))


def test_unknown_keyword_arguments_are_refused(hub_cache) -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument 'revison'"):
        adapterlab.PeftModel.from_pretrained(base(), REPO, revison="v1")


def test_a_script_run_with_hf_hub_offline_loads_from_the_cache(hub_cache, tmp_path: Path) -> None:
    cache, expected = hub_cache
    torch.save(expected["main"], tmp_path / "expected.pt")
    script = textwrap.dedent(f"""
        import sys, torch
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_hub_adapters import base, logits
        from adapterlab import PeftModel
        model = PeftModel.from_pretrained(base(), {REPO!r})
        torch.testing.assert_close(logits(model), torch.load({str(tmp_path / "expected.pt")!r}))
        print("loaded from the cache")
    """)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache)}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "loaded from the cache" in result.stdout


def test_a_dead_hub_endpoint_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    with pytest.raises(CheckpointError, match="is not a local folder") as error:
        adapterlab.PeftModel.from_pretrained(base(), REPO)
    assert "\n" not in str(error.value)
