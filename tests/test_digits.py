"""The demo's quality bar on real data: scikit-learn's handwritten digits (bundled with scikit-learn, no
download), held-out 20% test split. digits_mlp must reach 95% test accuracy through `specc train` and `specc eval`
(digits_cnn's 97% is checked in tests/test_families_vision.py).

Marked `slow` (about a minute together on two cores); CI runs them. Skip them locally with -m "not slow".
"""
from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from cli.main import main

pytest.importorskip("sklearn")
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


# digits_cnn's 97% bar is held by tests/test_families_vision.py (the same training serves its attacks and
# the cGAN's judge), so it is not trained twice here
@pytest.mark.parametrize("name,bar", [("digits_mlp", 0.95)])
def test_digits_quality_bar(name, bar, tmp_path, capsys):
    spec = str(ROOT / "specs" / f"{name}.yaml")
    t0 = time.perf_counter()
    assert main(["train", spec, "--out", str(tmp_path)]) == 0
    wall = time.perf_counter() - t0
    capsys.readouterr()
    assert main(["eval", spec, "--weights", str(tmp_path / "best.npz")]) == 0
    out = capsys.readouterr().out
    assert "builtin:digits/test" in out and "confusion matrix" in out
    acc = float(re.search(r"^accuracy\s+([0-9.]+)", out, re.M).group(1))
    print(f"{name}: test accuracy {acc:.4f}, trained in {wall:.1f}s")
    assert acc >= bar, f"{name}: test accuracy {acc:.4f} below {bar}"
