"""Paper layouts (issue 6, part): header and row set of each paper table, blanks for missing
runs, the published values beside ours, and the reduced-protocol rule."""

from __future__ import annotations

import pytest

from snnbench.errors import SnnbenchError
from snnbench.layouts import (
    CLEAN,
    DIAG,
    DROP,
    LAYOUTS,
    MODEL,
    MRA,
    NO_EOT,
    WITH_EOT,
    get_layout,
    render_layout,
)

PAPER_ONLY = {"ctrw", "rna", "rpf"}  # RandHet Table 3's other defences: not in snnbench
PAPER_LAYOUTS = [n for n in LAYOUTS.names() if n != "leaderboard"]


def synthetic_row(
    defense: str,
    dataset: str,
    arch: str,
    acc: float = 0.5,
    settings: dict | None = None,
    timesteps: int = 4,
) -> dict:
    """A leaderboard row with every attack column any layout reads, all at ``acc``, and every
    diagnostic and model-card number at ``acc`` too."""
    attacks, extra = {}, {"diagnostics": {}}
    for layout in PAPER_LAYOUTS:
        for column in get_layout(layout).columns:
            for source in column.sources:
                if source.startswith(DIAG):
                    extra["diagnostics"][source[len(DIAG) :]] = acc
                elif source.startswith(MODEL):
                    extra[source[len(MODEL) :]] = acc
                elif source not in (CLEAN, MRA, DROP, NO_EOT, WITH_EOT):
                    attacks[source] = {"robust_acc": acc}
    attacks["pgd10+eot"] = {"robust_acc": acc - 0.1}
    return {
        "model": f"{defense}-{arch}-{dataset}",
        "defense": defense,
        "arch": arch,
        "dataset": dataset,
        "timesteps": timesteps,
        "n": 10000,
        "device": "cuda",
        "clean": {"acc": 0.9},
        "attacks": attacks,
        "settings": settings or {},
        "drop": {"pgd10": {"value": 0.1, "ci95": [0.05, 0.15]}},
        **extra,
    }


@pytest.mark.parametrize("name", PAPER_LAYOUTS)
def test_layout_shape_and_blanks(name):
    layout = get_layout(name)
    empty = render_layout(layout, [])
    labels = [c.label for c in layout.columns]
    assert empty.header[: 3 + len(labels)] == ["group", "row", "model", *labels]
    assert [(r[0], r[1]) for r in empty.body] == [(r.group, r.label) for r in layout.rows]
    assert all(cell == "" for row in empty.body for cell in row[2 : 2 + 1 + len(labels)])
    assert "No stored run" in empty.description

    first = next(r for r in layout.rows if r.defense not in PAPER_ONLY)
    table = render_layout(
        layout,
        [
            synthetic_row(
                first.defense,
                first.dataset,
                first.arch or "x",
                settings=dict(first.settings),
                timesteps=first.timesteps or 4,
            )
        ],
    )
    filled = [r for r in table.body if r[2]]
    assert filled and filled[0][1] == first.label
    (record,) = [r for r in table.records if r["model"]]
    for column in layout.columns:
        value = record["ours"][column.label]
        assert value is not None, column.label
        published = record["paper"].get(column.label)
        if published is not None:
            diff = filled[0][table.header.index(f"Δ {column.label}")]
            plain = any(src.startswith((DIAG, MODEL)) for src in column.sources)
            expected = (value if plain else 100 * value) - published
            assert float(diff) == pytest.approx(expected, abs=0.01)


def test_values_mra_and_drop_columns():
    table = render_layout(
        get_layout("randhet-table1"), [synthetic_row("at", "cifar10", "sew-resnet19")]
    )
    record = table.records[0]
    assert record["row"] == "SNN+AT" and record["ours"]["Clean"] == 0.9
    assert record["ours"]["MRA"] == 0.5  # min over the attack columns
    uneven = synthetic_row("at", "cifar10", "sew-resnet19")
    uneven["attacks"]["fgsm"] = {"robust_acc": 0.7}
    uneven["attacks"]["pgd10-rh"] = {"robust_acc": 0.2}
    (mine,) = render_layout(get_layout("randhet-table1"), [uneven]).records[:1]
    assert mine["ours"]["MRA"] == 0.2  # not the max, not the first
    assert record["paper"]["MRA"] == 29.29
    drop = render_layout(
        get_layout("randhet-table3"), [synthetic_row("rat+randhet", "cifar10", "sew-resnet19")]
    )
    (mine,) = [r for r in drop.records if r["model"]]
    assert mine["row"] == "RandHet"  # defence order does not matter
    assert mine["ours"] == {
        "Clean": 0.9,
        "RA no EoT": 0.5,
        "RA EoT": pytest.approx(0.4),
        "Drop": 0.1,
    }


def test_other_data_fills_the_first_group_only_and_says_reduced():
    rows = [synthetic_row("rat", "digits", "tiny")]
    table = render_layout(get_layout("randhet-table1"), rows)
    filled = [r for r in table.body if r[2]]
    assert [r[0] for r in filled] == ["CIFAR-10"]
    assert "REDUCED PROTOCOL" in table.description
    assert all(cell == "" for r in filled for cell in r[table.header.index("Δ Clean") :])


