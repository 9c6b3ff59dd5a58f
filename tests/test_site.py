"""``report --format html`` (issue 9): the static site, parsed with the standard library's
html.parser; and, when a Chromium binary is found, the sorting script in a headless browser."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from typer.testing import CliRunner

from snnbench.checkpoint import CARD, WEIGHTS, save_weights
from snnbench.cli import app
from snnbench.files import atomic_write_json

runner = CliRunner()
OTHER = "vanilla-b"


class Page(HTMLParser):
    """Links, image sources, tables (headers, rows with their classes and cell texts)."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.images: list[str] = []
        self.tables: list[dict] = []
        self.scripts = 0
        self._cell: list[str] | None = None
        self._row: dict | None = None
        self._head = False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attr = dict(attrs)
        if tag == "a" and "href" in attr:
            self.links.append(attr["href"])
        elif tag == "img":
            self.images.append(attr["src"])
        elif tag == "script":
            self.scripts += 1
            assert "src" not in attr  # inline only: no CDN, no server
        elif tag == "link" and attr.get("rel") == "stylesheet":
            raise AssertionError("external stylesheet")
        elif tag == "table":
            self.tables.append({"id": attr.get("id"), "headers": [], "keys": [], "rows": []})
        elif tag == "thead":
            self._head = True
        elif tag == "tbody":
            self._head = False
        elif tag == "tr" and self.tables and not self._head:
            self._row = {"class": attr.get("class") or "", "cells": []}
            self.tables[-1]["rows"].append(self._row)
        elif tag in ("td", "th"):
            self._cell = []
            if tag == "th" and self._head:
                self.tables[-1]["keys"].append(attr.get("data-key"))

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            text = " ".join("".join(self._cell).split())
            if self._head:
                self.tables[-1]["headers"].append(text)
            elif self._row is not None:
                self._row["cells"].append(text)
            self._cell = None


