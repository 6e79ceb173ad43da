"""How fast is a prompt tuning / P-tuning training step of adapterlab, against HF PEFT's?

On the real all-MiniLM-L6-v2 (sequence classification, batch 16x128, 20 virtual tokens; P-tuning
with its default MLP, encoder_hidden_size = 384) it times, in one process and with the same data,
threads and weights, a training step (forward, loss, backward, AdamW step) of each library.
Steps are interleaved (each iteration runs every contender once, in a rotating order, after the
same ``torch.manual_seed``), so drift in machine load hits all of them alike; the ratios compare
medians. It prints the ratios and asserts nothing: the goal is <= 1.00 for each method. The two
libraries run the same forward; adapterlab's backward skips the zero gradient rows of the frozen
last block (live rows in ``adapterlab/tuners/cpu_fast_paths.py``, opt-in, turned on here), and that is
where the difference comes from. It also times an A/A control (a twin of adapterlab's prompt-tuning
model) whose distance from 1.000 shows the run's noise.

    python benchmarks/prompt_step.py [--steps 20] [--warmup 5] [--threads N]
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Callable
from typing import Any

import torch
from step_timing import interleaved_medians, make_batch, minilm_dir, training_step
from transformers import AutoModelForSequenceClassification

import adapterlab
from adapterlab.tuners import cpu_fast_paths

BATCH, SEQ_LEN, VIRTUAL_TOKENS = 16, 128, 20


def configs(lib: Any) -> dict[str, Any]:
    return {
        "prompt tuning": lib.PromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=VIRTUAL_TOKENS),
        "P-tuning": lib.PromptEncoderConfig(task_type="SEQ_CLS", num_virtual_tokens=VIRTUAL_TOKENS),
    }


def main(argv: list[str] | None = None) -> None:
    import peft  # the reference; benchmarks and tests only

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="timed iterations (after warmup)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed iterations first")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch intra-op threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cpu_fast_paths.configure(live_rows=True)

    torch.manual_seed(0)
    base = AutoModelForSequenceClassification.from_pretrained(minilm_dir(), num_labels=2)
    batch = make_batch(base.config.vocab_size, BATCH, SEQ_LEN)
    contenders: dict[str, Callable[[], None]] = {}
    for lib, label in ((adapterlab, "adapterlab"), (peft, "peft")):
        for method, config in configs(lib).items():
            torch.manual_seed(1)  # the same prompt weights in both libraries
            model = lib.get_peft_model(copy.deepcopy(base), config).train()
            contenders[f"{method} | {label}"] = training_step(model, batch, lr=1e-3)
    # A/A control: a second, identical adapterlab prompt-tuning model. Its ratio to the first is
    # 1.000 but for the machine's noise, which tells how far apart two equal steps land here.
    torch.manual_seed(1)
    twin = adapterlab.get_peft_model(copy.deepcopy(base), configs(adapterlab)["prompt tuning"]).train()
    contenders["control"] = training_step(twin, batch, lr=1e-3)
    medians = interleaved_medians(contenders, args.steps, args.warmup)

    print(
        f"training step on all-MiniLM-L6-v2 (SEQ_CLS, batch {BATCH}x{SEQ_LEN}, {VIRTUAL_TOKENS} virtual "
        f"tokens), float32, {torch.get_num_threads()} threads, median of {args.steps} interleaved steps "
        f"after {args.warmup} warmup"
    )
    for method in configs(adapterlab):
        ours, theirs = medians[f"{method} | adapterlab"], medians[f"{method} | peft"]
        print(
            f"{method:14s} adapterlab {1000 * ours:7.1f} ms  peft {1000 * theirs:7.1f} ms  "
            f"ratio {ours / theirs:.3f}  (goal <= 1.00)"
        )
    control = medians["prompt tuning | adapterlab"] / medians["control"]
    print(
        f"A/A control: adapterlab prompt tuning / an identical twin = {control:.3f} (the noise of this run)"
    )


if __name__ == "__main__":
    main()
