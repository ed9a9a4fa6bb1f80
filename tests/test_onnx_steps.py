"""Recurrent layers in inference run their own ONNX lowering in onnxruntime (runtime/onnx_steps.py):
the plan's outputs against the NumPy kernel's (the unplanned path), with the session really used."""
from __future__ import annotations

import json

import numpy as np
import pytest

import compiler
import runtime
from runtime import onnx_steps
from runtime.kernels import Ctx


def _model(op: str, extra: dict, with_state: bool, batch_first: bool = True) -> runtime.Model:
    inputs = {"x": {"shape": ["N", "T", 6]} if batch_first else {"shape": ["T", "N", 6]}}
    rec = {"op": op, "name": "rec", "hidden_size": 8, "batch_first": batch_first, **extra}
    if with_state:
        layers = 2 * extra.get("num_layers", 1) if extra.get("bidirectional") else extra.get("num_layers", 1)
        inputs["h0"] = {"shape": [layers, "N", 8]}
        rec["in"] = ["x", "h0"]
        if op == "lstm":
            inputs["c0"] = {"shape": [layers, "N", 8]}
            rec["in"].append("c0")
    outs = {"y": "rec", "h": "rec:h"}
    if op == "lstm":
        outs["c"] = "rec:c"
    spec = {"name": "t", "inputs": inputs, "layers": [rec], "outputs": outs}
    return runtime.Model(compiler.compile_text(json.dumps(spec)), seed=3).eval()


def _feeds(m: runtime.Model, n: int = 3, t: int = 5, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    out = {}
    for name, ty in m.graph.inputs.items():
        shape = [n if d == "N" else t if d == "T" else d for d in ty.shape]
        out[name] = rng.standard_normal(shape).astype(np.float32)
    return out


@pytest.fixture
def used(monkeypatch):
    monkeypatch.delenv("SPECC_ONNX_STEPS", raising=False)
    hits = []
    real = onnx_steps.run
    monkeypatch.setattr(onnx_steps, "run", lambda *a, **k: (lambda r: hits.append(r is not None) or r)(real(*a, **k)))
    return hits


def _compare(m: runtime.Model, x: dict) -> None:
    m.planned = False
    plain = m(**x)
    m.planned = True
    planned = m(**x)
    assert plain.keys() == planned.keys()
    for k in plain:
        assert planned[k].shape == plain[k].shape and planned[k].dtype == np.float32, k
        np.testing.assert_allclose(planned[k], plain[k], rtol=1e-5, atol=1e-6, err_msg=k)


@pytest.mark.parametrize("op,extra,with_state,batch_first", [
    ("lstm", {}, False, True),
    ("lstm", {"num_layers": 2, "bidirectional": True}, True, True),
    ("gru", {"num_layers": 2}, True, False),
    ("gru", {"bidirectional": True}, False, True),
    ("rnn", {"nonlinearity": "relu", "bidirectional": True}, True, True),
    ("rnn", {"bias": False}, False, False),
])
def test_recurrent_inference_in_onnxruntime_matches_numpy(used, op, extra, with_state, batch_first):
    m = _model(op, extra, with_state, batch_first)
    _compare(m, _feeds(m))
    assert used and all(used)


def test_weights_changed_between_calls_are_used(used):
    m = _model("lstm", {"bidirectional": True}, False)
    x = _feeds(m)
    before = m(**x)["y"].copy()
    for v in m.state_dict().values():
        v *= 1.5                                    # in place, as an optimiser step or load_state_dict does
    _compare(m, x)
    assert not np.allclose(m(**x)["y"], before)
    assert all(used)


def test_new_sizes_make_new_sessions_and_float64_keeps_numpy(used):
    m = _model("gru", {}, False)
    _compare(m, _feeds(m, n=2, t=4))
    _compare(m, _feeds(m, n=5, t=9, seed=1))
    assert used and all(used)
    node = next(n for n in m.graph.nodes if n.op == "gru")
    ctx = Ctx(node.attrs, False, np.random.default_rng(0), (), (True, True), {}, node)
    params = [m.state_dict()[node.param_name(p)] for p in node.params]
    x = _feeds(m)["x"]
    assert onnx_steps.run(node, ctx, [x, None], params) is not None
    assert onnx_steps.run(node, ctx, [x.astype(np.float64), None], [p.astype(np.float64) for p in params]) is None


def test_switched_off(monkeypatch, used):
    monkeypatch.setenv("SPECC_ONNX_STEPS", "0")
    m = _model("lstm", {}, False)
    m(**_feeds(m))
    assert not used                                  # the plan never asked onnxruntime
