"""The commands that use a trained model (docs/use.md): `specc generate`, `sample`, `interpolate`, `saliency`,
`attack`, `neighbors`, `attention`, `boundary`. Each imports its runtime/use/ module when it runs."""
from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

import numpy as np

from compiler.errors import UserError

if TYPE_CHECKING:
    from runtime.model import Model
    from runtime.use.runner import Key, Runner


def cmd_generate(args: argparse.Namespace) -> int:
    from runtime.use.common import guard, input_files, load_model, parse_values, save_npz
    from runtime.use.generate import as_array, decode, read_vocab
    if args.temperature <= 0:
        raise UserError("--temperature must be positive", code=2)
    if args.strategy != "sample" and (args.top_k is not None or args.temperature != 1.0):
        raise UserError("--temperature and --top-k apply to --strategy sample", code=2)
    if args.out:
        guard(args.out, ".npz", (args.spec, args.weights, *input_files(args.input)))
    vocab = read_vocab(args.vocab) if args.vocab else None
    model = load_model(args.spec, args.weights, args.set)
    inputs = parse_values(args.input)
    res = decode(model, inputs, args.strategy, args.beam, args.temperature, args.top_k, args.max_len, args.seed)
    gen = model.graph.generate
    for i, (toks, sc) in enumerate(zip(res.tokens, res.scores)):
        words = [vocab[t] if vocab and t < len(vocab) else str(t) for t in toks]
        print(f"{i}: {' '.join(words)}   (log p {sc:.3f})")
    if args.out:
        save_npz(args.out, {"tokens": as_array(res, gen.pad), "lengths": [len(t) for t in res.tokens],
                            "scores": res.scores})
        print(f"wrote {args.out}: tokens, lengths, scores")
    return 0


def prepare(args: argparse.Namespace) -> tuple[Model, Runner, Key, Key, list[str]]:
    from runtime.use.common import guard_picture, input_files, load_model
    from runtime.use.runner import Runner
    from runtime.use.sample import conditions, latent_key, output_key
    guard_picture(args.out, ".npz", (args.spec, args.weights, *input_files(getattr(args, "input", None)),
                                     *input_files(getattr(args, "input2", None))))
    model = load_model(args.spec, args.weights, args.set)
    r = Runner(model)
    latent = latent_key(r, args.latent)
    out = output_key(r, latent, args.output)
    return model, r, latent, out, conditions(r, latent, out)


def cmd_sample(args: argparse.Namespace) -> int:
    from runtime.use.sample import decode, labels_for, latent_shape, write_outputs
    model, r, latent, out, conds = prepare(args)
    cond, labels, cols = labels_for(r, conds, args.n, getattr(args, "cls", None))
    z = np.random.default_rng(args.seed).standard_normal(latent_shape(r, latent, args.n)).astype(np.float32)
    images = decode(r, latent, out, z, cond)
    arrays = {"samples": images, "latent": z}
    if labels is not None:
        arrays["labels"] = labels
    write_outputs(args.out, images, cols, arrays)
    return 0


def cmd_interpolate(args: argparse.Namespace) -> int:
    from runtime.use.common import check_inputs, parse_values
    from runtime.use.sample import decode, encode, labels_for, write_outputs
    if args.steps < 2:
        raise UserError("--steps must be at least 2 (the two ends)", code=2)
    model, r, latent, out, conds = prepare(args)
    a, b = parse_values(args.input), parse_values(args.input2)
    if not a or not b:
        raise UserError("give both ends: --input NAME=a.npy --input2 NAME=b.npy", code=2)
    if set(a) != set(b):
        raise UserError(f"--input gives {', '.join(sorted(a))} but --input2 gives {', '.join(sorted(b))}", code=2)
    check_inputs(model, a)
    za, zb = encode(r, latent, a), encode(r, latent, b)
    if za.shape != zb.shape:
        raise UserError(f"the two codes differ in shape: {list(za.shape)} and {list(zb.shape)}", code=2)
    m, steps = len(za), args.steps
    t = np.linspace(0.0, 1.0, steps)
    codes = np.stack([(1 - s) * za + s * zb for s in t], axis=1)          # [m, steps, ...]
    flat = codes.reshape(m * steps, *za.shape[1:])
    if conds and all(k in a for k in conds):
        cond = {k: np.repeat(a[k], steps, axis=0) for k in conds}
    elif conds and getattr(args, "cls", None) is None:
        raise UserError(f"the generator reads '{conds[0]}' besides its code: pass --class K, or give "
                        f"--input {conds[0]}=FILE.npy", code=2)
    else:
        cond = labels_for(r, conds, m * steps, getattr(args, "cls", None))[0]
    images = decode(r, latent, out, flat, cond)
    write_outputs(args.out, images, steps, {"images": images, "codes": flat, "t": t})
    return 0


