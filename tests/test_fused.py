"""Parity of the fused and naive neuron loops, for every registered neuron (lif.py docstring)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from snnbench.config import TRACKS, NeuronConfig
from snnbench.errors import SnnbenchError
from snnbench.neurons import NEURONS, LIF, Surrogate, grad_mode, neuron_factory
from snnbench.neurons.lif import neuron_impl, use_neuron_impl
from snnbench.neurons.stog import gated_factory

SHAPE = (3, 4, 4)
BATCH = 5
# Options worth covering per neuron; a neuron missing here runs with its defaults.
VARIANTS: dict[str, list[dict]] = {
    "noisy": [{"mode": "escape"}, {"mode": "diffusive"}],
    "het": [{"granularity": "neuron"}, {"granularity": "channel"}, {"granularity": "layer"}],
    "randhet": [{"per_step": True}, {"per_step": False}],
    "dlif": [{}, {"decay": 0.9}],
}
CASES = [(name, options) for name in NEURONS.names() for options in VARIANTS.get(name, [{}])]
CONFIGS = {
    "tet": TRACKS["tgo"],
    "convex": TRACKS["randhet"],
    "convex-attached": NeuronConfig(
        form="convex",
        decay=0.7,
        theta=0.5,
        spike_ge=False,
        surrogate="sigmoid",
        surrogate_width=1.0,
    ),
}


def build(name: str, options: dict, config: NeuronConfig, timesteps: int) -> LIF:
    torch.manual_seed(1)
    config = dataclasses.replace(config, kind=name)
    neuron = neuron_factory(config, timesteps, **options)(SHAPE).double()
    assert type(neuron) is NEURONS.get(name)
    with torch.no_grad():  # parameters away from their init, so their gradients matter
        for param in neuron.parameters():
            param.add_(0.5 * torch.randn_like(param))
    return neuron


def run(neuron: torch.nn.Module, x: torch.Tensor, impl: str, seed: int = 7):
    params = [p for p in neuron.parameters() if p.requires_grad]
    x = x.clone().requires_grad_()
    with use_neuron_impl(impl):
        torch.manual_seed(seed)
        y = neuron(x)
    weights = torch.linspace(-1, 2, y.numel(), dtype=y.dtype).view_as(y)
    grads = torch.autograd.grad((y * weights).sum(), [x, *params], allow_unused=True)
    return y.detach(), grads


def inputs(timesteps: int, dtype=torch.float64) -> torch.Tensor:
    torch.manual_seed(3)
    return (0.8 * torch.randn(timesteps * BATCH, *SHAPE) + 0.4).to(dtype)


@pytest.mark.parametrize("attack", [None, "atan:2"])
@pytest.mark.parametrize("timesteps", [1, 4, 8])
@pytest.mark.parametrize("form", list(CONFIGS))
@pytest.mark.parametrize("name,options", CASES, ids=[f"{n}{o}" for n, o in CASES])
def test_fused_matches_naive(name, options, form, timesteps, attack):
    neuron = build(name, options, CONFIGS[form], timesteps)
    assert neuron.fusable()
    if attack:
        grad_mode(neuron, attack)
    x = inputs(timesteps)
    y_naive, g_naive = run(neuron, x, "naive")
    y_fused, g_fused = run(neuron, x, "fused")
    assert torch.equal(y_naive, y_fused)
    assert y_fused.mean() < 1
    for a, b in zip(g_naive, g_fused):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-6)
    assert g_fused[0].abs().sum() > 0


@pytest.mark.parametrize("name,options", CASES, ids=[f"{n}{o}" for n, o in CASES])
def test_fused_float32_forward_is_exact_and_draws_alike(name, options):
    neuron = build(name, options, TRACKS["tgo"], 4).float()
    x = inputs(4, torch.float32)
    for mode in ("train", "eval"):
        neuron.train(mode == "train")
        outs = []
        for impl in ("naive", "fused"):
            torch.manual_seed(11)
            with use_neuron_impl(impl), torch.no_grad():
                outs.append(neuron(x))
            outs.append(torch.rand(3))  # the RNG stream continues alike
        assert torch.equal(outs[0], outs[2]) and torch.equal(outs[1], outs[3])


def test_stochastic_neurons_differ_between_seeds_in_both_paths():
    neuron = build("noisy", {}, TRACKS["tgo"], 4)
    x = inputs(4)
    for impl in ("naive", "fused"):
        with use_neuron_impl(impl):
            torch.manual_seed(0)
            a = neuron(x)
            b = neuron(x)
        assert not torch.equal(a, b)


def test_stog_gated_neuron_matches():
    make = gated_factory(neuron_factory(TRACKS["tgo"], 4), 4)
    torch.manual_seed(0)
    layer = make(SHAPE).double()
    with torch.no_grad():
        layer.gate.rho.fill_(0.6)
    x = inputs(4)
    y0, g0 = run(layer, x, "naive")
    y1, g1 = run(layer, x, "fused")
    assert torch.equal(y0, y1)
    for a, b in zip(g0, g1):
        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-6)


def test_bptr_and_no_grad_take_the_fused_forward():
    neuron = build("lif", {}, TRACKS["tgo"], 4)
    x = inputs(4)
    grad_mode(neuron, "bptr")
    y0, g0 = run(neuron, x, "naive")
    y1, g1 = run(neuron, x, "fused")
    assert torch.equal(y0, y1) and torch.equal(g0[0], g1[0])


def run_with_potentials(neuron: torch.nn.Module, x: torch.Tensor, impl: str):
    """Gradients of a loss on the spikes plus TGO's membrane term on the recorded u_t."""
    from snnbench.defenses.tgo import membrane_constraint

    params = [p for p in neuron.parameters() if p.requires_grad]
    x = x.clone().requires_grad_()
    neuron.record_potentials = True
    with use_neuron_impl(impl):
        torch.manual_seed(7)
        y = neuron(x)
    weights = torch.linspace(-1, 2, y.numel(), dtype=y.dtype).view_as(y)
    penalty = membrane_constraint([neuron.potentials], neuron.config.theta, 1.0)
    grads = torch.autograd.grad((y * weights).sum() + 3 * penalty, [x, *params], allow_unused=True)
    return y.detach(), torch.stack(neuron.potentials).detach(), grads


