"""The multi-step leaky integrate-and-fire neuron (defenses.md sections 1 and 2.1).

Charge, fire and reset are separate methods so that a new neuron overrides only what differs
(SpikingJelly's shape). Input and output are ``[T*B, ...]``: the time axis is folded into the
batch so that the stateless layers around the neuron run once for all steps.

    tet form    u_t = k v_{t-1} + I_t          (TET / PKU code; tgo track: k = 0.5, theta = 1)
    convex form u_t = k v_{t-1} + (1-k) I_t    (BrainCog LIF; randhet track: k = 0.5, theta = 0.5)
    s_t = H(u_t - theta)      v_t = u_t (1 - s_t)    (hard reset to 0; s_t detached if asked)

``v_0 = 0`` at every call, so no state leaks between forward passes.
"""
from __future__ import annotations

import torch
from torch import nn

from snnbench.config import NeuronConfig
from snnbench.neurons.surrogate import Surrogate, spike


class LIF(nn.Module):
    """Deterministic multi-step LIF; ``decay = 1`` gives the IF neuron of SNN-RAT/SR/StoG."""

    stochastic = False

    def __init__(self, config: NeuronConfig, timesteps: int, shape: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.config = config
        self.timesteps = timesteps
        self.shape = tuple(shape)
        self.surrogate = Surrogate(config.surrogate, config.surrogate_width)
        # Set by ``snnbench.grad_mode``: the attacker's backward, independent of training.
        self.attack_surrogate: Surrogate | None = None
        self.rate_backward = False     # BPTR: backward through the firing rate (``bptr``)
        # Pre-reset potentials u_t, kept only while a loss or a diagnostic asks for them.
        self.record_potentials = False
        self.potentials: list[torch.Tensor] = []
        # Input currents I_t, kept only while a loss asks for them (DLIF's penalty).
        self.record_currents = False
        self.currents: list[torch.Tensor] = []

    def extra_repr(self) -> str:
        c = self.config
        return (f"form={c.form}, decay={c.decay}, theta={c.theta}, T={self.timesteps}, "
                f"surrogate={c.surrogate}:{c.surrogate_width}")

    def charge(self, v: torch.Tensor, current: torch.Tensor, t: int) -> torch.Tensor:
        k = self.config.decay
        if self.config.form == "convex":
            return k * v + (1 - k) * current
        return k * v + current

    def fire(self, u: torch.Tensor, t: int) -> torch.Tensor:
        surrogate = self.attack_surrogate or self.surrogate
        return spike(u - self.config.theta, surrogate, self.config.spike_ge)

    def reset(self, u: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return u * (1 - (s.detach() if self.config.detach_reset else s))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.rate_backward:
            return self._rate_backward(x)
        return self.simulate(x)

    def _rate_backward(self, x: torch.Tensor) -> torch.Tensor:
        """Spikes forward; backward ``grad_x[t] = grad_s[t] * 1[rate > 0]`` (SNN-RAT's ``RateBp``).

        The rate is the mean spike count over the T steps of each neuron of each sample, so the
        gradient passes unchanged wherever the neuron fired at all and is cut where it was silent.
        """
        with torch.no_grad():
            spikes = self.simulate(x)
        fired = spikes.view(self.timesteps, -1, *x.shape[1:]).amax(0) > 0
        mask = fired.to(x.dtype).expand(self.timesteps, *fired.shape).reshape(x.shape)
        return spikes + (x - x.detach()) * mask

    def simulate(self, x: torch.Tensor) -> torch.Tensor:
        """The T-step charge/fire/reset loop; spikes ``[T*B, ...]``."""
        steps = x.view(self.timesteps, -1, *x.shape[1:])
        v = torch.zeros_like(steps[0])
        self.potentials, self.currents = [], []
        out = []
        for t in range(self.timesteps):
            if self.record_currents:
                self.currents.append(steps[t])
            u = self.charge(v, steps[t], t)
            if self.record_potentials:
                self.potentials.append(u)
            s = self.fire(u, t)
            v = self.reset(u, s)
            out.append(s)
        return torch.stack(out).flatten(0, 1)
