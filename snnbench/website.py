"""``report --format html``: a static leaderboard site from the result cards (docs/guide.md).

Pages, all in one flat folder so every link is a plain relative file name:

- ``index.html``: the boards, the paper layouts, every model and the plots;
- ``board-<data>-<norm>-<eps>.html``: one leaderboard per data set and threat model, built from
  that budget's result cards only (so MRA and worst case never mix budgets);
- ``model-<name>.html``: a model's card: settings, recipe, training, checks, diagnostics, results;
- ``layout-<name>.html``: a paper table, ours beside the published value and the difference.

Rendered with jinja2 from ``snnbench/templates/``; CSS and the sorting script are inlined, so a
page works from disk with no server and no CDN. Tables are plain HTML (readable with scripts
off); a header click or a URL hash ``#sort=<key>`` (``#sort=-<key>``: descending) sorts them.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from snnbench.checkpoint import load_card
from snnbench.config import format_eps
from snnbench.errors import SnnbenchError
from snnbench.files import atomic_write_text
from snnbench.home import STORE, home_models, home_path, join_model_cards, leaderboard, open_store
from snnbench.layouts import LAYOUTS, LayoutTable, get_layout, render_layout
from snnbench.plots import plot_sweeps
from snnbench.recipe import recipe_or_none
from snnbench.report import (
    BANNER,
    HEADLINE,
    Leaderboard,
    _cell,
    _drop_cell,
    build_leaderboard,
    describe,
    setting_of,
)

TEMPLATES = Path(__file__).resolve().parent / "templates"


@dataclass
class Cell:
    text: str = ""
    sort: str | None = None  # the sort key (a number for numeric columns)
    href: str = ""
    title: str = ""
    note: str = ""  # small print under the text (the interval)
    flag: str = ""  # a warning shown beside the text (unreliable)


@dataclass
class Header:
    key: str
    label: str
    numeric: bool = False


@dataclass
class Grid:
    headers: list[Header]
    rows: list[list[Cell]]
    row_classes: list[str] = field(default_factory=list)


@dataclass
class Board:
    slug: str
    dataset: str
    norm: str
    eps: float
    board: Leaderboard

    @property
    def title(self) -> str:
        setting = self.board.rows[0]["setting"] if self.board.rows else {}
        return (
            f"{self.dataset} · {self.norm} ε = {format_eps(self.eps)} · n = "
            f"{setting.get('n', '?')} · seed {setting.get('seed', '?')}"
        )


def slug(text: str) -> str:
    """A file-name-safe, unique spelling: ``tgo+rat`` -> ``tgo_2brat``."""
    return re.sub(r"[^A-Za-z0-9._-]", lambda m: f"_{ord(m.group()):02x}", text)


def key_of(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-") or "col"


def model_page(name: str) -> str:
    return f"model-{slug(name)}.html"


def _pct(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.2f}"


def interval_cell(acc: float | None, ci: list[float] | None) -> Cell:
    if acc is None:
        return Cell()
    if not ci:
        return Cell(_pct(acc), f"{acc:.6f}")
    text = _cell(acc, ci)  # asymmetric intervals already read [low, high]
    return Cell(
        text,
        f"{acc:.6f}",
        title="95% interval",
        note=f"[{100 * ci[0]:.2f}, {100 * ci[1]:.2f}]" if "±" in text else "",
    )


def threat_boards(cards: list[dict], name: str, checks: dict, diagnostics: dict) -> list[Board]:
    """One leaderboard per setting (data set, norm, eps, samples, seed), from its cards only."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for card in cards:
        s = setting_of(card)
        groups[
            (s["dataset"], s["norm"], s["eps"], s["n"], s["seed"], s["samples"], s["k_eval"])
        ].append(card)
    boards = []
    for (dataset, norm, eps, n, seed, *_), subset in sorted(groups.items()):
        board = build_leaderboard(subset, name, checks, diagnostics)
        if board.rows:
            label = f"{dataset}-{norm}-{format_eps(eps)}-n{n}-s{seed}"
            label += (
                ""
                if not any(b.slug == slug(label.replace("/", "_")) for b in boards)
                else f"-{len(boards)}"
            )
            boards.append(Board(slug(label.replace("/", "_")), dataset, norm, eps, board))
    return boards


