"""Every command through Typer's CliRunner (bad input: test_bad_input.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from snnbench.cli import app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def one_line_error(result, code: int = 2) -> str:
    """The stderr of a refused command: exactly one ``error: ...`` line, from the CLI's error
    mapping. CliRunner catches an escaped exception into ``result.exception`` and never prints
    its traceback, so "no traceback" is asserted on the exception itself: only the mapped exit
    (SystemExit) may end the command."""
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit), (
        f"the command raised {result.exception!r}: a terminal would show its traceback"
    )
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert result.stderr == lines[0] + "\n" and "Traceback" not in result.output
    return lines[0]


@pytest.mark.parametrize(
    "what", ["archs", "defenses", "attacks", "suites", "datasets", "neurons", "surrogates"]
)
def test_list_registries(what):
    result = invoke("list", what)
    assert result.exit_code == 0
    from snnbench.archs import ARCHS

    if what == "archs":
        for name in ARCHS.names():
            assert name in result.stdout


def test_list_models_of_a_home(home):
    result = invoke("list", "models", "--home", home)
    assert result.exit_code == 0 and "vanilla-tiny-digits" in result.stdout


def fragment_in(result, fragment: str) -> bool:
    return fragment in one_line_error(result)


def test_quick_suite_and_eot_on_a_deterministic_model(home):
    result = invoke(
        "attack", "--suite", "quick", "--eot", "4", "--n", "40", "--home", home, "--quiet"
    )
    assert result.exit_code == 0, result.output
    from snnbench import api

    with api.open_store(home) as store:
        cards = store.cards()
    assert {c["attack"]["id"] for c in cards} == {
        "fgsm",
        "pgd10",
        "apgd-ce",
        "square",
        "noise-uniform",
    }
    assert all(
        c["attack"]["eot"] == 1 and "deterministic" in c["attack"]["eot_note"] for c in cards
    )
    assert {
        c["attack"]["params"].get("steps") for c in cards if c["attack"]["id"] == "apgd-ce"
    } == {25}
    # throughput: printed at the end and kept in each card (samples attacked per second)
    assert "images/s" in result.output
    assert all(c["timing"]["images_per_s"] > 0 for c in cards if c["eval"]["attacked"])
    assert fragment_in(invoke("attack", "--suite", "quik", "--home", home), "did you mean 'quick'")
    assert fragment_in(
        invoke("attack", "--eot", "0", "--attacks", "fgsm", "--home", home),
        "--eot must be at least 1",
    )


def test_surrogate_option_stores_a_separate_result(home):
    for mode in ("own", "atan:2", "bptr"):
        result = invoke(
            "attack",
            "--attacks",
            "fgsm",
            "--surrogate",
            mode,
            "--n",
            "40",
            "--home",
            home,
            "--quiet",
        )
        assert result.exit_code == 0, result.output
    from snnbench import api

    with api.open_store(home) as store:
        grads = sorted(c["attack"]["grad"] for c in store.cards())
    assert grads == ["bptr", "bptt", "sg:atan:2"]
    assert fragment_in(invoke("attack", "--surrogate", "bptx", "--home", home), "not available")


def test_debug_shows_the_traceback(tmp_path):
    result = invoke("train", "vanila", "--home", tmp_path, "--debug")
    assert result.exit_code != 0 and result.exception is not None
    with pytest.raises(AssertionError, match="would show its traceback"):
        one_line_error(result, result.exit_code)


def test_a_known_bad_input_is_exactly_one_stderr_line(tmp_path):
    result = invoke("train", "vanila", "--home", tmp_path)
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit)
    assert result.stderr.startswith("error: unknown defen") and result.stderr.count("\n") == 1
    assert "did you mean 'vanilla'" in one_line_error(result)


def test_a_bug_is_not_dressed_as_a_one_line_error(tmp_path, monkeypatch):
    """The CLI maps only SnnbenchError (bad input) to one line and exit 2; any other exception
    is a bug and propagates (a traceback, exit 1). one_line_error must tell the two apart."""
    from snnbench import api

    def broken(*args, **kwargs):
        raise RuntimeError("a bug, not bad input")

    monkeypatch.setattr(api, "train_model", broken)
    result = invoke("train", "vanilla", "--home", tmp_path, "--quiet")
    assert result.exit_code == 1 and isinstance(result.exception, RuntimeError)
    assert "error:" not in result.stderr
    with pytest.raises(AssertionError):
        one_line_error(result)
    with pytest.raises(AssertionError, match="would show its traceback"):
        one_line_error(result, 1)


def test_round_trip_train_attack_report_gate(tmp_path):
    home, out = tmp_path / "home", tmp_path / "boards"
    result = invoke("train", "vanilla", "--epochs", "4", "--home", home, "--quiet")
    assert result.exit_code == 0, result.output
    assert "clean accuracy" in result.stdout
    again = invoke("train", "vanilla", "--epochs", "4", "--home", home, "--quiet")
    assert again.exit_code == 0 and "up to date" in again.stdout
    result = invoke("attack", "--attacks", "fgsm,pgd10", "--n", "200", "--home", home, "--quiet")
    assert result.exit_code == 0, result.output
    assert "pgd10" in result.stdout
    result = invoke("report", "--format", "all", "--out", out, "--name", "digits", "--home", home)
    assert result.exit_code == 0, result.output
    for ext in ("md", "csv", "json"):
        assert (out / f"digits.{ext}").is_file()
    board = json.loads((out / "digits.json").read_text())
    (row,) = board["rows"]
    assert set(row["attacks"]) == {"fgsm", "pgd10"}
    # the CSV's first line is its header: any reader gets one column per field
    import pandas as pd

    frame = pd.read_csv(out / "digits.csv")
    header = (out / "digits.csv").read_text().splitlines()[0].split(",")
    assert list(frame.columns) == header and header[:2] == ["model", "headline"]
    assert {"clean", "fgsm", "pgd10", "mra"} <= set(header) and len(frame) == 1
    assert frame.loc[0, "model"] == "vanilla-tiny-digits"
    assert frame.loc[0, "fgsm"] == pytest.approx(row["attacks"]["fgsm"]["robust_acc"])
    result = invoke(
        "report",
        "--layout",
        "tgo-table2",
        "--format",
        "csv",
        "--out",
        out,
        "--name",
        "digits",
        "--home",
        home,
    )
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "digits-tgo-table2.csv")
    assert list(table.columns[:4]) == ["group", "row", "model", "Clean"]
    assert "vanilla-tiny-digits" in set(table["model"].dropna())
    assert row["mra"] == min(a["robust_acc"] for a in row["attacks"].values())
    assert row["headline"]["acc"] <= row["mra"]
    baseline = out / "digits.json"
    result = invoke("gate", "--baseline", baseline, "--tolerance", "2", "--home", home)
    assert result.exit_code == 0 and "gate passed" in result.stdout
    # a baseline in which 20 samples survived PGD-10 that do not now: a paired drop
    from snnbench.metrics import decode_counts, encode_counts

    (pgd,) = [c for c in board["cards"] if c["attack"]["id"] == "pgd10"]
    counts = decode_counts(pgd["per_sample"]["adv"])
    counts[np.flatnonzero(counts == 0)[:20]] = 1
    pgd["per_sample"]["adv"] = encode_counts(counts)
    raised = tmp_path / "raised.json"
    raised.write_text(json.dumps(board))
    result = invoke("gate", "--baseline", raised, "--tolerance", "2", "--home", home)
    assert result.exit_code == 1
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert line.startswith("FAIL drop: vanilla-tiny-digits pgd10") and "(20 samples worse" in line


def test_report_without_results(tmp_path):
    assert fragment_in(
        invoke("report", "--home", tmp_path, "--out", tmp_path / "o"), "no finished attack results"
    )


SMALL_RECIPE = """
name = "small"
dataset = "digits"
eps = "32/255"
attacks = ["fgsm"]
n = 100
[train]
epochs = 3
[[models]]
defense = "vanilla"
[[models]]
defense = "tgo+rat"
"""


def test_run_a_recipe(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "small.toml").write_text(SMALL_RECIPE)
    result = invoke("run", "small.toml", "--quiet")
    assert result.exit_code == 0, result.output
    boards = tmp_path / "snnbench-runs" / "leaderboards"  # under the home, not ./leaderboards
    for ext in ("md", "csv", "json"):
        assert (boards / f"small.{ext}").is_file()
    assert not (tmp_path / "leaderboards").exists()
    assert "leaderboard: snnbench-runs/leaderboards/small.md" in result.stdout
    board = json.loads((boards / "small.json").read_text())
    assert {row["model"] for row in board["rows"]} == {"vanilla-tiny-digits", "tgo+rat-tiny-digits"}
    assert all(row["n"] == 100 for row in board["rows"])
    rerun = invoke("run", "small.toml", "--quiet")
    assert rerun.exit_code == 0 and rerun.stdout.count("(up to date)") == 2


def test_the_default_recipe_is_the_packaged_digits_one():
    from snnbench.recipe import load_recipe

    recipe = load_recipe(None)
    assert recipe.name == "digits" and recipe.dataset == "digits"


def test_unknown_recipe(tmp_path):
    assert fragment_in(invoke("run", "nope", "--home", tmp_path), "recipe 'nope' not found")


def test_threads_option_sets_torch_threads_and_refuses_zero(monkeypatch):
    import torch

    before = torch.get_num_threads()
    try:
        assert invoke("--threads", "2", "list", "archs").exit_code == 0
        assert torch.get_num_threads() == 2
        assert "--threads must be at least 1" in one_line_error(
            invoke("--threads", "0", "list", "archs")
        )
    finally:
        torch.set_num_threads(before)


def test_cpu_threads_leaves_busy_cores_alone(monkeypatch):
    import os

    from snnbench import runtime

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    for busy, threads in ((1.2, 1), (0.1, 2), (7.0, 1)):
        monkeypatch.setattr(runtime, "busy_cores", lambda busy=busy: busy)
        assert runtime.cpu_threads() == threads


def test_busy_cores_sees_a_spinning_process():
    import subprocess
    import sys

    from snnbench import runtime

    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        import time

        time.sleep(0.5)
        assert runtime.busy_cores(0.5) >= 0.7
    finally:
        spinner.kill()
        spinner.wait()
