"""specc on PyTorch: `specc export-torch` (codegen: a readable standalone file) and `--backend torch`
(build: the same source executed in memory). Only build.py imports torch."""
from __future__ import annotations

from typing import Any

TORCH_HINT = "install the extra: pip install 'specc[torch]' (or pip install torch)"


def require_torch() -> None:
    """A clear message (exit 1) instead of an ImportError when torch is missing."""
    import importlib.util

    from compiler.errors import UserError
    try:
        found = importlib.util.find_spec("torch") is not None
    except ValueError:                      # sys.modules["torch"] is None: torch blocked
        found = False
    if not found:
        raise UserError("--backend torch needs PyTorch, which is not installed", hint=TORCH_HINT)


def load_state(graph: Any, weights: str, warn: bool = True) -> dict:
    """A checkpoint's state_dict arrays, checked as the NumPy runtime checks them."""
    from runtime.checkpoint import check_numeric, read_npz, split, warn_nonfinite
    state, meta, _opt = split(read_npz(weights, "checkpoint"))
    check_numeric(state, weights)
    if warn:
        warn_nonfinite(state, weights)
    return state


def run_torch(graph: Any, weights: str, inputs: dict[str, Any], device: str = "cpu") -> dict[str, Any]:
    """`specc run --backend torch`: the spec's outputs as NumPy arrays."""
    require_torch()
    from .build import TorchModel
    model = TorchModel(graph, device)
    model.load_numpy(load_state(graph, weights))
    model.eval()
    return model(**{k: v for k, v in inputs.items() if k in model.export.inputs or k not in graph.inputs})


def load_torch_model(graph: Any, weights: str, device: str = "cpu") -> tuple[Any, dict]:
    """`specc eval --backend torch`: a TorchModel with the checkpoint's weights, and its metadata."""
    require_torch()
    from runtime.checkpoint import read_meta
    from .build import TorchModel
    model = TorchModel(graph, device)
    model.load_numpy(load_state(graph, weights, warn=False))       # specc eval warns itself
    return model, read_meta(weights) or {}
