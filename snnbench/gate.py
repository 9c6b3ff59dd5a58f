"""The regression gate for research CI (docs/ci.md; the statistics: docs/protocol.md 'Gate').

Compares a baseline leaderboard json with the current results sample by sample. Each cell
(model x attack column, and the row's headline where both sides have one) pairs the baseline's
per-sample report counts with the current ones; an exact two-sided sign-flip test on the
samples that changed (McNemar's exact test for 0/1 outcomes) says whether it moved beyond noise.

A cell fails when it moved significantly *and* by more than the tolerance (points): a drop is a
regression; a rise is what a weakened attack looks like, so it fails too unless allowed. The
per-cell level is the family-wise rate ``alpha`` divided by the number of cells that could fail
at all (Tarone's correction for discrete tests: a cell with too few changed samples to reach
the level or the tolerance cannot fail, so it costs nothing), which keeps false alarms over a
whole leaderboard at ``alpha`` while a rerun with the same seeds, where only broken cells
move, is judged at the full ``alpha``. A baseline cell with no current result fails (missing);
cells measured on other samples or another threat model are refused, not compared.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from snnbench.config import format_eps
from snnbench.errors import SnnbenchError
from snnbench.metrics import decode_counts
from snnbench.report import LEADERBOARD_SCHEMA, Leaderboard

ALPHA = 0.01  # family-wise false-alarm rate of one gate run
HEADLINE = "headline"
REGENERATE = "regenerate it with `snnbench report --format json` from the baseline's results"


@dataclass(frozen=True)
class Pair:
    """One cell's per-sample correct-draw counts (out of ``k_eval``), baseline and now."""

    model: str
    column: str
    before: np.ndarray
    after: np.ndarray
    k_eval: int


@dataclass(frozen=True)
class Cell:
    model: str
    column: str
    before: float  # accuracy in [0, 1]
    now: float | None = None
    diff: float | None = None  # paired mean of now - before, per sample
    p_value: float | None = None  # two-sided exact sign-flip test
    worse: int = 0  # samples with fewer correct draws now
    better: int = 0


@dataclass
class GateResult:
    failed: list[Cell] = field(default_factory=list)  # significant drops beyond tolerance
    rises: list[Cell] = field(default_factory=list)  # significant rises beyond tolerance
    noise: list[Cell] = field(default_factory=list)  # beyond tolerance, not significant
    missing: list[Cell] = field(default_factory=list)
    passed: int = 0
    level: float = ALPHA  # per-cell significance level used
    could_fail: int = 0  # cells the level was divided among
    allow_rise: bool = False

    @property
    def ok(self) -> bool:
        return not self.failed and not self.missing and (self.allow_rise or not self.rises)


def paired_p_value(diff: np.ndarray) -> float:
    """Two-sided exact sign-flip test of the summed per-sample changes ``diff`` (counts).

    With no change each sample's difference is as likely positive as negative; the p-value is
    the exact share of the 2^m sign patterns of the m changed samples whose sum is at least as
    far from zero. For 0/1 outcomes this is McNemar's exact test (the sign test on the
    discordant samples); for counts out of k_eval a sample that lost every draw weighs more
    than one that lost one, which the plain sign test would ignore."""
    diff = np.asarray(diff, dtype=np.int64)
    sizes = np.abs(diff[diff != 0])
    if len(sizes) == 0:
        return 1.0
    # T = the summed sizes of the positive changes; sum(diff) = 2 T - sum(sizes)
    pmf = np.ones(1)
    for size, count in zip(*np.unique(sizes, return_counts=True)):
        spread = np.zeros(size * count + 1)
        spread[::size] = _fair_binomial(int(count))
        pmf = np.convolve(pmf, spread)
    total = int(sizes.sum())
    up = (int(diff.sum()) + total) // 2
    return float(min(1.0, 2 * pmf[: min(up, total - up) + 1].sum()))


def _fair_binomial(m: int) -> np.ndarray:
    """Probabilities of 0..m heads in m fair coin flips (in logs: safe for any m)."""
    i = np.arange(1, m + 1)
    log_comb = np.concatenate([[0.0], np.cumsum(np.log((m - i + 1) / i))])
    return np.exp(log_comb - m * np.log(2))


