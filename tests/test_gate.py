"""The paired regression gate (docs/protocol.md 'Gate'): each branch on hand-made leaderboards,
its false-alarm rate and power by simulation, and the command through Typer's CliRunner."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from snnbench import api
from snnbench.cli import app
from snnbench.errors import SnnbenchError
from snnbench.gate import ALPHA, HEADLINE, Pair, compare, judge, paired_p_value, tarone_level
from snnbench.metrics import encode_counts
from snnbench.report import build_leaderboard

N = 360
EPS = 32 / 255


def card(
    model: str,
    attack: str,
    adv,
    *,
    k_eval: int = 1,
    eps: float = EPS,
    seed: int = 0,
    samples: str | None = None,
    split: str = "test",
) -> dict:
    """A result card as evaluate writes it, with the per-sample counts ``adv``."""
    adv = np.asarray(adv, dtype=np.uint8)
    key = f"{attack}|linf|eps={eps:.4f}|k_eval={k_eval}|n={len(adv)}|seed={seed}|{split}"
    acc = float(adv.mean() / k_eval)
    return {
        "model": {
            "name": model,
            "sha256": f"sha-{model}",
            "defense": "vanilla",
            "arch": "tiny",
            "dataset": "digits",
            "timesteps": 4,
            "stochastic": k_eval > 1,
        },
        "attack": {"id": attack, "key": key, "eps": eps, "norm": "Linf", "eot": 1, "grad": "bptt"},
        "eval": {
            "n": len(adv),
            "split": split,
            "subset": "balanced",
            "k_eval": k_eval,
            **({"samples": samples} if samples else {}),
        },
        "seed": seed,
        "env": {"device": "cpu"},
        "created": "2026-12-04T00:00:00+00:00",
        "result": {
            "robust_acc": acc,
            "ci95": [acc, acc],
            "clean_acc": 1.0,
            "clean_ci95": [1.0, 1.0],
        },
        "per_sample": {
            "adv": encode_counts(adv),
            "clean": encode_counts(np.full(len(adv), k_eval)),
        },
    }


def robust(count: int, k_eval: int = 1) -> np.ndarray:
    """Per-sample counts: the first ``count`` samples robust in every draw, the rest broken."""
    return np.where(np.arange(N) < count, k_eval, 0).astype(np.uint8)


def headline(counts, members=("fgsm", "pgd10"), k_eval: int = 1, samples: str = "abc") -> dict:
    counts = np.asarray(counts, dtype=np.uint8)
    return {
        "acc": float(counts.mean() / k_eval),
        "ci95": [0.0, 1.0],
        "per_sample": encode_counts(counts),
        "members": list(members),
        "n": len(counts),
        "k_eval": k_eval,
        "samples": samples,
    }


def baseline_json(cards: list[dict], headlines: dict | None = None) -> dict:
    """What `snnbench report --format json` writes for these cards (plus contract headlines)."""
    board = build_leaderboard(cards, "digits")
    for row in board.rows:
        row[HEADLINE] = (headlines or {}).get(row["model"])
    return json.loads(json.dumps(board.to_json()))


def current(cards: list[dict], headlines: dict | None = None):
    board = build_leaderboard(cards, "digits")
    for row in board.rows:
        row[HEADLINE] = (headlines or {}).get(row["model"])
    return board


def two_cells(pgd=robust(180), fgsm=robust(250), **kw) -> list[dict]:
    return [card("m", "pgd10", pgd, **kw), card("m", "fgsm", fgsm, **kw)]


def flip(counts: np.ndarray, start: int, count: int, to: int) -> np.ndarray:
    out = counts.copy()
    out[start : start + count] = to
    return out


# ---- each branch on constructed leaderboards


def test_identical_results_pass():
    result = compare(baseline_json(two_cells()), current(two_cells()))
    assert result.ok and result.passed == 2 and not (result.failed or result.noise or result.rises)


def test_ten_samples_broken_fail_as_a_drop():
    broken = flip(robust(180), 170, 10, 0)  # 10 robust samples now broken
    result = compare(baseline_json(two_cells()), current(two_cells(pgd=broken)))
    (cell,) = result.failed
    assert not result.ok and (cell.model, cell.column) == ("m", "pgd10")
    assert cell.worse == 10 and cell.better == 0
    assert cell.diff == pytest.approx(-10 / N) and cell.p_value == pytest.approx(2 / 2**10)
    assert cell.before == pytest.approx(0.5) and cell.now == pytest.approx(170 / N)


def test_a_rise_fails_unless_allowed():
    weaker = flip(robust(180), 180, 12, 1)  # a weakened attack: 12 samples survive
    base, now = baseline_json(two_cells()), current(two_cells(pgd=weaker))
    result = compare(base, now)
    (cell,) = result.rises
    assert not result.ok and not result.failed and cell.diff == pytest.approx(12 / N)
    allowed = compare(base, now, allow_rise=True)
    assert allowed.ok and len(allowed.rises) == 1


def test_a_drop_inside_the_noise_passes():
    # 16 worse, 6 better: a 2.8-point drop, but two-sided p = 0.05 is sampling noise
    moved = flip(flip(robust(180), 164, 16, 0), 180, 6, 1)
    result = compare(baseline_json(two_cells()), current(two_cells(pgd=moved)))
    (cell,) = result.noise
    assert result.ok and cell.worse == 16 and cell.better == 6
    assert cell.p_value == pytest.approx(mcnemar(16, 6)) and cell.p_value > ALPHA


def test_a_significant_change_within_the_tolerance_passes():
    broken = flip(robust(180), 172, 8, 0)  # 2.2 points, p = 0.008
    base, now = baseline_json(two_cells()), current(two_cells(pgd=broken))
    assert compare(base, now, tolerance=2.5).ok
    assert not compare(base, now, tolerance=2.0).ok


def test_a_missing_cell_fails():
    result = compare(baseline_json(two_cells()), current(two_cells()[:1]))
    (cell,) = result.missing
    assert not result.ok and cell.column == "fgsm" and cell.before == pytest.approx(250 / N)


@pytest.mark.parametrize(
    "change, named",
    [
        ({"seed": 1}, "seed=0"),
        ({"eps": 16 / 255}, "eps=32/255"),
        ({"k_eval": 3}, "k_eval=1"),
        ({"split": "train"}, "split=test"),
    ],
)
def test_cells_measured_otherwise_are_refused(change, named):
    with pytest.raises(SnnbenchError, match=f"cannot gate m .*{named}.* but the current"):
        compare(baseline_json(two_cells()), current(two_cells(**change)))


def test_other_n_is_refused():
    short = [card("m", "pgd10", robust(100)[:200])]
    with pytest.raises(SnnbenchError, match="n=360 but the current result with n=200"):
        compare(baseline_json(two_cells()[:1]), current(short))


def test_the_samples_digest_decides_when_both_sides_have_one():
    base = baseline_json(two_cells(samples="aaa"))
    with pytest.raises(SnnbenchError, match="samples=aaa but the current result with samples=bbb"):
        compare(base, current(two_cells(samples="bbb")))
    # with equal digests the seed that chose the samples no longer matters
    assert compare(base, current(two_cells(samples="aaa", seed=5))).ok
    # one side without a digest: the fields that choose the samples decide
    assert compare(base, current(two_cells())).ok


def test_an_old_baseline_is_refused_with_how_to_regenerate():
    base = baseline_json(two_cells())
    for old in (dict(base, cards=[]), {k: v for k, v in base.items() if k != "cards"}):
        with pytest.raises(SnnbenchError, match="no per-sample results for m .*regenerate"):
            compare(old, current(two_cells()))


def test_the_headline_is_gated():
    worst = robust(170)
    base = baseline_json(two_cells(), {"m": headline(worst)})
    same = current(two_cells(), {"m": headline(worst)})
    assert compare(base, same).passed == 3
    lower = current(two_cells(), {"m": headline(flip(worst, 155, 15, 0))})
    (cell,) = compare(base, lower).failed
    assert cell.column == HEADLINE and cell.worse == 15
    # compared only when both sides have one
    assert compare(base, current(two_cells())).passed == 2
    with pytest.raises(
        SnnbenchError,
        match="headline.*attacks=fgsm\\+pgd10 but the current "
        "result with attacks=apgd-ce\\+fgsm\\+pgd10",
    ):
        compare(base, current(two_cells(), {"m": headline(worst, ("fgsm", "pgd10", "apgd-ce"))}))
    with pytest.raises(SnnbenchError, match="samples=abc but the current result with samples=xyz"):
        compare(base, current(two_cells(), {"m": headline(worst, samples="xyz")}))


def test_stochastic_counts_weigh_each_change_by_its_draws():
    base_counts = np.where(np.arange(N) < 200, 3, 0).astype(np.uint8)
    partial = flip(base_counts, 150, 40, 2)  # 40 samples lose one of three draws
    base = baseline_json([card("r", "pgd10", base_counts, k_eval=3)])
    (cell,) = compare(base, current([card("r", "pgd10", partial, k_eval=3)])).failed
    assert cell.worse == 40 and cell.diff == pytest.approx(-40 / (3 * N))
    assert cell.p_value == pytest.approx(2 / 2**40)
    # 12 samples lost all three draws, 8 lost one and 8 gained one: by signs alone (20 worse,
    # 8 better, p = 0.036) noise, but the lost draws outweigh the one-draw wobble
    wobble = flip(flip(flip(base_counts, 140, 12, 0), 100, 8, 2), 300, 8, 1)
    (cell,) = compare(base, current([card("r", "pgd10", wobble, k_eval=3)])).failed
    assert (cell.worse, cell.better) == (20, 8) and mcnemar(20, 8) > 0.03
    assert cell.p_value < 1e-3


def mcnemar(worse: int, better: int) -> float:
    """McNemar's exact two-sided test from its textbook formula."""
    m = worse + better
    return min(1.0, 2 * sum(math.comb(m, i) for i in range(min(worse, better) + 1)) / 2**m)


