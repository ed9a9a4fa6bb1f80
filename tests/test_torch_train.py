"""specc train --backend torch: the torch backend (runtime/torch_backend/trainer.py) against the NumPy runtime,
both driven by the one loop (runtime/loop.py).

- Parity: for every spec in specs/ and tools/bench_specs/ without random nodes (small sizes), from the same
  weights and the same batches, the first 20 steps give the same losses (rtol 1e-4) and the same weights
  (within 1e-3 of each tensor's largest value); the same with SGD/Nesterov, AdamW, freeze, lr_scale,
  clipping and phases. torch.optim is the reference for runtime/optim.py here (it was written to follow it).
- Random nodes: dropout's keep rate and scaling, reparameterize's mean and spread, and noise inputs (drawn by
  the loop, so both backends see the same draws and a GAN trains identically).
- Checkpoints: a last.npz of either backend resumes on the other and ends with the weights of an
  uninterrupted run; best.npz evaluates and exports on both; the CLI flags; fp16.
- Data parallel (--nproc 2, gloo): a plain spec and a GAN's phases train as one process with the global batch.
"""
from __future__ import annotations

import re
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
from runtime import loop  # noqa: E402
from runtime.backend_numpy import NumpyBackend  # noqa: E402
from runtime.checkpoint import read_npz, split  # noqa: E402
from runtime.torch_backend.trainer import TorchBackend, fit_torch  # noqa: E402
from runtime.train import fit, make_plan  # noqa: E402
from tests.test_torch_parity_specs import SMALL, _stochastic, make_inputs  # noqa: E402

STEPS = 20
# too slow for 2 x 20 training steps in a unit test at any size that keeps their structure (their layers are
# covered by resnet18 / vgg_bn / lenet5 here and by test_export_torch); random nodes: the statistics tests
SKIP = {"vgg16", "resnet50", "googlenet", "resnet18"}
SIZES = {"gcn": {"nodes": 40, "features": 24, "hidden": 8, "labelled": 10}}
# known: at a 16x16 input (batch 8) one batch-norm output of stage2.0 lies within float32 rounding of 0
# (+2.1e-7 in float64, -2.3e-7 in float32), so the next ReLU passes the gradient in one backend and not the
# other; in float64 the NumPy gradients equal torch's within 5e-15, and torch float32 hits the same kind of
# sign flip at other input seeds. Rounding at a ReLU kink, not a kernel bug.
XFAIL = {"aux_classifier": "float32 rounding at a ReLU kink (one element on the other side of 0), not a kernel bug"}
TEXT: dict = {}
BATCH = {"bench/vgg_bn": 16}   # batch norm over 4 samples amplifies rounding differences step by step;
# at 8, weights 3e-7 apart after 14 steps gave gradients 12 % apart at step 15 with either conv path
SPECS = [(p.stem, p) for p in sorted((ROOT / "specs").glob("*.yaml"))] + \
        [(f"bench/{p.stem}", p) for p in sorted((ROOT / "tools" / "bench_specs").glob("*.yaml"))]


@pytest.fixture(autouse=True)
def one_thread():
    """Small models: torch's threads only contend with the other tests' processes."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _compile(path: Path):
    """The spec at its test size, with dropout off (p: 0 and the `dropout` param): dropout's statistics have
    a test of their own, the rest of the spec then trains deterministically."""
    small = {k: v for k, v in SMALL.get(_key(path), {}).items() if k != "__text__"} \
        if isinstance(SMALL.get(_key(path)), dict) else {}
    small.update(SIZES.get(_key(path), {}))
    src = path.read_text()
    for old, new in TEXT.get(_key(path), []):
        assert old in src, f"{path.name} no longer contains {old!r}"
        src = src.replace(old, new)
    if re.search(r"^\s+dropout:", src, re.M):
        small["dropout"] = 0.0
    src = re.sub(r"(op: dropout[^}]*\bp: )[0-9.]+", r"\g<1>0.0", src)
    return compiler.compile_text(src, base_dir=path.parent, params=small or None, filename=str(path))


def _key(path: Path) -> str:
    return f"bench/{path.stem}" if path.parent.name == "bench_specs" else path.stem


def _setup(backend, cfg):
    """The loop's own set-up of plan, freeze, phases and optimisers, without data or files."""
    plan = make_plan(backend.model, cfg)
    backend.prepare(plan, cfg)
    r = loop.Run(backend, cfg, plan, 1, None, None, None, lambda *a: None, None)
    loop._optimisers(r)
    backend.seed(0)
    backend.model.train()
    return plan


