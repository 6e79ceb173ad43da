"""Training throughput: adapterlab's loop vs the Hugging Face Trainer with HF PEFT, in one run.

Same model (the bundled MiniLM), same data (the quickstart's training split, same tokenization),
same LoRA config (r=8, alpha=16, dropout=0.1, query/value, classifier trained), same batch size,
learning rate and number of optimizer steps. Both sides run with nothing extra: our side without
registration (MLflow logging stays on, as in a real run), the Trainer with ``report_to=[]`` and
no saving. Both figures count training time only (our loop leaves its one final evaluation out,
as the Trainer does with evaluation off). The two sides alternate ``--rounds`` times and the best
round of each counts, so a busy machine hurts both alike.

    .venv/bin/python benchmarks/train_throughput.py --steps 40 --rounds 2
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time


def adapterlab_samples_per_second(steps: int, batch_size: int, home: str) -> float:
    from adapterlab.training import TrainConfig, train

    os.environ["ADAPTERLAB_HOME"] = home
    result = train(
        TrainConfig(
            max_steps=steps,
            batch_size=batch_size,
            eval_steps=steps,
            save_steps=None,
            register=False,
            name="throughput",
        )
    )
    return result.samples_per_second


def hf_trainer_samples_per_second(steps: int, batch_size: int, output: str) -> float:
    from peft import LoraConfig, get_peft_model  # the reference: benchmarks may use HF PEFT
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    from adapterlab.training.config import TrainConfig, resolve
    from adapterlab.training.data import load_training_data
    from adapterlab.training.tokenization import encode_dataset

    config = resolve(TrainConfig(batch_size=batch_size))
    data = load_training_data(config)
    tokenizer = AutoTokenizer.from_pretrained(config.base)
    train_set = encode_dataset(data.train, tokenizer, config, data.labels)
    model = AutoModelForSequenceClassification.from_pretrained(config.base, num_labels=len(data.labels))
    model = get_peft_model(
        model,
        LoraConfig(
            task_type="SEQ_CLS", r=8, lora_alpha=16, lora_dropout=0.1, target_modules=["query", "value"]
        ),
    )
    arguments = TrainingArguments(
        output_dir=output,
        max_steps=steps,
        per_device_train_batch_size=batch_size,
        learning_rate=config.lr,
        warmup_steps=round(config.warmup_ratio * steps),
        lr_scheduler_type="linear",
        logging_steps=config.logging_steps,
        save_strategy="no",
        eval_strategy="no",
        report_to=[],
        seed=config.seed,
        use_cpu=True,
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=model, args=arguments, train_dataset=train_set, data_collator=DataCollatorWithPadding(tokenizer)
    )
    return trainer.train().metrics["train_samples_per_second"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    ours, theirs = 0.0, 0.0
    started = time.perf_counter()
    # one home for every round: MLflow caches its store per process, so it must outlive the rounds
    with tempfile.TemporaryDirectory() as scratch:
        for round_index in range(args.rounds):
            ours = max(
                ours,
                adapterlab_samples_per_second(args.steps, args.batch_size, os.path.join(scratch, "home")),
            )
            theirs = max(
                theirs,
                hf_trainer_samples_per_second(args.steps, args.batch_size, os.path.join(scratch, "hf")),
            )
            print(
                f"round {round_index + 1}: best so far ours {ours:.1f}, HF {theirs:.1f} samples/s", flush=True
            )
    print(
        f"\n{args.steps} steps x batch {args.batch_size}, MiniLM + LoRA r=8, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}, {time.perf_counter() - started:.0f} s in all"
    )
    print(f"adapterlab loop        {ours:8.1f} samples/s")
    print(f"HF Trainer + HF PEFT   {theirs:8.1f} samples/s")
    print(f"ratio                  {ours / theirs:8.2f}x (goal >= 1.0)")


if __name__ == "__main__":
    main()
