"""Assemble what the loop needs: accelerator, tokenized data, PEFT model, optimizer, schedule."""

from __future__ import annotations

import os
from typing import Any

from adapterlab.errors import InvalidConfig
from adapterlab.training.config import TrainConfig, labelled
from adapterlab.training.data import TrainingData
from adapterlab.training.loop import EpochShuffle, LoopParts, plan_steps
from adapterlab.training.model_builder import build_model, load_tokenizer
from adapterlab.training.tokenization import BatchCollator, encode_dataset


def make_accelerator(config: TrainConfig) -> Any:
    import torch
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    precision = config.mixed_precision
    if precision == "auto":
        if torch.cuda.is_available():
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            precision = "no"  # CPU autocast to bf16 is slower than fp32 on most CPUs
    if precision == "fp16" and not torch.cuda.is_available():
        raise InvalidConfig("mixed precision fp16 needs a CUDA GPU; use --mixed-precision bf16 or no on CPU")
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        # accelerate keeps one state per process; a library caller's second train() may want other settings
        AcceleratorState._reset_state(reset_partial_state=True)
    # the schedule is stepped by hand once per optimizer step, whatever the number of processes;
    # cpu=True without CUDA: only then does accelerate join a torchrun/launch group over gloo
    return Accelerator(
        mixed_precision=precision, step_scheduler_with_optimizer=False, cpu=not torch.cuda.is_available()
    )


def build_parts(
    config: TrainConfig, peft_config: Any, data: TrainingData, accelerator: Any
) -> tuple[LoopParts, tuple[int, int]]:
    """The prepared loop parts, and (trainable, total) parameter counts of the PEFT model."""
    import torch
    from accelerate.utils import set_seed
    from torch.utils.data import DataLoader
    from transformers import get_scheduler

    set_seed(config.seed)  # before the model: adapter initialisation draws from the RNG
    tokenizer = load_tokenizer(config)
    model = build_model(config, peft_config, data.labels, tokenizer)
    with accelerator.main_process_first():
        train_set = encode_dataset(data.train, tokenizer, config, data.labels)
        eval_set = encode_dataset(data.eval, tokenizer, config, data.labels)
    collate = BatchCollator(tokenizer)
    sampler = EpochShuffle(len(train_set), config.seed)
    # an explicit generator keeps loader start-up off the global RNG that dropout uses
    train_loader = DataLoader(
        train_set,
        batch_size=config.batch_size,
        sampler=sampler,
        collate_fn=collate,
        generator=torch.Generator().manual_seed(config.seed),
    )
    eval_loader = DataLoader(eval_set, batch_size=config.batch_size * 2, collate_fn=collate)
    trainable = [param for param in model.parameters() if param.requires_grad]
    counts = (sum(param.numel() for param in trainable), sum(param.numel() for param in model.parameters()))
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)
    model, optimizer, train_loader, eval_loader = accelerator.prepare(
        model, optimizer, train_loader, eval_loader
    )
    total_steps = plan_steps(config, len(train_loader))
    scheduler = get_scheduler(
        config.scheduler,
        optimizer,
        num_warmup_steps=round(config.warmup_ratio * total_steps),
        num_training_steps=total_steps,
    )
    parts = LoopParts(
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        train_loader=train_loader,
        eval_loader=eval_loader,
        sampler=sampler,
        total_steps=total_steps,
        metric_for_best=config.metric_for_best or default_metric(config.task),
        num_labels=len(data.labels) if data.labels else None,
    )
    return parts, counts


def default_metric(task: str) -> str:
    return "eval_accuracy" if labelled(task) else "eval_loss"
