"""The per-epoch line fits 80 columns and keeps the loss, the validation loss, the lr and the `*`."""
from __future__ import annotations

from runtime.progress import epoch_legend, epoch_line

SHORT = {"accuracy": "acc", "precision": "prec", "recall": "rec", "f1": "f1"}


def test_a_crowded_epoch_fits_80_columns():
    keys = ["loss", "rec", "kl", "accuracy", "precision", "recall", "f1"]
    rec = {"epoch": 100, "lr": 0.000123, "time": 123.4}
    for split_ in ("train", "val"):
        rec.update({f"{split_}.{k}": 12345.678 if k in ("loss", "rec", "kl") else 0.98765 for k in keys})
    line = epoch_line(100, 100, rec, keys, SHORT, 12345.0, True)
    assert len(line) <= 80, line
    assert line.startswith("epoch 100/100  loss 12345.6780") and "| val loss 12345.6780" in line
    assert "lr 0.000123" in line and line.endswith(" *")


def test_a_short_epoch_keeps_everything():
    rec = {"epoch": 2, "lr": 0.001, "time": 0.5, "train.loss": 0.9, "val.loss": 0.6, "val.accuracy": 0.9}
    line = epoch_line(2, 20, rec, ["loss", "accuracy"], SHORT, 2500.0, False)
    assert line == "epoch  2/20  loss 0.9000 | val loss 0.6000 acc 0.900 | lr 0.001 0.5s 2.5k/s"


def test_the_legend_explains_the_star_and_fits():
    text = epoch_legend(True)
    assert "* = a new best epoch (best.npz saved)" in text
    assert "* = val.loss improved" in epoch_legend(False, "val.loss")
    assert all(len(ln) <= 80 for ln in text.splitlines())


def test_the_progress_bar_gives_way_to_fit_80_columns():
    from runtime.progress import Progress
    p = Progress(100, 1000, enabled=False)
    p.epoch = 10
    line = p.line(500, 32000, 0.21, 2.0)
    assert len(line) < 80 and line.startswith("epoch 10/100 [") and " 500/1000 loss 0.2100" in line
    short = Progress(3, 4, enabled=False)
    short.epoch = 2
    assert "[##########----------] 2/4" in short.line(2, 64, 0.21, 2.0)    # the full 20-column bar when it fits
