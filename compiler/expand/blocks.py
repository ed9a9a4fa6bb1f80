"""Block uses (`use:`: typed params, named input and output ports, a scope of their own) and `call:` (an
instance or layer built earlier, run again with the same parameters)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import ops as ops_pkg
from ..errors import did_you_mean
from ..ir import BlockUse, Node, Ref, TensorType
from ..load import SMap
from ..spec import RESERVED, BlockSpec
from ..values import Poisoned, Value
from .diagnose import Compiler
from .locs import Locs
from .scope import Scope

if TYPE_CHECKING:
    from .expander import Expander

OPS = ops_pkg.OPS
TYPE_NAMES = {"int": int, "float": (int, float), "bool": bool, "str": str, "list": list}


class BlockNodes:
    """The Expander's block uses and calls (mixed into Expander, which holds the state)."""
    c: Compiler
    nodes: list[Node]
    node_by_name: dict[str, Node]
    instances: dict[str, tuple]
    uses: dict[str, BlockUse]

    def build_use(self: "Expander", block_name: str, fields: dict, locs: Locs, scope: Scope, name: str,
                  inputs: list[Value | None], env: dict, param_prefix: str | None = None,
                  given: dict | None = None) -> Value:
        found = scope.module.block(block_name)
        if found is None and block_name.split(".", 1)[0] in scope.module.failed:
            raise Poisoned
        if found is None:
            cands = scope.module.block_names()
            hint = (f"'{block_name}' is an op: write op: {block_name}" if block_name in OPS else
                    did_you_mean(block_name, cands) or (f"blocks available: {', '.join(cands)}" if cands else
                                                        "this file defines no blocks"))
            self.c.error(f"unknown block '{block_name}'", locs.at("use"), hint, use_sites=scope.use_sites)
            raise Poisoned
        if "init" in fields:                  # it was ignored: init sets one layer's parameters
            self.c.error(f"init: a block instance ('{block_name}') has no parameters of its own to initialise",
                         locs.at("init"), "write init: on the layers inside the block (a block param can carry "
                         "it: init: \"${...}\")", use_sites=scope.use_sites)
            raise Poisoned
        block, module, btree = found
        key = f"{module.path}:{block_name.rsplit('.', 1)[-1]}"
        if key in scope.block_stack:
            self.c.error(f"block '{block_name}' uses itself (recursion)", locs.at("use"), use_sites=scope.use_sites)
            raise Poisoned
        if given is None:
            given = self.block_params(block, block_name, fields, locs, scope, env)
        if any(v is None for v in inputs) or len(inputs) != len(block.inputs):
            self.c.error(f"block '{block_name}' takes {len(block.inputs)} input(s) ({', '.join(block.inputs)}), "
                         f"got {len(inputs)}", locs.at("in"), use_sites=scope.use_sites)
            raise Poisoned
        full = scope.prefix + name
        inner = Scope(prefix=full + ".", param_prefix=(param_prefix if param_prefix is not None
                                                       else scope.param_prefix + name) + ".",
                      env={**(module.spec.params if module.env is None else module.env), **given}, module=module,
                      names={n: v for n, v in zip(block.inputs, inputs)},
                      first_input=inputs[0] if inputs else None,
                      use_sites=scope.use_sites + [locs.node],
                      block_stack=scope.block_stack + (key,))
        n_before = len(self.c.diags)
        self.expand_layers(btree["layers"], inner)
        if len(self.c.diags) > n_before:
            raise Poisoned
        self.instances[full] = (block_name, given, scope.module)
        out = self.block_outputs(block, btree, inner, full)
        self.uses[full] = BlockUse(key, block_name.rsplit(".", 1)[-1], dict(given), [v.default[0] for v in inputs],
                                   list(block.inputs), {p: r for p, (r, _t) in out.ports.items()}, inner.param_prefix[:-1])
        return out

    def block_params(self, block: BlockSpec, block_name: str, fields: dict, locs: Locs,
                     scope: Scope, env: dict) -> dict:
        """The params a use gives (evaluated, type-checked), with the block's defaults for the rest."""
        given_raw = {k: v for k, v in fields.items() if k not in RESERVED}
        out: dict[str, Any] = {}
        bad = False
        for k, v in given_raw.items():
            if k not in block.params:
                self.c.error(f"block '{block_name}' has no param '{k}'", locs.key(k),
                             did_you_mean(k, list(block.params)) or
                             (f"its params are: {', '.join(block.params)}" if block.params else "it takes no params"),
                             use_sites=scope.use_sites)
                bad = True
                continue
            out[k] = self.evaluate(v, scope, locs.at(k), env)
        for k, decl in block.params.items():
            if isinstance(decl, str) and decl in TYPE_NAMES:
                if k not in out:
                    self.c.error(f"block '{block_name}' needs param '{k}' ({decl})", locs.node,
                                 f"add {k}: <{decl}> to the use", use_sites=scope.use_sites)
                    bad = True
                elif not isinstance(out[k], TYPE_NAMES[decl]) or (decl != "bool" and isinstance(out[k], bool)):
                    self.c.error(f"block '{block_name}' param '{k}' must be {decl}, found {out[k]!r}",
                                 locs.at(k), use_sites=scope.use_sites)
                    bad = True
            elif k not in out:
                out[k] = decl
        if bad:
            raise Poisoned
        return out

    def block_outputs(self, block: BlockSpec, btree: SMap, inner: Scope, full: str) -> Value:
        outs = block.outputs
        if outs is None:
            if inner.last is None:
                self.c.error("block has no layers", btree.loc, use_sites=inner.use_sites)
                raise Poisoned
            if inner.last.poisoned:               # its last layer failed (reported, or quiet after a failed import)
                raise Poisoned
            return Value(dict(inner.last.ports), kind="instance", owner=full)
        olocs = btree["outputs"]
        if not outs:
            self.c.error("a block needs at least one output", getattr(olocs, "loc", btree.loc),
                         "list its outputs, or leave `outputs` out to use the last layer",
                         use_sites=inner.use_sites)
            raise Poisoned
        items = list(outs.items()) if isinstance(outs, dict) else [(r, r) for r in outs]
        ports: dict[str, tuple[Ref, TensorType]] = {}
        for i, (port, ref) in enumerate(items):
            rloc = olocs.loc_of(port) if isinstance(olocs, SMap) else olocs.loc_of(i)
            v = self.resolve(ref, inner, rloc)
            ports[str(port)] = v.default
        return Value(ports, kind="instance", owner=full)

    def build_call(self: "Expander", target: str, fields: dict, locs: Locs, scope: Scope, name: str,
                   inputs: list[Value | None]) -> Value:
        extra = [k for k in fields if k not in RESERVED]
        if "init" in fields:                  # it was ignored: a call reuses the parameters as drawn
            self.c.error(f"init: a call shares the parameters of '{target}', initialised where it is built",
                         locs.at("init"), f"write init: on '{target}'", use_sites=scope.use_sites)
            raise Poisoned
        if extra:
            self.c.error(f"a call takes no attributes (found {', '.join(extra)}): it reuses '{target}' as built",
                         locs.keys.get(extra[0], locs.node), use_sites=scope.use_sites)
            raise Poisoned
        full_target = scope.prefix + target if scope.prefix + target in self.node_by_name or \
            scope.prefix + target in self.instances else target
        if full_target in self.instances:
            block_name, given, module = self.instances[full_target]
            caller = Scope(prefix=scope.prefix, param_prefix=scope.param_prefix, env=scope.env, module=module,
                           use_sites=scope.use_sites, block_stack=scope.block_stack)
            orig_prefix = self.node_param_prefix_of_instance(full_target)
            return self.build_use(block_name, {}, locs, caller, name, inputs, {}, param_prefix=orig_prefix,
                                  given=given)
        node = self.node_by_name.get(full_target)
        if node is None:
            cands = [k[len(scope.prefix):] for k in list(self.instances) + list(self.node_by_name)
                     if k.startswith(scope.prefix)]
            self.c.error(f"call: '{target}' is not a block instance or layer built earlier", locs.at("call"),
                         did_you_mean(target, cands), use_sites=scope.use_sites)
            raise Poisoned
        return self.infer_node(OPS[node.op], node.attrs, name, scope, inputs, locs, init=node.init,
                               param_prefix=node.param_prefix)

    def node_param_prefix_of_instance(self, full: str) -> str:
        for n in self.nodes:
            if n.name.startswith(full + "."):
                suffix = n.name[len(full):]
                if n.param_prefix.endswith(suffix):
                    return n.param_prefix[: len(n.param_prefix) - len(suffix)]
        return full
