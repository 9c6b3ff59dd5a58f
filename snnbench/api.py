"""The library functions behind each command; the CLI only parses, calls these, and prints.

A *home* (``--home``, env ``SNNBENCH_HOME``, default ``./snnbench-runs``) holds trained models
in ``models/<name>/`` and the results store ``results.sqlite``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from torch import nn

from snnbench.attacks import Attack, create_attack
from snnbench.attacks.suites import SUITES, build_member
from snnbench.attacks.transfer import TransferAttack, check_reaches
from snnbench.neurons import parse_grad_mode
from snnbench import progress
from snnbench.checks import (
    Outcome,
    Probe,
    Results,
    list_checks,
    probe_checks,
    run_probe_checks,
    run_result_checks,
)
from snnbench.checkpoint import CARD, library_versions, load, now, verify
from snnbench.config import ModelConfig, TrainConfig, check_count, parse_eps
from snnbench.data import DATASETS, dataset_info, load_dataset
from snnbench.errors import SnnbenchError
from snnbench.files import atomic_write_json, check_name
from snnbench.evaluate import (
    ChunkCallback,
    EvalConfig,
    ModelInfo,
    module_sha256,
    run_attacks,
    select_samples,
    state_dict_sha256,
)
from snnbench.executors import ModelRun, check_executor, run_models
from snnbench.home import (
    STORE,
    bind_model_source,
    home_models,
    home_path,  # noqa: F401
    join_model_cards,  # noqa: F401  (re-exported: the API before home.py)
    leaderboard,
    open_store,
)
from snnbench.gate import ALPHA as GATE_ALPHA, GateResult, compare, read_baseline
from snnbench.importer import import_checkpoint  # noqa: F401  (the API of `snnbench import`)
from snnbench.layouts import get_layout, render_layout, write_layout
from snnbench.plots import SWEEP, is_sweep, plot_sweeps
from snnbench.recipe import (
    Recipe,
    Sweep,
    load_recipe,
    parse_recipe_text,  # noqa: F401
    recipe_of,
    recipe_or_none,  # noqa: F401  (re-exported)
)
from snnbench.report import FORMATS, Leaderboard, build_leaderboard, write_report
from snnbench.own_model import OWN_CARD_SCHEMA, PROBE_BATCH, OwnModel, inspect_module
from snnbench.runtime import place, resolve_device
from snnbench.store import ResultStore
from snnbench.train import EpochCallback, TrainOutcome, train_model

DEFAULT_EPS = {"digits": 32 / 255}  # docs/protocol.md: 8/255 barely moves 8x8 digits
TRACKS = {"ci": (200, 3), "dev": (1000, 9), "paper": (None, 9)}  # n, k_eval


def list_models(home: str | Path | None = None) -> list[str]:
    return home_models(home)


def train(
    config: ModelConfig | str, train_config: TrainConfig | None = None, **kwargs: Any
) -> TrainOutcome | list[TrainOutcome]:
    """Train one model (a ``ModelConfig``) or every model of a recipe (its path or name)."""
    if isinstance(config, ModelConfig):
        return train_model(config, train_config, **kwargs)
    recipe = load_recipe(config)
    return [train_model(m, t, recipe=recipe, **kwargs) for m, t in recipe.models]


@dataclass(frozen=True)
class AttackPlan:
    """What runs on one model: ``attacks`` (in order; a cascade when ``cascade``),
    ``paired``: Drop pairs, each attack without and with EoT, always on every sample, and
    ``tail``: a recipe's headline attacks, a cascade after ``attacks`` that runs only on the
    samples every one of them left robust."""

    attacks: list[Attack]
    paired: list[Attack] = field(default_factory=list)
    cascade: bool = False
    tail: list[Attack] = field(default_factory=list)


def attacks_for(
    card: dict[str, Any],
    names: Sequence[str] | None,
    eps: float | None,
    norm: str | None,
    steps: int | None,
    suite: str | None = None,
    eot: int | None = None,
    surrogate: str = "own",
    recipe: Recipe | None = None,
) -> AttackPlan:
    """The attacks for one model: ``names``, else ``suite``, else its recipe's attacks, else the
    ``quick`` suite. The recipe is ``recipe``, else the one its card keeps (``recipe_of``).
    EoT applies to stochastic models only (a deterministic one runs K = 1).
    ``--surrogate`` other than ``own`` replaces every attack's gradient mode."""
    check_count(eot, "--eot")
    check_count(steps, "--steps")
    recipe = recipe or recipe_of(card)
    dataset = card["spec"]["dataset"]
    stochastic = bool(card.get("stochastic"))
    if eps is None:
        eps = recipe.eps if recipe else DEFAULT_EPS.get(dataset, 8 / 255)
    norm = norm or (recipe.norm if recipe else "Linf")
    if not names and (suite or not recipe):
        chosen = SUITES.get(suite or "quick")
        events = dataset in DATASETS and dataset_info(dataset).frames > 0
        plan = AttackPlan(
            chosen.attacks(eps, norm, stochastic, eot, steps, events),
            chosen.drop_attacks(eps, norm, stochastic, eot, steps),
            chosen.cascade,
        )
    else:
        k = (eot or (recipe.eot if recipe else 1)) if stochastic else 1
        chosen_attacks = [named_attack(a, eps, norm, steps, k) for a in (names or recipe.attacks)]
        keys = {a.key() for a in chosen_attacks}
        pairs = recipe.drop if recipe and not names and stochastic and k > 1 else ()
        paired = [
            attack
            for a in pairs
            for draws in (1, k)
            if (attack := create_attack(a, eps, norm, steps, draws)).key() not in keys
        ]
        tail = [
            build_member(a, eps, norm, k) for a in (recipe.headline if recipe and not names else ())
        ]
        plan = AttackPlan(chosen_attacks, paired, bool(tail), tail)
    token, _ = parse_grad_mode(surrogate)
    if token == "bptt":  # the default keeps a suite member's own gradient mode
        return plan

    def swap(attacks):
        return [a if a.grad == token else dataclasses.replace(a, grad=token) for a in attacks]

    return AttackPlan(swap(plan.attacks), swap(plan.paired), plan.cascade, swap(plan.tail))