def test_paired_p_value_is_exact():
    assert paired_p_value(np.zeros(5)) == 1.0 and paired_p_value([1, -1, 1, -1]) == 1.0
    for worse, better in [(10, 0), (0, 10), (16, 6), (7, 9), (40, 25)]:
        diff = np.array([-1] * worse + [1] * better + [0] * 30)
        assert paired_p_value(diff) == pytest.approx(mcnemar(worse, better), rel=1e-9)
    # counts out of k_eval: every one of the 2^m sign patterns, enumerated
    diff = np.array([-3, -3, -2, -1, -1, 1, 2, -3, 1, -2, 3, -1, 0, 0])
    changed = np.abs(diff[diff != 0])
    sums = [
        abs(sum(s * c for s, c in zip(signs, changed)))
        for signs in itertools.product((-1, 1), repeat=len(changed))
    ]
    expected = np.mean(np.array(sums) >= abs(diff.sum()))
    assert paired_p_value(diff) == pytest.approx(expected, rel=1e-9)
    assert 0 <= paired_p_value(np.array([-1] * 3000 + [1] * 2000)) < 1e-40  # large n is safe


def test_tarone_level():
    assert tarone_level([], 0.01) == (0.01, 0)
    assert tarone_level([2**-9], 0.01) == (0.01, 1)
    level, k = tarone_level([1e-9] * 50 + [0.5] * 50, 0.01)
    assert k == 50 and level == pytest.approx(0.01 / 50)


