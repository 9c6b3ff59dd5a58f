"""The fused multi-step LIF core: the whole T loop in one autograd node (docs/guide.md, neurons/).

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

import math
from dataclasses import dataclass

import torch
from torch.autograd.function import once_differentiable

from snnbench.neurons import native
from snnbench.neurons.surrogate import Surrogate


@dataclass(frozen=True)
class Spec:
    """The static part of one fused call (everything but tensors)."""

    convex: bool
    theta: float
    ge: bool
    detach_reset: bool
    surrogate: Surrogate
    decay_per_step: bool = False  # decay is ``[T, B, ...]`` (RandHet) rather than one k
    escape: bool = False  # noise is added to the fired-on potential only (Noisy-LIF)


def _fire(x: torch.Tensor, theta: float, ge: bool, out: torch.Tensor | None = None) -> torch.Tensor:
    """``H(x - theta)`` as floats: ``x >= theta`` (or ``>``) equals ``x - theta >= 0`` exactly.

    A comparison written into a float ``out`` costs one pass; a boolean result converted by
    ``.to(dtype)`` costs ~10x that on the CPU.
    """
    out = torch.empty_like(x) if out is None else out
    return torch.ge(x, theta, out=out) if ge else torch.gt(x, theta, out=out)


def _silent(x: torch.Tensor, theta: float, ge: bool) -> torch.Tensor:
    """``1 - H(x - theta)`` as floats, one pass."""
    out = torch.empty_like(x)
    return torch.lt(x, theta, out=out) if ge else torch.le(x, theta, out=out)


def _surrogate_factor_(arg: torch.Tensor, surrogate: Surrogate) -> tuple[torch.Tensor, bool, float]:
    """``(q, divide, c)`` with ``surrogate.grad(arg) = c q`` (or ``c / q`` if ``divide``).

    Works in place on ``arg`` for the common shapes, so that the constant ``c`` folds into the
    one ``addcmul``/``addcdiv`` pass that uses the surrogate (equal to the shape's formula up to
    rounding). triangle: ``max(0, w - |x|) / w^2 = -(min(0, |x| - w)) / w^2``; atan:
    ``(a/2) / (1 + (pi a x / 2)^2) = c / (x^2 + b)`` with ``b = (2 / (pi a))^2``, ``c = a b / 2``.
    """
    w = surrogate.width
    if surrogate.kind == "triangle":
        return arg.abs_().sub_(w).clamp_(max=0), False, -1 / w**2
    if surrogate.kind == "atan":
        b = (2 / (math.pi * w)) ** 2  # x^2 + b in one pass (same-index in-place is allowed)
        return torch.addcmul(arg.new_full((), b), arg, arg, out=arg), True, w * b / 2
    return surrogate.grad(arg), False, 1.0


def _times_surrogate(
    a: torch.Tensor, factor: tuple[torch.Tensor, bool, float], out: torch.Tensor | None
) -> torch.Tensor:
    """``a * g`` for the surrogate derivative ``g`` given by ``factor``."""
    q, divide, c = factor
    result = torch.div(a, q, out=out) if divide else torch.mul(a, q, out=out)
    return result if c == 1 else result.mul_(c)


def _add_times_surrogate_(
    base: torch.Tensor, a: torch.Tensor, factor: tuple[torch.Tensor, bool, float]
) -> torch.Tensor:
    """``base += a * g`` in one pass."""
    q, divide, c = factor
    return base.addcdiv_(a, q, value=c) if divide else base.addcmul_(a, q, value=c)


def _decay_at(decay, t: int, spec: Spec):
    return decay[t] if spec.decay_per_step else decay


def run_forward(
    x: torch.Tensor,
    decay,
    gain: torch.Tensor | None,
    noise: torch.Tensor | None,
    spec: Spec,
    potentials: torch.Tensor | None = None,
) -> torch.Tensor:
    """Spikes ``[T, B, ...]`` of inputs ``x`` ``[T, B, ...]``; ``potentials`` receives u_t.

    The same operations as the naive loop in the same order, written into preallocated
    buffers: ``k v + drive``, the compare, and ``v = u (1 - s)`` as ``u - u s`` (equal: the
    product is exact, s being 0 or 1).
    """
    spikes = torch.empty_like(x)
    steps = x.shape[0]
    v = None
    for t in range(steps):
        current = x[t] if gain is None else gain[t] * x[t]
        k = _decay_at(decay, t, spec)
        drive = (1 - k) * current if spec.convex else current
        out = None if potentials is None else potentials[t]
        if v is None:
            u = drive if out is None else out.copy_(drive)
        else:
            u = (
                torch.mul(k, v, out=out)
                if isinstance(k, torch.Tensor)
                else torch.mul(v, k, out=out)
            )
            u.add_(drive)
        if noise is not None and not spec.escape:
            u = u.add_(noise[t]) if v is not None or out is not None else u + noise[t]
        fired_on = u + noise[t] if spec.escape else u
        s = _fire(fired_on, spec.theta, spec.ge, spikes[t])
        if t + 1 < steps:
            v = torch.addcmul(u, u, s, value=-1)
    return spikes


def forward_any(
    x: torch.Tensor,
    decay,
    gain: torch.Tensor | None,
    noise: torch.Tensor | None,
    spec: Spec,
    potentials: torch.Tensor | None = None,
) -> torch.Tensor:
    """:func:`run_forward`, by the native kernel where it covers the call (``native``)."""
    if native.covers(x, decay, gain, noise, spec) and native.same_layout(x, potentials):
        return native.forward(x, decay, gain, noise, spec, potentials)
    return run_forward(x, decay, gain, noise, spec, potentials)


class FusedLIF(torch.autograd.Function):
    """``FusedLIF.apply(x, decay, gain, noise, spec, with_potentials)``: spikes ``[T, B, ...]``
    with BPTT, and with ``with_potentials`` also the potentials u_t ``[T, B, ...]`` as a second
    differentiable output (a loss on them, TGO's membrane term, adds ``du_t`` in the backward)."""

    @staticmethod
    def forward(ctx, x, decay, gain, noise, spec, with_potentials=False):  # type: ignore[override]
        ctx.native_decay = None
        ctx.set_materialize_grads(False)  # an unused output's gradient stays None, not zeros
        decay_grad = isinstance(decay, torch.Tensor) and ctx.needs_input_grad[1]
        if native.covers(x, decay, gain, noise, spec):
            # inputs in one layout once, kept for the backward (no second copy there); row-major
            # draws under a channels_last x are read in place, except escape noise with a decay
            # gradient (which reads the previous step's noise too)
            x = x if native.same_layout(x) else x.contiguous()
            noise = native.like(x, noise) if decay_grad and spec.escape else native.draws(x, noise)
            ctx.native_decay = native.full_decay(x, decay, spec)
        potentials = torch.empty_like(x)
        kernel_decay = decay if ctx.native_decay is None else ctx.native_decay
        spikes = forward_any(x, kernel_decay, gain, noise, spec, potentials)
        gain_grad = gain is not None and ctx.needs_input_grad[2]
        keep_x = (decay_grad and spec.convex) or gain_grad
        ctx.spec = spec
        ctx.float_decay = None if isinstance(decay, torch.Tensor) else decay
        ctx.save_for_backward(
            potentials,
            decay if isinstance(decay, torch.Tensor) else None,
            gain,
            noise if spec.escape else None,
            x if keep_x else None,
        )
        if with_potentials:
            return spikes, potentials
        return spikes

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_spikes, grad_potentials=None):  # type: ignore[override]
        potentials, decay, gain, noise, x = ctx.saved_tensors
        spec: Spec = ctx.spec
        if decay is None:
            decay = ctx.float_decay
        want_x, want_k, want_p = ctx.needs_input_grad[:3]
        if grad_spikes is None:
            grad_spikes = torch.zeros_like(potentials)
        if grad_potentials is None and native.covers(potentials, decay, gain, noise, spec):
            full = decay if ctx.native_decay is None else ctx.native_decay
            grads = native.backward(
                grad_spikes, potentials, noise, full, gain, x, spec, (want_x, want_k, want_p)
            )
            if grads[1] is not None:
                grads = (grads[0], grads[1].sum_to_size(decay.shape), grads[2])
            return (*grads, None, None, None)
        steps = potentials.shape[0]
        # grad_u is written straight into grad_x[t] when dI_t = du_t (tet form, no gain).
        direct = want_x and not spec.convex and gain is None
        grad_x = torch.empty_like(potentials) if want_x else None
        grad_k = None
        grad_p = torch.empty_like(gain) if want_p else None
        grad_v = None
        # A float decay k folds into the two passes that use dv = du_{t+1} k (addcmul's
        # value), saving the pass that would form dv.
        scalar_k = not isinstance(decay, torch.Tensor)
        zero = potentials.new_zeros(()) if scalar_k else None
        cached = None
        for t in reversed(range(steps)):
            u = potentials[t]
            arg, silent = cached if cached is not None else _arg_silent(potentials, noise, t, spec)
            factor = _surrogate_factor_(arg, spec.surrogate)
            g = grad_spikes[t]
            out = grad_x[t] if direct else None
            if grad_v is None:
                grad_u = _times_surrogate(g, factor, out)
            else:
                # du = dv (1 - s) + (ds - dv u) g(z - theta); dv u dropped by detach_reset
                scale = decay if scalar_k else 1.0  # grad_v holds du_{t+1} when scalar_k
                grad_u = (
                    torch.addcmul(zero, grad_v, silent, value=scale, out=out)
                    if scalar_k
                    else torch.mul(grad_v, silent, out=out)
                )
                spike_grad = g if spec.detach_reset else torch.addcmul(g, grad_v, u, value=-scale)
                _add_times_surrogate_(grad_u, spike_grad, factor)
            if grad_potentials is not None:  # a loss on u_t itself (TGO's membrane term)
                grad_u.add_(grad_potentials[t])
            k = _decay_at(decay, t, spec)
            if want_x and not direct:
                gx = grad_u * (1 - k) if spec.convex else grad_u
                grad_x[t] = gx if gain is None else gx * gain[t]
            if want_p:
                gp = grad_u * x[t] if not spec.convex else grad_u * (1 - k) * x[t]
                grad_p[t] = gp.sum()
            cached = None
            if want_k:
                gk = None
                if t > 0:
                    cached = _arg_silent(potentials, noise, t - 1, spec)
                    gk = grad_u * (potentials[t - 1] * cached[1])
                if spec.convex:
                    current = x[t] if gain is None else gain[t] * x[t]
                    gk = -(grad_u * current) if gk is None else gk.sub_(grad_u * current)
                if gk is not None:
                    grad_k = _accumulate(grad_k, gk, t, decay, spec)
            if t > 0:
                grad_v = grad_u if scalar_k else grad_u * k  # scalar k: applied above
        if want_k and grad_k is None:
            grad_k = torch.zeros_like(decay)
        return grad_x, grad_k, grad_p, None, None, None


