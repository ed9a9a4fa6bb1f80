"""Check ⇒ runs (issue 13, item 4): for every catalogue op, a tiny spec per input dtype combination.

Every combination `specc check` accepts must run forward and backward in the NumPy runtime with exactly
the inferred shapes and dtypes, and (losses and training-only ops aside) export to ONNX that passes the
checker and that onnxruntime runs to the runtime's values. A combination check refuses must be refused
with a SpecError (a clear message at the YAML position), never a crash later on.
"""
from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field

import numpy as np
import pytest

import compiler
import compiler.ops as ops
from compiler.catalogue import ALL_OPS
from compiler.errors import SpecError

DTYPES = ("float32", "int64", "bool")
N = 2                                       # what the symbol N is bound to at run time (any other symbol: 3)


@dataclass
class Case:
    """One op use: attributes, and the shape of each input (None: an omitted optional input).
    `kinds` says what values an input takes when it is float: 'prob' is in (0, 1)."""

    attrs: dict = field(default_factory=dict)
    shapes: list = field(default_factory=lambda: [["N", 3]])
    kinds: dict = field(default_factory=dict)
    dtypes: tuple | None = None             # only these dtype combinations (default: all of DTYPES^inputs)


MASKED = tuple(("float32",) * 3 + (m,) for m in DTYPES)        # float q, k, v; a mask of each dtype
X = [["N", 3]]
XX = [["N", 3], ["N", 3]]
IMG = [["N", 2, 4, 4]]
SEQ = [["N", 3, 2]]

