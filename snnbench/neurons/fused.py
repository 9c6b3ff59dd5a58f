"""The fused multi-step LIF core: the whole T loop in one autograd node (design.md, neurons/).

The naive loop (``LIF.simulate_naive``) builds a graph of ~8 nodes per step, each saving its
inputs. Here the forward runs the same elementwise operations in the same order (so spikes are
equal bit for bit) and saves only the pre-reset potentials ``u_t`` ``[T, B, ...]``, plus what a
neuron's randomness or parameters need (escape noise, per-step decays, the input for parameter
gradients). The backward recomputes ``s_t``, the surrogate and ``v_{t-1} = u_{t-1} (1 - s_{t-1})``
from ``u`` and runs BPTT through the hard reset:

    u_t = k_t v_{t-1} + c_t p_t I_t        c_t = 1 (tet) or 1 - k_t (convex); p_t DLIF's gain
    z_t = u_t + xi_t (escape noise, else u_t)    s_t = H(z_t - theta)    v_t = u_t (1 - s_t)

    du_t = dv_t (1 - s_t) + (ds_t - [not detach_reset] dv_t u_t) g(z_t - theta)
    dI_t = du_t c_t p_t      dv_{t-1} = du_t k_t      dk_t = du_t (v_{t-1} - [convex] p_t I_t)
    dp_t = sum(du_t c_t I_t)

Diffusive noise enters ``u_t`` itself (it is saved after the noise), so it needs no term. Every
tensor is plain PyTorch: the same code runs on the CPU and on CUDA. Spikes come from a float
compare (``(x >= 0).to(dtype)``), never a boolean mask with ``where``: ~20x cheaper on the CPU.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from snnbench.neurons.surrogate import Surrogate


@dataclass(frozen=True)
class Spec:
    """The static part of one fused call (everything but tensors)."""

    convex: bool
    theta: float
    ge: bool
    detach_reset: bool
    surrogate: Surrogate
    decay_per_step: bool = False     # decay is ``[T, B, ...]`` (RandHet) rather than one k
    escape: bool = False             # noise is added to the fired-on potential only (Noisy-LIF)


def _heaviside(x: torch.Tensor, ge: bool) -> torch.Tensor:
    return (x >= 0).to(x.dtype) if ge else (x > 0).to(x.dtype)


def _decay_at(decay, t: int, spec: Spec):
    return decay[t] if spec.decay_per_step else decay


def run_forward(x: torch.Tensor, decay, gain: torch.Tensor | None, noise: torch.Tensor | None,
                spec: Spec, potentials: torch.Tensor | None = None) -> torch.Tensor:
    """Spikes ``[T, B, ...]`` of inputs ``x`` ``[T, B, ...]``; ``potentials`` receives u_t."""
    spikes = torch.empty_like(x)
    v = None
    for t in range(x.shape[0]):
        current = x[t] if gain is None else gain[t] * x[t]
        k = _decay_at(decay, t, spec)
        drive = (1 - k) * current if spec.convex else current
        u = drive if v is None else k * v + drive
        if noise is not None and not spec.escape:
            u = u + noise[t]
        fired_on = u + noise[t] if spec.escape else u
        s = _heaviside(fired_on - spec.theta, spec.ge)
        spikes[t] = s
        if potentials is not None:
            potentials[t] = u
        if t + 1 < x.shape[0]:
            v = u * (1 - s)
    return spikes


class FusedLIF(torch.autograd.Function):
    """``FusedLIF.apply(x, decay, gain, noise, spec)``: spikes ``[T, B, ...]`` with BPTT."""

    @staticmethod
    def forward(ctx, x, decay, gain, noise, spec):  # type: ignore[override]
        potentials = torch.empty_like(x)
        spikes = run_forward(x, decay, gain, noise, spec, potentials)
        decay_grad = isinstance(decay, torch.Tensor) and ctx.needs_input_grad[1]
        gain_grad = gain is not None and ctx.needs_input_grad[2]
        keep_x = (decay_grad and spec.convex) or gain_grad
        ctx.spec = spec
        ctx.float_decay = None if isinstance(decay, torch.Tensor) else decay
        ctx.save_for_backward(potentials,
                              decay if isinstance(decay, torch.Tensor) else None,
                              gain, noise if spec.escape else None, x if keep_x else None)
        return spikes

    @staticmethod
    def backward(ctx, grad_spikes):  # type: ignore[override]
        potentials, decay, gain, noise, x = ctx.saved_tensors
        spec: Spec = ctx.spec
        if decay is None:
            decay = ctx.float_decay
        want_x, want_k, want_p = ctx.needs_input_grad[:3]
        steps = potentials.shape[0]
        grad_x = torch.empty_like(potentials) if want_x else None
        grad_k = None
        grad_p = torch.empty_like(gain) if want_p else None
        grad_v = None
        s_prev = None
        for t in reversed(range(steps)):
            u = potentials[t]
            arg = (u + noise[t] if spec.escape else u) - spec.theta
            s = _heaviside(arg, spec.ge) if s_prev is None else s_prev
            g = grad_spikes[t]
            if grad_v is None:
                grad_u = g * spec.surrogate.grad(arg)
            else:
                spike_grad = g if spec.detach_reset else g - grad_v * u
                grad_u = grad_v * (1 - s) + spike_grad * spec.surrogate.grad(arg)
            k = _decay_at(decay, t, spec)
            if want_x or want_p:
                scale = (1 - k) if spec.convex else None
                if want_x:
                    gx = grad_u if scale is None else grad_u * scale
                    if gain is not None:
                        gx = gx * gain[t]
                    grad_x[t] = gx
                if want_p:
                    gp = grad_u * x[t] if scale is None else grad_u * scale * x[t]
                    grad_p[t] = gp.sum()
            s_prev = None
            if t > 0:
                u_prev = potentials[t - 1]
                arg_prev = (u_prev + noise[t - 1] if spec.escape else u_prev) - spec.theta
                s_prev = _heaviside(arg_prev, spec.ge)
                if want_k:
                    v_prev = u_prev * (1 - s_prev)
                    gk = grad_u * v_prev
                    if spec.convex:
                        current = x[t] if gain is None else gain[t] * x[t]
                        gk = gk - grad_u * current
                    grad_k = _accumulate(grad_k, gk, t, decay, spec)
                grad_v = grad_u * k
            elif want_k and spec.convex:
                current = x[t] if gain is None else gain[t] * x[t]
                grad_k = _accumulate(grad_k, -(grad_u * current), t, decay, spec)
        if want_k and grad_k is None:
            grad_k = torch.zeros_like(decay)
        return grad_x, grad_k, grad_p, None, None


def _accumulate(total, grad, t: int, decay: torch.Tensor, spec: Spec):
    """Add step t's decay gradient, summed down to the decay's (broadcast) shape."""
    if spec.decay_per_step:
        if total is None:
            total = torch.zeros_like(decay)
        total[t] = grad.sum_to_size(decay[t].shape)
        return total
    grad = grad.sum_to_size(decay.shape)
    return grad if total is None else total + grad


def fused_lif(x: torch.Tensor, decay, gain: torch.Tensor | None, noise: torch.Tensor | None,
              spec: Spec) -> torch.Tensor:
    """Spikes ``[T, B, ...]``; one autograd node when a gradient is wanted, else no graph."""
    tensors = [a for a in (x, decay, gain) if isinstance(a, torch.Tensor)]
    if torch.is_grad_enabled() and any(a.requires_grad for a in tensors):
        return FusedLIF.apply(x, decay, gain, noise, spec)
    with torch.no_grad():
        return run_forward(x, decay, gain, noise, spec)