def cmd_saliency(args: argparse.Namespace) -> int:
    from runtime.use.common import (beside, check_inputs, classifier, guard_picture, image_input, input_files,
                                    load_model, parse_values, save_npy)
    from runtime.use.plots import figure, heat_maps, to_images
    from runtime.use.saliency import saliency
    guard_picture(args.out, ".npy", (args.spec, args.weights, *input_files(args.input)))
    model = load_model(args.spec, args.weights, args.set)
    inputs = parse_values(args.input)
    check_inputs(model, inputs)
    if not inputs:
        raise UserError("no input given: --input NAME=FILE.npy", code=2)
    output, _ = classifier(model, args.output)
    name = image_input(model, args.input_name)
    if name not in inputs:
        raise UserError(f"missing input '{name}'", hint=f"pass --input {name}=FILE.npy", code=2)
    maps, classes = saliency(model, inputs, name, output, args.cls)
    npy = beside(args.out, ".npy")
    save_npy(npy, maps)
    for i, c in enumerate(classes[:16]):
        at = tuple(int(j) for j in np.unravel_index(maps[i].argmax(), maps[i].shape))
        print(f"{i}: class {int(c)}, saliency max {maps[i].max():.4g} at {at}")
    shown = min(len(maps), 8)
    heats = maps[:shown] if maps.ndim == 3 else None
    if heats is None:
        print(f"note: the input is not an image ({list(inputs[name].shape)}); wrote {npy} only")
        return 0
    images = to_images(inputs[name][:shown])
    if figure(args.out, npy, heat_maps(images, heats, [f"class {c}" for c in classes[:shown]]),
              size=(1.8 * shown + 1, 4.0)):
        print(f"wrote {args.out} and {npy}")
    return 0


def cmd_attack(args: argparse.Namespace) -> int:
    from runtime.use.attack import parse_floats, run_attack, write_picture
    from runtime.use.common import classifier, guard_picture, image_input, load_data, load_model
    eps = parse_floats(args.eps, "--eps")
    if any(e < 0 for e in eps):
        raise UserError("--eps values must be 0 or more", code=2)
    clip = tuple(parse_floats(args.clip, "--clip")) if args.clip else None
    if clip is not None and (len(clip) != 2 or clip[0] >= clip[1]):
        raise UserError("--clip expects LO,HI with LO < HI", code=2)
    if args.out:
        guard_picture(args.out, ".npz", (args.spec, args.weights, args.data))
    model = load_model(args.spec, args.weights, args.set)
    output, label = classifier(model, args.output)
    if label is None:
        raise UserError("cannot tell which input holds the labels", hint="set train.target in the spec", code=2)
    name = image_input(model, args.input_name)
    ds = load_data(model, args.spec, args.data, [name, label])
    data = {k: v[:args.limit] for k, v in ds.arrays.items()}
    classes = model(outputs=[output], **{k: v[:1] for k, v in data.items() if k != label})[output].shape[1]
    if args.target is not None and not 0 <= args.target < classes:
        raise UserError(f"--target {args.target} is out of range: the model has {classes} classes", code=2)
    res = run_attack(model, data, name, label, output, args.method, eps, args.steps, args.alpha, args.target, clip)
    print_table(res, args, len(data[label]), ds.source)
    if args.out:
        write_picture(args.out, data[name], data[label], res)
    return 0


def print_table(res: dict, args: argparse.Namespace, n: int, source: str) -> None:
    kind = f"targeted at class {args.target}" if args.target is not None else "untargeted"
    steps = f", {args.steps} steps" if args.method == "pgd" else ""
    print(f"{args.method.upper()} ({kind}{steps}) on {n} samples of {source}; clean accuracy "
          f"{float(res['clean_accuracy']):.4f}")
    print(f"{'eps':>8}  {'accuracy':>8}  {'success':>8}")
    for e, a, s in zip(res["eps"], res["accuracy"], res["success"]):
        print(f"{e:>8.4g}  {a:>8.4f}  {s:>8.4f}")


def cmd_neighbors(args: argparse.Namespace) -> int:
    from runtime.use.common import load_model
    from runtime.use.generate import read_vocab
    from runtime.use.neighbors import neighbours, table_of, token_id
    given = [x is not None for x in (args.word, args.index, args.analogy)]
    if sum(given) != 1:
        raise UserError("give one of --word W, --index I or --analogy a,b,c", code=2)
    vocab = read_vocab(args.vocab) if args.vocab else None
    model = load_model(args.spec, args.weights, args.set)
    key, table = table_of(model, args.table)
    if vocab is not None and len(vocab) < len(table):
        print(f"note: the vocabulary has {len(vocab)} words but the table {len(table)} rows; "
              "rows without a word show their id")

    def word(i: int) -> str:
        return vocab[i] if vocab is not None and i < len(vocab) else str(i)

    if args.analogy is not None:
        parts = [p.strip() for p in args.analogy.split(",")]
        if len(parts) != 3 or not all(parts):
            raise UserError("--analogy expects three words a,b,c (a - b + c)", code=2)
        ids = [token_id(p, vocab, len(table)) for p in parts]
        query = table[ids[0]] - table[ids[1]] + table[ids[2]]
        what = f"{word(ids[0])} - {word(ids[1])} + {word(ids[2])}"
        exclude = ids
    else:
        i = args.index if args.index is not None else token_id(args.word, vocab, len(table))
        if not 0 <= i < len(table):
            raise UserError(f"--index {i} is out of range: the table has {len(table)} rows", code=2)
        query, what, exclude = table[i], f"{word(i)} (id {i})", [i]
    rows = neighbours(table, query, args.k, args.metric, exclude)
    label = "cosine" if args.metric == "cosine" else "distance"
    print(f"nearest to {what} in {key} [{table.shape[0]}×{table.shape[1]}], by {args.metric}:")
    print(f"{'rank':>4}  {'id':>6}  {label:>9}  word")
    for r, (i, s) in enumerate(rows, 1):
        print(f"{r:>4}  {i:>6}  {s:>9.4f}  {word(i)}")
    return 0