CASES: dict[str, list[Case]] = {
    "identity": [Case()],
    "add": [Case(shapes=XX), Case({"value": 2})],
    "sub": [Case(shapes=XX), Case({"value": 2})],
    "mul": [Case(shapes=XX), Case({"value": 2})],
    "div": [Case(shapes=XX), Case({"value": 2})],
    "matmul": [Case(shapes=[["N", 3], [3, 4]])],
    "concat": [Case({"dim": 1}, shapes=XX)],
    "split": [Case({"sections": 2, "dim": 1}, shapes=[["N", 4]])],
    "reshape": [Case({"shape": [-1, 3, 2]}, shapes=[["N", 6]])],
    "flatten": [Case(shapes=[["N", 2, 3]])],
    "permute": [Case({"dims": [0, 2, 1]}, shapes=[["N", 2, 3]]), Case({"dims": []}, shapes=[[]])],
    "transpose": [Case({"dim0": 1, "dim1": 2}, shapes=[["N", 2, 3]]), Case({"dim0": 0, "dim1": -1}, shapes=[[]])],
    "squeeze": [Case({"dim": 1}, shapes=[["N", 1, 3]]), Case({"dim": -1}, shapes=[[]]), Case(shapes=[[]])],
    "unsqueeze": [Case({"dim": 1})],
    "slice": [Case({"dim": 1, "start": 1, "end": 3}, shapes=[["N", 4]])],
    "select": [Case({"dim": 1, "index": 2}, shapes=[["N", 4]])],
    "sum": [Case({"dim": 1}), Case()],
    "mean": [Case({"dim": 1}), Case()],
    "max": [Case({"dim": 1}), Case()],
    "expand": [Case({"shape": ["N", 3]}, shapes=[["N", 1]])],
    "detach": [Case()],
    "one_hot": [Case({"num_classes": 3}, shapes=[["N"]])],
    "param": [Case({"shape": [2, 3]}, shapes=[])],
    "constant": [Case({"value": [1.5, 2.0]}, shapes=[]), Case({"value": 3}, shapes=[]),
                 Case({"value": [[1, 2], [3, 4]]}, shapes=[]), Case({"value": True}, shapes=[])],
    "linear": [Case({"out_features": 2})],
    "prelu": [Case(), Case({"num_parameters": 3}, shapes=[["N", 3, 2]])],
    "softmax": [Case(), Case({"dim": 0}, shapes=[[]])],
    "log_softmax": [Case(), Case(shapes=[[]])],
    "conv1d": [Case({"out_channels": 3, "kernel_size": 3}, shapes=[["N", 2, 5]])],
    "conv2d": [Case({"out_channels": 3, "kernel_size": 3, "padding": 1}, shapes=IMG)],
    "conv_transpose2d": [Case({"out_channels": 3, "kernel_size": 3, "stride": 2}, shapes=IMG)],
    "max_pool2d": [Case({"kernel_size": 2}, shapes=IMG)],
    "avg_pool2d": [Case({"kernel_size": 2}, shapes=IMG)],
    "adaptive_avg_pool2d": [Case({"output_size": 2}, shapes=IMG)],
    "global_avg_pool2d": [Case(shapes=IMG)],
    "upsample": [Case({"scale_factor": 2}, shapes=IMG), Case({"scale_factor": 2, "mode": "bilinear"}, shapes=IMG)],
    "batch_norm": [Case(), Case(shapes=IMG)],
    "layer_norm": [Case()],
    "dropout": [Case({"p": 0.5})],
    "standardize": [Case({"mean": 0.5, "std": 2.0})],
    "embedding": [Case({"num_embeddings": 4, "embedding_dim": 2})],
    "rnn": [Case({"hidden_size": 3}, shapes=SEQ), Case({"hidden_size": 3}, shapes=SEQ + [[1, "N", 3]])],
    "lstm": [Case({"hidden_size": 3}, shapes=SEQ + [None, None]),
             Case({"hidden_size": 3}, shapes=SEQ + [[1, "N", 3], [1, "N", 3]])],
    "gru": [Case({"hidden_size": 3}, shapes=SEQ), Case({"hidden_size": 3}, shapes=SEQ + [[1, "N", 3]])],
    "scaled_dot_product_attention": [Case(shapes=[["N", 3, 4]] * 3),
                                     Case(shapes=[["N", 3, 4]] * 3 + [[1, 3, 3]], dtypes=MASKED),
                                     Case({"causal": True}, shapes=[["N", 3, 4]] * 3 + [["N", 3]], dtypes=MASKED)],
    "multi_head_attention": [Case({"num_heads": 2}, shapes=[["N", 3, 4]]),
                             Case({"num_heads": 2}, shapes=[["N", 3, 4]] * 3 + [["N", 3]], dtypes=MASKED),
                             Case({"num_heads": 2}, shapes=[["N", 3, 4], None, None, ["N", 3]],
                                  dtypes=tuple(("float32", m) for m in DTYPES))],
    "positional_encoding": [Case(shapes=[["N", 3, 4]])],
    "gcn_conv": [Case({"out_features": 2}, shapes=[[4, 3], [4, 4]])],
    "gat_conv": [Case({"out_features": 2, "heads": 2}, shapes=[[4, 3], [4, 4]])],
    "graph_aggregate": [Case({"reduce": r}, shapes=[[4, 3], [4, 4]]) for r in ("sum", "mean", "max")],
    "reparameterize": [Case(shapes=XX)],
    "kl_normal": [Case(shapes=XX)],
    "cosine_similarity": [Case(shapes=XX)],
    "pairwise_distance": [Case(shapes=XX)],
    "mse_loss": [Case(shapes=XX)],
    "l1_loss": [Case(shapes=XX)],
    "cross_entropy": [Case(shapes=[["N", 3], ["N"]]), Case(shapes=XX, kinds={1: "prob"})],
    "nll_loss": [Case(shapes=[["N", 3], ["N"]])],
    "bce_loss": [Case(shapes=XX, kinds={0: "prob", 1: "prob"})],
    "bce_with_logits": [Case(shapes=XX, kinds={1: "prob"})],
}
MORE = {                                      # attribute variants that take other kernel paths
    "cross_entropy": [Case({"label_smoothing": 0.1, "reduction": "none"}, shapes=[["N", 3], ["N"]])],
    "nll_loss": [Case({"reduction": "sum"}, shapes=[["N", 3], ["N"]])],
    "embedding": [Case({"num_embeddings": 4, "embedding_dim": 2, "padding_idx": 1})],
    "layer_norm": [Case({"elementwise_affine": False}), Case({"normalized_shape": [2, 3]}, shapes=[["N", 2, 3]])],
    "batch_norm": [Case({"affine": False}, shapes=IMG)],
    "conv2d": [Case({"out_channels": 4, "kernel_size": 3, "groups": 2, "stride": 2, "dilation": 1}, shapes=IMG)],
    "max_pool2d": [Case({"kernel_size": 3, "stride": 2, "ceil_mode": True, "padding": 1}, shapes=IMG)],
    "avg_pool2d": [Case({"kernel_size": 3, "stride": 2, "padding": 1, "count_include_pad": False}, shapes=IMG)],
    "gat_conv": [Case({"out_features": 2, "heads": 2, "concat": False}, shapes=[["N", 4, 3], [4, 4]])],
    "gcn_conv": [Case({"out_features": 2, "normalize": False, "add_self_loops": False},
                      shapes=[["N", 4, 3], ["N", 4, 4]])],
    "softmax": [Case({"temperature": 2.0, "dim": 0})],
    "lstm": [Case({"hidden_size": 3, "num_layers": 2, "bidirectional": True, "batch_first": False},
                  shapes=[[3, "N", 2], [4, "N", 3], [4, "N", 3]])],
    "gru": [Case({"hidden_size": 3, "bidirectional": True}, shapes=SEQ)],
    "rnn": [Case({"hidden_size": 3, "nonlinearity": "relu"}, shapes=SEQ)],
    "multi_head_attention": [Case({"num_heads": 2, "causal": True, "bias": False}, shapes=[["N", 3, 4]])],
    "mean": [Case({"dim": [0, 1], "keepdim": True})],
    "max": [Case({"dim": -1, "keepdim": True})],
    "split": [Case({"sections": [1, 3], "dim": -1}, shapes=[["N", 4]])],
    "kl_normal": [Case({"reduction": "none"}, shapes=XX)],
}
EDGES = {                                     # shapes at the edges: odd sizes, other symbols, 1-D operands
    "conv2d": [Case({"out_channels": 2, "kernel_size": 2, "padding": "same", "dilation": 2}, shapes=[["N", 2, 5, 4]]),
               Case({"out_channels": 2, "kernel_size": [1, 3], "stride": [2, 1], "padding": [0, 1]}, shapes=IMG)],
    "conv_transpose2d": [Case({"out_channels": 2, "kernel_size": 2, "stride": 2, "output_size": [7, 7]},
                              shapes=[["N", 2, 3, 3]])],
    "adaptive_avg_pool2d": [Case({"output_size": [7, None]}, shapes=[["N", 1, 5, 5]])],
    "rnn": [Case({"hidden_size": 2, "bias": False, "batch_first": False}, shapes=[["T", "N", 3]])],
    "scaled_dot_product_attention": [Case({"scale": 0.5, "causal": True}, shapes=[["N", 3, 4], ["N", 5, 4], ["N", 5, 2]]),
                                     Case(shapes=[["N", 2, 3, 4], ["N", 2, 5, 4], ["N", 2, 5, 4], ["N", 5]],
                                          dtypes=MASKED)],
    "positional_encoding": [Case(shapes=[["N", "T", 5]])],
    "one_hot": [Case({"num_classes": 5}, shapes=[["N", "T"]])],
    "cross_entropy": [Case(shapes=[["N", 3, 4], ["N", 4]])],
    "matmul": [Case(shapes=[[3], [3]]), Case(shapes=[["N", 2, 3], [3]]), Case(shapes=[[3], ["N", 3, 2]])],
    "squeeze": [Case(shapes=[[1, "N", 1]])],
}
for _name, _op in ops.OPS.items():            # an op not listed above: the test cases of its record
    CASES.setdefault(_name, [Case(c.attrs, shapes=[None if i is None else ["N", *i.shape[1:]] for i in c.ins()])
                             for c in _op.cases])
