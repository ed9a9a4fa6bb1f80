"""Example data files for docs/data.md, generated (deterministic, seed 0; nothing is downloaded).

    python tools/make_data.py [--out data/examples]

Writes, under --out:
  houses.csv          1,000 houses: age, rooms, city (category), price (a regression target)
  arrays/             a folder of .npy files, one per input: x float32 [4000, 20], label int64 [4000]
  shapes/             900 RGB images in 3 class folders (circle, square, triangle), 32×32, PNG and JPEG
  reviews.tsv         1,200 one-line reviews and their sentiment (pos, neg)
  corpus.txt          3,000 sentences of a small grammar, for word2vec
  graph_edges.csv, graph_nodes.csv, graph.graphml
                      a 3-community graph of 90 nodes: features, label, split (train/val/test)
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CITIES = {"Lyon": 40.0, "Nice": 60.0, "Paris": 120.0, "Lille": 20.0}


def houses(path: Path, rng: np.random.Generator, n: int = 1000) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["age", "rooms", "city", "price"])
        for _ in range(n):
            age, rooms = int(rng.integers(0, 80)), int(rng.integers(1, 7))
            city = str(rng.choice(list(CITIES)))
            price = 80 + 35 * rooms - 0.6 * age + CITIES[city] + rng.normal(0, 8)
            w.writerow([age, rooms, city, f"{price:.1f}"])


def arrays(folder: Path, rng: np.random.Generator, n: int = 4000) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    centres = rng.normal(0, 1.5, (4, 20))
    label = rng.integers(0, 4, n)
    np.save(folder / "x.npy", (centres[label] + rng.normal(0, 1, (n, 20))).astype(np.float32))
    np.save(folder / "label.npy", label.astype(np.int64))


def shapes(folder: Path, rng: np.random.Generator, per_class: int = 300, side: int = 32) -> None:
    from PIL import Image, ImageDraw
    for cls in ("circle", "square", "triangle"):
        (folder / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            bg = tuple(int(v) for v in rng.integers(0, 90, 3))
            fg = tuple(int(v) for v in rng.integers(150, 256, 3))
            im = Image.new("RGB", (side, side), bg)
            d = ImageDraw.Draw(im)
            r = int(rng.integers(6, 12))
            cx, cy = (int(v) for v in rng.integers(r + 1, side - r - 1, 2))
            if cls == "circle":
                d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fg)
            elif cls == "square":
                d.rectangle([cx - r, cy - r, cx + r, cy + r], fill=fg)
            else:
                d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fg)
            im.save(folder / cls / f"{i:03d}.{'png' if i % 2 else 'jpg'}", quality=95)


GOOD = "great wonderful moving funny brilliant charming clever superb".split()
BAD = "boring dull awful clumsy tedious weak predictable bland".split()
NOUNS = "film plot cast story ending script music acting".split()


def reviews(path: Path, rng: np.random.Generator, n: int = 1200) -> None:
    lines = ["text\tlabel"]
    for _ in range(n):
        pos = bool(rng.integers(0, 2))
        words = []
        for _ in range(int(rng.integers(1, 4))):
            adj = rng.choice(GOOD if pos != (rng.random() < 0.15) else BAD)     # 15% of words off-tone
            words += ["the", str(rng.choice(NOUNS)), "was", str(adj)] + (["and"] if rng.random() < 0.5 else [])
        lines.append(" ".join(words).rstrip(" and").capitalize() + ".\t" + ("pos" if pos else "neg"))
    path.write_text("\n".join(lines) + "\n")


def corpus(path: Path, rng: np.random.Generator, n: int = 3000) -> None:
    animals, foods = "cat dog fox bird horse cow".split(), "apple bread fish grass seed corn".split()
    places, verbs = "farm forest river garden field barn".split(), "eats likes finds wants".split()
    out = []
    for _ in range(n):
        out.append(f"the {rng.choice(animals)} {rng.choice(verbs)} the {rng.choice(foods)} "
                   f"in the {rng.choice(places)}")
    path.write_text("\n".join(out) + "\n")


def graph(folder: Path, rng: np.random.Generator, per: int = 30) -> None:
    import networkx as nx
    k = 3
    v = k * per
    block = np.repeat(np.arange(k), per)
    p = np.where(block[:, None] == block[None, :], 0.2, 0.01)
    upper = np.triu(rng.random((v, v)) < p, 1)
    edges = np.argwhere(upper)
    feats = np.eye(k)[block] * 1.0 + rng.normal(0, 0.8, (v, k))
    split = rng.choice(["train", "val", "test"], v, p=[0.2, 0.3, 0.5])
    with open(folder / "graph_edges.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["source", "target"])
        w.writerows([f"n{a}", f"n{b}"] for a, b in edges)
    with open(folder / "graph_nodes.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "f0", "f1", "f2", "community", "split"])
        for i in range(v):
            w.writerow([f"n{i}", *(f"{x:.3f}" for x in feats[i]), f"c{block[i]}", split[i]])
    g = nx.Graph()
    for i in range(v):
        g.add_node(f"n{i}", f0=float(feats[i, 0]), f1=float(feats[i, 1]), f2=float(feats[i, 2]),
                   label=f"c{block[i]}", split=str(split[i]))
    g.add_edges_from((f"n{a}", f"n{b}") for a, b in edges)
    nx.write_graphml(g, folder / "graph.graphml")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "data" / "examples")
    args = ap.parse_args(argv)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    houses(out / "houses.csv", rng)
    arrays(out / "arrays", rng)
    shapes(out / "shapes", rng)
    reviews(out / "reviews.tsv", rng)
    corpus(out / "corpus.txt", rng)
    graph(out, rng)
    print(f"wrote {out}: houses.csv, arrays/, shapes/, reviews.tsv, corpus.txt, graph_edges.csv, "
          "graph_nodes.csv, graph.graphml")
    return 0


if __name__ == "__main__":
    sys.exit(main())