def named_attack(name: str, eps: float, norm: str, steps: int | None, eot: int) -> Attack:
    """An ``--attacks`` (or recipe) entry: an attack id, or the suite-member grammar
    ``ID[:STEPS][@surrogate=MODE][@eot=2k][@targets=N]`` (``apgd-ce:20``); ``--steps`` wins."""
    if "@" in name or name.rpartition(":")[2].isdigit():
        return build_member(name, eps, norm, eot, steps)
    return create_attack(name, eps, norm, steps, eot)


def attack(
    models: Sequence[str] | None = None,
    *,
    home: str | Path | None = None,
    attacks: Sequence[str] | None = None,
    eps: str | float | None = None,
    norm: str | None = None,
    steps: int | None = None,
    n: int | None = None,
    suite: str | None = None,
    eot: int | None = None,
    k_eval: int | None = None,
    surrogate: str = "own",
    per_attack_full: bool = False,
    track: str | None = None,
    seed: int = 0,
    chunk_size: int = 500,
    device: str = "auto",
    data_root: str | Path | None = None,
    on_chunk: ChunkCallback | None = None,
    max_chunks: int | None = None,
    checks: bool | None = None,
    executor: str = "local",
    ray_address: str | None = None,
    compile: bool = False,
    recipe: str | Path | Recipe | None = None,
) -> list[dict]:
    """Attack the named models of the home (all when none), storing every chunk; the result cards.

    Unset attacks, eps, norm and EoT come from ``recipe`` (a file, packaged name or ``Recipe``),
    else from the recipe each model's card keeps, else the ``quick`` suite at the data set's
    default budget.

    ``checks`` runs the sanity checks afterwards (default: with the ``full`` suite).
    ``executor="ray"`` sends the tasks to the Ray cluster at ``ray_address`` (None: a local
    one); same seeds, same results. Chunks that fail there are reported after everything else
    is stored (a ``SnnbenchError``); a rerun computes them. ``compile`` runs the attacked
    models through ``torch.compile`` (same results; the result cards note it).

    A cascade suite (``full``) runs each attack on the samples that survived the earlier ones;
    ``per_attack_full`` also gives each attack its own column on every clean-correct sample.
    """
    _check_attack_counts(
        steps=steps,
        n=n,
        eot=eot,
        k_eval=k_eval,
        seed=seed,
        chunk_size=chunk_size,
        max_chunks=max_chunks,
    )
    names = list(models) if models else home_models(home)
    if not names:
        raise SnnbenchError(
            f"no trained models in {home_path(home) / 'models'}; run "
            "`snnbench train vanilla` or `snnbench run` first"
        )
    eps_value = parse_eps(eps) if eps is not None else None
    if track is not None and track not in TRACKS:
        raise SnnbenchError(f"unknown track {track!r}; choose one of {', '.join(TRACKS)}")
    track_n, track_k = TRACKS.get(track or "", (None, 3))
    k_eval = k_eval or track_k
    given = load_recipe(recipe) if isinstance(recipe, (str, Path)) else recipe
    check_executor(executor)
    dev = resolve_device(device) if executor == "local" else None
    plans = []
    for name in names:  # check every model and attack before the first long run
        card = verify(name, home_path(home))
        plan = attacks_for(card, attacks, eps_value, norm, steps, suite, eot, surrogate, given)
        check_plan_reaches(plan, lambda: load(name, home_path(home)))
        plans.append(
            (
                name,
                card,
                dataclasses.replace(
                    plan, attacks=[bind_model_source(a, home, dev) for a in plan.attacks]
                ),
            )
        )
    config = EvalConfig(n=n or track_n, k_eval=k_eval, seed=seed, chunk_size=chunk_size)
    cards = run_models(
        [
            ModelRun(name, card, plan.attacks, plan.cascade, plan.paired, plan.tail)
            for name, card, plan in plans
        ],
        home=home_path(home),
        store=STORE,
        config=config,
        device=device,
        data_root=data_root,
        on_chunk=on_chunk,
        max_chunks=max_chunks,
        per_attack_full=per_attack_full,
        executor=executor,
        ray_address=ray_address,
        compile=compile,
    )
    if (suite == "full" if checks is None else checks) and max_chunks is None:
        # the adaptive suite ends with the sanity checks
        check(
            names,
            home=home,
            eps=eps,
            eot=eot,
            seed=seed,
            device=device,
            data_root=data_root,
            recipe=given,
        )
    return cards


