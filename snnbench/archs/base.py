"""The wrapper every snnbench model shares: [0,1] images in, time-averaged logits out.

Direct encoding (docs/defenses.md): the normalised image is repeated over T steps and the
first conv + BN of the body acts as the encoder; the body works on ``[T*B, ...]`` and ends in a
non-spiking linear readout whose logits are averaged over T. Event frames ``[B, T, 2, H, W]``
(any 5-d input) carry their own time axis instead of the repeat (docs/guide.md, public API); their
T and channels must be the model's.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from snnbench.errors import SnnbenchError


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, inside the model so that eps stays in pixel units."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer(
            "mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False
        )
        self.register_buffer(
            "std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class SpikingModel(nn.Module):
    """``[B, C, H, W]`` in [0,1] (or event frames ``[B, T, C, H, W]``) -> logits ``[B, K]``.

    ``stochastic`` declares whether the forward pass draws random numbers (noise, random decays,
    gates); it never depends on ``self.training``, so attacks in eval mode keep the randomness.
    ``channels_last_on``: device types where the body runs faster with channels_last weights
    (its arch's registration; ``runtime.place`` applies it).
    """

    def __init__(
        self,
        body: nn.Module,
        timesteps: int,
        mean: Sequence[float],
        std: Sequence[float],
        stochastic: bool = False,
        events: bool = False,
        channels_last_on: Sequence[str] = (),
    ) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.body = body
        self.timesteps = timesteps
        self.stochastic = stochastic
        self.events = events
        self.channels_last_on = tuple(channels_last_on)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        if x.dim() == 5:  # event frames [B, T, C, H, W]: their time axis replaces the repeat
            self._check_frames(x)
            steps = self.normalize(x.transpose(0, 1).flatten(0, 1))
        elif self.events:
            raise SnnbenchError(
                f"this model takes event frames [B, {self.timesteps}, "
                f"{self.normalize.mean.shape[1]}, H, W], got shape "
                f"{tuple(x.shape)}; pass the data set's frames"
            )
        else:
            image = self.normalize(x)
            steps = image.unsqueeze(0).expand(self.timesteps, *image.shape).flatten(0, 1)
        logits = self.body(steps)
        return logits.view(self.timesteps, batch, logits.shape[-1]).mean(0)  # also for B = 0

    def _check_frames(self, x: torch.Tensor) -> None:
        channels = self.normalize.mean.shape[1]
        if x.shape[1] != self.timesteps or x.shape[2] != channels:
            raise SnnbenchError(
                f"event frames must be [B, T={self.timesteps}, C={channels}, H, W] "
                f"for this model (T = its time steps), got shape "
                f"{tuple(x.shape)}; build the model with timesteps = the number "
                f"of frames"
            )


def init_weights(module: nn.Module) -> None:
    """docs/defenses.md: Kaiming-normal convs (fan_out, ReLU), BN (1, 0), linear bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)
