'''Source of the small functions and modules a generated file defines for ops torch has no layer for.

Each entry is (source, names it needs from the others). Their semantics are those of tools/torch_ref.py
(specc's PyTorch reference) and docs/ops.md.'''
from __future__ import annotations

HELPERS: dict[str, tuple[str, tuple[str, ...]]] = {}


def helper(name: str, src: str, needs: tuple[str, ...] = ()) -> None:
    HELPERS[name] = (src.strip("\n") + "\n", needs)


helper("masked_softmax", '''
def masked_softmax(scores: torch.Tensor, ignore: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dim skipping `ignore` (True); a row with every entry ignored gives zeros."""
    scores = scores.masked_fill(ignore, float("-inf"))
    dead = ignore.all(-1, keepdim=True)
    return F.softmax(scores.masked_fill(dead, 0.0), -1).masked_fill(dead, 0.0)
''')

helper("causal_mask", '''
def causal_mask(query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    """True above the diagonal: a query position ignores later keys."""
    return torch.ones(query.shape[1], key.shape[1], dtype=torch.bool, device=query.device).triu(1)
''')

helper("attention", '''
def attention(q, k, v, ignore=None, causal=False, scale=None):
    """Scaled dot-product attention; `ignore` is True for keys to leave out ([N, Tk] or broadcastable)."""
    scale = scale if scale is not None else 1.0 / math.sqrt(q.shape[-1])
    scores = q @ k.transpose(-2, -1) * scale
    mask = None
    if ignore is not None:
        mask = ignore.bool()
        if mask.dim() == 2 and scores.dim() >= 3:
            mask = mask.reshape((mask.shape[0],) + (1,) * (scores.dim() - 2) + (mask.shape[1],))
    if causal:
        tri = torch.ones(scores.shape[-2], scores.shape[-1], dtype=torch.bool, device=q.device).triu(1)
        mask = tri if mask is None else mask | tri
    weights = F.softmax(scores, -1) if mask is None else masked_softmax(scores, mask)
    return weights @ v
''', ("masked_softmax",))

helper("PositionalEncoding", '''
class PositionalEncoding(nn.Module):
    """Adds the sinusoidal table PE[pos, 2i] = sin(pos / 10000^(2i/d)), PE[pos, 2i+1] = cos(...)."""

    def __init__(self, d_model: int, max_len: int = 5000):
        super().__init__()
        pos = torch.arange(max_len, dtype=torch.float64)[:, None]
        even = torch.arange(0, d_model, 2, dtype=torch.float64)
        angle = pos * torch.exp(-math.log(10000.0) * even / d_model)
        pe = torch.empty(max_len, d_model, dtype=torch.float64)
        pe[:, 0::2] = torch.sin(angle)
        pe[:, 1::2] = torch.cos(angle[:, : d_model // 2])
        self.register_buffer("pe", pe.float(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pe[: x.shape[1]].to(x.dtype)
''')

helper("Standardize", '''
class Standardize(nn.Module):
    """(x - mean) / std per channel (dim 1); mean and std are buffers (in the state_dict)."""

    def __init__(self, mean: list, std: list):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x if x.is_floating_point() else x.float()
        shape = (-1,) + (1,) * (x.dim() - 2)
        return (x - self.mean.to(x.dtype).view(shape)) / self.std.to(x.dtype).view(shape)
''')

helper("GCNConv", '''
class GCNConv(nn.Module):
    """Graph convolution (Kipf & Welling): D^-1/2 (A + I) D^-1/2 X W^T + b over a dense adjacency [.., V, V]."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, add_self_loops: bool = True,
                 normalize: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        self.add_self_loops, self.normalize = add_self_loops, normalize
        nn.init.xavier_uniform_(self.weight)

    def forward(self, x: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        adj = adj.to(x.dtype)
        scale = None
        if self.normalize:
            deg = adj.sum(-1) + (1 if self.add_self_loops else 0)
            scale = torch.where(deg > 0, deg.clamp_min(1e-30).rsqrt(), torch.zeros_like(deg)).unsqueeze(-1)

        def propagate(z):
            zs = z * scale if scale is not None else z
            y = adj @ zs + (zs if self.add_self_loops else 0)
            return y * scale if scale is not None else y

        w = self.weight
        y = propagate(F.linear(x, w)) if w.shape[0] < w.shape[1] else F.linear(propagate(x), w)
        return y + self.bias if self.bias is not None else y
''')