# The minimum of each count of `attack` (None: unset, the default applies).
ATTACK_COUNTS = {
    "steps": 1,
    "n": 1,
    "eot": 1,
    "k_eval": 1,
    "seed": 0,
    "chunk_size": 1,
    "max_chunks": 1,
}


def check_plan_reaches(plan: AttackPlan, model: Callable[[], nn.Module]) -> None:
    """Refuse, before any attack runs, a gradient mode or twin that cannot reach the model's
    neurons (``attacks.transfer.check_reaches``), rather than midway through a suite. The model
    is loaded only when an attack of the plan needs the check."""
    attacks = [*plan.attacks, *plan.paired, *plan.tail]
    if any(a.grad != "bptt" or isinstance(a, TransferAttack) for a in attacks):
        check_reaches(model(), attacks)


def _check_attack_counts(**counts: int | None) -> None:
    """Every count of `attack` in range, checked before any model is loaded or file written."""
    for key, value in counts.items():
        option = key if key in ("k_eval", "max_chunks") else f"--{key.replace('_', '-')}"
        check_count(value, option, ATTACK_COUNTS[key])  # k_eval, max_chunks: Python only


def _probe(
    name: str,
    card: dict[str, Any],
    home: str | Path | None,
    n: int,
    eps: str | float | None,
    eot: int | None,
    seed: int,
    dev: Any,
    data_root: str | Path | None,
    recipe: Recipe | None = None,
) -> Probe:
    """The model of ``name`` with ``n`` class-balanced test samples and the budget of
    ``recipe`` (default: the card's)."""
    recipe = recipe or recipe_of(card)
    dataset = card["spec"]["dataset"]
    budget = (
        parse_eps(eps)
        if eps is not None
        else (recipe.eps if recipe else DEFAULT_EPS.get(dataset, 8 / 255))
    )
    info = dataset_info(dataset)
    x, y = load_dataset(dataset, "test", data_root)
    x, y = select_samples(x, y, n, info.num_classes)
    model = load(name, home_path(home), device=dev)
    k = eot or (max(recipe.eot, 4) if recipe else 4)
    return Probe(
        model,
        x,
        y,
        bool(card.get("stochastic")),
        info.num_classes,
        budget,
        recipe.norm if recipe else "Linf",
        k,
        seed,
        dev,
    )


DIAGNOSE_N = 1000  # docs/protocol.md: potentials from 1,000 samples (digits has 360)


def diagnose(
    model: str,
    *,
    home: str | Path | None = None,
    n: int = DIAGNOSE_N,
    metrics: Sequence[str] | None = None,
    seed: int = 0,
    device: str = "auto",
    data_root: str | Path | None = None,
) -> dict[str, float]:
    """AGCS, potentials near the threshold, gradient sparsity and spike rates of one model,
    stored so that layouts can show them."""
    from snnbench.diagnostics import DIAGNOSTICS, diagnose as run_diagnostics

    check_count(n, "--n")
    check_count(seed, "--seed", 0)
    names = [DIAGNOSTICS.canonical(m) for m in metrics] if metrics else None
    card = verify(model, home_path(home))
    probe = _probe(model, card, home, n, None, None, seed, resolve_device(device), data_root)
    values = run_diagnostics(probe, names)
    with open_store(home) as store:
        store.put_diagnostics(card["weights_sha256"], values, len(probe.y))
    return values


