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
from snnbench.recipe import load_recipe, parse_recipe, parse_recipe_text
from snnbench.train import _optimizers, _train_epoch

ZOO = Path(__file__).resolve().parents[1] / "zoo"
RECIPES = sorted(p.stem for p in ZOO.glob("*.toml") if p.stem != "models")
CPU = ["digits", "cifar10-cpu"]  # reduced protocols sized for a 2-core CPU
PAPER = [r for r in RECIPES if r not in CPU]


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
    assert {
        "tgo+at",
        "tgo+rat",
        "randhet+at",
        "randhet+rat",
        "randhet+sr",
        "randhet*+rat",
        "het+rat",
    } <= defenses


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


@pytest.mark.parametrize("recipe_name", PAPER + ["cifar10-cpu"])
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
        frames = (info.frames,) if info.frames else ()  # event data: [N, T, C, H, W]
        x = torch.rand(2, *frames, info.channels, info.image_size, info.image_size)
        y = torch.randint(0, info.num_classes, (2,))
        stats = _train_epoch(
            model,
            defense,
            optimizer,
            own,
            x,
            y,
            TrainConfig(epochs=train.epochs, batch_size=2),
            not info.frames,
            0,
            torch.device("cpu"),
        )
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


def test_committed_cifar10_cpu_leaderboard_is_current():
    """leaderboards/cifar10-cpu.json comes from `snnbench run cifar10-cpu` (issue 22): a row per
    recipe model on the JPEG copy of CIFAR-10 at 8/255 on >= 1,000 test images, clean accuracy
    well above chance (10%), a converged headline with its interval, the checks' flags, and the
    recipe's layouts beside it."""
    import json

    recipe = load_recipe("cifar10-cpu")
    board = json.loads((ZOO.parent / "leaderboards" / "cifar10-cpu.json").read_text())
    rows = {row["model"]: row for row in board["rows"]}
    assert set(rows) == {f"{resolve(m).defense}-tiny-cifar10" for m, _ in recipe.models}
    for name, row in rows.items():
        setting = row["setting"]
        assert setting["dataset"] == "cifar10" and setting["n"] >= 1000, name
        assert setting["eps"] == pytest.approx(8 / 255) and setting["norm"] == "Linf", name
        assert "jpeg" in json.dumps(row["data_source"]).lower(), name
        assert row["clean"]["acc"] >= 0.3, name
        low, high = row["headline"]["ci95"]
        assert low - 1e-9 <= row["headline"]["acc"] <= high <= row["clean"]["ci95"][1], name
        assert row["cascade_complete"], name  # APGD-CE and APGD-T ran on every survivor
        assert {"apgd-ce", "apgd-t@targets=5"} <= {c["member"] for c in row["cascade"]}, name
        assert row["checks"] and "C01" in row["checks"], name
    for layout in recipe.layouts:
        if layout != "leaderboard":
            text = (ZOO.parent / "leaderboards" / f"cifar10-cpu-{layout}.md").read_text()
            assert "cifar10" in text and "REDUCED PROTOCOL" in text, layout


def test_unknown_layout_in_a_recipe_is_caught_before_training():
    from snnbench.errors import SnnbenchError
    from snnbench.recipe import parse_recipe_text

    text = 'dataset = "digits"\nlayouts = ["tgo-table9"]\n[[models]]\ndefense = "vanilla"\n'
    with pytest.raises(SnnbenchError, match="line 2: unknown layout 'tgo-table9'"):
        parse_recipe_text(text)


# --- a recipe travels with its models -------------------------------------------------------

MINE = """name = "mine"
dataset = "digits"
timesteps = 2
eps = "16/255"
attacks = ["fgsm", "rfgsm"]
n = 20
[train]
epochs = 1
[[models]]
defense = "vanilla"
"""


def _attacked(cards: list[dict]) -> set[tuple[str, str]]:
    from snnbench.config import format_eps

    return {(c["attack"]["id"], format_eps(c["attack"]["eps"])) for c in cards}


def test_a_recipe_outside_the_package_travels_in_the_model_card(tmp_path, monkeypatch):
    """`snnbench run my.toml`: the card keeps the recipe's text and path, and a later attack
    rebuilds the recipe from the card alone (the file gone, another directory): its attacks at
    its eps, never the `quick` suite at the digits default (32/255)."""
    from snnbench import api, load_card

    path = tmp_path / "recipes" / "mine.toml"
    path.parent.mkdir()
    path.write_text(MINE)
    home = tmp_path / "home"
    outcome = api.run(path, home=home, out=tmp_path / "boards", device="cpu")
    expected = {("fgsm", "16/255"), ("rfgsm", "16/255")}
    assert _attacked(outcome.cards) == expected
    card = load_card("vanilla-tiny-digits", home)
    assert card["recipe"] == "mine" and card["recipe_toml"] == MINE
    assert card["recipe_path"] == str(path.resolve())
    path.unlink()
    monkeypatch.chdir(tmp_path / "recipes")
    cards = api.attack(home=home, n=20, seed=1, device="cpu")  # a new seed: new runs
    assert _attacked(cards) == expected and {c["seed"] for c in cards} == {1}


