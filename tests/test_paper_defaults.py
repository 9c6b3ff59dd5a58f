"""Each default that docs/defenses.md attributes to a paper or its reference code, pinned to that
source: TGO's membrane term (the paper's text), StoG's gradient sign (the reference's
``inhibition_module``), DLIF's decay and unclipped noise (the paper and stable-snn), SR's step in
normalised units (the reference code) and BatchNorm's mode while crafting training examples
(each track's reference code)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import snnbench
from snnbench.archs.base import Normalize
from snnbench.defenses import create_defense
from snnbench.defenses.base import LossContext
from snnbench.defenses.tgo import membrane_constraint
from snnbench.config import ModelConfig
from snnbench.model import build, default_settings, resolve
from snnbench.neurons import spiking_neurons
from snnbench.neurons.stog import SIGNS, RelaxedBernoulli, StoGGate


# ---- TGO: "the average quadratic penalty", normalised by T and by the number of layers L
def hand_potentials(requires_grad: bool = False) -> list[list[torch.Tensor]]:
    """Two layers, T = 2, B = 1: layer 1 has N = 2 neurons, layer 2 one."""
    layer1 = [torch.tensor([[0.8, 1.2]]), torch.tensor([[1.0, 0.3]])]
    layer2 = [torch.tensor([[1.4]]), torch.tensor([[0.9]])]
    if requires_grad:
        layer1 = [u.requires_grad_(True) for u in layer1]
    return [layer1, layer2]


def test_tgo_default_is_the_papers_average_quadratic_penalty():
    settings = default_settings("tgo", "tgo")
    assert settings["tgo.mc_power"] == 2 and settings["tgo.mc_layer_reduce"] == "mean"
    # hinge max(0, 0.5 - |u - 1|): layer 1 (0.3, 0.3 | 0.5, 0), layer 2 (0.1 | 0.4)
    c1 = (0.3**2 + 0.3**2 + 0.5**2 + 0.0) / (2 * 2)  # 1/(T N_1)
    c2 = (0.1**2 + 0.4**2) / (2 * 1)  # 1/(T N_2)
    assert float(membrane_constraint(hand_potentials(), 1.0, 0.5)) == pytest.approx((c1 + c2) / 2)
    # the secondary reading (plain hinge, summed over layers) stays a setting
    plain = (0.3 + 0.3 + 0.5) / 4 + (0.1 + 0.4) / 2
    assert float(membrane_constraint(hand_potentials(), 1.0, 0.5, 1, "sum")) == pytest.approx(plain)


def test_tgo_gradient_at_1_2_under_both_readings():
    for power, reduce, expected in ((2, "mean", -0.5 * 0.25 * 2 * 0.3), (1, "sum", -0.25)):
        layers = hand_potentials(requires_grad=True)
        membrane_constraint(layers, 1.0, 0.5, power, reduce).backward()
        assert float(layers[0][0].grad[0, 1]) == pytest.approx(expected)


def model_and_defense(defense: str, track: str = "tgo", **settings):
    spec = resolve(ModelConfig(defense, "tiny", "digits", 2, track, settings))
    return build(spec), create_defense(spec.defense, spec.settings, spec.track)


def test_tgo_model_uses_the_default_term():
    _, defense = model_and_defense("tgo")
    assert (defense.members[0].settings.mc_power, defense.members[0].settings.mc_layer_reduce) == (
        2,
        "mean",
    )


# ---- StoG: the sign of rho's gradient is the reference's
def test_stog_gradient_sign_against_a_finite_difference_of_the_reference_estimator():
    torch.manual_seed(0)
    p = torch.tensor([0.3, 0.5, 0.7], dtype=torch.float64)
    uniform = torch.rand(64, 3, dtype=torch.float64)
    noise = torch.log(uniform) - torch.log1p(-uniform)
    tau, eps, h = 0.5, 1e-3, 1e-6

    def relaxed(q: torch.Tensor) -> torch.Tensor:
        """The reference's relaxed sample (inhibition_module.forward's sigma)."""
        alpha, exp_l = q / (1 - q + eps), uniform / (1 - uniform + eps)
        return torch.sigmoid((torch.log(alpha) + torch.log(exp_l)) / tau)

    slope = ((relaxed(p + h) - relaxed(p - h)) / (2 * h)).mean(0)  # > 0: dsigma/dp
    assert (slope > 0).all()
    for sign, expected in (("reference", -slope), ("analytic", slope)):
        q = p.clone().requires_grad_(True)
        RelaxedBernoulli.apply(q, noise, tau, "mean", SIGNS[sign]).sum().backward()
        assert torch.allclose(q.grad, expected, rtol=2e-2), sign


def test_stog_default_sign_is_the_reference():
    assert default_settings("stog", "tgo")["stog.grad_sign"] == "reference"
    model = snnbench.create_model("stog", arch="tiny", dataset="digits", timesteps=2)
    assert {g.grad_sign for g in model.modules() if isinstance(g, StoGGate)} == {"reference"}
    with pytest.raises(snnbench.SnnbenchError, match="grad_sign"):
        StoGGate((3,), 2, grad_sign="minus")


# ---- DLIF: k = 0.99 on every track, the Gaussian perturbation not clipped
@pytest.mark.parametrize("track", ["tgo", "pku", "randhet"])
def test_dlif_decay_is_the_papers_on_every_track(track):
    assert default_settings("dlif", track)["dlif.decay"] == 0.99
    model = snnbench.create_model("dlif", arch="tiny", dataset="digits", track=track, timesteps=2)
    assert {n.decay for n in spiking_neurons(model)} == {0.99}


def test_dlif_gaussian_perturbation_is_not_clipped():
    torch.manual_seed(0)
    model, defense = model_and_defense("dlif")
    model.train()
    defense.setup(model)
    seen: list[torch.Tensor] = []
    model.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().clone()))
    x, y = torch.ones(8, 1, 8, 8), torch.randint(0, 10, (8,))
    logits = model(x)
    defense.task_loss(LossContext(model, x, x, y, logits, 0, 1))
    perturbed = seen[-1]
    assert float(perturbed.max()) > 1 and not torch.equal(perturbed, x)


# ---- SR: h in the model's normalised input space
class NormalisedLinear(nn.Module):
    def __init__(self, std: float) -> None:
        super().__init__()
        self.normalize = Normalize((0.5,), (std,))
        self.linear = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.normalize(x).flatten(1))


@pytest.mark.parametrize("space, std_power", [("normalised", 1), ("pixel", 0)])
def test_sr_step_is_taken_in_normalised_units(space, std_power):
    assert default_settings("sr", "tgo")["sr.step_space"] == "normalised"
    torch.manual_seed(0)
    std = 0.25
    model = NormalisedLinear(std).double()
    x, y = torch.rand(4, 1, 8, 8, dtype=torch.float64), torch.randint(0, 10, (4,))
    defense = create_defense("sr", {"sr.weight": 1.0, "sr.step": 1e-5, "sr.step_space": space})
    term = defense.extra_loss(LossContext(model, x, x, y, model(x), 0, 1))
    xg = x.clone().requires_grad_(True)
    logits = model(xg)
    runner_up = logits.detach().clone().scatter_(1, y[:, None], float("-inf")).argmax(1)
    f = torch.sigmoid(logits.gather(1, y[:, None]) - logits.gather(1, runner_up[:, None]))
    (g,) = torch.autograd.grad(f.sum(), xg)
    # d f / d x_normalised = std * d f / d x_pixel
    expected = ((std**std_power * g).flatten(1).abs().sum(1) ** 2).mean()
    assert float(term.detach()) == pytest.approx(float(expected), rel=1e-2)  # float32 logits


# ---- BatchNorm while crafting training examples: each track's reference code
@pytest.mark.parametrize(
    "defense, track, mode",
    [
        ("at", "tgo", "eval"),
        ("rat", "pku", "eval"),
        ("dlif+at", "pku", "eval"),
        ("at", "randhet", "train"),
        ("rat", "randhet", "train"),
        ("randhet+at", "randhet", "train"),
        ("stog+at", "tgo", "train"),
        ("stog+rat", "pku", "train"),
    ],
)
def test_bn_mode_while_crafting_follows_the_reference(defense, track, mode):
    assert default_settings(defense, track)["attack.train.bn_mode"] == mode
    generator = create_defense(defense, track=track)._of("generator")
    assert generator.settings.bn_mode == mode


def test_train_mode_crafting_updates_the_running_statistics():
    torch.manual_seed(0)
    model, defense = model_and_defense("at", "randhet")
    model.train()
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    before = [m.running_mean.clone() for m in norms]
    defense.training_inputs(model, torch.rand(16, 1, 8, 8), torch.randint(0, 10, (16,)))
    assert any(not torch.equal(m.running_mean, b) for m, b in zip(norms, before))


def test_user_setting_beats_the_partner_default():
    _, defense = model_and_defense("stog+at", **{"attack.train.bn_mode": "eval"})
    assert defense._of("generator").settings.bn_mode == "eval"
