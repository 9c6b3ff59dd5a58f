"""SpikingJelly and snntorch neurons: same dynamics as ours, reached by every gradient mode and
twin, refused when unknown (snnbench.neurons.foreign, docs/guide.md "Foreign neurons")."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import snnbench
from snnbench.attacks import create_attack
from snnbench.config import NeuronConfig
from snnbench.errors import SnnbenchError
from snnbench.neurons import LIF, grad_mode
from snnbench.neurons.foreign import SJ_NEURONS
from snnbench.neurons.twins import ann_twin, mean_twin

T = 4
EPS = 32 / 255
MODES = ("atan:0.5", "rect:2", "bptr")


def spikingjelly():
    return pytest.importorskip("spikingjelly.activation_based.neuron")


def snntorch():
    return pytest.importorskip("snntorch")


def sj_lif(step_mode: str = "m", decay_input: bool = False) -> nn.Module:
    neuron = spikingjelly()
    from spikingjelly.activation_based import surrogate

    return neuron.LIFNode(
        tau=2.0,
        decay_input=decay_input,
        v_reset=0.0,
        v_threshold=1.0,
        surrogate_function=surrogate.ATan(),
        step_mode=step_mode,
    )


def leaky() -> nn.Module:
    return snntorch().Leaky(beta=0.5, threshold=1.0, reset_mechanism="zero")


def ours(**config) -> LIF:
    return LIF(NeuronConfig(**config), T)


def run_ours(neuron: LIF, x: torch.Tensor) -> torch.Tensor:
    return neuron(x.flatten(0, 1)).view(x.shape)


def run_steps(neuron: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A single-step foreign neuron over ``x[T, ...]`` (SpikingJelly 's' mode or snntorch)."""
    if hasattr(neuron, "step_mode"):
        return torch.stack([neuron(x[t]) for t in range(len(x))])
    mem, out = neuron.init_leaky(), []
    for t in range(len(x)):
        spikes, mem = neuron(x[t], mem)
        out.append(spikes)
    return torch.stack(out)


class Steps(nn.Module):
    """One forward = one T-step sequence through a foreign neuron (the attacked model's role)."""

    def __init__(self, neuron: nn.Module) -> None:
        super().__init__()
        self.neuron = neuron

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not hasattr(self.neuron, "step_mode"):  # snntorch: run_steps starts at rest
            return run_steps(self.neuron, x)
        self.neuron.reset()
        return self.neuron(x) if self.neuron.step_mode == "m" else run_steps(self.neuron, x)


def currents(seed: int = 0, shape: tuple[int, ...] = (T, 64, 512)) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=generator) * 1.5 + 0.5


# -- dynamics: the forward is the same neuron --------------------------------------------------


@pytest.mark.parametrize("step_mode", ["m", "s"])
def test_spikingjelly_lif_is_our_tet_and_convex_form(step_mode):
    x = currents()
    for form, decay_input in (("tet", False), ("convex", True)):
        theirs = Steps(sj_lif(step_mode, decay_input))(x)
        mine = run_ours(ours(form=form, decay=0.5, theta=1.0), x)
        assert theirs.sum() > 10_000 and torch.equal(theirs, mine), form


def test_snntorch_leaky_is_our_tet_form_firing_above_threshold():
    x = currents()
    theirs = run_steps(leaky(), x)
    assert theirs.sum() > 10_000
    assert torch.equal(theirs, run_ours(ours(form="tet", decay=0.5, spike_ge=False), x))
    # H(0) matters: ours with H(0) = 1 fires where snntorch's membrane sits exactly at 1.
    exact = torch.ones(T, 4, 4)
    assert not torch.equal(run_steps(leaky(), exact), run_ours(ours(form="tet"), exact))


# -- gradients: each mode's backward is ours, bit for bit up to float rounding ----------------


def grad_of(model, x: torch.Tensor, mode: str, run) -> torch.Tensor:
    x = x.clone().requires_grad_()
    weights = torch.linspace(-1, 1, x.shape[-1])
    grad_mode(model, mode)
    try:
        (run(model, x) * weights).sum().backward()
    finally:
        grad_mode(model, "own")
    return x.grad


FOREIGN_TWINS = {  # (foreign neuron, our equivalent config) with the same forward and backward
    "sj-m": (lambda: Steps(sj_lif("m")), dict(form="tet", detach_reset=False)),
    "sj-s": (lambda: Steps(sj_lif("s")), dict(form="tet", detach_reset=False)),
    "snntorch": (lambda: Steps(leaky()), dict(form="tet", spike_ge=False, detach_reset=True)),
}