def _steps(backend, cfg, batches) -> list[float]:
    plan = _setup(backend, cfg)
    losses = []
    for i, feed in enumerate(batches, 1):
        for ph in plan.phases:
            for _ in range(ph.steps):
                outs = backend.step(ph, list(ph.terms), {k: feed[k] for k in plan.needed},
                                    loop.Where(1, i, None))
                losses.append(sum(w * float(outs[r]) for r, w in ph.terms.items()))
    backend.done()
    return losses


def _biases_before_batch_norm(g) -> set[str]:
    """Biases of conv/linear nodes read only by batch_norm (their true gradient is zero in training mode) and
    the running means of those batch norms, which follow the bias."""
    readers: dict[str, list[str]] = {}
    for n in g.nodes:
        for r in n.inputs:
            if r is not None:
                readers.setdefault(r.node, []).append(n.op)
    flat = {n.name for n in g.nodes if n.op in ("conv1d", "conv2d", "linear")
            and readers.get(n.name) and set(readers[n.name]) == {"batch_norm"}}
    after = {n.name for n in g.nodes if n.op == "batch_norm" and n.inputs[0] is not None and n.inputs[0].node in flat}
    return {f"{k}.bias" for k in flat} | {f"{k}.running_mean" for k in after}   # the running mean follows that bias


def _compare(g, cfg=None, batch: int = 4, steps: int = STEPS) -> None:
    cfg = cfg or g.train or compiler.spec.Train()
    rng = np.random.default_rng(1)
    batches = [make_inputs(g, rng, batch) for _ in range(steps)]
    m_np, m_t = runtime.Model(g, seed=0), runtime.Model(g, seed=0)
    l_np = _steps(NumpyBackend(m_np), cfg, batches)
    l_t = _steps(TorchBackend(m_t), cfg, batches)
    np.testing.assert_allclose(l_t, l_np, rtol=1e-4, atol=1e-6, err_msg=f"{g.name}: losses per step")
    a, b = m_np.state_dict(), m_t.state_dict()
    assert a.keys() == b.keys()
    flat = _biases_before_batch_norm(g)
    for k in a:
        if k in flat:                       # batch norm (training mode) removes a per-channel shift: this bias's
            continue                        # gradient is zero but for rounding noise, which Adam scales up
        if k.endswith("in_proj_bias"):      # the key bias cannot change attention (softmax is shift-invariant):
            n = a[k].shape[0] // 3          # its gradient is rounding noise, which Adam scales up to lr-sized steps
            a[k], b[k] = np.concatenate([a[k][:n], a[k][2 * n:]]), np.concatenate([b[k][:n], b[k][2 * n:]])
        scale = float(np.max(np.abs(a[k]))) if a[k].size else 0.0
        np.testing.assert_allclose(b[k], a[k], rtol=1e-3, atol=1e-3 * scale + 1e-7, err_msg=f"{g.name}: {k}")


PARITY = [(k, p) for k, p in SPECS if k not in SKIP and k not in {"mlp"}]


@pytest.mark.parametrize("key,path", PARITY, ids=[k for k, _ in PARITY])
def test_twenty_steps_match_numpy(key, path):
    g = _compile(path)
    if _stochastic(g) or (g.train is not None and g.train.noise):
        pytest.skip("random nodes: see the statistics tests")
    if key in XFAIL:
        pytest.xfail(XFAIL[key])
    _compare(g, batch=BATCH.get(key, 4))