def board_grid(board: Leaderboard) -> Grid:
    with_drop = any(row["drop"] for row in board.rows)
    headers = [
        Header("model", "model"),
        Header("headline", HEADLINE, True),
        Header("clean", "clean", True),
        *[Header(key_of(c), c, True) for c in board.columns],
        Header("mra", "MRA", True),
        *([Header("eot-drop", "EoT drop")] if with_drop else []),
        Header("defense", "defense"),
        Header("arch", "arch"),
        Header("t", "T", True),
        Header("n", "n", True),
        Header("device", "device"),
    ]
    rows, classes = [], []
    for row in board.rows:
        flags = row.get("unreliable") or []
        model = Cell(
            row["model"],
            row["model"],
            model_page(row["model"]),
            flag=("unreliable: " + "; ".join(flags)) if flags else "",
        )
        top = row["headline"] or {}
        rows.append(
            [
                model,
                interval_cell(top.get("acc"), top.get("ci95")),
                interval_cell(row["clean"]["acc"], row["clean"]["ci95"]),
                *[
                    interval_cell(row["attacks"][c]["robust_acc"], row["attacks"][c]["ci95"])
                    if c in row["attacks"]
                    else Cell()
                    for c in board.columns
                ],
                interval_cell(row["mra"], row.get("mra_ci95")),
                *([Cell(_drop_cell(row["drop"]))] if with_drop else []),
                Cell(row["defense"]),
                Cell(row["arch"]),
                Cell(str(row["timesteps"]), str(row["timesteps"])),
                Cell(str(row["n"]), str(row["n"])),
                Cell(row["device"]),
            ]
        )
        classes.append("unreliable" if flags else "")
    return Grid(headers, rows, classes)


def cascade_grid(board: Leaderboard) -> Grid | None:
    rows = [row for row in board.rows if row["cascade"]]
    if not rows:
        return None
    order: dict[str, int] = {}
    for row in rows:
        for step in row["cascade"]:
            order[step["member"]] = min(order.get(step["member"], 10**6), step["position"])
    members = sorted(order, key=lambda m: (order[m], m))
    headers = [
        Header("model", "model"),
        Header("clean", "clean", True),
        *[Header(key_of("to-" + m), f"→{m}", True) for m in members],
    ]
    body = []
    for row in rows:
        steps = {s["member"]: s for s in row["cascade"]}
        body.append(
            [
                Cell(row["model"], row["model"], model_page(row["model"])),
                interval_cell(row["clean"]["acc"], row["clean"]["ci95"]),
                *[
                    interval_cell(steps[m]["robust_acc"], steps[m]["ci95"])
                    if m in steps
                    else Cell()
                    for m in members
                ],
            ]
        )
    return Grid(headers, body)


def layout_grid(table: LayoutTable) -> Grid:
    """Per column: ours, the paper's value and Δ side by side."""
    header = table.header
    labels = [c.label for c in table.layout.columns]
    headers = [Header("group", "group"), Header("row", "row"), Header("model", "model")]
    index = []
    for i, label in enumerate(labels):
        headers.append(Header(key_of(label), label, True))
        index.append(3 + i)
        if f"paper {label}" in header:
            headers += [
                Header(key_of("paper " + label), f"paper {label}", True),
                Header(key_of("delta " + label), f"Δ {label}", True),
            ]
            index += [header.index(f"paper {label}"), header.index(f"Δ {label}")]
    rows = []
    for body in table.body:
        model = body[2]
        cells = [
            Cell(body[0]),
            Cell(body[1]),
            Cell(model, model, model_page(model) if model else ""),
        ]
        cells += [Cell(body[i], body[i].rstrip("*") or None) for i in index]
        rows.append(cells)
    return Grid(headers, rows)


