"""ONNX export: pruning, graph hygiene, shape-inference agreement and onnxruntime parity."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import shape_inference

import compiler
import runtime
from runtime.train import weighted_sum
from compiler.errors import UserError
from compiler.onnx import LOWERINGS
from runtime.verify import compare, random_inputs, verify
from compiler.onnx.export import (ExportError, NoLoweringError, WeightsError, export, max_opset,
                                  to_onnx)
from runtime.onnx_session import OnnxSession

RTOL, ATOL = 1e-4, 1e-5
SPECS = sorted((Path(__file__).resolve().parent.parent / "specs").glob("*.yaml"))

MLP = """
name: mlp
inputs:
  x: [N, 5, 4]
  y: {shape: [N], dtype: int64}
layers:
  - {linear: 8}
  - relu
  - {op: dropout, p: 0.3}
  - {op: split, sections: 4, dim: -1, name: sp}
  - {op: concat, in: ["sp:1", "sp:0"], dim: -1, name: cat}
  - {op: transpose, dim0: 1, dim1: 2}
  - {op: flatten, name: flat}
  - {op: linear, name: logits, out_features: 3}
  - {op: softmax, name: probs}
  - {op: cross_entropy, name: loss, in: [logits, y]}
outputs: [logits, probs, loss]
train:
  objective: loss
  seed: 3
"""

# two heads on a shared trunk; a second input only the decoder reads; reparameterize = mu in eval
VAE = """
name: tiny_vae
inputs:
  x: [N, 6]
  cond: [N, 2]
layers:
  - {op: linear, name: enc, out_features: 8}
  - {op: tanh, name: h}
  - {op: linear, name: mu, in: h, out_features: 3}
  - {op: linear, name: logvar, in: h, out_features: 3}
  - {op: reparameterize, name: z, in: [mu, logvar]}
  - {op: concat, name: zc, in: [z, cond], dim: -1}
  - {op: linear, name: dec, out_features: 6}
  - {op: sigmoid, name: recon}
  - {op: kl_normal, name: kl, in: [mu, logvar]}
  - {op: mse_loss, name: rec_loss, in: [recon, x]}
outputs: {recon: recon, mu: mu}
train:
  objective: {rec_loss: 1.0, kl: 0.1}
"""


def ort_run(model: onnx.ModelProto, feeds: dict) -> dict:
    sess = OnnxSession(model)
    return sess.run(**{k: feeds[k] for k in sess.input_names})


def onnx_types(model: onnx.ModelProto) -> dict[str, tuple[int, list]]:
    """ONNX's own shape inference (strict) on a copy without specc's value_info: name -> (elem type, dims)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    del m.graph.value_info[:]
    m = shape_inference.infer_shapes(m, check_type=True, strict_mode=True, data_prop=True)
    out = {}
    for v in list(m.graph.value_info) + list(m.graph.output) + list(m.graph.input):
        t = v.type.tensor_type
        dims = None if not t.HasField("shape") else [
            d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim]
        out[v.name] = (t.elem_type, dims)
    for init in m.graph.initializer:
        out.setdefault(init.name, (init.data_type, list(init.dims)))
    return out


def shape_disagreements(exp, strict: bool = True) -> list[str]:
    """Every spec value in the graph whose ONNX-inferred type is missing or contradicts specc's; when
    strict, also every dimension ONNX could not infer (strict=False allows those)."""
    from compiler.onnx.registry import DTYPES
    inferred = onnx_types(exp.model)
    problems = []
    for text, name in exp.values.items():
        t = exp.types[text]
        if name not in inferred:
            problems.append(f"{text}: ONNX inferred nothing for '{name}'")
            continue
        elem, dims = inferred[name]
        if elem != DTYPES[t.dtype]:
            problems.append(f"{text}: dtype {elem} vs {t.dtype}")
        if dims is None:
            problems.append(f"{text}: ONNX inferred no shape")
            continue
        if len(dims) != t.rank:
            problems.append(f"{text}: rank {len(dims)} vs {t.rank}")
            continue
        for i, (od, sd) in enumerate(zip(dims, t.shape)):
            if od is None or (isinstance(od, str) and od.startswith("unk__")):
                if strict:
                    problems.append(f"{text}: dim {i} unknown to ONNX (specc {sd})")
            elif od != sd:
                problems.append(f"{text}: dim {i} is {od} for ONNX, {sd} for specc")
    return problems