def tarone_level(min_p: Iterable[float], alpha: float = ALPHA) -> tuple[float, int]:
    """(per-cell level, K): the smallest K with at most K cells able to reach alpha / K.

    ``min_p``: each cell's smallest attainable p-value given its changed samples. Cells that
    cannot reach the level can never fail, so Bonferroni over the other K keeps the family-wise
    false-alarm rate at alpha (Tarone 1990)."""
    reachable = np.sort(np.fromiter(min_p, dtype=np.float64))
    if len(reachable) == 0:
        return alpha, 0
    ks = np.arange(1, len(reachable) + 1)
    counts = np.searchsorted(reachable, alpha / ks, side="right")
    k = int(ks[np.argmax(counts <= ks)])
    return alpha / k, k


def judge(
    pairs: list[Pair], tolerance: float = 2.0, alpha: float = ALPHA, allow_rise: bool = False
) -> GateResult:
    """Each pair's paired change against the tolerance (points) and the corrected level."""
    if tolerance < 0:
        raise SnnbenchError(f"--tolerance must be >= 0 points, got {tolerance}")
    if not 0 < alpha < 1:
        raise SnnbenchError(f"--alpha must lie in (0, 1), got {alpha}")
    diffs = [pair.after.astype(np.int64) - pair.before.astype(np.int64) for pair in pairs]
    # A cell could fail only if all its changed samples going one way both beat the tolerance
    # and reach the level: that extreme has the largest effect and the smallest p-value.
    min_p = [
        2.0 ** (1 - int((d != 0).sum()))
        for pair, d in zip(pairs, diffs)
        if 100 * int(np.abs(d).sum()) > tolerance * pair.k_eval * len(d)
    ]
    level, could_fail = tarone_level(min_p, alpha)
    result = GateResult(level=level, could_fail=could_fail, allow_rise=allow_rise)
    for pair, diff in zip(pairs, diffs):
        size = pair.k_eval * len(diff)
        if 100 * abs(int(diff.sum())) <= tolerance * size:
            result.passed += 1
            continue
        cell = Cell(
            pair.model,
            pair.column,
            pair.before.sum() / size,
            pair.after.sum() / size,
            int(diff.sum()) / size,
            paired_p_value(diff),
            int((diff < 0).sum()),
            int((diff > 0).sum()),
        )
        kind = (
            result.noise
            if cell.p_value > level
            else result.failed
            if cell.diff < 0
            else result.rises
        )
        kind.append(cell)
    return result


