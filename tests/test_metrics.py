"""Intervals and aggregates (docs/protocol.md)."""

from __future__ import annotations

import numpy as np
import pytest

from snnbench.metrics import (
    Candidates,
    accuracy_interval,
    decode_counts,
    encode_counts,
    format_interval,
    mra,
    mra_interval,
    wilson,
    worst_candidates,
)


def test_wilson_known_values():
    lo, hi = wilson(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-4) and hi == pytest.approx(0.5962, abs=1e-4)
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == pytest.approx(1.0)


def test_wilson_covers_the_true_rate():
    rng = np.random.default_rng(0)
    p, n, trials = 0.3, 200, 2000
    hits = rng.binomial(n, p, size=trials)
    covered = np.mean([lo <= p <= hi for lo, hi in (wilson(int(h), n) for h in hits)])
    assert 0.93 <= covered <= 0.97


def test_bootstrap_for_several_draws():
    counts = np.array([3, 0, 2, 1, 3, 3])
    acc, (lo, hi), method = accuracy_interval(counts, 3)
    assert method == "bootstrap" and acc == pytest.approx(12 / 18) and lo < acc < hi


def _deterministic(correct: list[int]) -> Candidates:
    values = np.array(correct)
    return Candidates(values, values, (values == 0).astype(int))


def test_mra_is_the_minimum_and_worst_case_is_per_sample():
    assert mra([0.5, 0.3, None, 0.4]) == 0.3
    assert mra([0.3, 0.5]) == 0.3 and mra([0.5, 0.3]) == 0.3  # not the first, not the max
    a, b = _deterministic([1, 0, 1, 1]), _deterministic([1, 1, 0, 1])
    # two attacks that break different samples: the worst case is below both columns
    assert worst_candidates([a, b]).report.tolist() == [1, 0, 0, 1]


def test_worst_case_chooses_on_selection_and_reports_the_report_counts():
    # sample 0: attack b has fewer correct selection draws, so b's candidate is reported even
    # though its report count is higher than a's (the report draws never choose)
    a = Candidates(np.array([2, 3]), np.array([0, 3]), np.array([1, 1]))
    b = Candidates(np.array([1, 3]), np.array([3, 1]), np.array([2, 2]))
    worst = worst_candidates([a, b])
    assert worst.report.tolist() == [3, 3] and worst.select.tolist() == [1, 3]


def test_ties_go_to_the_adversarial_candidate():
    clean = Candidates(np.array([3, 3]), np.array([3, 3]), np.array([0, 0]))
    adv = Candidates(np.array([3, 2]), np.array([1, 0]), np.array([1, 1]))
    assert worst_candidates([clean, adv]).report.tolist() == [1, 0]
    # between two adversarial candidates the earlier one stays
    later = Candidates(np.array([3, 2]), np.array([2, 2]), np.array([2, 2]))
    assert worst_candidates([adv, later]).report.tolist() == [1, 0]
    assert worst_candidates([adv, later]).origin.tolist() == [1, 1]


def test_mra_interval_bootstraps_the_minimum():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 2, 360), rng.integers(0, 2, 360)
    value, (lo, hi) = mra_interval([a, b], 1)
    assert value == min(a.mean(), b.mean()) and lo < value < hi


def test_intervals_print_brackets_when_asymmetric():
    assert format_interval(0.5, [0.45, 0.55]) == "50.00 ± 5.00"
    assert format_interval(0.5, [0.454, 0.55]) == "50.00 ± 5.00"  # the larger half
    assert format_interval(0.5, [0.40, 0.55]) == "50.00 [40.00, 55.00]"
    assert format_interval(0.02, [0.004, 0.105]) == "2.00 [0.40, 10.50]"
    assert format_interval(0.5, None) == "50.00"


def test_counts_encoding_round_trip():
    counts = np.array([0, 3, 9, 255], np.uint8)
    assert decode_counts(encode_counts(counts)).tolist() == counts.tolist()


def _card(attack: str, clean: list[int], adv: list[int], created: str) -> dict:
    """A deterministic result card on four samples."""
    return {
        "model": {
            "name": "m",
            "sha256": "s",
            "defense": "vanilla",
            "arch": "tiny",
            "dataset": "digits",
            "timesteps": 4,
            "stochastic": False,
        },
        "attack": {"id": attack, "key": attack, "eps": 0.1, "norm": "Linf", "eot": 1},
        "eval": {"split": "test", "n": 4, "k_eval": 1, "samples": "abc"},
        "seed": 0,
        "env": {"device": "cpu"},
        "created": created,
        "result": {
            "robust_acc": float(np.mean(adv)),
            "ci95": [0.0, 1.0],
            "clean_acc": float(np.mean(clean)),
            "clean_ci95": [0.0, 1.0],
        },
        "per_sample": {
            "clean": encode_counts(np.array(clean)),
            "adv": encode_counts(np.array(adv)),
        },
    }


def test_the_leaderboard_headline_is_per_sample_not_the_lowest_column():
    from snnbench.report import build_leaderboard

    a = _card("fgsm", [1, 1, 1, 1], [0, 1, 1, 1], "1")
    b = _card("pgd10", [1, 1, 1, 1], [1, 0, 1, 1], "2")
    (row,) = build_leaderboard([a, b]).rows
    assert row["mra"] == 0.75 and row["headline"]["acc"] == 0.5
    assert decode_counts(row["headline"]["per_sample"]).tolist() == [0, 0, 1, 1]


def test_a_run_with_another_setting_is_another_row():
    from snnbench.report import build_leaderboard

    main = [_card("fgsm", [1] * 4, [0, 1, 1, 1], "1"), _card("pgd10", [1] * 4, [0, 0, 1, 1], "2")]
    explore = _card("pgd10", [1] * 4, [1, 1, 1, 1], "3")
    explore["seed"] = 3
    board = build_leaderboard([*main, explore])
    assert len(board.rows) == 2 and len(board.tables()) == 2
    first, second = board.rows
    assert first["attacks"]["pgd10"]["robust_acc"] == 0.5  # not replaced by the newer run
    assert set(first["attacks"]) == {"fgsm", "pgd10"} and set(second["attacks"]) == {"pgd10"}
    assert second["setting"]["seed"] == 3


def test_the_csv_starts_with_its_header():
    import io
    import pandas as pd
    from snnbench.report import build_leaderboard, render_csv

    board = build_leaderboard([_card("fgsm", [1] * 4, [0, 1, 1, 1], "1")])
    table = pd.read_csv(io.StringIO(render_csv(board)))
    assert list(table.columns[:3]) == ["model", "headline", "headline_low"]
    assert table.loc[0, "headline"] == 0.75