def assert_parity(exp, model, feeds, want: dict | None = None) -> None:
    got = ort_run(exp.model, feeds)
    want = want or model(outputs=list(exp.outputs), **feeds)
    assert set(got) == set(exp.outputs)
    for k in exp.outputs:
        ok, diff, where = compare(got[k], want[k], RTOL, ATOL)
        assert ok, f"output '{k}': max abs diff {diff:.3g} {where}"


@pytest.fixture(scope="module")
def mlp():
    return compiler.compile_text(MLP)


@pytest.fixture(scope="module")
def vae():
    return compiler.compile_text(VAE)


# ------------------------------------------------------------------------------ hygiene

def test_graph_hygiene(mlp):
    exp = export(mlp, optimize=False)
    m = exp.model
    onnx.checker.check_model(m, full_check=True)
    g = m.graph
    # loss pruned, and with it the label input
    assert [i.name for i in g.input] == ["x"]
    assert [o.name for o in g.output] == ["logits", "probs"]
    dims = g.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "N" and [d.dim_value for d in dims[1:]] == [5, 4]
    assert g.output[0].type.tensor_type.shape.dim[0].dim_param == "N"
    # initialisers named as the state_dict
    state = runtime.Model(mlp).state_dict()
    params = {t.name for t in g.initializer if t.name in state}
    assert params == set(state)
    # optimised (the default): linear_1's weight is transposed once, at export, and named so
    opt = {t.name: onnx.numpy_helper.to_array(t) for t in export(mlp, state).model.graph.initializer}
    assert "linear_1.weight" not in opt
    np.testing.assert_array_equal(opt["linear_1.weight:Transpose"], state["linear_1.weight"].T)
    assert {"linear_1.bias", "logits.weight", "logits.bias"} <= set(opt)
    # lean: no Identity (dropout is nothing), node names from spec names, values named after spec nodes
    assert not [n for n in g.node if n.op_type == "Identity"]
    spec_names = {n.name for n in mlp.nodes}
    assert all(n.name.split("/")[0] in spec_names | {""} or n.op_type == "Shape" for n in g.node)
    produced = {o for n in g.node for o in n.output}
    assert {"linear_1", "relu_1", "cat", "flat", "logits", "probs"} <= produced
    meta = {p.key: p.value for p in m.metadata_props}
    assert meta == {"spec_name": "mlp", "specc_version": compiler.__version__, "spec_sha256": mlp.spec_hash}
    assert m.producer_name == "specc" and m.opset_import[0].version == 18
    assert m.ir_version <= onnx.IR_VERSION


def test_onnx_shape_inference_agrees_with_specc(mlp, vae):
    for g in (mlp, vae):
        exp = export(g)
        assert len(exp.values) > 5
        assert shape_disagreements(exp) == []


def test_api_default_weights_are_the_runtime_seeded_init(mlp):
    proto = compiler.to_onnx(mlp)                 # fresh weights from train.seed (3)
    model = runtime.Model(mlp, seed=3).eval()
    feeds = random_inputs(mlp, seed=1)
    got = ort_run(proto, feeds)
    np.testing.assert_allclose(got["logits"], model(**feeds)["logits"], rtol=RTOL, atol=ATOL)


# ------------------------------------------------------------------------------ parity

def test_parity_fresh_and_trained(mlp):
    model = runtime.Model(mlp, seed=0)
    feeds = random_inputs(mlp, seed=0)
    assert_parity(export(mlp, model), model.eval(), feeds)
    train_steps(model, mlp, feeds)
    assert_parity(export(mlp, model.state_dict()), model.eval(), feeds)


def test_weights_refused_with_every_key_named(mlp):
    state = runtime.Model(mlp).state_dict()
    bad = dict(state)
    del bad["logits.bias"]
    bad["logits.weight"] = np.zeros((3, 7), np.float32)
    bad["logits.bais"] = np.zeros(3, np.float32)
    with pytest.raises(WeightsError) as e:
        to_onnx(mlp, bad)
    msg = e.value.message
    assert "missing: logits.bias" in msg and "logits.bais" in msg and "did you mean 'logits.bias'" in msg
    assert "logits.weight: weights [3, 7], spec [3, 40]" in msg
    bad = dict(state, **{"logits.bias": np.array([object(), 1, 2], dtype=object)})
    with pytest.raises(WeightsError, match="not numeric: logits.bias"):
        to_onnx(mlp, bad)


