"""C = A·B + beta·C straight through the BLAS that numpy links against.

numpy's matmul has no beta: accumulating k GEMMs into one output costs a temporary and an extra pass
over the output per GEMM. The shifted-view convolution (runtime/kernels/convolution.py) accumulates
kh·kw GEMMs into one output, so it calls cblas_?gemm with beta = 1 through ctypes on the OpenBLAS that
the numpy wheel bundles (the same library, so runtime.threads' thread counts apply to it).

    if blas.fused(np.float32):
        blas.gemm(a, b, c, beta=1.0)       # c += a @ b, in place

Only the ILP64 OpenBLAS of the numpy wheels (symbols scipy_cblas_?gemm64_) is used; with any other
build, or SPECC_FUSED_GEMM=off, fused() is False and gemm falls back to numpy (correct, slower).
Operands are 2-d with one unit stride (rows or columns contiguous, any leading dimension), which covers
contiguous row ranges of a matrix and their transposes: what the convolution passes.
"""
from __future__ import annotations

import ctypes
import glob
import os

import numpy as np

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112
_lib: dict | None = None


def _load() -> dict:
    """{dtype: cblas function} of numpy's bundled ILP64 OpenBLAS, or {} when there is none."""
    global _lib
    if _lib is not None:
        return _lib
    _lib = {}
    if os.environ.get("SPECC_FUSED_GEMM", "on").strip().lower() == "off":
        return _lib
    root = os.path.dirname(np.__file__)
    paths = sorted(glob.glob(os.path.join(root + ".libs", "*openblas64*")) +
                   glob.glob(os.path.join(root, ".dylibs", "*openblas64*")))
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
            fns = {np.dtype(np.float32): lib.scipy_cblas_sgemm64_, np.dtype(np.float64): lib.scipy_cblas_dgemm64_}
        except (OSError, AttributeError):
            continue
        for dt, fn in fns.items():
            real = ctypes.c_float if dt == np.float32 else ctypes.c_double
            fn.restype = None
            fn.argtypes = ([ctypes.c_int] * 3 + [ctypes.c_int64] * 3 + [real, ctypes.c_void_p, ctypes.c_int64,
                           ctypes.c_void_p, ctypes.c_int64, real, ctypes.c_void_p, ctypes.c_int64])
        _lib = fns
        break
    return _lib


def fused(dtype) -> bool:
    """Whether gemm runs as one BLAS call (beta in place) for this dtype."""
    return np.dtype(dtype) in _load()


def _layout(m: np.ndarray):
    """(transpose flag, leading dimension) of a 2-d operand for row-major BLAS, or None."""
    s = m.itemsize
    r, c = m.shape
    st0, st1 = m.strides
    if st1 == s and st0 % s == 0 and st0 // s >= max(c, 1):
        return _NO_TRANS, st0 // s
    if st0 == s and st1 % s == 0 and st1 // s >= max(r, 1):
        return _TRANS, st1 // s
    return None


def gemm(a: np.ndarray, b: np.ndarray, c: np.ndarray, beta: float = 1.0) -> None:
    """c = a @ b + beta·c in place (beta 0: c is only written); a [m, k], b [k, n], c [m, n]."""
    fn = _load().get(c.dtype)
    la, lb = _layout(a), _layout(b)
    lc = _layout(c)
    if (fn is None or a.dtype != c.dtype or b.dtype != c.dtype or la is None or lb is None
            or lc is None or lc[0] != _NO_TRANS or min(a.shape + b.shape) < 2):
        if beta == 0:
            np.matmul(a, b, out=c)
        else:
            if beta != 1:
                c *= beta
            c += a @ b
        return
    m, k = a.shape
    n = b.shape[1]
    fn(_ROW_MAJOR, la[0], lb[0], m, n, k, 1.0, a.ctypes.data, la[1], b.ctypes.data, lb[1],
       beta, c.ctypes.data, lc[1])
