"""Sanity checks (docs/protocol.md): each flags a model built to fail it, and a trained
vanilla model passes every one that applies."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import snnbench
from snnbench import api
from snnbench.checks import Probe, Results, run_probe_checks, run_result_checks, significantly_lower
from snnbench.cli import app
from snnbench.data import load_dataset
from snnbench.evaluate import select_samples
from snnbench.metrics import encode_counts

EPS = 32 / 255


@pytest.fixture(scope="module")
def vanilla(trained_home):
    return snnbench.load("vanilla-tiny-digits", home=trained_home).eval()


@pytest.fixture(scope="module")
def samples():
    x, y = load_dataset("digits", "test")
    return select_samples(x, y, 60, 10)


def probe(model, samples, stochastic=False, **kw) -> Probe:
    return Probe(model.eval(), *samples, stochastic, 10, EPS, **kw)


def outcome(model, samples, check, **kw):
    (result,) = run_probe_checks(probe(model, samples, **kw), [check])
    return result


class Wrap(nn.Module):
    """A trained model with one defect added on top."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model


class Quantised(Wrap):
    """Masks gradients with a non-differentiable step: round() has a zero derivative."""

    def forward(self, x):
        return self.model(torch.round(x * 16) / 16)


class RandomOutput(Wrap):
    """Random logits, though it claims to be deterministic."""

    def forward(self, x):
        return self.model(x) + 10 * torch.randn(len(x), 10)


class Leaky(Wrap):
    """State carried across calls: every pass shifts later logits."""

    def __init__(self, model):
        super().__init__(model)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.model(x) + 0.5 * self.calls * torch.arange(10.0)


class ModeFlipper(Wrap):
    """Switches itself to training mode on every call (a library side effect)."""

    def forward(self, x):
        self.train()
        return self.model(x)


class NaNs(Wrap):
    def forward(self, x):
        out = self.model(x)
        return torch.where(torch.arange(len(x))[:, None] % 4 == 0, float("nan"), out)


class BatchDependent(Wrap):
    """Small batches get their classes rotated: results depend on the batch size."""

    def forward(self, x):
        out = self.model(x)
        return out.roll(1, dims=1) if len(x) < 20 else out


class _NoisyBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad + grad.abs().mean() * torch.randn_like(grad)


class NoisyGradient(Wrap):
    """Same forward every time, but a random backward (nondeterministic gradients)."""

    def forward(self, x):
        return self.model(_NoisyBackward.apply(x))


PROBES = ["C02", "C03", "C04", "C05", "C06", "C07", "C08", "C10", "C22", "C23"]


def test_trained_vanilla_model_passes_every_probe_check(vanilla, samples):
    results = {o.id: o for o in run_probe_checks(probe(vanilla, samples))}
    assert set(results) == set(PROBES)
    assert all(o.status == "pass" for o in results.values()), results


@pytest.mark.parametrize(
    "defect, check",
    [
        (Leaky, "C02"),
        (RandomOutput, "C03"),
        (BatchDependent, "C04"),
        (ModeFlipper, "C05"),
        (NaNs, "C06"),
        (Quantised, "C07"),
        (Quantised, "C08"),
        (Quantised, "C10"),
        (BatchDependent, "C22"),
        (NoisyGradient, "C23"),
    ],
)
def test_a_model_built_to_fail_a_probe_check_is_flagged(vanilla, samples, defect, check):
    result = outcome(defect(vanilla), samples, check)
    assert result.status == "fail", result
    assert result.flags == (result.level != "warn")


def test_a_model_declared_stochastic_without_noise_fails_c03(vanilla, samples):
    result = outcome(vanilla, samples, "C03", stochastic=True)
    assert result.status == "fail" and "noise is off" in result.detail


# ---------------------------------------------------------------- result checks on built cards
N = 200


def card(
    attack_id,
    robust,
    *,
    eps=EPS,
    steps=10,
    eot=1,
    grad="bptt",
    stochastic=False,
    restarts=1,
    seed=0,
    k_eval=1,
    cascade=None,
):
    """A result card whose per-sample column has accuracy ``robust`` (clean: all correct)."""
    rng = np.random.default_rng(seed)
    adv = (rng.permutation(N) < round(robust * N)).astype(np.uint8) * k_eval
    return {
        "model": {"name": "m", "sha256": "s", "stochastic": stochastic},
        "attack": {
            "id": attack_id,
            "eps": eps,
            "norm": "Linf",
            "eot": eot,
            "grad": grad,
            "params": {"steps": steps, "restarts": restarts},
        },
        "eval": {
            "n": N,
            "split": "test",
            "k_eval": k_eval,
            **({"cascade": cascade} if cascade else {}),
        },
        "per_sample": {"adv": encode_counts(adv), "clean": encode_counts(np.full(N, k_eval))},
        "checks": {"C01": "pass"},
    }


