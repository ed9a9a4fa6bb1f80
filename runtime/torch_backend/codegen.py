"""specc Graph -> the source of a standalone PyTorch file (specc export-torch).

One nn.Module class per block definition, one for the model. Uses of a block that differ only in sizes
share the class: the values that differ become constructor parameters (named as the block's params when
they match one, else after the layer argument, e.g. in_channels); a member that only some uses build (a
`when`) becomes a constructor flag and `None` elsewhere, as torchvision's `downsample`. Uses that differ
in structure get one class each (BasicBlock, BasicBlock2). Imports nothing from torch.
"""
from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compiler.ir import Graph, Ref

from .helpers import HELPERS, closure
from .layers import Unsupported
from .scope import Member, ScopeCode, ScopeWriter, sub_var
from .source import NO_DEFAULT, RESERVED, Call, Param, camel, ident, render_call, wrap

ABSENT = object()


class Generator:
    def __init__(self, g: Graph):
        self.g = g
        self.by_def: dict[str, list[str]] = {}
        for name, use in g.instances.items():
            if use.param_prefix == name:
                self.by_def.setdefault(use.definition, []).append(name)
        self.inst_class: dict[str, str] = {}
        self.inst_kwargs: dict[str, dict[str, Any]] = {}
        self.classes: list[str] = []
        self.helpers: set[str] = set()
        self.names: set[str] = set(HELPERS) | RESERVED

    # -- block classes ---------------------------------------------------------------------------
    def child_call(self, inst: str) -> Call:
        if inst not in self.inst_class:
            self.build_definition(self.g.instances[inst].definition)
        kw = self.inst_kwargs[inst]
        return Call(self.inst_class[inst], tuple((k, v, False, NO_DEFAULT) for k, v in kw.items()))

    def scope_code(self, inst: str) -> ScopeCode:
        use = self.g.instances[inst]
        w = ScopeWriter(self.g, inst + ".", list(zip(use.input_names, use.inputs)), list(use.outputs.values()),
                        self.child_call, f"block '{use.block}' ('{inst}')")
        return w.write()

    def build_definition(self, d: str) -> None:
        insts = self.by_def[d]
        codes = {i: self.scope_code(i) for i in insts}
        for code in codes.values():
            self.helpers |= code.helpers
        full = max(insts, key=lambda i: len(codes[i].members))
        if all(_fits(codes[full], codes[i]) for i in insts):
            groups = [insts]
        else:
            by_sk: dict[tuple, list[str]] = {}
            for i in insts:
                by_sk.setdefault(codes[i].skeleton(), []).append(i)
            groups = list(by_sk.values())
        use = self.g.instances[insts[0]]
        base = camel(use.block)
        for k, group in enumerate(groups):
            name = self.class_name(base)
            src = self.merged_class(name, group, codes, use, variant=k > 0)
            self.classes.append(src)

    def class_name(self, base: str) -> str:
        name, k = base, 2
        while name in self.names:
            name, k = f"{base}{k}", k + 1
        self.names.add(name)
        return name

    def merged_class(self, name: str, insts: list[str], codes: dict[str, ScopeCode], use: Any,
                     variant: bool) -> str:
        full = codes[max(insts, key=lambda i: len(codes[i].members))]
        namer = _Namer([self.g.instances[i].params for i in insts])
        members: list[Member] = []
        forward = list(full.forward)
        for m in full.members:
            vals = []
            for i in insts:
                mm = next((x for x in codes[i].members if x.attr == m.attr), None)
                vals.append(ABSENT if mm is None else mm.value)
            value = _hoist(vals, namer, m.attr, m.attr)
            flag = None
            if any(v is ABSENT for v in vals):
                flag = namer.flag(m.attr, [v is not ABSENT for v in vals])
                idx, var, inp = full.line_of[m.attr]
                forward[idx] += f" if self.{m.attr} is not None else {inp}"
            members.append(Member(m.attr, m.how, value, flag, m.inits, m.unused))
        for j, i in enumerate(insts):
            self.inst_class[i] = name
            self.inst_kwargs[i] = {p: vec[j] for p, vec in namer.vectors.items()}
        where = use.definition.rsplit(":", 1)[0]
        doc = f"Block '{_safe(use.block)}' of {_safe(Path(where).name)}"
        if variant:
            doc += " (another form: its uses differ in structure)"
        code = ScopeCode(members, forward, full.args, full.returns, sequential=full.sequential)
        return render_class(name, "nn.Sequential" if full.sequential else "nn.Module", doc + ".", namer.signature(),
                            code)

    # -- the model -------------------------------------------------------------------------------
    def model_class(self, outputs: dict[str, Ref]) -> str:
        g = self.g
        w = ScopeWriter(g, "", [(k, Ref(k)) for k in g.inputs], list(outputs.values()), self.child_call,
                        f"spec '{g.name}'")
        code = w.write()
        self.helpers |= code.helpers
        text = "\n".join(code.forward + code.returns)
        used = [(k, a) for k, a in zip(g.inputs, code.args) if _uses(text, a)]
        code.args = [a for _, a in used]
        self.model_inputs = [k for k, _ in used]
        outs = _safe(", ".join(outputs))
        doc = (f"The spec '{_safe(g.name)}': forward({', '.join(code.args)}) returns {outs}"
               f"{' (a tuple, in this order)' if len(outputs) > 1 else ''}.")
        name = self.class_name(camel(g.name))
        self.model_name = name
        return render_class(name, "nn.Module", doc, [], code)