@pytest.mark.parametrize("name", list(FOREIGN_TWINS))
@pytest.mark.parametrize("mode", MODES)
def test_gradient_modes_give_our_gradient_on_their_neurons(name, mode):
    make, config = FOREIGN_TWINS[name]
    x = currents(1, (T, 8, 64))
    foreign = make()
    mine = ours(decay=0.5, theta=1.0, surrogate="atan", surrogate_width=2.0, **config)
    theirs = grad_of(foreign, x, mode, lambda m, v: m(v))
    assert torch.allclose(theirs, grad_of(mine, x, mode, run_ours), atol=1e-6)
    assert not torch.allclose(theirs, grad_of(foreign, x, "own", lambda m, v: m(v)))


@pytest.mark.parametrize("name", SJ_NEURONS)
def test_every_recognised_spikingjelly_node_takes_the_surrogate(name):
    neuron = spikingjelly()
    cls = getattr(neuron, name)
    options = {"tau": 2.0, "decay_input": False} if name == "SimpleLIFNode" else {}
    for step_mode in ("m", "s"):
        model = Steps(cls(step_mode=step_mode, **options))
        x = currents(2, (T, 4, 32)) + 0.5
        with torch.no_grad():
            plain = model(x)
            grad_mode(model, "rect:0.5")
            swapped = model(x)
            grad_mode(model, "own")
        assert torch.equal(swapped, plain) and plain.sum() > 0  # forward untouched
        grad = grad_of(model, x, "rect:0.5", lambda m, v: m(v))
        assert not torch.equal(grad, grad_of(model, x, "own", lambda m, v: m(v))), step_mode


# -- attacks on small digits models -------------------------------------------------------------


