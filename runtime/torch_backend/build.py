"""The generated module in memory: `--backend torch` for specc run / eval (imports torch).

The module is built by executing the very source `specc export-torch` writes (in a fresh namespace),
rather than by a second constructor: what runs is exactly what a user exports, and the export's parity
tests cover the backend. The source is specc's own output: names are turned into identifiers, attribute
values into literals (repr), and docstrings are stripped of quotes, so no spec text runs as code.
A training backend can reuse `TorchModel`: `module` is a plain nn.Module with specc's parameter names
(optimisers, DDP and torch.compile take it as is); `forward` gives named outputs.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from compiler.errors import UserError
from compiler.ir import Graph

from .codegen import Export, generate
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

    def __init__(self, graph: Graph, device: str = "cpu"):
        self.graph = graph
        self.export = export(graph)
        ns: dict[str, Any] = {"__name__": f"specc_torch.{self.export.class_name}"}
        exec(compile(self.export.source, f"<specc export-torch {graph.name}>", "exec"), ns)
        self.device = pick_device(device)
        self.module: torch.nn.Module = ns[self.export.class_name]().to(self.device)

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

    def forward(self, **inputs: Any) -> dict[str, torch.Tensor]:
        missing = [k for k in self.export.inputs if k not in inputs]
        if missing:
            raise UserError(f"'{self.graph.name}' needs input(s) {', '.join(missing)}")
        args = [self.tensor(k, inputs[k]) for k in self.export.inputs]
        out = self.module(*args)
        outs = out if len(self.export.outputs) > 1 else (out,)
        return dict(zip(self.export.outputs, outs))

    def __call__(self, **inputs: Any) -> dict[str, np.ndarray]:
        with torch.no_grad():
            return {k: v.detach().cpu().numpy() for k, v in self.forward(**inputs).items()}