def _uses(text: str, var: str) -> bool:
    return sub_var([text], var, "\0")[0] != text


def _fits(full: ScopeCode, c: ScopeCode) -> bool:
    """Is `c` the class of `full` with some members left out (their lines skipped, their input passed on)?"""
    attrs = {m.attr for m in c.members}
    mine = {m.attr: m for m in full.members}
    if not attrs <= set(mine) or c.sequential != full.sequential or c.args != full.args:
        return False
    for m in c.members:
        fm = mine[m.attr]
        if fm.how != m.how or fm.inits != m.inits or (fm.value.skeleton() if isinstance(fm.value, Call) else fm.value) != \
                (m.value.skeleton() if isinstance(m.value, Call) else m.value):
            return False
    missing = [m.attr for m in full.members if m.attr not in attrs]
    if missing and full.sequential:
        return False
    lines, rets = list(full.forward), list(full.returns)
    drop = set()
    for attr in missing:
        if attr not in full.line_of:
            return False
        idx, var, inp = full.line_of[attr]
        drop.add(idx)
        lines = sub_var(lines, var, inp)
        rets = sub_var(rets, var, inp)
    lines = [ln for k, ln in enumerate(lines) if k not in drop]
    return lines == c.forward and rets == c.returns


class _Namer:
    """Names the values that differ between uses of a block (constructor parameters)."""

    def __init__(self, params: list[dict[str, Any]]):
        self.params = params
        self.vectors: dict[str, list[Any]] = {}
        self.hints: dict[str, str] = {}

    def name(self, vec: list[Any], arg: str, attr: str) -> str:
        for k, have in self.vectors.items():
            if _agree(have, vec):
                for j, v in enumerate(vec):
                    if have[j] is ABSENT:
                        have[j] = v
                return k
        cands = [k for k in self.params[0] if all(k in p for p in self.params)
                 and _agree([p[k] for p in self.params], vec)]
        for k in cands + [arg, f"{ident(attr)}_{arg}"]:
            k = ident(k)
            if k not in self.vectors:
                self.vectors[k] = list(vec)
                present = next(v for v in vec if v is not ABSENT)
                self.hints[k] = {bool: "bool", int: "int", float: "float", str: "str", tuple: "tuple"}.get(
                    type(present), "")
                return k
        raise Unsupported(f"cannot name the constructor argument {arg} of {attr}")  # pragma: no cover

    def flag(self, attr: str, vec: list[bool]) -> str:
        k = ident(attr)
        while k in self.vectors:
            k = "use_" + k
        self.vectors[k] = list(vec)
        self.hints[k] = "bool"
        return k

    def signature(self) -> list[tuple[str, str]]:
        for vec in self.vectors.values():
            for j, v in enumerate(vec):
                if v is ABSENT:
                    vec[j] = None
        return [(k, self.hints[k]) for k in self.vectors]