MLP_VARIANTS = {
    "sgd_nesterov_clip_norm": {"train.optimizer": {"type": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True,
                                                   "weight_decay": 1e-3},
                               "train.grad_clip": {"max_norm": 0.5}},
    "adamw_clip_value_lr_scale": {"train.optimizer": {"type": "adamw", "lr": 3e-3, "weight_decay": 0.05},
                                  "train.grad_clip": {"value": 0.01}, "train.lr_scale": {"fc1.*": 0.1},
                                  # a bias before batch norm has a zero gradient, rounding noise that Adam's
                                  # normalisation turns into steps of size lr: frozen, as usual
                                  "train.freeze": ["fc1.bias", "fc2.bias"]},
    "adam_l2_freeze": {"train.optimizer": {"type": "adam", "lr": 1e-2, "weight_decay": 1e-2},
                       "train.freeze": ["fc1.*"]},
    "phases": {"train.phases": [{"objective": "loss", "update": ["fc1.*"], "steps": 2},
                                {"objective": "loss", "update": ["fc2.*", "logits.*", "bn*"],
                                 "optimizer": {"type": "sgd", "lr": 0.05, "momentum": 0.5}}],
               "train.objective": None},
}


@pytest.mark.parametrize("variant", list(MLP_VARIANTS))
def test_optimisers_clipping_freeze_lr_scale_phases_match(variant):
    g = compiler.compile_file(ROOT / "specs" / "mlp.yaml", params={"dropout": 0.0, **MLP_VARIANTS[variant]})
    _compare(g, batch=16, steps=10)


# -- random nodes: the same statistics -------------------------------------------------------------------
def _both(src: str, feed: dict[str, np.ndarray], out: str) -> dict[str, np.ndarray]:
    """`out` in training mode on the NumPy runtime and on the torch backend, same weights."""
    g = compiler.compile_text(src)
    m = runtime.Model(g, seed=0).train()
    b = TorchBackend(runtime.Model(g, seed=0))
    b.seed(0)
    b.model.train()
    return {"numpy": m(outputs=[out], **feed)[out], "torch": b.model(outputs=[out], **feed)[out]}


def test_dropout_keeps_the_same_share_and_scales_the_same():
    src = "specc: 1\nname: d\ninputs: {x: [N, 1000]}\nlayers:\n  - {op: dropout, name: d, p: 0.3}\noutputs: [d]\n"
    for name, y in _both(src, {"x": np.ones((100, 1000), np.float32)}, "d").items():
        kept = y != 0
        assert abs(kept.mean() - 0.7) < 0.005, name          # 100k draws: 5 sigma is 0.007
        np.testing.assert_allclose(y[kept], 1 / 0.7, rtol=1e-6, err_msg=name)


def test_reparameterize_draws_the_same_distribution():
    src = ("specc: 1\nname: r\ninputs: {mu: [N, 100], logvar: [N, 100]}\nlayers:\n"
           "  - {op: reparameterize, name: z, in: [mu, logvar]}\noutputs: [z]\n")
    n = 1000
    feed = {"mu": np.full((n, 100), 1.5, np.float32), "logvar": np.full((n, 100), np.log(0.25), np.float32)}
    for name, z in _both(src, feed, "z").items():
        assert abs(z.mean() - 1.5) < 0.01, name              # 100k draws of N(1.5, 0.5²): sigma 0.0016
        assert abs(z.std() - 0.5) < 0.01, name


def test_noise_inputs_are_drawn_by_the_loop_so_a_gan_trains_the_same():
    """train.noise is drawn by the one loop (NumPy generator, seeded): both backends see the same noise, so
    the DCGAN's two phases give the same losses."""
    g = compiler.compile_file(ROOT / "specs" / "dcgan.yaml", params={"nz": 8, "ngf": 4, "ndf": 4,
                                                                    "train.batch_size": 8})
    data = {"real": np.tanh(np.random.default_rng(0).standard_normal((16, 3, 64, 64))).astype(np.float32)}
    m_np, m_t = runtime.Model(g, seed=0), runtime.Model(g, seed=0)
    h_np = fit(m_np, data, epochs=1, log=None, progress=False)
    h_t = fit_torch(m_t, data, epochs=1, log=None, progress=False)
    keys = [k for k in h_np[0] if k.startswith("train.")]
    assert len(keys) == 3                                    # loss, and one per phase
    np.testing.assert_allclose([h_t[0][k] for k in keys], [h_np[0][k] for k in keys], rtol=1e-4)


# -- checkpoints across backends ----------------------------------------------------------------------------
def _mlp():
    g = compiler.compile_file(ROOT / "specs" / "mlp.yaml", params={"dropout": 0.0, "train.batch_size": 32})
    return g, make_inputs(g, np.random.default_rng(2), 96)


