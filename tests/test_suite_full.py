"""The ``full`` suite (issue 5): transfer attacks, BPTR and surrogate members, the cascade over
still-robust samples, cached clean draws, Drop pairs, and the leaderboard built from them."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from pyautoattack import AutoAttack

import snnbench
from snnbench import api
from snnbench.attacks import create_attack
from snnbench.attacks.suites import SUITES, build_member
from snnbench.errors import SnnbenchError
from snnbench.metrics import decode_counts, paired_difference
from snnbench.neurons import spiking_neurons
from snnbench.neurons.twins import ann_twin, mean_twin

NAME = "vanilla-tiny-digits"
RANDHET = "randhet-tiny-digits"
EPS = 32 / 255


def counts(card) -> np.ndarray:
    return decode_counts(card["per_sample"]["adv"])


def by_member(cards):
    return {c["eval"]["cascade"]["member"]: c for c in cards if "cascade" in c["eval"]}


def test_suite_members_read_steps_surrogate_and_doubled_eot():
    attack = build_member("apgd-ce:25@surrogate=bptr@eot=2k", EPS, "Linf", 3)
    assert (attack.params["steps"], attack.grad, attack.eot) == (25, "bptr", 6)
    assert attack.label == "apgd-ce:25@surrogate=bptr@eot=2k"
    assert build_member("apgd-ce@eot=2k", EPS, "Linf", 1).eot == 1  # deterministic: no EoT
    assert build_member("pgd10", EPS, "Linf", 1, steps_override=3).params["steps"] == 3
    with pytest.raises(SnnbenchError, match="unknown modifier"):
        build_member("pgd10@restarts=5", EPS, "Linf", 1)
    full = SUITES.get("full")
    assert full.cascade and full.drop_pairs
    deterministic = full.attacks(EPS)
    assert len({a.key() for a in deterministic}) == len(deterministic)
    assert {a.grad for a in deterministic} >= {"bptt", "bptr", "sg:rect:2"}
    assert [a.eot for a in full.drop_attacks(EPS, stochastic=True, eot=4)] == [1, 4]
    assert full.drop_attacks(EPS, stochastic=False) == []


def test_twins_are_deterministic_copies(trained_home, stochastic_home):
    model = snnbench.load(RANDHET, stochastic_home)
    x = snnbench.load_dataset("digits", "test")[0][:32]
    twin = mean_twin(model)
    with torch.no_grad():
        assert torch.equal(twin(x), twin(x)) and not torch.equal(model(x), model(x))
    assert model.stochastic and not twin.stochastic  # the original is untouched
    relu = ann_twin(snnbench.load(NAME, trained_home))
    assert spiking_neurons(relu) == []
    with torch.no_grad():
        assert relu(x).abs().sum() > 0


class GradientSpy(torch.nn.Module):
    """Counts backward passes that reach the wrapped model's output."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.backward_calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        if out.requires_grad:
            out.register_hook(self._count)
        return out

    def _count(self, grad: torch.Tensor) -> None:
        self.backward_calls += 1


def test_transfer_uses_only_the_source_gradient(trained_home):
    target = snnbench.load(NAME, trained_home)
    x, y = (t[:64] for t in snnbench.load_dataset("digits", "test"))
    for attack_id in ("transfer-ann-twin-pgd10", "transfer-mean-twin-apgd-ce"):
        spy = GradientSpy(target)
        torch.manual_seed(0)
        x_adv = create_attack(attack_id, EPS, steps=10)(spy, x, y)
        assert spy.backward_calls == 0, attack_id
        with torch.no_grad():
            assert (target(x_adv).argmax(1) == y).sum() < (target(x).argmax(1) == y).sum()
    white_box = GradientSpy(target)
    create_attack("pgd10", EPS)(white_box, x, y)
    assert white_box.backward_calls > 0  # the spy does see gradients
    with pytest.raises(SnnbenchError, match="transfer-SOURCE-ATTACK"):
        create_attack("transfer-nowhere-pgd10", EPS)


def test_transfer_from_another_model_of_the_home(home, stochastic_home):
    shutil.copytree(stochastic_home / "models" / RANDHET, home / "models" / RANDHET)
    source = f"transfer-model:{NAME}-pgd10"
    (card,) = api.attack([RANDHET], home=home, attacks=[source], n=60, device="cpu")
    own = snnbench.checkpoint.load_card(NAME, home)["weights_sha256"]
    assert card["attack"]["params"]["source_sha256"] == own and own in card["attack"]["key"]
    assert card["result"]["robust_acc"] < card["result"]["clean_acc"]
    with pytest.raises(SnnbenchError, match="not in"):
        api.attack([RANDHET], home=home, attacks=["transfer-model:missing-model-pgd10"], n=20)


