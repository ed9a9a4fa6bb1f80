"""Export a typed Graph to a standard ONNX ModelProto.

    proto = to_onnx(graph, weights=state_dict, opset=18, outputs=["logits"])

What the export does, in order:
1. resolve the requested outputs (public output names, or node references `node` / `node:port`,
   as runtime.Model accepts them) and prune the graph to what they need. Losses and training-only
   nodes are never exported; without `outputs`, spec outputs that need them are left out.
   `identity`, `detach`, `dropout` and `reparameterize` are the identity of one input in eval mode,
   so they produce no ONNX node at all (and `reparameterize`'s `logvar` branch is pruned).
2. graph inputs typed as the spec declares them (symbols as `dim_param`), initialisers named as
   state_dict keys, every spec node lowered in topological order by its registered lowering.
3. graph hygiene: Identity nodes removed, values renamed after the spec (graph outputs carry their
   public names, a node's value its node reference: `fc1`, `lstm:h`), dead nodes and unused
   initialisers dropped, value_info from specc's shapes, metadata_props (spec name, specc version,
   sha256 of the expanded spec), the lowest IR version the opset allows.
4. `onnx.checker.check_model(full_check=True)`: with value_info present, this also makes ONNX's
   shape inference agree with specc's shapes.

`weights` is a {state_dict name: array} mapping, an object with `.state_dict()` (a runtime.Model),
or None: fresh parameters drawn as runtime.Model(graph, seed=train.seed) draws them (compiler/init.py; the
compiler never imports the runtime).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import numpy as np
import onnx
from onnx import helper

from ..errors import UserError, did_you_mean
from ..init import initial_state
from ..weights_convert import positional_hint
from ..ir import Graph, Node, Ref, TensorType
from ..ops.registry import OPS
from . import LOWERINGS
from .registry import DTYPES, Builder

MIN_OPSET = 17
DEFAULT_OPSET = 18
# ops that are the identity of one input in an inference graph: input index they pass through
PASSTHROUGH = {"identity": 0, "detach": 0, "dropout": 0, "reparameterize": 0}
NP_DTYPES = {"float32": np.float32, "float64": np.float64, "int64": np.int64, "bool": np.bool_}

Key = tuple[str, "str | None"]                 # (node or input, port) with None for the default port


class ExportError(UserError):
    """The graph cannot be exported as asked (an output needs a loss, a lowering failed...)."""


class NoLoweringError(ExportError):
    def __init__(self, node: Node):
        super().__init__(f"op '{node.op}' (node '{node.name}') has no ONNX lowering yet",
                         hint="export an output that does not need it (--output), or add the lowering "
                              "in compiler/onnx/")
        self.op, self.node = node.op, node.name


class WeightsError(UserError):
    """The weights do not fit the spec; every missing, unexpected and mis-shaped key is listed."""


# --------------------------------------------------------------------------------------- opsets

@functools.lru_cache(maxsize=None)
def max_opset() -> int:
    """The newest opset that both the installed onnx and onnxruntime support."""
    top = onnx.defs.onnx_opset_version()
    try:
        import onnxruntime  # noqa: F401
    except ImportError:                               # export alone does not need onnxruntime
        return top
    for version in range(top, MIN_OPSET - 1, -1):
        if _runtime_accepts(version):
            return version
    return MIN_OPSET


def _runtime_accepts(version: int) -> bool:
    """Whether onnxruntime loads and runs a model stamped with `version` (ops at their newest versions)."""
    import onnxruntime as ort
    from onnx import TensorProto
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [6])
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[1, 0]),
             helper.make_node("Cast", ["t"], ["c"], to=TensorProto.FLOAT),
             helper.make_node("Reshape", ["c", "shape"], ["y"])]
    init = [onnx.numpy_helper.from_array(np.asarray([6], np.int64), "shape")]
    m = helper.make_model(helper.make_graph(nodes, "probe", [x], [y], init),
                          opset_imports=[helper.make_opsetid("", version)])
    m.ir_version = helper.find_min_ir_version_for(list(m.opset_import))
    so = ort.SessionOptions()
    so.log_severity_level = 4
    try:
        s = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
        s.run(None, {"x": np.zeros((2, 3), np.float32)})
        return True
    except Exception:
        return False


def check_opset(opset: Any) -> int:
    top = max_opset()
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)) or not MIN_OPSET <= opset <= top:
        raise UserError(f"opset {opset} is not supported: specc exports opsets {MIN_OPSET} to {top}",
                        hint=f"{top} is the newest that the installed onnx {onnx.__version__} and "
                             "onnxruntime both support; the default is 18", code=2)
    return int(opset)


# ------------------------------------------------------------------------------------- outputs

def _key(graph: Graph, ref: Ref) -> Key:
    if ref.port is None or not graph.has_node(ref.node):
        return (ref.node, None)
    first = next(iter(graph.node(ref.node).outputs))
    return (ref.node, None if ref.port == first else ref.port)


def ref_text(key: Key) -> str:
    return key[0] if key[1] is None else f"{key[0]}:{key[1]}"


def resolve(graph: Graph, name: str) -> Ref:
    """A public output name, a graph input, a node reference (`node`, `node:port`) or a block instance."""
    return graph.ref_of(name, ExportError, code=2)


def _pruned_by(graph: Graph, ref: Ref) -> Node | None:
    """The first loss or training-only node that computing `ref` needs, if any."""
    seen: set[str] = set()
    stack = [ref.node]
    while stack:
        name = stack.pop()
        if name in seen or not graph.has_node(name):
            continue
        seen.add(name)
        n = graph.node(name)
        opdef = OPS.get(n.op)
        if opdef is not None and (opdef.loss or opdef.training_only):
            return n
        stack.extend(_needed_inputs(graph, n))
    return None


def _passes_through(graph: Graph, n: Node) -> bool:
    """The node is its input in an inference graph (reparameterize only when mu needs no broadcast to
    logvar's shape: otherwise its lowering expands mu)."""
    if n.op not in PASSTHROUGH:
        return False
    r = n.inputs[PASSTHROUGH[n.op]]
    return n.op != "reparameterize" or r is None or tuple(graph.type_of(r).shape) == tuple(n.out.shape)


def _needed_inputs(graph: Graph, n: Node) -> list[str]:
    if _passes_through(graph, n):
        r = n.inputs[PASSTHROUGH[n.op]]
        return [] if r is None else [r.node]
    return [r.node for r in n.inputs if r is not None]


def select_outputs(graph: Graph, outputs: Iterable[str] | None) -> dict[str, Ref]:
    """Public name -> reference of what to export; refuses outputs that need a loss or training-only node."""
    if outputs:
        chosen: dict[str, Ref] = {}
        for name in outputs:
            ref = resolve(graph, name)
            bad = _pruned_by(graph, ref)
            if bad is not None:
                what = "a loss" if OPS[bad.op].loss else "a training-only op"
                raise ExportError(f"output '{name}' needs node '{bad.name}' ({bad.op}), {what}; "
                                  "an exported graph holds inference nodes only",
                                  hint="losses are computed by `specc train`/`specc eval`", code=2)
            chosen.setdefault(name, ref)
        return chosen
    chosen = {k: r for k, r in graph.output_refs.items() if _pruned_by(graph, r) is None}
    if not chosen:
        raise ExportError(f"nothing to export: every output of '{graph.name}' needs a loss or a "
                          "training-only node", hint="name an inference node with --output", code=2)
    return chosen


# ------------------------------------------------------------------------------------- weights

def fresh_weights(graph: Graph, seed: int | None = None) -> dict[str, np.ndarray]:
    """Parameters as runtime.Model(graph, seed) initialises them (seed: the spec's train.seed, else 0), drawn
    by compiler/init.py. Unlike runtime.Model, nothing checks first that they fit in memory: `specc compile`
    does (runtime.memory.guard_params) before it calls this."""
    if seed is None:
        seed = getattr(graph.train, "seed", 0) or 0
    return initial_state(graph, seed)


def check_weights(graph: Graph, weights: Any) -> dict[str, np.ndarray]:
    """The weights as arrays of the spec's dtypes; WeightsError listing every problem otherwise."""
    if hasattr(weights, "state_dict") and callable(weights.state_dict):
        weights = weights.state_dict()
    if not isinstance(weights, Mapping):
        raise WeightsError(f"weights must be a mapping of state_dict names to arrays, got {type(weights).__name__}")
    params = graph.params()
    missing = [k for k in params if k not in weights]
    unexpected = [k for k in weights if k not in params]
    bad_shape, bad_type = [], []
    out: dict[str, np.ndarray] = {}
    for k, (spec, _) in params.items():
        if k not in weights:
            continue
        try:
            arr = np.asarray(weights[k])
        except Exception:                                            # noqa: BLE001 - anything unreadable
            bad_type.append(f"{k} ({type(weights[k]).__name__})")
            continue
        if arr.dtype.kind not in "fiub":
            bad_type.append(f"{k} (dtype {arr.dtype})")
            continue
        if tuple(arr.shape) != tuple(spec.shape):
            bad_shape.append(f"{k}: weights {list(arr.shape)}, spec {list(spec.shape)}")
            continue
        out[k] = np.asarray(arr, dtype=NP_DTYPES.get(spec.dtype, np.float32), order="C")   # keeps 0-d
    problems = []
    if missing:
        problems.append("missing: " + ", ".join(missing))
    if unexpected:
        seq = positional_hint(unexpected)
        problems.append("unexpected: " + ", ".join(
            f"{k} ({h})" if not seq and (h := did_you_mean(k, missing, n=1)) else k for k in unexpected))
    if bad_shape:
        problems.append("mis-shaped: " + "; ".join(bad_shape))
    if bad_type:
        problems.append("not numeric: " + ", ".join(bad_type))
    if problems:
        raise WeightsError(f"the weights do not fit spec '{graph.name}':\n  " + "\n  ".join(problems),
                           hint=positional_hint(unexpected)
                           or "check that the checkpoint was made from this spec with the same params (--set)")
    return out


# -------------------------------------------------------------------------------------- export

@dataclass
class Export:
    model: onnx.ModelProto
    outputs: dict[str, Ref]                           # graph output name -> reference it computes
    values: dict[str, str] = field(default_factory=dict)          # spec value ("fc1", "lstm:h") -> ONNX name
    types: dict[str, TensorType] = field(default_factory=dict)    # spec value -> specc's type
    nodes: list[Node] = field(default_factory=list)               # spec nodes exported, topological


def to_onnx(graph: Graph, weights: Any = None, opset: int = DEFAULT_OPSET,
            outputs: list[str] | None = None, optimize: bool = True) -> onnx.ModelProto:
    """Export the inference graph to an onnx.ModelProto (see the module docstring)."""
    return export(graph, weights, opset, outputs, optimize=optimize).model


def export(graph: Graph, weights: Any = None, opset: int = DEFAULT_OPSET, outputs: Iterable[str] | None = None,
           *, expose_all: bool = False, check: bool = True, optimize: bool = True) -> Export:
    """The ModelProto and the map from spec values to ONNX value names.

    expose_all: every value a spec node computes becomes a graph output too (for finding the first
    node whose values differ between onnxruntime and the NumPy runtime).
    optimize (default): fold what depends on parameters only (weight transposes, RNN gate
    reordering) into initialisers, and batch norms into the Conv/ConvTranspose/Gemm before them, as
    torch.onnx.export does: no node computes on weights at run time. A parameter used as it is keeps
    its state_dict name; a derived tensor is named after its sources (`fc.weight:Transpose`,
    `conv1.weight+bn1`). optimize=False keeps every parameter as its state_dict tensor.
    """
    opset = check_opset(opset)
    chosen = select_outputs(graph, list(outputs) if outputs else None)
    state = check_weights(graph, fresh_weights(graph) if weights is None else weights)

    # -- prune: the nodes and graph inputs the outputs need
    need: set[str] = set()
    stack = [r.node for r in chosen.values()]
    while stack:
        name = stack.pop()
        if name not in need:
            need.add(name)
            if graph.has_node(name):
                stack.extend(_needed_inputs(graph, graph.node(name)))
    nodes = [n for n in graph.nodes if n.name in need]
    inputs = {k: t for k, t in graph.inputs.items() if k in need and not graph.has_node(k)}

    b = Builder(opset)
    for name, t in inputs.items():
        b.reserve(name)
        for axis, d in enumerate(t.shape):
            if isinstance(d, str):
                b.symbols.setdefault(d, (name, axis))
    for n in nodes:
        for ps in n.params:
            pname = n.param_name(ps)
            if pname not in b._names:
                b.add_initializer(pname, state[pname])

    # -- lower every node in topological order
    values: dict[Key, str] = {(k, None): k for k in inputs}
    types: dict[Key, TensorType] = {(k, None): t for k, t in inputs.items()}
    for n in nodes:
        if _passes_through(graph, n):
            r = n.inputs[PASSTHROUGH[n.op]]
            values[(n.name, None)] = values[_key(graph, r)]
            types[(n.name, None)] = n.out
            continue
        fn = LOWERINGS.get(n.op)
        if fn is None:
            raise NoLoweringError(n)
        x: list[str | None] = []
        for r in n.inputs:
            if r is None:
                x.append(None)
            elif _key(graph, r) not in values:
                raise ExportError(f"node '{n.name}' ({n.op}) reads '{r}', which its lowering did not produce",
                                  hint="a bug in the lowering of " + graph.node(r.node).op)
            else:
                x.append(values[_key(graph, r)])
        b.scope = n.name
        b.ins = [None if r is None else graph.type_of(r) for r in n.inputs]
        try:
            res = fn(b, n, x, [n.param_name(ps) for ps in n.params])
        except UserError:
            raise
        except KeyError as e:
            if e.args and isinstance(e.args[0], str) and e.args[0].startswith("symbol"):
                raise ExportError(f"node '{n.name}' ({n.op}) needs the run-time size of a dimension: {e.args[0]}",
                                  hint="export outputs whose graph inputs carry that symbol") from e
            raise ExportError(f"the lowering of node '{n.name}' ({n.op}) failed: KeyError: {e}") from e
        except Exception as e:                                       # noqa: BLE001 - never a traceback
            raise ExportError(f"the lowering of node '{n.name}' ({n.op}) failed: {type(e).__name__}: {e}") from e
        finally:
            b.scope = ""
        res = [res] if isinstance(res, str) or res is None else list(res)
        ports = list(n.outputs)
        if len(res) > len(ports):
            raise ExportError(f"the lowering of '{n.op}' returned {len(res)} values for {len(ports)} ports")
        for i, (port, v) in enumerate(zip(ports, res)):
            if v is not None:
                values[(n.name, None if i == 0 else port)] = v
                types[(n.name, None if i == 0 else port)] = n.outputs[port]

    publics: list[tuple[str, Key]] = []
    for name, r in chosen.items():
        k = _key(graph, r)
        if k not in values:
            raise ExportError(f"output '{name}': the lowering of '{graph.node(r.node).op}' did not produce "
                              f"port '{r.port}'")
        publics.append((name, k))

    model, names = _assemble(graph, b, inputs, values, types, publics, opset, expose_all)
    from .defaults import make_defaults_explicit
    make_defaults_explicit(model)                       # converters differ on some defaults (CumSum's reverse)
    if optimize:
        optimize_graph(model, set(graph.params()))
    if check:
        try:
            onnx.checker.check_model(model, full_check=True)
        except Exception as e:                                       # noqa: BLE001
            raise ExportError("the exported graph fails ONNX's checker: " + str(e).strip().splitlines()[0][:2000],
                              hint="a lowering produced an invalid node or a shape that disagrees with specc's "
                                   "(the node name says which spec node)") from e
    out_refs = {p: Ref(k[0], k[1]) for p, k in publics}
    if expose_all:
        out_refs.update({names[k]: Ref(k[0], k[1]) for k in values if k[0] not in inputs and names[k] in
                         {o.name for o in model.graph.output} and names[k] not in out_refs})
    mg = model.graph
    present = ({o for nd in mg.node for o in nd.output} | {i.name for i in mg.input}
               | {t.name for t in mg.initializer})
    kept = {k: names[k] for k in values if names[k] in present}       # values the final graph holds
    return Export(model, out_refs, {ref_text(k): v for k, v in kept.items()},
                  {ref_text(k): types[k] for k in kept}, nodes)


def _subgraph_inputs(node: onnx.NodeProto) -> Iterable[str]:
    for a in node.attribute:
        for g in ([a.g] if a.type == onnx.AttributeProto.GRAPH else
                  list(a.graphs) if a.type == onnx.AttributeProto.GRAPHS else []):
            for inner in g.node:
                yield from inner.input
                yield from _subgraph_inputs(inner)


def _rename_inputs(node: onnx.NodeProto, sub: Any) -> None:
    new = [sub(i) if i else i for i in node.input]
    del node.input[:]
    node.input.extend(new)
    for a in node.attribute:
        for g in ([a.g] if a.type == onnx.AttributeProto.GRAPH else
                  list(a.graphs) if a.type == onnx.AttributeProto.GRAPHS else []):
            for inner in g.node:
                _rename_inputs(inner, sub)


def _drop_unread_outputs(node: onnx.NodeProto, live: set[str], opset: int) -> None:
    """Drop the trailing optional outputs nobody reads (an LSTM's Y_c when only Y and Y_h are used). A
    leading one (Y when only Y_h is read) keeps its name: a blank output before a named one trips tools
    that give every output a value_info (onnxsim)."""
    if len(node.output) < 2 or node.domain not in ("", "ai.onnx"):
        return
    try:
        schema = onnx.defs.get_schema(node.op_type, opset)
    except Exception:                                                # noqa: BLE001 - unknown op: leave it
        return
    formal = list(schema.outputs)
    optional = onnx.defs.OpSchema.FormalParameterOption.Optional
    outs = list(node.output)
    while outs and (outs[-1] == "" or (outs[-1] not in live and len(outs) - 1 < len(formal)
                                       and formal[len(outs) - 1].option == optional)):
        outs.pop()
    if outs != list(node.output) and any(outs):
        del node.output[:]
        node.output.extend(outs)


def _value_info(name: str, t: TensorType) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, DTYPES[t.dtype], list(t.shape))


