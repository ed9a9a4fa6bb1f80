"""A long spec-fuzzing campaign: `specc check` on generated, mutated and corrupted specs, and every clean
generated spec run in the NumPy runtime and onnxruntime (tests/fuzz_gen.py, tests/fuzz_oracle.py).

    python tools/fuzz.py --minutes 10                  # a time budget (or --cases N)
    python tools/fuzz.py --cases 2000 --seed 7 --jobs 2 --out fuzz-out
    python tools/fuzz.py --families generated --minutes 5

Every finding (traceback, hang, mismatch) is written under OUT/<kind>-<site>/<k>/ (spec.yaml, command.txt,
detail.txt; at most --keep examples per site) and the run ends with a table: cases run, rate, exit codes,
findings by kind and by site (the innermost frame of specc's code, or the normalised message), so one
root cause is one row. Each worker is a process with a memory limit; the parent kills a worker that stops
answering (a hang the in-process alarm cannot interrupt, e.g. inside NumPy) and records the case it was on.
Exit status: 0 when nothing was found, 1 otherwise.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FAMILIES = ("generated", "mutated", "corrupted")
CHUNK = 25                          # examples per hypothesis run; a time budget is checked between cases


def _setup_path() -> None:
    for p in (str(ROOT), str(ROOT / "tests")):
        if p not in sys.path:
            sys.path.insert(0, p)


def slug(site: str) -> str:
    """A folder name for a site: readable, and unique (a short hash) when two sites start alike."""
    return (re.sub(r"[^A-Za-z0-9]+", "_", site).strip("_")[:60] or "site") + "-" + \
        hashlib.sha1(site.encode()).hexdigest()[:8]


# ------------------------------------------------------------------------------------------------------ worker
def worker(index: int, args: argparse.Namespace, quota: int, deadline: float, beat, log: str) -> None:
    """Run cases until `quota` cases or the deadline; one JSON line per case in `log`."""
    _setup_path()
    import resource
    if args.memory:
        limit = int(args.memory * (1 << 30))
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    from hypothesis import HealthCheck, Phase, given, seed, settings

    import fuzz_gen
    from fuzz_oracle import judge
    strategies = {"generated": fuzz_gen.generated(exclude=False), "mutated": fuzz_gen.mutated(exclude=False),
                  "corrupted": fuzz_gen.corrupted(exclude=False)}
    folder = Path(tempfile.mkdtemp(prefix=f"specc-fuzz-{index}-"))
    done = 0
    with open(log, "a", encoding="utf-8") as out:
        def body(case) -> None:
            nonlocal done
            if done >= quota or time.time() > deadline:
                return
            (Path(log).parent / f"current-{index}.txt").write_text(case.describe(), encoding="utf-8")
            beat.value = time.time()
            t0 = time.time()
            code, findings = judge(case, folder, args.timeout)
            done += 1
            out.write(json.dumps({"family": case.family, "code": code, "seconds": round(time.time() - t0, 4),
                                  "case": case.describe() if findings else None,
                                  "findings": [f.__dict__ for f in findings]}) + "\n")
            out.flush()

        chunk, size = 0, max(1, min(CHUNK, quota // len(args.families)))     # every family gets its share
        while done < quota and time.time() < deadline:
            family = args.families[(chunk + index) % len(args.families)]
            run = settings(max_examples=size, database=None, deadline=None, phases=[Phase.generate],
                           suppress_health_check=list(HealthCheck))(given(strategies[family])(body))
            try:
                seed(args.seed * 1_000_003 + index * 10_007 + chunk)(run)()
            except Exception as e:                      # noqa: BLE001 - a fuzzer bug: say so, go on
                print(f"fuzz: chunk {chunk} of {family} stopped: {type(e).__name__}: {e}", file=sys.stderr)
            chunk += 1
    beat.value = -1.0                                   # finished


# ------------------------------------------------------------------------------------------------------ parent
def campaign(args: argparse.Namespace) -> list[dict]:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    deadline = time.time() + args.minutes * 60 if args.minutes else float("inf")
    quota = -(-args.cases // args.jobs) if args.cases else 10**12
    ctx = mp.get_context("fork")
    procs: dict[int, tuple] = {}
    restarts = 0

    def start(i: int, remaining: int) -> None:
        wid = i + 1000 * restarts
        beat = ctx.Value("d", time.time())
        log = str(out / f"cases-{wid}.jsonl")
        p = ctx.Process(target=worker, args=(wid, args, remaining, deadline, beat, log), daemon=True)
        p.start()
        procs[i] = (p, beat, log, remaining, wid)

    for i in range(args.jobs):
        start(i, quota)
    while procs:
        time.sleep(0.5)
        for i, (p, beat, log, remaining, wid) in list(procs.items()):
            # check, run and export each get --timeout; a worker silent much longer is stuck inside C code
            stuck = beat.value > 0 and time.time() - beat.value > 4 * args.timeout + 30
            if p.is_alive() and not stuck:
                continue
            if stuck:
                p.kill()
            p.join()
            del procs[i]
            if beat.value < 0 or time.time() > deadline:
                continue
            _record_dead_worker(out, wid, log, p.exitcode, "hang" if stuck else "traceback")
            restarts += 1
            left = remaining - sum(1 for _ in open(log, encoding="utf-8"))
            if left > 0:
                start(i, left)
    return [json.loads(line) for f in sorted(out.glob("cases-*.jsonl")) for line in open(f, encoding="utf-8")]


def _record_dead_worker(out: Path, wid: int, log: str, exitcode: int | None, kind: str) -> None:
    """A worker that was killed or died: its current case becomes a finding."""
    current = out / f"current-{wid}.txt"
    case = current.read_text(encoding="utf-8") if current.exists() else "(unknown)"
    site = f"worker {'stopped answering' if kind == 'hang' else f'died (exit {exitcode})'}"
    with open(log, "a", encoding="utf-8") as f:
        f.write(json.dumps({"family": case[1:].split()[0] if case.startswith("[") else "?", "code": None,
                            "seconds": None, "case": case,
                            "findings": [{"kind": kind, "site": site, "command": "specc check spec.yaml",
                                          "detail": f"the worker process {site}; the case it was on is spec.yaml"}]})
                + "\n")


def report(rows: list[dict], out: Path, keep: int, elapsed: float) -> int:
    """Write the findings' folders and print the summary table; returns the number of distinct sites."""
    codes = Counter(str(r["code"]) for r in rows)
    kinds, sites, seen = Counter(), Counter(), Counter()
    first: dict[tuple, str] = {}
    for r in rows:
        for f in r["findings"]:
            key = (f["kind"], f["site"])
            kinds[f["kind"]] += 1
            sites[key] += 1
            seen[key] += 1
            if seen[key] <= keep:
                d = out / f"{f['kind']}-{slug(f['site'])}" / str(seen[key])
                d.mkdir(parents=True, exist_ok=True)
                text = r["case"] or ""
                header, _, spec = text.partition("\n")
                (d / "spec.yaml").write_text(spec, encoding="utf-8")
                (d / "command.txt").write_text(f"{f['command']}\n{header}\n", encoding="utf-8")
                (d / "detail.txt").write_text(f["detail"], encoding="utf-8")
                first.setdefault(key, str(d.parent.relative_to(out)))
    n = len(rows)
    print(f"cases run   {n}  in {elapsed:.0f} s  ({n / max(elapsed, 1e-9):.1f} cases/s)")
    print("by family   " + ", ".join(f"{k} {v}" for k, v in Counter(r["family"] for r in rows).items()))
    print("exit codes  " + ", ".join(f"{k}: {v}" for k, v in sorted(codes.items())))
    print("findings    " + (", ".join(f"{k} {kinds[k]}" for k in ("traceback", "hang", "mismatch")) if kinds else "none"))
    if sites:
        print(f"\n{'count':>6}  {'kind':<9}  site  (examples under {out})")
        for (kind, site), count in sites.most_common():
            print(f"{count:>6}  {kind:<9}  {site[:150]}\n{'':>19}{first[(kind, site)]}/")
    return len(sites)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", type=int, help="total cases to run (default: until --minutes)")
    p.add_argument("--minutes", type=float, help="time budget (default 10 when --cases is not given)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--families", default=",".join(FAMILIES), help=f"comma-separated, of {', '.join(FAMILIES)}")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per step of a case before it is a hang")
    p.add_argument("--memory", type=float, default=4.0, help="GB of address space per worker (0: no limit)")
    p.add_argument("--keep", type=int, default=3, help="examples kept per finding site")
    p.add_argument("--out", default="fuzz-out", help="folder for the findings (default fuzz-out)")
    args = p.parse_args(argv)
    args.families = [f.strip() for f in args.families.split(",") if f.strip()]
    bad = [f for f in args.families if f not in FAMILIES]
    if bad or not args.families:
        p.error(f"unknown family {bad[0] if bad else '(none)'}; choose from {', '.join(FAMILIES)}")
    if args.cases is None and args.minutes is None:
        args.minutes = 10.0
    if Path(args.out).exists() and any(Path(args.out).glob("cases-*.jsonl")):
        p.error(f"'{args.out}' holds an earlier campaign; give another --out")
    t0 = time.time()
    rows = campaign(args)
    return 1 if report(rows, Path(args.out), args.keep, time.time() - t0) else 0


if __name__ == "__main__":
    sys.exit(main())
