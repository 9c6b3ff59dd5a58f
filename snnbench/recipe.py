"""Recipes (``zoo/*.toml``): a data set, the models to train, the attacks, and the outputs.

``snnbench.api.run`` trains every model of a recipe (resuming or skipping finished ones),
attacks them all and writes the leaderboard. ``zoo/digits.toml`` is the embedded default and ships
inside the package, so ``snnbench run`` works from any directory.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from snnbench.attacks import Attack, create_attack
from snnbench.config import ModelConfig, TrainConfig, dataclass_from, parse_eps
from snnbench.errors import SnnbenchError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_RECIPE = "digits"
TOP_KEYS = {"name", "description", "dataset", "eps", "norm", "attacks", "n", "k_eval", "seed",
            "train", "models", "layouts", "arch", "timesteps", "track", "gpu_hours", "eot",
            "drop"}
MODEL_KEYS = {"defense", "arch", "timesteps", "track", "settings", "name", "train"}


@dataclass(frozen=True)
class Recipe:
    name: str
    dataset: str
    eps: float
    norm: str = "Linf"
    attacks: tuple[str, ...] = ("fgsm", "pgd10")
    n: int | None = None
    k_eval: int = 3                # evaluation draws per sample for stochastic models
    eot: int = 1                   # gradient draws per attack step for stochastic models
    drop: tuple[str, ...] = ()     # stochastic models also run these without EoT: EoT Drop
    seed: int = 0
    train: TrainConfig = TrainConfig()
    models: tuple[tuple[ModelConfig, TrainConfig], ...] = ()
    layouts: tuple[str, ...] = ("leaderboard",)
    description: str = ""
    source: str = ""

    def make_attacks(self, eps: float | None = None, norm: str | None = None,
                     steps: int | None = None) -> list[Attack]:
        return [create_attack(a, eps if eps is not None else self.eps, norm or self.norm, steps)
                for a in self.attacks]


def recipe_path(ref: str | Path | None) -> Path:
    """A recipe file: a path, or the name of a recipe shipped in the package's zoo."""
    ref = ref or DEFAULT_RECIPE
    path = Path(ref)
    if path.is_file():
        return path
    name = path.name if path.suffix == ".toml" else f"{path.name}.toml"
    for folder in _zoo_folders():
        if (folder / name).is_file():
            return folder / name
    raise SnnbenchError(f"recipe {str(ref)!r} not found: no such file, and no {name} in the "
                        "packaged zoo; pass a path to a .toml recipe")


def _zoo_folders() -> list[Path]:
    """The installed package's ``snnbench/zoo`` (pyproject maps the top-level ``zoo/`` there),
    then the top-level ``zoo/`` of a source checkout."""
    here = Path(__file__).resolve().parent
    return [here / "zoo", here.parent / "zoo"]


def load_recipe(ref: str | Path | None = None) -> Recipe:
    path = recipe_path(ref)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise SnnbenchError(f"recipe {path} is not valid TOML: {exc}") from None
    return parse_recipe(data, path)


def _check_keys(table: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise SnnbenchError(f"unknown key {unknown[0]!r} in {where}; valid keys: {', '.join(sorted(allowed))}")


def parse_recipe(data: dict[str, Any], path: Path | str = "<recipe>") -> Recipe:
    _check_keys(data, TOP_KEYS, f"recipe {path}")
    for key in ("dataset", "models"):
        if key not in data:
            raise SnnbenchError(f"recipe {path} lacks the key {key!r}")
    dataset = str(data["dataset"])
    base_train = dataclass_from(TrainConfig, data.get("train", {}), f"[train] of {path}")
    models = []
    for i, entry in enumerate(data["models"]):
        where = f"[[models]] #{i + 1} of {path}"
        if not isinstance(entry, dict):
            raise SnnbenchError(f"{where} must be a table")
        _check_keys(entry, MODEL_KEYS, where)
        train = base_train.replace(**entry.get("train", {})) if entry.get("train") else base_train
        dataclass_from(TrainConfig, entry.get("train", {}), f"[models.train] {where}")
        models.append((ModelConfig(defense=str(entry.get("defense", "vanilla")),
                                   arch=str(entry.get("arch", data.get("arch", "tiny"))),
                                   dataset=dataset,
                                   timesteps=entry.get("timesteps", data.get("timesteps")),
                                   track=str(entry.get("track", data.get("track", "tgo"))),
                                   settings=dict(entry.get("settings", {})), name=entry.get("name")),
                       train))
    attacks = data.get("attacks", ["fgsm", "pgd10"])
    if not isinstance(attacks, list) or not all(isinstance(a, str) for a in attacks):
        raise SnnbenchError(f"'attacks' in {path} must be a list of attack ids")
    drop = data.get("drop", [])
    if not isinstance(drop, list) or not all(isinstance(a, str) for a in drop):
        raise SnnbenchError(f"'drop' in {path} must be a list of attack ids")
    return Recipe(name=str(data.get("name", Path(str(path)).stem)), dataset=dataset,
                  eps=parse_eps(data.get("eps", "8/255")), norm=str(data.get("norm", "Linf")),
                  attacks=tuple(attacks), n=data.get("n"), k_eval=int(data.get("k_eval", 3)),
                  eot=int(data.get("eot", 1)), drop=tuple(drop),
                  seed=int(data.get("seed", 0)), train=base_train, models=tuple(models),
                  layouts=tuple(data.get("layouts", ["leaderboard"])),
                  description=str(data.get("description", "")), source=str(path))
