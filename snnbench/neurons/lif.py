"""The multi-step leaky integrate-and-fire neuron (docs/defenses.md).

Charge, fire and reset are separate methods so that a new neuron overrides only what differs
(SpikingJelly's shape). Input and output are ``[T*B, ...]``: the time axis is folded into the
batch so that the stateless layers around the neuron run once for all steps.

    tet form    u_t = k v_{t-1} + I_t          (TET / PKU code; tgo track: k = 0.5, theta = 1)
    convex form u_t = k v_{t-1} + (1-k) I_t    (BrainCog LIF; randhet track: k = 0.5, theta = 0.5)
    s_t = H(u_t - theta)      v_t = u_t (1 - s_t)    (hard reset to 0; s_t detached if asked)

``v_0 = 0`` at every call, so no state leaks between forward passes.

Two implementations of the same loop (an explicit setting, tested for parity):
``fused`` (default, ``snnbench.neurons.fused``: one autograd node saving u_t only) and
``naive`` (one small op per charge/fire/reset, autograd through each). ``SNNBENCH_NEURON_IMPL=
naive|fused`` or :func:`use_neuron_impl` force one for every neuron; ``neuron.fused = False`` for
one. Recorded potentials (``record_potentials``: TGO's membrane term, diagnostics) come out of
the fused node as a second output with their own gradient. The naive loop runs whenever a loss
records input currents (they need the graph through I_t) and for a subclass that overrides
charge, fire or reset without also overriding :meth:`LIF.fused_inputs` (so a new neuron is
correct before it is fast).
"""

from __future__ import annotations

import contextlib
import functools
import os
from dataclasses import dataclass
from typing import Any, Iterator

import torch
from torch import nn

from snnbench.config import NeuronConfig
from snnbench.errors import SnnbenchError
from snnbench.neurons.fused import Spec, fused_lif
from snnbench.neurons.surrogate import Surrogate, spike

IMPLS = ("fused", "naive")
IMPL_ENV = "SNNBENCH_NEURON_IMPL"
_forced_impl: str | None = None


def neuron_impl() -> str:
    """The neuron implementation in force: :func:`use_neuron_impl`, else the env var, else fused."""
    choice = _forced_impl or os.environ.get(IMPL_ENV, "").strip().lower() or "fused"
    if choice not in IMPLS:
        raise SnnbenchError(f"{IMPL_ENV} must be 'fused' or 'naive', got {choice!r}")
    return choice


@contextlib.contextmanager
def use_neuron_impl(impl: str) -> Iterator[None]:
    """Run every neuron with ``impl`` (``fused`` or ``naive``) inside the block."""
    global _forced_impl
    if impl not in IMPLS:
        raise SnnbenchError(f"neuron implementation must be 'fused' or 'naive', got {impl!r}")
    previous, _forced_impl = _forced_impl, impl
    try:
        yield
    finally:
        _forced_impl = previous


def normal_like(like: torch.Tensor) -> torch.Tensor:
    """Standard normal draws shaped like ``like``, in row-major order whatever its layout.

    ``torch.randn_like`` fills memory in storage order, so a channels_last tensor would get the
    same numbers at other positions: the same seed would give other draws on another layout.
    """
    return torch.randn(like.shape, dtype=like.dtype, device=like.device)


def normal_steps(steps: torch.Tensor) -> torch.Tensor:
    """``torch.stack([normal_like(step) for step in steps])`` without the per-step tensors and
    the stack's copy: one ``[T, B, ...]`` buffer whose steps draw in turn, the same numbers
    (``randn`` is ``empty().normal_()``), so scaling it in place saves two passes."""
    out = torch.empty(steps.shape, dtype=steps.dtype, device=steps.device)
    for step in out:
        step.normal_()
    return out


@dataclass
class FusedInputs:
    """What a neuron adds to the fused loop: decays, DLIF's gains, the noise drawn this call."""

    decay: Any  # float, or a tensor broadcasting to [B, ...] (or [T, B, ...])
    gain: torch.Tensor | None = None
    noise: torch.Tensor | None = None
    decay_per_step: bool = False
    escape: bool = False


def _owner(cls: type, name: str) -> type:
    return next(c for c in cls.__mro__ if name in c.__dict__)


@functools.cache
def _fuses(cls: type) -> bool:
    """Whether ``cls`` overrides ``fused_inputs`` wherever it overrides charge, fire or reset
    (once per class: ``simulate`` asks on every forward)."""
    inputs = _owner(cls, "fused_inputs")
    return all(issubclass(inputs, _owner(cls, name)) for name in ("charge", "fire", "reset"))


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
        self.rate_backward = False  # BPTR: backward through the firing rate (``bptr``)
        # Pre-reset potentials u_t, kept only while a loss or a diagnostic asks for them.
        self.record_potentials = False
        self.potentials: list[torch.Tensor] = []
        # Input currents I_t, kept only while a loss asks for them (DLIF's penalty).
        self.record_currents = False
        self.currents: list[torch.Tensor] = []
        self.fused = True  # the fused loop where it applies (module docstring)

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"form={c.form}, decay={c.decay}, theta={c.theta}, T={self.timesteps}, "
            f"surrogate={c.surrogate}:{c.surrogate_width}"
        )

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

    def fusable(self) -> bool:
        """Whether this call may take the fused loop (module docstring)."""
        if not self.fused or self.record_currents:
            return False
        return _fuses(type(self)) and neuron_impl() == "fused"

    def fused_inputs(self, steps: torch.Tensor) -> FusedInputs:
        """The decays, gains and noise of this call for the fused loop; ``steps`` is ``[T, B, ...]``.

        A subclass that overrides ``charge``/``fire``/``reset`` overrides this too, drawing its
        random numbers in the order the naive loop draws them, so both paths agree bit for bit.
        """
        return FusedInputs(decay=self.config.decay)

    def simulate(self, x: torch.Tensor) -> torch.Tensor:
        """The T-step charge/fire/reset loop; spikes ``[T*B, ...]``."""
        if not self.fusable():
            return self.simulate_naive(x)
        steps = x.view(self.timesteps, -1, *x.shape[1:])
        self.potentials, self.currents = [], []
        extra = self.fused_inputs(steps)
        c = self.config
        spec = Spec(
            convex=c.form == "convex",
            theta=c.theta,
            ge=c.spike_ge,
            detach_reset=c.detach_reset,
            surrogate=self.attack_surrogate or self.surrogate,
            decay_per_step=extra.decay_per_step,
            escape=extra.escape,
        )
        if not self.record_potentials:
            return fused_lif(steps, extra.decay, extra.gain, extra.noise, spec).flatten(0, 1)
        spikes, potentials = fused_lif(
            steps, extra.decay, extra.gain, extra.noise, spec, with_potentials=True
        )
        self.potentials = list(potentials.unbind(0))
        return spikes.flatten(0, 1)

    def simulate_naive(self, x: torch.Tensor) -> torch.Tensor:
        """The T-step charge/fire/reset loop, one op at a time; spikes ``[T*B, ...]``."""
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
