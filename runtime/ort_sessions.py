"""The onnxruntime sessions behind the runtime's onnxruntime kernels (runtime/mlas_conv.py, onnx_steps.py).

One small session per geometry, kept in a bounded LRU cache (`cached`). Every session is made the same
way (`make`): the given thread count; idle threads sleep instead of spinning (a spinning thread would take
the core from OpenBLAS's or the caller's), no per-session memory arena (memory goes back to the allocator
after each run: LeNet-5's training peak was 66 MiB with arenas, 18 MiB without), warnings silenced.
"""
from __future__ import annotations

import os
import threading
from collections import OrderedDict
from typing import Any, Callable

MAX_SESSIONS = 256          # geometries × thread counts kept (a training run has a few per conv or recurrent
                            # layer, at one and at two threads: runtime/overlap.py; ResNet-50's ~110)
_cache: OrderedDict = OrderedDict()
_lock = threading.RLock()
_owner: list[int] = []      # the process that first loaded onnxruntime's kernels


def loaded() -> None:
    """Record that this process has started onnxruntime (its thread pools exist from now on)."""
    if not _owner:
        _owner.append(os.getpid())


def forked() -> bool:
    """Whether this is a fork()ed child of a process that had started onnxruntime: its thread pools do
    not survive fork (a session made in such a child hung), so the callers keep their NumPy kernels."""
    return bool(_owner) and _owner[0] != os.getpid()


def make(model: Any, n_threads: int, optimize: bool = False) -> Any:
    """An InferenceSession of the ONNX ModelProto on the CPU (graph optimisations only if `optimize`)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = n_threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    so.enable_cpu_mem_arena = False
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    loaded()
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def cached(key: tuple, build: Callable[[], Any]) -> Any:
    """The value cached under `key`, made by build() on a miss; the least recently used goes past
    MAX_SESSIONS. Thread-safe: kernels call it from runtime.parallel's workers too."""
    with _lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
        hit = build()
        _cache[key] = hit
        while len(_cache) > MAX_SESSIONS:
            _cache.popitem(last=False)
        return hit


def keys() -> list[tuple]:
    """The keys cached now (for tests)."""
    return list(_cache)
