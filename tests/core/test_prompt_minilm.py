"""Each prompt method trains the real MiniLM on a small labeled task and reloads in a fresh process.

32 customer messages (complaint / no complaint) from the quickstart data, 16 tokens, batches of 8:
the training loss over the whole set must fall to half of its start within 300 steps (early stop
once it does); the three saved adapters, loaded by one new Python process, must predict the same
labels as the models that were trained.
"""

from __future__ import annotations

import csv
import importlib.resources
import importlib.util
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from models import minilm_dir

import adapterlab

pytestmark = pytest.mark.slow

NUM_EXAMPLES, MAX_LENGTH, BATCH, MAX_STEPS, EVAL_EVERY = 32, 16, 8, 300, 10
CONFIGS = {
    "prompt": (adapterlab.PromptTuningConfig, {}, 2e-1),
    "ptuning": (adapterlab.PromptEncoderConfig, {"encoder_hidden_size": 64}, 3e-2),
    "prefix": (adapterlab.PrefixTuningConfig, {}, 5e-2),
}

PREDICT_IN_FRESH_PROCESS = """
import json, sys
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
import adapterlab
base_dir, max_length = sys.argv[1], int(sys.argv[4])
adapter_dirs, texts = json.loads(sys.argv[2]), json.loads(sys.argv[3])
batch = AutoTokenizer.from_pretrained(base_dir)(texts, padding=True, truncation=True, max_length=max_length,
                                                return_tensors="pt")
predictions = {}
for method, adapter_dir in adapter_dirs.items():
    base = AutoModelForSequenceClassification.from_pretrained(base_dir, num_labels=2)
    model = adapterlab.PeftModel.from_pretrained(base, adapter_dir).eval()
    with torch.no_grad():
        predictions[method] = model(**batch).logits.argmax(-1).tolist()
print(json.dumps(predictions))
"""


def _labeled_texts() -> tuple[list[str], torch.Tensor]:
    data = importlib.resources.files("adapterlab.training").joinpath("data/complaints.csv")
    with data.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))[:NUM_EXAMPLES]
    return [row["text"] for row in rows], torch.tensor([row["label"] == "complaint" for row in rows]).long()


def _set_loss(model, batch, labels) -> float:
    model.eval()
    with torch.no_grad():
        loss = model(**batch, labels=labels).loss.item()
    model.train()
    return loss


@dataclass
class Trained:
    start_loss: float
    end_loss: float
    steps: int
    predicted: list[int]
    folder: Path


def _train(method: str, batch: dict[str, torch.Tensor], labels: torch.Tensor, folder: Path) -> Trained:
    from transformers import AutoModelForSequenceClassification

    config_class, kwargs, lr = CONFIGS[method]
    torch.manual_seed(0)
    base = AutoModelForSequenceClassification.from_pretrained(minilm_dir(), num_labels=2)
    model = adapterlab.get_peft_model(base, config_class(task_type="SEQ_CLS", num_virtual_tokens=8, **kwargs))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    order = torch.Generator().manual_seed(0)
    start = loss = _set_loss(model, batch, labels)
    for step in range(1, MAX_STEPS + 1):
        rows = torch.randperm(NUM_EXAMPLES, generator=order)[:BATCH]
        model(**{k: v[rows] for k, v in batch.items()}, labels=labels[rows]).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if step % EVAL_EVERY == 0:
            loss = _set_loss(model, batch, labels)
            if loss <= start / 2:
                break
    model.eval()
    with torch.no_grad():
        predicted = model(**batch).logits.argmax(-1).tolist()
    model.save_pretrained(folder)
    return Trained(start, loss, step, predicted, folder)


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return _labeled_texts()[0]


@pytest.fixture(scope="module")
def trained(texts, tmp_path_factory) -> dict[str, Trained]:
    from transformers import AutoTokenizer

    labels = _labeled_texts()[1]
    batch = AutoTokenizer.from_pretrained(minilm_dir())(
        texts, padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt"
    )
    return {method: _train(method, batch, labels, tmp_path_factory.mktemp(method)) for method in CONFIGS}


@pytest.mark.parametrize("method", list(CONFIGS))
def test_minilm_training_halves_the_loss(method, trained):
    run = trained[method]
    assert run.end_loss <= run.start_loss / 2, (
        f"{method}: loss {run.start_loss:.3f} -> {run.end_loss:.3f} after {run.steps} steps"
    )


def test_reloaded_adapters_predict_the_same_labels_in_a_fresh_process(trained, texts):
    folders = json.dumps({method: str(run.folder) for method, run in trained.items()})
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            PREDICT_IN_FRESH_PROCESS,
            str(minilm_dir()),
            folders,
            json.dumps(texts),
            str(MAX_LENGTH),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    reloaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert reloaded == {method: run.predicted for method, run in trained.items()}
