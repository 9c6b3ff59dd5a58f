"""Paper tables as layouts (evaluation.md section 9): rows and columns of a paper's table,
filled from whatever the store holds, beside the paper's published values.

A layout row names a defence (and the data set and arch of the paper's group); it takes the
leaderboard row of a model with that defence, preferring one with the group's data set and arch.
When the store holds other data (the digits zoo), the runs fill only the layout's first group
and the table says "reduced protocol": the shape of the paper's table with our small-data
numbers, never dressed up as a reproduction. A missing run is a blank cell. Where the spec lists
the paper's value, a second column group shows it and our difference (ours - paper, points).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from tabulate import tabulate

from snnbench.defenses.compose import parse_defense
from snnbench.errors import SnnbenchError
from snnbench.files import atomic_write_json, atomic_write_text
from snnbench.plots import plots_section
from snnbench.registry import Registry
from snnbench.report import BANNER

CLEAN, MRA, DROP, NO_EOT, WITH_EOT = "clean", "mra", "drop", "drop:plain", "drop:eot"
DIAG = "diag:"     # a diagnostic of the model (snnbench diagnose), e.g. "diag:agcs"
RH = "Wang et al., RandHet, iScience 2025"
TGO = "Wang et al., TGO, arXiv 2602.20548"


@dataclass(frozen=True)
class Column:
    label: str
    sources: tuple[str, ...]     # leaderboard columns, first present wins; or CLEAN/MRA/DROP...


@dataclass(frozen=True)
class Row:
    label: str
    defense: str
    group: str = ""
    dataset: str = ""
    arch: str = ""
    published: tuple[float | None, ...] = ()    # aligned with the layout's columns


@dataclass(frozen=True)
class Layout:
    name: str
    title: str
    columns: tuple[Column, ...]
    rows: tuple[Row, ...]
    paper: str = ""
    setting: str = ""            # the paper's data, arch and T, stated in the header
    timesteps: int = 0
    notes: str = ""

    @property
    def groups(self) -> list[str]:
        return list(dict.fromkeys(r.group for r in self.rows))


@dataclass
class LayoutTable:
    layout: Layout
    header: list[str]
    body: list[list[str]]
    records: list[dict[str, Any]] = field(default_factory=list)
    description: str = ""


LAYOUTS: Registry[Layout] = Registry("layout")


def _key(defense: str) -> tuple[str, ...]:
    """Canonical parts, so ``rat+randhet*`` matches ``randhet*+rat``; a paper's defence that
    snnbench lacks (CTRW, RPF) keys as itself and matches no run."""
    try:
        return tuple(parse_defense(defense))
    except SnnbenchError:
        return ("paper-only", defense)


def _value(row: dict[str, Any], column: Column, attack_columns: list[Column]) -> float | None:
    for source in column.sources:
        if source == CLEAN:
            return row["clean"]["acc"]
        if source == MRA:       # the minimum over this layout's attack columns (RandHet's MRA)
            values = [_value(row, c, attack_columns) for c in attack_columns]
            values = [v for v in values if v is not None]
            return min(values) if values else None
        if source in (DROP, NO_EOT, WITH_EOT):
            if not row["drop"]:
                continue
            attack = sorted(row["drop"])[0]
            if source == DROP:
                return row["drop"][attack]["value"]
            name = attack if source == NO_EOT else f"{attack}+eot"
            return row["attacks"][name]["robust_acc"]
        if source.startswith(DIAG):
            value = (row.get("diagnostics") or {}).get(source[len(DIAG):])
            if value is not None:
                return value
            continue
        if source in row["attacks"]:
            return row["attacks"][source]["robust_acc"]
    return None


def _match(layout: Layout, spec: Row, rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The leaderboard row for a layout row: same defence, the group's data set and arch; a run
    whose data set (or, on the paper's data, arch) the layout does not cover fills the first
    group only (a reduced protocol)."""
    same = [r for r in rows if _key(r["defense"]) == _key(spec.defense)]
    exact = [r for r in same if r["dataset"] == spec.dataset and (not spec.arch or r["arch"] == spec.arch)]
    if exact:
        return exact[0]
    datasets = {r.dataset for r in layout.rows}
    archs = {r.arch for r in layout.rows if r.dataset == spec.dataset}
    first = next(r.group for r in layout.rows if r.dataset == spec.dataset)
    loose = [r for r in same if r["dataset"] == spec.dataset and r["arch"] not in archs]
    if loose and spec.group == first:
        return loose[0]
    other = [r for r in same if r["dataset"] not in datasets]
    return other[0] if other and spec.group == layout.groups[0] else None