def test_a_card_naming_a_recipe_that_is_nowhere_is_an_error(trained_home):
    """An older card keeps only the recipe's name: a packaged name is looked up, any other is
    one clear error (it used to fall back to the quick suite in silence)."""
    from snnbench import api, load_card

    card = load_card("vanilla-tiny-digits", trained_home)
    assert "recipe_toml" not in card and api.recipe_of(card) is None  # trained without one
    assert api.recipe_of({**card, "recipe": "digits"}).name == "digits"
    with pytest.raises(SnnbenchError, match="names recipe 'lost', which is not packaged"):
        api.recipe_of({**card, "recipe": "lost"})
    with pytest.raises(SnnbenchError, match="names recipe 'lost'"):
        api.attacks_for({**card, "recipe": "lost"}, ["fgsm"], None, None, None)
    given = parse_recipe_text(MINE)  # `attack --recipe FILE` needs no lookup
    plan = api.attacks_for({**card, "recipe": "lost"}, None, None, None, None, recipe=given)
    assert [a.id for a in plan.attacks] == ["fgsm", "rfgsm"]


@pytest.mark.parametrize("name", RECIPES)
def test_every_stochastic_model_of_a_packaged_recipe_is_attacked_with_eot(name):
    """Each model's plan as `snnbench run` builds it (api.attacks_for on a card holding the
    recipe): a stochastic model runs every attack with EoT K > 1, and the attacks named in
    `drop` once more without EoT (the papers' plain columns); a deterministic one runs K = 1."""
    from snnbench import api

    recipe = load_recipe(name)
    stochastic_models = 0
    for model, _ in recipe.models:
        spec = resolve(model)
        stochastic = create_defense(spec.defense, spec.settings, spec.track).stochastic()
        card = {
            "name": spec.defense,
            "spec": {"dataset": spec.dataset},
            "stochastic": stochastic,
            "recipe": recipe.name,
            "recipe_toml": recipe.text,
        }
        plan = api.attacks_for(card, None, None, None, None)
        assert [a.id for a in plan.attacks] == list(recipe.attacks)
        if stochastic:
            stochastic_models += 1
            assert all(a.eot > 1 for a in plan.attacks), (name, spec.defense)
            assert sorted(a.id for a in plan.paired if a.eot == 1) == sorted(recipe.drop)
        else:
            assert all(a.eot == 1 for a in plan.attacks) and not plan.paired, spec.defense
    assert stochastic_models, name
    if name in PAPER:  # every paper column exists without EoT beside its EoT run
        assert set(recipe.drop) == set(recipe.attacks)


def test_seeds_train_every_model_once_per_seed():
    from snnbench.recipe import parse_recipe_text

    recipe = parse_recipe_text(
        'dataset = "digits"\nseeds = [0, 1, 2]\n[[models]]\n'
        'defense = "rat+tgo"\n[[models]]\ndefense = "vanilla"\n'
        'name = "v"\n'
    )
    assert recipe.seeds == (0, 1, 2)
    assert [(m.name, t.seed) for m, t in recipe.models] == [
        (None, 0),
        ("tgo+rat-tiny-digits-seed1", 1),
        ("tgo+rat-tiny-digits-seed2", 2),
        ("v", 0),
        ("v-seed1", 1),
        ("v-seed2", 2),
    ]


@pytest.mark.parametrize("seeds", ["[]", "[0, 0]", "[-1]", '["a"]'])
def test_bad_seeds_are_refused_with_the_line(seeds):
    from snnbench.recipe import parse_recipe_text

    with pytest.raises(SnnbenchError, match="line 2.*seeds"):
        parse_recipe_text(f'dataset = "digits"\nseeds = {seeds}\n[[models]]\ndefense = "vanilla"\n')


@pytest.mark.parametrize("name", ["cifar10-tgo", "cifar100-tgo", "dvs-cifar10-tgo"])
def test_tgo_recipes_average_three_seeds(name):
    from snnbench.recipe import load_recipe

    recipe = load_recipe(name)
    assert recipe.seeds == (0, 1, 2)
    first = [m for m, train in recipe.models if train.seed == 0]
    assert len(recipe.models) == 3 * len(first)
    named = {m.name for m, _ in recipe.models}
    assert all(f"{m.name}-seed2" in named for m in first if m.name)