CHECK_N = 100  # probe samples per model: checks look for gross failures, not decimals


def check(
    models: Sequence[str] | None = None,
    *,
    home: str | Path | None = None,
    n: int = CHECK_N,
    eps: str | float | None = None,
    eot: int | None = None,
    checks: Sequence[str] | None = None,
    seed: int = 0,
    device: str = "auto",
    data_root: str | Path | None = None,
    recipe: Recipe | None = None,
) -> dict[str, list[Outcome]]:
    """Run the sanity checks (docs/protocol.md) on the named models (all when none):
    probe checks on ``n`` class-balanced test samples, result checks on the stored cards.
    Every outcome is stored; a model with a failed error/unreliable check is flagged.
    Unset eps and EoT come from ``recipe``, else each card's."""
    from snnbench.checks import CHECKS

    check_count(n, "--n")
    check_count(eot, "--eot")
    check_count(seed, "--seed", 0)
    ids = [CHECKS.canonical(c) for c in checks] if checks else None
    names = list(models) if models else home_models(home)
    if not names:
        raise SnnbenchError(
            f"no trained models in {home_path(home) / 'models'}; run "
            "`snnbench train vanilla` or `snnbench run` first"
        )
    cards = {name: verify(name, home_path(home)) for name in names}
    dev = resolve_device(device)
    out: dict[str, list[Outcome]] = {}
    with open_store(home) as store:
        for name, card in cards.items():
            probe = _probe(name, card, home, n, eps, eot, seed, dev, data_root, recipe)
            out[name] = _outcomes(probe, store, card["weights_sha256"], ids, name)
    return out


def report(
    home: str | Path | None = None,
    out: str | Path | None = None,
    formats: Sequence[str] = FORMATS,
    name: str | None = None,
    layout: str | None = None,
    plots: bool | None = False,
) -> tuple[Leaderboard, list[Path]]:
    """Write the leaderboard, or with ``layout`` a paper table (``<name>-<layout>.*``); with
    ``plots`` also the sweep curves (``<name>-eps.png`` ...), linked from the Markdown;
    ``plots=None``: when the store holds sweep runs. ``out`` defaults to ``<home>/leaderboards``
    (a user's files stay out of a clone; the committed ones are written with an explicit out)."""
    if "html" in formats:
        return site(home, out if out is not None else "site", name, plots is not False)
    out = Path(out) if out is not None else home_path(home) / "leaderboards"
    table = get_layout(layout) if layout and layout != "leaderboard" else None
    board = leaderboard(home, name)
    check_name(board.name, "leaderboard --name")  # the files' stem: stays inside --out
    if not board.rows:
        raise SnnbenchError(
            f"no finished attack results in {home_path(home) / STORE}; run `snnbench attack` first"
        )
    figures: list[Path] = []
    if plots is not False:
        with open_store(home) as store:
            cards = store.cards()
        if plots or (table is None and any(is_sweep(c) for c in cards)):
            figures = plot_sweeps(cards, Path(out), board.name)
    if table is not None:
        return board, figures + write_layout(
            render_layout(table, board.main_rows()), Path(out), board.name, tuple(formats), figures
        )
    return board, figures + write_report(board, Path(out), tuple(formats), figures)


def site(
    home: str | Path | None = None,
    out: str | Path = "site",
    name: str | None = None,
    plots: bool = True,
) -> tuple[Leaderboard, list[Path]]:
    """``report --format html``: the static site of the home's results (website.py)."""
    from snnbench.website import site_from_home

    if name is not None:
        check_name(name, "leaderboard --name")
    return site_from_home(home, Path(out), name, plots)


def sweep_attacks(sweep: Sweep, eps: float, norm: str, stochastic: bool, eot: int) -> list[Attack]:
    """The recipe's sweep as attacks tagged ``params.sweep`` (kept out of the leaderboard)."""
    k = eot if stochastic else 1
    tag = lambda attack, kind: dataclasses.replace(  # noqa: E731
        attack, params={**attack.params, SWEEP: kind}
    )
    attacks = [tag(create_attack(sweep.attack, e, norm, eot=k), "eps") for e in sweep.eps]
    attacks += [
        tag(create_attack(sweep.attack, eps, norm, steps=s, eot=k), "steps") for s in sweep.steps
    ]
    if stochastic:
        attacks += [tag(create_attack(sweep.attack, eps, norm, eot=e), "eot") for e in sweep.eot]
    return attacks