@pytest.mark.parametrize("form", ["tet", "convex"])
@pytest.mark.parametrize("name,options", CASES, ids=[f"{n}{o}" for n, o in CASES])
def test_recorded_potentials_take_the_fused_path_with_their_gradient(name, options, form):
    """A loss on u_t (TGO's membrane term) no longer forces the naive loop: the fused node
    returns u_t as a second output and adds its gradient in the BPTT."""
    neuron = build(name, options, CONFIGS[form], 4)
    neuron.record_potentials = True
    assert neuron.fusable()
    x = inputs(4)
    y0, u0, g0 = run_with_potentials(neuron, x, "naive")
    y1, u1, g1 = run_with_potentials(neuron, x, "fused")
    assert torch.equal(y0, y1)
    torch.testing.assert_close(u1, u0, rtol=1e-12, atol=1e-12)
    assert g0[0].abs().sum() > 0
    for a, b in zip(g0, g1):
        if a is None or b is None:
            assert a is None and b is None
        else:
            torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-9)
    # the penalty's share of the gradient is real: dropping it changes the input gradient
    _, plain = run(neuron, x, "fused")
    assert not torch.allclose(plain[0], g1[0])


def test_currents_still_take_the_naive_path():
    neuron = build("lif", {}, TRACKS["tgo"], 4)
    neuron.record_currents = True
    assert not neuron.fusable()
    x = inputs(4).requires_grad_()
    neuron(x)
    assert len(neuron.currents) == 4


def test_subclass_overriding_charge_only_stays_naive():
    class Leaky(LIF):
        def charge(self, v, current, t):
            return 0.9 * v + current

    assert not Leaky(TRACKS["tgo"], 4).fusable()


def test_fused_saves_less():
    neuron = build("lif", {}, TRACKS["tgo"], 8)
    x = inputs(8).requires_grad_()
    sizes = {}
    for impl in ("naive", "fused"):
        saved: dict[int, int] = {}

        def pack(t):
            saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        with use_neuron_impl(impl), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            neuron(x)
        sizes[impl] = sum(saved.values())
    assert sizes["fused"] <= x.numel() * x.element_size() < sizes["naive"] / 2


