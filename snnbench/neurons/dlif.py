"""DLIF: LIF with a learnable input gain per time step (docs/defenses.md).

Paper: Ding et al., "Robust Stable Spiking Neural Networks", ICML 2024, arXiv 2405.20694
(code: DingJianhao/stable-snn, MIT; the input is integrated once per step, as its real neuron;
an unused `dlif_forward` there integrates it twice).

    tet form    u_t = k v_{t-1} + p_t I_t
    convex form u_t = k v_{t-1} + (1-k) p_t I_t      (the track's ``neuron.form``)

``p`` (``input_gain``, shape ``(T,)``) is learned per layer, init 1; spike and reset as the track's
LIF. Deterministic. The ``dlif`` defence passes the paper's ``decay = 0.99`` (``dlif.decay``);
``decay = None`` takes the track's ``neuron.decay``. Recorded currents are the raw
``I_t`` before the gain, as the base class records them. With ``p = 1`` and ``decay = None`` the
neuron is the track's LIF bit for bit.
"""

from __future__ import annotations

import torch
from torch import nn

from snnbench.config import NeuronConfig
from snnbench.errors import SnnbenchError
from snnbench.neurons.lif import LIF, FusedInputs


class DLIF(LIF):
    """LIF whose input is scaled by a learned gain ``p_t`` per time step (shared by the layer)."""

    def __init__(
        self,
        config: NeuronConfig,
        timesteps: int,
        shape: tuple[int, ...] = (),
        *,
        decay: float | None = None,
    ) -> None:
        super().__init__(config, timesteps, shape)
        if decay is not None and not 0.0 <= decay <= 1.0:
            raise SnnbenchError(f"dlif.decay must lie in [0, 1], got {decay}")
        self.decay = config.decay if decay is None else float(decay)
        self.input_gain = nn.Parameter(torch.ones(timesteps))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, dlif_decay={self.decay}"

    def fused_inputs(self, steps: torch.Tensor) -> FusedInputs:
        return FusedInputs(decay=self.decay, gain=self.input_gain.to(steps.dtype))

    def charge(self, v: torch.Tensor, current: torch.Tensor, t: int) -> torch.Tensor:
        k = self.decay
        gained = self.input_gain[t].to(current.dtype) * current
        if self.config.form == "convex":
            return k * v + (1 - k) * gained
        return k * v + gained
