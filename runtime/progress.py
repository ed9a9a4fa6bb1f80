"""Training progress: a bar redrawn in place on a terminal, plain lines otherwise.

On a TTY:   epoch 3/30 [########------------]  27/45 loss 0.2143  5,120 samples/s  ETA 0:04
            (at most 80 columns: the bar narrows when the numbers are long)
Elsewhere (CI, a log file): nothing per batch; one summary line per epoch (printed by the trainer).
"""
from __future__ import annotations

import sys
import time
from typing import IO

EPOCH_WIDTH = 80                                    # the bar and the per-epoch line fit an 80-column terminal


def fmt_time(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """Call `start_epoch`, then `update` after each batch, then `end_epoch`."""

    def __init__(self, epochs: int, batches: int, stream: IO[str] | None = None, enabled: bool | None = None,
                 width: int = 20, min_interval: float = 0.1):
        self.stream = stream if stream is not None else sys.stdout
        if enabled is None:
            isatty = getattr(self.stream, "isatty", None)
            enabled = bool(isatty and isatty())
        self.enabled = enabled
        self.epochs, self.batches, self.width, self.min_interval = epochs, batches, width, min_interval
        self.epoch = 0
        self._t0 = self._last = 0.0
        self._seen = 0
        self._drawn = False

    def start_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self._t0 = time.perf_counter()
        self._last = 0.0
        self._seen = 0

    def update(self, batch: int, samples: int, loss: float) -> None:
        """`batch` batches (1-based) and `samples` samples done in this epoch; the running mean loss."""
        self._seen = samples
        if not self.enabled:
            return
        now = time.perf_counter()
        if batch < self.batches and now - self._last < self.min_interval:
            return
        self._last = now
        self.stream.write("\r" + self.line(batch, samples, loss, now - self._t0) + "\x1b[K")
        self.stream.flush()
        self._drawn = True

    def line(self, batch: int, samples: int, loss: float, elapsed: float) -> str:
        frac = batch / self.batches if self.batches else 1.0
        rate = samples / elapsed if elapsed > 0 else 0.0
        eta = elapsed / frac - elapsed if frac > 0 else 0.0
        w = len(str(self.batches))
        head = f"epoch {self.epoch}/{self.epochs} "
        tail = f" {batch:>{w}}/{self.batches} loss {loss:.4f}  {rate:,.0f} samples/s  ETA {fmt_time(eta)}"
        width = max(5, min(self.width, EPOCH_WIDTH - 1 - len(head) - len(tail) - 2))   # the bar gives way
        done = int(round(frac * width))
        return f"{head}[{'#' * done}{'-' * (width - done)}]{tail}"

    def end_epoch(self) -> float:
        """Clear the bar; returns the epoch's throughput in samples/s."""
        elapsed = time.perf_counter() - self._t0
        if self.enabled and self._drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._drawn = False
        return self._seen / elapsed if elapsed > 0 else 0.0


TRAIN_ONLY_IN_HISTORY = ("precision", "recall", "f1")


def epoch_legend(saves: bool, monitor: str | None = None) -> str:
    """Printed once before the first epoch line: what its columns and its `*` mean."""
    best = f"{monitor} improved" if monitor else "a new best epoch"
    return ("per epoch: train loss, metrics | val loss, metrics | lr, seconds, samples/s\n"
            f"* = {best}" + (" (best.npz saved)" if saves else "")
            + "; history.csv has every value" * saves)


def _drop_rank(split_: str, i: int) -> float:
    """Which extra values go first when the line is too wide (lowest first): the throughput (1), the
    third and later validation metrics, the train metrics, the time (4), the first validation metric."""
    if split_ == "val":
        return 5.0 if i == 1 else 2 - i / 100
    return 3 - i / 100


def epoch_line(epoch: int, epochs: int, rec: dict, keys: list[str], short: dict[str, str], rate: float,
               improved: bool, width: int = EPOCH_WIDTH) -> str:
    """One line per epoch, at most `width` columns: the least useful parts (throughput, extra metrics,
    time) are left out when it would be wider; history.csv keeps everything."""
    parts: list[tuple[int, str, str]] = [(99, "", f"epoch {epoch:>{len(str(epochs))}}/{epochs}")]
    for split_ in ("train", "val"):
        items = [k for k in keys if f"{split_}.{k}" in rec
                 and not (split_ == "train" and k in TRAIN_ONLY_IN_HISTORY)]
        for i, k in enumerate(items):
            v = rec[f"{split_}.{k}"]
            text = f"{short.get(k, k)} {v:.4f}" if k == "loss" or k not in short else f"{short[k]} {v:.3f}"
            sep = (" | " if split_ == "val" else "  ") + ("val " if split_ == "val" else "") if i == 0 else " "
            parts.append((99 if k == "loss" else _drop_rank(split_, i), sep, text))
    parts.append((98, " | ", f"lr {rec['lr']:.3g}"))
    parts.append((4, " ", f"{rec['time']:.1f}s"))
    parts.append((1, " ", f"{rate / 1000:.1f}k/s" if rate >= 1000 else f"{rate:.0f}/s"))
    if improved:
        parts.append((99, " ", "*"))

    def join(ps: list) -> str:
        return "".join(sep + text for _, sep, text in ps)

    while len(join(parts)) > width:
        low = min(range(len(parts)), key=lambda i: parts[i][0])
        if parts[low][0] >= 98:
            break
        parts.pop(low)
    return join(parts)
