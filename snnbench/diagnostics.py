"""Registered diagnostics (docs/protocol.md): why a defence is robust, not how much.

- ``agcs``: mean cosine similarity of two draws' input gradients at clean inputs (RandHet
  Table 6); 1.0 for a deterministic model.
- ``tnf``: share of pre-reset potentials u with ``|u - theta| < delta * theta`` (TGO's argument:
  fewer potentials near the threshold), per layer and over all, for delta in 0.05/0.1/0.25/0.5;
  plus the share where the neuron's surrogate derivative is non-zero.
- ``sparsity``: the input gradient's zero fraction, Hoyer sparsity, and the share of samples
  with a zero gradient.
- ``spike_rate``: spikes per neuron and time step, per spiking layer, on clean inputs.

Each takes a :class:`snnbench.checks.Probe` (model, samples, seed) and returns a flat
``{name: value}`` dict; ``diagnose`` runs them all.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import contextmanager

import torch
import torch.nn.functional as F

from snnbench.neurons import spiking_neurons
from snnbench.registry import Registry

TNF_DELTAS = (0.05, 0.1, 0.25, 0.5)  # relative to theta; 0.1 is the headline
Diagnostic = Callable[["Probe"], dict[str, float]]  # noqa: F821  (Probe: snnbench.checks)
DIAGNOSTICS: Registry[Diagnostic] = Registry("metric")


def agcs_value(probe) -> tuple[float, int]:
    """(AGCS, number of sample pairs left out because a gradient was zero)."""
    g1, _ = probe.gradients(seed=probe.seed)
    g2, _ = probe.gradients(seed=probe.seed + 1)
    a, b = g1.flatten(1), g2.flatten(1)
    keep = (a.norm(dim=1) > 0) & (b.norm(dim=1) > 0)
    if not bool(keep.any()):
        return 1.0, int((~keep).sum())
    return float(F.cosine_similarity(a[keep], b[keep], dim=1).mean()), int((~keep).sum())


@DIAGNOSTICS.register(
    "agcs",
    summary="gradient cosine similarity between two draws (RandHet Table 6)",
    paper="Wang et al., RandHet, Table 6",
)
def agcs(probe) -> dict[str, float]:
    value, excluded = agcs_value(probe)
    return {"agcs": value, "agcs_excluded": float(excluded)}


@contextmanager
def _recording(model):
    neurons = spiking_neurons(model)
    for neuron in neurons:
        neuron.record_potentials = True
    try:
        yield neurons
    finally:
        for neuron in neurons:
            neuron.record_potentials = False
            neuron.potentials = []


@DIAGNOSTICS.register(
    "tnf",
    summary="share of potentials within delta*theta of the threshold, per layer",
    paper="Wang et al., ICLR 2026 (TGO), section 3",
)
def tnf(probe) -> dict[str, float]:
    near = {d: [0, 0] for d in TNF_DELTAS}
    surrogate_live = [0, 0]
    out: dict[str, float] = {}
    with _recording(probe.model) as neurons:
        probe.logits()
        for index, neuron in enumerate(neurons):
            if not neuron.potentials:
                continue
            u = torch.stack([p.detach().float() for p in neuron.potentials])
            theta = float(neuron.config.theta)
            gap = (u - theta).abs()
            for delta in TNF_DELTAS:
                hits = int((gap < delta * theta).sum())
                near[delta][0] += hits
                near[delta][1] += u.numel()
                if delta == 0.1:
                    out[f"tnf@0.1/layer{index}"] = hits / u.numel()
            live = int((neuron.surrogate.grad(u - theta) != 0).sum())
            surrogate_live[0] += live
            surrogate_live[1] += u.numel()
    for delta, (hits, total) in near.items():
        out[f"tnf@{delta:g}"] = hits / total if total else math.nan
    out["surrogate_nonzero"] = (
        surrogate_live[0] / surrogate_live[1] if surrogate_live[1] else math.nan
    )
    return dict(sorted(out.items()))


@DIAGNOSTICS.register(
    "sparsity",
    summary="input-gradient zero fraction, Hoyer sparsity, zero-gradient samples",
    paper="Wang et al., ICLR 2026 (TGO)",
)
def sparsity(probe) -> dict[str, float]:
    grad, _ = probe.gradients()
    g = grad.flatten(1).double()
    d = g.shape[1]
    l1, l2 = g.abs().sum(1), g.norm(dim=1)
    live = l2 > 0
    hoyer = (
        ((math.sqrt(d) - l1[live] / l2[live]) / (math.sqrt(d) - 1)).mean()
        if live.any()
        else torch.tensor(1.0)
    )
    return {
        "grad_zero_fraction": float((g == 0).double().mean()),
        "grad_hoyer": float(hoyer),
        "grad_zero_samples": float((~live).double().mean()),
    }


@DIAGNOSTICS.register(
    "spike_rate",
    summary="spikes per neuron and time step, per spiking layer",
    paper="docs/protocol.md",
)
def spike_rate(probe) -> dict[str, float]:
    rates: dict[str, float] = {}
    handles = []
    for index, neuron in enumerate(spiking_neurons(probe.model)):

        def hook(module, args, output, index=index):
            rates[f"spike_rate/layer{index}"] = float(output.detach().float().mean())

        handles.append(neuron.register_forward_hook(hook))
    try:
        probe.logits()
    finally:
        for handle in handles:
            handle.remove()
    if rates:
        rates["spike_rate"] = sum(rates.values()) / len(rates)
    return dict(sorted(rates.items()))


def diagnose(probe, names: list[str] | None = None) -> dict[str, float]:
    """Every registered diagnostic (or ``names``) of the probe's model, one flat dict."""
    values: dict[str, float] = {}
    for name in names or DIAGNOSTICS.names():
        values.update(DIAGNOSTICS.get(name)(probe))
    probe.model.eval()
    return values