for _more in (MORE, EDGES):
    for _name, _cases in _more.items():
        CASES[_name] += _cases
ELEMENTWISE = ("relu", "leaky_relu", "sigmoid", "tanh", "sign", "step", "silu", "softplus", "gelu", "elu")
for _name in ELEMENTWISE:
    CASES[_name] = [Case(), Case(shapes=[[]])]          # rank 0 too: the output of `mean`, say
CASES["prelu"].append(Case(shapes=[[]]))
for _name, _cases in CASES.items():           # every one-input use on a scalar too: refused or run, never a crash
    _cases += [Case(c.attrs, shapes=[[]]) for c in list(_cases) if len(c.shapes) == 1 and c.shapes[0]
               and _name != "expand"]                  # expand to [N, 3]: N bound by no input
CASES["expand"].append(Case({"shape": [2, 3]}, shapes=[[]]))
for _cases in CASES.values():                 # two scalars for the elementwise pairs (add, mse_loss, ...)
    _cases += [Case(c.attrs, shapes=[[], []], kinds=c.kinds) for c in list(_cases) if c.shapes == XX]


def test_every_catalogue_op_has_a_case():
    assert sorted(CASES) == sorted(ALL_OPS)


def _combos(case: Case):
    given = [i for i, s in enumerate(case.shapes) if s is not None]
    if case.dtypes is not None:
        return [dict(zip(given, c, strict=True)) for c in case.dtypes]
    return [dict(zip(given, c)) for c in itertools.product(DTYPES, repeat=len(given))]


