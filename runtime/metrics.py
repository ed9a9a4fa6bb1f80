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

Beyond plain classification (all accumulated batch by batch, so a metric is over the whole set):
- `token_accuracy`: accuracy over the positions of [N, C, T…] logits, leaving out targets equal to the
  loss's `ignore_index` (padding); `accuracy` leaves them out too. `sequence_accuracy`: the fraction of
  samples whose every kept position is right (exact match).
- A mask (train.mask: {train: train_mask, test: test_mask}) keeps only the positions, or samples, where it
  is non-zero: node classification scored on a split's nodes. Its shape is the target's or [N].
- Regression: `mae` (mean |error|), `rmse` (the square root of the mean squared error over every value, as
  Keras's RootMeanSquaredError) and `r2` (1 − SSE/SST per output column, averaged over the columns, as
  scikit-learn's r2_score; a constant column scores 1 when predicted exactly, else 0).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

NAMES = ("accuracy", "precision", "recall", "f1")
SEQUENCE = ("token_accuracy", "sequence_accuracy")
CLASSIFICATION = NAMES + ("confusion_matrix",) + SEQUENCE
REGRESSION = ("mae", "rmse", "r2")
MAXIMISED = NAMES + SEQUENCE + ("r2",)          # higher is better (the others: lower)


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
    """Collects predictions batch by batch; `result()` gives the metrics over everything seen.

    `metrics` names what to measure (empty: the classification metrics); `ignore_index` is a target class
    left out (the loss's); `update(..., mask=)` keeps only the positions where the mask is non-zero."""

    probabilities: bool = False
    num_classes: int = 0
    cm: Any = None
    metrics: tuple[str, ...] = ()
    ignore_index: int | None = None
    seq: Any = None                                     # [exact-match samples, samples]
    reg: Any = None                                     # regression sums per output column

    @property
    def classify(self) -> bool:
        return not self.metrics or any(m in CLASSIFICATION for m in self.metrics)

    def update(self, pred: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> None:
        if self.classify:
            self._update_classes(np.asarray(pred), np.asarray(target), mask)
        if any(m in REGRESSION for m in self.metrics):
            self._update_regression(np.asarray(pred), np.asarray(target), mask)

    def _update_classes(self, pred: np.ndarray, target: np.ndarray, mask: np.ndarray | None) -> None:
        p, t, k = classes_of(pred, target, self.probabilities)
        keep = _keep(target, t.size, mask, self.ignore_index)
        if "sequence_accuracy" in self.metrics:
            n = len(target) if target.ndim else 1
            kept = keep if keep is not None else np.ones(t.size, dtype=bool)
            right = ((p == t) | ~kept).reshape(n, -1).all(axis=1)
            counted = kept.reshape(n, -1).any(axis=1)       # a sample with nothing to score does not count
            if self.seq is None:
                self.seq = np.zeros(2, dtype=np.int64)
            self.seq += [int((right & counted).sum()), int(counted.sum())]
        if keep is not None:
            p, t = p[keep], t[keep]
        k = max(k, self.num_classes)
        part = confusion_matrix(p, t, k)
        if self.cm is None:
            self.cm = part
        else:
            n = max(self.cm.shape[0], part.shape[0])
            self.cm = _pad(self.cm, n) + _pad(part, n)
        self.num_classes = self.cm.shape[0]

    def _update_regression(self, pred: np.ndarray, target: np.ndarray, mask: np.ndarray | None) -> None:
        if pred.size != target.size:
            raise ValueError(f"regression metrics need predictions and targets of the same size, got "
                             f"{list(pred.shape)} and {list(target.shape)}")
        n = len(target) if target.ndim else 1
        y = target.reshape(n, -1).astype(np.float64)
        e = pred.reshape(n, -1).astype(np.float64) - y
        w = np.ones_like(y)
        keep = _keep(target, target.size, mask, None)
        if keep is not None:
            w = keep.reshape(y.shape).astype(np.float64)
        sums = np.stack([w.sum(0), (w * np.abs(e)).sum(0), (w * e * e).sum(0), (w * y).sum(0), (w * y * y).sum(0)])
        if self.reg is not None and self.reg.shape != sums.shape:
            raise ValueError("regression targets changed their number of columns between batches")
        self.reg = sums if self.reg is None else self.reg + sums

    def result(self) -> dict[str, float]:
        out: dict[str, float] = {}
        if self.cm is not None:
            out.update(from_confusion(self.cm))
            if "token_accuracy" in self.metrics:
                out["token_accuracy"] = out["accuracy"]
        if self.seq is not None:
            out["sequence_accuracy"] = float(self.seq[0] / self.seq[1]) if self.seq[1] else 0.0
        if self.reg is not None:
            out.update(regression(self.reg))
        return out


def regression(sums: np.ndarray) -> dict[str, float]:
    """mae, rmse and r2 from per-column sums [count, Σ|e|, Σe², Σy, Σy²] (see the module docstring)."""
    w, abs_e, sq_e, sy, syy = sums
    total = w.sum()
    if total == 0:
        return {"mae": float("nan"), "rmse": float("nan"), "r2": float("nan")}
    with np.errstate(divide="ignore", invalid="ignore"):
        sst = syy - np.where(w > 0, sy * sy / w, 0.0)
        r2 = np.where(sst > 1e-12 * np.maximum(syy, 1.0), 1.0 - sq_e / sst, np.where(sq_e == 0, 1.0, 0.0))
    return {"mae": float(abs_e.sum() / total), "rmse": float(np.sqrt(sq_e.sum() / total)),
            "r2": float(r2[w > 0].mean())}


def check_shapes(metrics: list[str], predict: str, pred_shape: tuple, target: str, target_shape: tuple,
                 masks: dict[str, tuple]) -> None:
    """Before training: regression metrics need predict and target of one shape (size-1 dims aside), a mask
    the target's shape or one value per sample."""
    from compiler.errors import UserError

    def fmt(shape: tuple) -> str:
        return "[" + ", ".join(map(str, shape)) + "]"

    squeeze = lambda shape: tuple(d for d in shape if d != 1)       # noqa: E731
    reg = [m for m in metrics if m in REGRESSION]
    if reg and squeeze(pred_shape) != squeeze(target_shape):
        raise UserError(f"train.metrics {', '.join(reg)} compare predict '{predict}' {fmt(pred_shape)} with target "
                        f"'{target}' {fmt(target_shape)} value by value: they need the same shape",
                        hint="regression metrics are for regression outputs; for class scores use accuracy")
    for name, shape in masks.items():
        if tuple(shape) != tuple(target_shape) and tuple(shape) != tuple(target_shape[:1]):
            raise UserError(f"train.mask: input '{name}' has shape {fmt(shape)}, but the target '{target}' "
                            f"has {fmt(target_shape)}: a mask needs the target's shape or one value per sample "
                            f"({fmt(target_shape[:1])})")


def _keep(target: np.ndarray, size: int, mask: np.ndarray | None, ignore: int | None) -> np.ndarray | None:
    """Which of the `size` flattened target positions count (None: all of them)."""
    keep = None
    if ignore is not None and target.dtype.kind in "iu":
        keep = (target != ignore).reshape(-1)
    if mask is not None:
        m = np.asarray(mask) != 0
        if m.size != size:
            n = len(target) if target.ndim else 1
            if m.shape != (n,) or size % n:
                raise ValueError(f"the metric mask has shape {list(m.shape)}, but the target has shape "
                                 f"{list(target.shape)}: give one value per target or per sample")
            m = np.repeat(m, size // n)
        m = m.reshape(-1)
        keep = m if keep is None else keep & m
    return keep


def _pad(cm: np.ndarray, n: int) -> np.ndarray:
    if cm.shape[0] == n:
        return cm
    out = np.zeros((n, n), dtype=np.int64)
    out[: cm.shape[0], : cm.shape[1]] = cm
    return out


def compute(pred: np.ndarray, target: np.ndarray, probabilities: bool = False, metrics: tuple[str, ...] = (),
            ignore_index: int | None = None, mask: np.ndarray | None = None) -> dict[str, Any]:
    """Metrics for one set of predictions: by default accuracy, precision, recall, f1, confusion_matrix."""
    acc = Accumulator(probabilities, metrics=tuple(metrics), ignore_index=ignore_index)
    acc.update(pred, target, mask)
    res: dict[str, Any] = acc.result()
    if acc.cm is not None:
        res["confusion_matrix"] = acc.cm
    return res


def format_confusion(cm: np.ndarray, labels: list[str] | None = None) -> str:
    """The confusion matrix as a text table (rows: true class, columns: predicted class)."""
    k = cm.shape[0]
    labels = labels or [str(i) for i in range(k)]
    w = max(max(len(s) for s in labels), len(str(int(cm.max(initial=0)))), 1)
    head = " " * (w + 6) + " ".join(s.rjust(w) for s in labels)
    rows = [f"true {labels[i].rjust(w)} " + " ".join(str(int(v)).rjust(w) for v in cm[i]) for i in range(k)]
    return "\n".join(["confusion matrix (rows: true class, columns: predicted class)", head, *rows])