def render_layout(layout: Layout, rows: list[dict[str, Any]]) -> LayoutTable:
    attack_columns = [c for c in layout.columns if not set(c.sources) & {CLEAN, MRA, DROP}
                      and not _is_diag(c)]
    published = [i for i, c in enumerate(layout.columns)
                 if any(i < len(r.published) and r.published[i] is not None for r in layout.rows)]
    header = ["group", "row", "model", *[c.label for c in layout.columns],
              *[f"paper {layout.columns[i].label}" for i in published],
              *[f"Δ {layout.columns[i].label}" for i in published]]
    body, records, used = [], [], []
    for spec in layout.rows:
        match = _match(layout, spec, rows)
        ours = [_value(match, c, attack_columns) if match else None for c in layout.columns]
        paper = [spec.published[i] if i < len(spec.published) else None for i in published]
        # A difference only means something on the paper's own data set.
        comparable = match is not None and match["dataset"] == spec.dataset
        # diagnostics (AGCS) are plain numbers; everything else is a rate shown in %
        diff = [None if not comparable or ours[i] is None or p is None
                else (ours[i] if _is_diag(layout.columns[i]) else 100 * ours[i]) - p
                for i, p in zip(published, paper)]
        if match:
            used.append(match)
        body.append([spec.group, spec.label, match["model"] if match else "",
                     *[_num(v, digits=4) if _is_diag(c) else _pct(v)
                       for v, c in zip(ours, layout.columns)], *[_num(p) for p in paper],
                     *[_num(d, signed=True) for d in diff]])
        records.append({"group": spec.group, "row": spec.label, "defense": spec.defense,
                        "model": match["model"] if match else None,
                        "ours": dict(zip([c.label for c in layout.columns], ours)),
                        "paper": {layout.columns[i].label: p for i, p in zip(published, paper)}})
    return LayoutTable(layout, header, body, records, _describe(layout, used))


def _is_diag(column: Column) -> bool:
    return any(s.startswith(DIAG) for s in column.sources)


def _describe(layout: Layout, used: list[dict[str, Any]]) -> str:
    if not used:
        return (f"{layout.title}. Paper setting: {layout.setting}. No stored run matches a row "
                "yet: every cell of ours is blank.")
    data = sorted({r["dataset"] for r in used})
    archs = sorted({r["arch"] for r in used})
    steps = sorted({r["timesteps"] for r in used})
    samples = sorted({r["n"] for r in used})
    devices = sorted({d for r in used for d in r["device"].split(",")})
    expected = {r.dataset for r in layout.rows}
    reduced = (not set(data) <= expected or any(n < 10000 for n in samples)
               or (layout.timesteps and steps != [layout.timesteps]))
    note = ("REDUCED PROTOCOL: our runs differ from the paper's setting (data, arch, T or n), so "
            "the differences compare shapes, not a reproduction" if reduced else
            "paper protocol")
    return (f"{layout.title} ({layout.paper}). Paper setting: {layout.setting}. Ours: data "
            f"{', '.join(data)}, arch {', '.join(archs)}, T = {', '.join(map(str, steps))}, "
            f"n = {', '.join(map(str, samples))}, device {', '.join(devices)}. {note}. Accuracy "
            "in %; Δ = ours - paper in points, only for runs on the paper's data set; a blank cell: no "
            "run, or no published value."
            + (f" {layout.notes}" if layout.notes else ""))


def _pct(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.2f}"


def _num(value: float | None, signed: bool = False, digits: int = 2) -> str:
    if value is None:
        return ""
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def get_layout(name: str) -> Layout:
    if name == "leaderboard":
        raise SnnbenchError("'leaderboard' is the generic table: run `snnbench report` without --layout")
    return LAYOUTS.get(name)


# --- the papers' tables ---------------------------------------------------------------------

def _add(layout: Layout, summary: str) -> None:
    LAYOUTS.add(layout.name, layout, summary=summary, paper=layout.paper)


