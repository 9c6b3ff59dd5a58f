"""Every registered attack: the eps-ball, [0, 1], a real accuracy drop, eps = 0, EoT, and the
native loops against the libraries they copy (docs/protocol.md, 4, 8)."""

from __future__ import annotations

import pytest
import torch
import torchattacks
from torch import nn

import snnbench
from snnbench.attacks import ATTACKS, LogitMeanEoT, create_attack, eot_gradient
from snnbench.attacks.torchattacks import mifgsm_loop, pgdl2_loop, rfgsm_loop
from snnbench.errors import SnnbenchError

NAME = "vanilla-tiny-digits"
EPS = 32 / 255
# Their cost is set by iterations and survivors, not batch size: they run on 16 samples that
# PGD-10 already breaks, so cascades and per-target loops stop early (defaults and eps unchanged).
EXPENSIVE = {
    "autoattack-standard",
    "autoattack-rand",
    "square",
    "fab-t",
    "apgd-t",
    "pgd50-eot10",
    "apgd50-eot10",
}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models are overhead-bound; with two threads and a busy CPU, intra-op spinning made
    PGD-10 on 64 digits 60x slower (9.6 s vs 0.15 s). One thread is as fast when idle."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model(trained_home):
    return snnbench.load(NAME, trained_home)


@pytest.fixture(scope="module")
def digits():
    return snnbench.load_dataset("digits", "test")


@pytest.fixture(scope="module")
def easy(model, digits):
    """16 clean-correct samples that PGD-10 breaks."""
    x, y = digits[0][:128], digits[1][:128]
    torch.manual_seed(0)
    x_adv = create_attack("pgd10", EPS)(model, x, y)
    with torch.no_grad():
        keep = (model(x).argmax(1) == y) & (model(x_adv).argmax(1) != y)
    assert keep.sum() >= 16
    return x[keep][:16], y[keep][:16]


@pytest.fixture(scope="module")
def stochastic_model(stochastic_home):
    model = snnbench.load("randhet-tiny-digits", stochastic_home).eval()
    assert model.stochastic
    return model


class Flicker(nn.Module):
    """A linear model whose output is switched off (zero gradient) on some calls."""

    stochastic = True

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1)) * (torch.rand(()) >= 0.5).float()


def correct(model, x, y) -> int:
    with torch.no_grad():
        return int((model(x).argmax(1) == y).sum())