def _spec(name: str, case: Case, dtypes: dict[int, str]) -> str:
    """The spec text: one input per given shape (with its dtype), the op, and every port as an output."""
    opdef = ops.OPS[name]
    names = [opdef.inputs[min(i, len(opdef.inputs) - 1)] + (str(i) if opdef.variadic else "")
             for i in range(len(case.shapes))]
    decl = {f"in_{names[i]}": {"shape": case.shapes[i], "dtype": dt} for i, dt in dtypes.items()}
    ins = [f"in_{names[i]}" if s is not None else None for i, s in enumerate(case.shapes)]
    wiring = {"in": ins} if ins else {}
    layer = {"op": name, "name": "node", **wiring, **case.attrs}
    outs = ["node" if k == 0 else f"node:{p}" for k, p in enumerate(opdef.ports)]
    return json.dumps({"name": "t", "inputs": decl, "layers": [layer], "outputs": outs})


def _value(shape, dtype: str, kind: str | None, rng) -> np.ndarray:
    shape = tuple(_size(d) for d in shape)
    if dtype == "bool":
        return np.asarray(rng.random(shape) < 0.5)
    if dtype == "int64":
        return rng.integers(1, 3, shape).astype(np.int64)   # 1 or 2: valid indices and divisors
    if kind == "prob":
        return rng.uniform(0.05, 0.95, shape).astype(np.float32)
    return rng.uniform(-1, 1, shape).astype(np.float32)


def _size(d) -> int:
    return d if isinstance(d, int) else N if d == "N" else 3


def _concrete(t) -> tuple[int, ...]:
    return tuple(_size(d) for d in t.shape)


def _check_one(name: str, case: Case, dtypes: dict[int, str]) -> str | None:
    """None when all is well, else what went wrong."""
    import runtime
    from runtime.tensor import Tensor

    try:
        graph = compiler.compile_text(_spec(name, case, dtypes))
    except SpecError as e:
        assert e.diagnostics and all(d.loc for d in e.diagnostics), f"a refusal without a position: {e}"
        return None                                         # refused by check: fine, said why
    rng = np.random.default_rng(0)
    feeds = {k: _value(t.shape, t.dtype, case.kinds.get(i), rng)
             for i, (k, t) in zip(dtypes, graph.inputs.items())}
    model = runtime.Model(graph, seed=0)
    try:
        tensors = {k: Tensor(v, requires_grad=v.dtype.kind == "f") for k, v in feeds.items()}
        res = model.forward(**tensors)
        for o, t in graph.outputs.items():
            got = res[o].data
            if got.shape != _concrete(t) or str(got.dtype) != t.dtype:
                return f"{o}: check says {t} {t.dtype}, the runtime gives {list(got.shape)} {got.dtype}"
        why = _backward_from_each_output(model, graph, tensors, res)
        if why:
            return why
    except Exception as e:                                  # noqa: BLE001 - the finding itself
        return f"runtime: {type(e).__name__}: {e}"
    opdef = ops.OPS[name]
    if opdef.loss or opdef.training_only:
        return None
    return _onnx_agrees(graph, model, feeds)


