"""specc export-torch: for every spec in specs/, tools/bench_specs/ and tests/specs/ops_torch/ (every op of
the catalogue), the generated standalone file passes pyflakes, loads the NumPy runtime's state_dict with
strict=True (same keys and shapes), and gives the NumPy runtime's outputs in eval mode (and in training
mode when no op is random). The file is imported as a module of its own (it must not need specc)."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import compiler  # noqa: E402
import runtime  # noqa: E402
from cli.main import main  # noqa: E402
from tests.test_torch_parity_specs import EVAL_ONLY, SMALL, TOL, _stochastic, make_inputs, rel_err  # noqa: E402

SPECS = sorted((ROOT / "specs").glob("*.yaml"))
OP_SPECS = sorted((ROOT / "tests" / "specs" / "ops_torch").glob("*.yaml"))   # the ops specs/ does not use
BENCH_SPECS = sorted((ROOT / "tools" / "bench_specs").glob("*.yaml"))
# small sizes keep the file fast; vgg16 keeps its layers, narrower (at full size its classifier alone is 120M
# parameters)
SIZES = {k: v for k, v in SMALL.items() if isinstance(v, dict)}
SIZES["vgg16"] = {"classes": 10, "__text__": [("image: [N, 3, 224, 224]", "image: [N, 3, 32, 32]"),
                                              ("output_size: 7", "output_size: 1"),
                                              ("out_features: 4096", "out_features: 64")]}
BATCH = {"vgg16": 1, "resnet50": 1}


def _compile(path: Path):
    small = dict(SIZES.get(_key(path), {}))
    text = small.pop("__text__", None)
    if text is None:
        return compiler.compile_file(path, params=small or None)
    src = path.read_text()
    for old, new in [text] if isinstance(text, tuple) else text:
        assert old in src, f"{path.name} no longer contains {old!r}"
        src = src.replace(old, new)
    return compiler.compile_text(src, base_dir=path.parent, params=small or None, filename=str(path))


def _import(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


ALL = SPECS + OP_SPECS + BENCH_SPECS


def _key(path: Path) -> str:
    return f"bench/{path.stem}" if path.parent.name == "bench_specs" else path.stem


@pytest.mark.parametrize("path", ALL, ids=[_key(p) for p in ALL])
def test_generated_file_matches_numpy_runtime(path, tmp_path):
    from runtime.torch_backend.codegen import generate
    g = _compile(path)
    exp = generate(g, str(path))
    out = tmp_path / f"{path.stem}_model.py"
    out.write_text(exp.source)
    lint = subprocess.run([sys.executable, "-m", "pyflakes", str(out)], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "specc" not in "".join(ln for ln in exp.source.splitlines() if ln.startswith(("import", "from")))
    mod = _import(out, f"export_{path.stem}")
    net = getattr(mod, exp.class_name)()

    model = runtime.Model(g, seed=0)
    model.eval()
    state = model.state_dict()
    assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == {k: v.shape for k, v in state.items()}
    net.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}, strict=True)
    net.eval()

    x = make_inputs(g, np.random.default_rng(3), BATCH.get(path.stem, 2))
    ours = model(**x)
    dtypes = {"float32": torch.float32, "int64": torch.int64, "bool": torch.bool}
    args = [torch.from_numpy(x[k]).to(dtypes[g.inputs[k].dtype]) for k in exp.inputs]
    with torch.no_grad():
        res = net(*args)
    res = res if len(exp.outputs) > 1 else (res,)
    assert exp.outputs == list(g.output_refs)
    for name, t in zip(exp.outputs, res):
        np.testing.assert_allclose(t.numpy(), ours[name], rtol=1e-4, atol=1e-5, err_msg=f"{path.stem}:{name}")
    if not _stochastic(g) and path.stem not in EVAL_ONLY:
        _check_train_mode(_key(path), model, net, x, args, exp.outputs)


def _check_train_mode(key, model, net, x, args, outputs):
    """Training-mode forward: batch statistics and running-statistic updates (nn.BatchNorm's momentum and
    num_batches_tracked) as the NumPy runtime's."""
    tol = TOL.get(key, 2e-4)
    model.train()
    net.train()
    ours = model(**x)
    with torch.no_grad():
        res = net(*args)
    res = res if len(outputs) > 1 else (res,)
    for name, t in zip(outputs, res):
        assert rel_err(t.numpy(), ours[name]) <= tol, (key, name, rel_err(t.numpy(), ours[name]))
    after = net.state_dict()
    for k, v in model.state_dict().items():
        assert rel_err(after[k].numpy(), v) <= tol, (key, k)


def test_resnet_block_is_one_class_with_sizes_and_optional_downsample():
    from runtime.torch_backend.codegen import generate
    src = generate(compiler.compile_file(ROOT / "specs/resnet18.yaml")).source
    assert src.count("class BasicBlock(") == 1 and "class BasicBlock2" not in src
    assert "def __init__(self, in_channels: int, planes: int, stride: int, downsample: bool)" in src
    assert "self.layer2 = nn.Sequential(" in src
    assert "BasicBlock(in_channels=64, planes=128, stride=2, downsample=True)" in src
    assert "downsample = self.downsample(x) if self.downsample is not None else x" in src
    assert "class Downsample(nn.Sequential)" in src


def test_repeated_block_with_shared_mask_is_a_loop():
    from runtime.torch_backend.codegen import generate
    g = compiler.compile_file(ROOT / "specs/transformer_classifier.yaml")
    src = generate(g).source
    assert "self.encoder = nn.ModuleList([EncoderLayer(), EncoderLayer()])" in src
    assert "for layer in self.encoder:" in src and "layer(encoder, padding_mask)" in src
    assert "nn.MultiheadAttention(128, 4, dropout=0.1, batch_first=True)" in src


