"""One scope of a spec (the whole model, or one block instance) as the pieces of an nn.Module class:
its members (torch layers, parameters, buffers, child blocks) and the lines of its forward.

Names: a member's attribute is the node's local name, so state_dict keys are specc's; a variable is the
node's local name as an identifier. Units (nodes and block instances) whose names share a first part
(`mlp.0`, `mlp.3`; `layer1.0`, `layer1.1`) become one container: an nn.Sequential when they chain, an
nn.ModuleList run in a loop when repeated blocks also share other inputs, an nn.ModuleDict otherwise."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

from compiler.ir import BlockUse, Graph, Node, Ref

from .layers import Cx, Unsupported, emit, init_lines
from .source import NO_DEFAULT, Call, call, ident

Key = tuple[str, "str | None"]


@dataclass
class Member:
    attr: str                       # key in the module: "conv1", "0", "layer1"
    how: str                        # module | parameter | buffer | persistent buffer
    value: Any                      # a Call (module) or source text (parameter, buffer)
    flag: str | None = None         # merged classes: built only when this constructor flag is true
    inits: list[str] = field(default_factory=list)   # torch.nn.init calls on "{m}" (the member)
    unused: bool = False            # built for its weights, but forward does not need it (a loss's branch)


@dataclass
class ScopeCode:
    members: list[Member]
    forward: list[str]
    args: list[str]
    returns: list[str]
    line_of: dict[str, tuple[int, str, str]] = field(default_factory=dict)   # attr -> (line, var, input var)
    sequential: bool = False
    helpers: set[str] = field(default_factory=set)

    def skeleton(self) -> tuple:
        return (self.sequential, tuple(self.args), tuple(self.returns), tuple(self.forward),
                tuple((m.attr, m.how, m.value.skeleton() if isinstance(m.value, Call) else m.value, tuple(m.inits))
                      for m in self.members))


@dataclass
class Unit:
    key: str                        # local name: conv1, layer1.0, mlp.3
    group: str | None               # the container name (layer1), or None
    child: str                      # the name inside the container ("0"), or the key
    node: Node | None = None
    use: BlockUse | None = None
    inst: str = ""                  # full instance name

    @property
    def inputs(self) -> list[Ref | None]:
        return list(self.node.inputs) if self.node else list(self.use.inputs)

    def out_refs(self) -> list[Ref]:
        if self.node:
            return [Ref(self.node.name, None if i == 0 else p) for i, p in enumerate(self.node.outputs)]
        return list(self.use.outputs.values())

    @property
    def shared(self) -> bool:      # a `call`: reuses another unit's weights
        if self.node:
            return bool(self.node.param_prefix) and self.node.param_prefix != self.node.name
        return self.use.param_prefix != self.inst


def key_of(g: Graph, r: Ref) -> Key:
    if r.port is not None and g.has_node(r.node) and r.port == next(iter(g.node(r.node).outputs)):
        return (r.node, None)
    return (r.node, r.port)


def units_of(g: Graph, prefix: str) -> list[Unit]:
    """The nodes and block instances directly in the scope `prefix` ("" or "layer1.0."), in order."""
    units: dict[str, Unit] = {}
    for n in g.nodes:
        if not n.name.startswith(prefix):
            continue
        parts = n.name[len(prefix):].split(".")
        if prefix + parts[0] in g.instances:
            k = parts[0]
            units.setdefault(k, Unit(k, None, k, use=g.instances[prefix + k], inst=prefix + k))
        elif len(parts) > 2 and prefix + ".".join(parts[:2]) in g.instances:
            k = ".".join(parts[:2])
            units.setdefault(k, Unit(k, parts[0], parts[1], use=g.instances[prefix + k], inst=prefix + k))
        elif len(parts) == 1:
            units[parts[0]] = Unit(parts[0], None, parts[0], node=n)
        elif len(parts) == 2:
            units[".".join(parts)] = Unit(".".join(parts), parts[0], parts[1], node=n)
        else:
            raise Unsupported(f"node '{n.name}' is nested three names deep without a block around it")
    return list(units.values())


class ScopeWriter:
    """Writes one scope. `child_call(inst)` gives the constructor Call of a child block instance."""

    def __init__(self, g: Graph, prefix: str, inputs: list[tuple[str, Ref | None]], outputs: list[Ref],
                 child_call: Callable[[str], Call], where: str):
        self.g, self.prefix, self.where = g, prefix, where
        self.units = units_of(g, prefix)
        self.taken: set[str] = set()
        self.env: dict[Key, str] = {}
        self.args = []
        self.symbols: dict[str, str] = {}
        for name, ref in inputs:
            var = ident(name, self.taken)
            self.args.append(var)
            if ref is not None:
                self.env.setdefault(key_of(g, ref), var)
                t = g.type_of(ref)
                for i, d in enumerate(t.shape):
                    if isinstance(d, str):
                        self.symbols.setdefault(d, f"{var}.size({i})")
        self.outputs = outputs
        self.child_call = child_call
        self.code = ScopeCode([], [], self.args, [])
        self.kinds: dict[str, str] = {}           # container name -> nn.Sequential | nn.ModuleList | nn.ModuleDict
        self._readers = self.readers()
        self.producer: dict[Key, Unit] = {k: u for u in self.units for k in (key_of(g, r) for r in u.out_refs())}

    # -- which units the outputs need ------------------------------------------------------------
    def needed(self) -> set[str]:
        need: set[str] = set()
        stack = [key_of(self.g, r) for r in self.outputs]
        while stack:
            k = stack.pop()
            u = self.producer.get(k)
            if u is None or u.key in need:
                continue
            need.add(u.key)
            stack.extend(key_of(self.g, r) for r in u.inputs if r is not None)
        return need

    def readers(self) -> dict[Key, list[str]]:
        out: dict[Key, list[str]] = {}
        for u in self.units:
            for r in u.inputs:
                if r is not None:
                    out.setdefault(key_of(self.g, r), []).append(u.key)
        for r in self.outputs:
            out.setdefault(key_of(self.g, r), []).append("<out>")
        return out

    # -- access paths --------------------------------------------------------------------------
    def path(self, full: str) -> str:
        """self.<...> for the module or parameter whose state_dict prefix is `full` (a shared weight)."""
        if not full.startswith(self.param_prefix()):
            raise Unsupported(f"'{full}' is shared from outside the block that uses it")
        first, *rest = full[len(self.param_prefix()):].split(".")
        out = self.access(first)
        kind = self.kinds.get(first)
        for p in rest:
            if p.isidentifier():
                out += f".{p}"
            elif kind in ("nn.Sequential", "nn.ModuleList") and p.isdigit():
                out += f"[{p}]"
            elif kind == "nn.ModuleDict":
                out += f"[{p!r}]"
            else:
                out = f"getattr({out}, {p!r})"
            kind = None
        return out

    def param_prefix(self) -> str:
        if not self.prefix:
            return ""
        return self.g.instances[self.prefix[:-1]].param_prefix + "."

    def var(self, r: Ref | None) -> str | None:
        if r is None:
            return None
        k = key_of(self.g, r)
        if k not in self.env:
            raise Unsupported(f"{self.where} reads '{r}', which is neither one of its inputs nor built inside it")
        return self.env[k]

    # -- writing ---------------------------------------------------------------------------------
    def write(self) -> ScopeCode:
        need = self.needed()
        readers = self.readers()
        if self.whole_sequential(need, readers):
            return self.code
        done: set[str] = set()
        for u in self.units:
            if u.key in done:
                continue
            if u.group is None:
                self.unit(u, u.key in need, None)
                done.add(u.key)
                continue
            members = [v for v in self.units if v.group == u.group]
            done.update(v.key for v in members)
            self.group(u.group, members, need, readers)
        self.code.returns = [self.var(r) for r in self.outputs]
        return self.code

    def access(self, attr: str, container: str | None = None, index: str | None = None) -> str:
        if container is not None:
            return f"self.{container}[{index}]"
        return f"self.{attr}" if attr.isidentifier() else f"getattr(self, {attr!r})"

    def unit(self, u: Unit, needed: bool, where: tuple[str, str] | None) -> Any:
        """Emit the unit: its member (returned as a (child, module) pair when `where` puts it in a container)
        and, if needed, its forward line."""
        acc = self.access(u.child) if where is None else self.access("", *where)
        if u.use is not None:
            return self.instance(u, needed, acc, where)
        n = u.node
        ins = [self.var(r) if needed else None if r is None else "x" for r in n.inputs]
        cx = Cx(n, ins, [None if r is None else self.g.type_of(r) for r in n.inputs],
                self.wanted(u), self.symbols)
        try:
            e = emit(cx) if needed or n.params else None
        except Unsupported as exc:
            raise Unsupported(f"{n.op} '{n.name}': {exc}") from None
        if e is None:
            return None
        if u.shared:
            acc = self.path(n.param_prefix)
        self.code.helpers.update(e.helpers)
        member = None
        if not u.shared and (e.module or e.parameter or e.buffer):
            how = "module" if e.module else "parameter" if e.parameter else \
                "persistent buffer" if e.persistent else "buffer"
            member = Member(u.child, how, e.module or e.parameter or e.buffer, inits=init_lines(n), unused=not needed)
        if member is not None and where is None:
            self.code.members.append(member)
        if needed and e.expr == "{m}":               # a parameter or constant: read it where it is used
            self.env[key_of(self.g, u.out_refs()[0])] = acc
        elif needed:
            self.line(u, e.expr.replace("{m}", acc), e.lhs, e.module is not None and not u.shared,
                      ins[0] if ins else None)
        return member

    def wanted(self, u: Unit) -> tuple[bool, ...]:
        readers = self._readers
        return tuple(bool(readers.get(key_of(self.g, r))) for r in u.out_refs())

    def line(self, u: Unit, expr: str, lhs: str | None, simple: bool, first: str | None) -> None:
        refs = u.out_refs()
        wanted = self.wanted(u)
        ports = list(u.node.outputs) if u.node else list(u.use.outputs)
        names = []
        for i, r in enumerate(refs):
            several = u.use is not None and len(refs) > 1
            name = ident(u.key if i == 0 and not several else f"{u.key}_{ports[i]}", self.taken)
            names.append(name if wanted[i] or len(refs) == 1 else "_")
            self.env[key_of(self.g, r)] = name
        target = (lhs or ", ".join("{%d}" % i for i in range(len(names)))).format(*names)
        if simple and len(refs) == 1 and first is not None and u.group is None:
            self.code.line_of[u.child] = (len(self.code.forward), names[0], first)
        self.code.forward.append(f"{target} = {expr}")

    def instance(self, u: Unit, needed: bool, acc: str, where: tuple[str, str] | None) -> Any:
        member = None
        if u.shared:
            acc = self.path(u.use.param_prefix)
        else:
            member = Member(u.child, "module", self.child_call(u.inst), unused=not needed)
            if where is None:
                self.code.members.append(member)
        if needed:
            args = [self.var(r) for r in u.use.inputs]
            self.line(u, f"{acc}({', '.join(args)})", None, member is not None and len(args) == 1,
                      args[0] if args else None)
        return member

    # -- containers ---------------------------------------------------------------------------
    def group(self, name: str, members: list[Unit], need: set[str], readers: dict) -> None:
        if any(u.shared for u in members):
            raise Unsupported(f"'{self.prefix}{name}' mixes shared and own weights")
        if self.chain(members, need, readers) and self.sequential(name, members):
            return
        mods, inits = [], []
        for u in members:
            m = self.unit(u, u.key in need, (name, repr(u.child)))
            if m is not None:
                if m.how != "module":
                    raise Unsupported(f"'{self.prefix}{u.key}' is a parameter inside a container")
                mods.append((u.child, m.value))
                inits += [ln.replace("{m}", "{m}[%r]" % u.child) for ln in m.inits]
        if mods:
            self.kinds[name] = "nn.ModuleDict"
            self.code.members.append(Member(name, "module", call("nn.ModuleDict", ("modules", Call("{}", tuple(
                (k, v, True, NO_DEFAULT) for k, v in mods)))), inits=inits))

    def whole_sequential(self, need: set[str], readers: dict) -> bool:
        """A block whose layers have numbers for names and simply chain is an nn.Sequential subclass."""
        us = self.units
        if not self.prefix or not us or any(u.group or u.shared for u in us) or \
                all(u.child.isidentifier() for u in us) or len(self.args) != 1 or len(self.outputs) != 1:
            return False
        if not self.chain(us, need, readers, numbered=False) or us[0].inputs[0] is None or \
                self.var(us[0].inputs[0]) != self.args[0] or \
                key_of(self.g, us[-1].out_refs()[0]) != key_of(self.g, self.outputs[0]):
            return False
        mods = self.chain_modules(us)
        if mods is None:
            return False
        self.code.members = [Member(u.child, "module", m, inits=ini) for u, (m, ini) in zip(us, mods)]
        self.code.sequential = True
        return True

    def chain(self, members: list[Unit], need: set[str], readers: dict, numbered: bool = True) -> bool:
        if numbered and [u.child for u in members] != [str(i) for i in range(len(members))] or \
                members[-1].key not in need:
            return False
        prev: Key | None = None
        rest0 = None
        for i, u in enumerate(members):
            outs = u.out_refs()
            if len(outs) != 1 or u.node is not None and u.node.op in ("param", "constant"):
                return False
            ins = [r for r in u.inputs]
            if not ins or ins[0] is None:
                return False
            rest = tuple(None if r is None else key_of(self.g, r) for r in ins[1:])
            if u.node is not None and rest:
                return False
            if i and (key_of(self.g, ins[0]) != prev or rest != rest0):
                return False
            prev, rest0 = key_of(self.g, outs[0]), rest
            if i < len(members) - 1 and readers.get(prev) != [members[i + 1].key]:
                return False
        return True

    def chain_modules(self, members: list[Unit]) -> list[tuple[Call, list[str]]] | None:
        """The modules of a chain with their init calls, or None when a unit has no module form."""
        mods = []
        for u in members:
            if u.use is not None:
                mods.append((self.child_call(u.inst), []))
                continue
            n = u.node
            e = emit(Cx(n, ["x"] + [None] * (len(n.inputs) - 1), [None if r is None else self.g.type_of(r)
                                                                    for r in n.inputs], (True,), self.symbols))
            if e.module is None and e.modform is None or "{m}(x)" not in e.expr and e.module is not None:
                return None
            self.code.helpers.update(e.helpers)
            mods.append((e.module or e.modform, init_lines(n)))
        return mods

    def sequential(self, name: str, members: list[Unit]) -> bool:
        """Write a chain of units as an nn.Sequential (or a ModuleList run in a loop); False if one of them
        has no module form."""
        chained = self.chain_modules(members)
        if chained is None:
            return False
        mods = [m for m, _ in chained]
        inits = [ln.replace("{m}", "{m}[%d]" % i) for i, (_, lines) in enumerate(chained) for ln in lines]
        first = members[0]
        x = self.var(first.inputs[0])
        extra = [self.var(r) for r in first.inputs[1:]]
        out = ident(name, self.taken)
        self.kinds[name] = "nn.ModuleList" if extra else "nn.Sequential"
        if extra:
            self.code.members.append(Member(name, "module", call("nn.ModuleList", ("modules", Call("[]", tuple(
                (str(i), m, True, NO_DEFAULT) for i, m in enumerate(mods))))), inits=inits))
            self.code.forward += [f"{out} = {x}", f"for layer in {self.access(name)}:",
                                  f"    {out} = layer({', '.join([out] + extra)})"]
        else:
            self.code.members.append(Member(name, "module", Call("nn.Sequential", tuple(
                (str(i), m, True, NO_DEFAULT) for i, m in enumerate(mods))), inits=inits))
            self.code.line_of[name] = (len(self.code.forward), out, x)
            self.code.forward.append(f"{out} = {self.access(name)}({x})")
        self.env[key_of(self.g, members[-1].out_refs()[0])] = out
        return True


def sub_var(lines: list[str], var: str, by: str) -> list[str]:
    pat = re.compile(rf"(?<![\w.]){re.escape(var)}(?!\w)")
    return [pat.sub(by, ln) for ln in lines]
