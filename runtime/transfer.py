"""Weights of another run for a new one (`specc train --init CKPT [--init-map OLD=NEW]...`).

    report = init_from(model, "runs/digits_0_4/best.npz", ["backbone.*=features.*"])
    print(report.table())

A checkpoint key is renamed by the first map whose OLD glob matches it (each `*` in NEW takes what the
corresponding `*` in OLD matched; keys no map matches keep their name), then loaded when the model has a
parameter or buffer of that name and shape. Keys of another shape are skipped and reported (a new head of
another size); so are keys the model does not have, and the model's own weights that nothing fills keep
their fresh initialisation. Works across specs: only names and shapes matter.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from compiler.errors import UserError, did_you_mean

from .checkpoint import check_numeric, read_npz, split


@dataclass
class InitMap:
    old: str
    new: str
    pattern: re.Pattern = field(repr=False, default=None)      # type: ignore[assignment]

    def rename(self, key: str) -> str | None:
        m = self.pattern.fullmatch(key)
        if m is None:
            return None
        parts = self.new.split("*")
        return parts[0] + "".join(g + p for g, p in zip(m.groups(), parts[1:]))


def parse_map(text: str) -> InitMap:
    """OLD=NEW with the same number of `*` on both sides (`backbone.*=features.*`, `fc=head.fc`)."""
    old, sep, new = text.partition("=")
    old, new = old.strip(), new.strip()
    if not sep or not old or not new:
        raise UserError(f"--init-map expects OLD=NEW (globs such as backbone.*=features.*), got '{text}'", code=2)
    if old.count("*") != new.count("*"):
        raise UserError(f"--init-map '{text}': OLD and NEW must have the same number of '*' "
                        f"({old.count('*')} and {new.count('*')})", code=2)
    pattern = re.compile("".join("(.*)" if ch == "*" else re.escape(ch) for ch in old))
    return InitMap(old, new, pattern)


@dataclass
class InitReport:
    path: str
    loaded: list[tuple[str, str]] = field(default_factory=list)          # (checkpoint key, model key)
    mismatched: list[tuple[str, str, tuple, tuple]] = field(default_factory=list)   # + both shapes
    skipped: list[str] = field(default_factory=list)                     # checkpoint keys the model lacks
    fresh: list[str] = field(default_factory=list)                       # model keys nothing filled

    def table(self, limit: int = 12) -> str:
        """The loaded / shape-mismatched / skipped / fresh keys, at most `limit` rows of each."""
        rows: list[tuple[str, str, str]] = []

        def add(status: str, items: list[tuple[str, str]]) -> None:
            for a, b in items[:limit]:
                rows.append((status, a, b))
            if len(items) > limit:
                rows.append((status, f"... and {len(items) - limit} more", ""))

        add("loaded", [(a, b if b != a else "") for a, b in self.loaded])
        add("shape mismatch", [(a, f"{b}: checkpoint {list(sa)}, model {list(sb)}")
                               for a, b, sa, sb in self.mismatched])
        add("skipped", [(a, "not in the model") for a in self.skipped])
        reported = {b for _, b, _, _ in self.mismatched}
        add("fresh", [("", f"{b}: not in the checkpoint, initialised") for b in self.fresh if b not in reported])
        w0 = max(len(r[0]) for r in rows)
        w1 = max(len(r[1]) for r in rows)
        head = (f"--init {self.path}: {len(self.loaded)} loaded, {len(self.mismatched)} shape-mismatched, "
                f"{len(self.skipped)} skipped; {len(self.fresh)} of the model's weights keep their initialisation")
        return "\n".join([head] + [f"  {a:<{w0}}  {b:<{w1}}  {c}".rstrip() for a, b, c in rows])


def init_from(model: Any, path: str | Path, maps: Sequence[str] = ()) -> InitReport:
    """Load the weights of `path` whose (mapped) names and shapes fit `model`; refuse when none does."""
    state, _, _ = split(read_npz(path, "checkpoint"))
    check_numeric(state, path)
    parsed = [parse_map(m) for m in maps]
    for m in parsed:
        if not any(m.rename(k) is not None for k in state):
            raise UserError(f"--init-map '{m.old}={m.new}' matches no weight in '{path}'",
                            hint=did_you_mean(m.old, list(state)) or f"its weights look like: "
                            f"{', '.join(list(state)[:4])}")
    own = model.state_dict()
    report = InitReport(str(path))
    chosen: dict[str, np.ndarray] = {}
    for key, value in state.items():
        name = next((r for m in parsed if (r := m.rename(key)) is not None), key)
        if name not in own:
            report.skipped.append(key)
        elif tuple(np.shape(value)) != own[name].shape:
            report.mismatched.append((key, name, tuple(np.shape(value)), own[name].shape))
        elif name in chosen:
            raise UserError(f"--init: two weights of '{path}' map to '{name}'", hint="make the --init-map "
                            "globs more specific", code=2)
        else:
            report.loaded.append((key, name))
            chosen[name] = value
    report.fresh = [k for k in own if k not in chosen]
    if not chosen:
        raise UserError(f"--init '{path}': none of its {len(state)} weights fits model '{model.graph.name}' "
                        f"({len(report.mismatched)} with a matching name but another shape)",
                        hint=f"its weights look like {', '.join(list(state)[:3])}; the model's like "
                             f"{', '.join(list(own)[:3])}: rename them with --init-map OLD=NEW "
                             "(globs, e.g. backbone.*=features.*)")
    model.load_state_dict(chosen, strict=False)
    model.pretrained |= set(chosen)
    return report
