"""One pass over the eval set: the loss and the task's metrics, gathered across processes."""

from __future__ import annotations

from typing import Any

from adapterlab.hf_format import TaskType
from adapterlab.training.config import labelled
from adapterlab.training.metrics import accuracy, classification_predictions, exact_matches, macro_f1


def evaluate(
    model: Any, loader: Any, accelerator: Any, task: str, num_labels: int | None
) -> dict[str, float]:
    """``eval_loss`` plus ``eval_accuracy``/``eval_f1`` (classification) or ``eval_exact_match``."""
    import torch

    model.eval()
    losses, predicted, truth, matches = [], [], [], []
    with torch.no_grad():
        for batch in loader:
            outputs = model(**batch)
            losses.append(accelerator.gather_for_metrics(outputs.loss.detach().float().reshape(1)))
            labels = batch["labels"]
            if labelled(task):
                logits = accelerator.pad_across_processes(outputs.logits, dim=1)
                labels = accelerator.pad_across_processes(labels, dim=1, pad_index=-100)
                logits, labels = accelerator.gather_for_metrics((logits, labels))
                batch_predicted, batch_truth = classification_predictions(logits, labels)
                predicted.extend(batch_predicted.tolist())
                truth.extend(batch_truth.tolist())
            else:
                hits = exact_matches(outputs.logits, labels, shifted=task == TaskType.CAUSAL_LM)
                matches.extend(accelerator.gather_for_metrics(hits).tolist())
    model.train()
    metrics = {"eval_loss": torch.cat(losses).mean().item()}
    if labelled(task):
        metrics["eval_accuracy"] = accuracy(predicted, truth)
        metrics["eval_f1"] = macro_f1(predicted, truth, num_labels or 0)
    else:
        metrics["eval_exact_match"] = sum(matches) / max(len(matches), 1)
    return metrics