def test_cli_writes_the_file(tmp_path, capsys):
    out = tmp_path / "lenet.py"
    assert main(["export-torch", str(ROOT / "specs/lenet5.yaml"), "-o", str(out), "--set", "classes=7"]) == 0
    assert "class Lenet5(nn.Module)" in out.read_text()
    assert "nn.Linear(84, 7)" in out.read_text()
    assert "wrote" in capsys.readouterr().out


def test_cli_refuses_to_overwrite_the_spec_and_other_files(tmp_path, capsys):
    spec = tmp_path / "m.yaml"
    spec.write_text((ROOT / "specs/lenet5.yaml").read_text())
    assert main(["export-torch", str(spec), "-o", str(spec)]) == 2
    other = tmp_path / "notes.txt"
    other.write_text("keep me")
    assert main(["export-torch", str(spec), "-o", str(other)]) == 1
    assert other.read_text() == "keep me"
    assert "refusing" in capsys.readouterr().err


def test_every_catalogue_op_is_exported_by_some_test_spec():
    """(An op exported in the record's default form is exported by tests/test_op_records.py instead.)"""
    from compiler.catalogue import ALL_OPS
    from runtime.torch_backend.layers import declared, emitter
    used = {n.op for p in SPECS + OP_SPECS for n in _compile(p).nodes}
    assert sorted(set(ALL_OPS) - used - {n for n in ALL_OPS if emitter(n) is declared}) == []


def test_output_flag_exports_loss_terms(tmp_path):
    """--output: forward returns the objective's terms too (taking the target input they need)."""
    path = ROOT / "specs/vae.yaml"
    out = tmp_path / "vae_model.py"
    assert main(["export-torch", str(path), "-o", str(out), "--output", "reconstruction", "--output",
                 "recon_loss", "--output", "kl"]) == 0
    mod = _import(out, "export_vae_losses")
    g = compiler.compile_file(path)
    model = runtime.Model(g, seed=0)
    model.eval()
    net = mod.Vae()
    net.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()}, strict=True)
    net.eval()
    x = make_inputs(g, np.random.default_rng(0), 3)
    ours = model(outputs=["reconstruction", "recon_loss", "kl"], **x)
    with torch.no_grad():
        rec, bce, kl = net(torch.from_numpy(x["image"]))
    for name, t in (("reconstruction", rec), ("recon_loss", bce), ("kl", kl)):
        np.testing.assert_allclose(t.numpy(), ours[name], rtol=1e-4, atol=1e-5, err_msg=name)


def test_output_flag_unknown_name_is_a_usage_error(tmp_path, capsys):
    assert main(["export-torch", str(ROOT / "specs/vae.yaml"), "-o", str(tmp_path / "m.py"), "--output",
                 "nope"]) == 2
    assert "unknown output 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "m.py").exists()


def test_init_overrides_become_torch_init_calls(tmp_path):
    """A fresh generated module draws each overridden weight as specc does (same distribution)."""
    from runtime.torch_backend.codegen import generate
    path = ROOT / "tests/specs/ops_torch/init_ops.yaml"
    g = compiler.compile_file(path)
    exp = generate(g)
    assert "nn.init.normal_(self[0].weight, std=0.02)" in exp.source            # inside an nn.Sequential block
    assert "nn.init.uniform_(self.fc[1].weight, -0.1, 0.1)" in exp.source        # inside a repeat
    out = tmp_path / "init_model.py"
    out.write_text(exp.source)
    torch.manual_seed(0)
    fresh = getattr(_import(out, "export_init_ops"), exp.class_name)().state_dict()
    ours = runtime.Model(g, seed=0).state_dict()
    for k in ("c1.weight", "b.0.weight", "fc.0.weight"):
        t = fresh[k].numpy()
        assert abs(t.mean()) < 0.3 * ours[k].std() + 1e-3, k
        assert 0.75 < t.std() / ours[k].std() < 1.33, (k, t.std(), ours[k].std())


def test_a_structure_without_a_pytorch_form_is_a_clear_error(tmp_path, capsys):
    """A block that calls a layer of the enclosing model shares weights across a class boundary: refused
    with the reason, exit 1, nothing written."""
    spec = tmp_path / "m.yaml"
    spec.write_text("specc: 1\nname: m\ninputs: {x: [N, 4]}\n"
                    "blocks:\n  b:\n    inputs: [y]\n    layers:\n      - {call: fc, name: again}\n"
                    "layers:\n  - {op: linear, name: fc, out_features: 4}\n  - {use: b, name: b1}\noutputs: [b1]\n")
    out = tmp_path / "m.py"
    assert main(["export-torch", str(spec), "-o", str(out)]) == 1
    assert "cannot write 'm' as PyTorch code: 'fc' is shared from outside the block that uses it" in \
        capsys.readouterr().err
    assert not out.exists()


def test_reshape_with_the_batch_symbol_and_minus_one(tmp_path):
    """`shape: [N, -1, 4]` (Swin's windows) keeps -1 for the inferred dimension and reads N from the input:
    torch infers one dimension only."""
    from runtime.torch_backend.codegen import generate
    g = compiler.compile_text("specc: 1\nname: m\ninputs: {x: [N, 6, 8]}\n"
                              "layers:\n  - {op: reshape, shape: [N, -1, 4]}\noutputs: [reshape_1]\n")
    exp = generate(g)
    out = tmp_path / "m_model.py"
    out.write_text(exp.source)
    net = getattr(_import(out, "export_reshape_minus_one"), exp.class_name)()
    x = np.random.default_rng(0).standard_normal((3, 6, 8)).astype(np.float32)
    np.testing.assert_array_equal(net(torch.from_numpy(x)).numpy(), runtime.Model(g)(x=x)["reshape_1"])