@pytest.mark.parametrize("attack_id", ATTACKS.names())
def test_every_attack_stays_in_the_ball_and_lowers_accuracy(model, digits, easy, attack_id):
    x, y = easy if attack_id in EXPENSIVE else (digits[0][:64], digits[1][:64])
    torch.manual_seed(0)
    x_adv = create_attack(attack_id, EPS)(model, x, y)
    assert x_adv.shape == x.shape and torch.isfinite(x_adv).all()
    assert float((x_adv - x).abs().max()) <= EPS + 1e-6
    assert float(x_adv.min()) >= 0 and float(x_adv.max()) <= 1
    clean, adv = correct(model, x, y), correct(model, x_adv, y)
    if attack_id.startswith("noise-"):
        # random noise is a baseline, not an attack: it may fix a sample or two by chance
        assert not torch.equal(x_adv, x) and adv <= clean + max(2, len(y) // 20)
    else:
        assert adv < clean
    assert torch.equal(create_attack(attack_id, 0.0)(model, x, y), x)


def test_every_factory_documents_its_paper_and_library():
    for entry in ATTACKS.entries():
        attack = entry.obj(eps=EPS, norm="Linf", steps=None, eot=1)
        assert attack.id == entry.name and attack.impl and attack.params
        assert "arXiv" in (entry.obj.__doc__ or ""), entry.name
        assert "arXiv" in entry.paper or entry.name.startswith("noise-"), entry.name


def test_l2_runs_where_the_library_has_it_and_is_refused_elsewhere(model, digits):
    x, y = digits[0][:16], digits[1][:16]
    eps = 1.0
    for attack_id in ATTACKS.names():
        try:
            attack = create_attack(attack_id, eps, norm="l2")
        except SnnbenchError as error:
            assert f"attack {attack_id} has no L2 variant" in str(error)
            assert attack_id.startswith(("rfgsm", "mifgsm", "mtpgd", "noise-sign"))
            continue
        assert attack.norm == "L2"
    for attack_id, eot in (
        ("fgsm", 1),
        ("pgd10", 1),
        ("pgd10", 2),
        ("apgd10", 1),
        ("noise-uniform", 1),
    ):
        torch.manual_seed(0)
        x_adv = create_attack(attack_id, eps, norm="L2", eot=eot)(model, x, y)
        assert float((x_adv - x).flatten(1).norm(dim=1).max()) <= eps + 1e-6
        assert float(x_adv.min()) >= 0 and float(x_adv.max()) <= 1


def test_mtpgd_does_at_least_as_well_as_pgd_with_the_same_steps(model, digits):
    x, y = digits[0][:100], digits[1][:100]
    robust = {}
    for attack_id in ("pgd10", "mtpgd10"):
        torch.manual_seed(0)
        robust[attack_id] = correct(model, create_attack(attack_id, EPS)(model, x, y), y)
    assert robust["mtpgd10"] <= robust["pgd10"] + 2, robust


@pytest.mark.parametrize("stochastic", [False, True], ids=["vanilla", "randhet"])
def test_native_eot_loops_equal_the_library_at_k1(model, stochastic_model, digits, stochastic):
    net = stochastic_model if stochastic else model
    x, y = digits[0][:32], digits[1][:32]
    eps = EPS
    cases = [
        (
            lambda: torchattacks.RFGSM(net, eps=eps, alpha=eps / 2, steps=1)(x, y),
            lambda: rfgsm_loop(net, x, y, eps, eps / 2, 1, 1),
        ),
        (
            lambda: torchattacks.RFGSM(net, eps=eps, alpha=eps, steps=1)(x, y),
            lambda: rfgsm_loop(net, x, y, eps, eps, 1, 1),
        ),
        (
            lambda: torchattacks.MIFGSM(net, eps=eps, alpha=eps / 4, steps=5, decay=0.1)(x, y),
            lambda: mifgsm_loop(net, x, y, eps, eps / 4, 5, 0.1, 1),
        ),
        (
            lambda: torchattacks.MIFGSM(net, eps=eps, alpha=eps / 4, steps=5, decay=1.0)(x, y),
            lambda: mifgsm_loop(net, x, y, eps, eps / 4, 5, 1.0, 1),
        ),
        (
            lambda: torchattacks.PGDL2(
                net, eps=1.0, alpha=0.3, steps=3, random_start=True, eps_for_division=1e-10
            )(x, y),
            lambda: pgdl2_loop(net, x, y, 1.0, 0.3, 3, True, 1),
        ),
    ]
    for library, native in cases:
        torch.manual_seed(1)
        expected = library()
        torch.manual_seed(1)
        assert torch.equal(native(), expected)
        assert not torch.equal(expected, x)


def test_mifgsm_keeps_moving_after_a_zero_gradient(digits):
    """torchattacks' MIFGSM: 0/0 momentum is NaN and sign(NaN) = 0, so one zero-gradient draw
    freezes the sample for good; the native loop (what ``mifgsm`` runs) does not."""
    model, x, y = Flicker(), digits[0][:4], digits[1][:4]
    torch.manual_seed(0)  # first draw: output off, gradient zero
    frozen = torchattacks.MIFGSM(model, eps=EPS, alpha=EPS / 4, steps=5, decay=0.1)(x, y)
    torch.manual_seed(0)
    moved = create_attack("mifgsm", EPS)(model, x, y)
    assert torch.equal(frozen, x) and not torch.equal(moved, x)
    assert float((moved - x).abs().max()) <= EPS + 1e-6


def test_eot_gradient_variance_falls_with_k(stochastic_model, digits):
    x, y = digits[0][:16], digits[1][:16]
    ce = torch.nn.functional.cross_entropy
    torch.manual_seed(0)
    variance = {}
    for k in (1, 8):
        grads = torch.stack([eot_gradient(stochastic_model, x, y, ce, k) for _ in range(10)])
        variance[k] = float(grads.var(0).mean())
    assert 0 < variance[8] < variance[1], variance
    with torch.no_grad():
        draws = {
            k: torch.stack([LogitMeanEoT(stochastic_model, k)(x) for _ in range(10)])
            for k in (1, 8)
        }
    assert draws[8].var(0).mean() < draws[1].var(0).mean()


def test_eot_gradient_of_a_deterministic_model_is_the_plain_gradient(model, digits):
    x, y = digits[0][:16], digits[1][:16]
    ce = torch.nn.functional.cross_entropy
    one, three = eot_gradient(model, x, y, ce, 1), eot_gradient(model, x, y, ce, 3)
    assert torch.allclose(one, three, atol=1e-7) and one.abs().sum() > 0


@pytest.mark.parametrize(
    "attack_id,steps",
    [
        ("fgsm", None),
        ("rfgsm", None),
        ("mifgsm", None),
        ("pgd10", None),
        ("apgd10", None),
        ("mtpgd7", 3),
        ("apgd-t", 3),
        ("fab-t", 3),
        ("square", 30),
    ],
)
def test_attacks_run_with_eot_on_a_stochastic_model(stochastic_model, digits, attack_id, steps):
    x, y = digits[0][:8], digits[1][:8]
    attack = create_attack(attack_id, EPS, steps=steps, eot=2)
    torch.manual_seed(0)
    x_adv = attack(stochastic_model, x, y)
    assert torch.isfinite(x_adv).all() and float((x_adv - x).abs().max()) <= EPS + 1e-6
    assert stochastic_model.training is False


def test_autoattack_standard_hands_k_to_its_parts(stochastic_model, digits):
    attack = create_attack("autoattack-standard", EPS, eot=3)
    configured = attack._configure(stochastic_model, digits[0][:4])
    assert configured.attacks_to_run == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert configured.apgd.eot_iter == configured.apgd_targeted.eot_iter == 3
    assert configured.apgd.n_restarts == 1 and configured.apgd_targeted.n_target_classes == 9
    assert isinstance(configured.square.predict, LogitMeanEoT) and configured.verbose is False
    assert isinstance(configured.fab.predict, LogitMeanEoT) and configured.fab.predict.k == 3
    rand = create_attack("autoattack-rand", EPS, eot=3)._configure(stochastic_model, digits[0][:4])
    assert rand.attacks_to_run == ["apgd-ce", "apgd-dlr"] and rand.apgd.eot_iter == 20


def test_eot_settings_enter_the_key_and_the_cost():
    def make(attack_id, eot=1, steps=None):
        return create_attack(attack_id, EPS, steps=steps, eot=eot)

    assert make("pgd10", 4).grad_evals() == 40 and "eot=4" in make("pgd10", 4).key()
    assert make("pgd10").key() != make("pgd10", 4).key()
    assert make("pgd50-eot10", 3).eot == 10 and make("pgd50-eot10").grad_evals() == 500
    assert make("apgd50-eot10", 3).eot == 10 and make("apgd10-rh", 5).eot == 1
    assert make("autoattack-rand", 3).eot == 20
    assert make("mtpgd10", 2).grad_evals() == 9 * 10 * 2
    assert make("apgd-t", 2).grad_evals() == 9 * 100 * 2
    fab = make("fab-t", 4)
    assert fab.eot == 4 and fab.params["eot_mode"] == "logit-mean" and fab.grad_evals() == 3600
    assert make("fab-t").grad_evals() == 900 and "eot_mode" not in make("fab-t").params
    assert make("autoattack-standard", 2).grad_evals() == 100 * (1 + 2 * 9) * 2
    square = make("square", 3, steps=300)
    assert square.grad_evals() == 0 and square.params["queries"] == 300
    assert square.params["eot_mode"] == "logit-mean"
    assert make("noise-uniform", 5).grad_evals() == 0
    assert make("pgd10").params["alpha"] == pytest.approx(0.01 / (8 / 255) * EPS)
    assert make("pgd10-rh").params["alpha"] == pytest.approx(2 * EPS / 10)
    assert make("mifgsm").params == {"steps": 5, "alpha": EPS / 4, "decay": 0.1}
    with pytest.raises(SnnbenchError, match="fixed protocol"):
        make("autoattack-standard", steps=10)


def test_attacker_surrogate_changes_the_gradient_not_the_forward(trained_home):
    from snnbench.neurons import spiking_neurons

    model = snnbench.load("vanilla-tiny-digits", trained_home)
    x, y = snnbench.load_dataset("digits", "test")
    x, y = x[:32], y[:32]
    own = create_attack("fgsm", 32 / 255)
    other = create_attack("fgsm", 32 / 255, surrogate="atan:2")
    assert other.key() != own.key() and "grad=sg:atan:2" in other.key()
    a, b = own(model, x, y), other(model, x, y)
    assert not torch.equal(a, b)
    assert all(n.attack_surrogate is None for n in spiking_neurons(model))  # restored
    rate = create_attack("fgsm", 32 / 255, surrogate="bptr")
    assert "grad=bptr" in rate.key() and not torch.equal(rate(model, x, y), a)
    assert not any(n.rate_backward for n in spiking_neurons(model))  # restored
    with pytest.raises(SnnbenchError):
        create_attack("fgsm", 32 / 255, surrogate="bptx")


# --- check C01: every output is checked, and the check itself bites ---------------------------


def _broken_outputs(x: torch.Tensor, eps: float) -> dict[str, torch.Tensor]:
    return {
        "outside the ball": (x + 2 * eps).clamp(0, 1) if eps else x + 0.5,
        "outside [0, 1]": x - 2.0,
        "NaN": torch.full_like(x, float("nan")),
    }


@pytest.mark.parametrize("kind", ["outside the ball", "outside [0, 1]", "NaN"])
@pytest.mark.parametrize("attack_id", ATTACKS.names())
def test_every_attack_path_refuses_an_invalid_output(monkeypatch, digits, attack_id, kind):
    x, y = digits[0][:4], digits[1][:4]
    x = x.clamp(0.2, 0.8)  # room to leave the ball without clamping back
    attack = create_attack(attack_id, EPS)
    monkeypatch.setattr(
        type(attack), "perturb", lambda self, model, x, y: _broken_outputs(x, self.eps)[kind]
    )
    with pytest.raises(SnnbenchError, match=f"attack {attack_id} returned"):
        attack(nn.Linear(64, 10), x, y)


def test_the_evaluation_pipeline_refuses_an_invalid_output(monkeypatch, model):
    from snnbench.attacks.torchattacks import FGSM

    monkeypatch.setattr(FGSM, "perturb", lambda self, m, x, y: (x + 2 * self.eps).clamp(0, 1))
    with pytest.raises(SnnbenchError, match="attack fgsm returned a perturbation"):
        snnbench.evaluate(model, dataset="digits", attacks=["fgsm"], n=20, checks=False)


@pytest.mark.parametrize("norm", ["Linf", "L2"])
def test_check_valid_bites_just_outside_the_ball_and_not_just_inside(norm):
    from snnbench.attacks import check_valid

    eps = 0.25
    x = torch.full((2, 1, 8, 8), 0.5, dtype=torch.float64)
    direction = torch.zeros_like(x)
    direction[:, 0, 0, 0] = 1.0  # one pixel: its size is the same in L2 and Linf
    if norm == "L2":
        direction = torch.ones_like(x) / 8.0  # unit L2 norm over 64 pixels
    for size, valid in ((eps + 1e-5, False), (eps + 1e-7, True), (eps - 1e-7, True)):
        x_adv = x + size * direction
        if valid:
            check_valid(x_adv, x, eps, norm, "probe")
        else:
            with pytest.raises(SnnbenchError, match="outside|perturbation of size"):
                check_valid(x_adv, x, eps, norm, "probe")
    for bad in (x.clone().fill_(1 + 1e-5), x.clone().fill_(-1e-5)):
        with pytest.raises(SnnbenchError, match=r"outside \[0, 1\]"):
            check_valid(bad, bad.clamp(0, 1), eps, norm, "probe")
    for value in (float("nan"), float("inf")):
        bad = x.clone()
        bad[0, 0, 0, 0] = value
        with pytest.raises(SnnbenchError, match="NaN or infinite"):
            check_valid(bad, x, eps, norm, "probe")


def test_c01_in_a_card_is_measured_not_a_constant():
    """The card's C01 comes from the perturbation measured on the counted inputs."""
    import numpy as np
    from snnbench.evaluate import perturbation_extent, validity_check
    from snnbench.store import Chunk

    x = torch.rand(4, 1, 8, 8) * 0.5 + 0.25
    inside = perturbation_extent(x + 0.1, x, "Linf")
    outside = perturbation_extent(x + 0.2, x, "Linf")
    assert inside["max_delta"] == pytest.approx(0.1, abs=1e-6)
    counts = np.ones(4, np.uint8)
    chunk = lambda env: Chunk(0, counts, counts, 1, env=env)  # noqa: E731
    assert validity_check([chunk(inside)], eps=0.1) == "pass"
    assert validity_check([chunk(inside), chunk(outside)], eps=0.1) == "fail"
    assert validity_check([chunk(perturbation_extent(x * 4, x, "Linf"))], eps=10.0) == "fail"