def _assemble(graph: Graph, b: Builder, inputs: dict[str, TensorType], values: dict[Key, str],
              types: dict[Key, TensorType], publics: list[tuple[str, Key]], opset: int,
              expose_all: bool) -> tuple[onnx.ModelProto, dict[Key, str]]:
    from .. import __version__

    # 1. Identity nodes go: their consumers read the Identity's input instead
    alias: dict[str, str] = {}
    kept: list[onnx.NodeProto] = []
    for nd in b.nodes:
        if nd.op_type == "Identity" and nd.domain in ("", "ai.onnx") and len(nd.input) == 1 and len(nd.output) == 1:
            alias[nd.output[0]] = alias.get(nd.input[0], nd.input[0])
        else:
            kept.append(nd)
    for nd in kept:
        _rename_inputs(nd, lambda v: alias.get(v, v))
    values = {k: alias.get(v, v) for k, v in values.items()}

    produced = {o for nd in kept for o in nd.output if o}
    init_names = {t.name for t in b.initializers}
    taken = set(inputs) | init_names | produced
    rename: dict[str, str] = {}
    claimed: set[str] = set()          # ONNX values that already got their final name
    extra: list[onnx.NodeProto] = []
    out_names: list[tuple[str, TensorType]] = []

    # 2. graph outputs carry their public names: rename the producing value, or add one Identity
    for name, k in publics:
        v = values[k]
        if name == v and v not in claimed:
            claimed.add(v)
        elif v in produced and v not in claimed and name not in taken:
            rename[v] = name
            claimed.add(v)
            taken.add(name)
        else:
            if name in taken:
                raise ExportError(f"output name '{name}' is also the name of a graph input or parameter",
                                  hint="rename the output in the spec's outputs mapping")
            extra.append(helper.make_node("Identity", [v], [name], name=f"{name}/Identity"))
            taken.add(name)
        out_names.append((name, types[k]))

    # 3. every other value a spec node computes is named after its reference (fc1, lstm:h)
    for k, v in values.items():
        if k[0] in inputs:
            continue
        t = ref_text(k)
        if v in produced and v not in claimed and t not in taken:
            rename[v] = t
            claimed.add(v)
            taken.add(t)

    def final(v: str) -> str:
        return rename.get(v, v)

    for nd in kept:
        _rename_inputs(nd, final)
        outs = [final(o) if o else o for o in nd.output]
        del nd.output[:]
        nd.output.extend(outs)
    for nd in extra:
        _rename_inputs(nd, final)
    names = {k: final(v) for k, v in values.items()}

    graph_outputs = [_value_info(n, t) for n, t in out_names]
    if expose_all:
        listed = {n for n, _ in out_names}
        computed = {final(p) for p in produced}
        for k, v in names.items():
            if k[0] not in inputs and v in computed and v not in listed:
                listed.add(v)
                graph_outputs.append(_value_info(v, types[k]))

    # 4. dead nodes and unused initialisers go
    nodes = kept + extra
    live = {o.name for o in graph_outputs}
    alive: list[onnx.NodeProto] = []
    for nd in reversed(nodes):
        if any(o in live for o in nd.output if o):
            alive.append(nd)
            live.update(i for i in nd.input if i)
            live.update(_subgraph_inputs(nd))
    alive.reverse()
    initializers = [t for t in b.initializers if t.name in live]
    for nd in alive:
        _drop_unread_outputs(nd, live, opset)

    # 5. value_info from specc's shapes, for every named intermediate value
    outputs_set = {o.name for o in graph_outputs}
    made = {o for nd in alive for o in nd.output if o}
    value_info, seen = [], set()
    for k, v in names.items():
        if v in made and v not in outputs_set and v not in seen:
            seen.add(v)
            value_info.append(_value_info(v, types[k]))

    domains = sorted({nd.domain for nd in alive if nd.domain not in ("", "ai.onnx")})
    opsets = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, 1) for d in domains]
    g = helper.make_graph(alive, graph.name or "specc",
                          [_value_info(k, t) for k, t in inputs.items()], graph_outputs,
                          initializers, value_info=value_info)
    model = helper.make_model(g, opset_imports=opsets, producer_name="specc", producer_version=__version__)
    model.ir_version = helper.find_min_ir_version_for(opsets[:1])
    helper.set_model_props(model, {"spec_name": graph.name, "specc_version": __version__,
                                   "spec_sha256": graph.spec_hash})
    return model, names


