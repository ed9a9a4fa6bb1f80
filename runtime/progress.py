"""Training progress: a bar redrawn in place on a terminal, plain lines otherwise.

On a TTY:   epoch 3/30 [########------------]  27/45 loss 0.2143  5,120 samples/s  ETA 0:04
Elsewhere (CI, a log file): nothing per batch; one summary line per epoch (printed by the trainer).
"""
from __future__ import annotations

import sys
import time
from typing import IO


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
        done = int(round(frac * self.width))
        rate = samples / elapsed if elapsed > 0 else 0.0
        eta = elapsed / frac - elapsed if frac > 0 else 0.0
        w = len(str(self.batches))
        return (f"epoch {self.epoch}/{self.epochs} [{'#' * done}{'-' * (self.width - done)}] "
                f"{batch:>{w}}/{self.batches} loss {loss:.4f}  {rate:,.0f} samples/s  ETA {fmt_time(eta)}")

    def end_epoch(self) -> float:
        """Clear the bar; returns the epoch's throughput in samples/s."""
        elapsed = time.perf_counter() - self._t0
        if self.enabled and self._drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._drawn = False
        return self._seen / elapsed if elapsed > 0 else 0.0
