"""Memory: the allocator tuning, and the guard that refuses a tensor too big for this machine.

Allocator: keep freed large NumPy buffers in the process instead of handing them back to the OS.

glibc returns every allocation above M_MMAP_THRESHOLD to the kernel when freed, so the next
same-sized temporary faults in fresh pages again (hundreds of page faults per 32 MB array).
A training step allocates the same temporaries every iteration; raising the thresholds once
lets them be reused. Set SPECC_NO_MALLOPT=1 to leave the allocator alone.

Guard: parameters, inputs, activations and checkpoint arrays are sized from their shapes before NumPy
allocates them; one that cannot fit in the available memory is a MemoryLimitError (a UserError: one
line, exit 1) saying how much it would need, instead of a MemoryError traceback or the OOM killer.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import math
import os
import sys
from typing import Any

from compiler.errors import UserError
from compiler.summary import ITEMSIZE          # bytes per element of each dtype, as check estimates them

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
_LIMIT = 1 << 30            # allocations up to 1 GiB come from the heap and stay there


def tune_allocator() -> bool:
    if os.environ.get("SPECC_NO_MALLOPT") or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(M_MMAP_THRESHOLD, _LIMIT)) and bool(mallopt(M_TRIM_THRESHOLD, 2 * _LIMIT))


# --------------------------------------------------------------------------- the memory guard



class MemoryLimitError(UserError):
    """A tensor would not fit in the memory this machine has available (raised before NumPy allocates it)."""


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_room() -> int | None:
    """What the cgroup (v2) memory limit still leaves, when one is set (containers)."""
    try:
        with open("/sys/fs/cgroup/memory.max", encoding="ascii") as f:
            limit = f.read().strip()
        if limit == "max":
            return None
        with open("/sys/fs/cgroup/memory.current", encoding="ascii") as f:
            used = int(f.read().strip())
        return max(int(limit) - used, 0)
    except (OSError, ValueError):
        return None


def _parse_size(text: str) -> int | None:
    t = text.strip().upper().removesuffix("B")
    scale = {"K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}.get(t[-1:], 1)
    try:
        return int(float(t[:-1] if scale != 1 else t) * scale)
    except ValueError:
        return None


def available_bytes() -> int | None:
    """Memory this process may still allocate: MemAvailable from /proc/meminfo (capped by a cgroup limit),
    else the free physical pages; None when the platform tells nothing (the guard is then off).
    SPECC_MEMORY_LIMIT (bytes, or with a K/M/G/T suffix) replaces the measurement; `off` turns the guard off."""
    env = os.environ.get("SPECC_MEMORY_LIMIT", "").strip()
    if env.lower() == "off":
        return None
    if env and (n := _parse_size(env)) is not None:
        return n
    found = [n for n in (_meminfo_available(), _cgroup_room()) if n is not None]
    if not found:
        try:
            found = [os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")]
        except (ValueError, OSError, AttributeError):
            return None
    return min(found)


def fmt_bytes(n: float) -> str:
    """3.6 TB, 22.1 GB, 512 B (decimal units, as disk and memory sizes are usually quoted)."""
    for div, unit in ((1e15, "PB"), (1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
        if n >= div:
            v = n / div
            return f"{v:.3g} {unit}" if v < 1000 else f"{v:,.0f} {unit}"
    return f"{int(n)} B"


def nbytes(shape: tuple[int, ...], dtype: str) -> int:
    return math.prod(int(d) for d in shape) * ITEMSIZE.get(dtype, 8)


def ensure_fits(need: int, what: str, at: str = "", hint: str | None = None) -> None:
    """Refuse, before allocating, `need` bytes more than the memory available (`what` names the tensor)."""
    have = available_bytes()
    if have is None or need <= have:
        return
    raise MemoryLimitError(f"{what} needs {fmt_bytes(need)}{at}; this machine has {fmt_bytes(have)} available",
                           hint=hint or "make the sizes in the spec (or the batch) smaller, or run on a machine "
                                        "with more memory")


def ensure_inputs_fit(graph: Any, batch: int) -> None:
    """Refuse a graph input that cannot fit at `batch` samples (a symbolic first dimension is the batch; any
    other symbol counts 1), before data is loaded or noise drawn for it."""
    for name, t in graph.inputs.items():
        shape = tuple(d if isinstance(d, int) else batch if i == 0 else 1 for i, d in enumerate(t.shape))
        ensure_fits(nbytes(shape, t.dtype), f"input '{name}' [{t}]", f" at batch {batch}",
                    hint="make the input's sizes in the spec (or train.batch_size) smaller, or run on a machine "
                         "with more memory")


def guard_params(graph: Any) -> None:
    """Refuse, before allocating any, parameters that cannot fit in the available memory."""
    sizes = {name: nbytes(spec.shape, spec.dtype) for name, (spec, _) in graph.params().items()}
    if sizes:
        name = max(sizes, key=sizes.__getitem__)
        ensure_fits(sizes[name], f"parameter '{name}' {list(graph.params()[name][0].shape)}")
        ensure_fits(sum(sizes.values()), f"the {len(sizes)} parameters of '{graph.name}'")


# ops whose kernels return a view of their input (or the input itself): their outputs allocate nothing
VIEW_OPS = frozenset({"identity", "detach", "reshape", "flatten", "squeeze", "unsqueeze", "permute", "transpose",
                      "expand", "slice", "select"})


def guard_activations(spec: str, nodes: list, symbols: dict[str, int], grad: bool) -> None:
    """Refuse, before running, a node output too big for the available memory at the sizes the inputs gave
    (and, for a pass kept for backward, all of them together)."""
    at = f" at {', '.join(f'{k}={v}' for k, v in symbols.items())}" if symbols else ""
    total, biggest, what = 0, -1, ""
    for n in nodes:
        if n.op in VIEW_OPS:
            continue
        for port, t in n.outputs.items():
            b = nbytes(tuple(symbols.get(d, 1) if isinstance(d, str) else d for d in t.shape), t.dtype)
            total += b
            if b > biggest:
                biggest, what = b, f"the output of node '{n.name}' ({n.op}{'' if port == 'out' else ':' + port}) " \
                                   f"[{t}]"
    if biggest >= 0:
        ensure_fits(biggest, what, at)
    if grad:
        ensure_fits(total, f"a training step of '{spec}' (activations kept for backward)", at)
