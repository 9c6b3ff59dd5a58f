"""The regression gate for research CI (design.md 'Command line').

Compares a baseline leaderboard json with the current results cell by cell (model, attack).
A cell fails when robust accuracy fell by more than the tolerance (in points) *and* the
baseline value lies outside the current 95% interval; a larger drop inside the interval is
noise, reported but not failed. A baseline cell with no current result fails too: the run
that should have measured it is missing.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from snnbench.errors import SnnbenchError
from snnbench.report import LEADERBOARD_SCHEMA, Leaderboard


@dataclass(frozen=True)
class Cell:
    model: str
    attack: str
    baseline: float
    now: float | None
    ci95: tuple[float, float] | None = None


@dataclass
class GateResult:
    failed: list[Cell] = field(default_factory=list)
    noise: list[Cell] = field(default_factory=list)
    missing: list[Cell] = field(default_factory=list)
    passed: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed and not self.missing


def read_baseline(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise SnnbenchError(f"baseline {path} not found; pass the leaderboard json written by "
                            "`snnbench report --format json`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise SnnbenchError(f"baseline {path} is not valid JSON; pass a leaderboard json") from None
    if not isinstance(data, dict) or data.get("schema") != LEADERBOARD_SCHEMA:
        raise SnnbenchError(f"baseline {path} is not an snnbench leaderboard json "
                            f"(schema {LEADERBOARD_SCHEMA})")
    return data


def compare(baseline: dict[str, Any], current: Leaderboard, tolerance: float = 2.0) -> GateResult:
    """Each baseline cell against the current leaderboard; ``tolerance`` in percentage points."""
    if tolerance < 0:
        raise SnnbenchError(f"--tolerance must be >= 0 points, got {tolerance}")
    rows = {row["model"]: row for row in current.rows}
    result = GateResult()
    for base_row in baseline.get("rows", []):
        for attack, base_cell in base_row.get("attacks", {}).items():
            before = float(base_cell["robust_acc"])
            now_cell = rows.get(base_row["model"], {}).get("attacks", {}).get(attack)
            if now_cell is None:
                result.missing.append(Cell(base_row["model"], attack, before, None))
                continue
            now, ci = float(now_cell["robust_acc"]), tuple(now_cell["ci95"])
            cell = Cell(base_row["model"], attack, before, now, ci)
            if 100 * (before - now) <= tolerance:
                result.passed += 1
            elif ci[0] <= before <= ci[1]:
                result.noise.append(cell)
            else:
                result.failed.append(cell)
    return result
