"""`specc attack`: white-box adversarial examples, FGSM (Goodfellow et al. 2014) and PGD (Madry et al. 2017).

    specc attack SPEC --weights CKPT [--data SRC] --method fgsm|pgd --eps 0.05,0.1,0.2
                 [--steps 10] [--alpha A] [--target K] [--limit 500] [-o OUT.png]

Untargeted attacks raise the cross-entropy of the true label, x' = x + ε·sign(∇x loss); targeted ones
(`--target K`) lower the cross-entropy of class K, x' = x − ε·sign(∇x loss_K). PGD takes `--steps` such
steps of size α (default 2.5·ε/steps), projecting back into the L∞ ball of radius ε around x after each;
each example keeps the first iterate that succeeds. Every input is clipped to the data range (the
min and max of the data set, or `--clip LO,HI`). The table gives, per ε, the accuracy on the attacked
inputs and the success rate: untargeted, the share of correctly classified inputs that are now
misclassified; targeted, the share of inputs not of class K that are now classified as K.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from compiler.errors import UserError

from ..model import Model
from ..tensor import Tensor
from .common import beside, save_npz, softmax
from .plots import figure, to_images


@dataclass
class Attack:
    model: Model
    name: str                 # the attacked input
    output: str               # the class scores
    others: dict              # the other inputs of a batch
    lo: float
    hi: float

    def scores(self, x: np.ndarray) -> np.ndarray:
        return self.model(outputs=[self.output], **self.others, **{self.name: x})[self.output]

    def grad(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """d Σ cross_entropy(scores(x), y) / dx."""
        t = Tensor(x.astype(np.float32), requires_grad=True)
        out = self.model.forward(outputs=[self.output], **self.others, **{self.name: t})[self.output]
        w = softmax(out.data.astype(np.float64)) - np.eye(out.shape[1])[y]
        out.backward(w)
        return t.grad

    def fgsm(self, x0: np.ndarray, y: np.ndarray, eps: float, direction: float) -> np.ndarray:
        return np.clip(x0 + direction * eps * np.sign(self.grad(x0, y)), self.lo, self.hi)

    def pgd(self, x0: np.ndarray, y: np.ndarray, eps: float, direction: float, steps: int, alpha: float,
            done_if: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        x, best = x0.copy(), x0.copy()
        done = np.zeros(len(x0), dtype=bool)
        for _ in range(steps):
            x = x + direction * alpha * np.sign(self.grad(x, y))
            x = np.clip(np.clip(x, x0 - eps, x0 + eps), self.lo, self.hi)
            ok = done_if(self.scores(x).argmax(1)) & ~done
            best[ok] = x[ok]
            done |= ok
        best[~done] = x[~done]
        return best


def run_attack(model: Model, data: dict[str, np.ndarray], name: str, label: str, output: str, method: str,
               eps_list: list[float], steps: int = 10, alpha: float | None = None, target: int | None = None,
               clip: tuple[float, float] | None = None, batch: int = 128) -> dict[str, np.ndarray]:
    """Accuracy and success rate per ε, with the attacked inputs: {eps, accuracy, success, clean_accuracy,
    adversarial [len(eps), n, ...], predictions [len(eps), n]}."""
    x_all, y_all = data[name].astype(np.float32), data[label]
    lo, hi = clip if clip is not None else (float(x_all.min()), float(x_all.max()))
    others = {k: v for k, v in data.items() if k not in (name, label)}
    n = len(x_all)
    clean = np.concatenate([Attack(model, name, output, {k: v[s:s + batch] for k, v in others.items()}, lo, hi)
                            .scores(x_all[s:s + batch]).argmax(1) for s in range(0, n, batch)])
    adv = np.empty((len(eps_list),) + x_all.shape, dtype=np.float32)
    preds = np.empty((len(eps_list), n), dtype=np.int64)
    for s in range(0, n, batch):
        a = Attack(model, name, output, {k: v[s:s + batch] for k, v in others.items()}, lo, hi)
        x0, y = x_all[s:s + batch], y_all[s:s + batch]
        aim = y if target is None else np.full(len(y), target)
        direction = 1.0 if target is None else -1.0
        done_if = (lambda p, y=y: p != y) if target is None else (lambda p: p == target)
        for i, eps in enumerate(eps_list):
            if method == "fgsm":
                xa = a.fgsm(x0, aim, eps, direction)
            else:
                xa = a.pgd(x0, aim, eps, direction, steps, alpha if alpha is not None else 2.5 * eps / steps, done_if)
            adv[i, s:s + batch] = xa
            preds[i, s:s + batch] = a.scores(xa).argmax(1)
    acc = (preds == y_all[None]).mean(1)
    if target is None:
        pool = clean == y_all
        success = (preds[:, pool] != y_all[pool][None]).mean(1) if pool.any() else np.zeros(len(eps_list))
    else:
        pool = y_all != target
        success = (preds[:, pool] == target).mean(1) if pool.any() else np.zeros(len(eps_list))
    return {"eps": np.array(eps_list), "accuracy": acc, "success": success,
            "clean_accuracy": np.array((clean == y_all).mean()), "clean_predictions": clean,
            "adversarial": adv, "predictions": preds}


def parse_floats(text: str, flag: str) -> list[float]:
    try:
        vals = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"{flag} expects numbers separated by commas, got '{text}'", code=2) from None
    if not vals:
        raise UserError(f"{flag} expects at least one number", code=2)
    return vals


def write_picture(path: str, x: np.ndarray, y: np.ndarray, res: dict) -> None:
    npz = beside(path, ".npz")
    save_npz(npz, {k: res[k] for k in ("eps", "accuracy", "success", "clean_accuracy")}
             | {"adversarial": res["adversarial"][:, :16], "clean": x[:16], "label": y[:16]})
    shown = min(8, len(x))
    lo, hi = float(x.min()), float(x.max())

    def pictures(a: np.ndarray) -> np.ndarray | None:
        return to_images(np.clip((np.asarray(a, dtype=np.float64) - lo) / (hi - lo or 1.0), 0, 1))

    before, after = pictures(x[:shown]), pictures(res["adversarial"][-1, :shown])
    if before is None:
        print(f"note: the inputs are not images; wrote {npz} only")
        return

    def draw(fig) -> None:
        for i in range(shown):
            for row, (pics, preds, what) in enumerate(((before, res["clean_predictions"], "clean"),
                                                       (after, res["predictions"][-1], f"ε={res['eps'][-1]:g}"))):
                ax = fig.add_subplot(2, shown, row * shown + i + 1)
                ax.imshow(pics[i], cmap="gray" if pics[i].ndim == 2 else None, vmin=0, vmax=1)
                ax.set_title(f"{what}: {preds[i]}", fontsize=8)
                ax.axis("off")

    if figure(path, npz, draw, size=(1.6 * shown, 3.6)):
        print(f"wrote {path} (top: clean, bottom: attacked at the largest ε; titles: predicted class) and {npz}")
