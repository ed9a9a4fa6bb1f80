"""The eight benchmark models as a PyTorch user writes them: torch.nn modules (nn.Linear, nn.Conv2d,
nn.BatchNorm2d, nn.LSTM, nn.TransformerEncoderLayer, a torchvision-style ResNet-18), with parameter names
equal to specc's state_dict names, so that `model.load_state_dict(specc_state)` gives both sides the same
weights.

    from tools.bench_models import build_torch_model, torch_loss, TORCH_BUILDERS
    m = build_torch_model("resnet18", specc_model.state_dict())     # nn.Module with specc's weights
    y = m(*inputs)                                                    # the prediction (logits / reconstruction)
    loss = torch_loss("resnet18", y, label)

Each module's `forward` takes the spec's inputs that the prediction reads, in `INPUTS[key]` order, and
returns the prediction; `torch_loss(key, prediction, target)` is the training objective (cross-entropy,
or MSE against the image for the autoencoder). tools/torch_ref.py stays the independent interpreter used
for parity tests; these are the baselines for speed.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import torch
from torch import nn
import torch.nn.functional as F

# the spec inputs each module's forward takes, in order; and the input the loss compares against
INPUTS: dict[str, tuple[str, ...]] = {
    "mlp": ("image",), "lenet5": ("image",), "vgg_bn": ("image",), "resnet18": ("image",),
    "lstm": ("tokens",), "transformer": ("x",), "gcn": ("x", "adj"), "conv_autoencoder": ("image",),
}
TARGET: dict[str, str] = {k: "label" for k in INPUTS} | {"conv_autoencoder": "image"}


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.logits = nn.Linear(784, 256), nn.Linear(256, 256), nn.Linear(256, 10)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(image, 1)
        return self.logits(F.relu(self.fc2(F.relu(self.fc1(x)))))


class LeNet5(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv2d_1 = nn.Conv2d(1, 6, 5, padding=2)
        self.conv2d_2 = nn.Conv2d(6, 16, 5)
        self.linear_1, self.linear_2, self.logits = nn.Linear(400, 120), nn.Linear(120, 84), nn.Linear(84, 10)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv2d_1(image)), 2)
        x = F.max_pool2d(F.relu(self.conv2d_2(x)), 2)
        x = torch.flatten(x, 1)
        return self.logits(F.relu(self.linear_2(F.relu(self.linear_1(x)))))


class ConvBN(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class VGGStage(nn.Module):
    def __init__(self, cin: int, cout: int, convs: int = 2) -> None:
        super().__init__()
        self.conv = nn.Sequential(*[ConvBN(cin if i == 0 else cout, cout) for i in range(convs)])
        self.pool = nn.MaxPool2d(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.conv(x))


class SmallVGG(nn.Module):
    def __init__(self, widths: tuple[int, ...] = (32, 64, 128), hidden: int = 256, classes: int = 10) -> None:
        super().__init__()
        self.stage1 = VGGStage(3, widths[0])
        self.stage2 = VGGStage(widths[0], widths[1])
        self.stage3 = VGGStage(widths[1], widths[2])
        self.fc1 = nn.Linear(widths[2] * 4 * 4, hidden)
        self.logits = nn.Linear(hidden, classes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.stage3(self.stage2(self.stage1(image))), 1)
        return self.logits(F.relu(self.fc1(x)))


class BasicBlock(nn.Module):
    """torchvision.models.resnet.BasicBlock."""

    def __init__(self, cin: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or cin != planes:
            self.downsample = nn.Sequential(nn.Conv2d(cin, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class ResNet18(nn.Module):
    """torchvision.models.resnet18's layout and names (torchvision itself is not a dependency)."""

    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = 64
        for i, planes in enumerate((64, 128, 256, 512)):
            stride = 1 if i == 0 else 2
            setattr(self, f"layer{i + 1}", nn.Sequential(BasicBlock(cin, planes, stride), BasicBlock(planes, planes)))
            cin = planes
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, classes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(image))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class LSTMClassifier(nn.Module):
    def __init__(self, vocab: int = 10000, embed: int = 64, hidden: int = 128, classes: int = 2) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, embed)
        self.lstm = nn.LSTM(embed, hidden, batch_first=True)
        self.logits = nn.Linear(hidden, classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        _, (h, _) = self.lstm(self.embedding(tokens))
        return self.logits(h[-1])


class TransformerClassifier(nn.Module):
    def __init__(self, d_model: int = 128, nhead: int = 4, ff: int = 512, layers: int = 2, dropout: float = 0.1,
                 classes: int = 10) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.TransformerEncoderLayer(d_model, nhead, ff, dropout, batch_first=True)
                                    for _ in range(layers))
        self.logits = nn.Linear(d_model, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.logits(x.mean(dim=1))


class GCNConv(nn.Module):
    """Kipf & Welling's layer on a dense adjacency: D^-1/2 (A + I) D^-1/2 X Wᵀ + b (no PyG installed)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(cout, cin))
        self.bias = nn.Parameter(torch.zeros(cout))
        nn.init.xavier_uniform_(self.weight)

    def forward(self, x: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        a = adj + torch.eye(adj.shape[0], dtype=adj.dtype)
        s = a.sum(1).rsqrt()
        return (s[:, None] * (a @ (s[:, None] * (x @ self.weight.T)))) + self.bias


class GCN(nn.Module):
    def __init__(self, features: int = 1433, hidden: int = 16, classes: int = 7, dropout: float = 0.5) -> None:
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.conv1, self.conv2 = GCNConv(features, hidden), GCNConv(hidden, classes)

    def forward(self, x: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        h = self.drop(F.relu(self.conv1(self.drop(x), adj)))
        return self.conv2(h, adj)


class ConvAutoencoder(nn.Module):
    def __init__(self, widths: tuple[int, int] = (16, 32)) -> None:
        super().__init__()
        self.enc1 = nn.Conv2d(1, widths[0], 3, 2, 1)
        self.enc2 = nn.Conv2d(widths[0], widths[1], 3, 2, 1)
        self.dec1 = nn.ConvTranspose2d(widths[1], widths[0], 3, 2, 1, output_padding=1)
        self.dec2 = nn.ConvTranspose2d(widths[0], 1, 3, 2, 1, output_padding=1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.enc2(F.relu(self.enc1(image))))
        return torch.sigmoid(self.dec2(F.relu(self.dec1(x))))


TORCH_BUILDERS: dict[str, Callable[[], nn.Module]] = {
    "mlp": MLP, "lenet5": LeNet5, "vgg_bn": SmallVGG, "resnet18": ResNet18, "lstm": LSTMClassifier,
    "transformer": TransformerClassifier, "gcn": GCN, "conv_autoencoder": ConvAutoencoder,
}


def build_torch_model(key: str, state: Mapping[str, Any] | None = None) -> nn.Module:
    """The torch.nn module of benchmark `key`, with `state` (specc's state_dict: NumPy arrays under the same
    names) loaded strictly: a name that differs is an error, not a silently fresh weight."""
    m = TORCH_BUILDERS[key]()
    if state is not None:
        m.load_state_dict({k: torch.as_tensor(v).clone() for k, v in state.items()}, strict=True)
    return m


def torch_loss(key: str, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The spec's objective: MSE against the image for the autoencoder, cross-entropy for the others."""
    if key == "conv_autoencoder":
        return F.mse_loss(prediction, target)
    return F.cross_entropy(prediction, target)


def forward_flops(key: str, inputs: Mapping[str, Any]) -> float:
    """Floating-point operations of one forward pass (2 per multiply-add of the convolutions and matrix
    products), counted by torch.utils.flop_counter on the module in training mode (inference's fused fast
    paths hide their GEMMs from the counter); nn.LSTM's recurrent GEMMs are added by formula."""
    from torch.utils.flop_counter import FlopCounterMode
    m = TORCH_BUILDERS[key]().train()
    args = [torch.as_tensor(inputs[k]) for k in INPUTS[key]]
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        m(*args)
    flops = float(fc.get_total_flops())
    if key == "lstm":
        n, t = args[0].shape
        lstm = m.lstm
        flops += 2.0 * n * t * 4 * lstm.hidden_size * (lstm.input_size + lstm.hidden_size)
    return flops
