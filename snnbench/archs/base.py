"""The wrapper every snnbench model shares: [0,1] images in, time-averaged logits out.

Direct encoding (docs/defenses.md): the normalised image is repeated over T steps and the
first conv + BN of the body acts as the encoder; the body works on ``[T*B, ...]`` and ends in a
non-spiking linear readout whose logits are averaged over T. Event frames ``[B, T, 2, H, W]``
(any 5-d input) carry their own time axis instead of the repeat (docs/guide.md, public API); their
T and channels must be the model's.

Encode once (docs/performance.md): the encoder sees the same image at every step, so a body
that offers ``encode(image, repeats)`` and ``decode(steps)`` (``body(x) == decode(encode(x, 1))``)
runs its encoder on ``[B, ...]`` and repeats the result over T instead: the same logits and
input gradients up to rounding, T times less encoder work. BatchNorm in train mode sees the
same batch statistics on one copy as on T; its running variance is updated as over the T
copies (:func:`repeated_batch_norm`), so the running statistics are those of the per-step path.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

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
        # Run the body's encoder once per image where it offers one (module docstring).
        self.encode_once = True

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
        elif self.encode_once and hasattr(self.body, "encode"):
            encoded = self.body.encode(self.normalize(x), self.timesteps)
            # cat keeps the encoder's memory layout (channels_last), a reshape would not
            logits = self.body.decode(torch.cat([encoded] * self.timesteps))
            return logits.view(self.timesteps, batch, logits.shape[-1]).mean(0)
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


class EncodedSequential(nn.Sequential):
    """A sequential body whose first ``encoder_length`` layers (conv, BN) are its encoder.

    The same layers, the same state_dict keys as ``nn.Sequential``; ``encode``/``decode`` split
    its forward at the encoder's end (module docstring).
    """

    def __init__(self, *layers: nn.Module, encoder_length: int) -> None:
        super().__init__(*layers)
        self.encoder_length = encoder_length

    def encode(self, image: torch.Tensor, repeats: int) -> torch.Tensor:
        return run_encoder(list(self)[: self.encoder_length], image, repeats)

    def decode(self, steps: torch.Tensor) -> torch.Tensor:
        for layer in list(self)[self.encoder_length :]:
            steps = layer(steps)
        return steps


def run_encoder(layers: Sequence[nn.Module], image: torch.Tensor, repeats: int) -> torch.Tensor:
    """Per-sample layers (convs, BatchNorm) on one copy of an input repeated ``repeats`` times."""
    for layer in layers:
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            image = repeated_batch_norm(layer, image, repeats)
        elif isinstance(layer, (nn.Conv2d, nn.Identity)):
            image = layer(image)
        else:
            raise SnnbenchError(
                f"an encoder layer must be a convolution or BatchNorm (per "
                f"sample, no state), got {type(layer).__name__}; leave it out "
                f"of the arch's encoder"
            )
    return image


def repeated_batch_norm(
    norm: nn.modules.batchnorm._BatchNorm, x: torch.Tensor, repeats: int
) -> torch.Tensor:
    """``norm`` applied to ``repeats`` stacked copies of ``x``, computed on one copy.

    Normalisation and gradients are those of the copies (same mean, same biased variance).
    Only the running variance would differ: PyTorch stores the unbiased variance ``n/(n-1)``
    times the biased one, n = the values per channel, here counted over all copies.
    """
    if repeats == 1 or not (norm.training and norm.track_running_stats):
        return norm(x)
    norm.num_batches_tracked.add_(1)
    factor = 1.0 / float(norm.num_batches_tracked) if norm.momentum is None else norm.momentum
    # momentum 1 stores this batch's mean and unbiased variance (one copy's count) in the
    # scratch buffers: the statistics the normalisation itself computed, no extra pass
    mean, var = torch.zeros_like(norm.running_mean), torch.ones_like(norm.running_var)
    out = F.batch_norm(x, mean, var, norm.weight, norm.bias, True, 1.0, norm.eps)
    with torch.no_grad():
        one = x.numel() // x.shape[1]
        count = repeats * one
        norm.running_mean.mul_(1 - factor).add_(mean, alpha=factor)
        norm.running_var.mul_(1 - factor).add_(
            var, alpha=factor * (one - 1) / one * count / (count - 1)
        )
    return out


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