def nested(base, robust, **kw):
    """A column whose survivors are a subset of ``base``'s (an attack at least as strong)."""
    from snnbench.metrics import decode_counts

    adv = decode_counts(base["per_sample"]["adv"]).copy()
    alive = np.flatnonzero(adv)
    adv[alive[: len(alive) - round(robust * N)]] = 0
    out = json.loads(json.dumps(base))
    out["attack"].update(kw.pop("attack", {}))
    out["eval"].update(kw.pop("eval", {}))
    out["per_sample"]["adv"] = encode_counts(adv)
    return out


def result(check, cards, row=None):
    (out,) = run_result_checks(Results(cards, row), [check])
    return out


RESULT_CASES = {
    # check: (cards that fail it, cards that pass it)
    "C09": (
        [card("pgd10", 0.30, eps=8 / 255), card("pgd10", 0.45, eps=16 / 255, seed=1)],
        [card("pgd10", 0.45, eps=8 / 255), card("pgd10", 0.30, eps=16 / 255, seed=1)],
    ),
    "C11": (
        [card("apgd-ce", 0.40, steps=100), card("apgd-ce", 0.20, steps=200, seed=1)],
        [card("apgd-ce", 0.40, steps=100), card("apgd-ce", 0.40, steps=200)],
    ),
    "C12": (
        [card("apgd-ce", 0.40, restarts=1), card("apgd-ce", 0.25, restarts=5, seed=1)],
        [card("apgd-ce", 0.40, restarts=1), card("apgd-ce", 0.40, restarts=5)],
    ),
    "C13": (
        [
            card("apgd-ce", 0.40, eot=10, stochastic=True),
            card("apgd-ce", 0.20, eot=20, stochastic=True, seed=1),
        ],
        [
            card("apgd-ce", 0.40, eot=10, stochastic=True),
            card("apgd-ce", 0.40, eot=20, stochastic=True),
        ],
    ),
    "C14": (
        [card("pgd10", 0.40), card("square", 0.20, seed=1)],
        [card("pgd10", 0.40), card("square", 0.60, seed=1)],
    ),
    "C15": (
        [card("apgd-ce", 0.40), card("transfer-ann-twin-apgd-ce", 0.25, seed=1)],
        [card("apgd-ce", 0.40), card("transfer-ann-twin-apgd-ce", 0.70, seed=1)],
    ),
    "C16": (
        [card("pgd10", 0.40), card("noise-uniform", 0.20, seed=1)],
        [card("pgd10", 0.40), card("noise-uniform", 0.90, seed=1)],
    ),
    "C17": (
        [card("fgsm", 0.30), card("pgd40", 0.50, steps=40, seed=1)],
        [card("fgsm", 0.50), card("pgd40", 0.30, steps=40, seed=1)],
    ),
    "C18": (
        [card("apgd-ce", 0.40), card("apgd-ce", 0.20, grad="bptr", seed=1)],
        [card("apgd-ce", 0.40), card("apgd-ce", 0.41, grad="bptr", seed=1)],
    ),
    "C19": (
        [card("apgd-ce", 0.40, steps=100), card("apgd-dlr", 0.25, steps=100, seed=1)],
        [card("apgd-ce", 0.40, steps=100), card("apgd-dlr", 0.42, steps=100, seed=1)],
    ),
    "C20": (
        [card("autoattack-standard", 0.40), card("apgd-ce", 0.20, seed=1)],
        [card("autoattack-standard", 0.20), card("apgd-ce", 0.40, seed=1)],
    ),
    "C21": (
        [card("pgd10", 0.40, eot=1), card("pgd10", 0.20, eot=10, seed=1)],
        [card("pgd10", 0.40, eot=1), card("pgd10", 0.40, eot=10)],
    ),
}


@pytest.mark.parametrize("check", sorted(RESULT_CASES))
def test_result_check_fails_on_built_cards_and_passes_on_consistent_ones(check):
    failing, passing = RESULT_CASES[check]
    bad = result(check, failing)
    assert bad.status == "fail", bad
    good = result(check, passing)
    assert good.status == "pass", good


def test_c11_checks_the_longest_run_not_a_steps_sweep():
    # PGD-3 much weaker than PGD-10 in a steps sweep is by design; the evaluated runs count
    sweep = [card("pgd10", 0.70, steps=3), card("pgd10", 0.40, steps=10, seed=1)]
    for c in sweep:
        c["attack"]["params"]["sweep"] = "steps"
    assert result("C11", sweep).status == "skip"
    assert (
        result(
            "C11",
            [*sweep, card("pgd10", 0.40, steps=10, seed=1), card("pgd10", 0.20, steps=20, seed=2)],
        ).status
        == "fail"
    )