def cmd_attention(args: argparse.Namespace) -> int:
    from runtime.use.attention import attention_node, attention_weights
    from runtime.use.common import (beside, check_inputs, guard_picture, input_files, load_model, parse_values,
                                    save_npy)
    from runtime.use.generate import read_vocab
    from runtime.use.plots import figure
    guard_picture(args.out, ".npy", (args.spec, args.weights, *input_files(args.input)))
    vocab = read_vocab(args.vocab) if args.vocab else None
    model = load_model(args.spec, args.weights, args.set)
    inputs = parse_values(args.input)
    check_inputs(model, inputs)
    node = attention_node(model, args.node)
    w = attention_weights(model, inputs, node)
    npy = beside(args.out, ".npy")
    save_npy(npy, w)
    tokens = next((v for k, v in inputs.items() if model.graph.inputs[k].dtype == "int64" and v.ndim == 2
                   and v.shape[1] == w.shape[-1]), None)
    shown = min(len(w), 4)

    def labels(i: int) -> list[str] | None:
        if tokens is None or w.shape[1] != w.shape[2]:
            return None
        return [vocab[t] if vocab and 0 <= t < len(vocab) else str(t) for t in tokens[i]]

    def draw(fig) -> None:
        for i in range(shown):
            ax = fig.add_subplot(1, shown, i + 1)
            im = ax.imshow(w[i], cmap="viridis", vmin=0, vmax=max(float(w[i].max()), 1e-9))
            ax.set_title(f"{node}, example {i}", fontsize=9)
            ax.set_xlabel("key position")
            ax.set_ylabel("query position")
            lab = labels(i)
            if lab is not None and len(lab) <= 40:
                ax.set_xticks(range(len(lab)), lab, rotation=90, fontsize=7)
                ax.set_yticks(range(len(lab)), lab, fontsize=7)
            fig.colorbar(im, ax=ax, shrink=0.8)

    print(f"{node}: weights {list(w.shape)} (examples, query positions, key positions)")
    if figure(args.out, npy, draw, size=(4.2 * shown, 3.8)):
        print(f"wrote {args.out} and {npy}")
    return 0


def cmd_boundary(args: argparse.Namespace) -> int:
    from runtime.use.boundary import predict, region_grid
    from runtime.use.common import beside, classifier, guard_picture, image_input, load_data, load_model, save_npz
    from runtime.use.plots import figure
    guard_picture(args.out, ".npz", (args.spec, args.weights, args.data))
    model = load_model(args.spec, args.weights, args.set)
    output, label = classifier(model, args.output)
    name = image_input(model, args.input_name)
    t = model.graph.inputs[name]
    if t.rank != 2 or t.shape[1] != 2:
        raise UserError(f"input '{name}' is {t}; a decision-boundary plot needs 2-D points [N, 2]", code=2)
    ds = load_data(model, args.spec, args.data, [name] + ([label] if label else []))
    points = ds.arrays[name]
    xx, yy, cls = region_grid(model, name, output, points, args.resolution)
    labels = ds.arrays.get(label) if label else None
    if labels is not None and labels.ndim == 2 and labels.shape[1] == 1:    # a [N, 1] 0/1 target (bce)
        labels = labels[:, 0].round().astype(np.int64)
    npz = beside(args.out, ".npz")
    save_npz(npz, {"xx": xx, "yy": yy, "classes": cls, "points": points,
                   **({"labels": labels} if labels is not None else {})})
    if labels is not None:
        pred = predict(model, name, output, points.astype(np.float32))
        print(f"accuracy on {ds.source} ({len(points)} points): {float((pred == labels).mean()):.4f}")

    def draw(fig) -> None:
        ax = fig.add_subplot(1, 1, 1)
        k = int(max(cls.max(), labels.max() if labels is not None else 0)) + 1
        ax.contourf(xx, yy, cls, levels=np.arange(k + 1) - 0.5, cmap="coolwarm" if k <= 2 else "tab10", alpha=0.35)
        ax.scatter(points[:, 0], points[:, 1], c=labels if labels is not None else "k", s=12,
                   cmap="coolwarm" if k <= 2 else "tab10", vmin=0, vmax=max(k - 1, 1), edgecolors="k", linewidths=0.3)
        ax.set_title(f"{model.graph.name}: decision regions")

    if figure(args.out, npz, draw, size=(5, 4.5)):
        print(f"wrote {args.out} and {npz}")
    return 0