# ---- false alarms and power by simulation (numbers in docs/protocol.md 'Gate')


def latent_board(rng, models: int = 17, stochastic: int = 8, columns: int = 7):
    """Per model (k_eval, per-sample probability of a correct draw per column [columns, N]).

    A sample's margin z is shared by the columns (stronger attacks break a superset); samples
    within ~s of a column's accuracy re-draw differently under another seed: deterministic
    models flip 1-3% of samples (s = q / 2), stochastic ones draw 3 times with 9-18% of
    samples between 0 and 3 correct (s = 0.03-0.06), as on the digits leaderboard."""
    board = []
    for index in range(models):
        k = 3 if index < stochastic else 1
        scale = rng.uniform(0.03, 0.06) if k == 3 else rng.uniform(0.01, 0.03) / 2
        accuracy = np.clip(rng.uniform(0.35, 0.85) + rng.uniform(-0.15, 0.15, columns), 0.05, 0.95)
        margin = rng.uniform(0, 1, N)
        board.append((k, 1 / (1 + np.exp((margin[None, :] - accuracy[:, None]) / scale))))
    return board


def draw(rng, board) -> list[np.ndarray]:
    return [rng.binomial(k, p).astype(np.uint8) for k, p in board]


def board_pairs(board, before: list[np.ndarray], after: list[np.ndarray]) -> list[Pair]:
    """A pair per attack cell and per headline (the per-sample minimum over the columns)."""
    pairs = []
    for model, ((k, _), b, a) in enumerate(zip(board, before, after)):
        pairs += [Pair(f"m{model}", f"a{j}", b[j], a[j], k) for j in range(len(b))]
        pairs.append(Pair(f"m{model}", HEADLINE, b.min(axis=0), a.min(axis=0), k))
    return pairs