def _agree(a: list[Any], b: list[Any]) -> bool:
    return all(x is ABSENT or y is ABSENT or (type(x) is type(y) and x == y) for x, y in zip(a, b))


def _hoist(vals: list[Any], namer: _Namer, arg: str, attr: str) -> Any:
    present = [v for v in vals if v is not ABSENT]
    first = present[0]
    if isinstance(first, Call):
        args = []
        for j, (n, v, pos, d) in enumerate(first.args):
            sub = [ABSENT if x is ABSENT else x.args[j][1] for x in vals]
            args.append((n, _hoist(sub, namer, n, attr), pos, d))
        return Call(first.fn, tuple(args))
    if all(type(v) is type(first) and v == first for v in present) or not isinstance(first, (int, float, tuple,
                                                                                             str, bool)):
        return first
    return Param(namer.name(vals, arg, attr))


# -- rendering ------------------------------------------------------------------------------------
def render_class(name: str, base: str, doc: str, params: list[tuple[str, str]], code: ScopeCode) -> str:
    sig = "".join(f", {k}: {h}" if h else f", {k}" for k, h in params)
    head = f"    def __init__(self{sig}):"
    if len(head) > 100:
        head = "    def __init__(" + wrap(["self"] + [f"{k}: {h}" if h else k for k, h in params], " " * 8)[:-1] + \
            "\n    ):"
    doc = f'    """{doc}"""' if len(doc) <= 90 else \
        '    """' + "\n    ".join(textwrap.wrap(doc, 96)) + '\n    """'
    out = [f"class {name}({base}):", doc, "", head]
    if code.sequential:
        out += _sequential_init(code.members)
        out += ["        " + ln.replace("{m}", f"self[{i}]") for i, m in enumerate(code.members) for ln in m.inits]
        return "\n".join(out) + "\n"
    out.append("        super().__init__()")
    for m in code.members:
        out.append("        " + _member_line(m))
        acc = f"self.{m.attr}" if m.attr.isidentifier() else f"getattr(self, {m.attr!r})"
        ind = "            " if m.flag else "        "
        if m.inits and m.flag:
            out.append(f"        if {m.flag}:")
        out += [ind + ln.replace("{m}", acc) for ln in m.inits]
    out += ["", f"    def forward(self, {', '.join(code.args)}):"]
    out += ["        " + ln for ln in code.forward]
    out.append(f"        return {', '.join(code.returns)}")
    return "\n".join(out) + "\n"


def _member_line(m: Member) -> str:
    ind = "        "
    if m.how == "buffer":
        return f"self.register_buffer({m.attr!r}, {m.value}, persistent=False)"
    if m.how == "persistent buffer":
        return f"self.register_buffer({m.attr!r}, {m.value})"
    value = render_call(m.value, ind) if isinstance(m.value, Call) else m.value
    if m.flag:
        value = f"{value} if {m.flag} else None"
    note = "  # only a loss needs it (see --output); kept for the state_dict" if m.unused else ""
    if m.attr.isidentifier():
        return f"self.{m.attr} = {value}{note}"
    if isinstance(value, str) and value.startswith("nn.Parameter("):     # a `param` node named like block1-0
        return f"self.register_parameter({m.attr!r}, {value}){note}"
    return f"self.add_module({m.attr!r}, {value}){note}"


