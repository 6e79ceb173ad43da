"""Evaluation metrics: accuracy and macro-F1 for classification, exact match for generation.

Exact match is computed teacher-forced: an example matches when the model's arg-max at every
scored position equals the target. With the EOS token among the targets this is exactly
"greedy decoding reproduces the target", at the cost of one forward pass instead of a decode loop.
"""

from __future__ import annotations

from typing import Any

IGNORE_INDEX = -100


def classification_predictions(logits: Any, labels: Any) -> tuple[Any, Any]:
    """Flat (predicted, true) class ids; per-token logits drop the -100 positions."""
    predicted = logits.argmax(dim=-1)
    if labels.dim() == 1:
        return predicted, labels
    scored = labels != IGNORE_INDEX
    return predicted[scored], labels[scored]


def exact_matches(logits: Any, labels: Any, shifted: bool) -> Any:
    """One boolean per example. ``shifted``: causal LMs predict token t+1 at position t."""
    if logits.size(1) > labels.size(1):  # prompt methods prepend virtual positions to the logits
        logits = logits[:, logits.size(1) - labels.size(1) :]
    predicted = logits.argmax(dim=-1)
    if shifted:
        predicted, labels = predicted[:, :-1], labels[:, 1:]
    scored = labels != IGNORE_INDEX
    return ((predicted == labels) | ~scored).all(dim=1)


def accuracy(predicted: list[int], truth: list[int]) -> float:
    return sum(p == t for p, t in zip(predicted, truth, strict=True)) / max(len(truth), 1)


def macro_f1(predicted: list[int], truth: list[int], num_classes: int) -> float:
    """Unweighted mean of per-class F1 over the classes present in truth or predictions."""
    scores = []
    for label in range(num_classes):
        tp = sum(p == label and t == label for p, t in zip(predicted, truth, strict=True))
        fp = sum(p == label and t != label for p, t in zip(predicted, truth, strict=True))
        fn = sum(p != label and t == label for p, t in zip(predicted, truth, strict=True))
        if tp + fp + fn:
            scores.append(2 * tp / (2 * tp + fp + fn))
    return sum(scores) / len(scores) if scores else 0.0
