"""`specc weights convert`: a torchvision-style nn.Sequential LeNet's state_dict into specs/lenet5.yaml."""
from __future__ import annotations

import numpy as np
import pytest

from compiler import compile_file
from cli.main import main

SPEC = "specs/lenet5.yaml"


@pytest.fixture(scope="module")
def lenet(tmp_path_factory):
    torch = pytest.importorskip("torch")
    from torch import nn
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
                        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84),
                        nn.ReLU(), nn.Linear(84, 10)).eval()
    d = tmp_path_factory.mktemp("lenet")
    torch.save(net.state_dict(), d / "lenet.pt")
    np.savez(d / "lenet.npz", **{k: v.numpy() for k, v in net.state_dict().items()})
    x = np.random.default_rng(1).standard_normal((3, 1, 28, 28)).astype(np.float32)
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    return d, x, want


@pytest.mark.parametrize("src,by", [("lenet.pt", "order"), ("lenet.pt", "shape"), ("lenet.npz", "order"),
                                    ("lenet.npz", "shape")])
def test_sequential_state_dict_gives_torch_outputs(lenet, src, by, capsys):
    import runtime
    d, x, want = lenet
    out = d / f"{src}.{by}.npz"
    assert main(["weights", "convert", str(d / src), "--spec", SPEC, "--map-by", by, "-o", str(out)]) == 0
    table = capsys.readouterr().out
    assert "0.weight    6×1×5×5   ->    conv2d_1.weight" in table and "11.bias" in table
    model = runtime.Model(compile_file(SPEC)).eval()
    meta = runtime.load(model, out)                       # strict: every parameter is there
    assert meta["spec_name"] == "lenet5" and meta["map_by"] == by
    np.testing.assert_allclose(model(image=x)["logits"], want, rtol=1e-5, atol=1e-5)
    assert main(["compile", SPEC, "--weights", str(out), "-o", str(d / "x.onnx")]) == 0


def test_by_name_refuses_and_points_to_order(lenet, capsys):
    d, _, _ = lenet
    out = d / "never.npz"
    assert main(["weights", "convert", str(d / "lenet.npz"), "--spec", SPEC, "-o", str(out)]) == 1
    cap = capsys.readouterr()
    assert "0.weight    6×1×5×5   skipped" in cap.out and "missing  conv2d_1.weight" in cap.out
    assert "10 spec parameters would get no weights" in cap.err and "--map-by order" in cap.err
    assert not out.exists()


def test_loading_a_sequential_state_dict_suggests_the_converter(lenet):
    import runtime
    d, _, _ = lenet
    model = runtime.Model(compile_file(SPEC))
    with pytest.raises(Exception) as e:
        runtime.load(model, d / "lenet.npz")
    assert "did you mean" not in str(e.value) and "--map-by order" in e.value.hint


def test_map_renames_and_allow_missing(tmp_path, capsys):
    g = compile_file(SPEC)
    params = {k: np.full(s.shape, 0.5, np.float64) for k, (s, _) in g.params().items()}
    src = {("features.0." + k.split(".")[1] if k.startswith("conv2d_1.") else k): v for k, v in params.items()}
    del src["logits.bias"]
    np.savez(tmp_path / "w.npz", **src)
    args = ["weights", "convert", str(tmp_path / "w.npz"), "--spec", SPEC, "--map", "features.0=conv2d_1",
            "-o", str(tmp_path / "o.npz")]
    assert main(args) == 1 and "logits.bias" in capsys.readouterr().err
    assert main(args + ["--allow-missing"]) == 0
    out = capsys.readouterr().out
    assert "features.0.weight" in out and "-> (--map)  conv2d_1.weight" in out and "strict=False" in out
    with np.load(tmp_path / "o.npz") as z:
        assert "logits.bias" not in z.files and z["conv2d_1.weight"].dtype == np.float32


def test_ambiguous_shapes_and_mismatches_are_refused(tmp_path, capsys):
    g = compile_file(SPEC)
    rng = np.random.default_rng(0)
    src = {f"p{i}": rng.standard_normal(s.shape) for i, (s, _) in enumerate(g.params().values())}
    src["extra"] = rng.standard_normal((6,))               # a second array of conv2d_1.bias's shape
    np.savez(tmp_path / "w.npz", **src)
    assert main(["weights", "convert", str(tmp_path / "w.npz"), "--spec", SPEC, "--map-by", "shape",
                 "-o", str(tmp_path / "o.npz")]) == 1
    err = capsys.readouterr().err
    assert "ambiguous" in err and "shape [6]: 2 source arrays (p1, extra)" in err
    src2 = dict(reversed(list(src.items())))                # the order is wrong: shapes do not fit
    np.savez(tmp_path / "r.npz", **src2)
    assert main(["weights", "convert", str(tmp_path / "r.npz"), "--spec", SPEC, "--map-by", "order",
                 "--dry-run"]) == 1
    assert "would land on a parameter of another shape" in capsys.readouterr().err
    assert not (tmp_path / "o.npz").exists()


def test_safetensors_and_bad_files(tmp_path, capsys):
    g = compile_file(SPEC)
    params = {k: np.ones(s.shape, np.float32) for k, (s, _) in g.params().items()}
    (tmp_path / "w.txt").write_text("x")
    assert main(["weights", "convert", str(tmp_path / "w.txt"), "--spec", SPEC, "-o", str(tmp_path / "o.npz")]) == 2
    assert main(["weights", "convert", str(tmp_path / "none.npz"), "--spec", SPEC, "-o", str(tmp_path / "o.npz")]) == 1
    np.savez(tmp_path / "w.npz", **params)
    assert main(["weights", "convert", str(tmp_path / "w.npz"), "--spec", SPEC, "-o", str(tmp_path / "w.npz")]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    st = pytest.importorskip("safetensors.numpy")
    st.save_file(params, str(tmp_path / "w.safetensors"))
    assert main(["weights", "convert", str(tmp_path / "w.safetensors"), "--spec", SPEC,
                 "-o", str(tmp_path / "s.npz")]) == 0
    with np.load(tmp_path / "s.npz") as z:
        assert set(z.files) == set(params) | {"__meta__"}


def test_torch_training_checkpoint_and_pickled_module(lenet, tmp_path, capsys):
    torch = pytest.importorskip("torch")
    d, _, _ = lenet
    sd = torch.load(d / "lenet.pt", weights_only=True)
    torch.save({"epoch": 3, "state_dict": sd}, tmp_path / "ckpt.pt")
    assert main(["weights", "convert", str(tmp_path / "ckpt.pt"), "--spec", SPEC, "--map-by", "order",
                 "-o", str(tmp_path / "o.npz")]) == 0
    assert "reading the state_dict under 'state_dict'" in capsys.readouterr().err
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pt")       # a whole pickled module
    assert main(["weights", "convert", str(tmp_path / "module.pt"), "--spec", SPEC, "--dry-run"]) == 1
    err = capsys.readouterr().err
    assert "weights_only=True" in err and "torch.save(net.state_dict(), path)" in err