def sweep(
    models: Sequence[str],
    recipe: Recipe,
    *,
    home: str | Path | None = None,
    device: str = "auto",
    data_root: str | Path | None = None,
    on_chunk: ChunkCallback | None = None,
    executor: str = "local",
    ray_address: str | None = None,
    compile: bool = False,
) -> list[dict]:
    """Run the recipe's ``[sweep]`` on the models (resumable like any attack run)."""
    if recipe.sweep is None:
        return []
    check_executor(executor)
    runs = []
    for name in models:
        card = verify(name, home_path(home))
        runs.append(
            ModelRun(
                name,
                card,
                sweep_attacks(
                    recipe.sweep, recipe.eps, recipe.norm, bool(card.get("stochastic")), recipe.eot
                ),
            )
        )
    config = EvalConfig(n=recipe.sweep.n or recipe.n, k_eval=recipe.k_eval, seed=recipe.seed)
    return run_models(
        runs,
        home=home_path(home),
        store=STORE,
        config=config,
        device=device,
        data_root=data_root,
        on_chunk=on_chunk,
        executor=executor,
        ray_address=ray_address,
        compile=compile,
    )


def gate(
    baseline: str | Path,
    home: str | Path | None = None,
    tolerance: float = 2.0,
    alpha: float = GATE_ALPHA,
    allow_rise: bool = False,
) -> GateResult:
    """``snnbench gate``: the home's results against a baseline leaderboard json, paired per
    sample (docs/protocol.md 'Gate'); ``tolerance`` in points, ``alpha`` family-wise."""
    if not (isinstance(tolerance, (int, float)) and 0 <= tolerance < float("inf")):
        raise SnnbenchError(f"--tolerance must be a number of points >= 0, got {tolerance!r}")
    base = read_baseline(Path(baseline))
    return compare(base, leaderboard(home, base.get("name")), tolerance, alpha, allow_rise)


@dataclass
class RunOutcome:
    recipe: Recipe
    trained: list[TrainOutcome] = field(default_factory=list)
    cards: list[dict] = field(default_factory=list)
    board: Leaderboard | None = None
    written: list[Path] = field(default_factory=list)


def run(
    recipe: str | Path | None = None,
    *,
    home: str | Path | None = None,
    out: str | Path | None = None,
    device: str = "auto",
    data_root: str | Path | None = None,
    on_epoch: EpochCallback | None = None,
    on_chunk: ChunkCallback | None = None,
    on_model: Any = None,
    executor: str = "local",
    ray_address: str | None = None,
    workers: int | None = None,
    compile: bool = False,
) -> RunOutcome:
    """``snnbench run``: train the recipe's models, attack them, check them (every sanity check
    but C10), write the leaderboard.

    ``executor="ray"``: the training jobs, then the attack tasks, run on the Ray cluster at
    ``ray_address`` (None: a local one); per-epoch progress is not reported from there.
    ``workers`` (training loader processes) and ``compile`` (``torch.compile``, for training
    and attacks) change speed only; Ray training jobs use the default workers."""
    spec = load_recipe(recipe)
    check_count(workers, "--workers", 0)
    check_executor(executor)
    outcome = RunOutcome(spec)
    with contextlib.ExitStack() as stack:
        if executor == "ray":
            from snnbench import executors

            ray = stack.enter_context(executors.connect(ray_address))
            outcome.trained = executors.train_models(
                ray,
                spec.models,
                home=home_path(home),
                data_root=data_root,
                device=device,
                recipe=spec,
                compile=compile,
            )
        for model_config, train_config in spec.models if executor == "local" else []:
            if on_model:
                on_model(model_config)
            outcome.trained.append(
                train_model(
                    model_config,
                    train_config,
                    home=home_path(home),
                    data_root=data_root,
                    device=device,
                    recipe=spec,
                    on_epoch=on_epoch,
                    workers=workers,
                    compile=compile,
                )
            )
        with open_store(home) as store:
            store.set_meta("recipe", spec.name)
            store.set_meta("recipe_toml", spec.text)  # the site's layouts (website.py)
        names = [t.name for t in outcome.trained]
        # this recipe's attacks, also on models a recipe trained before ("up to date")
        outcome.cards = attack(
            names,
            home=home,
            n=spec.n,
            k_eval=spec.k_eval,
            seed=spec.seed,
            device=device,
            data_root=data_root,
            on_chunk=on_chunk,
            executor=executor,
            ray_address=ray_address,
            compile=compile,
            recipe=spec,
        )
        outcome.cards += sweep(
            names,
            spec,
            home=home,
            device=device,
            data_root=data_root,
            on_chunk=on_chunk,
            executor=executor,
            ray_address=ray_address,
            compile=compile,
        )
    # the leaderboard carries the flags: every check but C10 (an APGD at 64/255, 20 s on a
    # stochastic digits model; `snnbench check` runs it)
    check(
        names,
        home=home,
        seed=spec.seed,
        device=device,
        data_root=data_root,
        checks=[c for c in list_checks() if c != "C10"],
    )
    progress.status("writing the leaderboard")
    outcome.board, outcome.written = report(home, out, name=spec.name, plots=spec.sweep is not None)
    for layout in spec.layouts:
        if layout != "leaderboard":
            outcome.written += report(home, out, name=spec.name, layout=layout)[1]
    return outcome