FITS = {"numpy": fit, "torch": fit_torch}


@pytest.mark.parametrize("first,second", [("numpy", "torch"), ("torch", "numpy"), ("torch", "torch")])
def test_a_run_resumes_on_either_backend(tmp_path, first, second):
    """2 epochs on one backend, resumed to 4 on the other: the weights and history of 4 uninterrupted epochs
    (optimiser moments, cosine schedule, best weights, early-stopping counters all carried over)."""
    g, data = _mlp()
    ref = runtime.Model(g, seed=0)
    h_ref = FITS[second](ref, data, epochs=4, log=None, progress=False)
    m = runtime.Model(g, seed=0)
    FITS[first](m, data, epochs=4, out_dir=tmp_path, log=None, progress=False,
                callback=lambda epoch, rec: epoch < 2)              # interrupted after epoch 2
    meta = split(read_npz(tmp_path / "last.npz"))[1]
    assert meta["epoch"] == 2 and ("torch" in meta["rng"]) == (first == "torch")
    m2 = runtime.Model(g, seed=0)
    h = FITS[second](m2, data, out_dir=tmp_path, resume=tmp_path / "last.npz", log=None, progress=False)
    assert [r["epoch"] for r in h] == [1, 2, 3, 4]
    np.testing.assert_allclose([r["train.loss"] for r in h], [r["train.loss"] for r in h_ref], rtol=1e-5)
    np.testing.assert_allclose([r["lr"] for r in h], [r["lr"] for r in h_ref], rtol=1e-12)
    a, b = ref.state_dict(), m2.state_dict()
    for k in a:
        np.testing.assert_allclose(b[k], a[k], rtol=1e-4, atol=1e-5 * float(np.max(np.abs(a[k])) or 1), err_msg=k)


def test_cli_train_torch_then_eval_and_export_with_numpy(tmp_path, capsys):
    from cli.main import main
    g, data = _mlp()
    np.savez(tmp_path / "d.npz", **data)
    out = tmp_path / "run"
    sets = ["--set", "dropout=0", "--set", "train.batch_size=32"]
    assert main(["train", str(ROOT / "specs" / "mlp.yaml"), "--data", str(tmp_path / "d.npz"), "--epochs", "2",
                 "--out", str(out), "--backend", "torch", "--precision", "bf16", *sets]) == 0
    text = capsys.readouterr().out
    assert "epoch 2/2" in text and all((out / f).is_file() for f in ("best.npz", "last.npz", "history.csv"))
    assert main(["eval", str(ROOT / "specs" / "mlp.yaml"), "--weights", str(out / "best.npz"),
                 "--data", str(tmp_path / "d.npz"), *sets]) == 0
    assert "accuracy" in capsys.readouterr().out
    assert main(["compile", str(ROOT / "specs" / "mlp.yaml"), "-o", str(tmp_path / "m.onnx"),
                 "--weights", str(out / "best.npz"), *sets]) == 0
    assert main(["train", str(ROOT / "specs" / "mlp.yaml"), "--data", str(tmp_path / "d.npz"), "--epochs", "3",
                 "--resume", str(out / "last.npz"), *sets]) == 0         # NumPy continues the torch run
    assert "resuming from" in capsys.readouterr().out


def test_precision_without_torch_backend_is_a_usage_error(capsys):
    from cli.main import main
    assert main(["train", str(ROOT / "specs" / "mlp.yaml"), "--precision", "fp16"]) == 2
    assert "--precision fp16 needs --backend torch" in capsys.readouterr().err


def test_without_torch_the_flag_says_how_to_install_it(tmp_path):
    code = ("import sys; sys.modules['torch'] = None\n"
            "from cli.main import main\n"
            f"sys.exit(main(['train', {str(ROOT / 'specs' / 'mlp.yaml')!r}, '--backend', 'torch']))")
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 1, p.stderr
    assert "--backend torch needs PyTorch" in p.stderr and "specc[torch]" in p.stderr
    assert "Traceback" not in p.stderr