# ------------------------------------------------------------------------------ outputs

def test_output_selects_a_subgraph(vae):
    full = export(vae)
    enc = export(vae, outputs=["mu"])
    assert [i.name for i in full.model.graph.input] == ["x", "cond"]
    assert [i.name for i in enc.model.graph.input] == ["x"]
    assert [o.name for o in enc.model.graph.output] == ["mu"]
    assert len(enc.model.graph.node) < len(full.model.graph.node)
    assert {t.name for t in enc.model.graph.initializer} == {"enc.weight", "enc.bias", "mu.weight", "mu.bias"}
    # node references work too, ports and all; logvar is pruned: reparameterize is mu in eval
    assert "logvar.weight" not in {t.name for t in full.model.graph.initializer}
    h = export(vae, outputs=["h", "zc"])
    assert [o.name for o in h.model.graph.output] == ["h", "zc"]
    model = runtime.Model(vae, seed=0).eval()
    feeds = random_inputs(vae)
    for e in (full, enc, h):
        assert_parity(e, model, feeds)


def test_outputs_needing_a_loss_or_unknown_are_refused(mlp, vae):
    with pytest.raises(ExportError, match="needs node 'loss' \\(cross_entropy\\), a loss") as e:
        export(mlp, outputs=["loss"])
    assert e.value.code == 2
    with pytest.raises(ExportError, match="unknown output 'logitz'.*") as e:
        export(mlp, outputs=["logitz"])
    assert "logits" in (e.value.hint or "")
    with pytest.raises(ExportError, match="no port"):
        export(mlp, outputs=["sp:9"])


def test_same_value_twice_and_input_passthrough():
    g = compiler.compile_text("""
name: twice
inputs: {x: [N, 3]}
layers:
  - {op: relu, name: r}
  - {op: dropout, name: d, p: 0.5, in: x}
outputs: {a: r, b: r, c: d, x_again: x}
""")
    exp = export(g)
    onnx.checker.check_model(exp.model, full_check=True)
    assert [o.name for o in exp.model.graph.output] == ["a", "b", "c", "x_again"]
    feeds = random_inputs(g)
    got = ort_run(exp.model, feeds)
    np.testing.assert_array_equal(got["a"], np.maximum(feeds["x"], 0))
    np.testing.assert_array_equal(got["b"], got["a"])
    np.testing.assert_array_equal(got["c"], feeds["x"])
    np.testing.assert_array_equal(got["x_again"], feeds["x"])


PE = """
name: pe
inputs: {x: [N, T, 7]}
layers:
  - {op: positional_encoding, name: pos, max_len: 12}
  - {op: relu, name: r}                            # so pos is an intermediate value, typed by ONNX alone
outputs: [r]
"""


def test_positional_encoding_symbolic_length_keeps_symbols_and_table_values():
    g = compiler.compile_text(PE)
    exp = export(g)
    assert shape_disagreements(exp) == []
    plain = onnx.ModelProto()                      # without data propagation too: T comes from x's axis
    plain.CopyFrom(exp.model)
    del plain.graph.value_info[:]
    plain = shape_inference.infer_shapes(plain, strict_mode=True)
    dims = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in list(plain.graph.value_info) + list(plain.graph.output)}
    assert dims["pos"] == dims["r"] == ["N", "T", 7] and not [n for n, ds in dims.items() if "" in ds]
    assert "Sin" not in {n.op_type for n in exp.model.graph.node}     # the table's values, not recomputed
    model = runtime.Model(g).eval()
    rng = np.random.default_rng(0)
    for n, t in [(2, 1), (3, 5), (2, 12), (0, 4)]:                   # 12 = max_len
        x = rng.standard_normal((n, t, 7)).astype(np.float32)
        if n:
            x[0, 0, 0], x[-1, -1, 0] = np.nan, np.inf
        np.testing.assert_array_equal(ort_run(exp.model, {"x": x})["r"], model(x=x)["r"])
    with pytest.raises(Exception, match="onnxruntime failed"):      # T > max_len: refused, as by the runtime
        ort_run(exp.model, {"x": np.zeros((1, 13, 7), np.float32)})
    # a concrete T: the table's first T rows as one constant
    fixed = export(compiler.compile_text(PE.replace("[N, T, 7]", "[N, 5, 7]")))
    assert [n.op_type for n in fixed.model.graph.node] == ["Add", "Relu"]