helper("GATConv", '''
class GATConv(nn.Module):
    """Graph attention (Velickovic et al.) over a dense adjacency [.., V, V]; heads concatenated or averaged."""

    def __init__(self, in_features: int, out_features: int, heads: int = 1, concat: bool = True,
                 negative_slope: float = 0.2, bias: bool = True, add_self_loops: bool = True):
        super().__init__()
        self.heads, self.out_features, self.concat = heads, out_features, concat
        self.negative_slope, self.add_self_loops = negative_slope, add_self_loops
        self.weight = nn.Parameter(torch.empty(heads * out_features, in_features))
        self.att_src = nn.Parameter(torch.empty(1, heads, out_features))
        self.att_dst = nn.Parameter(torch.empty(1, heads, out_features))
        width = heads * out_features if concat else out_features
        self.bias = nn.Parameter(torch.zeros(width)) if bias else None
        nn.init.xavier_uniform_(self.weight)
        bound = math.sqrt(6.0 / (heads + out_features))                   # as PyG's glorot on [1, H, C]
        nn.init.uniform_(self.att_src, -bound, bound)
        nn.init.uniform_(self.att_dst, -bound, bound)

    def forward(self, x: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        h = F.linear(x, self.weight)
        h = h.reshape(h.shape[:-1] + (self.heads, self.out_features))          # [.., V, H, C]
        src = (h * self.att_src).sum(-1).transpose(-1, -2)                    # [.., H, V]
        dst = (h * self.att_dst).sum(-1).transpose(-1, -2)
        scores = F.leaky_relu(dst.unsqueeze(-1) + src.unsqueeze(-2), self.negative_slope)   # [.., H, Vi, Vj]
        edge = adj != 0
        if self.add_self_loops:
            edge = edge | torch.eye(adj.shape[-1], dtype=torch.bool, device=adj.device)
        alpha = masked_softmax(scores, (~edge).unsqueeze(-3))
        out = (alpha @ h.transpose(-2, -3)).transpose(-2, -3)                 # [.., V, H, C]
        out = out.reshape(out.shape[:-2] + (-1,)) if self.concat else out.mean(-2)
        return out + self.bias if self.bias is not None else out
''', ("masked_softmax",))

helper("graph_aggregate", '''
def graph_aggregate(x: torch.Tensor, adj: torch.Tensor, reduce: str) -> torch.Tensor:
    """Each vertex gathers its neighbours' features (adj[.., i, j] != 0: j is a neighbour of i)."""
    a = adj.to(x.dtype)
    if reduce == "sum":
        return a @ x
    edge = adj != 0
    if reduce == "mean":
        return (a @ x) / edge.sum(-1, keepdim=True).clamp_min(1).to(x.dtype)
    msg = (a.unsqueeze(-1) * x.unsqueeze(-3)).masked_fill(~edge.unsqueeze(-1), float("-inf"))
    return msg.amax(-2).masked_fill(~edge.any(-1, keepdim=True), 0.0)
''')

helper("reparameterize", '''
def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, training: bool) -> torch.Tensor:
    """z = mu + eps * exp(logvar / 2) with eps ~ N(0, 1) in training; the mean in eval."""
    return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if training else mu
''')

helper("kl_normal", '''
def kl_normal(mu: torch.Tensor, logvar: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)) summed over features, reduced over the batch."""
    t = 0.5 * (mu * mu + torch.exp(logvar) - 1.0 - logvar)
    per = t.sum(dim=tuple(range(1, t.dim()))) if t.dim() > 1 else t
    return per.mean() if reduction == "mean" else per.sum() if reduction == "sum" else per
''')


helper("StochasticDepth", '''
class StochasticDepth(nn.Module):
    """torchvision.ops.StochasticDepth: in training, zero whole rows (mode "row": per sample; "batch": all)
    with probability p and scale the survivors by 1 / (1 - p); identity in eval."""

    def __init__(self, p: float, mode: str = "row"):
        super().__init__()
        self.p, self.mode = p, mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        size = [x.shape[0]] + [1] * (x.dim() - 1) if self.mode == "row" else [1] * x.dim()
        keep = torch.empty(size, dtype=x.dtype, device=x.device).bernoulli_(1.0 - self.p)
        return x * (keep / (1.0 - self.p) if self.p < 1.0 else keep)
''')


def _reserve() -> None:
    from .source import RESERVED
    RESERVED.update(HELPERS)


_reserve()


def closure(names: set[str]) -> list[str]:
    """The helpers `names` need, dependencies first, in a stable order."""
    out: list[str] = []

    def add(n: str) -> None:
        if n in out:
            return
        for d in HELPERS[n][1]:
            add(d)
        out.append(n)
    for n in sorted(names):
        add(n)
    return out
