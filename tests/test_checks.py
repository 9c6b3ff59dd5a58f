"""Sanity checks (evaluation.md section 7): each flags a model built to fail it, and a trained
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


@pytest.mark.parametrize("defect, check", [
    (Leaky, "C02"), (RandomOutput, "C03"), (BatchDependent, "C04"), (ModeFlipper, "C05"),
    (NaNs, "C06"), (Quantised, "C07"), (Quantised, "C08"), (Quantised, "C10"),
    (BatchDependent, "C22"), (NoisyGradient, "C23"),
])
def test_a_model_built_to_fail_a_probe_check_is_flagged(vanilla, samples, defect, check):
    result = outcome(defect(vanilla), samples, check)
    assert result.status == "fail", result
    assert result.flags == (result.level != "warn")


def test_a_model_declared_stochastic_without_noise_fails_c03(vanilla, samples):
    result = outcome(vanilla, samples, "C03", stochastic=True)
    assert result.status == "fail" and "noise is off" in result.detail


# ---------------------------------------------------------------- result checks on built cards
N = 200


def card(attack_id, robust, *, eps=EPS, steps=10, eot=1, grad="bptt", stochastic=False,
         restarts=1, seed=0, k_eval=1, cascade=None):
    """A result card whose per-sample column has accuracy ``robust`` (clean: all correct)."""
    rng = np.random.default_rng(seed)
    adv = (rng.permutation(N) < round(robust * N)).astype(np.uint8) * k_eval
    return {"model": {"name": "m", "sha256": "s", "stochastic": stochastic},
            "attack": {"id": attack_id, "eps": eps, "norm": "Linf", "eot": eot, "grad": grad,
                       "params": {"steps": steps, "restarts": restarts}},
            "eval": {"n": N, "split": "test", "k_eval": k_eval,
                     **({"cascade": cascade} if cascade else {})},
            "per_sample": {"adv": encode_counts(adv), "clean": encode_counts(np.full(N, k_eval))},
            "checks": {"C01": "pass"}}


def nested(base, robust, **kw):
    """A column whose survivors are a subset of ``base``'s (an attack at least as strong)."""
    from snnbench.metrics import decode_counts
    adv = decode_counts(base["per_sample"]["adv"]).copy()
    alive = np.flatnonzero(adv)
    adv[alive[:len(alive) - round(robust * N)]] = 0
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
    "C09": ([card("pgd10", 0.30, eps=8 / 255), card("pgd10", 0.45, eps=16 / 255, seed=1)],
            [card("pgd10", 0.45, eps=8 / 255), card("pgd10", 0.30, eps=16 / 255, seed=1)]),
    "C11": ([card("apgd-ce", 0.40, steps=100), card("apgd-ce", 0.20, steps=200, seed=1)],
            [card("apgd-ce", 0.40, steps=100), card("apgd-ce", 0.40, steps=200)]),
    "C12": ([card("apgd-ce", 0.40, restarts=1), card("apgd-ce", 0.25, restarts=5, seed=1)],
            [card("apgd-ce", 0.40, restarts=1), card("apgd-ce", 0.40, restarts=5)]),
    "C13": ([card("apgd-ce", 0.40, eot=10, stochastic=True),
             card("apgd-ce", 0.20, eot=20, stochastic=True, seed=1)],
            [card("apgd-ce", 0.40, eot=10, stochastic=True),
             card("apgd-ce", 0.40, eot=20, stochastic=True)]),
    "C14": ([card("pgd10", 0.40), card("square", 0.20, seed=1)],
            [card("pgd10", 0.40), card("square", 0.60, seed=1)]),
    "C15": ([card("apgd-ce", 0.40), card("transfer-ann-twin-apgd-ce", 0.25, seed=1)],
            [card("apgd-ce", 0.40), card("transfer-ann-twin-apgd-ce", 0.70, seed=1)]),
    "C16": ([card("pgd10", 0.40), card("noise-uniform", 0.20, seed=1)],
            [card("pgd10", 0.40), card("noise-uniform", 0.90, seed=1)]),
    "C17": ([card("fgsm", 0.30), card("pgd40", 0.50, steps=40, seed=1)],
            [card("fgsm", 0.50), card("pgd40", 0.30, steps=40, seed=1)]),
    "C18": ([card("apgd-ce", 0.40), card("apgd-ce", 0.20, grad="bptr", seed=1)],
            [card("apgd-ce", 0.40), card("apgd-ce", 0.41, grad="bptr", seed=1)]),
    "C19": ([card("apgd-ce", 0.40, steps=100), card("apgd-dlr", 0.25, steps=100, seed=1)],
            [card("apgd-ce", 0.40, steps=100), card("apgd-dlr", 0.42, steps=100, seed=1)]),
    "C20": ([card("autoattack-standard", 0.40), card("apgd-ce", 0.20, seed=1)],
            [card("autoattack-standard", 0.20), card("apgd-ce", 0.40, seed=1)]),
    "C21": ([card("pgd10", 0.40, eot=1), card("pgd10", 0.20, eot=10, seed=1)],
            [card("pgd10", 0.40, eot=1), card("pgd10", 0.40, eot=10)]),
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
    assert result("C11", [*sweep, card("pgd10", 0.40, steps=10, seed=1),
                          card("pgd10", 0.20, steps=20, seed=2)]).status == "fail"


def test_differences_inside_the_noise_do_not_fail():
    # 1.5 pp apart on 200 samples, different samples: far below 2 SE (about 9 pp)
    assert result("C14", [card("pgd10", 0.400), card("square", 0.385, seed=1)]).status == "pass"
    low, high = np.array([1, 0, 0, 1]), np.array([1, 1, 0, 1])
    assert not significantly_lower(low, high, 1, 0.0)[0]


def test_cascade_member_that_finds_many_new_successes_flags_masking():
    first = card("pgd10", 0.50, cascade={"position": 1, "of": 2, "member": "pgd10"})
    square = nested(first, 0.30, eval={"cascade": {"position": 2, "of": 2, "member": "square"}},
                    attack={"id": "square"})
    assert result("C14", [first, square]).status == "fail"
    quiet = nested(first, 0.495, eval={"cascade": {"position": 2, "of": 2, "member": "square"}},
                   attack={"id": "square"})
    assert result("C14", [first, quiet]).status == "pass"


def test_c20_flags_worst_case_above_mra():
    row = {"worst_case": {"acc": 0.5}, "mra": 0.4}
    assert result("C20", [card("pgd10", 0.4)], row).status == "fail"


# ---------------------------------------------------------------- the command and the leaderboard
def test_check_stores_outcomes_flags_a_masking_model_and_the_leaderboard_marks_it(home, monkeypatch):
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