def _backward_from_each_output(model, graph, tensors: dict, res: dict) -> str | None:
    """backward() from every float output in turn (a fresh pass each): gradients of the inputs and
    parameters come back with their shapes and dtypes."""
    from runtime.tensor import Tensor
    for o in [o for o in graph.outputs if res[o].data.dtype.kind == "f" and res[o].tracked]:
        model.zero_grad()
        ins = {k: Tensor(t.data, requires_grad=t.requires_grad) for k, t in tensors.items()}
        out = model.forward(**ins)[o]
        out.backward(np.ones_like(out.data))
        grads = [(f"input {k}", t.data, t.grad) for k, t in ins.items()]
        grads += [(f"parameter {k}", t.data, t.grad) for k, t in model.parameters().items()]
        for what, value, g in grads:
            if g is not None and (g.shape != value.shape or g.dtype != value.dtype):
                return f"backward from {o}: the gradient of {what} is {list(g.shape)} {g.dtype}, " \
                       f"not {list(value.shape)} {value.dtype}"
    return None


def _onnx_agrees(graph, model, feeds) -> str | None:
    import onnxruntime as ort
    try:
        proto = compiler.to_onnx(graph, weights=model.state_dict())
    except Exception as e:                                  # noqa: BLE001
        return f"export: {type(e).__name__}: {e}"
    model.eval()
    want = model(**feeds)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    got = sess.run(None, {i.name: feeds[i.name] for i in sess.get_inputs()})
    for nm, g in zip(names, got):
        w = want[nm]
        if g.shape != w.shape or g.dtype != w.dtype:
            return f"onnxruntime gives {nm} {list(g.shape)} {g.dtype}, the runtime {list(w.shape)} {w.dtype}"
        if not np.allclose(g, w, rtol=1e-4, atol=1e-5, equal_nan=True):
            return f"onnxruntime and the runtime disagree on {nm} (max diff {np.max(np.abs(g - w))})"
    return None


@pytest.mark.parametrize("name", sorted(CASES))
def test_check_means_runs(name):
    problems = []
    for case in CASES[name]:
        for dtypes in _combos(case):
            with np.errstate(all="ignore"):                 # 0/0 with bool and int divisors
                why = _check_one(name, case, dtypes)
            if why:
                problems.append(f"{name} {case.attrs} {[dtypes.get(i) for i in range(len(case.shapes))]} "
                                f"{case.shapes}: {why}")
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------- the cases, by name

def _refusal(text: str) -> str:
    with pytest.raises(SpecError) as e:
        compiler.compile_text(text)
    d = e.value.diagnostics[0]
    assert d.loc is not None and d.loc.line == 4, e.value.render()      # at the node's line
    return e.value.render()


def _one(op: str, inputs: str, wiring: str, attrs: str = "") -> str:
    return f"name: t\ninputs: {{{inputs}}}\nlayers:\n  - {{op: {op}, name: n, in: {wiring}{attrs}}}\noutputs: [n]\n"


BOOL = "b: {shape: [4, 4], dtype: bool}"
INTS = "i: {shape: [4, 4], dtype: int64}"


