"""Data-loading throughput (`python tools/bench.py --data-throughput`): does reading data starve training?

- Image folder: 1,000 generated images (10 classes, 96×96, half JPEG half PNG) decoded, converted and
  resized to [3, 64, 64] batch by batch: images/s decoded, beside the training step time of a small CNN
  on such batches, and one epoch of runtime.fit from the folder with the prefetch thread, without it, and
  from the same images already decoded in memory (3 alternating repeats, medians).
- CSV: a generated 1,000,000-row table (5 numeric columns, a category, a label) read by specc's reader
  (Python's csv module, then NumPy conversion per column), against numpy.loadtxt on its numeric columns.
"""
from __future__ import annotations

import csv
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SPEC = """\
specc: 1
name: folder_cnn
inputs: {image: [N, 3, 64, 64], label: {shape: [N], dtype: int64}}
layers:
  - {op: conv2d, name: conv1, in: image, out_channels: 16, kernel_size: 3, stride: 2, padding: 1}
  - {op: relu, name: act1}
  - {op: conv2d, name: conv2, out_channels: 32, kernel_size: 3, stride: 2, padding: 1}
  - {op: relu, name: act2}
  - {op: global_avg_pool2d, name: pool}
  - {op: linear, name: fc, out_features: 10}
  - {op: cross_entropy, name: loss, in: [fc, label]}
outputs: [fc]
train: {objective: loss, optimizer: {type: sgd, lr: 0.01, momentum: 0.9}, batch_size: 64, epochs: 1,
        data: {train: images}}
"""


def make_images(root: Path, n: int = 1000, side: int = 96) -> None:
    from PIL import Image
    rng = np.random.default_rng(0)
    for i in range(n):
        c = root / f"class{i % 10}"
        c.mkdir(parents=True, exist_ok=True)
        small = rng.integers(0, 256, (side // 8, side // 8, 3), dtype=np.uint8)      # smooth, photo-like
        im = Image.fromarray(small).resize((side, side), Image.BILINEAR)
        im.save(c / f"{i}.{'jpg' if i % 2 else 'png'}", quality=90)


def make_csv(path: Path, rows: int = 1_000_000) -> None:
    rng = np.random.default_rng(0)
    num = rng.normal(size=(rows, 5)).round(4)
    cats = np.array(["north", "south", "east", "west"])[rng.integers(0, 4, rows)]
    label = rng.integers(0, 3, rows)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["a", "b", "c", "d", "e", "region", "label"])
        w.writerows(zip(*num.T.tolist(), cats.tolist(), label.tolist()))


def time_images(work: Path, repeats: int = 3) -> dict[str, Any]:
    import compiler
    import runtime
    from runtime import data as D
    from runtime.train import make_plan
    make_images(work / "images")
    (work / "s.yaml").write_text(SPEC)
    g = compiler.compile_file(work / "s.yaml")
    ds = D.load_splits(g, g.train.data, work).train
    n = len(ds)
    t0 = time.perf_counter()
    decoded = [b for b in ds.batches(64)]
    decode_s = time.perf_counter() - t0
    mem = D.Dataset({"image": np.concatenate([b["image"] for b in decoded]),
                     "label": np.concatenate([b["label"] for b in decoded])}, "in memory")
    model = runtime.Model(g, seed=0)
    plan = make_plan(model, g.train)
    opt = runtime.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    steps = []
    for b in decoded[:8]:
        t = time.perf_counter()
        model.zero_grad()
        out = model.forward(outputs=["loss"], **{k: b[k] for k in plan.needed})
        out["loss"].backward()
        opt.step()
        steps.append(time.perf_counter() - t)
    step = statistics.median(steps[2:])

    def epoch(data: Any, prefetch: bool = True) -> float:
        keep = D.prefetch
        if not prefetch:
            D.prefetch = lambda it, depth=2: it
        try:
            t = time.perf_counter()
            runtime.fit(runtime.Model(g, seed=0), data, log=None, progress=False)
            return time.perf_counter() - t
        finally:
            D.prefetch = keep

    times: dict[str, list[float]] = {"prefetch": [], "no_prefetch": [], "memory": []}
    for _ in range(repeats):                # alternating, so that load from other processes hits all three
        times["prefetch"].append(epoch(ds))
        times["no_prefetch"].append(epoch(ds, False))
        times["memory"].append(epoch(mem))
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"images": n, "decode_per_s": n / decode_s, "step_ms": step * 1e3, "batch": 64,
            "decode_ms_per_batch": decode_s / len(decoded) * 1e3, "repeats": repeats,
            "epoch_prefetch_s": med["prefetch"], "epoch_no_prefetch_s": med["no_prefetch"],
            "epoch_memory_s": med["memory"]}


def time_csv(work: Path) -> dict[str, Any]:
    from compiler.spec import Source
    from runtime.data.table import read_table
    path = work / "big.csv"
    make_csv(path)
    t = time.perf_counter()
    r = read_table(str(path), Source(csv=str(path), features=["a", "b", "c", "d", "e", "region"],
                                     categorical=["region"], label="label"))
    specc_s = time.perf_counter() - t
    assert r.fields["features"].shape == (1_000_000, 9)
    t = time.perf_counter()
    np.loadtxt(path, delimiter=",", skiprows=1, usecols=(0, 1, 2, 3, 4, 6), dtype=np.float64)
    loadtxt_s = time.perf_counter() - t
    return {"rows": 1_000_000, "specc_csv_s": specc_s, "numpy_loadtxt_s": loadtxt_s}


def run_data_throughput(quick: bool = False) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="specc-bench-data-") as tmp:
        work = Path(tmp)
        img = time_images(work, 1 if quick else 3)
        print(f"image folder: {img['images']} images (96x96 JPEG/PNG -> [3, 64, 64]): "
              f"{img['decode_per_s']:,.0f} images/s decoded ({img['decode_ms_per_batch']:.1f} ms per batch of "
              f"{img['batch']}); training step {img['step_ms']:.1f} ms per batch", flush=True)
        print(f"  one epoch of runtime.fit (median of {img['repeats']}): {img['epoch_prefetch_s']:.2f} s from the folder with prefetch, "
              f"{img['epoch_no_prefetch_s']:.2f} s without, {img['epoch_memory_s']:.2f} s from memory", flush=True)
        res = {"images": img}
        if not quick:
            tab = time_csv(work)
            print(f"csv: 1,000,000 rows: specc (csv module) {tab['specc_csv_s']:.1f} s, numpy.loadtxt "
                  f"(numeric columns only) {tab['numpy_loadtxt_s']:.1f} s", flush=True)
            res["csv"] = tab
    return res


if __name__ == "__main__":
    import argparse
    parser = argparse.ArgumentParser(description="Data loading: image-folder decoding beside a training step, "
                                     "and reading a 1,000,000-row CSV (also: tools/bench.py --data-throughput)")
    parser.add_argument("--quick", action="store_true", help="one repeat, no CSV timing")
    run_data_throughput(parser.parse_args().quick)
