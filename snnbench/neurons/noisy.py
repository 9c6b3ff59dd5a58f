"""Noisy-LIF, the neuron of TGO (docs/defenses.md).

Paper: Wang et al., "Robust Spiking Neural Networks Against Adversarial Attacks", ICLR 2026,
arXiv 2602.20548 (appendix E: firing probability ``Phi((u - theta) / sigma)`` given ``u``).

    escape mode     u~_t = u_t + xi_t,  xi_t ~ N(0, noise_var)  (i.i.d. per sample, neuron, step)
                    s_t  = H(u~_t - theta), surrogate g(u~_t - theta), xi_t a constant
                    v_t  = u_t (1 - s_t)         (charge and reset as the track's LIF)
    diffusive mode  u_t <- u_t + xi_t            (the noise enters the membrane potential itself:
                                                  it is fired on, reset, carried into v_t and
                                                  recorded; our reading of ``nlif.mode``)

Defaults: ``noise_var = 0.4`` (the key stores the variance, sigma = sqrt(0.4) ~ 0.632;
RECONSTRUCTED reading of the paper's "variance 0.4"), ``mode = "escape"`` (RECONSTRUCTED: only
the firing decision is noisy, recorded potentials stay noise-free), ``noise_at_eval = True``.
``noise_at_eval = False`` switches the noise off while ``self.training`` is False: the one
documented exception to "randomness never depends on the mode". ``noise_var = 0`` draws nothing
and is the track's LIF bit for bit. Noise comes from ``normal_like`` (PyTorch's global
generator), so ``torch.manual_seed`` reproduces a draw.
"""

from __future__ import annotations

import math

import torch

from snnbench.config import NeuronConfig
from snnbench.errors import SnnbenchError
from snnbench.neurons.lif import LIF, FusedInputs, normal_like, normal_steps
from snnbench.neurons.surrogate import spike

MODES = ("escape", "diffusive")


class NoisyLIF(LIF):
    """LIF with Gaussian noise on the potential compared with the threshold (TGO's NLIF)."""

    def __init__(
        self,
        config: NeuronConfig,
        timesteps: int,
        shape: tuple[int, ...] = (),
        *,
        noise_var: float = 0.4,
        mode: str = "escape",
        noise_at_eval: bool = True,
    ) -> None:
        super().__init__(config, timesteps, shape)
        if not (math.isfinite(noise_var) and noise_var >= 0):
            raise SnnbenchError(f"nlif.noise_var must be a finite number >= 0, got {noise_var}")
        if mode not in MODES:
            raise SnnbenchError(f"nlif.mode must be 'escape' or 'diffusive', got {mode!r}")
        self.noise_var = float(noise_var)
        self.noise_std = math.sqrt(self.noise_var)
        self.mode = mode
        self.noise_at_eval = bool(noise_at_eval)

    @property
    def stochastic(self) -> bool:  # type: ignore[override]
        """Whether the neuron draws random numbers at test time (eval mode)."""
        return self.noise_std > 0 and self.noise_at_eval

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, noise_var={self.noise_var}, mode={self.mode}, "
            f"noise_at_eval={self.noise_at_eval}"
        )

    def noise_on(self) -> bool:
        """Noise is drawn now: sigma > 0, and in training or with ``noise_at_eval``."""
        return self.noise_std > 0 and (self.training or self.noise_at_eval)

    def charge(self, v: torch.Tensor, current: torch.Tensor, t: int) -> torch.Tensor:
        u = super().charge(v, current, t)
        if self.mode == "diffusive" and self.noise_on():
            u = u + self.noise_std * normal_like(u)
        return u

    def fused_inputs(self, steps: torch.Tensor) -> FusedInputs:
        """The track's decay and this call's noise, drawn per step as the naive loop draws it."""
        if not self.noise_on():
            return FusedInputs(decay=self.config.decay)
        noise = normal_steps(steps).mul_(self.noise_std)
        return FusedInputs(decay=self.config.decay, noise=noise, escape=self.mode == "escape")

    def fire(self, u: torch.Tensor, t: int) -> torch.Tensor:
        if self.mode != "escape" or not self.noise_on():
            return super().fire(u, t)
        noisy = u + self.noise_std * normal_like(u)  # xi has no grad: a constant
        surrogate = self.attack_surrogate or self.surrogate
        return spike(noisy - self.config.theta, surrogate, self.config.spike_ge)