def test_rows_picked_by_setting_and_time_steps():
    ablated = synthetic_row("tgo", "cifar100", "vgg11", 0.3, {"tgo.mc": False, "tgo.nlif": True})
    full = synthetic_row("tgo", "cifar100", "vgg11", 0.6, {"tgo.mc": True, "tgo.nlif": True})
    table = render_layout(get_layout("tgo-table4"), [ablated, full])
    by_row = {(r["group"], r["row"]): r["ours"]["FGSM"] for r in table.records}
    assert by_row[("BPTT", "✗ MC ✓ NLIF")] == 0.3 and by_row[("BPTT", "✓ MC ✓ NLIF")] == 0.6
    assert by_row[("BPTT", "✓ MC ✗ NLIF")] is None
    t8 = synthetic_row("randhet+rat", "cifar10", "sew-resnet19", timesteps=8)
    nine = {r["row"]: r["model"] for r in render_layout(get_layout("randhet-table9"), [t8]).records}
    assert nine == {"T = 4": None, "T = 6": None, "T = 8": t8["model"]}


def test_mra_over_only_some_attack_columns_is_marked():
    row = synthetic_row("at", "cifar10", "sew-resnet19")
    del row["attacks"]["mifgsm"]
    table = render_layout(get_layout("randhet-table1"), [row])
    assert table.body[0][table.header.index("MRA")] == "50.00*"


def test_generic_name_and_unknown_layout():
    with pytest.raises(SnnbenchError, match="generic"):
        get_layout("leaderboard")
    with pytest.raises(SnnbenchError, match="did you mean"):
        get_layout("randhet-tabel1")


def test_report_layout_through_the_cli(home, tmp_path):
    from typer.testing import CliRunner

    from snnbench.cli import app

    runner = CliRunner()
    assert (
        runner.invoke(
            app, ["attack", "--attacks", "fgsm", "--n", "40", "--home", str(home), "--quiet"]
        ).exit_code
        == 0
    )
    result = runner.invoke(
        app,
        [
            "report",
            "--layout",
            "tgo-table1",
            "--format",
            "md",
            "--name",
            "digits",
            "--home",
            str(home),
            "--out",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    text = (tmp_path / "digits-tgo-table1.md").read_text()
    assert "TGO Table 1" in text and "REDUCED PROTOCOL" in text and "vanilla-tiny-digits" in text
    assert "| paper Clean" in text and "93.32" in text
    listed = runner.invoke(app, ["list", "layouts"])
    assert listed.exit_code == 0 and "randhet-table1" in listed.output


# ---- training seeds: a layout cell is the mean ± sample std over the seed replicas
def seeded_rows(accs: list[float], seeds: list[int | None]) -> list[dict]:
    rows = []
    for acc, seed in zip(accs, seeds):
        row = synthetic_row("tgo+at", "cifar10", "wrn16", acc=acc)
        row["model"] += f"-seed{seed}" if seed else ""
        row["train_seed"], row["setting"] = seed, {"samples": "abc", "n": 10000}
        rows.append(row)
    return rows


def test_layout_cells_average_training_seeds():
    layout = get_layout("tgo-table1")
    rows = seeded_rows([0.30, 0.34, 0.38], [0, 1, 2])
    table = render_layout(layout, rows)
    (record,) = [
        r for r in table.records if r["model"] and r["row"] == "tgo+at" and r["group"] == "WRN-16-4"
    ]
    assert record["n_seeds"] == 3 and record["seeds"] == [0, 1, 2]
    assert record["ours"]["FGSM"] == pytest.approx(0.34)
    assert record["std"]["FGSM"] == pytest.approx(0.04)
    body = next(r for r in table.body if r[1] == "tgo+at" and r[0] == "WRN-16-4")
    assert body[table.header.index("FGSM")] == "34.00 ± 4.00"
    # Δ compares the mean with the paper's mean (TGO: three seeds)
    assert float(body[table.header.index("Δ FGSM")]) == pytest.approx(34.0 - 63.03)
    assert "mean ± sample std over 3 training seeds" in table.description
    assert "means over 3 seeds" in table.description


def test_layout_keeps_one_row_per_seed_and_never_mixes_settings():
    layout = get_layout("tgo-table1")
    rows = seeded_rows([0.30, 0.50, 0.34], [0, 0, 1])  # a second seed-0 run: not a replica
    rows[2]["setting"] = {"samples": "other", "n": 100}  # another sample set: not a replica
    table = render_layout(layout, rows)
    (record,) = [
        r for r in table.records if r["model"] and r["row"] == "tgo+at" and r["group"] == "WRN-16-4"
    ]
    assert record["n_seeds"] == 1 and record["ours"]["FGSM"] == pytest.approx(0.30)
    assert "one training seed per row" in table.description


def test_drop_columns_read_the_pgd_pair_before_the_alphabetically_first():
    row = synthetic_row("rat+randhet", "cifar10", "sew-resnet19")
    row["drop"] = {"apgd-ce": {"value": 0.3}, "pgd10": {"value": 0.1}}
    row["attacks"]["apgd-ce"] = {"robust_acc": 0.6}
    row["attacks"]["apgd-ce+eot"] = {"robust_acc": 0.3}
    (mine,) = [r for r in render_layout(get_layout("randhet-table3"), [row]).records if r["model"]]
    assert mine["ours"]["Drop"] == 0.1 and mine["ours"]["RA no EoT"] == 0.5
    del row["drop"]["pgd10"]
    (mine,) = [r for r in render_layout(get_layout("randhet-table3"), [row]).records if r["model"]]
    assert mine["ours"]["Drop"] == 0.3 and mine["ours"]["RA EoT"] == 0.3