# -- data parallel -----------------------------------------------------------------------------------------
TINY = """specc: 1
name: tiny
inputs:
  x: [N, 6]
  label: {shape: [N], dtype: int64}
layers:
  - {op: linear, name: fc1, in: x, out_features: 16}
  - {op: tanh, name: act}
  - {op: linear, name: fc2, out_features: 3}
  - {op: cross_entropy, name: loss, in: [fc2, label]}
outputs: {logits: fc2}
train:
  objective: loss
  optimizer: {type: adam, lr: 0.01}
  batch_size: 8
  epochs: 2
"""


def test_two_processes_train_as_one_with_the_global_batch_and_resume_exactly(tmp_path, capsys):
    """--nproc 2 (DDP, gloo, localhost): 35 samples in batches of 8 (the last one, 3, split 2 + 1). A run
    interrupted after epoch 1 (written by one process, to keep the test short: the checkpoint does not depend
    on the process count), resumed by two processes to epoch 2 — the last.npz rank 0 writes — has the weights
    and history of one process with batch 8 throughout, and the same steps.csv (train.log)."""
    from cli.main import main
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY)
    x = np.random.default_rng(0).standard_normal((35, 6)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, label=(x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0))
    common = ["train", str(spec), "--data", str(tmp_path / "d.npz"), "--backend", "torch",
              "--set", "train.log.every=1"]
    assert main([*common, "--out", str(tmp_path / "ddp"), "--epochs", "1"]) == 0
    assert main([*common, "--nproc", "2", "--resume", str(tmp_path / "ddp" / "last.npz"), "--epochs", "2"]) == 0
    assert main([*common, "--out", str(tmp_path / "one")]) == 0
    ddp, one = (split(read_npz(tmp_path / d / "last.npz")) for d in ("ddp", "one"))
    assert ddp[1]["epoch"] == one[1]["epoch"] == 2
    for k, v in one[0].items():
        np.testing.assert_allclose(ddp[0][k], v, rtol=1e-4, atol=1e-7, err_msg=k)
    np.testing.assert_allclose([r["train.loss"] for r in ddp[1]["history"]],
                               [r["train.loss"] for r in one[1]["history"]], rtol=1e-5)
    # the step log: rank 0 alone appends steps 6..10 to epoch 1's, with the whole batch's loss and gradient norm
    import csv
    ddp_steps, one_steps = (list(csv.DictReader((tmp_path / d / "steps.csv").read_text().splitlines()))
                            for d in ("ddp", "one"))
    assert [r["step"] for r in ddp_steps] == [r["step"] for r in one_steps] == [str(i) for i in range(1, 11)]
    for col in ("loss", "grad_norm"):
        np.testing.assert_allclose([float(r[col]) for r in ddp_steps], [float(r[col]) for r in one_steps],
                                   rtol=1e-4, err_msg=col)
    assert main(["train", str(spec), "--nproc", "2"]) == 2                # needs --backend torch
    assert "--backend torch" in capsys.readouterr().err


def test_fp16_with_the_fused_optimiser_trains_and_resumes_like_fp32(tmp_path):
    """--precision fp16: autocast, a gradient scaler and the fused optimiser kernel (which then skips the
    steps the scaler found overflowed): the epoch losses follow fp32's within fp16 rounding, and a last.npz
    resumes (the scaler starts afresh)."""
    from cli.main import main
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY)
    x = np.random.default_rng(0).standard_normal((48, 6)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, label=(x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0))
    common = ["train", str(spec), "--data", str(tmp_path / "d.npz"), "--backend", "torch"]
    assert main([*common, "--out", str(tmp_path / "a"), "--precision", "fp16", "--epochs", "1"]) == 0
    assert main([*common, "--precision", "fp16", "--resume", str(tmp_path / "a" / "last.npz"), "--epochs", "2"]) == 0
    assert main([*common, "--out", str(tmp_path / "b")]) == 0
    half, full = (split(read_npz(tmp_path / d / "last.npz"))[1]["history"] for d in ("a", "b"))
    assert len(half) == len(full) == 2 and half[1]["train.loss"] < half[0]["train.loss"]
    np.testing.assert_allclose([r["train.loss"] for r in half], [r["train.loss"] for r in full], rtol=1e-2)