# ------------------------------------------------------------------------------------ optimize

NONDETERMINISTIC = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Bernoulli",
                    "Multinomial", "Dropout"}
FOLD_GROWTH = 1 << 16                  # a folded value may exceed its inputs by this many bytes at most


def _evaluate(node: onnx.NodeProto, args: list[np.ndarray | None], opset: int) -> list[np.ndarray]:
    from onnx.reference import ReferenceEvaluator
    names = [i for i in node.input if i]
    inputs = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
              for n, a in zip(names, [a for a in args if a is not None])]
    outs = [helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None) for o in node.output if o]
    m = helper.make_model(helper.make_graph([node], "fold", inputs, outs),
                          opset_imports=[helper.make_opsetid("", opset)])
    feeds = {n: a for n, a in zip(names, [a for a in args if a is not None])}
    return [np.asarray(r) for r in ReferenceEvaluator(m).run(None, feeds)]


def optimize_graph(model: onnx.ModelProto, params: set[str] | None = None) -> None:
    """Constant folding and batch-norm fusion, in place (see export's `optimize`). `params`: the
    state_dict names, after which folded tensors are named."""
    from onnx import numpy_helper
    g = model.graph
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    arrays: dict[str, np.ndarray] = {}
    protos = {t.name: t for t in g.initializer}
    graph_outputs = {o.name for o in g.output}

    def value(name: str) -> np.ndarray:
        if name not in arrays:
            arrays[name] = numpy_helper.to_array(protos[name])
        return arrays[name]

    def is_const(name: str) -> bool:
        return name in protos or name in arrays

    sources: dict[str, tuple[str, ...]] = {n: (n,) for n in protos if params and n in params}
    folded_by: dict[str, str] = {}

    # 1. fold every node whose inputs are all constants
    kept: list[onnx.NodeProto] = []
    for nd in g.node:
        ins = [i for i in nd.input if i]
        if (ins and all(is_const(i) for i in ins) and nd.domain in ("", "ai.onnx") and nd.op_type not in
                NONDETERMINISTIC and not any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
                                             for a in nd.attribute)
                and not any(o in graph_outputs for o in nd.output)):
            args = [value(i) if i else None for i in nd.input]
            try:
                res = _evaluate(nd, args, opset)
            except Exception:                                       # noqa: BLE001 - leave it to onnxruntime
                res = None
            in_bytes = sum(a.nbytes for a in args if a is not None)
            if res is not None and sum(r.nbytes for r in res) <= in_bytes + FOLD_GROWTH:
                src = tuple(dict.fromkeys(x for i in ins for x in sources.get(i, ())))
                for o, r in zip([o for o in nd.output if o], res):
                    arrays[o] = r
                    sources[o] = src
                    folded_by[o] = nd.op_type
                continue
        kept.append(nd)

    # 2. fuse BatchNormalization into the Conv / ConvTranspose / Gemm that alone feeds it
    consumers: dict[str, int] = {}
    for nd in kept:
        for i in nd.input:
            consumers[i] = consumers.get(i, 0) + 1
    producer = {o: nd for nd in kept for o in nd.output}
    fused: set[int] = set()
    for nd in kept:
        if nd.op_type != "BatchNormalization" or len([o for o in nd.output if o]) != 1 or len(nd.input) != 5:
            continue
        x, scale, bias, mean, var = nd.input
        p = producer.get(x)
        if (p is None or consumers.get(x) != 1 or x in graph_outputs or id(p) in fused
                or not all(is_const(n) for n in (scale, bias, mean, var))):
            continue
        new = _fold_bn(p, nd, value, is_const)
        if new is None:
            continue
        w, b = new
        wname = _unique(f"{p.input[1]}+{nd.output[0]}", protos, arrays)
        arrays[wname] = w
        bname = _unique(f"{p.input[2] if len(p.input) > 2 and p.input[2] else p.input[1]}+{nd.output[0]}:bias",
                        protos, arrays)
        arrays[bname] = b
        ins = list(p.input) + [""] * (3 - len(p.input))
        ins[1], ins[2] = wname, bname
        del p.input[:]
        p.input.extend(ins)
        del p.output[:]
        p.output.append(nd.output[0])
        fused.add(id(nd))
        fused.add(id(p))
    kept = [nd for nd in kept if not (nd.op_type == "BatchNormalization" and id(nd) in fused)]

    # folded tensors that survive are named after the parameters they derive from
    read = {i for nd in kept for i in nd.input if i}
    rename: dict[str, str] = {}
    for name in [n for n in arrays if n in folded_by and n in read]:
        if sources.get(name):
            new = _unique(f"{'+'.join(sources[name])}:{folded_by[name]}", protos, arrays, set(rename.values()))
            rename[name] = new
    if rename:
        for name, new in rename.items():
            arrays[new] = arrays.pop(name)
        for nd in kept:
            _rename_inputs(nd, lambda v: rename.get(v, v))

    # 3. rebuild initialisers (only those still read) and drop value_info of values that are gone
    used = {i for nd in kept for i in nd.input if i} | graph_outputs
    for nd in kept:
        used.update(_subgraph_inputs(nd))
    inits = [protos[n] if n in protos and n not in arrays else numpy_helper.from_array(np.asarray(arrays[n], order="C"), n)
             for n in list(protos) + [a for a in arrays if a not in protos] if n in used]
    del g.initializer[:]
    g.initializer.extend(inits)
    del g.node[:]
    g.node.extend(kept)
    made = {o for nd in kept for o in nd.output}
    vi = [v for v in g.value_info if v.name in made]
    del g.value_info[:]
    g.value_info.extend(vi)

    from .cse import eliminate_common_subexpressions
    eliminate_common_subexpressions(model)                  # 4. duplicate nodes (each gcn layer's D^-1/2) merged


