"""Plugins: a real distribution (tests/plugin_pkg) installed into a temporary folder registers a
defence, an arch, an attack and a data set through entry points; the CLI lists them with their
package, trains the plugin defence and attacks it; broken entry points are one warning line each.

Each check runs snnbench in a fresh interpreter with that folder on PYTHONPATH, so the plugins
never leak into the registries of the other tests."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from snnbench.store import ResultStore

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "snnbench-demo-plugin"


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("plugin")
    source = shutil.copytree(
        Path(__file__).parent / "plugin_pkg", work / "src"
    )  # builds in the copy
    site = work / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(site),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert list(site.glob("snnbench_demo_plugin-*.dist-info"))
    return site


def run_cli(site: Path, *commands: list[str]) -> subprocess.CompletedProcess:
    """The CLI, each command in turn in one interpreter; exits with the first non-zero code."""
    script = (
        "import sys\nfrom snnbench.cli import app\n"
        f"for args in {commands!r}:\n"
        "    code = app(args, standalone_mode=False, prog_name='snnbench')\n"
        "    if code:\n        sys.exit(code)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(site)]), "COLUMNS": "250"}
    return subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=site.parent,
    )


@pytest.fixture(scope="module")
def listing(plugin_site):
    return run_cli(
        plugin_site, *[["list", kind] for kind in ("defenses", "archs", "attacks", "datasets")]
    )


def test_list_shows_each_plugin_with_its_package(listing):
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    for name in ("logit-penalty", "mlp", "plugin-sign", "digits-half"):
        (row,) = [line for line in lines if line.split() and line.split()[0] == name]
        assert row.rstrip().endswith(PACKAGE), row
    assert any(
        line.split()[:1] == ["vanilla"] and line.rstrip().endswith("snnbench") for line in lines
    )


def test_a_broken_plugin_is_one_warning_line_not_a_crash(listing):
    warnings = [line for line in listing.stderr.splitlines() if line.strip()]
    assert len(warnings) == 2, listing.stderr  # loaded once, though four registries listed
    missing, clash = sorted(warnings)
    assert missing.startswith("warning: plugin arch 'broken-arch'")
    assert "ModuleNotFoundError" in missing
    assert clash.startswith("warning: plugin attack 'fgsm'") and "registered twice" in clash
    for line in warnings:
        assert f"from package {PACKAGE!r}" in line and f"pip uninstall {PACKAGE}" in line
    # the built-in fgsm is the one that stayed
    assert any(
        line.split()[:1] == ["fgsm"] and line.rstrip().endswith("snnbench")
        for line in listing.stdout.splitlines()
    )


def test_a_plugin_defence_trains_and_is_attacked_through_the_cli(plugin_site, tmp_path):
    home = tmp_path / "home"
    name = "logit-penalty-mlp-digits-half"
    done = run_cli(
        plugin_site,
        [
            "train",
            "logit-penalty",
            "--arch",
            "mlp",
            "--data",
            "digits-half",
            "--epochs",
            "1",
            "--set",
            "logit_penalty.weight=0.5",
            "--home",
            str(home),
            "--quiet",
        ],
        [
            "attack",
            name,
            "--attacks",
            "plugin-sign,fgsm",
            "--n",
            "40",
            "--home",
            str(home),
            "--quiet",
        ],
    )
    assert done.returncode == 0, done.stderr + done.stdout
    card = json.loads((home / "models" / name / "card.json").read_text())
    assert (card["spec"]["defense"], card["spec"]["arch"], card["spec"]["dataset"]) == (
        "logit-penalty",
        "mlp",
        "digits-half",
    )
    assert card["spec"]["settings"]["logit_penalty.weight"] == 0.5
    with ResultStore(home / "results.sqlite") as store:
        rows = {(c["model"]["name"], c["attack"]["id"]) for c in store.cards()}
    assert rows == {(name, "plugin-sign"), (name, "fgsm")}
