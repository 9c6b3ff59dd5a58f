"""Robustness curves for ``report --plots`` (PNG and SVG beside the tables).

Accuracy against eps, against attack steps and against EoT samples: one line per model with its
95% interval as a band. The points are the recipe's sweep runs (``[sweep]`` in a recipe), stored
as ordinary result cards whose attack carries ``params.sweep``; sweep runs stay out of the
leaderboard's columns, MRA and worst case. Each line's SVG element has the id ``line:<model>``,
so a test (or a script) can count the lines in the file.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from snnbench.files import atomic_write

SWEEP = "sweep"
KINDS = {"eps": "eps (x/255)", "steps": "attack steps", "eot": "EoT samples per step"}


def is_sweep(card: dict[str, Any]) -> bool:
    return SWEEP in card["attack"].get("params", {})


def _x(card: dict[str, Any], kind: str) -> float:
    attack = card["attack"]
    if kind == "eps":
        return attack["eps"] * 255 if attack["norm"] == "Linf" else attack["eps"]
    if kind == "steps":
        return float(attack["params"].get("steps", 1))
    return float(attack.get("eot", 1))


def sweep_series(
    cards: list[dict[str, Any]],
) -> dict[str, dict[str, list[tuple[float, float, float, float]]]]:
    """``{kind: {model: [(x, acc, low, high), ...]}}`` of the newest weights' sweep cards."""
    newest: dict[str, str] = {}
    for card in sorted(cards, key=lambda c: c["created"]):
        newest[card["model"]["name"]] = card["model"]["sha256"]
    series: dict[str, dict[str, dict[float, tuple]]] = defaultdict(lambda: defaultdict(dict))
    for card in cards:
        if not is_sweep(card) or card["model"]["sha256"] != newest[card["model"]["name"]]:
            continue
        kind = card["attack"]["params"][SWEEP]
        result = card["result"]
        x = _x(card, kind)
        series[kind][card["model"]["name"]][x] = (x, result["robust_acc"], *result["ci95"])
    return {
        kind: {model: [points[x] for x in sorted(points)] for model, points in models.items()}
        for kind, models in series.items()
    }


def plot_sweeps(cards: list[dict[str, Any]], out: Path, name: str) -> list[Path]:
    """Write ``out/<name>-<kind>.png|svg`` for each kind of sweep the cards hold."""
    import io

    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    attacks = sorted({c["attack"]["id"] for c in cards if is_sweep(c)})
    for kind, series in sorted(sweep_series(cards).items()):
        fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
        for model, points in sorted(series.items()):
            xs = [p[0] for p in points]
            (line,) = ax.plot(
                xs, [100 * p[1] for p in points], marker="o", ms=3, lw=1.4, label=model
            )
            line.set_gid(f"line:{model}")
            ax.fill_between(
                xs,
                [100 * p[2] for p in points],
                [100 * p[3] for p in points],
                color=line.get_color(),
                alpha=0.12,
                lw=0,
            )
        if kind in ("steps", "eot"):
            ax.set_xscale("log", base=2)
            ax.set_xticks(sorted({x for points in series.values() for x, *_ in points}))
            ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.set_xlabel(KINDS.get(kind, kind))
        ax.set_ylabel("robust accuracy (%)")
        ax.set_ylim(0, 100)
        ax.set_title(
            f"{name}: {', '.join(attacks)} accuracy vs {KINDS.get(kind, kind)}", fontsize=10
        )
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
        fig.tight_layout()
        for fmt in ("png", "svg"):
            buffer = io.BytesIO()
            fig.savefig(buffer, format=fmt, bbox_inches="tight")
            path = Path(out) / f"{name}-{kind}.{fmt}"
            data = buffer.getvalue()
            atomic_write(path, lambda tmp, data=data: tmp.write_bytes(data))
            written.append(path)
        plt.close(fig)
    return written


def plots_section(paths: list[Path]) -> str:
    """Markdown linking each PNG (its SVG beside it)."""
    pngs = [p for p in paths if p.suffix == ".png"]
    if not pngs:
        return ""
    lines = [f"![{p.stem}]({p.name}) ([svg]({p.with_suffix('.svg').name}))" for p in pngs]
    return (
        "\n## Plots\n\nEach line a model, its band the 95% interval; points are the recipe's "
        "sweep runs (`[sweep]`).\n\n" + "\n\n".join(lines) + "\n"
    )