def test_impl_setting(monkeypatch):
    assert neuron_impl() == "fused"
    monkeypatch.setenv("SNNBENCH_NEURON_IMPL", "naive")
    assert neuron_impl() == "naive"
    assert not build("lif", {}, TRACKS["tgo"], 2).fusable()
    with use_neuron_impl("fused"):
        assert neuron_impl() == "fused"
    monkeypatch.setenv("SNNBENCH_NEURON_IMPL", "fast")
    with pytest.raises(SnnbenchError):
        neuron_impl()
    with pytest.raises(SnnbenchError):
        with use_neuron_impl("fast"):
            pass


def test_attack_surrogate_is_used_by_fused_backward():
    neuron = build("lif", {}, TRACKS["tgo"], 4)
    x = inputs(4)
    _, own = run(neuron, x, "fused")
    neuron.attack_surrogate = Surrogate("atan", 2.0)
    _, other = run(neuron, x, "fused")
    assert not torch.allclose(own[0], other[0])


def native_or_skip():
    from snnbench.neurons import native

    if native.module() is None:
        pytest.skip(f"no native kernel here: {native.status()}")
    return native


@pytest.mark.parametrize("surrogate", ["triangle", "atan", "rect", "sigmoid", "fastsigmoid", "exp"])
@pytest.mark.parametrize("form", list(CONFIGS))
@pytest.mark.parametrize("noise", [None, "diffusive", "escape"])
def test_native_kernel_matches_the_pytorch_loop(surrogate, form, noise):
    """float32 channels_last: spikes and potentials equal bit for bit, float64 gradients within
    1e-6 of the PyTorch fused loop (itself tested against the naive loop above)."""
    from snnbench.neurons.fused import FusedLIF, Spec, run_forward

    native = native_or_skip()
    c = CONFIGS[form]
    timesteps, shape = 4, (BATCH, 3, 5, 6)
    spec = Spec(
        convex=c.form == "convex",
        theta=c.theta,
        ge=c.spike_ge,
        detach_reset=c.detach_reset,
        surrogate=Surrogate(surrogate, 1.5),
        escape=noise == "escape",
    )
    torch.manual_seed(4)
    x = (
        (0.8 * torch.randn(timesteps * BATCH, *shape[1:]) + 0.4)
        .to(memory_format=torch.channels_last)
        .view(timesteps, *shape)
    )
    drawn = None if noise is None else 0.3 * torch.randn(timesteps, *shape)  # row-major draws
    assert native.covers(x, c.decay, None, drawn, spec)
    expected_u, got_u = torch.empty_like(x), torch.empty_like(x)
    expected = run_forward(x, c.decay, None, drawn, spec, expected_u)
    got = native.forward(x, c.decay, None, drawn, spec, got_u)
    assert torch.equal(got, expected) and torch.equal(got_u, expected_u)
    assert 0 < got.mean() < 1
    grads = []
    for use_native in (False, True):
        xd = x.double().requires_grad_()
        with pytest.MonkeyPatch.context() as patch:
            if not use_native:
                patch.setattr(native, "covers", lambda *args: False)
            y = FusedLIF.apply(xd, c.decay, None, None if drawn is None else drawn.double(), spec)
            weights = torch.linspace(-1, 2, y.numel(), dtype=y.dtype).view_as(y)
            grads.append(torch.autograd.grad((y * weights).sum(), xd)[0])
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-6, atol=1e-6)
    assert grads[1].abs().sum() > 0


@pytest.mark.parametrize("name,options", CASES, ids=[f"{n}{o}" for n, o in CASES])
@pytest.mark.parametrize("form", ["tet", "convex"])
def test_native_kernel_matches_pytorch_for_every_neuron_channels_last(name, options, form):
    """Every neuron, channels_last steps (its draws row-major): the same spikes, input and
    parameter gradients within 1e-6, with the kernel and without it."""
    native = native_or_skip()
    neuron = build(name, options, CONFIGS[form], 4)
    x = inputs(4).to(memory_format=torch.channels_last)
    y_native, g_native = run(neuron, x, "fused")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(native, "covers", lambda *args: False)
        y_plain, g_plain = run(neuron, x, "fused")
    assert torch.equal(y_native, y_plain)
    for a, b in zip(g_plain, g_native):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-6)
            assert b.abs().sum() > 0