@pytest.mark.parametrize("op, inputs, wiring, attrs, words", [
    ("sub", BOOL, "[b, b]", "", "cannot subtract two bool tensors"),
    ("matmul", BOOL, "[b, b]", "", "cannot multiply two bool tensors"),
    ("linear", BOOL, "b", ", out_features: 3", "needs a floating-point input, but 'b' has dtype bool"),
    ("linear", INTS, "i", ", out_features: 3", "'i' has dtype int64"),
    ("gcn_conv", BOOL + ", a: [4, 4]", "[b, a]", ", out_features: 3", "floating-point x, but 'b' has dtype bool"),
    ("gat_conv", INTS + ", a: [4, 4]", "[i, a]", ", out_features: 3", "floating-point x, but 'i' has dtype int64"),
    ("scaled_dot_product_attention", BOOL + ", q: [4, 4]", "[q, b, q]", "", "floating-point k"),
    ("multi_head_attention", "q: {shape: [2, 4, 4], dtype: bool}", "q", ", num_heads: 2", "floating-point query"),
    ("lstm", "x: [2, 3, 4], h: {shape: [1, 2, 5], dtype: int64}", "[x, h]", ", hidden_size: 5", "floating-point h0"),
    ("positional_encoding", "x: {shape: [2, 3, 4], dtype: int64}", "x", "", "floating-point input"),
])
def test_dtypes_a_kernel_cannot_take_are_refused_at_the_node(op, inputs, wiring, attrs, words):
    assert words in _refusal(_one(op, inputs, wiring, attrs))


def test_bool_arithmetic_gives_what_the_runtime_and_onnxruntime_give():
    """bool + bool is or, bool * bool is and, bool + int64 or + value is int64, sum of bool counts (int64)."""
    import runtime
    for op, other, dtype in (("add", "[b, c]", "bool"), ("mul", "[b, c]", "bool"), ("add", "[b, i]", "int64"),
                             ("mul", "b", "int64"), ("sum", "b", "int64")):
        attrs = ", value: 3" if other == "b" and op == "mul" else ""
        g = compiler.compile_text(_one(op, "b: {shape: [2], dtype: bool}, c: {shape: [2], dtype: bool}, "
                                           "i: {shape: [2], dtype: int64}", other, attrs))
        assert g.outputs["n"].dtype == dtype, (op, other)
        feeds = {"b": np.array([True, False]), "c": np.array([True, True]), "i": np.array([5, 7])}
        feeds = {k: v for k, v in feeds.items() if k in g.inputs and f"{k}" in other}
        got = runtime.Model(g)(**feeds)["n"]
        assert str(got.dtype) == dtype
        want = {("add", "[b, c]"): [True, True], ("mul", "[b, c]"): [True, False], ("add", "[b, i]"): [6, 7],
                ("mul", "b"): [3, 0], ("sum", "b"): 1}[(op, other)]
        np.testing.assert_array_equal(got, want)
        assert _onnx_agrees(g, runtime.Model(g), feeds) is None


def test_activations_run_on_the_scalar_output_of_mean():
    """The issue's case: sigmoid & co. on a rank-0 tensor ran into NumPy scalars ("return arrays must be of
    ArrayType"); values and gradients are those of the same activation on a 1-element vector."""
    import runtime
    from runtime.tensor import Tensor
    for act in ELEMENTWISE + ("prelu", "softmax", "log_softmax"):
        g = compiler.compile_text(_one(act, "x: [N, 3]", "m") .replace(
            "layers:\n", "layers:\n  - {op: mean, name: m, in: x}\n"))
        x = Tensor(np.array([[0.3, -1.2, 0.5], [2.0, -0.1, 0.4]], np.float32), requires_grad=True)
        y = runtime.Model(g).forward(x=x)["n"]
        assert y.data.shape == () and y.data.dtype == np.float32, act
        y.backward()
        vec = compiler.compile_text(_one(act, "x: [1]", "x"))
        ref = Tensor(np.array([x.data.mean()], np.float32), requires_grad=True)
        r = runtime.Model(vec).forward(x=ref)["n"]
        r.backward(np.ones(1, np.float32))
        np.testing.assert_allclose(y.data, r.data[0], rtol=1e-6, err_msg=act)
        np.testing.assert_allclose(x.grad, np.full((2, 3), ref.grad[0] / 6), rtol=1e-5, err_msg=act)