def _unique(name: str, *taken: Any) -> str:
    out, k = name, 1
    while any(out in t for t in taken):
        k += 1
        out = f"{name}_{k}"
    return out


def _fold_bn(p: onnx.NodeProto, bn: onnx.NodeProto, value: Any, is_const: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """Weight and bias of `p` with the batch norm `bn` applied after it, or None when not fusable."""
    attrs = {a.name: helper.get_attribute_value(a) for a in p.attribute}
    if len(p.input) < 2 or not is_const(p.input[1]) or (len(p.input) > 2 and p.input[2] and not is_const(p.input[2])):
        return None
    w = value(p.input[1]).astype(np.float64)
    if w.dtype.kind != "f":
        return None
    eps = next((helper.get_attribute_value(a) for a in bn.attribute if a.name == "epsilon"), 1e-5)
    gamma, beta, mean, var = (value(n).astype(np.float64) for n in bn.input[1:])
    s = gamma / np.sqrt(var + eps)
    if p.op_type == "Conv":
        axis = 0
    elif p.op_type == "ConvTranspose" and attrs.get("group", 1) == 1:
        axis = 1
    elif (p.op_type == "Gemm" and attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0
          and not attrs.get("transA", 0)):
        axis = 0 if attrs.get("transB", 0) else 1
    else:
        return None
    out_ch = w.shape[axis]
    if s.shape != (out_ch,):
        return None
    b = value(p.input[2]).astype(np.float64) if len(p.input) > 2 and p.input[2] else np.zeros(out_ch)
    if b.shape != (out_ch,):
        return None
    shape = [1] * w.ndim
    shape[axis] = out_ch
    w2 = (w * s.reshape(shape)).astype(np.float32)
    b2 = ((b - mean) * s + beta).astype(np.float32)
    return w2, b2
