"""Random noise in the eps-ball, native: the floor every attack must beat (check C16).

- ``noise-uniform``: Linf: delta ~ U[-eps, eps] per pixel; L2: a uniform random direction
  (normalised Gaussian) scaled to length eps. Then clipped to [0, 1].
- ``noise-sign``: a random corner of the Linf ball, delta = +-eps per pixel (Linf only).

One draw per sample from torch's global RNG (the evaluation seeds it per task); the model is
never queried, so ``--eot`` does not apply (recorded as K = 1). 0 GE.
"""

from __future__ import annotations

import torch
from torch import nn

from snnbench.attacks.base import Attack, parse_norm
from snnbench.attacks.registry import ATTACKS
from snnbench.attacks.torchattacks import linf_only


def uniform_noise(x: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    if norm == "Linf":
        delta = torch.empty_like(x).uniform_(-eps, eps)
    else:
        delta = torch.randn_like(x)
        length = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
        delta = delta * (eps / length).view((-1,) + (1,) * (x.dim() - 1))
    return torch.clamp(x + delta, 0, 1)


def sign_noise(x: torch.Tensor, eps: float) -> torch.Tensor:
    sign = torch.randint(0, 2, x.shape, device=x.device, dtype=x.dtype) * 2 - 1
    return torch.clamp(x + eps * sign, 0, 1)


class Noise(Attack):
    def grad_evals(self) -> int:
        return 0

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.eps == 0:
            return x.clone()
        if self.params["dist"] == "sign":
            return sign_noise(x.detach(), self.eps)
        return uniform_noise(x.detach(), self.eps, self.norm)


@ATTACKS.register(
    "noise-uniform",
    summary="Uniform random noise in the eps-ball (0 GE)",
    paper="sanity check (Carlini et al. 2019, arXiv 1902.06705)",
)
def noise_uniform(eps: float, norm: str = "Linf", steps: int | None = None, eot: int = 1) -> Attack:
    """Uniform noise (a sanity floor, Carlini et al., arXiv 1902.06705): Linf U[-eps, eps] per
    pixel; L2 a uniform direction of length eps; one draw, clipped to [0, 1]. 0 GE."""
    return Noise(
        "noise-uniform",
        eps,
        parse_norm(norm),
        {"dist": "uniform", "draws": 1},
        "snnbench.noise",
        eot=1,
    )


@ATTACKS.register(
    "noise-sign",
    summary="A random +-eps corner of the Linf ball (0 GE)",
    paper="sanity check (Carlini et al. 2019, arXiv 1902.06705)",
)
def noise_sign(eps: float, norm: str = "Linf", steps: int | None = None, eot: int = 1) -> Attack:
    """Random sign noise (Carlini et al., arXiv 1902.06705): delta = +-eps per pixel, each sign
    a fair coin; one draw, clipped to [0, 1]; Linf only. 0 GE."""
    return Noise(
        "noise-sign",
        eps,
        linf_only("noise-sign", norm),
        {"dist": "sign", "draws": 1},
        "snnbench.noise",
        eot=1,
    )
