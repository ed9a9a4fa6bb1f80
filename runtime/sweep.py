"""`specc sweep`: one training run per combination of values, and a table of results.

    specc sweep SPEC --grid train.optimizer.lr=1e-3,3e-3 --grid width=16,32 [--out DIR] [--epochs E]
                     [--data PATH] [--set k=v]...

A `--grid KEY=V1,V2,...` key is what `--set` takes: a spec param (`width`) or a dotted train key
(`train.optimizer.lr`); values are read as YAML (`1e-3` a number, `[3, 3]` a list: commas inside brackets
do not split). Every combination (the product of the grids, in the order given) is compiled and trained in
its own sub-folder of DIR (default `runs/<spec name>-sweep`), named after its values. Each run's quality is
its best checkpoint's monitored value (train.checkpoint, early stopping's monitor, else val.loss; for a
spec whose best.npz is its last epoch, the last epoch's val.loss or train.loss). `results.csv` in DIR holds
one row per combination, best first; it is rewritten after every run, so an interrupted sweep keeps the
runs it finished. A combination that fails (a bad value, a spec error, a diverging run) is a row with its
error, not the end of the sweep. Exit status: 0 when at least one run trained, 1 otherwise.
"""
from __future__ import annotations

import csv
import io
import itertools
import math
import re
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from compiler.overrides import load_graph, parse_set
from compiler.errors import SpecError, UserError

from . import data as D
from .checkpoint import read_meta
from .model import Model
from .train import fit

RESULTS = "results.csv"


def parse_grid(items: Sequence[str]) -> dict[str, list[Any]]:
    """{key: [values]} from KEY=V1,V2 texts; a malformed one is a usage error (exit 2)."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or not text.strip():
            raise UserError(f"--grid expects KEY=V1,V2,..., got '{item}'", hint="e.g. --grid train.optimizer.lr=1e-3,3e-3",
                            code=2)
        if key in grid:
            raise UserError(f"--grid '{key}' is given twice; list all its values in one --grid", code=2)
        values = _split_values(text)
        if any(not v.strip() for v in values):
            raise UserError(f"--grid '{item}' has an empty value", code=2)
        grid[key] = [parse_set([f"v={v.strip()}"])["v"] for v in values]
    if not grid:
        raise UserError("give at least one --grid KEY=V1,V2", code=2)
    return grid


def _split_values(text: str) -> list[str]:
    """Split on commas outside brackets and braces."""
    out, depth, cur = [], 0, ""
    for ch in text:
        depth += {"[": 1, "{": 1, "]": -1, "}": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    return out + [cur]


def run_name(combo: dict[str, Any]) -> str:
    """A folder name for a combination: short keys (the last dotted part) unless two would clash."""
    lasts = [k.rpartition(".")[2] for k in combo]
    keys = lasts if len(set(lasts)) == len(lasts) else list(combo)
    text = "_".join(f"{k}={_fmt(v)}" for k, v in zip(keys, combo.values()))
    return re.sub(r"[^A-Za-z0-9_.=+-]+", "-", text).strip("-") or "run"


def _fmt(v: Any) -> str:
    return format(v, "g") if isinstance(v, float) else str(v)


def sweep(spec: str, grid: dict[str, list[Any]], out: Path, *, epochs: int | None = None, data: str | None = None,
          sets: Sequence[str] = (), log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Train every combination; returns the result rows, best first (failed runs last)."""
    combos = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    rows: list[dict[str, Any]] = []
    for i, combo in enumerate(combos, 1):
        name = run_name(combo)
        log(f"[{i}/{len(combos)}] {' '.join(f'{k}={_fmt(v)}' for k, v in combo.items())} -> {out / name}")
        row = {**{k: _fmt(v) for k, v in combo.items()}, "status": "", "monitor": "", "value": None,
               "best_epoch": None, "epochs": None, "time_s": None, "folder": str(out / name), "error": ""}
        t0 = time.perf_counter()
        try:
            row.update(_train_one(spec, combo, out / name, epochs, data, sets))
            row["status"] = "ok"
            log(f"    {row['monitor']} {row['value']:.4f} (epoch {row['best_epoch']} of {row['epochs']})")
        except KeyboardInterrupt:
            row.update(status="interrupted", error="interrupted")
            rows.append(row)
            _write(out / RESULTS, _ranked(rows))
            raise
        except (SpecError, UserError) as e:
            row.update(status="failed", error=_one_line(e))
            log(f"    failed: {row['error']}")
        except Exception as e:                      # noqa: BLE001 - one bad combination must not end the sweep
            row.update(status="failed", error=f"{type(e).__name__}: {e}")
            log(f"    failed: {row['error']}")
        row["time_s"] = round(time.perf_counter() - t0, 2)
        rows.append(row)
        _write(out / RESULTS, _ranked(rows))
    return _ranked(rows)