@pytest.mark.parametrize("case", ["diffusive", "escape", "per-step decay", "held decay"])
def test_native_kernel_reads_row_major_draws_in_place(case):
    """Row-major draws under a channels_last float32 input are read in place, not copied (the
    8 x 8 register tiles and the channels and pixels they leave over included): the same spikes,
    potentials and gradients, bit for bit, as with the draws first copied into x's layout."""
    from snnbench.neurons.fused import Spec

    native = native_or_skip()
    timesteps, batch, channels, height, width = 3, 2, 19, 10, 7  # 16 + 3 channels, 64 + 6 pixels
    torch.manual_seed(5)
    x = (0.8 * torch.randn(timesteps * batch, channels, height, width) + 0.4).to(
        memory_format=torch.channels_last
    )
    x = x.view(timesteps, batch, channels, height, width)
    noise, decay = None, 0.8
    if case in ("diffusive", "escape"):
        noise = 0.3 * torch.randn(x.shape)
    else:
        decay = torch.sigmoid(torch.randn(x.shape if case == "per-step decay" else x.shape[1:]))
    spec = Spec(
        convex=True,
        theta=1.0,
        ge=False,
        detach_reset=False,
        surrogate=Surrogate("atan", 2.0),
        decay_per_step=case == "per-step decay",
        escape=case == "escape",
    )
    drawn = noise if noise is not None else decay
    layout = x if drawn.dim() == x.dim() else x[0]
    assert native.draws(layout, drawn) is drawn  # no copy
    copied = native.like(layout, drawn)
    assert not copied.is_contiguous()
    grad = native.like(x, torch.linspace(-1, 2, x.numel()).view(x.shape))
    wants = (True, noise is None, False)
    results = []
    for n, k in (
        ((noise, decay), (copied, decay)) if noise is not None else ((None, decay), (None, copied))
    ):
        potentials = torch.empty_like(x)
        spikes = native.forward(x, k, None, n, spec, potentials)
        grad_x, grad_k, _ = native.backward(grad, potentials, n, k, None, x, spec, wants)
        results.append((spikes, potentials, grad_x, grad_k))
    for got, expected in zip(*results):
        assert (got is None) == (expected is None)
        if got is not None:
            assert torch.equal(got, expected)
    assert 0 < results[0][0].mean() < 1 and results[0][2].abs().sum() > 0


def test_without_the_native_kernel_the_pytorch_loop_runs(monkeypatch):
    from snnbench.neurons import native

    neuron = build("lif", {}, TRACKS["tgo"], 4)
    x = inputs(4)
    y_default, g_default = run(neuron, x, "fused")
    monkeypatch.setenv(native.ENV, "0")
    assert native.module() is None and "SNNBENCH_NATIVE=0" in native.status()
    y_off, g_off = run(neuron, x, "fused")
    assert torch.equal(y_default, y_off)
    torch.testing.assert_close(g_off[0], g_default[0], rtol=1e-6, atol=1e-6)
    monkeypatch.delenv(native.ENV)  # a failed build: one line, PyTorch path
    monkeypatch.setattr(native, "_module", None)
    monkeypatch.setattr(native, "_why_not", None)

    def broken():
        raise RuntimeError("Error building extension\nno compiler found")

    monkeypatch.setattr(native, "_build", broken)
    assert native.module() is None and "no compiler found" in native.status()
    assert torch.equal(run(neuron, x, "fused")[0], y_default)


def test_a_compiler_without_openmp_builds_the_one_thread_kernel(monkeypatch):
    from snnbench.neurons import native

    built = object()

    def load(load_inline, openmp):
        if openmp:
            raise RuntimeError("clang: error: unsupported option '-fopenmp'")
        return built

    monkeypatch.setattr(native, "_load", load)
    monkeypatch.setattr(native, "_module", None)
    monkeypatch.setattr(native, "_why_not", None)
    monkeypatch.setattr(native, "_threads", True)
    assert native.module() is built
    assert "one thread: no OpenMP" in native.status()
