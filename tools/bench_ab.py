"""A/B of one runtime switch on whole training steps, in one process: the step alternates between the
switch's values (the order flips every pair), so both sides see the same machine state.

    python tools/bench_ab.py lenet5 SPECC_ORT_OPS=1,0 [--pairs 40] [--threads 2]
    python tools/bench_ab.py resnet18 runtime.parallel.SPLIT_ALWAYS=16777216,4611686018427387904

Prints the median step time of each value and their ratio. The switch is an environment variable that
the runtime reads on every call (SPECC_ORT_OPS, SPECC_CONV_KERNEL, SPECC_ONNX_STEPS, SPECC_BLAS_POLICY,
SPECC_FUSE, SPECC_OVERLAP), or a module attribute (module.NAME) set to each Python literal in turn (a
threshold, a switch); the models are tools/bench.py's.
"""
from __future__ import annotations

import argparse
import ast
import importlib
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="a tools/bench.py model: mlp, lenet5, vgg_bn, resnet18, lstm, transformer, gcn, "
                                  "conv_autoencoder")
    ap.add_argument("switch", help="VAR=a,b: the environment variable and its two values")
    ap.add_argument("--pairs", type=int, default=40, help="alternating pairs of steps (default 40)")
    ap.add_argument("--threads", type=int, default=2, help="threads for BLAS, onnxruntime (default 2)")
    return ap.parse_args(argv)


def _switch(var: str, vals: list[str]):
    """A function that sets the switch to one of vals: an environment variable, or module.NAME (an
    existing attribute, set to each value read as a Python literal)."""
    if "." not in var:
        return lambda v: os.environ.__setitem__(var, v)
    mod_name, _, attr = var.rpartition(".")
    mod = importlib.import_module(mod_name)
    if not hasattr(mod, attr):
        raise AttributeError(f"module {mod_name} has no attribute {attr!r}")
    parsed = {}
    for v in vals:
        try:
            parsed[v] = ast.literal_eval(v)
        except (ValueError, SyntaxError):
            raise ValueError(f"{v!r} is not a Python literal (a number, True/False, a string in quotes)") from None
    return lambda v: setattr(mod, attr, parsed[v])


def main(argv: list[str] | None = None) -> int:
    a = _args(argv)
    var, _, values = a.switch.partition("=")
    vals = values.split(",")
    if not var or len(vals) != 2:
        print("bench_ab: the switch is VAR=a,b (two values)", file=sys.stderr)
        return 2
    sys.argv = [sys.argv[0], "--threads", str(a.threads)]      # tools/bench.py sets BLAS threads on import
    from tools import bench
    if a.model not in bench.BY_KEY:
        print(f"bench_ab: no model {a.model!r}; one of {', '.join(bench.BY_KEY)}", file=sys.stderr)
        return 2
    try:
        switch = _switch(var, vals)
    except (ImportError, AttributeError, ValueError, SyntaxError) as e:
        print(f"bench_ab: {e}", file=sys.stderr)
        return 2
    side = bench.Side(bench.BY_KEY[a.model])
    times: dict[str, list[float]] = {v: [] for v in vals}
    for v in vals * 2:                                          # warm-up: sessions and caches for both
        switch(v)
        side.specc_train()
    for i in range(a.pairs):
        for v in (vals if i % 2 == 0 else vals[::-1]):
            switch(v)
            time.sleep(bench.GAP)
            t0 = time.perf_counter()
            side.specc_train()
            times[v].append(time.perf_counter() - t0)
    med = {v: statistics.median(ts) * 1e3 for v, ts in times.items()}
    print(f"{a.model}: {var}={vals[0]} {med[vals[0]]:.2f} ms, {var}={vals[1]} {med[vals[1]]:.2f} ms, "
          f"ratio {med[vals[1]] / med[vals[0]]:.3f} (median of {a.pairs} pairs, {a.threads} threads)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