def _arg_silent(potentials: torch.Tensor, noise: torch.Tensor | None, t: int, spec: Spec):
    """``z_t - theta`` (a fresh tensor) and ``1 - s_t``, recomputed from the saved u_t."""
    u = potentials[t]
    fired_on = u + noise[t] if spec.escape else u
    return fired_on - spec.theta, _silent(fired_on, spec.theta, spec.ge)


def _accumulate(total, grad, t: int, decay: torch.Tensor, spec: Spec):
    """Add step t's decay gradient, summed down to the decay's (broadcast) shape."""
    if spec.decay_per_step:
        if total is None:
            total = torch.zeros_like(decay)
        total[t] = grad.sum_to_size(decay[t].shape)
        return total
    grad = grad.sum_to_size(decay.shape)
    return grad if total is None else total + grad


def fused_lif(
    x: torch.Tensor,
    decay,
    gain: torch.Tensor | None,
    noise: torch.Tensor | None,
    spec: Spec,
    with_potentials: bool = False,
):
    """Spikes ``[T, B, ...]``; one autograd node when a gradient is wanted, else no graph.

    With ``with_potentials``: ``(spikes, potentials)``, the pre-reset u_t ``[T, B, ...]``
    (differentiable when the spikes are)."""
    tensors = [a for a in (x, decay, gain) if isinstance(a, torch.Tensor)]
    if torch.is_grad_enabled() and any(a.requires_grad for a in tensors):
        return FusedLIF.apply(x, decay, gain, noise, spec, with_potentials)
    with torch.no_grad():
        if not with_potentials:
            return forward_any(x, decay, gain, noise, spec)
        potentials = torch.empty_like(x)
        return forward_any(x, decay, gain, noise, spec, potentials), potentials