LAYOUTS.add("leaderboard", None, summary="the generic table: a row per model, a column per "  # type: ignore[arg-type]
            "attack, MRA, worst case, EoT drop (the default)", paper="snnbench")

_RH1_COLUMNS = (Column("Clean", (CLEAN,)), Column("FGSM", ("fgsm",)),
                Column("PGD10", ("pgd10-rh", "pgd10")), Column("APGD10", ("apgd10-rh", "apgd10")),
                Column("MIFGSM", ("mifgsm",)), Column("AutoAttack", ("autoattack-standard",)),
                Column("MRA", (MRA,)))
_RH1_PUBLISHED = {
    ("cifar10", "at"): (86.38, 49.48, 41.10, 33.31, 45.24, 29.29, 29.29),
    ("cifar10", "randhet+rat"): (90.25, 53.53, 44.86, 47.20, 47.46, 47.76, 44.86),
    ("cifar100", "randhet+rat"): (68.45, 31.84, 25.56, 28.88, 27.45, 27.12, 25.56),
}
_add(Layout(
    "randhet-table1", "RandHet Table 1: robust accuracy and MRA", _RH1_COLUMNS,
    tuple(Row(f"{model}+{method.upper()}", f"{prefix}{method}", group, dataset, "sew-resnet19",
              _RH1_PUBLISHED.get((dataset, f"{prefix}{method}"), ()))
          for group, dataset in (("CIFAR-10", "cifar10"), ("CIFAR-100", "cifar100"))
          for method in ("at", "rat", "sr")
          for model, prefix in (("SNN", ""), ("RandHet", "randhet+"), ("RandHet*", "randhet*+"))),
    RH, "CIFAR-10/100, SEW-ResNet19, T = 8, eps 8/255, full test split", 8,
    "Our AutoAttack is the original standard version, stronger than the paper's torchattacks one."),
    "RandHet Table 1: {SNN, RandHet, RandHet*} x {AT, RAT, SR}; Clean, FGSM, PGD10, APGD10, "
    "MIFGSM, AutoAttack, MRA")

_add(Layout(
    "randhet-table3", "RandHet Table 3: EoT drop against other stochastic defences",
    (Column("Clean", (CLEAN,)), Column("RA no EoT", (NO_EOT,)), Column("RA EoT", (WITH_EOT,)),
     Column("Drop", (DROP,))),
    (Row("CTRW", "ctrw", "CIFAR-10", "cifar10", "", (84.37, 65.53, 27.31, 38.22)),
     Row("RNA", "rna", "CIFAR-10", "cifar10"),
     Row("RPF", "rpf", "CIFAR-10", "cifar10", "", (90.01, 40.19, 34.62, 5.57)),
     Row("RandHet", "randhet+rat", "CIFAR-10", "cifar10", "", (90.12, 43.50, 40.15, 3.35)),
     Row("StoG (ours)", "stog", "CIFAR-10", "cifar10"),
     Row("TGO (ours)", "tgo", "CIFAR-10", "cifar10")),
    RH, "CIFAR-10, SEW-ResNet19, T = 8, RAT, eps 8/255", 8,
    "CTRW, RNA and RPF are not snnbench defences (blank); StoG and TGO rows are ours. RA no EoT / "
    "EoT: the first Drop pair the model ran (e.g. `pgd10` and `pgd10+eot`)."),
    "RandHet Table 3: Clean, RA without and with EoT, Drop")

_TGO1_COLUMNS = (Column("Clean", (CLEAN,)), Column("FGSM", ("fgsm",)), Column("RFGSM", ("rfgsm",)),
                 Column("PGD7", ("pgd7",)), Column("PGD10", ("pgd10",)), Column("PGD20", ("pgd20",)),
                 Column("PGD40", ("pgd40",)))
_TGO1_WRN = {   # secondary source (summaries of the arXiv version); PGD7 not reported there
    "vanilla": (93.32, 14.05, 31.21, None, 0.00, 0.00, 0.00),
    "tgo": (88.79, 51.40, 71.38, None, 6.14, 1.52, 0.45),
    "at": (91.32, 39.14, 74.31, None, 17.45, 14.41, 12.93),
    "tgo+at": (88.16, 63.03, 79.69, None, 35.01, 24.76, 20.11),
    "rat": (91.44, 42.02, 75.89, None, 19.81, 16.24, 14.18),
    "tgo+rat": (87.33, 69.16, 79.28, None, 47.69, 38.07, 33.13),
}
_TGO_ROWS = {"VGG-11": ("vgg11", ("vanilla", "dlif", "stog", "tgo", "at", "stog+at", "tgo+at",
                                  "rat", "stog+rat", "tgo+rat")),
             "WRN-16-4": ("wrn16", ("vanilla", "dlif", "sr", "tgo", "at", "dlif+at", "sr+at",
                                    "tgo+at", "rat", "dlif+rat", "tgo+rat"))}


