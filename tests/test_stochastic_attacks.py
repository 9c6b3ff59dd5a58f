"""Attacks on stochastic models (evaluation.md section 4): K draws per step really are K, success
is judged on the EoT-averaged prediction, and a sample no draw broke gets the attack's
highest-loss point, never the clean input; deterministic models keep the library's outputs."""

from __future__ import annotations

import pytest
import torch
from pyautoattack.autopgd_base import APGDAttack, APGDAttack_targeted
from torch import nn

import snnbench
from snnbench.attacks import create_attack
from snnbench.attacks.autoattack import (
    EoTPrediction,
    JudgedAPGD,
    JudgedAPGDTargeted,
    row_key,
    with_survivors,
)
from snnbench.attacks.eot import mean_prediction

EPS = 32 / 255


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits():
    return snnbench.load_dataset("digits", "test")


class DrawCounter(nn.Module):
    """A linear model with fresh random weights on every call (so every draw has its own input
    gradient and the iterates keep moving). ``groups`` holds, for each run of consecutive
    gradient-taking calls on one input, how many calls it made: one entry per attack step."""

    stochastic = True

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.weight = nn.Parameter(torch.randn(10, 64, generator=generator) * 0.1)
        self.groups: list[int] = []
        self.last: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            if self.last is not None and torch.equal(x, self.last):
                self.groups[-1] += 1
            else:
                self.groups.append(1)
                self.last = x.detach().clone()
        weight = self.weight + torch.randn_like(self.weight)
        return x.flatten(1) @ weight.t()


# family -> (attack id, steps, gradient points the attack evaluates: None = per target, varies)
FAMILIES = {
    "pgd": ("pgd10", 3, 3),
    "apgd": ("apgd10", 3, 4),
    "mtpgd": ("mtpgd7", 2, None),
    "rfgsm": ("rfgsm", None, 1),
    "mifgsm": ("mifgsm", None, 5),
}


@pytest.mark.parametrize("k", [1, 2, 4])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_eot_takes_k_draws_at_every_step(digits, family, k):
    attack_id, steps, points = FAMILIES[family]
    model = DrawCounter()
    x, y = digits[0][:8], digits[1][:8]
    torch.manual_seed(0)
    create_attack(attack_id, EPS, steps=steps, eot=k)(model, x, y)
    assert model.groups and all(size == k for size in model.groups), model.groups
    if points is not None:  # apgd: the start point and each of its 3 iterates
        assert len(model.groups) == points, model.groups
    else:  # mtpgd: 2 steps per target, 1 to 9 targets
        assert len(model.groups) % steps == 0 and steps <= len(model.groups) <= 9 * steps


def test_mean_prediction_averages_the_softmax_and_keeps_identical_draws_as_they_are():
    sure = torch.tensor([[8.0, 0.0, 0.0]])  # class 0 at p ~ 1
    unsure = torch.tensor([[0.0, 0.5, 0.0]])  # class 1 at p ~ 0.45
    assert mean_prediction([sure, unsure]).argmax(1).item() == 0
    assert mean_prediction([unsure]).argmax(1).item() == 1
    draws = [torch.randn(4, 10)] * 3  # a deterministic model: the draw itself
    assert mean_prediction(draws) is draws[0]


@pytest.mark.parametrize("attack_id,steps", [("apgd10", None), ("apgd-t", 3), ("mtpgd7", 3)])
def test_no_sample_is_handed_back_as_the_clean_input_on_a_stochastic_model(
    digits, attack_id, steps
):
    """The reviewer's finding: APGD returned x for every sample no single draw misclassified."""
    model = DrawCounter()
    x, y = digits[0][:16], digits[1][:16]
    torch.manual_seed(0)
    x_adv = create_attack(attack_id, EPS, steps=steps, eot=2)(model, x, y)
    moved = (x_adv != x).flatten(1).any(1)
    assert bool(moved.all()), int(moved.sum())


class Sure(nn.Module):
    """Stochastic, but every draw classifies every digit as class 0 with a margin no eps-ball
    perturbation can cross (logit 5 against at most 1.1 * (1 + eps)): no iterate is broken."""

    stochastic = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = 1 + 0.1 * torch.rand(len(x), 1)
        others = scale * x.flatten(1)[:, 1:10]  # class c's logit: pixel c
        return torch.cat([torch.full((len(x), 1), 5.0), others], 1)


