"""Data sets for training and evaluation: sources read, mapped onto the spec's inputs, checked, split, batched.

Modules: `dataset` (Dataset: columns + an index of rows; split; prefetch), `columns` (memory-mapped and
lazy columns), `fields` (what a source gives and how it maps onto inputs), `sources` (telling and
reading sources, load_splits), one reader per kind (`arrays`, `table`, `images`, `text`, `graphs`),
`check` (every problem in one error), `inspect` (`specc data inspect`), `builtin` (built-in sets).
docs/data.md is the user's guide.

A data source is a path (`.npz` with arrays named after the spec's inputs; a folder of `.npy` files; a
folder of class folders of images; `.csv`/`.tsv`; `.txt`; a graph file), a mapping with options
(compiler.spec.Source), or a built-in data set:

- `builtin:digits` — scikit-learn's bundled handwritten digits (1,797 8×8 grey images, shipped inside the
  scikit-learn package, no download): `image` float32 `[n, 1, 8, 8]` scaled to [0, 1] and `label` int64
  `[n]`, split once into a fixed, stratified 80% train / 20% test partition (seed 0). As `train.data.train`
  it means the train part, as `train.data.test` (or `specc eval --data builtin:digits`) the test part;
  `builtin:digits/train`, `builtin:digits/test` and `builtin:digits/all` name a part explicitly.
  The image array is reshaped to the spec's input shape when that holds 64 values per sample (`[N, 64]`),
  and resized to the spec's image size ([N, 1, 28, 28]). `python tools/digits.py` writes the same
  partition to `data/digits_train.npz` and `data/digits_test.npz`.
- the other built-in sets, `builtin:NAME[/PART][?option=value,...]` (builtin.py; `specc data list`;
  docs/builtin-data.md): 2-D toy sets, sequence tasks, sets of digits, the karate club, word2vec pairs.

Paths written in a spec (`train.data`) are relative to the spec file's folder; paths given on the command
line are relative to the current directory.

Checks (every failure, in every split, collected into one UserError naming the array and what was expected): every input the run needs
is present; ranks and fixed sizes match, a symbolic size (N) is the same across arrays; float inputs take
float (or integer, converted) arrays with finite values, int64 inputs take integer arrays (floats are
refused, even whole ones: store class indices as integers), bool inputs take bool or 0/1 arrays; class
indices fed to cross_entropy / nll_loss are in [0, C) with C the logits' dim 1, one_hot and embedding
indices below num_classes / num_embeddings. Pickled (object) arrays are refused when the file is read.
"""
from .builtin import BUILTIN, BUILTINS, digits_fit, suggest
from .builtin import hint as builtin_hint
from .builtin_images import digits
from .check import check, check_ranges, needed_inputs
from .dataset import Dataset, Splits, prefetch, split
from .sources import as_dataset, as_source, load, load_splits, read, resolve

__all__ = ["BUILTIN", "BUILTINS", "Dataset", "Splits", "as_dataset", "as_source", "builtin_hint", "check",
           "check_ranges", "digits", "digits_fit", "load", "load_splits", "needed_inputs", "prefetch", "read",
           "resolve", "split", "suggest"]
