"""The inference plan (runtime/inference_plan.py) against the unplanned eval path it replaces."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import compiler
import runtime
from compiler.errors import UserError
from runtime import inference_plan
from runtime.optim import SGD

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted(p.name for p in (ROOT / "specs").glob("*.yaml"))


def _model(spec: str, seed: int = 0) -> runtime.Model:
    m = runtime.Model(compiler.compile_file(ROOT / "specs" / spec), seed=seed)
    rng = np.random.default_rng(1)                  # running statistics away from 0 / 1, so folding shows
    for k, v in m.state_dict().items():
        if k.endswith("running_var"):
            v[...] = rng.uniform(0.5, 2.0, v.shape)
        elif k.endswith("running_mean"):
            v[...] = rng.normal(0.0, 0.3, v.shape)
        elif k.endswith("bn.weight") or k.endswith("bn1.weight"):
            v[...] = rng.uniform(0.5, 1.5, v.shape)
    return m.eval()


def _inputs(g, size: int = 2, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for name, t in g.inputs.items():
        shape = [d if isinstance(d, int) else size for d in t.shape]
        if t.dtype == "int64":
            out[name] = rng.integers(0, 2, size=shape)
        elif t.dtype == "bool":
            out[name] = np.zeros(shape, bool)
        else:
            out[name] = rng.standard_normal(shape).astype(np.float32)
    return out


def _both(m: runtime.Model, x: dict, outputs=None) -> tuple[dict, dict]:
    m.planned = False
    m.rng = np.random.default_rng(5)
    plain = m(outputs=outputs, **x)
    m.planned = True
    m.rng = np.random.default_rng(5)
    planned = m(outputs=outputs, **x)
    return plain, planned


def _assert_close(plain: dict, planned: dict, rtol: float = 1e-5) -> None:
    assert plain.keys() == planned.keys()
    for k in plain:
        a, b = np.asarray(plain[k], np.float64), np.asarray(planned[k], np.float64)
        assert a.shape == b.shape, k
        scale = max(float(np.abs(a).max()), 1e-30) if a.size else 1.0
        assert float(np.abs(a - b).max() if a.size else 0.0) <= rtol * scale, k


@pytest.mark.parametrize("spec", SPECS)
def test_every_spec_planned_equals_unplanned_and_leaves_inputs_alone(spec):
    m = _model(spec)
    x = _inputs(m.graph)
    before = {k: v.copy() for k, v in x.items()}
    plain, planned = _both(m, x)
    _assert_close(plain, planned)
    for k in x:
        assert np.array_equal(x[k], before[k]), f"input {k} was overwritten"
    assert m._inference_plans, "the planned path was not taken"


def test_batch_norm_is_folded_and_relu_runs_in_place():
    m = _model("resnet_digits.yaml")
    m(**_inputs(m.graph))
    ip = next(iter(m._inference_plans.values()))
    kinds = [s.kind for s in ip.steps]
    assert kinds.count("conv_bn") == sum(n.op == "batch_norm" for n in m.graph.nodes)
    assert "inplace" in kinds
    assert not any(s.node.op == "batch_norm" for s in ip.steps)


def test_a_requested_intermediate_is_neither_folded_away_nor_overwritten():
    m = _model("resnet_digits.yaml")
    convs = [n.name for n in m.graph.nodes if n.op == "conv2d"]
    bns = [n.name for n in m.graph.nodes if n.op == "batch_norm"]
    outs = [convs[0], bns[0], list(m.graph.outputs)[0]]
    plain, planned = _both(m, _inputs(m.graph), outputs=outs)
    _assert_close(plain, planned)


def test_the_fold_follows_weights_changed_in_place_and_by_load_state_dict():
    m = _model("vgg_digits.yaml")
    x = _inputs(m.graph, size=4)
    m(**x)                                           # plan built, weights folded once
    m.train()
    opt = SGD(m.parameters(), lr=0.5, momentum=0.0)
    loss = m.graph.train.objective if m.graph.train else "loss"
    m.forward(outputs=[loss], **x)[loss].backward()
    opt.step()                                       # in-place update of every conv weight
    m.eval()
    plain, planned = _both(m, x)
    _assert_close(plain, planned)
    other = _model("vgg_digits.yaml", seed=3)
    m.load_state_dict(other.state_dict())
    _assert_close(other(**x), m(**x))


def test_the_escape_hatches_run_the_unplanned_path(monkeypatch):
    m = _model("lenet5.yaml")
    x = _inputs(m.graph)
    calls = []
    monkeypatch.setattr(inference_plan.InferencePlan, "run", lambda self, env, profile=None: calls.append(1))
    monkeypatch.setenv("SPECC_INFERENCE_PLAN", "0")
    m(**x)
    monkeypatch.delenv("SPECC_INFERENCE_PLAN")
    m.planned = False
    m(**x)
    m.train()
    m.planned = True
    m(**x)                                           # training mode never plans
    assert calls == []
    m.eval()
    m(**x)
    assert calls == [1]


def test_bad_data_gets_the_same_message_as_without_the_plan():
    m = _model("lstm_classifier.yaml")
    x = _inputs(m.graph)
    tok = next(k for k, t in m.graph.inputs.items() if t.dtype == "int64" and t.rank == 2)
    x[tok] = x[tok] + 10 ** 6
    msgs = []
    for planned in (False, True):
        m.planned = planned
        with pytest.raises(UserError) as e:
            m(**x)
        msgs.append(str(e.value))
    assert msgs[0] == msgs[1] and "out of range" in msgs[1]


def test_specc_run_uses_the_plan_and_agrees_with_onnxruntime(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    from runtime.checkpoint import save
    from runtime.inference import run_model
    m = _model("resnet_digits.yaml")
    ckpt = tmp_path / "w.npz"
    save(m, ckpt)
    x = {k: v for k, v in _inputs(m.graph, size=3).items() if m.graph.inputs[k].dtype == "float32"}
    used = []
    real = inference_plan.InferencePlan.run

    def spy(self, env, profile=None):
        used.append(1)
        return real(self, env, profile)

    monkeypatch.setattr(inference_plan.InferencePlan, "run", spy)
    spec = str(ROOT / "specs" / "resnet_digits.yaml")
    ours = run_model(spec, x, backend="numpy", weights=str(ckpt))
    assert used
    ort = run_model(spec, x, backend="onnxruntime", weights=str(ckpt))
    _assert_close(ort, ours, rtol=1e-4)