def _recipe_summary(card: dict | None) -> dict[str, str] | None:
    """What the model's recipe (zoo/*.toml) says about how it was evaluated, if it is found."""
    recipe = recipe_or_none(card) if card else None
    if recipe is None:
        return None
    return {
        "name": recipe.name,
        "description": recipe.description,
        "dataset": recipe.dataset,
        "budget": f"{recipe.norm} eps = {format_eps(recipe.eps)}",
        "attacks": ", ".join(recipe.attacks),
        "n": str(recipe.n or "whole test split"),
        "EoT / evaluation draws": f"{recipe.eot} / {recipe.k_eval}",
        "layouts": ", ".join(recipe.layouts),
    }


def _environment() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=jinja2.select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.globals.update(banner=BANNER, model_page=model_page, pct=_pct, format_eps=format_eps)
    return env


def write_site(
    out: Path,
    name: str,
    boards: list[Board],
    overall: Leaderboard,
    model_cards: dict[str, dict],
    checks: dict[str, list[dict]],
    layouts: list[LayoutTable],
    figures: list[Path],
) -> list[Path]:
    """Render every page into ``out``; returns the files written."""
    env = _environment()
    out = Path(out)
    images = [f.name for f in figures if f.suffix == ".svg"] or [f.name for f in figures]
    pages = {
        "index.html": env.get_template("index.html").render(
            name=name,
            description=describe(overall),
            boards=boards,
            models=overall.rows,
            layouts=[(f"layout-{t.layout.name}.html", t) for t in layouts],
            images=images,
            mras={b.slug: {r["model"]: r["mra"] for r in b.board.rows} for b in boards},
        )
    }
    for item in boards:
        pages[f"board-{item.slug}.html"] = env.get_template("board.html").render(
            name=name,
            item=item,
            description=describe(item.board),
            grid=board_grid(item.board),
            cascade=cascade_grid(item.board),
        )
    results = defaultdict(list)
    for item in boards:
        for row in item.board.rows:
            results[row["model"]].append((item, row))
    for row in overall.rows:
        pages[model_page(row["model"])] = env.get_template("model.html").render(
            name=name,
            row=row,
            card=model_cards.get(row["model"]),
            results=results[row["model"]],
            checks=checks.get(row["sha256"], []),
            images=images,
            recipe=_recipe_summary(model_cards.get(row["model"])),
            interval=interval_cell,
        )
    for table in layouts:
        pages[f"layout-{table.layout.name}.html"] = env.get_template("layout.html").render(
            name=name, table=table, grid=layout_grid(table)
        )
    written = []
    for file, text in pages.items():
        atomic_write_text(out / file, text)
        written.append(out / file)
    return written


def site_from_home(
    home: str | Path | None, out: Path, name: str | None, plots: bool
) -> tuple[Leaderboard, list[Path]]:
    """The site of a home: boards, the model cards whose weights the results are of, a page per
    paper layout that the recipe names or the store can fill, and the sweep plots, if any."""
    board = leaderboard(home, name)
    if not board.rows:
        raise SnnbenchError(
            f"no finished attack results in {home_path(home) / STORE}; run `snnbench attack` first"
        )
    with open_store(home) as store:
        cards, checks, diagnostics = store.cards(), store.checks(), store.diagnostics()
        recipe_name, recipe_toml = store.get_meta("recipe"), store.get_meta("recipe_toml")
    boards = threat_boards(cards, board.name, checks, diagnostics)
    for item in boards:
        join_model_cards(item.board, home)
    present = set(home_models(home))
    model_cards = {
        row["model"]: card
        for row in board.rows
        if row["model"] in present
        and (card := load_card(row["model"], home_path(home)))["weights_sha256"] == row["sha256"]
    }
    recipe = recipe_or_none({"recipe": recipe_name, "recipe_toml": recipe_toml})
    named = set(recipe.layouts) if recipe else set()
    tables = [
        table
        for layout in LAYOUTS.names()
        if layout != "leaderboard"
        for table in [render_layout(get_layout(layout), board.main_rows())]
        if layout in named or any(r["model"] for r in table.records)
    ]
    figures = plot_sweeps(cards, out, board.name) if plots else []
    return board, figures + write_site(
        out, board.name, boards, board, model_cards, checks, tables, figures
    )
