"""tools/bench_models.py: the torch.nn baselines of the benchmark take specc's weights by name and compute
what specc computes (else the benchmark would compare different models)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools.bench_models import INPUTS, TARGET, TORCH_BUILDERS, build_torch_model, torch_loss  # noqa: E402

SPECS = {"mlp": "tools/bench_specs/mlp.yaml", "lenet5": "specs/lenet5.yaml", "vgg_bn": "tools/bench_specs/vgg_bn.yaml",
         "resnet18": "specs/resnet18.yaml", "lstm": "tools/bench_specs/lstm.yaml",
         "transformer": "tools/bench_specs/transformer.yaml", "gcn": "tools/bench_specs/gcn.yaml",
         "conv_autoencoder": "tools/bench_specs/conv_autoencoder.yaml"}


def _inputs(g, rng) -> dict[str, np.ndarray]:
    out = {}
    for name, t in g.inputs.items():
        shape = [d if isinstance(d, int) else 2 for d in t.shape]
        if t.dtype == "int64":
            out[name] = rng.integers(0, 2, size=shape)
        elif name == "adj":
            out[name] = (rng.random(shape) < 0.002).astype(np.float32)
        else:
            out[name] = rng.standard_normal(shape).astype(np.float32)
    return out


def test_every_benchmark_model_has_a_baseline():
    assert set(TORCH_BUILDERS) == set(SPECS) == set(INPUTS) == set(TARGET)


@pytest.mark.parametrize("key", sorted(SPECS))
def test_the_torch_nn_baseline_loads_specc_weights_and_agrees(key):
    import compiler
    import runtime
    g = compiler.compile_file(ROOT / SPECS[key])
    m = runtime.Model(g, seed=0)
    rng = np.random.default_rng(0)
    for k, v in m.state_dict().items():
        if k.endswith("running_var"):
            v[...] = rng.uniform(0.5, 2.0, v.shape)
        elif k.endswith("running_mean"):
            v[...] = rng.normal(0.0, 0.3, v.shape)
    net = build_torch_model(key, m.state_dict()).eval()
    x = _inputs(g, rng)
    pred = next(iter(g.outputs))
    ours = m.eval()(outputs=[pred], **{k: x[k] for k in INPUTS[key]})[pred]
    with torch.inference_mode():
        theirs = net(*[torch.from_numpy(x[k]) for k in INPUTS[key]])
    assert theirs.shape == ours.shape
    np.testing.assert_allclose(theirs.numpy(), ours, rtol=1e-4, atol=1e-4 * float(np.abs(ours).max()))
    target = torch.from_numpy(x[TARGET[key]])
    loss = float(torch_loss(key, theirs, target))
    m.train(False)
    assert loss == pytest.approx(float(m(outputs=["loss"], **x)["loss"]), rel=1e-4)