OWN_MODELS = "modules"  # <home>/modules/<name>/card.json: models evaluated from code


@dataclass
class Evaluation:
    """What :func:`evaluate` measured on one module."""

    name: str
    model: dict[str, Any]  # its model card: class, sha256s, declared and detected randomness
    cards: list[dict]  # one result card per attack run and cascade member
    row: dict[str, Any] | None  # its leaderboard row: headline, columns, MRA, flags
    checks: list[Outcome] = field(default_factory=list)

    @property
    def headline(self) -> dict[str, Any] | None:
        """The per-sample worst case over every run, with its 95% interval (``acc``, ``ci95``)."""
        return (self.row or {}).get("headline")

    @property
    def flags(self) -> list[str]:
        """The failed checks that mark the row unreliable (empty: none)."""
        return list((self.row or {}).get("unreliable") or [])

    @property
    def warnings(self) -> list[str]:
        return list((self.row or {}).get("warnings") or [])

    @property
    def stochastic(self) -> bool:
        return bool(self.model["stochastic"])

    @property
    def k_eval(self) -> int:
        return int(self.cards[0]["eval"]["k_eval"]) if self.cards else 0


def evaluate(
    model: nn.Module,
    *,
    dataset: str,
    suite: str | None = None,
    attacks: Sequence[str] | None = None,
    eot: int | None = None,
    eps: str | float | None = None,
    norm: str | None = None,
    n: int | None = None,
    seed: int = 0,
    home: str | Path | None = None,
    name: str | None = None,
    checks: bool = True,
    stochastic: bool | None = None,
    device: str = "auto",
    recipe: str | Path | Recipe | None = None,
    steps: int | None = None,
    k_eval: int | None = None,
    surrogate: str = "own",
    chunk_size: int = 500,
    per_attack_full: bool = False,
    data_root: str | Path | None = None,
    on_chunk: ChunkCallback | None = None,
    source: str | None = None,
) -> Evaluation:
    """The protocol of ``snnbench attack`` on any module mapping ``[B, C, H, W]`` images in
    [0, 1] to logits (docs/guide.md, "Your own model").

    Attacks: ``attacks``, else ``suite``, else ``recipe``, else the packaged recipe named like
    the data set (``digits``: its columns, Drop pairs and headline cascade), else the ``quick``
    suite; unset eps, norm, EoT, n and k_eval come from that recipe. The module is watched
    first (``snnbench.own_model``): a model that keeps state between calls is refused, a random
    one is scored as stochastic (``stochastic`` or the module's attribute declares it; a
    declaration the behaviour contradicts is an error), ``[T, B, K]`` outputs are averaged
    over T. ``checks`` runs the sanity checks (all but C10; with suite ``full``, all). With
    ``home`` the results, checks and a model card (``<home>/modules/<name>/card.json``) persist
    there, so ``snnbench report`` and ``gate`` read the row like any other; without, they
    are dropped. ``name`` defaults to the module's class name.
    """
    if not isinstance(model, nn.Module):
        raise SnnbenchError(f"evaluate takes an nn.Module, got {type(model).__name__}")
    _check_attack_counts(
        steps=steps, n=n, eot=eot, k_eval=k_eval, seed=seed, chunk_size=chunk_size, max_chunks=None
    )
    attacks = [attacks] if isinstance(attacks, str) else attacks
    name = check_name(name or type(model).__name__, "--name")
    if home is not None and name in home_models(home):  # would hide that model's row
        raise SnnbenchError(
            f"{name!r} is a trained model in {home_path(home) / 'models'}; "
            "give your module another name (--name)"
        )
    info = dataset_info(dataset)
    given = _own_recipe(recipe, info.name, suite, attacks)
    eps_value = parse_eps(eps) if eps is not None else None
    dev = resolve_device(device)
    x, y = load_dataset(info.name, "test", data_root)
    own, card = _watch(model, name, info, stochastic, x, y, dev, source)
    plan = attacks_for(
        {"name": name, "spec": {"dataset": info.name}, "stochastic": own.stochastic},
        attacks,
        eps_value,
        norm,
        steps,
        suite,
        eot,
        surrogate,
        given,
    )
    check_plan_reaches(plan, lambda: own)
    plan = dataclasses.replace(
        plan, attacks=[bind_model_source(a, home, dev) for a in plan.attacks]
    )
    card.update(
        recipe=given.name if given else None,
        recipe_toml=given.text if given else None,
        eps=plan.attacks[0].eps,
        norm=plan.attacks[0].norm,
    )
    model_info = ModelInfo(
        name,
        card["sha256"],
        "unknown",
        card["class"].rsplit(".", 1)[-1],
        info.name,
        card["timesteps"],
        own.stochastic,
        notes=tuple(card["notes"]),
    )
    config = EvalConfig(
        n=n or (given.n if given else None),
        k_eval=k_eval or (given.k_eval if given else 3),
        seed=seed,
        chunk_size=chunk_size,
    )
    with contextlib.ExitStack() as stack:
        folder = (
            Path(stack.enter_context(tempfile.TemporaryDirectory()))
            if home is None
            else home_path(home)
        )
        if home is not None:
            write_own_card(folder, card)
        store = stack.enter_context(ResultStore(folder / STORE))
        cards = run_attacks(
            own,
            model_info,
            plan.attacks,
            x,
            y,
            store,
            config,
            dev,
            on_chunk,
            cascade=plan.cascade,
            paired=plan.paired,
            tail=plan.tail,
            per_attack_full=per_attack_full or not plan.cascade,
        )
        ids = None if suite == "full" else [c for c in list_checks() if c != "C10"]
        outcomes = (
            _own_checks(own, card, store, x, y, info.num_classes, eot, seed, dev, ids, given)
            if checks
            else []
        )
    board = build_leaderboard(cards, name, {card["sha256"]: [o.to_dict() for o in outcomes]})
    return Evaluation(name, card, cards, board.rows[0] if board.rows else None, outcomes)


