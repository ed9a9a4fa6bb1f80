"""Op layers: attributes validated by the op's model, `init:`, the shape rule run at once, parameters named."""
from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from .. import limits
from .. import ops as ops_pkg
from ..errors import Loc, ShapeError, did_you_mean
from ..ir import Init, Node, Ref
from ..spec import RESERVED
from ..values import Abort, Poisoned, Value
from .diagnose import Compiler, dedupe, type_text
from .locs import Locs
from .node_init import parse_init
from .scope import Scope
from .shorthand import unknown_op

OPS = ops_pkg.OPS


class OpNodes:
    """The Expander's op nodes (mixed into Expander, which holds the state)."""
    c: Compiler
    nodes: list[Node]
    node_by_name: dict[str, Node]
    param_shapes: dict[str, tuple]

    def precheck_op(self, op: str, fields: dict, locs: Locs, scope: Scope) -> None:
        """Report an unknown op or a misspelt attribute even when the node's input failed earlier."""
        opdef = OPS.get(op)
        if opdef is None:
            raise unknown_op(self.c, op, locs.at("op"), scope)
        allowed = set(opdef.attrs.model_fields)
        bad = [k for k in fields if k not in RESERVED and k not in allowed]
        if bad:
            try:
                self.validate_attrs(opdef, {k: None for k in bad}, locs, scope, only_extra=True)
            except Poisoned:
                pass

    def build_op(self, op: str, fields: dict, locs: Locs, scope: Scope, name: str,
                 inputs: list[Value | None], env: dict) -> Value:
        opdef = OPS.get(op)
        if opdef is None:
            raise unknown_op(self.c, op, locs.at("op"), scope)
        raw_attrs = {k: v for k, v in fields.items() if k not in RESERVED}
        attrs_in = {k: self.evaluate(v, scope, locs.at(k), env) for k, v in raw_attrs.items()}
        attrs = self.validate_attrs(opdef, attrs_in, locs, scope)
        init = self.node_init(fields, locs, scope, env)
        return self.infer_node(opdef, attrs, name, scope, inputs, locs, init=init)

    def validate_attrs(self, opdef: Any, attrs_in: dict, locs: Locs, scope: Scope, only_extra: bool = False) -> Any:
        try:
            return opdef.attrs.model_validate(attrs_in)
        except ValidationError as e:
            for err in dedupe(e.errors()):
                if not only_extra or err["type"] == "extra_forbidden":
                    self.attr_error(opdef, err, locs, scope)
            raise Poisoned from None

    def attr_error(self, opdef: Any, err: dict, locs: Locs, scope: Scope) -> None:
        allowed = list(opdef.attrs.model_fields)
        key = err["loc"][0] if err["loc"] else None
        if err["type"] == "extra_forbidden":
            self.c.error(f"{opdef.name} has no attribute '{key}'", locs.key(str(key)),
                         did_you_mean(str(key), allowed + ["name", "in", "repeat", "when", "init"]) or
                         (f"its attributes are: {', '.join(allowed)}" if allowed else
                          f"{opdef.name} takes no attributes"), use_sites=scope.use_sites)
        elif err["type"] == "missing":
            self.c.error(f"{opdef.name} needs attribute '{key}'", locs.node,
                         f"add {key}: <value>" + (f" (its primary attribute: {{{opdef.name}: <{key}>}})"
                                                  if opdef.primary == key else ""),
                         use_sites=scope.use_sites)
        elif err.get("union") and key in opdef.attrs.model_fields:
            want = type_text(opdef.attrs.model_fields[key].annotation)
            self.c.error(f"{opdef.name} attribute '{key}' must be {want}, found {err.get('input')!r}",
                         locs.at(str(key)), use_sites=scope.use_sites)
        else:
            self.c.error(f"{opdef.name} attribute '{key}': {err['msg'].lower()} "
                         f"(found {err.get('input')!r})", locs.at(str(key)), use_sites=scope.use_sites)

    def node_init(self, fields: dict, locs: Locs, scope: Scope, env: dict) -> Init | None:
        """The layer's `init:` (node_init.parse_init), or None for the op's default initialisers."""
        if "init" not in fields:
            return None
        raw = self.evaluate(fields["init"], scope, locs.at("init"), env)
        return parse_init(self.c, raw, locs.at("init"), scope.use_sites)

    def check_arity(self, opdef: Any, inputs: list[Value | None], locs: Locs, scope: Scope) -> None:
        n_req = len(opdef.inputs) - len(opdef.optional)
        if opdef.variadic:
            ok = len(inputs) >= max(n_req, 1)
        else:
            ok = n_req <= len(inputs) <= len(opdef.inputs)
        if not ok:
            want = (f"at least {max(n_req, 1)}" if opdef.variadic else
                    f"{n_req}" if n_req == len(opdef.inputs) else f"{n_req} to {len(opdef.inputs)}")
            names = ", ".join(f"[{i}]" if i in opdef.optional else i for i in opdef.inputs)
            self.c.error(f"{opdef.name} takes {want} input(s) ({names}), got {len(inputs)}", locs.at("in"),
                         "list them in order with in: [...]" if opdef.inputs else f"{opdef.name} takes no inputs",
                         use_sites=scope.use_sites)
            raise Poisoned
        for i, v in enumerate(inputs):
            if v is None and (opdef.variadic or opdef.inputs[i] not in opdef.optional):
                what = f"input {i + 1}" if opdef.variadic else f"input '{opdef.inputs[i]}'"
                self.c.error(f"{opdef.name} {what} cannot be null", locs.at("in"), use_sites=scope.use_sites)
                raise Poisoned

    def infer_node(self, opdef: Any, attrs: Any, name: str, scope: Scope, inputs: list[Value | None], locs: Locs,
                   init: Init | None = None, param_prefix: str | None = None) -> Value:
        """Run the op's shape rule on its inputs and add the node; its value (ports) for later layers."""
        self.check_arity(opdef, inputs, locs, scope)
        if len(self.nodes) >= limits.NODES:
            self.c.error(f"the spec expands to more than {limits.NODES:,} nodes, the limit", locs.node,
                         "check the repeat counts of this layer and the blocks around it", use_sites=scope.use_sites)
            raise Abort
        refs = [None if v is None else v.default[0] for v in inputs]
        types = [None if v is None else v.default[1] for v in inputs]
        if not opdef.variadic:          # omitted trailing optional inputs are None, for kernels and lowerings
            refs += [None] * (len(opdef.inputs) - len(refs))
            types += [None] * (len(opdef.inputs) - len(types))
        try:
            inferred = opdef.infer(attrs, types)
        except ShapeError as e:
            self.shape_error(e, opdef, attrs, name, inputs, locs, scope)
            raise Poisoned from None
        ports = inferred.ports or list(opdef.ports)
        if len(inferred.outputs) > limits.OUTPUTS:
            self.c.error(f"{opdef.name} '{name}' would have {len(inferred.outputs):,} outputs, more than the limit of "
                         f"{limits.OUTPUTS:,}", locs.node, use_sites=scope.use_sites)
            raise Poisoned
        full = scope.prefix + name
        node = Node(name=full, op=opdef.name, attrs=attrs, inputs=refs,
                    outputs=dict(zip(ports, inferred.outputs)), params=list(inferred.params),
                    param_prefix=param_prefix if param_prefix is not None else scope.param_prefix + name,
                    init=init, macs=int(inferred.macs), loc=locs.node,
                    use_sites=list(scope.use_sites), block=scope.prefix[:-1] or None)
        self.check_shared_params(node, locs.node, scope)
        self.nodes.append(node)
        self.node_by_name[full] = node
        return Value({p: (Ref(full, None if i == 0 else p), t) for i, (p, t) in enumerate(node.outputs.items())},
                     kind="node", owner=full)

    def shape_error(self, e: ShapeError, opdef: Any, attrs: Any, name: str, inputs: list[Value | None],
                    locs: Locs, scope: Scope) -> None:
        """A shape rule's message, naming this node and the nodes that feed it."""
        where = locs.values.get(e.attr) if e.attr else None
        msg = _name_inputs(e.message, opdef, inputs)
        if msg.startswith(opdef.name + "'s "):
            msg = f"{opdef.name} '{name}': its {msg[len(opdef.name) + 3:]}"
        elif not msg.startswith(opdef.name):
            msg = f"{opdef.name} '{name}': {msg}"
        elif f"'{name}'" not in msg:
            msg = msg.replace(opdef.name, f"{opdef.name} '{name}'", 1)
        self.c.error(msg, where or locs.node, self.producer_hint(e, attrs, inputs), use_sites=scope.use_sites)

    def producer_hint(self, e: ShapeError, attrs: Any, inputs: list[Value | None]) -> str | None:
        """For a declared in_channels/in_features that disagrees, also name the layer that sets the size."""
        want = {"in_channels": "out_channels", "in_features": "out_features"}.get(e.attr or "")
        if want is None or not inputs or inputs[0] is None:
            return e.hint
        node = self.node_by_name.get(inputs[0].default[0].node)
        for _ in range(50):
            if node is None:
                return e.hint
            if hasattr(node.attrs, want):
                short = node.name[len(node.block) + 1:] if node.block else node.name
                return f"{e.hint or ''}{', or ' if e.hint else ''}change {short}'s {want} to {getattr(attrs, e.attr)}"
            if not node.inputs or node.inputs[0] is None or node.params:
                return e.hint
            node = self.node_by_name.get(node.inputs[0].node)
        return e.hint

    def check_shared_params(self, node: Node, loc: Loc, scope: Scope) -> None:
        shared = node.param_prefix != node.name
        for p in node.params:
            full = node.param_name(p)
            have = self.param_shapes.get(full)
            if have is None:
                if shared:
                    self.c.error(f"'{node.name}' would need parameter '{full}', which the called instance does not "
                                 "have", loc, "a call must build the same layers as the original", scope.use_sites)
                    raise Poisoned
                self.param_shapes[full] = p.shape
            elif have != p.shape:
                self.c.error(f"shared parameter '{full}' has shape {list(have)} but this call needs {list(p.shape)}",
                             loc, "call an instance on inputs of the shape it was built for", scope.use_sites)
                raise Poisoned
            elif not shared:
                self.c.error(f"parameter name '{full}' is used twice", loc, "rename one of the nodes",
                             scope.use_sites)
                raise Poisoned


def _name_inputs(message: str, opdef: Any, inputs: list[Value | None]) -> str:
    """Shape rules say "its input" / "its target"; name the node that feeds it instead."""
    def ref_text(v: Value) -> str:
        ref = v.default[0]
        return f"'{ref.node}'" if ref.port is None else f"'{ref.node}:{ref.port}'"
    names = list(opdef.inputs)
    for i, v in enumerate(inputs):
        if v is None:
            continue
        if i < len(names):
            message = re.sub(rf"\bits {re.escape(names[i])}\b", ref_text(v), message)
    if inputs and inputs[0] is not None and sum(v is not None for v in inputs) == 1:
        message = re.sub(r"\bits input\b", ref_text(inputs[0]), message)
    return message
