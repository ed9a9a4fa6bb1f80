"""The use commands' command line: every flag documented in --help, light imports, and pictures degrading
to arrays (with a note) when matplotlib is missing."""
from __future__ import annotations

import subprocess
import sys

import numpy as np

from compiler import compile_text
from cli.main import build_parser, main
from runtime import Model, save

COMMANDS = ["generate", "sample", "interpolate", "saliency", "attack", "neighbors", "attention", "boundary"]


def test_every_flag_has_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name in COMMANDS:
        sp = sub.choices[name]
        assert sp.description, name
        for action in sp._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"specc {name} {action.option_strings[0]} has no help text"


def test_help_runs_without_the_runtime():
    code = ("import sys; from cli.main import main\n"
            "try:\n    main(['generate', '--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('runtime', 'onnx', 'torch', 'matplotlib')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("[]") and "--strategy" in out


LINEAR = """\
name: lin
inputs:
  image: [N, 1, 3, 3]
  label: {shape: [N], dtype: int64}
layers:
  - {op: flatten, name: flat, in: image}
  - {op: linear, name: logits, out_features: 2}
  - {op: cross_entropy, name: loss, in: [logits, label]}
outputs: {logits: logits}
train: {objective: loss, predict: logits, target: label}
"""


def test_pictures_without_matplotlib(tmp_path, monkeypatch, capsys):
    (tmp_path / "lin.yaml").write_text(LINEAR)
    save(Model(compile_text(LINEAR)), tmp_path / "w.npz")
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((2, 1, 3, 3)).astype(np.float32))
    for mod in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, mod, None)                   # import fails
    assert main(["saliency", str(tmp_path / "lin.yaml"), "--weights", str(tmp_path / "w.npz"), "--input",
                 f"image={tmp_path / 'x.npy'}", "-o", str(tmp_path / "s.png")]) == 0
    assert "matplotlib is not installed" in capsys.readouterr().err
    assert (tmp_path / "s.npy").exists() and not (tmp_path / "s.png").exists()
