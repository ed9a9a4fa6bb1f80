"""`specc init`: every template checks, and trains for one short epoch, as written."""
from __future__ import annotations

import numpy as np
import pytest
import yaml

from cli.main import main
from compiler.scaffold import KINDS


@pytest.fixture(scope="module")
def small_digits(tmp_path_factory):
    from runtime.data import digits
    d = digits("train")
    path = tmp_path_factory.mktemp("data") / "digits200.npz"
    np.savez(path, image=d["image"][:200], label=d["label"][:200])
    return path


@pytest.mark.parametrize("kind", KINDS)
def test_template_checks_and_trains(kind, tmp_path, small_digits, capsys):
    assert main(["init", kind, f"my_{kind}", "-o", str(tmp_path / "specs")]) == 0
    path = tmp_path / "specs" / f"my_{kind}.yaml"
    text = path.read_text()
    assert text.count("#") >= 3 and "NAME" not in text and f"specc train {path}" in text
    spec = yaml.safe_load(text)
    assert spec["name"] == f"my_{kind}" and spec["train"]["data"]["train"] == "builtin:digits"
    assert main(["check", str(path)]) == 0
    capsys.readouterr()
    assert main(["train", str(path), "--epochs", "1", "--data", str(small_digits), "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "epoch 1/1" in out and (tmp_path / "run" / "best.npz").is_file()


def test_init_never_overwrites(tmp_path, capsys):
    assert main(["init", "net", "-o", str(tmp_path)]) == 0           # the kind defaults to classifier
    before = (tmp_path / "net.yaml").read_text()
    assert "classifier" in before
    assert main(["init", "cnn", "net", "-o", str(tmp_path)]) == 1
    assert "already exists" in capsys.readouterr().err
    assert (tmp_path / "net.yaml").read_text() == before
    assert main(["init", "cnn", "bad name", "-o", str(tmp_path)]) == 2
    (tmp_path / "f").write_text("x")
    assert main(["init", "cnn", "net2", "-o", str(tmp_path / "f")]) == 2
    with pytest.raises(SystemExit) as e:
        main(["init", "transformer", "net3"])
    assert e.value.code == 2