def _tgo_rows(dataset: str, published: dict[str, tuple]) -> tuple[Row, ...]:
    return tuple(Row(defense, defense, group, dataset, arch,
                     published.get(defense, ()) if group == "WRN-16-4" else ())
                 for group, (arch, defenses) in _TGO_ROWS.items() for defense in defenses)


_add(Layout("tgo-table1", "TGO Table 1: CIFAR-10", _TGO1_COLUMNS, _tgo_rows("cifar10", _TGO1_WRN),
            TGO, "CIFAR-10, VGG-11 and WRN-16-4, T = 4, eps 8/255", 4,
            "Published WRN-16 values come from summaries of the arXiv version (secondary); "
            "VGG-11 and the dlif/stog/sr rows await transcription from the PDF."),
     "TGO Table 1 (CIFAR-10): BPTT/AT/RAT rows per arch; Clean, FGSM, RFGSM, PGD7-40")
_add(Layout("tgo-table2", "TGO Table 2: CIFAR-100", _TGO1_COLUMNS, _tgo_rows("cifar100", {}),
            TGO, "CIFAR-100, VGG-11 and WRN-16-4, T = 4, eps 8/255", 4,
            "Published values not recovered yet (transcribe from the PDF)."),
     "TGO Table 2 (CIFAR-100): as Table 1")
_TGO3_COLUMNS = tuple(Column(f"MTPGD{n}", (f"mtpgd{n}+eot", f"mtpgd{n}")) for n in (7, 10, 20, 40)) + \
    tuple(Column(f"APGD{n}", (f"apgd{n}+eot", f"apgd{n}")) for n in (7, 10, 20, 40))
_add(Layout("tgo-table3", "TGO Table 3: MTPGD and APGD with EoT, CIFAR-100", _TGO3_COLUMNS,
            (Row("AT", "at", "WRN-16", "cifar100", "wrn16",
                 (10.01, 7.56, 5.66, 3.92, 9.34, None, None, 3.62)),
             Row("SR+AT", "sr+at", "WRN-16", "cifar100", "wrn16",
                 (16.88, None, None, 7.33, 14.48, 12.78, 8.83, 7.20)),
             Row("TGO+AT", "tgo+at", "WRN-16", "cifar100", "wrn16",
                 (21.23, 16.35, 10.58, 7.40, 18.93, 14.32, 9.71, 7.53))),
            TGO, "CIFAR-100, WRN-16, T = 4, eps 8/255, EoT on stochastic models", 4,
            "Published values from summaries (secondary). A stochastic model's cell is its EoT run "
            "where one exists."),
     "TGO Table 3 (CIFAR-100, WRN-16): MTPGD and APGD 7/10/20/40 with EoT")


def write_layout(table: LayoutTable, out: Path, name: str, formats: tuple[str, ...],
                 plots: list[Path] | None = None) -> list[Path]:
    """``out/<name>-<layout>.{md,csv,json}``; returns the paths written."""
    written = []
    stem = f"{name}-{table.layout.name}"
    for fmt in formats:
        path = out / f"{stem}.{fmt}"
        if fmt == "md":
            grid = tabulate(table.body, headers=table.header, tablefmt="pipe", disable_numparse=True)
            atomic_write_text(path, f"<!-- {BANNER} -->\n# {table.layout.title}\n\n"
                                    f"{table.description}\n\n{grid}\n" + plots_section(plots or []))
        elif fmt == "csv":
            frame = pd.DataFrame(table.body, columns=table.header)
            atomic_write_text(path, f"# {BANNER}\n" + frame.to_csv(index=False))
        elif fmt == "json":
            atomic_write_json(path, {"schema": "snnbench.layout/1", "banner": BANNER,
                                     "layout": table.layout.name, "title": table.layout.title,
                                     "description": table.description, "rows": table.records})
        written.append(path)
    return written
