"""Defence neurons and the StoG gate (defenses.md sections 2.2 to 2.6)."""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import pytest
import torch
from torch import nn

from snnbench.archs import ARCHS
from snnbench.config import TRACKS, NeuronConfig
from snnbench.errors import SnnbenchError
from snnbench.neurons import (
    DLIF,
    LIF,
    NEURONS,
    HetLIF,
    NoisyLIF,
    RandHetLIF,
    StoGGate,
    Surrogate,
    gated_factory,
    neuron_factory,
    spiking_neurons,
    stochastic_modules,
)

TRACK_NAMES = ("tgo", "randhet")
DRAWS = 100_000


def run(neuron: nn.Module, current: torch.Tensor) -> torch.Tensor:
    """``current`` is ``[T, B, ...]``; spikes come back in the same layout, potentials recorded."""
    neuron.record_potentials = True
    return neuron(current.flatten(0, 1)).view_as(current)


def currents(timesteps: int = 6, batch: int = 5, features: int = 7, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return 1.5 * torch.rand(timesteps, batch, features, generator=generator, dtype=torch.float64)


def lif_reference(config: NeuronConfig, current: torch.Tensor) -> tuple[torch.Tensor, list]:
    neuron = LIF(config, current.shape[0])
    return run(neuron, current), neuron.potentials


def assert_same_as_lif(neuron: nn.Module, config: NeuronConfig, current: torch.Tensor) -> None:
    spikes = run(neuron, current)
    expected, potentials = lif_reference(config, current)
    assert torch.equal(spikes, expected)
    assert all(torch.equal(a, b) for a, b in zip(neuron.potentials, potentials, strict=True))


def charge_residuals(
    config: NeuronConfig,
    current: torch.Tensor,
    spikes: torch.Tensor,
    potentials: list,
    decays: list | None = None,
    gains: torch.Tensor | None = None,
) -> torch.Tensor:
    """``u_t - (k_t v_{t-1} + drive_t)`` in the track's form, v from the neuron's own u and s."""
    v, residuals = torch.zeros_like(current[0]), []
    for t, u in enumerate(potentials):
        k = config.decay if decays is None else decays[t]
        drive = current[t] if gains is None else gains[t] * current[t]
        residuals.append(u - k * v - (drive if config.form == "tet" else (1 - k) * drive))
        v = u * (1 - spikes[t])
    return torch.stack(residuals)


def seeded(seed: int, draw: Callable[[], torch.Tensor]) -> torch.Tensor:
    torch.manual_seed(seed)
    return draw()


def normal_cdf(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


# ------------------------------------------------------------------------------- Noisy-LIF (2.2)


@pytest.mark.parametrize("track", TRACK_NAMES)
@pytest.mark.parametrize("mode", ["escape", "diffusive"])
def test_noisy_zero_variance_is_lif_and_draws_nothing(track: str, mode: str) -> None:
    config, current = TRACKS[track], currents()
    state = torch.get_rng_state()
    assert_same_as_lif(NoisyLIF(config, 6, (7,), noise_var=0.0, mode=mode), config, current)
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("mode", ["escape", "diffusive"])
@pytest.mark.parametrize("u", [0.4, 1.0, 1.3])
def test_noisy_firing_rate_is_phi(mode: str, u: float) -> None:
    torch.manual_seed(1)
    config, noise_var = TRACKS["tgo"], 0.4
    neuron = NoisyLIF(config, 1, (1,), noise_var=noise_var, mode=mode)
    spikes = run(neuron, torch.full((1, DRAWS, 1), u, dtype=torch.float64))
    expected = normal_cdf((u - config.theta) / math.sqrt(noise_var))
    stderr = math.sqrt(expected * (1 - expected) / DRAWS)
    assert abs(spikes.mean().item() - expected) < 3 * stderr


def test_noisy_seeds() -> None:
    neuron, current = NoisyLIF(TRACKS["tgo"], 6, (7,)), currents()
    outputs = [seeded(seed, lambda: run(neuron, current)) for seed in (0, 0, 1)]
    assert torch.equal(outputs[0], outputs[1]) and not torch.equal(outputs[0], outputs[2])
    neuron.eval()  # noise_at_eval = True: still random
    assert not torch.equal(run(neuron, current), run(neuron, current))


def test_noisy_noise_at_eval_false() -> None:
    config, current = TRACKS["tgo"], currents()
    neuron = NoisyLIF(config, 6, (7,), noise_at_eval=False)
    assert not torch.equal(run(neuron, current), run(neuron, current))  # training: noisy
    neuron.eval()
    assert_same_as_lif(neuron, config, current)
    assert torch.equal(run(neuron, current), run(neuron, current))


def test_noisy_surrogate_at_noisy_argument() -> None:
    config, noise_var = TRACKS["tgo"], 0.4
    neuron = NoisyLIF(config, 1, (200,), noise_var=noise_var)
    u = torch.linspace(0.0, 2.0, 200, dtype=torch.float64).view(1, 200).requires_grad_()
    torch.manual_seed(3)
    (grad,) = torch.autograd.grad(neuron(u).sum(), u)
    torch.manual_seed(3)
    noisy = u.detach() + math.sqrt(noise_var) * torch.randn_like(u)
    surrogate = Surrogate(config.surrogate, config.surrogate_width)
    assert torch.equal(grad, surrogate.grad(noisy - config.theta))
    assert not torch.allclose(grad, surrogate.grad(u.detach() - config.theta))


@pytest.mark.parametrize("track", TRACK_NAMES)
def test_noisy_escape_records_clean_potentials(track: str) -> None:
    torch.manual_seed(4)
    config, current = TRACKS[track], currents()
    for mode in ("escape", "diffusive"):
        neuron = NoisyLIF(config, 6, (7,), mode=mode)
        spikes = run(neuron, current)
        residual = charge_residuals(config, current, spikes, neuron.potentials)
        if mode == "escape":
            assert residual.abs().max() < 1e-12
        else:  # the noise is part of the recorded potential
            assert abs(residual.var().item() - 0.4) < 0.15


# ------------------------------------------------------------------------------------- Het (2.3)


@pytest.mark.parametrize("track", TRACK_NAMES)
@pytest.mark.parametrize("granularity", ["neuron", "channel", "layer"])
def test_het_at_init_is_lif(track: str, granularity: str) -> None:
    neuron = HetLIF(TRACKS[track], 6, (7,), granularity=granularity).double()
    assert_same_as_lif(neuron, TRACKS[track], currents())
    assert_same_as_lif(HetLIF(TRACKS[track], 6, (7,)), TRACKS[track], currents())  # float32 w


@pytest.mark.parametrize(
    "shape, granularity, expected",
    [
        ((3, 4, 4), "neuron", (3, 4, 4)),
        ((3, 4, 4), "channel", (3, 1, 1)),
        ((3, 4, 4), "layer", ()),
        ((5,), "neuron", (5,)),
        ((5,), "channel", (5,)),
        ((5,), "layer", ()),
    ],
)
def test_het_granularity_shapes(shape: tuple, granularity: str, expected: tuple) -> None:
    neuron = HetLIF(TRACKS["tgo"], 2, shape, granularity=granularity)
    assert isinstance(neuron.decay_logit, nn.Parameter) and neuron.decay_logit.shape == expected
    x = torch.rand(2 * 3, *shape)
    assert neuron(x).shape == x.shape


@pytest.mark.parametrize("track", TRACK_NAMES)
def test_het_learned_decay_enters_charge_and_gets_gradient(track: str) -> None:
    config, current = TRACKS[track], currents()
    neuron = HetLIF(config, 6, (7,)).double()
    with torch.no_grad():
        neuron.decay_logit.uniform_(-8, 8)
    k = neuron.decay.detach()
    assert ((k > 0) & (k < 1)).all()
    spikes = run(neuron, current)
    residual = charge_residuals(config, current, spikes, neuron.potentials, decays=[k] * 6)
    assert residual.abs().max() < 1e-12
    spikes.sum().backward()
    assert neuron.decay_logit.grad is not None and neuron.decay_logit.grad.abs().sum() > 0


# --------------------------------------------------------------------------------- RandHet (2.4)


@pytest.mark.parametrize("track", TRACK_NAMES)
@pytest.mark.parametrize("per_step", [True, False])
def test_randhet_sigma_zero_is_lif_half(track: str, per_step: bool) -> None:
    config = dataclasses.replace(TRACKS[track], decay=0.5)
    neuron = RandHetLIF(config, 6, (7,), sigma=0.0, per_step=per_step)
    assert not neuron.stochastic
    assert_same_as_lif(neuron, config, currents())


def recorded_decays(neuron: RandHetLIF, current: torch.Tensor) -> torch.Tensor:
    neuron.record_decays = True
    run(neuron, current)
    return torch.stack(neuron.decays)


def test_randhet_star_holds_decays_over_time_not_across_calls() -> None:
    neuron, current = RandHetLIF(TRACKS["randhet"], 6, (7,), per_step=False), currents()
    first, second = recorded_decays(neuron, current), recorded_decays(neuron, current)
    assert first.shape == (6, 5, 7)
    assert all(torch.equal(first[t], first[0]) for t in range(6))
    assert not torch.equal(first[0], second[0])
    assert first[0].unique().numel() == first[0].numel()  # per sample and neuron


def test_randhet_draws_per_step() -> None:
    decays = recorded_decays(RandHetLIF(TRACKS["randhet"], 6, (7,)), currents())
    assert all(not torch.equal(decays[t], decays[t + 1]) for t in range(5))
    assert decays[0].unique().numel() == decays[0].numel()


@pytest.mark.parametrize("track", TRACK_NAMES)
@pytest.mark.parametrize("per_step", [True, False])
def test_randhet_charge_uses_drawn_decays(track: str, per_step: bool) -> None:
    config, current = TRACKS[track], currents()
    neuron = RandHetLIF(config, 6, (7,), per_step=per_step)
    neuron.record_decays = True
    spikes = run(neuron, current)
    assert len(neuron.decays) == 6
    residual = charge_residuals(config, current, spikes, neuron.potentials, neuron.decays)
    assert residual.abs().max() < 1e-12


def test_randhet_mean_decay_is_half() -> None:
    torch.manual_seed(5)
    decays = recorded_decays(RandHetLIF(TRACKS["randhet"], 1, (1,)), torch.zeros(1, DRAWS, 1))
    assert abs(decays.mean().item() - 0.5) < 0.01
    assert ((decays > 0) & (decays < 1)).all()


@pytest.mark.parametrize("per_step", [True, False])
def test_randhet_seeds_in_train_and_eval(per_step: bool) -> None:
    neuron, current = RandHetLIF(TRACKS["randhet"], 6, (7,), per_step=per_step), currents()
    for training in (True, False):
        neuron.train(training)
        outputs = [
            seeded(seed, lambda: run(neuron, current) + torch.stack(neuron.potentials))
            for seed in (0, 0, 1)
        ]
        assert torch.equal(outputs[0], outputs[1]) and not torch.equal(outputs[0], outputs[2])


# ------------------------------------------------------------------------------------ StoG (2.5)


def gate_with(rho: torch.Tensor, timesteps: int = 1, **options) -> StoGGate:
    gate = StoGGate(tuple(rho.shape), timesteps, **options).double()
    with torch.no_grad():
        gate.rho.copy_(rho)
    return gate


def test_stog_open_gate_is_ungated_exactly() -> None:
    torch.manual_seed(6)
    neuron = LIF(TRACKS["tgo"], 4, (3, 4, 4))
    gate = StoGGate((3, 4, 4), 4).double()
    x = torch.randn(4 * 2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(4 * 2, 3, 4, 4, dtype=torch.float64)
    plain = neuron(x)
    gated = gate(neuron(x))
    assert torch.equal(plain, gated)
    g_plain = torch.autograd.grad((plain * weights).sum(), x)[0]
    g_gated = torch.autograd.grad((gated * weights).sum(), [x, gate.rho])
    assert torch.equal(g_plain, g_gated[0])
    assert torch.isfinite(g_gated[1]).all() and not g_gated[1].any()


@pytest.mark.parametrize("rho, p", [(0.3, 0.3), (0.05, 0.1), (0.8, 0.8)])
def test_stog_keep_rate_is_p(rho: float, p: float) -> None:
    torch.manual_seed(7)
    gate = gate_with(torch.full((1,), rho))
    kept = gate(torch.ones(DRAWS, 1, dtype=torch.float64)).mean().item()
    assert abs(kept - p) < 3 * math.sqrt(p * (1 - p) / DRAWS)


def relaxed_grad(
    gate: StoGGate, s: torch.Tensor, upstream: torch.Tensor, seed: int
) -> torch.Tensor:
    """The spec's derivative, recomputed from the same logistic draw."""
    torch.manual_seed(seed)
    u = torch.rand(s.shape, dtype=torch.float64)
    noise = torch.log(u) - torch.log1p(-u)
    p, tau = gate.rho.detach(), gate.temperature
    sig = torch.sigmoid((torch.logit(p) + noise) / tau)
    return upstream * s * sig * (1 - sig) / (tau * p * (1 - p + 1e-3))


@pytest.mark.parametrize("reduce", ["mean", "sum"])
@pytest.mark.parametrize("grad_sign, factor", [("reference", -1.0), ("analytic", 1.0)])
def test_stog_rho_gradient_is_the_relaxed_derivative_times_the_sign(
    reduce: str, grad_sign: str, factor: float
) -> None:
    gate = gate_with(
        torch.tensor([0.2, 0.5, 0.9]), timesteps=4, grad_reduce=reduce, grad_sign=grad_sign
    )
    s = (torch.rand(4 * 50, 3, dtype=torch.float64) < 0.7).double()
    for sign in (1.0, -1.0):
        upstream = sign * torch.rand(4 * 50, 3, dtype=torch.float64)
        torch.manual_seed(8)
        (grad,) = torch.autograd.grad((gate(s) * upstream).sum(), gate.rho)
        expected = factor * relaxed_grad(gate, s, upstream, seed=8)
        expected = expected.mean(0) if reduce == "mean" else expected.sum(0)
        assert torch.allclose(grad, expected, rtol=1e-10, atol=0)
        assert (torch.sign(grad) == sign * factor).all()


def test_stog_input_gradient_is_the_mask() -> None:
    gate = gate_with(torch.full((6,), 0.5), timesteps=2)
    s = torch.ones(2 * 40, 6, dtype=torch.float64, requires_grad=True)
    out = gate(s)
    (grad,) = torch.autograd.grad(out.sum(), s)
    assert torch.equal(grad, out.detach())
    assert 0 < out.mean() < 1


def test_stog_no_rho_gradient_at_or_outside_the_clamp() -> None:
    rho = torch.tensor([0.05, 0.1, 1.0, 1.5, 0.5], dtype=torch.float64)
    gate = gate_with(rho, timesteps=2)
    out = gate(torch.ones(2 * 1000, 5, dtype=torch.float64))
    (grad,) = torch.autograd.grad(out.sum(), gate.rho)
    assert torch.isfinite(grad).all()
    assert not grad[:4].any() and grad[4] < 0  # the reference sign: -dm/dp
    assert out[:, 2:4].eq(1).all()  # p = 1: every spike passes


def test_stog_random_in_eval_and_per_step() -> None:
    gate = gate_with(torch.full((8,), 0.5), timesteps=4).eval()
    s = torch.ones(4 * 3, 8, dtype=torch.float64)
    first, second = gate(s), gate(s)
    assert not torch.equal(first, second)
    assert len({tuple(row.tolist()) for row in first}) > 1  # rows: steps and samples
    assert gate.stochastic


def test_gated_factory_on_tiny_arch() -> None:
    torch.manual_seed(9)
    factory = gated_factory(neuron_factory(TRACKS["tgo"], 2), 2, grad_reduce="sum")
    body = ARCHS.get("tiny")(factory, in_channels=1, num_classes=10, image_size=8)
    gates = [m for m in body.modules() if isinstance(m, StoGGate)]
    assert len(spiking_neurons(body)) == 2 and len(gates) == 2
    assert [tuple(g.rho.shape) for g in gates] == [(16, 8, 8), (32, 4, 4)]
    assert stochastic_modules(body) == gates
    logits = body(torch.rand(2 * 3, 1, 8, 8))
    assert logits.shape == (6, 10)
    logits.sum().backward()
    assert all(torch.isfinite(g.rho.grad).all() for g in gates)


# ------------------------------------------------------------------------------------ DLIF (2.6)


@pytest.mark.parametrize("track", TRACK_NAMES)
def test_dlif_unit_gain_is_lif(track: str) -> None:
    assert_same_as_lif(DLIF(TRACKS[track], 6, (7,)).double(), TRACKS[track], currents())
    assert_same_as_lif(DLIF(TRACKS[track], 6, (7,)), TRACKS[track], currents())


@pytest.mark.parametrize("track", TRACK_NAMES)
def test_dlif_decay_option(track: str) -> None:
    slow = dataclasses.replace(TRACKS[track], decay=0.99)
    neuron = DLIF(TRACKS[track], 6, (7,), decay=0.99)
    assert_same_as_lif(neuron, slow, currents())
    assert not torch.equal(
        torch.stack(neuron.potentials), torch.stack(lif_reference(TRACKS[track], currents())[1])
    )


@pytest.mark.parametrize("track", TRACK_NAMES)
def test_dlif_gain_enters_charge_and_gets_gradient(track: str) -> None:
    config, current = TRACKS[track], currents()
    neuron = DLIF(config, 6, (7,)).double()
    with torch.no_grad():
        neuron.input_gain.copy_(torch.tensor([2.0, 0.5, 1.0, 1.5, 0.8, 1.2]))
    neuron.record_currents = True
    spikes = run(neuron, current)
    assert torch.equal(torch.stack(neuron.currents), current)  # raw I_t, before the gain
    gains = neuron.input_gain.detach()
    assert (
        charge_residuals(config, current, spikes, neuron.potentials, gains=gains).abs().max()
        < 1e-12
    )
    spikes.sum().backward()
    assert neuron.input_gain.grad.shape == (6,)
    assert neuron.input_gain.grad.abs().sum() > 0


# ----------------------------------------------------------------------------- every neuron


@pytest.mark.parametrize("name", NEURONS.names())
@pytest.mark.parametrize("shape", [(3, 4, 4), (5,)])
def test_every_neuron_builds_runs_and_spikes(name: str, shape: tuple) -> None:
    torch.manual_seed(10)
    neuron = neuron_factory(dataclasses.replace(TRACKS["tgo"], kind=name), timesteps=4)(shape)
    assert spiking_neurons(neuron) == [neuron]
    x = (1.5 * torch.randn(4 * 2, *shape)).requires_grad_()
    out = neuron(x)
    assert out.shape == x.shape
    assert set(out.unique().tolist()) <= {0.0, 1.0}
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_stochastic_modules() -> None:
    config = TRACKS["tgo"]
    expected = {
        LIF(config, 4): False,
        HetLIF(config, 4): False,
        DLIF(config, 4): False,
        NoisyLIF(config, 4): True,
        NoisyLIF(config, 4, noise_at_eval=False): False,
        NoisyLIF(config, 4, noise_var=0.0): False,
        RandHetLIF(config, 4): True,
        RandHetLIF(config, 4, sigma=0.0): False,
        StoGGate((2,), 4): True,
    }
    for module, stochastic in expected.items():
        assert (stochastic_modules(nn.Sequential(module)) == [module]) is stochastic


@pytest.mark.parametrize(
    "build",
    [
        lambda c: NoisyLIF(c, 4, noise_var=-0.1),
        lambda c: NoisyLIF(c, 4, mode="escpae"),
        lambda c: HetLIF(c, 2, (5,), granularity="synapse"),
        lambda c: HetLIF(c, 2, (), granularity="channel"),
        lambda c: RandHetLIF(c, 4, sigma=-1.0),
        lambda c: DLIF(c, 6, decay=1.5),
        lambda c: StoGGate((3,), 2, grad_reduce="max"),
        lambda c: StoGGate((3,), 2, temperature=0.0),
        lambda c: StoGGate((3,), 2)(torch.ones(4, 5)),
    ],
)
def test_bad_options_are_one_line_errors(build) -> None:
    with pytest.raises(SnnbenchError) as error:
        build(TRACKS["tgo"])
    assert "\n" not in str(error.value)
