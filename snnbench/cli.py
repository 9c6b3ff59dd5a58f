"""The ``snnbench`` command line: one small function per command over ``snnbench.api``.

Errors are mapped here and only here: a ``SnnbenchError`` becomes one line on stderr and exit
code 2 (``--debug`` shows the traceback). Exit 1 means a gate failed.
"""

from __future__ import annotations

import functools
import time
import warnings
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer
from rich.console import Console
from rich.table import Table

from snnbench import api, progress, runtime
from snnbench.cli_zoo import zoo_app
from snnbench.config import ModelConfig, TrainConfig, format_eps, parse_assignment
from snnbench.errors import SnnbenchError
from snnbench.plugins import PluginWarning
from snnbench.report import attack_label, cascade_member

app = typer.Typer(
    name="snnbench",
    no_args_is_help=True,
    add_completion=False,
    help="Benchmark the adversarial robustness of spiking neural networks.",
)
out = Console()
err = Console(stderr=True)

HomeOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--home",
        envvar="SNNBENCH_HOME",
        help="Folder of models and results (default: ./snnbench-runs).",
    ),
]
DataRootOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--data-root",
        envvar="SNNBENCH_DATA_ROOT",
        help="Where CIFAR data sets live (default: ./data).",
    ),
]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", help="No progress bars.")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of every random choice.")]
OutOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--out",
        help="Folder for the leaderboard files (default: HOME/leaderboards; the committed ones: --out leaderboards).",
    ),
]
ExecutorOpt = Annotated[
    str,
    typer.Option(
        "--executor",
        help="local (this process) or ray (tasks on a Ray cluster; needs the ray extra: docs/scaling.md).",
    ),
]
CompileOpt = Annotated[
    bool,
    typer.Option(
        "--compile",
        help="Run the model through torch.compile (opt-in; the first batches pay for compiling).",
    ),
]
WorkersOpt = Annotated[
    Optional[int],
    typer.Option(
        "--workers",
        help="Processes that build training batches (default: 0 on the CPU, up to 4 on CUDA).",
    ),
]
RayAddressOpt = Annotated[
    Optional[str],
    typer.Option(
        "--ray-address",
        help="Ray cluster to use with --executor ray, e.g. auto or HOST:6379 (default: start a local one).",
    ),
]
OwnModelOpt = Annotated[
    Optional[str],
    typer.Option(
        "--model",
        help="Your own model: MODULE:CALLABLE (importable from the current directory) or path/to/file.py:CALLABLE, a function returning the nn.Module with its weights loaded ([B,C,H,W] images in [0,1] -> logits). RUNS THAT PYTHON CODE: pass only code you trust.",
    ),
]
OwnDataOpt = Annotated[
    str, typer.Option("--data", help="With --model: the data set it classifies.")
]
OwnNameOpt = Annotated[
    Optional[str],
    typer.Option("--name", help="With --model: the row's name (default: the callable's name)."),
]
OwnStochasticOpt = Annotated[
    Optional[bool],
    typer.Option(
        "--stochastic/--deterministic",
        help="With --model: declare its randomness (default: detected; a contradiction is an error).",
        show_default=False,
    ),
]


