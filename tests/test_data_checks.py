"""Checks before training (every problem in one run, exit 1), `specc data inspect`, and the prefetch thread."""
from __future__ import annotations

import textwrap
import threading
import time

import numpy as np
import pytest

import compiler
from cli.main import main
from compiler.errors import UserError
from runtime import data as D

SPEC = """\
    specc: 1
    name: cnn
    inputs: {image: [N, 3, 8, 6], label: {shape: [N], dtype: int64}}
    layers:
      - {op: flatten, name: flat, in: image}
      - {op: linear, name: fc, out_features: 4}
      - {op: cross_entropy, name: loss, in: [fc, label]}
    outputs: [fc]
    train:
      objective: loss
      epochs: 1
      predict: fc
      target: label
      data: {train: train.npz, val: val.npz, test: test.npz}
"""


def write(tmp_path, **files):
    (tmp_path / "s.yaml").write_text(textwrap.dedent(SPEC))
    for name, arrays in files.items():
        np.savez(tmp_path / f"{name}.npz", **arrays)
    return str(tmp_path / "s.yaml")


def good(n=12, seed=0):
    rng = np.random.default_rng(seed)
    return {"image": rng.random((n, 3, 8, 6), dtype=np.float32), "label": rng.integers(0, 4, n)}


def test_every_problem_of_every_split_in_one_run(tmp_path, capsys):
    bad_train = good()
    bad_train["image"][3, 1, 2, 2] = np.inf
    bad_train["label"][5] = 7
    bad_val = {"image": good()["image"].transpose(0, 2, 3, 1), "label": good()["label"]}   # channels last
    bad_test = {"image": good(0)["image"][:0], "label": good(0)["label"][:0]}              # empty
    spec = write(tmp_path, train=bad_train, val=bad_val, test=bad_test)
    assert main(["train", spec, "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "3 problems with the data" in err and "Traceback" not in err
    assert "array 'image' in " in err and "non-finite values (nan or inf), first at index [3, 1, 2, 2]" in err
    assert "val.npz has shape [12, 8, 6, 3], channels last" in err
    assert "numpy.transpose(image, (0, 3, 1, 2))" in err and "do not reshape" in err
    assert "test.npz holds no samples" in err
    assert not (tmp_path / "o").exists()
    # once the image is fixed, the label range problem shows (checked once shapes and dtypes are right)
    bad_train["image"][3, 1, 2, 2] = 0
    write(tmp_path, train=bad_train, val=good(), test=good())
    assert main(["data", "inspect", spec]) == 1
    assert "values outside 0..3 (found 7 at index [5]" in capsys.readouterr().err


def test_memory_mapped_column_is_checked_block_by_block(tmp_path, monkeypatch):
    monkeypatch.setattr(D.columns, "CHUNK_BYTES", 3 * 8 * 6 * 4 * 2)       # two samples per block
    write(tmp_path)
    g = compiler.compile_file(tmp_path / "s.yaml")
    (tmp_path / "arr").mkdir()
    x = good()
    x["image"][9, 0, 0, 1] = np.nan
    np.save(tmp_path / "arr" / "image.npy", x["image"])
    np.save(tmp_path / "arr" / "label.npy", x["label"])
    with pytest.raises(UserError, match=r"non-finite.*first at index \[9, 0, 0, 1\]"):
        D.load(g, str(tmp_path / "arr"))
    x["image"][9, 0, 0, 1] = 0
    x["label"][11] = -1
    np.save(tmp_path / "arr" / "image.npy", x["image"])
    np.save(tmp_path / "arr" / "label.npy", x["label"])
    with pytest.raises(UserError, match=r"outside 0\.\.3 \(found -1 at index \[11\], range of the array -1\.\.3"):
        D.load(g, str(tmp_path / "arr"))


def test_data_inspect_prints_what_each_input_gets(tmp_path, capsys):
    tr = good(40)
    tr["label"] = np.repeat(np.arange(4), 10)
    spec = write(tmp_path, train=tr, val=good(8, 1), test=good(6, 2))
    assert main(["data", "inspect", spec]) == 0
    out = capsys.readouterr().out
    assert "split sizes: train 40, val 8, test 6" in out
    assert "image  [40, 3, 8, 6]  float32" in out
    assert "classes: 0 10 (25%), 1 10 (25%), 2 10 (25%), 3 10 (25%)" in out
    assert main(["data", "inspect", spec, "--data", str(tmp_path / "val.npz")]) == 0
    assert "split sizes: train 8" in capsys.readouterr().out
    assert main(["data", "inspect", spec, "--data", str(tmp_path / "nope.npz")]) == 1
    assert "not found" in capsys.readouterr().err


# -- prefetch -------------------------------------------------------------------------------------------
def test_prefetch_keeps_order_and_raises_in_the_caller():
    rng = np.random.default_rng(3)
    ds = D.Dataset({"x": np.arange(50)[:, None], "y": np.arange(50)})
    plain = [b["x"][:, 0].tolist() for b in ds.batches(7, np.random.default_rng(3))]
    ahead = [b["x"][:, 0].tolist() for b in D.prefetch(ds.batches(7, rng))]
    assert plain == ahead and sorted(sum(ahead, [])) == list(range(50))

    def broken():
        yield {"x": np.zeros(1)}
        raise UserError("image 'x.png' cannot be decoded")

    got = []
    with pytest.raises(UserError, match="x.png' cannot be decoded"):
        for b in D.prefetch(broken()):
            got.append(b)
    assert len(got) == 1


def test_prefetch_stops_its_thread_when_the_loop_ends_early():
    made = []

    def endless():
        i = 0
        while True:
            made.append(i)
            yield {"i": i}
            i += 1

    before = threading.active_count()
    for b in D.prefetch(endless(), depth=2):
        if b["i"] == 3:
            break
    time.sleep(0.3)
    assert threading.active_count() == before
    assert len(made) <= 4 + 2 + 1                       # bounded: the queue holds at most `depth` batches
