"""Classification metrics: accuracy, precision, recall, F1 and the confusion matrix.

Predictions are logits or probabilities; targets are integer class indices (or one-hot / probability rows,
reduced with argmax, or 0/1 floats for binary tasks).

- `[N, C, ...]` predictions with C ≥ 2: the class is the argmax over dim 1; targets `[N, ...]`.
- `[N]` or `[N, 1]` predictions: binary; a probability (the predict node is a sigmoid) is positive at ≥ 0.5,
  a logit at ≥ 0.
- Two classes give binary precision/recall/F1 (positive class 1), as scikit-learn's average='binary';
  more give the macro average over the classes present in the targets or the predictions (scikit-learn's
  average='macro' with its default labels). A precision or recall with an empty denominator counts as 0.
- The confusion matrix has one row per true class and one column per predicted class.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

NAMES = ("accuracy", "precision", "recall", "f1")


def classes_of(pred: np.ndarray, target: np.ndarray, probabilities: bool = False) -> tuple[np.ndarray, np.ndarray, int]:
    """(predicted labels, true labels, number of classes), both flat int64."""
    pred = np.asarray(pred)
    target = np.asarray(target)
    if pred.ndim >= 2 and pred.shape[1] >= 2 and pred.dtype.kind == "f":
        k = pred.shape[1]
        p = pred.argmax(axis=1)
        if target.shape == pred.shape and target.dtype.kind == "f":
            t = target.argmax(axis=1)
        else:
            t = target
    else:
        k = 2
        p = pred.reshape(pred.shape[0], *pred.shape[2:]) if pred.ndim >= 2 and pred.shape[1] == 1 else pred
        if p.dtype.kind == "f":
            p = (p >= (0.5 if probabilities else 0.0))
        t = target.reshape(p.shape) if target.size == p.size else target
        if t.dtype.kind == "f":
            t = t >= 0.5
    p = np.asarray(p).astype(np.int64).ravel()
    t = np.asarray(t).astype(np.int64).ravel()
    if p.shape != t.shape:
        raise ValueError(f"predictions give {p.size} labels but the targets {t.size}")
    return p, t, k


def confusion_matrix(pred_labels: np.ndarray, true_labels: np.ndarray, num_classes: int) -> np.ndarray:
    """C×C counts: row = true class, column = predicted class."""
    k = max(num_classes, int(pred_labels.max(initial=-1)) + 1, int(true_labels.max(initial=-1)) + 1)
    cm = np.bincount(true_labels * k + pred_labels, minlength=k * k).reshape(k, k)
    return cm.astype(np.int64)


def from_confusion(cm: np.ndarray) -> dict[str, float]:
    """accuracy, precision, recall, f1 (binary for 2 classes, else macro over classes seen) from counts."""
    cm = np.asarray(cm, dtype=np.int64)
    total = cm.sum()
    tp = np.diag(cm).astype(np.float64)
    pred_pos = cm.sum(axis=0).astype(np.float64)
    true_pos = cm.sum(axis=1).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        prec = np.where(pred_pos > 0, tp / pred_pos, 0.0)
        rec = np.where(true_pos > 0, tp / true_pos, 0.0)
        f1 = np.where(prec + rec > 0, 2 * prec * rec / (prec + rec), 0.0)
    out = {"accuracy": float(tp.sum() / total) if total else 0.0}
    if cm.shape[0] == 2:
        out.update(precision=float(prec[1]), recall=float(rec[1]), f1=float(f1[1]))
    else:
        seen = (pred_pos + true_pos) > 0
        if not seen.any():
            seen[:] = True
        out.update(precision=float(prec[seen].mean()), recall=float(rec[seen].mean()),
                   f1=float(f1[seen].mean()))
    return out


@dataclass
class Accumulator:
    """Collects predictions batch by batch; `result()` gives the metrics over everything seen."""

    probabilities: bool = False
    num_classes: int = 0
    cm: Any = None

    def update(self, pred: np.ndarray, target: np.ndarray) -> None:
        p, t, k = classes_of(pred, target, self.probabilities)
        k = max(k, self.num_classes)
        part = confusion_matrix(p, t, k)
        if self.cm is None:
            self.cm = part
        else:
            n = max(self.cm.shape[0], part.shape[0])
            self.cm = _pad(self.cm, n) + _pad(part, n)
        self.num_classes = self.cm.shape[0]

    def result(self) -> dict[str, float]:
        if self.cm is None:
            return {}
        return from_confusion(self.cm)


def _pad(cm: np.ndarray, n: int) -> np.ndarray:
    if cm.shape[0] == n:
        return cm
    out = np.zeros((n, n), dtype=np.int64)
    out[: cm.shape[0], : cm.shape[1]] = cm
    return out


def compute(pred: np.ndarray, target: np.ndarray, probabilities: bool = False) -> dict[str, Any]:
    """All metrics for one set of predictions: accuracy, precision, recall, f1 and confusion_matrix."""
    acc = Accumulator(probabilities)
    acc.update(pred, target)
    return {**acc.result(), "confusion_matrix": acc.cm}


def format_confusion(cm: np.ndarray, labels: list[str] | None = None) -> str:
    """The confusion matrix as a text table (rows: true class, columns: predicted class)."""
    k = cm.shape[0]
    labels = labels or [str(i) for i in range(k)]
    w = max(max(len(s) for s in labels), len(str(int(cm.max(initial=0)))), 1)
    head = " " * (w + 6) + " ".join(s.rjust(w) for s in labels)
    rows = [f"true {labels[i].rjust(w)} " + " ".join(str(int(v)).rjust(w) for v in cm[i]) for i in range(k)]
    return "\n".join(["confusion matrix (rows: true class, columns: predicted class)", head, *rows])