TINY_GAN = """specc: 1
name: tiny_gan
inputs:
  real: [N, 4]
  noise: [N, 3]
blocks:
  critic:
    layers:
      - {op: linear, name: fc1, out_features: 8}
      - {op: leaky_relu, name: act, negative_slope: 0.2}
      - {op: linear, name: fc2, out_features: 1}
layers:
  - {op: linear, name: gen1, in: noise, out_features: 8}
  - {op: tanh, name: gen_act}
  - {op: linear, name: gen, out_features: 4}
  - {op: detach, name: fake_detached, in: gen}
  - {use: critic, name: disc, in: real}
  - {call: disc, name: disc_fake, in: fake_detached}
  - {call: disc, name: disc_gen, in: gen}
  - {op: constant, name: one, value: [[1.0]]}
  - {op: expand, name: ones, in: one, shape: [N, 1]}
  - {op: constant, name: zero, value: [[0.0]]}
  - {op: expand, name: zeros, in: zero, shape: [N, 1]}
  - {op: bce_with_logits, name: d_real, in: [disc, ones]}
  - {op: bce_with_logits, name: d_fake, in: [disc_fake, zeros]}
  - {op: add, name: d_loss, in: [d_real, d_fake]}
  - {op: bce_with_logits, name: g_loss, in: [disc_gen, ones]}
outputs: {fake: gen}
train:
  phases:
    - {objective: d_loss, update: ["disc.*"], steps: 2}
    - {objective: g_loss, update: ["gen*"], optimizer: {type: sgd, lr: 0.05, momentum: 0.9}}
  noise: {noise: normal}
  optimizer: {type: adam, lr: 0.01}
  batch_size: 8
  epochs: 2
"""


def test_two_processes_train_a_gan_phase_by_phase_as_one(tmp_path):
    """--nproc 2 with phases (one DDP wrapper per phase, each reducing its own parameters): a GAN without
    batch norm, the discriminator stepped twice per batch (Adam), the generator once (SGD), 37 samples in
    batches of 8 (the last, 5, split 3 + 2), noise drawn per batch: after 2 epochs the weights and the
    per-phase losses are those of one process with the same global batch."""
    from cli.main import main
    spec = tmp_path / "gan.yaml"
    spec.write_text(TINY_GAN)
    real = np.tanh(np.random.default_rng(0).standard_normal((37, 4)) + 0.5).astype(np.float32)
    np.savez(tmp_path / "d.npz", real=real)
    common = ["train", str(spec), "--data", str(tmp_path / "d.npz"), "--backend", "torch"]
    assert main([*common, "--nproc", "2", "--out", str(tmp_path / "ddp")]) == 0
    assert main([*common, "--out", str(tmp_path / "one")]) == 0
    ddp, one = (split(read_npz(tmp_path / d / "last.npz")) for d in ("ddp", "one"))
    assert set(one[0]) == {"gen1.weight", "gen1.bias", "gen.weight", "gen.bias", "disc.fc1.weight",
                           "disc.fc1.bias", "disc.fc2.weight", "disc.fc2.bias"}
    start = runtime.Model(compiler.compile_file(spec), seed=0).state_dict()
    for k, v in one[0].items():
        assert np.abs(v - start[k]).max() > 1e-3, f"{k} did not train"
        np.testing.assert_allclose(ddp[0][k], v, rtol=1e-4, atol=1e-6, err_msg=k)
    for key in ("train.d_loss", "train.g_loss"):
        np.testing.assert_allclose([r[key] for r in ddp[1]["history"]], [r[key] for r in one[1]["history"]],
                                   rtol=1e-5, err_msg=key)


def test_a_diverging_run_stops_with_the_numpy_message(tmp_path, capsys):
    """A non-finite loss on torch stops training as on NumPy, naming the first non-finite node."""
    from cli.main import main
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY.replace("{type: adam, lr: 0.01}", "{type: sgd, lr: 1.0e+30}").replace("tanh", "relu"))
    x = np.random.default_rng(0).standard_normal((35, 6)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, label=(x[:, 0] > 0).astype(np.int64))
    assert main(["train", str(spec), "--data", str(tmp_path / "d.npz"), "--backend", "torch",
                 "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert "training stopped at epoch 1, batch" in err and "not finite" in err and "Traceback" not in err
