"""Plain PyTorch models, not built by snnbench, for tests/test_byo_evaluate.py and
`snnbench attack --model tests/byo_models.py:CALLABLE`."""

from __future__ import annotations

import torch
from torch import nn


class PlainNet(nn.Module):
    """A small MLP on 8x8 digits: [B, 1, 8, 8] in [0, 1] -> logits [B, 10]."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class NoisyNet(PlainNet):
    """Random in eval mode (Gaussian noise on the hidden layer) and says nothing about it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.body[2](self.body[1](self.body[0](x)))
        return self.body[3](hidden + 0.3 * torch.randn_like(hidden))


class TimeFirstNet(PlainNet):
    """Returns [T, B, K] (the SNN-RAT convention): one logit map per time step."""

    timesteps_out = 3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        steps = torch.stack([x * (t + 1) / self.timesteps_out for t in range(self.timesteps_out)])
        return self.body(steps.flatten(0, 1)).view(self.timesteps_out, len(x), 10)


class StatefulNet(PlainNet):
    """Keeps a potential between calls (SpikingJelly without reset_net): the same input twice
    gives different, but reproducible, outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.v = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        self.v = (
            out.detach().mean() + 0.5 * self.v
            if isinstance(self.v, float)
            else out.detach().mean() + 0.5 * self.v
        )
        return out + self.v


def _trained(model: PlainNet, steps: int = 150) -> PlainNet:
    """A few full-batch Adam steps on the digits training split (about a second)."""
    from snnbench.data import load_dataset

    x, y = load_dataset("digits", "train")
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(steps):
        optimizer.zero_grad()
        nn.functional.cross_entropy(PlainNet.forward(model, x), y).backward()
        optimizer.step()
    return model.eval()


def plain_net() -> PlainNet:
    torch.manual_seed(0)
    return _trained(PlainNet())


def noisy_net() -> NoisyNet:
    torch.manual_seed(0)
    return _trained(NoisyNet())


def time_first_net() -> TimeFirstNet:
    torch.manual_seed(0)
    return _trained(TimeFirstNet())


def stateful_net() -> StatefulNet:
    torch.manual_seed(0)
    return _trained(StatefulNet())