def parse(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def add_second_model(home: Path) -> None:
    """A copy of the trained model under another name with slightly other weights."""
    import torch

    import snnbench

    source, target = home / "models" / "vanilla-tiny-digits", home / "models" / OTHER
    shutil.copytree(source, target)
    model = snnbench.load(source)
    with torch.no_grad():
        next(model.parameters()).add_(1e-3)
    card = json.loads((target / CARD).read_text())
    from safetensors import safe_open

    with safe_open(str(source / WEIGHTS), framework="pt") as handle:
        meta = json.loads(handle.metadata()["snnbench"])
    card["name"], card["recipe"] = OTHER, "digits"
    card["weights_sha256"] = save_weights(target / WEIGHTS, model, meta)
    atomic_write_json(target / CARD, card)


@pytest.fixture(scope="module")
def site(trained_home, tmp_path_factory) -> tuple[Path, Path]:
    """Two models attacked at two budgets, one flagged by a failed check; the site written."""
    tmp = tmp_path_factory.mktemp("site")
    home = tmp / "home"
    shutil.copytree(trained_home, home)
    add_second_model(home)
    for eps, attacks in (("32/255", "fgsm,pgd10"), ("8/255", "fgsm")):
        result = runner.invoke(
            app,
            [
                "attack",
                "--attacks",
                attacks,
                "--steps",
                "3",
                "--eps",
                eps,
                "--n",
                "30",
                "--home",
                str(home),
                "--quiet",
            ],
        )
        assert result.exit_code == 0, result.output
    from snnbench import api
    import snnbench

    with api.open_store(home) as store:
        store.set_meta("recipe", "digits")
        sha = snnbench.load_card(OTHER, home)["weights_sha256"]
        store.put_checks(
            sha,
            [
                {"id": "C03", "level": "unreliable", "status": "fail", "detail": "x"},
                {"id": "C02", "level": "error", "status": "pass", "detail": ""},
            ],
        )
    out = tmp / "site"
    result = runner.invoke(
        app, ["report", "--format", "html", "--out", str(out), "--home", str(home)]
    )
    assert result.exit_code == 0, result.output
    assert "site:" in result.stdout
    return out, home


def test_pages_and_links(site):
    out, _ = site
    pages = sorted(p.name for p in out.glob("*.html"))
    assert "index.html" in pages
    boards = [p for p in pages if p.startswith("board-")]
    assert len(boards) == 2  # digits at 32/255 and at 8/255
    assert {f"model-{m}.html" for m in ("vanilla-tiny-digits", OTHER)} <= set(pages)
    # the recipe's layouts (digits: randhet-table1, tgo-table2) get their pages
    assert {"layout-randhet-table1.html", "layout-tgo-table2.html"} <= set(pages)
    for name in pages:
        page = parse(out / name)
        assert page.scripts == 1
        for link in page.links + page.images:
            target = urlsplit(link)
            assert not target.scheme and not target.netloc, link  # nothing off the site
            assert (out / target.path).is_file(), f"{name} links to missing {link}"
    index = parse(out / "index.html")
    models = next(t for t in index.tables if t["id"] == "models")
    assert models["headers"][-3:] == ["MRA Linf 8/255", "MRA Linf 32/255", "checks"]
    for model in ("vanilla-tiny-digits", OTHER):
        assert f"model-{model}.html" in index.links


def test_board_table_headers_intervals_and_unreliable_rows(site):
    out, _ = site
    tables = [
        t for p in out.glob("board-*.html") for t in parse(p).tables if t["id"] == "leaderboard"
    ]
    assert len(tables) == 2
    for table in tables:
        assert table["headers"][:3] == ["model", "headline (worst case)", "clean"]
        assert {"fgsm", "MRA", "defense", "n"} <= set(table["headers"])
        headline = [float(r["cells"][1].split()[0]) for r in table["rows"]]
        assert headline == sorted(headline, reverse=True)  # ranked by the headline
        assert table["keys"][table["headers"].index("MRA")] == "mra"
        rows = {r["cells"][0].split()[0]: r for r in table["rows"]}
        assert set(rows) == {"vanilla-tiny-digits", OTHER}
        assert rows[OTHER]["class"] == "unreliable" and rows["vanilla-tiny-digits"]["class"] == ""
        assert "unreliable: C03" in rows[OTHER]["cells"][0]
        clean = rows["vanilla-tiny-digits"]["cells"][2]
        assert re.fullmatch(r"\d+\.\d\d( ± \d+\.\d\d)? \[\d+\.\d\d, \d+\.\d\d\]", clean), clean


def test_model_card_page_and_layout_page(site):
    out, _ = site
    page = parse(out / f"model-{OTHER}.html")
    text = (out / f"model-{OTHER}.html").read_text()
    assert "unreliable: C03" in text and "neuron.decay" in text and "Library versions" in text
    recipe = next(t for t in page.tables if t["id"] == "recipe")
    assert "32/255" in " ".join(c for r in recipe["rows"] for c in r["cells"])
    checks = next(t for t in page.tables if t["id"] == "checks")
    assert [r["cells"][:3] for r in checks["rows"]] == [
        ["C02", "error", "pass"],
        ["C03", "unreliable", "fail"],
    ]
    results = next(t for t in page.tables if t["id"] == "results")
    assert len(results["rows"]) == 3  # fgsm and pgd10 at 32/255, fgsm at 8/255
    layout = next(t for t in parse(out / "layout-tgo-table1.html").tables if t["id"] == "layout")
    assert layout["headers"][:4] == ["group", "row", "model", "Clean"]
    assert layout["headers"][4:7] == [
        "paper Clean",
        "Δ Clean",
        "FGSM",
    ]  # ours, paper, Δ side by side
    filled = [r for r in layout["rows"] if r["cells"][2]]
    assert filled and filled[0]["cells"][1] == "vanilla"
    assert "REDUCED PROTOCOL" in (out / "layout-tgo-table1.html").read_text()


def test_html_rejects_a_layout_option(site):
    _, home = site
    result = runner.invoke(
        app,
        ["report", "--format", "html", "--layout", "tgo-table1", "--home", str(home), "--out", "x"],
    )
    assert result.exit_code == 2 and "drop --layout" in result.stderr


# --- a real browser, when one is installed --------------------------------------------------


def chromium() -> str | None:
    return next(
        (
            path
            for name in ("chromium", "chromium-browser", "google-chrome")
            if (path := shutil.which(name))
        ),
        None,
    )


def headless(binary: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-dev-shm-usage",
            "--virtual-time-budget=500",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.skipif(
    chromium() is None, reason="no chromium, chromium-browser or google-chrome binary"
)
def test_sorting_and_links_in_headless_chromium(site, tmp_path):
    binary = chromium()
    out, _ = site
    board = sorted(out.glob("board-*.html"))[0]
    orders = {}
    for key in ("-mra",):
        dom = headless(binary, "--dump-dom", f"{board.resolve().as_uri()}#sort={key}")
        assert dom.returncode == 0, dom.stderr[-2000:]
        page = Page()
        page.feed(dom.stdout)
        table = next(t for t in page.tables if t["id"] == "leaderboard")
        assert f'data-sorted="{key}"' in dom.stdout
        orders[key] = [r["cells"][0].split()[0] for r in table["rows"]]
        if key.lstrip("-") == "mra":
            values = [float(r["cells"][table["headers"].index("MRA")]) for r in table["rows"]]
            assert values == sorted(values, reverse=key.startswith("-"))
    assert 'aria-sort="descending"' in dom.stdout and len(orders["-mra"]) == 2
    # follow the first model link: its card page loads and names the model
    link = next(link for link in parse(board).links if link.startswith("model-"))
    card = headless(binary, "--dump-dom", (out / link).resolve().as_uri())
    assert card.returncode == 0 and "<h1>" in card.stdout and "Sanity checks" in card.stdout
    shot = tmp_path / "board.png"  # for a person to look at: pytest keeps tmp_path
    headless(binary, f"--screenshot={shot}", "--window-size=1200,800", board.resolve().as_uri())
    assert shot.is_file() and shot.stat().st_size > 1000


def test_page_names_are_safe_and_distinct():
    from snnbench.website import key_of, slug

    names = ["randhet*+rat", "randhet-star+rat", "tgo+rat", "tgo_rat", "../x"]
    slugs = [slug(n) for n in names]
    assert len(set(slugs)) == len(names) and all(re.fullmatch(r"[A-Za-z0-9._-]+", s) for s in slugs)
    assert "/" not in slug("../x") and key_of("worst case") == "worst-case"
