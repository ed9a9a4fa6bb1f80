"""The generated module in memory: `--backend torch` for specc run / eval (imports torch).

The module is built by executing the very source `specc export-torch` writes (in a fresh namespace),
rather than by a second constructor: what runs is exactly what a user exports, and the export's parity
tests cover the backend. The source is specc's own output: names are turned into identifiers, attribute
values into literals (repr), and docstrings are stripped of quotes, so no spec text runs as code.
A training backend can reuse `TorchModel(graph, device, outputs=[objective terms, predict, target])`:
`module` is then a plain nn.Module whose forward returns what a training step needs, with specc's
parameter names (optimisers, DDP and torch.compile take it as is); `forward` gives named tensors.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from compiler.errors import UserError
from compiler.ir import Graph, Ref

from .codegen import Export, generate, resolve
from .layers import Unsupported

DTYPES = {"float32": torch.float32, "float64": torch.float64, "int64": torch.int64, "int32": torch.int32,
          "bool": torch.bool}


def pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: PyTorch sees no CUDA device on this machine",
                        hint="use --device cpu (or auto), or install a CUDA build of torch")
    return torch.device(device)


def export(graph: Graph, source: str = "") -> Export:
    try:
        return generate(graph, source)
    except Unsupported as e:
        raise UserError(f"cannot write '{graph.name}' as PyTorch code: {e}") from None


class TorchModel:
    """A spec's generated nn.Module with runtime.Model's call shape: model(**inputs) -> {output: ndarray}."""

    def __init__(self, graph: Graph, device: str = "cpu", outputs: list[str] | None = None):
        self.graph = graph
        self.device = pick_device(device)
        self.export, self.module = self._build(outputs)
        self._other: dict[tuple[str, ...], tuple[Export, torch.nn.Module]] = {}

    def _build(self, outputs: list[str] | None) -> tuple[Export, torch.nn.Module]:
        refs = None if outputs is None else {k: self.resolve(k) for k in outputs}
        try:
            exp = generate(self.graph, outputs=refs)
        except Unsupported as e:
            raise UserError(f"cannot run '{self.graph.name}' on PyTorch: {e}") from None
        ns: dict[str, Any] = {"__name__": f"specc_torch.{exp.class_name}"}
        exec(compile(exp.source, f"<specc export-torch {self.graph.name}>", "exec"), ns)
        return exp, ns[exp.class_name]().to(self.device)

    def resolve(self, name: str) -> Ref:
        return resolve(self.graph, name)

    @property
    def training(self) -> bool:
        return self.module.training

    def load_numpy(self, state: Mapping[str, np.ndarray]) -> None:
        """Load a specc state_dict (names -> arrays) with strict=True."""
        want = self.module.state_dict()
        missing = sorted(set(want) - set(state))
        extra = sorted(set(state) - set(want))
        if missing or extra:
            raise UserError(f"the checkpoint does not fit '{self.graph.name}' on the torch backend: "
                            f"{'missing ' + ', '.join(missing[:5]) if missing else ''}"
                            f"{'; ' if missing and extra else ''}{'unexpected ' + ', '.join(extra[:5]) if extra else ''}")
        tensors = {}
        for k, t in want.items():
            v = np.asarray(state[k])
            if tuple(v.shape) != tuple(t.shape):
                raise UserError(f"checkpoint parameter {k} has shape {list(v.shape)}, the spec needs {list(t.shape)}")
            tensors[k] = torch.from_numpy(np.ascontiguousarray(v)).to(t.dtype)
        self.module.load_state_dict(tensors, strict=True)

    def state_dict(self) -> dict[str, np.ndarray]:
        return self.numpy_state()

    def numpy_state(self) -> dict[str, np.ndarray]:
        return {k: v.detach().cpu().numpy() for k, v in self.module.state_dict().items()}

    def train(self, mode: bool = True) -> "TorchModel":
        self.module.train(mode)
        return self

    def eval(self) -> "TorchModel":
        return self.train(False)

    def tensor(self, name: str, value: Any) -> torch.Tensor:
        t = self.graph.inputs[name]
        return torch.as_tensor(np.asarray(value)).to(device=self.device, dtype=DTYPES.get(t.dtype, torch.float32))

    def module_for(self, outputs: list[str] | None) -> tuple[Export, torch.nn.Module]:
        """The module whose forward returns `outputs` (None: the spec's); other output sets (a loss for
        specc eval, a phase's objective in training) get a module of their own that shares this one's
        parameters and buffers (the same tensors, so training one trains all) and takes its mode."""
        if outputs is None or list(outputs) == self.export.outputs:
            return self.export, self.module
        key = tuple(outputs)
        if key not in self._other:
            exp, mod = self._build(list(outputs))
            share_tensors(mod, self.module)
            self._other[key] = (exp, mod)
        exp, mod = self._other[key]
        if mod.training != self.module.training:      # (train() walks every submodule: not on every step)
            mod.train(self.module.training)
        return exp, mod

    def forward(self, outputs: list[str] | None = None, **inputs: Any) -> dict[str, torch.Tensor]:
        exp, mod = self.module_for(outputs)
        missing = [k for k in exp.inputs if k not in inputs]
        if missing:
            raise UserError(f"'{self.graph.name}' needs input(s) {', '.join(missing)}")
        args = [self.tensor(k, inputs[k]) for k in exp.inputs]
        out = mod(*args)
        outs = out if len(exp.outputs) > 1 else (out,)
        return dict(zip(exp.outputs, outs))

    def __call__(self, outputs: list[str] | None = None, **inputs: Any) -> dict[str, np.ndarray]:
        with torch.no_grad():
            return {k: v.detach().cpu().numpy() for k, v in self.forward(outputs, **inputs).items()}


def share_tensors(mod: torch.nn.Module, main: torch.nn.Module) -> None:
    """Make `mod` (built from the same spec) use `main`'s very parameter and buffer tensors."""
    persistent = set(main.state_dict())
    for name, p in main.named_parameters(remove_duplicate=False):
        owner, _, leaf = name.rpartition(".")
        mod.get_submodule(owner).register_parameter(leaf, p)
    for name, b in main.named_buffers(remove_duplicate=False):
        owner, _, leaf = name.rpartition(".")
        mod.get_submodule(owner).register_buffer(leaf, b, persistent=name in persistent)