# ------------------------------------------------------------------------------ opsets

@pytest.mark.parametrize("opset", [17, "max"])
def test_opsets(mlp, opset):
    opset = max_opset() if opset == "max" else opset
    exp = export(mlp, opset=opset)
    onnx.checker.check_model(exp.model, full_check=True)
    assert exp.model.opset_import[0].version == opset
    model = runtime.Model(mlp, seed=3).eval()
    assert_parity(exp, model, random_inputs(mlp))


@pytest.mark.parametrize("opset", [16, 99, max_opset() + 1])
def test_opset_out_of_range(mlp, opset):
    with pytest.raises(UserError, match=f"opset {opset} is not supported") as e:
        to_onnx(mlp, opset=opset)
    assert e.value.code == 2


# ------------------------------------------------------------------------------ optimize

CNN = """
name: cnn
inputs: {x: [N, 3, 8, 8]}
layers:
  - {op: conv2d, name: conv, out_channels: 4, kernel_size: 3, padding: 1, bias: false}
  - {op: batch_norm, name: bn}
  - relu
  - {op: reshape, shape: [-1, 4, 64]}
  - {op: linear, name: proj, out_features: 5}
  - {op: flatten, name: flat}
  - {op: linear, name: fc, out_features: 6}
  - {op: batch_norm, name: bn_fc}
outputs: [bn_fc]
"""


def test_optimize_folds_weights_and_fuses_batch_norm():
    g = compiler.compile_text(CNN)
    model = runtime.Model(g, seed=0)
    rng = np.random.default_rng(0)
    state = {k: (v * rng.uniform(0.5, 1.5, v.shape) + (0.1 if "running_mean" in k else 0)).astype(v.dtype)
             if v.dtype.kind == "f" else v for k, v in model.state_dict().items()}
    model.load_state_dict(state)
    plain, opt = export(g, model, optimize=False), export(g, model)
    ops = [n.op_type for n in opt.model.graph.node]
    assert "BatchNormalization" in [n.op_type for n in plain.model.graph.node]
    assert "BatchNormalization" not in ops and "Transpose" not in ops
    assert len(ops) < len(plain.model.graph.node)
    inits = {t.name for t in opt.model.graph.initializer}
    assert "conv.weight+bn" in inits and "fc.weight+bn_fc" in inits
    onnx.checker.check_model(opt.model, full_check=True)
    feeds = random_inputs(g)
    assert_parity(opt, model.eval(), feeds)
    assert verify(g, state).ok
    # the public API takes the same switch: every parameter and buffer under its state_dict name
    kept = {t.name for t in compiler.to_onnx(g, model, optimize=False).graph.initializer}
    assert {"conv.weight", "bn.running_mean", "fc.weight"} <= kept and "conv.weight+bn" not in kept


# ------------------------------------------------------------------------------ verify

def test_verify_names_the_first_differing_node(mlp, monkeypatch):
    state = runtime.Model(mlp, seed=0).state_dict()
    ok = verify(mlp, state)
    assert ok.ok and ok.message.startswith("verified: 2 outputs match")

    def wrong_relu(b, node, x, p):                      # a broken lowering: Sigmoid for Relu
        return b.op("Sigmoid", [x[0]])

    monkeypatch.setitem(LOWERINGS, "relu", wrong_relu)
    bad = verify(mlp, state)
    assert not bad.ok
    assert bad.first_bad == "relu_1"
    assert "node 'relu_1' (relu)" in bad.message and "lowering of 'relu'" in bad.message


def test_missing_lowering_is_named(mlp, monkeypatch):
    monkeypatch.delitem(LOWERINGS, "softmax")
    with pytest.raises(NoLoweringError, match="op 'softmax' \\(node 'probs'\\) has no ONNX lowering"):
        export(mlp)
    assert [o.name for o in export(mlp, outputs=["logits"]).model.graph.output] == ["logits"]


# ------------------------------------------------------------------------------ every spec

def objectives(graph) -> dict[str, float]:
    tr = graph.train
    if tr is None:
        return {}
    if tr.objective is not None:
        return {tr.objective: 1.0} if isinstance(tr.objective, str) else dict(tr.objective)
    out: dict[str, float] = {}
    for ph in tr.phases or []:
        obj = ph.objective
        out.update({obj: 1.0} if isinstance(obj, str) else obj)
    return out


