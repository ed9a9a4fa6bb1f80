"""A whole spec compiled: its file loaded with its imports, params applied, inputs, layers, outputs, and the
train and generate sections checked; one Graph, or a SpecError with every problem found."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ..ir import Graph
from ..load import SMap
from ..spec import Spec
from ..train_section import build_train
from ..values import Abort, public_aliases
from .boundaries import apply_overrides, build_inputs, build_outputs, check_train
from .diagnose import Compiler
from .expander import Expander
from .modules import STD_LIB, load_module
from .scope import Scope


def compile_tree(tree: Any, path: str, params: dict[str, Any] | None, text: str, base_dir: Path,
                 sources: dict[str, str] | None = None) -> Graph:
    c = Compiler(sources if sources is not None else {path: text})
    c.sources.setdefault(path, text)
    if isinstance(tree, SMap) and "blocks" in tree and "inputs" not in tree and "layers" not in tree:
        stem = Path(path).stem
        std = Path(path).resolve().parent == STD_LIB.resolve()
        c.error(f"'{path}' is a block library (blocks, but no inputs or layers): it is imported, not compiled",
                tree.key_locs.get("blocks", tree.loc),
                f"import it from a spec: imports: {{{stem}: \"{'std:' + stem if std else Path(path).name}\"}}, "
                f"then use: {stem}.<block>")
        raise c.fail()
    mod = load_module(c, tree, path, base_dir.resolve(), Spec, (str(Path(path).resolve()),))
    if mod is None:
        raise c.fail()
    spec: Spec = mod.spec
    env = apply_overrides(c, spec, tree, params or {})
    mod.env = env                             # its blocks see the same values as its layers
    ex = Expander(c)
    top = Scope(prefix="", param_prefix="", env=env, module=mod)
    graph_inputs = build_inputs(c, ex, tree, spec, top)
    try:
        if tree.get("layers") is not None:
            ex.expand_layers(tree["layers"], top)
    except Abort:                             # a limit on the whole expansion: nothing more is checked
        raise c.fail() from None
    outputs = build_outputs(c, ex, tree, spec, top)
    train = build_train(c, tree, env, params or {}, path)
    if train is not None and not c.diags:
        check_train(c, ex, tree, train, top, graph_inputs)
    generate = None
    if spec.generate is not None:
        from ..generate_check import check_generate
        from ..spec import Generate
        generate = c.validate_model(Generate, tree["generate"], path, prefix=("generate",))
        if generate is not None and not c.diags:
            generate = check_generate(c, ex, tree, generate, top, graph_inputs, outputs)
    if c.diags:
        raise c.fail()
    g = Graph(name=spec.name, inputs=graph_inputs, output_refs=outputs, nodes=ex.nodes, train=train,
              source=path, instances=ex.uses)
    g.spec_hash = spec_hash(g)
    g.generate = generate
    g.aliases = public_aliases(ex.all, {n.name for n in ex.nodes}, graph_inputs)
    return g


def spec_hash(g: Graph) -> str:
    payload = {
        "name": g.name,
        "inputs": {k: [list(map(str, t.shape)), t.dtype] for k, t in g.inputs.items()},
        "outputs": {k: str(r) for k, r in g.output_refs.items()},
        "nodes": [[n.name, n.op, n.attrs.model_dump(mode="json"), [str(r) for r in n.inputs], n.param_prefix]
                  for n in g.nodes],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
