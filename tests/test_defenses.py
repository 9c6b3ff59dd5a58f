"""Defences (defenses.md sections 4 and 5): each property the spec lists, and every registered
defence and paper combination through train -> save -> load -> attack on the CLI."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import snnbench
from snnbench.cli import app
from snnbench.defenses import DEFENSES, create_defense, parse_defense
from snnbench.defenses.at import AdversarialSettings, adversarial_examples
from snnbench.defenses.dlif import leaky_penalty
from snnbench.defenses.rat import RATSettings, orthogonality_step, project_simplex, retract
from snnbench.defenses.sr import sparse_gradient_term
from snnbench.defenses.stog import gates as stog_gates
from snnbench.defenses.tgo import lambda_schedule, membrane_constraint
from snnbench.errors import SnnbenchError
from snnbench.model import default_settings

PAPER_COMBINATIONS = [
    "tgo+at",
    "tgo+rat",
    "randhet+at",
    "randhet+rat",
    "randhet+sr",
    "randhet*+rat",
    "het+rat",
    "dlif+at",
    "stog+at",
    "sr+at",
]


def small_model(defense: str = "vanilla", **overrides):
    torch.manual_seed(0)
    return snnbench.create_model(defense, arch="tiny", dataset="digits", timesteps=2, **overrides)


# ---- composition
@pytest.mark.parametrize(
    "expr, members",
    [
        ("rat+tgo", ["tgo", "rat"]),
        ("SR+randhet", ["randhet", "sr"]),
        ("randhet-star+rat", ["randhet*", "rat"]),
    ],
)
def test_canonical_order(expr, members):
    assert parse_defense(expr) == members


@pytest.mark.parametrize(
    "expr, fragment",
    [
        ("tgo+randhet", "both replace the neuron model"),
        ("at+rat", "rat already trains on FGSM"),
        ("vanilla+at", "combines with nothing"),
        ("tgo+tgo", "twice"),
        ("tgp", "did you mean 'tgo'"),
    ],
)
def test_refused_combinations(expr, fragment):
    with pytest.raises(SnnbenchError, match=fragment):
        parse_defense(expr)


def test_settings_of_a_combination_and_weight_decay():
    settings = default_settings("tgo+rat", "tgo")
    assert settings["nlif.noise_var"] == 0.4 and settings["rat.beta"] == 0.004
    assert create_defense("tgo+rat", settings).weight_decay(5e-4) == 0.0
    assert (
        create_defense(
            "randhet+at", default_settings("randhet+at", "randhet"), "randhet"
        ).weight_decay(1e-4)
        == 1e-4
    )
    assert default_settings("at", "randhet")["at.eps"] == pytest.approx(4 / 255)


@pytest.mark.parametrize("name", DEFENSES.names())
def test_stochastic_iff_declared(name):
    model = small_model(name, theta=0.2).eval()  # a low threshold: spikes reach the readout
    for gate in stog_gates(model):  # gates open fully at init (rho = 1)
        gate.rho.data.fill_(0.5)
    x = torch.rand(8, 1, 8, 8)
    with torch.no_grad():
        a, b = model(x), model(x)
        torch.manual_seed(7)
        c = model(x)
        torch.manual_seed(7)
        d = model(x)
    assert torch.equal(c, d)
    assert model.stochastic == (name in ("tgo", "randhet", "randhet*", "stog"))
    assert (not torch.equal(a, b)) == model.stochastic


def test_noise_at_eval_false_is_deterministic_in_eval():
    model = small_model("tgo", noise_at_eval=False, theta=0.2).eval()
    x = torch.rand(8, 1, 8, 8)
    assert not model.stochastic and torch.equal(model(x), model(x))


# ---- AT / RAT
def test_adversarial_examples_stay_in_the_ball_and_restore_the_mode():
    model = small_model().train()
    x, y = torch.rand(16, 1, 8, 8), torch.randint(0, 10, (16,))
    s = AdversarialSettings(eps=8 / 255, alpha=2 / 255, steps=3)
    x_adv = adversarial_examples(model, x, y, s)
    assert float((x_adv - x).abs().max()) <= 8 / 255 + 1e-6
    assert 0 <= float(x_adv.min()) and float(x_adv.max()) <= 1 and model.training
    assert not torch.equal(x_adv, x)


def test_examples_use_bn_running_stats_and_keep_training_noise():
    model = small_model("tgo", noise_at_eval=False, theta=0.2).train()
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    stats = [m.running_mean.clone() for m in norms]
    x, y = torch.rand(16, 1, 8, 8), torch.randint(0, 10, (16,))
    s = AdversarialSettings(eps=8 / 255, alpha=2 / 255, steps=1, start="none")
    torch.manual_seed(1)
    a = adversarial_examples(model, x, y, s)
    torch.manual_seed(2)
    b = adversarial_examples(model, x, y, s)
    assert all(torch.equal(m.running_mean, r) for m, r in zip(norms, stats))
    assert all(m.training for m in norms) and not torch.equal(a, b)  # noise was on


def test_retraction_fixed_point_and_singular_values():
    q, _ = torch.linalg.qr(torch.randn(6, 4, dtype=torch.float64))
    rows = q.t()  # orthonormal rows
    assert torch.allclose(retract(rows, 0.004), rows, atol=1e-12)
    w = torch.randn(5, 9, dtype=torch.float64)
    s = torch.linalg.svdvals(w)
    beta = 0.004
    assert torch.allclose(torch.linalg.svdvals(retract(w, beta)), (1 + beta) * s - beta * s**3)


def test_retraction_lowers_the_orthogonality_error():
    w = torch.randn(8, 8, dtype=torch.float64) / 3

    def error(m):
        return torch.linalg.norm(m @ m.t() - torch.eye(8, dtype=m.dtype))

    assert error(retract(w, 0.05)) < error(w)


def test_simplex_projection():
    for v in (torch.tensor([0.9, 0.7]), torch.tensor([-1.0, 3.0]), torch.tensor([0.2, 0.1, 0.4])):
        p = project_simplex(v)
        assert (p >= 0).all() and math.isclose(float(p.sum()), 1.0, abs_tol=1e-6)
    on = torch.tensor([0.3, 0.7])
    assert torch.allclose(project_simplex(on), on)


def test_rat_updates_30_percent_of_large_linear_rows_and_all_conv_rows():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Linear(10, 400))
    before = [m.weight.clone() for m in model]
    orthogonality_step(model, RATSettings())
    conv_changed = (model[0].weight != before[0]).flatten(1).any(1)
    rows_changed = (model[1].weight != before[1]).any(1)
    assert conv_changed.all() and int(rows_changed.sum()) == int(0.3 * 400)


# ---- SR
def test_sr_term_matches_the_gradient_norm_on_a_linear_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).double()
    x, y = torch.rand(4, 1, 8, 8, dtype=torch.float64), torch.randint(0, 10, (4,))
    term = sparse_gradient_term(model, x, y, 1e-4)
    xg = x.clone().requires_grad_(True)
    logits = model(xg)
    top2 = logits.detach().clone().scatter_(1, y[:, None], float("-inf")).argmax(1)
    f = torch.sigmoid(logits.gather(1, y[:, None]) - logits.gather(1, top2[:, None])).squeeze(1)
    (g,) = torch.autograd.grad(f.sum(), xg)
    assert 0 < float(f.detach().min()) and float(f.detach().max()) < 1
    expected = (g.flatten(1).abs().sum(1) ** 2).mean()
    assert float(term.detach()) == pytest.approx(float(expected), rel=1e-2)


def test_sr_weight_zero_adds_nothing():
    defense = create_defense("sr", {"sr.weight": 0.0, "sr.step": 0.01})
    assert defense.extra_loss(None) is None


# ---- TGO
def test_membrane_constraint_values_and_gradient():
    theta, delta = 1.0, 0.5
    far = [[torch.tensor([[0.0, 2.0, 1.6]])]]
    assert float(membrane_constraint(far, theta, delta)) == 0.0
    layers = [[torch.ones(2, 3) for _ in range(4)], [torch.ones(2, 5) for _ in range(4)]]
    # u = theta everywhere: C_l = delta^p, the mean over layers delta^p, the sum L delta^p
    assert float(membrane_constraint(layers, theta, delta)) == pytest.approx(delta**2)
    assert float(membrane_constraint(layers, theta, delta, 1, "sum")) == pytest.approx(2 * delta)
    u = torch.tensor([[0.8, 1.2]], requires_grad=True)  # T = 1, B = 1, N = 2
    membrane_constraint([[u]], theta, delta, power=1).backward()
    # -grad points away from theta (0.8 down, 1.2 up) with size 1/(T N B) = 1/2
    assert u.grad.flatten().tolist() == pytest.approx([0.5, -0.5])


def test_lambda_schedule():
    assert lambda_schedule(0.6, 0, 10) == 0.0
    assert lambda_schedule(0.6, 10, 10) == pytest.approx(0.6)
    values = [lambda_schedule(0.6, e, 10) for e in range(11)]
    assert values == sorted(values)


# ---- DLIF
def test_dlif_penalty():
    c = 0.3
    clean = [torch.full((2, 3), c) for _ in range(4)]
    zero = [torch.zeros(2, 3) for _ in range(4)]
    k = 0.9
    expected = sum((c * (1 - k**t) / (1 - k)) ** 2 for t in range(1, 5)) / 4
    assert float(leaky_penalty(clean, zero, k)) == pytest.approx(expected)
    assert float(leaky_penalty(clean, clean, k)) == 0.0


# ---- every defence through the CLI
@pytest.mark.parametrize("defense", DEFENSES.names() + PAPER_COMBINATIONS)
def test_trains_saves_loads_and_attacks_through_the_cli(tmp_path, defense):
    runner = CliRunner()
    home = str(tmp_path)
    result = runner.invoke(
        app,
        [
            "train",
            defense,
            "--epochs",
            "1",
            "--timesteps",
            "2",
            "--home",
            home,
            "--quiet",
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    canonical = "+".join(parse_defense(defense))
    name = f"{canonical.replace('*', '-star')}-tiny-digits"
    card = snnbench.load_card(name, tmp_path)
    assert card["spec"]["defense"] == canonical
    assert set(default_settings(card["spec"]["defense"], "tgo")) <= set(card["spec"]["settings"])
    snnbench.load(name, tmp_path)
    result = runner.invoke(
        app,
        [
            "attack",
            name,
            "--attacks",
            "fgsm",
            "--n",
            "40",
            "--home",
            home,
            "--quiet",
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output


def test_set_rejects_keys_of_another_defence(tmp_path):
    result = CliRunner().invoke(app, ["train", "tgo", "--set", "beta=0.1", "--home", str(tmp_path)])
    assert (
        result.exit_code == 2
        and "valid keys" in result.stderr
        and "tgo.lambda_max" in result.stderr
    )