def _sequential_init(members: list[Member]) -> list[str]:
    ind = "            "
    if [m.attr for m in members] == [str(i) for i in range(len(members))]:
        body = [f"{ind}{render_call(m.value, ind)}," for m in members]
        return ["        super().__init__("] + body + ["        )"]
    body = [f"{ind}({m.attr!r}, {render_call(m.value, ind)})," for m in members]
    return ["        super().__init__(OrderedDict(["] + body + ["        ]))"]


@dataclass
class Export:
    source: str                     # the file's text
    class_name: str                 # the model's class
    inputs: list[str]               # spec inputs forward() takes, in order
    outputs: list[str]              # spec outputs forward() returns, in order (a tuple when several)


def resolve(g: Graph, name: str) -> Ref:
    """An output name, node name, node:port or input name -> Ref (as runtime.Model.resolve)."""
    from compiler.errors import UserError, did_you_mean
    if name in g.output_refs:
        return g.output_refs[name]
    node, _, port = name.partition(":")
    if node in g.inputs and not port:
        return Ref(node)
    if not g.has_node(node) and node in g.aliases:       # a block instance (train.predict: heads)
        return g.ref_of(name)
    if not g.has_node(node):
        raise UserError(f"unknown output '{name}'", hint=did_you_mean(name, list(g.output_refs) +
                                                                      [n.name for n in g.nodes]), code=2)
    outs = g.node(node).outputs
    if port and port not in outs:
        raise UserError(f"node '{node}' has no port '{port}' (ports: {', '.join(outs)})", code=2)
    return Ref(node, port if port and port != next(iter(outs)) else None)


def generate(g: Graph, source: str = "", outputs: dict[str, Ref] | None = None) -> Export:
    """The generated file for `g`, whose forward returns `outputs` (default: the spec's outputs). Raises
    layers.Unsupported with the reason when an op or a structure has no PyTorch form."""
    outputs = dict(g.output_refs) if outputs is None else outputs
    gen = Generator(g)
    model = gen.model_class(outputs)
    helpers = [HELPERS[h][0] for h in closure(gen.helpers)]
    body = "\n\n".join(helpers + gen.classes + [model])
    head = _header(g, gen.model_name, source)
    imports = []
    if "math." in body:
        imports.append("import math")
    if "OrderedDict(" in body:
        imports.append("from collections import OrderedDict")
    imports += [""] + (["import torch"] if "torch." in body else [])
    if "F." in body:
        imports.append("import torch.nn.functional as F")
    imports.append("from torch import nn")
    if imports[0] == "":
        imports = imports[1:]
    text = head + "\n".join(imports) + "\n\n\n" + body.replace("\n\n\n", "\n\n").replace("\nclass ", "\n\nclass ") \
        .replace("\ndef ", "\n\ndef ")
    return Export(text, gen.model_name, gen.model_inputs, list(outputs))


def _safe(text: str) -> str:
    """Text for a docstring: no quotes, backslashes or line breaks (the file is also executed)."""
    return "".join(ch if ch.isprintable() and ch not in "\"\\" else "?" for ch in str(text))


def _header(g: Graph, name: str, source: str) -> str:
    ins = ", ".join(_safe(k) for k in g.inputs)
    source = _safe(source)
    return (f'"""{_safe(g.name)}: a PyTorch module written by `specc export-torch`{" from " + source if source else ""}.\n\n'
            "Standalone: torch is its only dependency. Parameter and buffer names are specc's, so a specc\n"
            "checkpoint (.npz) loads with strict=True:\n\n"
            "    import numpy, torch\n"
            f"    model = {name}()\n"
            "    state = numpy.load(\"checkpoint.npz\")\n"
            "    model.load_state_dict({k: torch.from_numpy(state[k]) for k in model.state_dict()})\n"
            "    model.eval()\n"
            f"    outputs = model(...)          # spec inputs: {ins}\n"
            f"\nspecc {g.spec_hash[:12]}\n"
            '"""\n')