def _one_line(e: Exception) -> str:
    if isinstance(e, SpecError) and getattr(e, "diagnostics", None):
        return "; ".join(d.message for d in e.diagnostics)
    return getattr(e, "message", None) or str(e)


def _train_one(spec: str, combo: dict[str, Any], out: Path, epochs: int | None, data: str | None,
               sets: Sequence[str]) -> dict[str, Any]:
    from .runs import check_previous_run
    g = load_graph(spec, [*sets, *(f"{k}={_yaml(v)}" for k, v in combo.items())])
    cfg = g.train
    if cfg is None:
        raise UserError(f"'{spec}' has no train section")
    check_previous_run(out, g, None)
    model = Model(g, seed=cfg.seed)
    from .train import make_plan
    plan = make_plan(model, cfg)
    if data is None and cfg.data.train is None:
        raise UserError("no training data: give --data PATH.npz or train.data.train in the spec", code=2)
    splits = D.load_splits(g, cfg.data, Path(spec).parent, plan.needed, train=data, seed=cfg.seed)
    history = fit(model, splits.train, splits.val, epochs=epochs, out_dir=out, log=None, progress=False)
    meta = read_meta(out / "best.npz") or {}
    monitor, value = meta.get("monitor", ""), meta.get("value")
    mode = meta.get("mode", "min")
    if value is None and history:                  # best.npz is the last epoch: judge it on its loss
        monitor = "val.loss" if "val.loss" in history[-1] else "train.loss"
        value, mode = history[-1].get(monitor), "min"
    return {"monitor": monitor, "value": value, "mode": mode, "best_epoch": meta.get("epoch"),
            "epochs": len(history)}


def _yaml(v: Any) -> str:
    """A value back as --set text (parse_set reads it as YAML)."""
    import json
    return v if isinstance(v, str) else json.dumps(v)


def _ranked(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Successful runs by value (the direction of their monitor), then the failed ones in grid order."""
    def key(r: dict[str, Any]) -> tuple:
        v = r.get("value")
        if r["status"] != "ok" or v is None or not math.isfinite(v):
            return (1, 0.0)
        return (0, -v if r.get("mode") == "max" else v)
    return sorted(rows, key=key)


COLUMNS = ("status", "monitor", "value", "best_epoch", "epochs", "time_s", "folder", "error")


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    grid_keys = [k for k in rows[0] if k not in COLUMNS and k != "mode"] if rows else []
    return ["rank", *grid_keys, *COLUMNS]


def _cells(rows: list[dict[str, Any]]) -> list[list[str]]:
    out = []
    for i, r in enumerate(rows, 1):
        cells = {**r, "rank": str(i) if r["status"] == "ok" else "-"}
        out.append(["" if cells.get(c) is None else (format(cells[c], ".6g") if isinstance(cells[c], float)
                                                     else str(cells[c])) for c in _columns(rows)])
    return out


def _write(path: Path, rows: list[dict[str, Any]]) -> None:
    from compiler.files import atomic_write_text
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(_columns(rows))
    w.writerows(_cells(rows))
    atomic_write_text(path, buf.getvalue(), make_parents=True)


def table(rows: list[dict[str, Any]]) -> str:
    """The results as an aligned text table (the error column last, unpadded)."""
    cols = _columns(rows)
    cells = _cells(rows)
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths)).rstrip()]
    lines += ["  ".join(x.ljust(w) for x, w in zip(r, widths)).rstrip() for r in cells]
    return "\n".join(lines)
