"""``snnbench zoo list | pull NAME | add PATH --url URL``: the model zoo's commands (zoo.py).

cli.py adds ``zoo_app`` to the app and wraps each command with its error mapping (``command``),
so a ``SnnbenchError`` here is one stderr line and exit 2 like everywhere else."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table

from snnbench import api

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
QuietOpt = Annotated[bool, typer.Option("--quiet", help="No progress bars.")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")]

zoo_app = typer.Typer(
    no_args_is_help=True, help="Shared checkpoints: list, pull (sha256-checked) and add."
)
ManifestOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--manifest",
        envvar="SNNBENCH_ZOO",
        help="Zoo manifest (default: the packaged zoo/models.toml plus ./zoo/models.toml, where `zoo add` writes).",
    ),
]


@zoo_app.command("list")
def zoo_list(manifest: ManifestOpt = None, debug: DebugOpt = False) -> None:
    """List the zoo's models: defence, arch, data, T, size, licence."""
    from snnbench import zoo

    entries = zoo.read_manifest(manifest)
    if not entries:
        err.print(f"no models in {zoo.describe_manifests(manifest)}", highlight=False)
        return
    table = Table(box=None)
    table.add_column("name", no_wrap=True)
    for column in ("defense", "arch", "data", "T", "clean", "MB", "licence", "recipe"):
        table.add_column(column, overflow="fold")
    for e in entries.values():
        clean = f"{100 * e.clean_accuracy:.2f}" if isinstance(e.clean_accuracy, float) else ""
        table.add_row(
            e.name,
            e.defense,
            e.arch,
            e.dataset,
            str(e.timesteps),
            clean,
            f"{e.size / 1e6:.2f}",
            e.licence,
            e.recipe,
        )
    out.print(table)


@zoo_app.command("pull")
def zoo_pull(
    name: Annotated[str, typer.Argument(help="Zoo model name (see `snnbench zoo list`).")],
    manifest: ManifestOpt = None,
    home: HomeOpt = None,
    quiet: QuietOpt = False,
    as_name: Annotated[
        Optional[str],
        typer.Option(
            "--name",
            help="Install under this name (default: the zoo's), e.g. when the home already has a model of that name.",
        ),
    ] = None,
    debug: DebugOpt = False,
) -> None:
    """Download a zoo model into the home (resumable, sha256-checked); `snnbench.load(NAME)` finds it."""
    from rich.progress import DownloadColumn, TransferSpeedColumn

    from snnbench import zoo

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=err,
        disable=quiet or not err.is_terminal,
    ) as bar:
        task = bar.add_task(f"pull {name}", total=None)
        folder, status = zoo.pull(
            name,
            api.home_path(home),
            manifest,
            lambda done, total: bar.update(task, completed=done, total=total),
            as_name,
        )
    out.print(f"{status}: {name} -> {folder}", highlight=False)


@zoo_app.command("add")
def zoo_add(
    path: Annotated[
        str, typer.Argument(help="Checkpoint folder, model name in the home, or a zoo .tar.")
    ],
    url: Annotated[
        str,
        typer.Option(
            help="Where the .tar will be downloadable: https://..., hf://owner/repo/file."
        ),
    ],
    manifest: Annotated[
        Optional[Path],
        typer.Option(
            "--manifest",
            envvar="SNNBENCH_ZOO",
            help="Manifest to write (default: ./zoo/models.toml, which `zoo list` reads too).",
        ),
    ] = None,
    name: Annotated[Optional[str], typer.Option(help="Zoo name (default: the model's).")] = None,
    dist: Annotated[Path, typer.Option("--dist", help="Folder for the packed .tar.")] = Path(
        "zoo-dist"
    ),
    licence: Annotated[str, typer.Option(help="Licence of the weights.")] = "unspecified",
    paper: Annotated[str, typer.Option(help="Paper (default: the defence's).")] = "",
    home: HomeOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Write a manifest entry (sha256, size, card fields) for a local checkpoint; upload the .tar to URL."""
    from snnbench import zoo

    entry, archive = zoo.add(
        path,
        url,
        manifest=manifest,
        name=name,
        out=dist,
        licence=licence,
        paper=paper,
        home=api.home_path(home),
    )
    out.print(
        f"added {entry.name} to {zoo.write_target(manifest)}: {archive} ({entry.size} bytes, sha256 "
        f"{entry.sha256}); upload it to {url}",
        highlight=False,
    )