def command(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Map snnbench errors to one stderr line and exit 2; Ctrl-C to exit 130."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SnnbenchError as exc:
            if kwargs.get("debug"):
                raise
            err.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err.print(
                "interrupted: finished work is saved; rerun the same command to resume",
                highlight=False,
            )
            raise typer.Exit(130) from None

    return wrapper


def _plugin_warning_line(show: Callable[..., None]) -> Callable[..., None]:
    """A broken plugin is one stderr line (``warning: plugin ...``); other warnings as before."""
    if getattr(show, "plugin_lines", False):
        return show

    def showwarning(message: Any, category: type, *args: Any, **kwargs: Any) -> None:
        if issubclass(category, PluginWarning):
            err.print(f"warning: {message}", markup=False, highlight=False, soft_wrap=True)
        else:
            show(message, category, *args, **kwargs)

    showwarning.plugin_lines = True  # type: ignore[attr-defined]
    return showwarning


def _print_version(value: bool) -> None:
    if value:
        from snnbench import __version__

        out.print(f"snnbench {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _setup(
    threads: Annotated[
        Optional[int],
        typer.Option(
            "--threads",
            envvar="SNNBENCH_THREADS",
            help="CPU threads for torch (default: one per idle core).",
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Benchmark the adversarial robustness of spiking neural networks."""
    warnings.showwarning = _plugin_warning_line(warnings.showwarning)
    runtime.tune_allocator()
    try:
        runtime.configure_threads(threads)
    except SnnbenchError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False)
        raise typer.Exit(2) from None


def _watch(quiet: bool) -> Any:
    """Progress on stderr while the block runs (snnbench/progress.py): a live bounded screen on
    a terminal, plain lines in a log, nothing with --quiet."""
    return progress.watch(err, quiet)


def _summary(
    started: float, what: str, where: str, steps: list[tuple[str, str]], home: Path | None = None
) -> None:
    """The closing lines of a long command: what was done, where it is, what to type next
    (with ``--home`` when the home is not the default one)."""
    out.print(
        f"done in {progress.format_seconds(time.perf_counter() - started)}: {what}",
        highlight=False,
        soft_wrap=True,
    )
    out.print(f"results: {where}", highlight=False, soft_wrap=True)
    flag = (
        f" --home {home}" if home is not None and api.home_path(home) != api.home_path(None) else ""
    )
    for command_line, why in steps:
        if command_line.startswith("snnbench "):
            command_line += flag
        out.print(f"next: {command_line}   ({why})", highlight=False, soft_wrap=True)


def _parse_settings(values: list[str] | None) -> dict[str, str]:
    return dict(parse_assignment(v) for v in values or [])


@app.command("list")
@command
def list_(
    what: Annotated[
        str,
        typer.Argument(
            help="archs, defenses, attacks, suites, "
            "datasets, neurons, surrogates, layouts, checks, metrics or models."
        ),
    ],
    home: HomeOpt = None,
    debug: DebugOpt = False,
) -> None:
    """List what is registered (or the trained models of the home)."""
    from snnbench.archs import ARCHS
    from snnbench.attacks import ATTACKS
    from snnbench.attacks.suites import SUITES
    from snnbench.checks import CHECKS
    from snnbench.data import DATASETS
    from snnbench.diagnostics import DIAGNOSTICS
    from snnbench.defenses import DEFENSES
    from snnbench.layouts import LAYOUTS
    from snnbench.neurons import NEURONS, SURROGATES

    registries = {
        "archs": ARCHS,
        "defenses": DEFENSES,
        "attacks": ATTACKS,
        "suites": SUITES,
        "datasets": DATASETS,
        "neurons": NEURONS,
        "surrogates": SURROGATES,
        "layouts": LAYOUTS,
        "checks": CHECKS,
        "metrics": DIAGNOSTICS,
    }
    key = what.lower().replace("defences", "defenses")
    if key == "models":
        names = api.home_models(home)
        for name in names:
            out.print(name, highlight=False)
        if not names:
            err.print(f"no trained models in {api.home_path(home) / 'models'}")
        return
    if key not in registries:
        raise SnnbenchError(
            f"cannot list {what!r}; choose one of {', '.join([*registries, 'models'])}"
        )
    entries = registries[key].entries()
    # A plugin's entries name the package that brought them (snnbench.plugins).
    packages = [entry.extra.get("package", "snnbench") for entry in entries]
    columns = ("name", "aliases", "summary", "source") + (
        ("package",) if set(packages) - {"snnbench"} else ()
    )
    table = Table(box=None)
    for column in columns:
        table.add_column(column)
    for entry, package in zip(entries, packages):
        row = (entry.name, ", ".join(entry.aliases), entry.summary, entry.paper, package)
        table.add_row(*row[: len(columns)])
    out.print(table)


@app.command()
@command
def train(
    defense: Annotated[str, typer.Argument(help="Defence, e.g. vanilla or tgo+rat.")] = "vanilla",
    arch: Annotated[str, typer.Option(help="Architecture (see `snnbench list archs`).")] = "tiny",
    data: Annotated[str, typer.Option(help="Data set (see `snnbench list datasets`).")] = "digits",
    epochs: Annotated[Optional[int], typer.Option(help="Epochs (default: 30).")] = None,
    timesteps: Annotated[
        Optional[int], typer.Option(help="Time steps T (default: the track's).")
    ] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Batch size (default: 128).")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Learning rate (default: 0.1).")] = None,
    track: Annotated[str, typer.Option(help="Neuron convention: tgo, pku or randhet.")] = "tgo",
    set_: Annotated[
        Optional[list[str]], typer.Option("--set", help="KEY=VALUE setting; repeatable.")
    ] = None,
    name: Annotated[
        Optional[str], typer.Option(help="Model name (default: DEFENSE-ARCH-DATA).")
    ] = None,
    seed: SeedOpt = 0,
    workers: WorkersOpt = None,
    compile_: CompileOpt = False,
    home: HomeOpt = None,
    data_root: DataRootOpt = None,
    device: DeviceOpt = "auto",
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Train a model (or resume an interrupted run) and save its checkpoint in the home."""
    config = ModelConfig(defense, arch, data, timesteps, track, _parse_settings(set_), name)
    train_config = TrainConfig().replace(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)
    started = time.perf_counter()
    with _watch(quiet):
        outcome = api.train_model(
            config,
            train_config,
            home=api.home_path(home),
            data_root=data_root,
            device=device,
            workers=workers,
            compile=compile_,
        )
    card = outcome.card
    last = card["history"][-1] if card.get("history") else {}
    out.print(
        f"{outcome.status}: {outcome.name}  clean accuracy "
        f"{100 * card['clean_accuracy']['acc']:.2f}% on {card['clean_accuracy']['n']} test "
        f"images  ({last.get('images_per_s', '-')} images/s)  -> {outcome.folder}",
        highlight=False,
    )
    _summary(
        started,
        f"model {outcome.name} {outcome.status}",
        str(outcome.folder),
        [(f"snnbench attack {outcome.name}", "its robust accuracy")],
        home,
    )


def _floats_option(text: str | None, option: str) -> list[float] | None:
    """``0.49,0.48,0.45`` as floats; one error line naming the option otherwise."""
    if text is None:
        return None
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise SnnbenchError(
            f"{option} takes comma-separated numbers, one per channel, got {text!r}"
        ) from None


@app.command("import")
@command
def import_(
    file: Annotated[
        Path,
        typer.Argument(help="A .pt/.pth state dict (read with weights_only=True) or .safetensors."),
    ],
    arch: Annotated[str, typer.Option(help="Architecture the weights belong to.")],
    defense: Annotated[str, typer.Option(help="Defence the model was trained with, e.g. vanilla.")],
    data: Annotated[str, typer.Option(help="Data set (see `snnbench list datasets`).")] = "digits",
    timesteps: Annotated[
        Optional[int], typer.Option(help="Time steps T (default: the track's).")
    ] = None,
    track: Annotated[str, typer.Option(help="Neuron convention: tgo, pku or randhet.")] = "tgo",
    set_: Annotated[
        Optional[list[str]], typer.Option("--set", help="KEY=VALUE setting; repeatable.")
    ] = None,
    name: Annotated[
        Optional[str], typer.Option(help="Model name (default: DEFENSE-ARCH-DATA).")
    ] = None,
    from_: Annotated[
        Optional[str],
        typer.Option(
            "--from", help="Key names of snn-rat, braincog or spikingjelly (docs/guide.md)."
        ),
    ] = None,
    map_: Annotated[
        Optional[list[str]],
        typer.Option("--map", help="OLD=NEW: rename a dotted key prefix; repeatable."),
    ] = None,
    drop: Annotated[
        Optional[list[str]],
        typer.Option(help="Leave out keys matching this glob, e.g. 'aux.*'; repeatable."),
    ] = None,
    mean: Annotated[
        Optional[str],
        typer.Option(
            help="Input mean per channel the weights were trained with, e.g. 0.4914,0.4822,0.4465."
        ),
    ] = None,
    std: Annotated[
        Optional[str], typer.Option(help="Input std per channel, e.g. 0.2471,0.2435,0.2616.")
    ] = None,
    home: HomeOpt = None,
    data_root: DataRootOpt = None,
    device: DeviceOpt = "auto",
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Import a foreign PyTorch checkpoint as a verified snnbench model (no code is unpickled)."""
    config = ModelConfig(defense, arch, data, timesteps, track, _parse_settings(set_), name)
    outcome = api.import_checkpoint(
        file,
        config,
        home=api.home_path(home),
        data_root=data_root,
        device=device,
        source=from_,
        maps=map_ or (),
        drops=drop or (),
        mean=_floats_option(mean, "--mean"),
        std=_floats_option(std, "--std"),
    )
    card = outcome.card
    out.print(
        f"{outcome.status}: {outcome.name}  clean accuracy "
        f"{100 * card['clean_accuracy']['acc']:.2f}% on {card['clean_accuracy']['n']} test "
        f"images  -> {outcome.folder}",
        highlight=False,
    )


@app.command()
@command
def attack(
    models: Annotated[
        Optional[list[str]], typer.Argument(help="Model names (default: all in the home).")
    ] = None,
    attacks: Annotated[Optional[str], typer.Option(help="Comma-separated attack ids.")] = None,
    suite: Annotated[
        Optional[str],
        typer.Option(help="quick, paper-tgo, paper-randhet or full (see `snnbench list suites`)."),
    ] = None,
    recipe: Annotated[
        Optional[str],
        typer.Option(
            help="Recipe file or zoo name whose attacks, eps and EoT to run (default: the one each model's card keeps)."
        ),
    ] = None,
    eot: Annotated[
        Optional[int],
        typer.Option(help="EoT: average K gradient draws per step (stochastic models)."),
    ] = None,
    surrogate: Annotated[
        str,
        typer.Option(help="Attacker's spike backward: own, bptr, or SHAPE:WIDTH such as atan:2."),
    ] = "own",
    per_attack_full: Annotated[
        bool,
        typer.Option(
            "--per-attack-full",
            help="With a cascade suite (full): also run each attack on every clean-correct sample (its own column, MRA).",
        ),
    ] = False,
    eps: Annotated[
        Optional[str], typer.Option(help="Budget, e.g. 8/255 (default: recipe's; digits 32/255).")
    ] = None,
    steps: Annotated[Optional[int], typer.Option(help="Override the attack's steps.")] = None,
    norm: Annotated[Optional[str], typer.Option(help="Linf or L2.")] = None,
    n: Annotated[
        Optional[int], typer.Option(help="Samples (class-balanced) (default: whole test split).")
    ] = None,
    track: Annotated[
        Optional[str], typer.Option(help="ci, dev or paper (sets n and draws).")
    ] = None,
    chunk_size: Annotated[int, typer.Option(help="Samples per stored chunk.")] = 500,
    executor: ExecutorOpt = "local",
    ray_address: RayAddressOpt = None,
    compile_: CompileOpt = False,
    own_model: OwnModelOpt = None,
    data: OwnDataOpt = "digits",
    name: OwnNameOpt = None,
    stochastic: OwnStochasticOpt = None,
    no_checks: Annotated[
        bool, typer.Option("--no-checks", help="With --model: skip the sanity checks.")
    ] = False,
    seed: SeedOpt = 0,
    home: HomeOpt = None,
    data_root: DataRootOpt = None,
    device: DeviceOpt = "auto",
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Run the attack matrix on the home's models; stored chunks are skipped, so reruns resume.

    With --model MODULE:CALLABLE, attack your own PyTorch model instead: this imports and runs
    that Python code (only pass code you trust). Its row lands in the home's results like any
    other, so `snnbench report` and `snnbench gate` read it."""
    names = [a.strip() for a in attacks.split(",") if a.strip()] if attacks else None
    started = time.perf_counter()
    if own_model is not None:
        if models or track or executor != "local" or compile_:
            raise SnnbenchError(
                "--model attacks one model from code; drop the model names, "
                "--track, --executor and --compile"
            )
        with _watch(quiet):
            result = _evaluate_own(
                own_model,
                data,
                name,
                stochastic,
                not no_checks,
                home=home,
                attacks=names,
                suite=suite,
                recipe=recipe,
                eot=eot,
                surrogate=surrogate,
                per_attack_full=per_attack_full,
                eps=eps,
                steps=steps,
                norm=norm,
                n=n,
                chunk_size=chunk_size,
                seed=seed,
                device=device,
                data_root=data_root,
            )
        _print_cards(result.cards)
        try:
            _print_own(result, home)  # exits 1 when a check flagged the model
        finally:
            _summary(
                started,
                f"{len(result.cards)} attack result(s) on {result.name}",
                str(api.home_path(home) / api.STORE),
                [("snnbench report", "the leaderboard, your model's row among the others")],
                home,
            )
        return
    with _watch(quiet):
        cards = api.attack(
            models,
            home=home,
            attacks=names,
            eps=eps,
            norm=norm,
            steps=steps,
            n=n,
            suite=suite,
            eot=eot,
            surrogate=surrogate,
            per_attack_full=per_attack_full,
            track=track,
            seed=seed,
            chunk_size=chunk_size,
            device=device,
            data_root=data_root,
            executor=executor,
            ray_address=ray_address,
            compile=compile_,
            recipe=recipe,
        )
    _print_cards(cards)
    flagged: dict[str, list[str]] = {}
    if suite == "full":
        flagged = {
            r["model"]: r["unreliable"] for r in api.leaderboard(home).rows if r["unreliable"]
        }
        for model, labels in flagged.items():
            err.print(f"unreliable: {model}: {'; '.join(labels)}", highlight=False)
        out.print(
            f"sanity checks stored ({len(flagged)} model(s) flagged); details: `snnbench check`",
            highlight=False,
        )
    attacked = sorted({card["model"]["name"] for card in cards})
    steps = [("snnbench report", f"the leaderboard in {api.home_path(home) / 'leaderboards'}")]
    if suite != "full":
        steps.append(("snnbench check", "the gradient-masking sanity checks"))
    _summary(
        started,
        f"{len(cards)} attack result(s) on {len(attacked)} model(s)",
        str(api.home_path(home) / api.STORE),
        steps,
        home,
    )
    if flagged:
        raise typer.Exit(1)


def _evaluate_own(
    ref: str, data: str, name: str | None, stochastic: bool | None, checks: bool, **options: Any
) -> Any:
    """``attack --model``: import the callable (the user's code, on purpose) and evaluate it."""
    from snnbench.own_model import load_callable

    model, fn = load_callable(ref)
    return api.evaluate(
        model,
        dataset=data,
        name=name or fn,
        stochastic=stochastic,
        checks=checks,
        source=ref,
        **options,
    )


def _print_own(result: Any, home: Path | None) -> None:
    """The module's reading, its headline and flags; exit 1 when a check flagged it."""
    out.print(
        f"{result.name}: {result.model['output']}; randomness {result.model['randomness']}"
        f" -> {'stochastic' if result.stochastic else 'deterministic'}, k_eval "
        f"{result.k_eval}",
        highlight=False,
        soft_wrap=True,
    )
    top = result.headline
    if top:
        out.print(
            f"headline (worst case): {100 * top['acc']:.2f}% [{100 * top['ci95'][0]:.2f}, "
            f"{100 * top['ci95'][1]:.2f}] on {top['n']} samples; results in "
            f"{api.home_path(home) / api.STORE}",
            highlight=False,
            soft_wrap=True,
        )
    if result.flags:
        err.print(f"unreliable: {result.name}: {'; '.join(result.flags)}", highlight=False)
        raise typer.Exit(1)


def _print_cards(cards: list[dict]) -> None:
    table = Table(title="robust accuracy (%)")
    for column in (
        "model",
        "attack",
        "eps",
        "clean",
        "robust",
        "95% CI",
        "n",
        "seconds",
        "images/s",
    ):
        table.add_column(column, overflow="fold")
    for card in cards:
        r = card["result"]
        cascade = card["eval"].get("cascade")
        label = (
            f"→{cascade_member(card)} ({cascade['position']}/{cascade['of']})"
            if cascade
            else attack_label(card)
        )
        table.add_row(
            card["model"]["name"],
            label,
            format_eps(card["attack"]["eps"]),
            f"{100 * r['clean_acc']:.2f}",
            f"{100 * r['robust_acc']:.2f}",
            f"{100 * r['ci95'][0]:.1f}-{100 * r['ci95'][1]:.1f}",
            str(card["eval"]["n"]),
            f"{card['timing']['seconds']:.1f}",
            str(card["timing"].get("images_per_s") or "-"),
        )
    out.print(table)
    seconds = sum(card["timing"]["seconds"] for card in cards)
    attacked = sum(card["eval"].get("attacked", 0) for card in cards)
    if cards and seconds > 0:
        out.print(
            f"attack throughput: {attacked} images attacked in {seconds:.1f} s "
            f"({attacked / seconds:.1f} images/s)"
        )


@app.command()
@command
def check(
    models: Annotated[
        Optional[list[str]], typer.Argument(help="Model names (default: all in the home).")
    ] = None,
    n: Annotated[
        int, typer.Option("--n", help="Test samples the probe checks run on.")
    ] = api.CHECK_N,
    eps: Annotated[
        Optional[str], typer.Option(help="Budget of the probe attacks (default: the recipe's).")
    ] = None,
    eot: Annotated[
        Optional[int], typer.Option(help="EoT draws per step on stochastic models.")
    ] = None,
    only: Annotated[
        Optional[str], typer.Option("--checks", help="Comma-separated check ids, e.g. C07,C08.")
    ] = None,
    own_model: OwnModelOpt = None,
    name: OwnNameOpt = None,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose", help="Print every check's detail (always written to HOME/checks.txt)."
        ),
    ] = False,
    seed: SeedOpt = 0,
    home: HomeOpt = None,
    data_root: DataRootOpt = None,
    device: DeviceOpt = "auto",
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Run the gradient-masking sanity checks and store them; exit 1 when a model is flagged.

    With --model MODULE:CALLABLE, check your own model, stored before by `attack --model`
    (its data set, budget and declaration come from there): this runs that Python code."""
    ids = [c.strip() for c in only.split(",") if c.strip()] if only else None
    started = time.perf_counter()
    if own_model is not None:
        from snnbench.own_model import load_callable

        if models or eps:
            raise SnnbenchError(
                "--model checks one model from code with the budget it was "
                "attacked at; drop the model names and --eps"
            )
        module, fn = load_callable(own_model)
        with _watch(quiet):
            results = {
                name or fn: api.check_own(
                    module,
                    name or fn,
                    home=home,
                    n=n,
                    eot=eot,
                    checks=ids,
                    seed=seed,
                    device=device,
                    data_root=data_root,
                )
            }
    else:
        with _watch(quiet):
            results = api.check(
                models,
                home=home,
                n=n,
                eps=eps,
                eot=eot,
                checks=ids,
                seed=seed,
                device=device,
                data_root=data_root,
            )
    details = api.home_path(home) / "checks.txt"
    flagged = _print_checks(results, details, verbose)
    steps = [("snnbench report", "the leaderboard marks flagged models ⚠ unreliable")]
    if not verbose:
        steps.insert(0, (f"less {details}", "every check's detail"))
    _summary(
        started,
        f"{sum(map(len, results.values()))} check(s) on {len(results)} model(s), "
        f"{len(flagged)} flagged",
        f"{api.home_path(home) / api.STORE}, {details}",
        steps,
        home,
    )
    if flagged:
        err.print(
            f"unreliable: {', '.join(flagged)} (failed checks above; docs/protocol.md)",
            highlight=False,
        )
        raise typer.Exit(1)


@app.command()
@command
def diagnose(
    model: Annotated[str, typer.Argument(help="Model name in the home.")],
    n: Annotated[
        int, typer.Option("--n", help="Test samples (docs/protocol.md: potentials from 1,000).")
    ] = api.DIAGNOSE_N,
    metrics: Annotated[
        Optional[str],
        typer.Option("--metrics", help="Comma-separated: agcs, tnf, sparsity, spike_rate."),
    ] = None,
    seed: SeedOpt = 0,
    home: HomeOpt = None,
    data_root: DataRootOpt = None,
    device: DeviceOpt = "auto",
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Print (and store) AGCS, potentials near the threshold, gradient sparsity and spike rates."""
    names = [m.strip() for m in metrics.split(",") if m.strip()] if metrics else None
    values = api.diagnose(
        model, home=home, n=n, metrics=names, seed=seed, device=device, data_root=data_root
    )
    table = Table(title=model, title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in values.items():
        table.add_row(name, f"{value:.4f}")
    out.print(table)


def _print_checks(results: dict[str, list], details: Path, verbose: bool) -> list[str]:
    """One summary row per model and a line per failed check; every check's detail goes to
    ``details`` (and to the screen with ``verbose``). The flagged models."""
    tables = [_check_table(name, outcomes) for name, outcomes in results.items()]
    details.parent.mkdir(parents=True, exist_ok=True)
    with details.open("w", encoding="utf-8") as file:
        writer = Console(file=file, width=160, color_system=None, soft_wrap=False)
        for table in tables:
            writer.print(table)
    for table in tables if verbose else []:
        out.print(table)
    summary = Table(title="sanity checks", title_justify="left")
    for column in ("model", "passed", "failed", "skipped", "verdict"):
        summary.add_column(column, overflow="fold")
    for name, outcomes in results.items():
        count = lambda status: str(sum(o.status == status for o in outcomes))  # noqa: E731
        bad = [o.id for o in outcomes if o.flags]
        summary.add_row(
            name,
            count("pass"),
            count("fail"),
            count("skip"),
            f"unreliable ({', '.join(bad)})" if bad else "ok",
            style="red" if bad else "",
        )
    out.print(summary)
    for name, outcomes in results.items():
        for o in (o for o in outcomes if o.status == "fail"):
            out.print(
                f"{name}: {o.label() if o.flags else o.id + ' (warning)'}: {o.detail}",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )
    return [name for name, outcomes in results.items() if any(o.flags for o in outcomes)]


def _check_table(name: str, outcomes: list) -> Table:
    """Every check of one model with its detail."""
    table = Table(title=name, title_justify="left")
    for column in ("check", "level", "status", "detail"):
        table.add_column(column, overflow="fold")
    for o in outcomes:
        style = {"fail": "red" if o.flags else "yellow", "skip": "dim"}.get(o.status, "")
        table.add_row(o.id, o.level, o.status, o.detail, style=style)
    return table


@app.command()
@command
def report(
    format: Annotated[
        str,
        typer.Option("--format", help="md, csv, json, all (the three) or html (a static site)."),
    ] = "all",
    out_dir: Annotated[
        Optional[Path],
        typer.Option(
            "--out",
            help="Folder for the files (default: HOME/leaderboards; html: site/; the committed ones: --out leaderboards).",
        ),
    ] = None,
    name: Annotated[Optional[str], typer.Option(help="File name (default: the recipe's).")] = None,
    layout: Annotated[
        str,
        typer.Option(
            help="Table shape: leaderboard, or a paper table (see `snnbench list layouts`)."
        ),
    ] = "leaderboard",
    plots: Annotated[
        Optional[bool],
        typer.Option(
            "--plots/--no-plots",
            help="Draw accuracy vs eps / steps / EoT (PNG and SVG) from the sweep runs (default: when the store holds any).",
        ),
    ] = None,
    home: HomeOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Write the leaderboard (or a paper's table) from the stored result cards."""
    formats = ("md", "csv", "json") if format == "all" else (format,)
    if any(f not in ("md", "csv", "json", "html") for f in formats):
        raise SnnbenchError(f"unknown format {format!r}; choose md, csv, json, all or html")
    if format == "html" and layout != "leaderboard":
        raise SnnbenchError("--format html writes every layout the store can fill; drop --layout")
    out_dir = out_dir or (
        Path("site") if format == "html" else api.home_path(home) / "leaderboards"
    )
    board, written = api.report(
        home, out_dir, formats, name, layout, True if format == "html" else plots
    )
    if format == "html":
        out.print(f"site: {out_dir / 'index.html'} ({len(written)} files)", highlight=False)
        return
    for path in written:
        out.print(f"wrote {path}", highlight=False)


@app.command()
@command
def gate(
    baseline: Annotated[Path, typer.Option(help="Baseline leaderboard json.")],
    tolerance: Annotated[
        float, typer.Option(help="A failure must move more than this many points.")
    ] = 2.0,
    alpha: Annotated[
        float, typer.Option(help="False-alarm rate of the whole gate (a rerun with other seeds).")
    ] = api.GATE_ALPHA,
    allow_rise: Annotated[
        bool, typer.Option("--allow-rise", help="Do not fail significant rises.")
    ] = False,
    home: HomeOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Fail (exit 1) when a robust accuracy moved significantly, paired per sample, by more
    than the tolerance, or a baseline cell has no current result (docs/ci.md)."""
    result = api.gate(baseline, home, tolerance, alpha, allow_rise)
    for cell in result.noise:
        out.print(
            f"noise: {_gate_cell(cell)}, not significant at {result.level:.2g}",
            highlight=False,
            soft_wrap=True,
        )
    for cell in result.rises:
        verdict = (
            "rise (allowed)"
            if result.allow_rise
            else "FAIL rise: an attack got weaker (check its code and settings), or the defence "
            "improved on purpose (then regenerate the baseline or pass --allow-rise)"
        )
        out.print(f"{verdict}: {_gate_cell(cell)}", highlight=False, soft_wrap=True)
    for cell in result.failed:
        out.print(f"FAIL drop: {_gate_cell(cell)}", highlight=False, soft_wrap=True)
    for cell in result.missing:
        out.print(
            f"MISSING: {cell.model} {cell.column}: baseline {100 * cell.before:.2f}, "
            "no current result",
            highlight=False,
            soft_wrap=True,
        )
    verdict = "passed" if result.ok else "FAILED"
    out.print(
        f"gate {verdict}: {result.passed} cells within tolerance, {len(result.noise)} "
        f"within noise, {len(result.failed)} drops, {len(result.rises)} rises, "
        f"{len(result.missing)} missing (per-cell level {result.level:.2g}: {alpha:g} over "
        f"{max(1, result.could_fail)} cells that could fail)",
        highlight=False,
        soft_wrap=True,
    )
    if not result.ok:
        raise typer.Exit(1)


def _gate_cell(cell: Any) -> str:
    return (
        f"{cell.model} {cell.column}: {100 * cell.before:.2f} -> {100 * cell.now:.2f}, "
        f"paired {100 * cell.diff:+.2f} points ({cell.worse} samples worse, {cell.better} "
        f"better), p = {cell.p_value:.2g}"
    )


@app.command()
@command
def run(
    recipe: Annotated[
        Optional[str], typer.Argument(help="Recipe file or zoo name (default: digits).")
    ] = None,
    out_dir: OutOpt = None,
    executor: ExecutorOpt = "local",
    ray_address: RayAddressOpt = None,
    workers: WorkersOpt = None,
    compile_: CompileOpt = False,
    home: HomeOpt = None,
    data_root: DataRootOpt = None,
    device: DeviceOpt = "auto",
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Train the recipe's models, attack them and write the leaderboard."""
    started = time.perf_counter()
    out_dir = out_dir or api.home_path(home) / "leaderboards"
    with _watch(quiet):
        outcome = api.run(
            recipe,
            home=home,
            out=out_dir,
            device=device,
            data_root=data_root,
            executor=executor,
            ray_address=ray_address,
            workers=workers,
            compile=compile_,
        )
    for trained in outcome.trained:
        out.print(f"model {trained.name} ({trained.status}): {trained.folder}", highlight=False)
    out.print(f"results: {api.home_path(home) / api.STORE}", highlight=False)
    _print_cards(outcome.cards)
    for path in outcome.written:
        out.print(f"leaderboard: {path}", highlight=False)
    board = next((p for p in outcome.written if p.suffix == ".json"), out_dir / "BOARD.json")
    markdown = next((p for p in outcome.written if p.suffix == ".md"), board)
    _summary(
        started,
        f"{len(outcome.trained)} model(s), {len(outcome.cards)} attack result(s), "
        "sanity checks stored",
        f"{markdown} (and {api.home_path(home) / api.STORE})",
        [
            ("snnbench report --format html", "a browsable site of these results in site/"),
            (f"snnbench gate --baseline {board}", "in CI: fail when robust accuracy moves"),
        ],
        home,
    )


# `snnbench zoo list|pull|add` (cli_zoo.py), with this module's error mapping
for _info in zoo_app.registered_commands:
    _info.callback = command(_info.callback)
app.add_typer(zoo_app, name="zoo")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