def test_differences_inside_the_noise_do_not_fail():
    # 1.5 pp apart on 200 samples, different samples: far below 2 SE (about 9 pp)
    assert result("C14", [card("pgd10", 0.400), card("square", 0.385, seed=1)]).status == "pass"
    low, high = np.array([1, 0, 0, 1]), np.array([1, 1, 0, 1])
    assert not significantly_lower(low, high, 1, 0.0)[0]


def test_cascade_member_that_finds_many_new_successes_flags_masking():
    first = card("pgd10", 0.50, cascade={"position": 1, "of": 2, "member": "pgd10"})
    square = nested(
        first,
        0.30,
        eval={"cascade": {"position": 2, "of": 2, "member": "square"}},
        attack={"id": "square"},
    )
    assert result("C14", [first, square]).status == "fail"
    quiet = nested(
        first,
        0.495,
        eval={"cascade": {"position": 2, "of": 2, "member": "square"}},
        attack={"id": "square"},
    )
    assert result("C14", [first, quiet]).status == "pass"


def test_c20_flags_worst_case_above_mra():
    row = {"headline": {"acc": 0.5, "ci95": [0.45, 0.55]}, "mra": 0.4, "k_eval": 1}
    assert result("C20", [card("pgd10", 0.4)], row).status == "fail"


# ---------------------------------------------------------------- the command and the leaderboard
def test_check_stores_outcomes_flags_a_masking_model_and_the_leaderboard_marks_it(
    home, monkeypatch
):
    api.attack(home=home, attacks=["fgsm", "pgd10"], n=60, device="cpu")
    runner = CliRunner()
    ok = runner.invoke(app, ["check", "--home", str(home), "--n", "40"])
    assert ok.exit_code == 0, ok.output
    board = api.leaderboard(home)
    assert board.rows[0]["unreliable"] == [] and board.rows[0]["checks"]["C07"] == "pass"

    real_load = api.load
    monkeypatch.setattr(api, "load", lambda *a, **k: Quantised(real_load(*a, **k)))
    bad = runner.invoke(app, ["check", "--home", str(home), "--n", "40", "--checks", "C07,C08"])
    assert bad.exit_code == 1, bad.output
    assert "unreliable: vanilla-tiny-digits" in bad.stderr
    row = api.leaderboard(home).rows[0]
    assert [f.split()[0] for f in row["unreliable"]] == ["C07", "C08"]
    _, paths = api.report(home, home / "out", formats=("md",))
    text = paths[0].read_text()
    assert "⚠ unreliable: masking suspected (C07, C08)" in text and "## Sanity checks" in text
    assert "C07 gradient masking suspected: " in text


def test_unknown_check_id_is_one_line(home):
    result = CliRunner().invoke(app, ["check", "--home", str(home), "--checks", "C99"])
    assert result.exit_code == 2 and "unknown check 'C99'" in result.stderr


# ---------------------------------------------------------------- false alarms under the null
RECIPE_ATTACKS = [
    ("fgsm", 1),
    ("rfgsm", 1),
    ("pgd10", 10),
    ("pgd20", 20),
    ("apgd10", 10),
    ("mifgsm", 10),
]  # zoo/digits.toml's attack list (id, steps)


def counts_card(attack_id, counts, *, k_eval, steps=10, eot=1, eps=EPS, sweep=None):
    """A result card holding the per-sample correct-draw ``counts`` as they are."""
    n = len(counts)
    params = {"steps": steps, **({"sweep": sweep} if sweep else {})}
    return {
        "model": {"name": "m", "sha256": "s", "stochastic": k_eval > 1},
        "attack": {
            "id": attack_id,
            "eps": eps,
            "norm": "Linf",
            "eot": eot,
            "grad": "bptt",
            "params": params,
        },
        "eval": {"n": n, "split": "test", "k_eval": k_eval},
        "per_sample": {"adv": encode_counts(counts), "clean": encode_counts(np.full(n, k_eval))},
        "checks": {"C01": "pass"},
    }


def digits_truth(rng, n):
    """Per-sample probabilities of surviving an attack, digits-like: a third always broken, a
    quarter never, the rest anywhere between (the samples that make runs disagree)."""
    kind = rng.choice(3, size=n, p=[0.3, 0.25, 0.45])
    return np.where(kind == 0, 0.0, np.where(kind == 1, 1.0, rng.uniform(size=n)))


