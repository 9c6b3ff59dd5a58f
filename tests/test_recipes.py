"""Recipes: every zoo recipe parses and validates; the paper recipes' models build at real size
and take a first training step on CPU (random CIFAR-shaped batches: CIFAR is not needed)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from snnbench.config import TrainConfig
from snnbench.data import dataset_info
from snnbench.defenses import create_defense
from snnbench.errors import SnnbenchError
from snnbench.model import build, resolve
from snnbench.recipe import load_recipe, parse_recipe
from snnbench.train import _optimizers, _train_epoch

ZOO = Path(__file__).resolve().parents[1] / "zoo"
RECIPES = sorted(p.stem for p in ZOO.glob("*.toml") if p.stem != "models")
PAPER = [r for r in RECIPES if r != "digits"]


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_validates(name):
    recipe = load_recipe(name)
    assert recipe.models
    specs = [resolve(model) for model, _ in recipe.models]
    assert all(s.dataset == recipe.dataset for s in specs)


def test_digits_recipe_has_every_defence_and_the_paper_combinations():
    from snnbench.defenses import DEFENSES
    defenses = {resolve(m).defense for m, _ in load_recipe("digits").models}
    assert set(DEFENSES.names()) <= defenses
    assert {"tgo+at", "tgo+rat", "randhet+at", "randhet+rat", "randhet+sr", "randhet*+rat",
            "het+rat"} <= defenses


def first_steps(recipe_name: str) -> list:
    """One model per distinct (arch, defence) of the recipe."""
    recipe = load_recipe(recipe_name)
    seen, chosen = set(), []
    for model, train in recipe.models:
        spec = resolve(model)
        if (spec.arch, spec.defense) not in seen:
            seen.add((spec.arch, spec.defense))
            chosen.append((spec, train))
    return chosen


@pytest.mark.parametrize("recipe_name", PAPER)
def test_paper_recipe_models_take_a_first_training_step(recipe_name):
    chosen = first_steps(recipe_name)
    # the first two and the last; a recipe of two models (dvs: at, tgo+at; WRN-16 at T = 10,
    # 48 px, ~15 s a step on one CPU thread) only its last, whose defence includes the first's
    for spec, train in chosen[:2] + chosen[-1:] if len(chosen) > 2 else chosen[-1:]:
        info = dataset_info(spec.dataset)
        torch.manual_seed(0)
        model = build(spec)
        defense = create_defense(spec.defense, spec.settings, spec.track)
        defense.setup(model)
        optimizer, own = _optimizers(model, defense, train, 5e-4)
        frames = (info.frames,) if info.frames else ()     # event data: [N, T, C, H, W]
        x = torch.rand(2, *frames, info.channels, info.image_size, info.image_size)
        y = torch.randint(0, info.num_classes, (2,))
        stats = _train_epoch(model, defense, optimizer, own, x, y,
                             TrainConfig(epochs=train.epochs, batch_size=2), not info.frames, 0,
                             torch.device("cpu"))
        assert torch.isfinite(torch.tensor(stats["loss"])), (recipe_name, spec.defense)


def test_recipe_errors_point_at_the_key():
    with pytest.raises(SnnbenchError, match="unknown key 'epoch'"):
        parse_recipe({"dataset": "digits", "models": [{}], "train": {"epoch": 3}})
    with pytest.raises(SnnbenchError, match="unknown key 'defence'"):
        parse_recipe({"dataset": "digits", "models": [{"defence": "tgo"}]})
    with pytest.raises(SnnbenchError, match="lacks the key 'models'"):
        parse_recipe({"dataset": "digits"})


def test_committed_digits_leaderboard_is_current():
    """leaderboards/digits.json comes from `snnbench run`: one row per recipe model, and the
    vanilla model's clean accuracy is at least 95% (issue 3)."""
    import json
    board = json.loads((ZOO.parent / "leaderboards" / "digits.json").read_text())
    rows = {row["model"]: row for row in board["rows"]}
    expected = set()
    for model, _ in load_recipe("digits").models:
        spec = resolve(model)
        expected.add(f"{spec.defense.replace('*', '-star')}-{spec.arch}-{spec.dataset}")
    assert set(rows) == expected
    assert rows["vanilla-tiny-digits"]["clean"]["acc"] >= 0.95
    recipe = load_recipe("digits")
    for row in rows.values():
        paired = {f"{a}+eot" for a in recipe.drop} if row["stochastic"] else set()
        assert set(row["attacks"]) == set(recipe.attacks) | paired, row["model"]
        assert set(row["drop"]) == (set(recipe.drop) if row["stochastic"] else set())


def test_unknown_layout_in_a_recipe_is_caught_before_training():
    from snnbench.errors import SnnbenchError
    from snnbench.recipe import parse_recipe_text
    text = 'dataset = "digits"\nlayouts = ["tgo-table9"]\n[[models]]\ndefense = "vanilla"\n'
    with pytest.raises(SnnbenchError, match="line 2: unknown layout 'tgo-table9'"):
        parse_recipe_text(text)