def train_steps(model, graph, feeds, steps: int = 2, lr: float = 0.01) -> None:
    """A few plain SGD steps on the spec's objective (w -= lr * grad)."""
    objs = objectives(graph)
    model.train()
    for _ in range(steps):
        model.zero_grad()
        out = model.forward(outputs=list(objs), **feeds)
        weighted_sum(out, objs).backward()          # one backward: the terms share layers
        for p in model.parameters().values():
            if p.grad is not None:
                p.data -= lr * p.grad
    model.eval()


def _no_lowering(graph) -> list[str]:
    from compiler.onnx.export import select_outputs
    chosen = select_outputs(graph, None)
    need, stack = set(), [r.node for r in chosen.values()]
    while stack:
        n = stack.pop()
        if n not in need and graph.has_node(n):
            need.add(n)
            stack.extend(r.node for r in graph.node(n).inputs if r is not None)
    return sorted({graph.node(n).op for n in need} - set(LOWERINGS)
                  - {"identity", "detach", "dropout", "reparameterize"})


# Test-time sizes for specs' size params (only those a spec declares), so every spec runs in seconds.
# A spec still heavy after that (VGG-16: 138M parameters at 224x224) runs at batch 1 with fresh weights
# only; SPECC_SLOW=1 runs every spec as written, with real training steps for all.
SLOW = os.environ.get("SPECC_SLOW") == "1"
SMALLER = {"size": 64, "image_size": 32, "patch_size": 8, "hidden_dim": 64, "mlp_dim": 128, "num_heads": 4,
           "nodes": 40, "features": 24, "labelled": 10, "vocab": 300, "src_vocab": 300, "tgt_vocab": 300,
           "hidden": 32, "embed": 32, "d_model": 32, "ff": 64}
HEAVY_MACS = 50_000_000                    # per sample: perturb the weights instead of training
HUGE_PARAMS = 50_000_000                   # fresh weights only, batch 1


def perturbed(model) -> dict:
    """A stand-in for a trained checkpoint: every float parameter and buffer moved off its initial value."""
    state = {}
    for k, v in model.state_dict().items():
        if v.dtype.kind != "f":
            state[k] = v
        elif k.endswith("running_var"):
            state[k] = v * np.linspace(0.5, 1.5, v.size, dtype=v.dtype).reshape(v.shape)
        else:
            scale = max(float(np.abs(v).mean()), 0.01)
            state[k] = 0.9 * np.roll(v, 1) + scale * np.linspace(-0.3, 0.3, v.size, dtype=v.dtype).reshape(v.shape)
    return state


@pytest.mark.parametrize("path", SPECS or [pytest.param(None, marks=pytest.mark.skip(reason="no specs/*.yaml yet"))],
                         ids=[p.stem for p in SPECS] or ["none"])
def test_every_spec_matches_numpy(path):
    import yaml
    declared = (yaml.safe_load(path.read_text()) or {}).get("params") or {}
    small = {} if SLOW else {k: v for k, v in SMALLER.items()         # only shrink, only plain numbers
                             if type(declared.get(k)) is int and declared[k] > v}
    graph = compiler.compile_file(path, params=small)
    missing = _no_lowering(graph)
    if missing:
        pytest.skip(f"{path.name}: no ONNX lowering yet for {', '.join(missing)}")
    n_params = sum(int(np.prod(p.shape)) for p, _ in graph.params().values())
    huge = n_params > HUGE_PARAMS and not SLOW
    heavy = sum(n.macs for n in graph.nodes) > HEAVY_MACS and not SLOW
    model = runtime.Model(graph, seed=0)
    feeds = random_inputs(graph, seed=0, sizes={"N": 1} if heavy else None)
    exp = export(graph, model)
    assert shape_disagreements(exp) == []            # strict: ONNX names every dim specc does, N and T too
    assert_parity(exp, model.eval(), feeds)
    if huge:
        return
    if objectives(graph) and not heavy:
        train_steps(model, graph, feeds)
    else:
        model.load_state_dict(perturbed(model))
    want = model.eval()(**feeds)
    assert_parity(export(graph, model), model, feeds, want)
    plain = export(graph, model, check=False, optimize=False)
    assert shape_disagreements(plain) == []
    assert_parity(plain, model, feeds, want)