def test_full_cascade_resumes_and_is_monotone(home, tmp_path):
    """The cascade on a deterministic model: each member attacks only the survivors, counts
    never rise along it, a rerun after an injected stop gives the same bitmaps, and the
    leaderboard's worst case is its last column."""
    fresh = tmp_path / "fresh"
    shutil.copytree(home, fresh)
    kwargs = dict(suite="full", steps=3, n=40, chunk_size=20, device="cpu")
    api.attack([NAME], home=home, max_chunks=7, **kwargs)
    resumed = by_member(api.attack([NAME], home=home, **kwargs))
    whole = by_member(api.attack([NAME], home=fresh, **kwargs))
    assert list(resumed) == [a.label for a in SUITES.get("full").attacks(EPS, steps=3)]
    assert {m: counts(c).tolist() for m, c in resumed.items()} == {
        m: counts(c).tolist() for m, c in whole.items()
    }
    steps = list(resumed.values())
    for earlier, later in zip(steps, steps[1:]):
        assert (counts(later) <= counts(earlier)).all()
        assert later["eval"]["attacked"] <= int((counts(earlier) > 0).sum())
    assert steps[-1]["result"]["robust_acc"] < steps[0]["result"]["robust_acc"]
    board = api.leaderboard(home)
    (row,) = board.rows
    assert row["headline"]["acc"] == steps[-1]["result"]["robust_acc"]
    assert [s["member"] for s in row["cascade"]] == list(resumed)


def test_per_attack_full_columns_and_the_derived_cascade(home):
    cards = api.attack(
        [NAME], home=home, suite="full", steps=2, n=40, per_attack_full=True, device="cpu"
    )
    single = [c for c in cards if "cascade" not in c["eval"]]
    cascade = list(by_member(cards).values())
    assert len(single) == len(cascade) == len(SUITES.get("full").attacks(EPS, steps=2))
    assert all(c["timing"]["grad_evals"] == 0 for c in cascade)  # derived, not rerun
    minimum = np.min(np.stack([counts(c) for c in single]), axis=0)
    assert counts(cascade[-1]).tolist() == minimum.tolist()
    (row,) = api.leaderboard(home).rows
    assert row["mra"] == min(c["result"]["robust_acc"] for c in single)
    assert row["headline"]["acc"] <= row["mra"]
    # the full suite ends with the sanity checks, stored with the model: the per-attack columns
    # feed the result checks (square and transfer against the best white-box attack)
    assert row["checks"]["C10"] in ("pass", "fail") and row["checks"]["C14"] in ("pass", "fail")
    assert row["checks"]["C20"] == "pass"


def test_clean_draws_are_cached_and_shared(home):
    api.attack([NAME], home=home, attacks=["fgsm"], n=40, chunk_size=20, device="cpu")
    with api.open_store(home) as store:
        rows = store._db.execute("SELECT chunk, selection FROM clean").fetchall()
        assert sorted(r[0] for r in rows) == [0, 1]
        # Mark every clean draw wrong: the next attack must read the cache and attack nothing.
        for chunk, selection in rows:
            store._db.execute(
                "UPDATE clean SET selection = ?, report = ? WHERE chunk = ?",
                (bytes(len(selection)), bytes(len(selection)), chunk),
            )
    (card,) = api.attack([NAME], home=home, attacks=["pgd10"], n=40, chunk_size=20, device="cpu")
    assert card["result"]["clean_acc"] == 0 and card["eval"]["attacked"] == 0


def test_drop_pairs_on_a_stochastic_model(stochastic_home, tmp_path):
    """EoT Drop = RA(pgd10) - RA(pgd10 with EoT) on the same samples, with a paired interval;
    EoT must not leave the model more robust than without it beyond that interval."""
    home = tmp_path / "h"
    shutil.copytree(stochastic_home, home)
    model = snnbench.load(RANDHET, home)
    drops = SUITES.get("full").drop_attacks(EPS, stochastic=True, eot=8)
    plain, eot = [
        api.attack([RANDHET], home=home, attacks=[a.id], eot=a.eot, n=60, device="cpu")[0]
        for a in drops
    ]
    assert (plain["attack"]["eot"], eot["attack"]["eot"]) == (1, 8)
    (row,) = api.leaderboard(home).rows
    drop = row["drop"]["pgd10"]
    value, ci = paired_difference(counts(plain), counts(eot), plain["eval"]["k_eval"])
    assert drop["value"] == pytest.approx(value) and drop["ci95"] == pytest.approx(list(ci))
    assert drop["value"] == pytest.approx(
        plain["result"]["robust_acc"] - eot["result"]["robust_acc"]
    )
    assert drop["ci95"][1] >= 0  # EoT never significantly weaker than no EoT
    assert set(row["attacks"]) == {"pgd10", "pgd10+eot"}
    assert model.stochastic


