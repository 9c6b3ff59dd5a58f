"""Plots of the sweep runs: valid PNG/SVG files with one line per model, linked from the
Markdown; sweep runs stay out of the leaderboard's columns."""

from __future__ import annotations

import re

import pytest

from snnbench import api
from snnbench.errors import SnnbenchError
from snnbench.plots import plot_sweeps
from snnbench.recipe import parse_recipe_text
from snnbench.report import build_leaderboard

PNG = b"\x89PNG\r\n\x1a\n"


def sweep_card(model, kind, x, acc, created="2026-11-23T00:00:00"):
    eps = x / 255 if kind == "eps" else 32 / 255
    return {
        "model": {
            "name": model,
            "sha256": f"sha-{model}",
            "defense": "vanilla",
            "arch": "tiny",
            "dataset": "digits",
            "timesteps": 4,
            "stochastic": False,
        },
        "attack": {
            "id": "pgd10",
            "eps": eps,
            "norm": "Linf",
            "grad": "bptt",
            "eot": x if kind == "eot" else 1,
            "key": f"{model}{kind}{x}",
            "params": {"steps": x if kind == "steps" else 10, "sweep": kind},
        },
        "eval": {"n": 100, "split": "test", "k_eval": 1},
        "result": {
            "robust_acc": acc,
            "ci95": [acc - 0.05, acc + 0.05],
            "clean_acc": 0.9,
            "clean_ci95": [0.85, 0.95],
        },
        "env": {"device": "cpu"},
        "created": created,
    }


def test_plots_are_valid_png_and_svg_with_one_line_per_model(tmp_path):
    cards = [sweep_card(m, "eps", e, 0.9 - e / 100) for m in ("a", "b", "c") for e in (8, 16, 32)]
    cards += [sweep_card(m, "steps", s, 0.5) for m in ("a", "b") for s in (1, 10)]
    written = plot_sweeps(cards, tmp_path, "digits")
    names = sorted(p.name for p in written)
    assert names == ["digits-eps.png", "digits-eps.svg", "digits-steps.png", "digits-steps.svg"]
    for png in tmp_path.glob("*.png"):
        assert png.read_bytes()[:8] == PNG and png.stat().st_size > 5000
    lines = lambda name: set(re.findall(r'id="line:([^"]+)"', (tmp_path / name).read_text()))  # noqa: E731
    assert lines("digits-eps.svg") == {"a", "b", "c"}
    assert lines("digits-steps.svg") == {"a", "b"}


def test_sweep_cards_stay_out_of_the_leaderboard():
    board = build_leaderboard([sweep_card("a", "eps", 8, 0.9)])
    assert board.rows == [] and board.columns == []


def test_recipe_sweep_is_read_and_bad_values_are_one_line():
    base = 'dataset = "digits"\n[[models]]\ndefense = "vanilla"\n'
    recipe = parse_recipe_text(
        base + '[sweep]\neps = ["8/255", "16/255"]\nsteps = [1, 5]\nn = 50\n'
    )
    assert recipe.sweep.eps == (8 / 255, 16 / 255) and recipe.sweep.steps == (1, 5)
    with pytest.raises(SnnbenchError, match="line 5.*cannot read \\[sweep\\]"):
        parse_recipe_text(base + '[sweep]\neps = ["eight"]\n')
    with pytest.raises(SnnbenchError, match="unknown key 'epsilon' in \\[sweep\\]"):
        parse_recipe_text(base + '[sweep]\nepsilon = ["8/255"]\n')


def test_report_plots_from_a_real_sweep_links_them_in_markdown(home):
    recipe = parse_recipe_text(
        'dataset = "digits"\neps = "32/255"\n[[models]]\ndefense = "vanilla"\n'
        '[sweep]\neps = ["16/255", "48/255"]\nsteps = [1, 5]\nn = 40\n'
    )
    cards = api.sweep(["vanilla-tiny-digits"], recipe, home=home, device="cpu")
    assert len(cards) == 4
    by_eps = {
        c["attack"]["eps"]: c["result"]["robust_acc"]
        for c in cards
        if c["attack"]["params"]["sweep"] == "eps"
    }
    assert by_eps[48 / 255] <= by_eps[16 / 255]  # a real attack: larger eps, lower accuracy
    api.attack(home=home, attacks=["fgsm"], n=40, device="cpu")
    board, written = api.report(home, home / "out", formats=("md",), plots=True)
    assert board.columns == ["fgsm"]
    text = (home / "out" / f"{board.name}.md").read_text()
    assert f"![{board.name}-eps]({board.name}-eps.png)" in text
    assert (home / "out" / f"{board.name}-steps.svg").is_file()