def read_baseline(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise SnnbenchError(
            f"baseline {path} not found; pass the leaderboard json written by "
            "`snnbench report --format json`"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise SnnbenchError(f"baseline {path} is not valid JSON; pass a leaderboard json") from None
    schema = data.get("schema") if isinstance(data, dict) else None
    if (
        isinstance(schema, str)
        and schema.startswith("snnbench.leaderboard/")
        and schema != LEADERBOARD_SCHEMA
    ):
        raise SnnbenchError(
            f"baseline {path} was written by another snnbench ({schema}, this "
            f"one reads {LEADERBOARD_SCHEMA}); {REGENERATE}"
        )
    if not isinstance(data, dict) or data.get("schema") != LEADERBOARD_SCHEMA:
        raise SnnbenchError(
            f"baseline {path} is not an snnbench leaderboard json (schema {LEADERBOARD_SCHEMA})"
        )
    return data


def compare(
    baseline: dict[str, Any],
    current: Leaderboard,
    tolerance: float = 2.0,
    alpha: float = ALPHA,
    allow_rise: bool = False,
) -> GateResult:
    """Each baseline cell against the current leaderboard, paired per sample."""
    pairs, missing = cell_pairs(baseline, current)
    result = judge(pairs, tolerance, alpha, allow_rise)
    result.missing = missing
    return result


def _setting(row: dict[str, Any]) -> str:
    return json.dumps(row.get("setting"), sort_keys=True)


def cell_pairs(baseline: dict[str, Any], current: Leaderboard) -> tuple[list[Pair], list[Cell]]:
    """The paired counts of every baseline cell that has a current result, and the missing ones.

    Raises when a cell was measured on other samples or another threat model now (refused, not
    compared), or when the baseline predates per-sample results."""
    base_cards, now_cards = _cards_by_key(baseline.get("cards")), _cards_by_key(current.cards)
    # a baseline row meets the current row of the same model and setting, else the model's
    # row in the main table (whose other samples or budget are then refused, not compared)
    same = {(row["model"], _setting(row)): row for row in current.rows}
    main = {row["model"]: row for row in reversed(current.main_rows())}
    pairs, missing = [], []
    for base_row in baseline.get("rows", []):
        model = base_row["model"]
        now_row = same.get((model, _setting(base_row))) or main.get(model, {})
        for column, base_cell in base_row.get("attacks", {}).items():
            base_card = base_cards.get((model, base_cell.get("key")))
            if base_card is None or "adv" not in base_card.get("per_sample", {}):
                raise SnnbenchError(
                    f"the baseline has no per-sample results for {model} "
                    f"{column} (written before the paired gate); {REGENERATE}"
                )
            now_cell = now_row.get("attacks", {}).get(column)
            if now_cell is None:
                missing.append(Cell(model, column, float(base_cell["robust_acc"])))
                continue
            now_card = now_cards[(model, now_cell["key"])]
            digest = bool(base_card["eval"].get("samples") and now_card["eval"].get("samples"))
            _refuse_if_different(
                model, column, _card_identity(base_card, digest), _card_identity(now_card, digest)
            )
            pairs.append(
                Pair(
                    model,
                    column,
                    decode_counts(base_card["per_sample"]["adv"]),
                    decode_counts(now_card["per_sample"]["adv"]),
                    int(base_card["eval"]["k_eval"]),
                )
            )
        pair = _headline_pair(model, base_row.get(HEADLINE), now_row.get(HEADLINE))
        if pair is not None:
            pairs.append(pair)
    return pairs, missing


def _cards_by_key(cards: list[dict] | None) -> dict[tuple[str, str], dict]:
    return {(c["model"]["name"], c["attack"]["key"]): c for c in cards or []}


def _headline_pair(model: str, before: dict | None, now: dict | None) -> Pair | None:
    """The row's per-sample worst case, compared when both sides have one."""
    if not before or not now:
        return None
    if "per_sample" not in before:
        raise SnnbenchError(
            f"the baseline has no per-sample results for {model} {HEADLINE}; {REGENERATE}"
        )
    digest = bool(before.get("samples") and now.get("samples"))
    _refuse_if_different(
        model, HEADLINE, _headline_identity(before, digest), _headline_identity(now, digest)
    )
    return Pair(
        model,
        HEADLINE,
        decode_counts(before["per_sample"]),
        decode_counts(now["per_sample"]),
        int(before["k_eval"]),
    )


def _card_identity(card: dict, digest: bool) -> dict[str, Any]:
    """What must agree for two cards to be paired: threat model, draws and the samples (their
    digest when both cards have one, else the fields that choose them)."""
    attack, evaluation = card["attack"], card["eval"]
    identity = {
        "n": evaluation["n"],
        "eps": format_eps(attack["eps"]),
        "norm": attack["norm"],
        "k_eval": evaluation["k_eval"],
    }
    if digest:
        identity["samples"] = evaluation["samples"]
    else:
        identity.update(
            dataset=card["model"].get("dataset"),
            split=evaluation.get("split"),
            subset=evaluation.get("subset"),
            seed=card.get("seed"),
        )
    return identity


def _headline_identity(headline: dict, digest: bool) -> dict[str, Any]:
    identity = {
        "n": headline.get("n"),
        "k_eval": headline.get("k_eval"),
        "attacks": "+".join(sorted(headline.get("members") or [])),
    }
    if digest:
        identity["samples"] = headline["samples"]
    return identity


def _refuse_if_different(
    model: str, column: str, before: dict[str, Any], now: dict[str, Any]
) -> None:
    for name in before:
        if before[name] != now.get(name):
            raise SnnbenchError(
                f"cannot gate {model} {column}: the baseline was measured with "
                f"{name}={before[name]} but the current result with "
                f"{name}={now.get(name)}; rerun with the baseline's settings "
                "or regenerate the baseline"
            )