def _own_recipe(
    recipe: str | Path | Recipe | None,
    dataset: str,
    suite: str | None,
    attacks: Sequence[str] | None,
) -> Recipe | None:
    """The recipe behind :func:`evaluate`'s defaults: the one given, else (with neither suite
    nor attacks) the packaged recipe named like the data set, if there is one."""
    if isinstance(recipe, (str, Path)):
        recipe = load_recipe(recipe)
    if recipe is None and not suite and not attacks:
        with contextlib.suppress(SnnbenchError):
            recipe = load_recipe(dataset)
    if recipe is not None and recipe.dataset != dataset:
        raise SnnbenchError(
            f"recipe {recipe.name!r} is for {recipe.dataset}, not {dataset}; "
            "pass a recipe for the data set or drop it"
        )
    return recipe


def _watch(
    model: nn.Module,
    name: str,
    info: Any,
    stochastic: bool | None,
    x: Any,
    y: Any,
    dev: Any,
    source: str | None,
) -> tuple[OwnModel, dict[str, Any]]:
    """The module as the protocol runs it, and its model card: identified before any pass
    (a stateful module's buffers change), then inspected on a few test images."""
    attribute = getattr(model, "stochastic", None)
    declared, by = (
        (stochastic, "stochastic=")
        if stochastic is not None
        else (None, "")
        if attribute is None
        else (bool(attribute), "the module's `stochastic` attribute")
    )
    sha, state_sha = module_sha256(model), state_dict_sha256(model)
    model = place(model, dev)
    probe, _ = select_samples(x, y, 2 * PROBE_BATCH, info.num_classes)
    seen = inspect_module(model, probe.to(dev), info.num_classes, declared, by)
    if declared is None and seen.stochastic:
        warnings.warn(
            f"{type(model).__name__} is random ({seen.randomness}) and does not say so: "
            "it is scored as stochastic (several evaluation draws, EoT); pass "
            "stochastic=True to declare it",
            stacklevel=3,
        )
    steps = seen.timesteps or int(getattr(model, "timesteps", 0) or 0)
    card = {
        "schema": OWN_CARD_SCHEMA,
        "schema_version": 1,
        "name": name,
        "class": f"{type(model).__module__}.{type(model).__qualname__}",
        "source": source,
        "state_dict_sha256": state_sha,
        "sha256": sha,
        "dataset": info.name,
        "declared": {"stochastic": declared, "by": by or None},
        "stochastic": seen.stochastic,
        "randomness": seen.randomness,
        "output": seen.output,
        "timesteps": steps,
        "notes": [f"randomness {seen.randomness}", f"output: {seen.output}"],
        "versions": library_versions(),
        "created": now(),
    }
    return OwnModel(model, seen.stochastic, seen.time_first, steps).eval(), card