def test_an_unbroken_sample_gets_the_highest_mean_loss_iterate(digits):
    x, y = digits[0][:32], torch.zeros(32, dtype=torch.long)
    torch.manual_seed(0)
    x_adv = create_attack("apgd10", EPS, eot=4)(Sure(), x, y)
    # the loss rises with pixels 1 to 9: the best iterate pushes them up to the ball's edge
    gain = (x_adv - x).flatten(1)[:, 1:10]
    room = (1 - x.flatten(1)[:, 1:10]).clamp(max=EPS)
    assert bool((gain > 0.5 * room - 1e-6).all())


@pytest.fixture(scope="module")
def vanilla(trained_home):
    return snnbench.load("vanilla-tiny-digits", trained_home).eval()


@pytest.mark.parametrize("loss", ["ce", "dlr", "dlr-targeted"])
def test_deterministic_apgd_keeps_the_library_outputs_bit_for_bit(vanilla, digits, loss):
    x, y = digits[0][:64], digits[1][:64]
    settings = dict(
        n_iter=10,
        norm="Linf",
        n_restarts=1,
        eps=EPS,
        seed=0,
        eot_iter=1,
        rho=0.75,
        verbose=False,
        device=x.device,
    )
    if loss == "dlr-targeted":
        library = APGDAttack_targeted(vanilla, n_target_classes=3, **settings).perturb(x, y)
        ours = JudgedAPGDTargeted(vanilla, n_target_classes=3, **settings).perturb(x, y)
    else:
        library = APGDAttack(vanilla, loss=loss, **settings).perturb(x, y)
        ours = JudgedAPGD(vanilla, loss=loss, **settings).perturb(x, y)
    broken = (library != x).flatten(1).any(1)
    assert broken.any() and torch.equal(ours[broken], library[broken])
    with torch.no_grad():
        clean_ok = vanilla(x).argmax(1) == y
        robust_library = clean_ok & (vanilla(library).argmax(1) == y)
        robust_ours = clean_ok & (vanilla(ours).argmax(1) == y)
    assert torch.equal(robust_ours, robust_library)  # min(clean, adv): unchanged
    survivors = clean_ok & ~broken
    assert survivors.any() and bool((ours[survivors] != x[survivors]).flatten(1).any(1).all())


def test_autoattack_judges_its_cascade_on_k_draws_and_uses_judged_apgd(digits):
    model = DrawCounter()
    for attack_id, k in (("autoattack-standard", 3), ("autoattack-rand", 20)):
        configured = create_attack(attack_id, EPS, eot=3)._configure(model, digits[0][:4])
        assert isinstance(configured.apgd, JudgedAPGD)
        assert isinstance(configured.apgd_targeted, JudgedAPGDTargeted)
        assert configured.apgd.eot_iter == k and configured.apgd.n_iter == 100
        assert isinstance(configured.get_logits, EoTPrediction) and configured.get_logits.k == k


def test_autoattack_survivors_get_apgd_ce_points():
    x = torch.rand(4, 1, 8, 8)
    x_adv = x.clone()
    x_adv[0] = (x[0] + 0.01).clamp(0, 1)  # broken by some part
    point = (x[2] - 0.02).clamp(0, 1)
    result = with_survivors(x_adv, x, {row_key(x[2]): point, row_key(x[0]): x[0] * 0})
    assert torch.equal(result[0], x_adv[0]) and torch.equal(result[2], point)
    assert torch.equal(result[1], x[1]) and torch.equal(result[3], x[3])  # never attacked


def test_autoattack_rand_hands_back_no_clean_input(digits):
    """Nothing breaks ``Sure``: every sample survives the cascade and gets APGD-CE's point."""
    x, y = digits[0][:8], torch.zeros(8, dtype=torch.long)
    torch.manual_seed(0)
    x_adv = create_attack("autoattack-rand", EPS)(Sure(), x, y)
    assert bool((x_adv != x).flatten(1).any(1).all())
