"""RandHet and RandHet*: LIF with random heterogeneous decays (docs/defenses.md).

Paper: Wang et al., "Random heterogeneous spiking neural network for adversarial defense"
(code: BrainCog-X/Brain-Cog ``examples/Snn_safety``, ``RHLIFNode`` and ``RHLIFNode2``).

    k = sigmoid(sigma * eps),  eps ~ N(0, 1)
    convex form u_t = k v_{t-1} + (1-k) I_t     (randhet track, BrainCog)
    tet form    u_t = k v_{t-1} + I_t           (tgo track: only k is random, RECONSTRUCTED)

spike and reset as the track's LIF. ``per_step = True`` (RandHet, ``RHLIFNode``): a fresh eps per
sample, neuron and time step. ``per_step = False`` (RandHet*, ``RHLIFNode2``): eps drawn once per
forward call per sample and neuron and held over all T steps. Defaults: ``sigma = 1.0``
(``randhet.sigma``, BrainCog's default; the paper calls it "variance"; not learnable: the paper
reports that learning it collapses it to 0), ``per_step = True``.

Random in training, attack and evaluation alike (never keyed on ``self.training``); nothing is
cached across forward calls. ``sigma = 0`` draws nothing and uses the same expression as LIF with
``k = sigmoid(0) = 0.5``, so it is the track's LIF (decay 0.5) bit for bit. Draws come from
``normal_like`` (PyTorch's global generator). ``record_decays`` keeps each step's k in
``decays`` (like ``record_potentials``), for tests and diagnostics.
"""

from __future__ import annotations

import math

import torch

from snnbench.config import NeuronConfig
from snnbench.errors import SnnbenchError
from snnbench.neurons.lif import LIF, FusedInputs, normal_like, normal_steps


class RandHetLIF(LIF):
    """LIF with decays ``sigmoid(sigma * eps)`` drawn afresh per step (RandHet) or per call (RandHet*)."""

    def __init__(
        self,
        config: NeuronConfig,
        timesteps: int,
        shape: tuple[int, ...] = (),
        *,
        sigma: float = 1.0,
        per_step: bool = True,
    ) -> None:
        super().__init__(config, timesteps, shape)
        if not (math.isfinite(sigma) and sigma >= 0):
            raise SnnbenchError(f"randhet.sigma must be a finite number >= 0, got {sigma}")
        self.sigma = float(sigma)
        self.per_step = bool(per_step)
        self.record_decays = False
        self.decays: list[torch.Tensor] = []
        self._held: torch.Tensor | None = None

    @property
    def stochastic(self) -> bool:  # type: ignore[override]
        """Whether the neuron draws random numbers (in any mode)."""
        return self.sigma > 0

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, sigma={self.sigma}, per_step={self.per_step}"

    def draw(self, like: torch.Tensor) -> torch.Tensor:
        """Decays ``sigmoid(sigma * eps)`` shaped like ``like``; eps = 0 when sigma = 0."""
        if self.sigma == 0:
            return torch.sigmoid(torch.zeros_like(like))
        return torch.sigmoid(self.sigma * normal_like(like))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.decays = []
        first = x.view(self.timesteps, -1, *x.shape[1:])[0]
        self._held = None if self.per_step else self.draw(first)
        try:
            return super().forward(x)
        finally:
            self._held = None  # nothing survives the call

    def fused_inputs(self, steps: torch.Tensor) -> FusedInputs:
        """This call's decays: held over the steps (RandHet*) or drawn per step, in order."""
        if self._held is not None:
            if self.record_decays:
                self.decays = [self._held] * self.timesteps
            return FusedInputs(decay=self._held)
        # draw(step) for each step, into one buffer; the sigmoid runs per step as in draw()
        # (its vector and scalar paths may differ by an ulp, so the split points must match)
        decays = normal_steps(steps) if self.sigma > 0 else steps.new_zeros(steps.shape)
        for step in decays:
            step.mul_(self.sigma).sigmoid_()
        if self.record_decays:
            self.decays = list(decays.unbind(0))
        return FusedInputs(decay=decays, decay_per_step=True)

    def charge(self, v: torch.Tensor, current: torch.Tensor, t: int) -> torch.Tensor:
        k = self.draw(current) if self._held is None else self._held
        if self.record_decays:
            self.decays.append(k)
        if self.config.form == "convex":
            return k * v + (1 - k) * current
        return k * v + current
