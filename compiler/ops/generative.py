"""Generative-model helpers: the VAE reparameterisation and its KL term."""
from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from ..errors import ShapeError
from ..ir import Dim, Node, TensorType
from .cases import Case
from .lazy import torch
from .registry import Attrs, Inferred, NoAttrs, lowering, op, reference
from .shapes import broadcast, per_sample

if TYPE_CHECKING:
    from ..onnx.registry import Builder


def _mu_logvar(name: str, mu: TensorType, logvar: TensorType) -> tuple[Dim, ...]:
    for nm, t in (("mu", mu), ("logvar", logvar)):
        if not t.dtype.startswith("float"):
            raise ShapeError(f"{name} expects float inputs, but {nm} is {t.dtype} (shape {t})")
    try:
        return broadcast(mu.shape, logvar.shape)
    except ShapeError:
        raise ShapeError(f"{name} pairs each mean with a log-variance, so mu and logvar need the same "
                         f"shape, but mu is {mu} and logvar is {logvar}",
                         hint="feed it the two heads of the encoder (e.g. enc:mu and enc:logvar), "
                              "both with the latent size") from None


@op("reparameterize", NoAttrs, inputs=["mu", "logvar"],
    cases=[Case({}, ((2, 3), (2, 3))), Case({}, ((2, 3), (2, 3)), training=True, torch=False)])
def reparameterize(a: NoAttrs, mu: TensorType, logvar: TensorType) -> Inferred:
    """z = mu + eps · exp(logvar / 2), eps ~ N(0, 1), in training; z = mu in eval (and in ONNX)."""
    shape = _mu_logvar("reparameterize", mu, logvar)
    z = TensorType(shape, mu.dtype)
    return Inferred([z], macs=per_sample(z))


@lowering("reparameterize")
def reparameterize_onnx(b: Builder, node: Node, x: list, p: list) -> str:
    """Inference is eval mode: z = mu (broadcast to logvar's shape when that is larger)."""
    if tuple(node.out.shape) == tuple(b.ins[0].shape):
        return b.op("Identity", [x[0]])
    return b.op("Expand", [x[0], b.op("Shape", [x[1]])])


@reference("reparameterize")
def _reparameterize(c, mu, logvar):
    if not c.training:
        return mu
    return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)


class KlNormal(Attrs):
    reduction: Literal["mean", "sum", "none"] = "mean"


@op("kl_normal", KlNormal, inputs=["mu", "logvar"], loss=True,
    cases=[Case({}, ((2, 3), (2, 3))), Case({"reduction": "none"}, ((2, 3, 2), (2, 3, 2)))])
def kl_normal(a: KlNormal, mu: TensorType, logvar: TensorType) -> Inferred:
    """KL(N(mu, exp(logvar)) ‖ N(0, 1)) = 0.5 Σ (mu² + exp(logvar) − 1 − logvar) over all dims but the first.

    Then reduced over the batch: mean (default) or sum give a scalar, none gives [N].
    """
    shape = _mu_logvar("kl_normal", mu, logvar)
    if not shape:
        raise ShapeError("kl_normal needs a batch dimension, but mu and logvar are scalars",
                         hint="its inputs are [N, latent]")
    out = TensorType(() if a.reduction != "none" else shape[:1], mu.dtype)
    return Inferred([out], macs=per_sample(TensorType(shape)))


@reference("kl_normal")
def _kl_normal(c, mu, logvar):
    t = 0.5 * (mu * mu + torch.exp(logvar) - 1.0 - logvar)
    per = t.sum(dim=tuple(range(1, t.dim()))) if t.dim() > 1 else t
    return _reduce(per, c.a.reduction)


# ---------------------------------------------------------------- helpers of the PyTorch references


def _reduce(t: torch.Tensor, reduction: str) -> torch.Tensor:
    return t.mean() if reduction == "mean" else t.sum() if reduction == "sum" else t