def _own_checks(
    own: OwnModel,
    card: dict[str, Any],
    store: ResultStore,
    x: Any,
    y: Any,
    num_classes: int,
    eot: int | None,
    seed: int,
    dev: Any,
    ids: Sequence[str] | None,
    recipe: Recipe | None,
    n: int = CHECK_N,
) -> list[Outcome]:
    """The sanity checks of a module evaluated from code, stored under its sha256."""
    px, py = select_samples(x, y, n, num_classes)
    k = eot or (max(recipe.eot, 4) if recipe else 4)
    probe = Probe(own, px, py, own.stochastic, num_classes, card["eps"], card["norm"], k, seed, dev)
    return _outcomes(probe, store, card["sha256"], ids, card["name"])


def _outcomes(
    probe: Probe, store: ResultStore, sha: str, ids: Sequence[str] | None, name: str
) -> list[Outcome]:
    """Probe checks on ``probe`` and result checks on the stored cards of ``sha``, stored."""
    own = [c for c in store.cards() if c["model"]["sha256"] == sha]
    board = build_leaderboard(own, "check") if own else None
    results = Results(own, board.rows[0] if board and board.rows else None)
    with progress.task(f"checks on {name}", len(probe_checks(ids)), "checks") as bar:
        outcomes = run_probe_checks(probe, ids, bar.step)
        bar.step("")
    outcomes += run_result_checks(results, ids)
    store.put_checks(sha, [o.to_dict() for o in outcomes])
    return outcomes


def write_own_card(home: Path, card: dict[str, Any]) -> Path:
    path = Path(home) / OWN_MODELS / card["name"] / CARD
    atomic_write_json(path, card)
    return path


def load_own_card(name: str, home: str | Path | None = None) -> dict[str, Any]:
    """The card :func:`evaluate` wrote for ``name`` in the home."""
    path = home_path(home) / OWN_MODELS / check_name(name, "--name") / CARD
    if not path.is_file():
        raise SnnbenchError(
            f"no evaluated model {name!r} in {path.parent.parent}; run "
            "`snnbench attack --model MODULE:CALLABLE` (or snnbench.evaluate with "
            "home=) first"
        )
    card = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(card, dict) or card.get("schema") != OWN_CARD_SCHEMA:
        raise SnnbenchError(f"{path} is not the card of a model evaluated from code")
    return card


def check_own(
    model: nn.Module,
    name: str,
    *,
    home: str | Path | None = None,
    n: int = CHECK_N,
    eot: int | None = None,
    checks: Sequence[str] | None = None,
    seed: int = 0,
    device: str = "auto",
    data_root: str | Path | None = None,
) -> list[Outcome]:
    """``snnbench check --model``: the sanity checks of a module that :func:`evaluate` stored
    as ``name`` (its data set, budget and declaration from that card), stored there too."""
    from snnbench.checks import CHECKS

    check_count(n, "--n")
    check_count(eot, "--eot")
    check_count(seed, "--seed", 0)
    stored = load_own_card(name, home)
    ids = [CHECKS.canonical(c) for c in checks] if checks else None
    info = dataset_info(stored["dataset"])
    dev = resolve_device(device)
    x, y = load_dataset(info.name, "test", data_root)
    declared = stored.get("declared", {}).get("stochastic")
    own, card = _watch(model, name, info, declared, x, y, dev, stored.get("source"))
    if card["sha256"] != stored["sha256"]:
        raise SnnbenchError(
            f"this {card['class']} is not the module stored as {name!r} (other "
            "class or weights); evaluate it first: `snnbench attack --model ...`"
        )
    card.update(eps=stored["eps"], norm=stored["norm"])
    recipe = parse_recipe_text(stored["recipe_toml"]) if stored.get("recipe_toml") else None
    with open_store(home) as store:
        return _own_checks(own, card, store, x, y, info.num_classes, eot, seed, dev, ids, recipe, n)