def test_independent_pyautoattack_on_a_stochastic_model_lands_in_the_interval(
    stochastic_home, tmp_path
):
    home = tmp_path / "h"
    shutil.copytree(stochastic_home, home)
    (card,) = api.attack(
        [RANDHET], home=home, attacks=["apgd10"], eot=4, n=100, k_eval=5, device="cpu"
    )
    model = snnbench.load(RANDHET, home)
    x, y = snnbench.load_dataset("digits", "test")
    from snnbench.evaluate import select_samples

    x, y = select_samples(x, y, 100, 10)
    aa = AutoAttack(
        model, norm="Linf", eps=EPS, version="custom", attacks=["apgd-ce"], device="cpu", seed=7
    )
    aa.apgd.n_restarts, aa.apgd.n_iter, aa.apgd.eot_iter = 1, 10, 4
    x_adv, _ = aa.run_standard_evaluation(x, y, batch_size=100)
    torch.manual_seed(11)
    with torch.no_grad():
        draws = [
            ((model(x_adv).argmax(1) == y) & (model(x).argmax(1) == y)).float().mean().item()
            for _ in range(5)
        ]
    lo, hi = card["result"]["ci95"]
    assert lo <= float(np.mean(draws)) <= hi, (draws, lo, hi)


def test_paired_difference_is_the_mean_gap():
    a, b = np.array([3, 3, 0, 2]), np.array([1, 3, 0, 2])
    value, (lo, hi) = paired_difference(a, b, 3)
    assert value == pytest.approx(2 / 3 / 4) and lo <= value <= hi
    assert paired_difference(a, a, 3) == (0.0, (0.0, 0.0))


def test_a_headline_tail_runs_only_on_what_the_columns_left(home):
    """A recipe's headline attacks: a cascade after the attack columns (each column derived
    from its own run), the tail attacking only the samples every column left robust; the
    row's headline is its last member, never above the worst single column."""
    from snnbench.evaluate import EvalConfig, ModelInfo, plan_attacks, run_attacks
    from snnbench.data import load_dataset

    columns = [create_attack("fgsm", EPS), create_attack("rfgsm", EPS)]
    tail = [create_attack("pgd10", EPS, steps=3)]
    info = ModelInfo.from_card(snnbench.load_card(NAME, home=home))
    config = EvalConfig(n=60, chunk_size=30)
    plan = plan_attacks(info, columns, config, 60, cascade=True, per_attack_full=False, tail=tail)
    members = [t for t in plan.tasks if "cascade=" in t.key]
    assert [t.own is not None for t in members if t.index == 0] == [True, True, False]
    assert [t.position for t in members if t.index == 0] == [1, 2, 3]
    x, y = load_dataset("digits", "test")
    with api.open_store(home) as store:
        cards = run_attacks(
            snnbench.load(NAME, home=home),
            info,
            columns,
            x,
            y,
            store,
            config,
            torch.device("cpu"),
            cascade=True,
            tail=tail,
        )
    singles = [c for c in cards if "cascade" not in c["eval"]]
    steps = sorted(
        (c for c in cards if "cascade" in c["eval"]), key=lambda c: c["eval"]["cascade"]["position"]
    )
    assert [c["attack"]["id"] for c in singles] == ["fgsm", "rfgsm"]
    survivors = np.minimum(counts(singles[0]), counts(singles[1]))
    assert counts(steps[1]).tolist() == survivors.tolist()
    assert steps[2]["eval"]["attacked"] == int((survivors > 0).sum())
    assert (counts(steps[2]) <= survivors).all()
    (row,) = api.leaderboard(home).rows
    assert row["headline"]["acc"] == steps[2]["result"]["robust_acc"]
    assert row["headline"]["acc"] <= min(c["result"]["robust_acc"] for c in singles)
    assert row["headline"]["members"][-1] == "pgd10"


def test_a_member_sets_a_targeted_attacks_targets():
    attack = build_member("apgd-t@targets=5", EPS, "Linf", 2)
    assert attack.params["targets"] == 5 and attack.label == "apgd-t@targets=5"
    assert attack.key() != build_member("apgd-t", EPS, "Linf", 2).key()
    for bad in ("pgd10@targets=5", "apgd-t@targets=0", "apgd-t:-2"):
        with pytest.raises(SnnbenchError):
            build_member(bad, EPS, "Linf", 1)