def null_recipe_cards(rng, k_eval, n=360, sweep_n=100, truth=digits_truth):
    """The digits recipe's cards of one model (its attacks, the EoT Drop pair and the sweep of
    eps, steps and EoT) when every run has the same per-sample truth: any flag is a false alarm."""
    p = truth(rng, n)
    draw = lambda size: rng.binomial(k_eval, p[:size]).astype(np.uint8)  # noqa: E731
    eot = 2 if k_eval > 1 else 1
    cards = [counts_card(a, draw(n), k_eval=k_eval, steps=s, eot=eot) for a, s in RECIPE_ATTACKS]
    sweep = [dict(eps=e, sweep="eps", eot=eot) for e in (8 / 255, 16 / 255, EPS, 64 / 255)]
    sweep += [dict(steps=s, sweep="steps", eot=eot) for s in (1, 3, 10)]
    if k_eval > 1:
        cards.append(counts_card("pgd10", draw(n), k_eval=k_eval, eot=1))  # the Drop pair
        sweep += [dict(eot=k, sweep="eot") for k in (1, 2, 4)]
    cards += [counts_card("pgd10", draw(sweep_n), k_eval=k_eval, **kw) for kw in sweep]
    return cards


def family_false_alarms(k_eval, reps, seed=0, truth=digits_truth):
    """Share of null models with any failed comparing check."""
    rng = np.random.default_rng(seed)
    alarms = 0
    for _ in range(reps):
        outcomes = run_result_checks(Results(null_recipe_cards(rng, k_eval, truth=truth)))
        alarms += any(o.status == "fail" for o in outcomes if o.id != "C01")
    return alarms / reps


@pytest.mark.parametrize("k_eval", [1, 3])
def test_equally_strong_attacks_flag_a_model_at_most_one_percent_of_the_time(k_eval):
    reps = 1000
    rate = family_false_alarms(k_eval, reps, seed=k_eval)
    # 1% plus three Monte-Carlo standard errors of a 1% rate over `reps` models
    assert rate <= 0.01 + 3 * np.sqrt(0.01 * 0.99 / reps), rate


def test_run_checks_its_models_so_the_leaderboard_carries_the_flags(tmp_path):
    recipe = tmp_path / "one.toml"
    recipe.write_text(
        'name = "one"\ndataset = "digits"\neps = "32/255"\nattacks = ["fgsm", "pgd10"]\n'
        'n = 60\n[train]\nepochs = 1\n[[models]]\ndefense = "vanilla"\n'
    )
    outcome = api.run(str(recipe), home=tmp_path / "home", out=tmp_path / "boards", device="cpu")
    (row,) = outcome.board.rows
    assert {"C07", "C08", "C17"} <= set(row["checks"]) and "C10" not in row["checks"]
    assert "checked with `snnbench check`" in (tmp_path / "boards" / "one.md").read_text()


def test_a_borderline_pair_fails_alone_but_not_in_a_larger_family():
    # noise below PGD-10 on 8 samples and above on none: exact p = 0.5^8 = 0.0039
    pgd = np.zeros(200, np.uint8)
    pgd[:100] = 1
    noise = pgd.copy()
    noise[:8] = 0
    pair = [counts_card("pgd10", pgd, k_eval=1), counts_card("noise-uniform", noise, k_eval=1)]
    alone = result("C16", pair)
    assert alone.status == "fail" and "p 0.0039" in alone.detail, alone
    # three more comparisons of equal runs (C11, C17): Holm asks p <= 1%/4 of the smallest
    more = [
        counts_card("fgsm", pgd, k_eval=1, steps=1),
        counts_card("pgd20", pgd, k_eval=1, steps=20),
    ]
    assert result("C16", pair + more).status == "pass"


def test_sign_test_and_holm_are_exact():
    from snnbench.checks import holm, sign_test

    low, high = np.array([0, 0, 0, 1, 1]), np.array([1, 1, 1, 1, 0])
    assert sign_test(low, high) == (3, 1, pytest.approx(5 / 16))  # P(Bin(4, 1/2) >= 3)
    assert sign_test(np.array([2, 3, 0]), np.array([3, 3, 3])) == (2, 0, pytest.approx(0.25))
    # a cascade member that lowers 5 of 100 samples, against a 1% share: P(Bin(100, .01) >= 5)
    assert sign_test(np.r_[np.zeros(5), np.ones(95)], np.ones(100), 0.01, nested=True)[
        2
    ] == pytest.approx(0.00343, abs=1e-5)
    assert holm([0.004, 0.03, 0.2], 0.01) == [False, False, False]
    assert holm([0.003, 0.004, 0.2], 0.01) == [True, True, False]  # 1%/3, then 1%/2


def test_a_flag_says_what_was_found():
    from snnbench.checks import Outcome, flag_summary, flagged

    outcomes = [
        Outcome("C11", "unreliable", "fail"),
        Outcome("C07", "unreliable", "fail"),
        Outcome("C14", "unreliable", "pass"),
    ]
    labels = flagged(outcomes)
    assert labels[0].startswith("C11 attack not converged: ") and "upper bound" in labels[0]
    assert labels[1].startswith("C07 gradient masking suspected: ")
    assert flag_summary(labels) == "not converged (C11); masking suspected (C07)"
