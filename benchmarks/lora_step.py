"""How fast is an adapterlab LoRA training step, against HF PEFT and against the frozen-base floor?

On the real all-MiniLM-L6-v2 (sequence classification, batch 16x128, LoRA r=8, alpha 16, dropout 0.1
on query+value) it times, in one process and with the same data, dtype and threads:

- a training step (forward, loss, backward, AdamW step) of adapterlab and of HF PEFT;
- the floor: the frozen base, forward from ``inputs_embeds`` that require grad and backward to
  them, with no adapter at all (the least a LoRA step can cost);
- inference of the model with its adapter merged (``merge_adapter()``, still wrapped) and of the
  plain base model.

Steps are interleaved (each iteration runs every contender once, in a rotating order, after the
same ``torch.manual_seed``), so drift in machine load hits all of them alike; the ratios compare
medians. It prints the ratios and asserts nothing: the goals are (a) <= 0.95 (never above 1.00),
(b) <= 1.05, (c) <= 1.02.

    python benchmarks/lora_step.py [--steps 20] [--warmup 5] [--threads N] [--clock wall|cpu] [--profile]

On a machine shared with other jobs, wall time mostly measures the scheduler; there,
``--threads 1 --clock cpu`` (this process's CPU time) gives steadier ratios.
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Callable
from types import ModuleType

import torch
from step_timing import interleaved_medians, make_batch, minilm_dir, training_step
from transformers import AutoModelForSequenceClassification

import adapterlab

BATCH, SEQ_LEN = 16, 128


def lora_config(lib: ModuleType) -> object:
    return lib.LoraConfig(
        task_type="SEQ_CLS", r=8, lora_alpha=16, lora_dropout=0.1, target_modules=["query", "value"]
    )


def floor_step(base: torch.nn.Module, batch: dict[str, torch.Tensor]) -> Callable[[], None]:
    base.requires_grad_(False)
    with torch.no_grad():
        embeds = base.get_input_embeddings()(batch["input_ids"])
    embeds.requires_grad_(True)
    rest = {"attention_mask": batch["attention_mask"], "labels": batch["labels"]}

    def step() -> None:
        embeds.grad = None
        base(inputs_embeds=embeds, **rest).loss.backward()

    return step


def inference(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> Callable[[], None]:
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}

    def run() -> None:
        with torch.inference_mode():
            model(**inputs)

    return run


def profile(step: Callable[[], None], label: str, rows: int = 25) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    for _ in range(2):
        step()
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(3):
            step()
    print(f"\n--- profile: {label} (3 steps) ---")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))


def main(argv: list[str] | None = None) -> None:
    import peft  # the reference; benchmarks and tests only

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="timed iterations (after warmup)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed iterations first")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch intra-op threads")
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help=(
            "wall: elapsed time; cpu: this process's CPU time (steadier on a shared machine; needs "
            "--threads 1)"
        ),
    )
    parser.add_argument(
        "--profile", action="store_true", help="also print torch.profiler tables of both steps"
    )
    args = parser.parse_args(argv)
    if args.clock == "cpu" and args.threads != 1:
        # with several threads, CPU time also counts OpenMP workers spinning while they wait
        parser.error("--clock cpu needs --threads 1")
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    base = AutoModelForSequenceClassification.from_pretrained(minilm_dir(), num_labels=2)
    batch = make_batch(base.config.vocab_size, BATCH, SEQ_LEN)
    ours = adapterlab.get_peft_model(copy.deepcopy(base), lora_config(adapterlab)).train()
    theirs = peft.get_peft_model(copy.deepcopy(base), lora_config(peft)).train()
    floor = copy.deepcopy(base).train()

    train = interleaved_medians(
        {
            "adapterlab": training_step(ours, batch, lr=1e-4),
            "peft": training_step(theirs, batch, lr=1e-4),
            "floor": floor_step(floor, batch),
        },
        args.steps,
        args.warmup,
        clock,
    )
    ours.eval().merge_adapter()
    theirs.eval().merge_adapter()
    base.eval()
    infer = interleaved_medians(
        {
            "merged": inference(ours, batch),
            "peft merged": inference(theirs, batch),
            "base": inference(base, batch),
        },
        args.steps,
        args.warmup,
        clock,
    )

    print(
        f"LoRA step on all-MiniLM-L6-v2 (SEQ_CLS, batch {BATCH}x{SEQ_LEN}, r=8, alpha=16, dropout=0.1, "
        f"query+value), float32, {torch.get_num_threads()} threads, {args.clock} clock, median of "
        f"{args.steps} interleaved steps after {args.warmup} warmup"
    )
    print("train step ms: " + "  ".join(f"{name} {1000 * t:.1f}" for name, t in train.items()))
    print("inference ms:  " + "  ".join(f"{name} {1000 * t:.1f}" for name, t in infer.items()))
    print(
        f"(a) adapterlab step / HF PEFT step:   {train['adapterlab'] / train['peft']:.3f}  (goal <= 0.95, "
        "never > 1.00)"
    )
    print(f"(b) adapterlab step / floor step:     {train['adapterlab'] / train['floor']:.3f}  (goal <= 1.05)")
    print(f"(c) merged inference / base:          {infer['merged'] / infer['base']:.3f}  (goal <= 1.02)")
    if args.profile:
        ours.unmerge_adapter()
        theirs.unmerge_adapter()
        profile(training_step(ours.train(), batch, lr=1e-4), "adapterlab")
        profile(training_step(theirs.train(), batch, lr=1e-4), "peft")


if __name__ == "__main__":
    main()
