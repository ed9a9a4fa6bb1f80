"""tools/digits.py: run as a user runs it, and the two .npz files it writes."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
TOOL = ROOT / "tools" / "digits.py"


def run_tool(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_digits_tool_writes_the_builtin_split(tmp_path):
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    from runtime.data import digits

    out = tmp_path / "new" / "data"                             # missing folders are made
    p = run_tool("--out", str(out), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""
    files = {part: out / f"digits_{part}.npz" for part in ("train", "test")}
    assert sorted(x.name for x in out.iterdir()) == ["digits_test.npz", "digits_train.npz"]   # no temporaries
    data = {}
    for part, path in files.items():
        with np.load(path, allow_pickle=False) as z:
            assert sorted(z.files) == ["image", "label"]
            data[part] = {k: z[k] for k in z.files}
        img, lab = data[part]["image"], data[part]["label"]
        assert img.dtype == np.float32 and img.ndim == 4 and img.shape[1:] == (1, 8, 8)
        assert lab.dtype == np.int64 and lab.shape == (img.shape[0],)
        assert img.min() == 0.0 and img.max() == 1.0            # pixel values 0..16 scaled to [0, 1]
        assert np.all(np.isin(img * 16, np.arange(17)))
        assert set(np.unique(lab)) == set(range(10))
        assert f"wrote {path}: image {list(img.shape)} float32, label {list(lab.shape)} int64" in p.stdout

    # an 80/20 split of all 1,797 images, stratified: each class holds round(20%) of its images out
    ref = sklearn_datasets.load_digits()
    n_train, n_test = len(data["train"]["label"]), len(data["test"]["label"])
    assert n_train + n_test == len(ref.target) == 1797
    for c in range(10):
        n_c = int(np.sum(ref.target == c))
        assert np.sum(data["test"]["label"] == c) == int(round(0.2 * n_c))
        assert np.sum(data["train"]["label"] == c) == n_c - int(round(0.2 * n_c))
    # every image is in exactly one part: the parts together are the data set, image by image
    def rows(d):
        return sorted(zip(map(bytes, (d["image"] * 16).astype(np.uint8).reshape(len(d["label"]), -1)),
                          d["label"].tolist()))
    everything = {"image": ref.images.astype(np.float32) / 16, "label": ref.target}
    assert rows({k: np.concatenate([data["train"][k], data["test"][k]]) for k in ("image", "label")}) == \
        rows(everything)

    # the same partition, in the same order, as the built-in source builtin:digits
    for part in ("train", "test"):
        want = digits(part)
        np.testing.assert_array_equal(data[part]["image"], want["image"])
        np.testing.assert_array_equal(data[part]["label"], want["label"])


def test_digits_tool_bad_out_folder_is_a_message(tmp_path):
    pytest.importorskip("sklearn")
    (tmp_path / "afile").write_text("x")
    p = run_tool("--out", str(tmp_path / "afile" / "sub"), cwd=tmp_path)
    assert p.returncode == 1
    assert "Traceback" not in p.stderr
    assert p.stderr.startswith("error: cannot write") and "is a file, not a folder" in p.stderr
    assert (tmp_path / "afile").read_text() == "x"