@pytest.mark.parametrize("inputs, layer, feeds, words", [
    ("x: [V, 3], adj: [4, 4]", "{op: gcn_conv, name: g, in: [x, adj], out_features: 2}",
     {"x": (5, 3), "adj": (4, 4)}, ["node 'g' (gcn_conv)", "V=5", "x has 5 nodes", "'x' [5, 3], 'adj' [4, 4]"]),
])
def test_a_symbol_the_data_sizes_against_a_fixed_dim_gets_the_rules_message(inputs, layer, feeds, words):
    """A symbol check could not tie to a number (V against adj's 4) used to fail in NumPy's words at run time."""
    import runtime
    from compiler.errors import UserError
    g = compiler.compile_text(f"name: t\ninputs: {{{inputs}}}\nlayers:\n  - {layer}\n")
    with pytest.raises(UserError) as e:
        runtime.Model(g)(**{k: np.ones(s, np.float32) for k, s in feeds.items()})
    for w in words:
        assert w in e.value.message
    assert "broadcast" not in e.value.message and "operand" not in e.value.message


@pytest.mark.parametrize("inputs, layer", [
    ("x: [3, 3, 2], adj: [N, 3]", "{op: graph_aggregate, name: g, in: [x, adj]}"),
    ("x: [B, 4, 2], adj: [B, V, 4]", "{op: gat_conv, name: g, in: [x, adj], out_features: 3}"),
    ("x: [V, 2], adj: [V, W]", "{op: gcn_conv, name: g, in: [x, adj], out_features: 3}"),
    ("q: [N, T, 4], k: [N, 3, 4]", "{op: scaled_dot_product_attention, name: g, in: [q, k, q]}"),
    ("q: [N, T, 4], k: [N, S, 4]", "{op: multi_head_attention, name: g, in: [q, k, q], embed_dim: 4, num_heads: 2}"),
])
def test_sizes_equal_only_by_luck_are_refused_by_check(inputs, layer):
    """An adjacency [N, 3] or [V, W], or values [N, T, 4] for keys [N, 3, 4], fit only if the data makes them:
    check says so, at the layer (they passed check and failed at run time for any other size,
    tools/fuzz.py's most common finding)."""
    from compiler.errors import SpecError
    with pytest.raises(SpecError) as e:
        compiler.compile_text(f"name: t\ninputs: {{{inputs}}}\nlayers:\n  - {layer}\n")
    assert ("square adjacency" in str(e.value) or "as many values as keys" in str(e.value))
    assert "would have to be equal at run time" in str(e.value)
    assert ":4:" in str(e.value)                                        # at the layer's line


def test_the_same_message_when_onnxruntime_runs_the_spec(tmp_path, capsys):
    """`run --backend onnxruntime`: onnxruntime's own words ("Attempting to broadcast an axis ...", and a raw
    coloured log line) gave way to the NumPy runtime's diagnosis of the same inputs."""
    import runtime
    from cli.main import main
    spec = tmp_path / "g.yaml"
    spec.write_text("name: g\ninputs: {x: [V, 3], adj: [4, 4]}\nlayers:\n"
                    "  - {op: gcn_conv, name: g, in: [x, adj], out_features: 2}\n")
    runtime.save(runtime.Model(compiler.compile_file(spec)), tmp_path / "w.npz")
    np.save(tmp_path / "x.npy", np.ones((5, 3), np.float32))
    np.save(tmp_path / "adj.npy", np.ones((4, 4), np.float32))
    code = main(["run", str(spec), "--weights", str(tmp_path / "w.npz"), "--input", f"x={tmp_path / 'x.npy'}",
                 "--input", f"adj={tmp_path / 'adj.npy'}", "--backend", "onnxruntime"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("error: node 'g' (gcn_conv) cannot run on the sizes the inputs gave (V=5): x has 5 nodes")
    assert "onnxruntime" not in err.lower() and "\x1b[" not in err
