"""Recipes (``zoo/*.toml``): a data set, the models to train, the attacks, and the outputs.

``snnbench.api.run`` trains every model of a recipe (resuming or skipping finished ones),
attacks them all and writes the leaderboard. ``zoo/digits.toml`` is the embedded default and ships
inside the package, so ``snnbench run`` works from any directory.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from snnbench.attacks import Attack, create_attack
from snnbench.config import (
    ModelConfig,
    TrainConfig,
    check_count,
    dataclass_from,
    model_name,
    parse_eps,
)
from snnbench.errors import SnnbenchError
from snnbench.files import check_name

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_RECIPE = "digits"
Number = (int, float)
TOP_KEYS: dict[str, type | tuple[type, ...]] = {
    "name": str,
    "description": str,
    "dataset": str,
    "eps": (str, int, float),
    "norm": str,
    "attacks": list,
    "n": int,
    "k_eval": int,
    "seed": int,
    "train": dict,
    "models": list,
    "layouts": list,
    "arch": str,
    "timesteps": int,
    "track": str,
    "gpu_hours": Number,
    "eot": int,
    "drop": list,
    "sweep": dict,
    "headline": list,
    "seeds": list,
}
SWEEP_KEYS: dict[str, type | tuple[type, ...]] = {
    "attack": str,
    "eps": list,
    "steps": list,
    "eot": list,
    "n": int,
}
MODEL_KEYS: dict[str, type | tuple[type, ...]] = {
    "defense": str,
    "arch": str,
    "timesteps": int,
    "track": str,
    "settings": dict,
    "name": str,
    "train": dict,
}


@dataclass(frozen=True)
class Sweep:
    """The curves of ``report --plots``: one attack at several eps, step counts and EoT K."""

    attack: str = "pgd10"
    eps: tuple[float, ...] = ()
    steps: tuple[int, ...] = ()
    eot: tuple[int, ...] = ()  # stochastic models only
    n: int | None = None


@dataclass(frozen=True)
class Recipe:
    name: str
    dataset: str
    eps: float
    norm: str = "Linf"
    attacks: tuple[str, ...] = ("fgsm", "pgd10")
    n: int | None = None
    k_eval: int = 3  # evaluation draws per sample for stochastic models
    eot: int = 1  # gradient draws per attack step for stochastic models
    drop: tuple[str, ...] = ()  # stochastic models also run these without EoT: EoT Drop
    # The converging attacks behind each row's headline: a cascade after the attack columns,
    # run only on the samples that every column's attack left robust.
    headline: tuple[str, ...] = ()
    seed: int = 0
    # Training seeds: every model is trained once per seed (TGO averages three); layouts show
    # the mean ± std over them. The first keeps the model's name, the others add -seedN.
    seeds: tuple[int, ...] = (0,)
    train: TrainConfig = TrainConfig()
    models: tuple[tuple[ModelConfig, TrainConfig], ...] = ()
    layouts: tuple[str, ...] = ("leaderboard",)
    sweep: Sweep | None = None
    description: str = ""
    source: str = ""  # the file it was read from (resolved), or "<recipe>"
    text: str = ""  # its TOML text: model cards keep it (api.recipe_of)

    def make_attacks(
        self, eps: float | None = None, norm: str | None = None, steps: int | None = None
    ) -> list[Attack]:
        return [
            create_attack(a, eps if eps is not None else self.eps, norm or self.norm, steps)
            for a in self.attacks
        ]


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
    raise SnnbenchError(
        f"recipe {str(ref)!r} not found: no such file, and no {name} in the "
        f"packaged zoo; {_recipe_hint(path.stem)}or pass a path to a .toml recipe"
    )


def packaged_recipes() -> list[str]:
    """The names of the recipes shipped in the zoo (``zoo/*.toml`` but the model manifest)."""
    return sorted(
        {
            p.stem
            for folder in _zoo_folders()
            if folder.is_dir()
            for p in folder.glob("*.toml")
            if p.stem != "models"
        }
    )


def _recipe_hint(name: str) -> str:
    import difflib

    names = packaged_recipes()
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    return f"{hint}packaged recipes: {', '.join(names)}; " if names else hint


def _zoo_folders() -> list[Path]:
    """The installed package's ``snnbench/zoo`` (pyproject maps the top-level ``zoo/`` there),
    then the top-level ``zoo/`` of a source checkout."""
    here = Path(__file__).resolve().parent
    return [here / "zoo", here.parent / "zoo"]


def load_recipe(ref: str | Path | None = None) -> Recipe:
    path = recipe_path(ref)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SnnbenchError(
            f"cannot read recipe {path} ({type(exc).__name__}); pass a UTF-8 .toml file"
        ) from None
    return dataclasses.replace(parse_recipe_text(text, path), source=str(path.resolve()))


def parse_recipe_text(text: str, path: Path | str = "<recipe>") -> Recipe:
    """A recipe from TOML text; errors name the file and the line of the offending key."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SnnbenchError(f"recipe {path} is not valid TOML: {exc}; fix the file") from None
    return parse_recipe(data, path, text)


class _Lines:
    """Where a key sits in the recipe's text, so an error can name its line."""

    def __init__(self, path: Path | str, text: str | None) -> None:
        self.path, self.lines = path, (text or "").splitlines()

    def at(self, key: str, table: str | None = None, index: int = 0) -> str:
        """``"recipe PATH line N"`` for ``key`` (searched after the index-th ``[table]``)."""
        start, seen = 0, -1
        if table:
            header = re.compile(rf"^\s*\[\[?\s*{re.escape(table)}\s*\]\]?\s*(#.*)?$")
            for number, line in enumerate(self.lines):
                if header.match(line):
                    seen += 1
                    if seen == index:
                        start = number
                        break
        pattern = re.compile(rf"^\s*[\"']?{re.escape(key)}[\"']?\s*=")
        for number in range(start, len(self.lines)):
            if pattern.match(self.lines[number]):
                return f"recipe {self.path} line {number + 1}"
        return f"recipe {self.path}"


def _check_table(
    table: Any,
    types: dict[str, Any | None],
    where: str,
    lines: _Lines,
    section: str | None = None,
    index: int = 0,
) -> dict[str, Any]:
    """``table`` as a dict whose keys are known and whose values have the expected types."""
    if not isinstance(table, dict):
        raise SnnbenchError(
            f"recipe {lines.path}: {where} must be a table, got "
            f"{type(table).__name__}; see zoo/digits.toml for the layout"
        )
    for key, value in table.items():
        if key not in types:
            raise SnnbenchError(
                f"{lines.at(str(key), section, index)}: unknown key {key!r} in "
                f"{where}; valid keys: {', '.join(sorted(types))}"
            )
        expected = types[key]
        if expected is None:  # checked by the caller
            continue
        kinds = expected if isinstance(expected, tuple) else (expected,)
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            names = " or ".join(k.__name__ for k in kinds)
            raise SnnbenchError(
                f"{lines.at(key, section, index)}: {key!r} in {where} must be of "
                f"type {names}, got {value!r}; fix its value"
            )
    return table


def _train_config(
    values: Any, base: TrainConfig, where: str, lines: _Lines, section: str, index: int = 0
) -> TrainConfig:
    """``base`` with the ``[train]`` overrides, each key checked where it is written."""
    _check_table(
        values,
        {f.name: None for f in dataclasses.fields(TrainConfig)},
        where,
        lines,
        section,
        index,
    )
    for key, value in values.items():
        try:
            dataclass_from(TrainConfig, {key: value}, where)
        except SnnbenchError as exc:
            raise SnnbenchError(f"{lines.at(key, section, index)}: {exc}") from None
    typed = dataclass_from(TrainConfig, values, where)
    return dataclasses.replace(base, **{key: getattr(typed, key) for key in values})


def parse_recipe(data: Any, path: Path | str = "<recipe>", text: str | None = None) -> Recipe:
    """A ``Recipe`` from parsed TOML; ``text``, when given, lets errors name the line."""
    lines = _Lines(path, text)
    _check_table(data, TOP_KEYS, "the top table", lines)
    for key in ("dataset", "models"):
        if key not in data:
            raise SnnbenchError(
                f"recipe {path} lacks the key {key!r}; add it (see zoo/digits.toml)"
            )
    dataset = data["dataset"]
    _check_counts([(key, data.get(key), minimum) for key, minimum in COUNTS.items()], lines)
    base_train = _train_config(data.get("train", {}), TrainConfig(), "[train]", lines, "train")
    models = []
    for i, entry in enumerate(data["models"]):
        where = f"[[models]] #{i + 1}"
        _check_table(entry, MODEL_KEYS, where, lines, "models", i)
        train = _train_config(
            entry.get("train", {}), base_train, f"{where} train", lines, "models", i
        )
        config = {
            "defense": entry.get("defense", "vanilla"),
            "arch": entry.get("arch", data.get("arch", "tiny")),
            "dataset": dataset,
            "timesteps": entry.get("timesteps", data.get("timesteps")),
            "track": entry.get("track", data.get("track", "tgo")),
            "settings": dict(entry.get("settings", {})),
            "name": entry.get("name"),
        }
        try:
            models.append((ModelConfig(**config), train))
        except SnnbenchError as exc:
            raise SnnbenchError(f"recipe {path} {where}: {exc}") from None
    for key in ("attacks", "layouts", "drop", "headline"):
        if not all(isinstance(a, str) for a in data.get(key, [])):
            raise SnnbenchError(f"{lines.at(key)}: {key!r} must be a list of names (strings)")
    seeds = (base_train.seed,)
    if "seeds" in data:
        seeds = _seeds(data["seeds"], lines)
        models = [replica for model in models for replica in seed_replicas(model, seeds)]
    from snnbench.layouts import LAYOUTS  # here: layouts import the report, which imports us

    for layout in data.get("layouts", []):
        if layout not in LAYOUTS:
            raise SnnbenchError(
                f"{lines.at('layouts')}: unknown layout {layout!r}; see `snnbench list layouts`"
            )
    sweep = None
    if "sweep" in data:
        table = _check_table(data["sweep"], SWEEP_KEYS, "[sweep]", lines, "sweep")
        read = {"eps": parse_eps, "steps": int, "eot": int}
        values: dict[str, tuple] = {}
        for key, convert in read.items():
            try:
                values[key] = tuple(convert(v) for v in table.get(key, []))
            except (SnnbenchError, TypeError, ValueError) as exc:
                raise SnnbenchError(
                    f"{lines.at(key, 'sweep')}: cannot read [sweep] {key} ({exc}); "
                    'write e.g. eps = ["8/255", "16/255"], steps = [5, 10], '
                    "eot = [1, 2]"
                ) from None
        sweep = Sweep(
            table.get("attack", "pgd10"),
            values["eps"],
            values["steps"],
            values["eot"],
            table.get("n"),
        )
    _check_counts(
        [
            ("n", sweep.n, 1),
            *((key, value, 1) for key in ("steps", "eot") for value in getattr(sweep, key)),
        ]
        if sweep
        else [],
        lines,
        "sweep",
    )
    name = data.get("name", Path(str(path)).stem if str(path) != "<recipe>" else "recipe")
    try:
        check_name(name, "recipe name")
    except SnnbenchError as exc:
        raise SnnbenchError(f'{lines.at("name")}: {exc}; set name = "..." in the recipe') from None
    return Recipe(
        name=name,
        dataset=dataset,
        eps=parse_eps(data.get("eps", "8/255")),
        norm=data.get("norm", "Linf"),
        attacks=tuple(data.get("attacks", ["fgsm", "pgd10"])),
        n=data.get("n"),
        k_eval=data.get("k_eval", 3),
        eot=data.get("eot", 1),
        drop=tuple(data.get("drop", [])),
        headline=tuple(data.get("headline", [])),
        seed=data.get("seed", 0),
        seeds=seeds,
        train=base_train,
        models=tuple(models),
        layouts=tuple(data.get("layouts", ["leaderboard"])),
        sweep=sweep,
        description=data.get("description", ""),
        source=str(path),
        text=text or "",
    )


def _seeds(values: Any, lines: _Lines) -> tuple[int, ...]:
    """The training seeds: distinct integers >= 0, at least one."""
    if (
        not values
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values)
        or len(set(values)) != len(values)
    ):
        raise SnnbenchError(
            f"{lines.at('seeds')}: 'seeds' must be a list of distinct integers "
            f">= 0, got {values!r}; write e.g. seeds = [0, 1, 2]"
        )
    return tuple(values)


def seed_replicas(
    model: tuple[ModelConfig, TrainConfig], seeds: tuple[int, ...]
) -> list[tuple[ModelConfig, TrainConfig]]:
    """``model`` once per training seed: the first seed keeps its name (and, unless the model's
    own ``[train]`` sets another, becomes its seed); the others are named ``NAME-seedN``."""
    config, train = model
    if len(seeds) == 1:
        return [(config, dataclasses.replace(train, seed=seeds[0]))]
    from snnbench.model import resolve  # here: the model layer is heavier than recipes

    spec = resolve(config)
    base = config.name or model_name(spec.defense, spec.arch, spec.dataset)
    return [
        (
            config if i == 0 else dataclasses.replace(config, name=f"{base}-seed{seed}"),
            dataclasses.replace(train, seed=seed),
        )
        for i, seed in enumerate(seeds)
    ]


COUNTS = {"n": 1, "k_eval": 1, "eot": 1, "seed": 0, "timesteps": 1}  # key: its minimum


def _check_counts(
    counts: list[tuple[str, Any, int]], lines: _Lines, table: str | None = None
) -> None:
    """Each (key, value, minimum) in range; an error names the key's line (in ``[table]``)."""
    for key, value, minimum in counts:
        try:
            check_count(value, key, minimum)
        except SnnbenchError as exc:
            where = f"[{table}] " if table else ""
            raise SnnbenchError(f"{lines.at(key, table)}: {where}{exc}") from None


def recipe_of(card: dict[str, Any]) -> Recipe | None:
    """The recipe that trained a model, rebuilt from the TOML text its card keeps; None for a
    model trained without one. An older card holds only the name: that name is looked up among
    the packaged recipes, and a name found nowhere is an error, never a silent default suite."""
    name = card.get("recipe")
    text = card.get("recipe_toml")
    where = f"the card of model {card.get('name', '?')!r}"
    if text:
        try:
            return parse_recipe_text(text, card.get("recipe_path") or name or "<recipe>")
        except SnnbenchError as exc:
            raise SnnbenchError(
                f"{where} holds a recipe this snnbench cannot read ({exc})"
            ) from None
    if not name:
        return None
    try:
        return load_recipe(name)
    except SnnbenchError:
        raise SnnbenchError(
            f"{where} names recipe {name!r}, which is not packaged, and the card "
            "(written before cards kept their recipe) lacks its text; pass that "
            "file: `snnbench attack --recipe FILE.toml` or `snnbench run FILE.toml`"
        ) from None


def recipe_or_none(card: dict[str, Any]) -> Recipe | None:
    """``recipe_of`` for display (the site): None where the recipe cannot be found."""
    try:
        return recipe_of(card)
    except SnnbenchError:
        return None