def false_alarm_rate(reruns: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    alarms = 0
    for _ in range(reruns):
        board = latent_board(rng)
        alarms += not judge(board_pairs(board, draw(rng, board), draw(rng, board))).ok
    return alarms / reruns


def power(trials: int, seed: int, broken: int = 10, reseeded: bool = False) -> float:
    """Share of trials in which ``broken`` robust samples of one cell turned broken fail."""
    rng = np.random.default_rng(seed)
    caught = done = 0
    while done < trials:
        board = latent_board(rng)
        before = draw(rng, board)
        after = draw(rng, board) if reseeded else [c.copy() for c in before]
        model, column = rng.integers(len(board)), rng.integers(len(before[0]))
        k = board[model][0]
        alive = np.flatnonzero((before[model][column] == k) & (after[model][column] == k))
        if len(alive) < broken:
            continue
        after[model][column][rng.choice(alive, broken, replace=False)] = 0
        result = judge(board_pairs(board, before, after))
        caught += any((c.model, c.column) == (f"m{model}", f"a{column}") for c in result.failed)
        done += 1
    return caught / trials


def test_simulated_reruns_rarely_alarm_and_ten_broken_samples_fail():
    rng = np.random.default_rng(0)
    board = latent_board(rng)
    assert len(board_pairs(board, draw(rng, board), draw(rng, board))) == 17 * 8
    assert false_alarm_rate(400, seed=1) <= 0.01  # measured 0.63% over 10,000 reruns
    assert power(100, seed=2) == 1.0  # same seeds: every one caught


# ---- the command


def test_gate_command(tmp_path):
    home = tmp_path / "home"
    with api.open_store(home) as store:
        for item in two_cells(pgd=flip(robust(180), 170, 10, 0)):
            store.put_card(item["model"]["sha256"], item["attack"]["key"], item)
    path = tmp_path / "digits.json"
    runner = CliRunner()

    def gate(base: dict, *options: str):
        path.write_text(json.dumps(base))
        return runner.invoke(app, ["gate", "--baseline", str(path), "--home", str(home), *options])

    failed = gate(baseline_json(two_cells()))
    assert failed.exit_code == 1, failed.output
    assert (
        "FAIL drop: m pgd10: 50.00 -> 47.22, paired -2.78 points (10 samples worse, 0 better), "
        "p = 0.002"
        in failed.stdout
        and "gate FAILED" in failed.stdout
    )
    rose = gate(baseline_json(two_cells(pgd=flip(robust(180), 160, 20, 0))))
    assert rose.exit_code == 1 and "FAIL rise: an attack got weaker" in rose.stdout
    allowed = gate(baseline_json(two_cells(pgd=flip(robust(180), 160, 20, 0))), "--allow-rise")
    assert allowed.exit_code == 0 and "rise (allowed): m pgd10" in allowed.stdout
    passed = gate(baseline_json(two_cells(pgd=flip(robust(180), 170, 10, 0))))
    assert passed.exit_code == 0 and "gate passed: 2 cells within tolerance" in passed.stdout
    refused = gate(baseline_json(two_cells(seed=3)))
    assert refused.exit_code == 2 and refused.stderr.count("\n") == 1
    assert refused.stderr.startswith("error: cannot gate m ")


def test_gate_bad_baseline(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    runner = CliRunner()
    for path, fragment in ((bad, "not valid JSON"), (tmp_path / "none.json", "not found")):
        result = runner.invoke(app, ["gate", "--baseline", str(path), "--home", str(tmp_path)])
        assert result.exit_code == 2 and fragment in result.stderr