class SJNet(nn.Module):
    """conv -> LIF -> linear -> LIF -> linear readout averaged over T (SpikingJelly)."""

    def __init__(self, step_mode: str = "m") -> None:
        super().__init__()
        from spikingjelly.activation_based import functional

        self.reset_net = functional.reset_net
        self.step_mode = step_mode
        self.conv, self.fc = nn.Conv2d(1, 8, 3, padding=1), nn.Linear(512, 32)
        self.head = nn.Linear(32, 10)
        self.lif1, self.lif2 = sj_lif(step_mode), sj_lif(step_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.reset_net(self)  # every forward starts at rest
        if self.step_mode == "m":
            steps = x.expand(T, *x.shape).flatten(0, 1)
            s1 = self.lif1(self.conv(4 * steps).unflatten(0, (T, len(x))))
            return self.head(self.lif2(self.fc(s1.flatten(2)))).mean(0)
        out = [
            self.head(self.lif2(self.fc(self.lif1(self.conv(4 * x)).flatten(1)))) for _ in range(T)
        ]
        return torch.stack(out).mean(0)


class LeakyNet(nn.Module):
    """The same net with snntorch's Leaky, membranes passed explicitly."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.fc = nn.Conv2d(1, 8, 3, padding=1), nn.Linear(512, 32)
        self.head = nn.Linear(32, 10)
        self.lif1, self.lif2 = leaky(), leaky()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m1, m2, out = self.lif1.init_leaky(), self.lif2.init_leaky(), 0
        for _ in range(T):
            s1, m1 = self.lif1(self.conv(4 * x), m1)
            s2, m2 = self.lif2(self.fc(s1.flatten(1)), m2)
            out = out + self.head(s2)
        return out / T


class MyLIF(nn.Module):
    """A neuron snnbench does not know (its own Heaviside, no surrogate)."""

    def __init__(self) -> None:
        super().__init__()
        self.v_threshold = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x >= self.v_threshold).to(x.dtype) + 0 * x


MODELS = {"sj-m": lambda: SJNet("m"), "sj-s": lambda: SJNet("s"), "snntorch": LeakyNet}


def digits(n: int = 16):
    x, y = snnbench.load_dataset("digits", "test")
    return x[:n], y[:n]


def spike_functions(model: nn.Module) -> list:
    return [
        m.__dict__.get("spike_grad", m._modules.get("surrogate_function"))
        for m in model.modules()
        if type(m).__name__ in ("LIFNode", "Leaky")
    ]


def leftovers(model: nn.Module) -> list:
    hooks = [
        h
        for m in model.modules()
        for h in (*m._forward_hooks.values(), *m._forward_pre_hooks.values())
    ]
    marks = [k for m in model.modules() for k in m.__dict__ if k.startswith("_snnbench")]
    return hooks + marks


@pytest.mark.parametrize("name", list(MODELS))
def test_every_gradient_mode_and_twin_crafts_other_inputs_then_restores(name):
    if name == "snntorch":
        snntorch()
    else:
        spikingjelly()
    torch.manual_seed(0)
    model = MODELS[name]().eval()
    x, y = digits()
    with torch.no_grad():
        before = model(x)
    spikes_before = spike_functions(model)
    plain = create_attack("fgsm", EPS)(model, x, y)
    for mode in MODES:
        attack = create_attack("fgsm", EPS, surrogate=mode)
        assert not torch.equal(attack(model, x, y), plain), mode
    assert not torch.equal(create_attack("transfer-ann-twin-fgsm", EPS)(model, x, y), plain)
    # No randomness in these neurons: the mean twin is the model, so is its attack.
    assert torch.equal(create_attack("transfer-mean-twin-fgsm", EPS)(model, x, y), plain)
    with torch.no_grad():
        assert torch.equal(model(x), before)
    assert all(a is b for a, b in zip(spike_functions(model), spikes_before))
    assert leftovers(model) == []


def test_ann_twin_replaces_foreign_neurons_with_relu():
    spikingjelly()
    model = SJNet("s").eval()
    twin = ann_twin(model)
    assert not any(type(m).__name__ == "LIFNode" for m in twin.modules())
    x, _ = digits(4)
    expected = model.head(model.fc(model.conv(4 * x).relu().flatten(1)).relu())
    assert torch.allclose(twin(x), expected, atol=1e-6)


class Mixed(nn.Module):
    def __init__(self, neuron: nn.Module) -> None:
        super().__init__()
        self.fc, self.neuron, self.head = nn.Linear(64, 32), neuron, nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if callable(getattr(self.neuron, "reset", None)):
            self.neuron.reset()  # SpikingJelly keeps its state until reset
        return self.head(self.neuron(4 * self.fc(x.flatten(1))))


def subclass_of_lifnode() -> nn.Module:
    class TweakedLIF(type(sj_lif("s"))):
        pass

    return TweakedLIF(tau=2.0, decay_input=False, v_reset=0.0)


@pytest.mark.parametrize(
    "make, named",
    [
        (MyLIF, "MyLIF"),
        (subclass_of_lifnode, "TweakedLIF"),
        (nn.Identity, "found no spiking neuron"),
    ],
)
def test_an_unknown_neuron_is_refused_by_every_mode_and_twin(make, named):
    model = Mixed(make()).eval()
    x, y = digits(8)
    plain = create_attack("fgsm", EPS)(model, x, y)  # the plain attack still runs
    for mode in MODES:
        with pytest.raises(SnnbenchError, match=named):
            create_attack("fgsm", EPS, surrogate=mode)(model, x, y)
    for source in ("ann-twin", "mean-twin"):
        with pytest.raises(SnnbenchError, match=named):
            create_attack(f"transfer-{source}-fgsm", EPS)(model, x, y)
    assert torch.equal(create_attack("fgsm", EPS)(model, x, y), plain)
    assert leftovers(model) == []


def test_an_unknown_neuron_beside_a_known_one_is_named():
    spikingjelly()
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(64, 32), sj_lif("s"), nn.Linear(32, 32), MyLIF(), nn.Linear(32, 10)
    )
    with pytest.raises(SnnbenchError, match=r"MyLIF \(4\).*supported"):
        grad_mode(model, "atan:2")
    assert leftovers(model) == []
    with pytest.raises(SnnbenchError, match="MyLIF"):
        mean_twin(model)


def test_a_surrogate_that_does_not_spike_is_refused():
    neuron = spikingjelly()
    from spikingjelly.activation_based import surrogate

    model = Mixed(neuron.LIFNode(surrogate_function=surrogate.ATan(spiking=False)))
    with pytest.raises(SnnbenchError, match="not the Heaviside step"):
        grad_mode(model, "bptr")


def test_a_plan_is_checked_before_anything_runs():
    from snnbench.attacks.suites import SUITES
    from snnbench.attacks.transfer import check_reaches

    plan = SUITES.get("full").attacks(EPS, "Linf", False, 1, None, False)
    with pytest.raises(SnnbenchError, match="MyLIF"):
        check_reaches(Mixed(MyLIF()), plan)
    plain = [a for a in plan if a.grad == "bptt" and not a.id.startswith("transfer-")]
    check_reaches(Mixed(MyLIF()), plain)  # plain attacks never refuse
    spikingjelly()
    check_reaches(SJNet("s"), plan)  # every member reaches SpikingJelly's LIF


class HiddenLeakyNet(nn.Module):
    """snntorch with ``init_hidden=True``: the state lives in the neurons, reset by utils.reset."""

    def __init__(self) -> None:
        super().__init__()
        self.fc, self.head = nn.Linear(64, 32), nn.Linear(32, 10)
        self.lif = snntorch().Leaky(beta=0.5, reset_mechanism="zero", init_hidden=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from snntorch import utils

        utils.reset(self)
        steps = [self.head(self.lif(4 * self.fc(x.flatten(1)))) for _ in range(T)]
        return torch.stack(steps).mean(0)


def test_a_twin_resets_the_snntorch_state_its_copies_keep():
    import copy

    torch.manual_seed(0)
    model = HiddenLeakyNet().eval()
    x, _ = digits(8)
    with torch.no_grad():
        expected = model(x)
        plain_copy, twin = copy.deepcopy(model), mean_twin(model)
        for net in (plain_copy, twin):
            net(1 - x)  # leaves a membrane behind
        # snntorch's reset never reaches a deep copy; the twin resets its own.
        assert not torch.equal(plain_copy(x), expected)
        assert torch.equal(twin(x), expected)
