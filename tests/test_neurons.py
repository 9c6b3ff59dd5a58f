"""Neurons and surrogates (defenses.md sections 1 and 2.1)."""

from __future__ import annotations

import math

import pytest
import torch

from snnbench.config import TRACKS, NeuronConfig
from snnbench.neurons import LIF, SURROGATES, Surrogate, grad_mode, spike
from snnbench.errors import SnnbenchError


def run_lif(
    config: NeuronConfig, current: torch.Tensor, record: bool = True
) -> tuple[torch.Tensor, LIF]:
    timesteps = current.shape[0]
    neuron = LIF(config, timesteps)
    neuron.record_potentials = record
    out = neuron(current.flatten(0, 1))
    return out.view_as(current), neuron


def test_tet_form_constant_input_fires_at_3_and_6():
    current = torch.full((6, 1, 1), 0.6, dtype=torch.float64)
    spikes, neuron = run_lif(TRACKS["tgo"], current)
    u = torch.stack(neuron.potentials).flatten()
    assert torch.allclose(u, torch.tensor([0.6, 0.9, 1.05, 0.6, 0.9, 1.05], dtype=torch.float64))
    assert spikes.flatten().tolist() == [0, 0, 1, 0, 0, 1]


def test_spike_gradient_is_the_surrogate_exactly():
    u = torch.linspace(-2, 2, 41, dtype=torch.float64, requires_grad=True)
    for config in TRACKS.values():
        surrogate = Surrogate(config.surrogate, config.surrogate_width)
        s = spike(u - config.theta, surrogate, config.spike_ge)
        (grad,) = torch.autograd.grad(s.sum(), u)
        assert torch.equal(grad, surrogate.grad(u.detach() - config.theta))


def test_decay_one_is_integrate_and_fire():
    current = torch.tensor([0.3, 0.2, 0.4, 0.05], dtype=torch.float64).view(4, 1, 1)
    _, neuron = run_lif(TRACKS["pku"], current)
    u = torch.stack(neuron.potentials).flatten()
    assert torch.allclose(u[:3], torch.cumsum(current.flatten(), 0)[:3])


def test_convex_form_braincog_track():
    config = TRACKS["randhet"]
    current = torch.full((3, 1, 1), 1.0, dtype=torch.float64)
    spikes, neuron = run_lif(config, current)
    u = torch.stack(neuron.potentials).flatten()
    # u1 = 0.5 * 1 = 0.5: not above theta = 0.5 (strict H); u2 = 0.25 + 0.5 = 0.75 fires
    assert torch.allclose(u, torch.tensor([0.5, 0.75, 0.5], dtype=torch.float64))
    assert spikes.flatten().tolist() == [0, 1, 0]


def test_detached_reset_changes_only_the_gradient():
    x = torch.randn(4, 3, 5, dtype=torch.float64).flatten(0, 1).requires_grad_()
    outs, grads = [], []
    for detach in (False, True):
        neuron = LIF(NeuronConfig(detach_reset=detach), 4)
        y = neuron(x)
        outs.append(y)
        grads.append(torch.autograd.grad((y * torch.arange(y.numel()).view_as(y)).sum(), x)[0])
    assert torch.equal(outs[0], outs[1])
    assert not torch.allclose(grads[0], grads[1])


def test_no_state_between_calls():
    neuron = LIF(TRACKS["tgo"], 4)
    x = torch.rand(8, 6)
    assert torch.equal(neuron(x), neuron(x))


@pytest.mark.parametrize("name", SURROGATES.names())
def test_every_surrogate_integrates_to_one(name):
    x = torch.linspace(-60, 60, 1_200_001, dtype=torch.float64)
    for width in (0.5, 1.0, 2.0):
        area = torch.trapezoid(Surrogate(name, width).grad(x), x).item()
        assert math.isclose(area, 1.0, abs_tol=0.02), (name, width, area)


def test_grad_mode_swaps_backward_not_forward():
    torch.manual_seed(0)
    layer = torch.nn.Sequential(torch.nn.Linear(5, 7), LIF(TRACKS["tgo"], 2))
    x = torch.randn(4, 5, requires_grad=True)
    y0 = layer(x)
    g0 = torch.autograd.grad(y0.sum(), x)[0]
    grad_mode(layer, "atan:2")
    y1 = layer(x)
    g1 = torch.autograd.grad(y1.sum(), x)[0]
    assert torch.equal(y0, y1) and not torch.allclose(g0, g1)
    grad_mode(layer, "own")
    assert torch.equal(torch.autograd.grad(layer(x).sum(), x)[0], g0)
    with pytest.raises(SnnbenchError):
        grad_mode(layer, "bptx")


def test_bptr_passes_gradient_where_the_neuron_fired():
    """BPTR (SNN-RAT's RateBp): same spikes; d out[t] / d in[t] = 1[neuron fired at some step]."""
    torch.manual_seed(0)
    neuron = LIF(TRACKS["tgo"], 3)
    current = torch.randn(3 * 4, 6, requires_grad=True)
    own = neuron(current)
    grad_mode(neuron, "bptr")
    rate = neuron(current)
    assert torch.equal(own, rate)
    weights = torch.randn_like(rate)
    (grad,) = torch.autograd.grad((rate * weights).sum(), current)
    fired = own.detach().view(3, 4, 6).amax(0) > 0
    expected = weights * fired.float().expand(3, 4, 6).reshape(12, 6)
    assert torch.equal(grad, expected)
    assert 0 < fired.float().mean() < 1  # both cases occur in the test
    grad_mode(neuron, "own")
    assert not neuron.rate_backward
