"""A new user's first hour (issue 20): --version, suggestions for misspelt names, the setting a
name collision is about, zoo pull/add/list, `--attacks ID:STEPS`, outputs under the home, and
which copy of the data a model was trained on."""

from __future__ import annotations

import hashlib
import json

import pytest
from typer.testing import CliRunner

from snnbench import data
from snnbench.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A home holding a 1-epoch vanilla model named like the pinned zoo one."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SNNBENCH_ZOO", raising=False)
    result = invoke("train", "vanilla", "--epochs", "1", "--home", tmp_path / "h", "--quiet")
    assert result.exit_code == 0, result.output
    return tmp_path / "h"


def test_version():
    from snnbench import __version__

    result = invoke("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"snnbench {__version__}"


def test_a_misspelt_recipe_lists_the_recipes():
    result = invoke("run", "digit")
    assert result.exit_code == 2
    assert "did you mean 'digits'" in result.stderr and "cifar10-tgo" in result.stderr


def test_a_misspelt_model_gets_a_suggestion(home):
    result = invoke("attack", "vanila-tiny-digits", "--home", home)
    assert result.exit_code == 2 and "did you mean 'vanilla-tiny-digits'" in result.stderr


def test_a_name_collision_names_the_setting(home):
    result = invoke("train", "vanilla", "--epochs", "2", "--home", home, "--quiet")
    assert result.exit_code == 2
    assert "train.epochs: stored 1, asked 2" in result.stderr


def test_zoo_pull_over_another_model_offers_name(home):
    clash = invoke("zoo", "pull", "vanilla-tiny-digits", "--home", home, "--quiet")
    assert clash.exit_code == 2 and "--name vanilla-tiny-digits-zoo" in clash.stderr
    pulled = invoke(
        "zoo",
        "pull",
        "vanilla-tiny-digits",
        "--name",
        "vanilla-tiny-digits-zoo",
        "--home",
        home,
        "--quiet",
    )
    assert pulled.exit_code == 0, pulled.output
    card = json.loads((home / "models" / "vanilla-tiny-digits-zoo" / "card.json").read_text())
    assert card["name"] == "vanilla-tiny-digits-zoo" and card["zoo_name"] == "vanilla-tiny-digits"
    listed = invoke("list", "models", "--home", home).stdout.split()
    assert {"vanilla-tiny-digits", "vanilla-tiny-digits-zoo"} <= set(listed)


def test_zoo_add_writes_what_zoo_list_reads(home, tmp_path):
    added = invoke(
        "zoo",
        "add",
        "vanilla-tiny-digits",
        "--url",
        "https://example.org/m.tar",
        "--name",
        "mine-digits",
        "--home",
        home,
    )
    assert added.exit_code == 0, added.output
    assert (tmp_path / "zoo" / "models.toml").is_file()
    listed = invoke("zoo", "list")
    assert "mine-digits" in listed.stdout and "tgo-tiny-digits" in listed.stdout  # + packaged


def test_attacks_take_the_member_grammar_and_outputs_stay_in_the_home(home, tmp_path):
    result = invoke("attack", "--attacks", "apgd-ce:3", "--n", "20", "--home", home, "--quiet")
    assert result.exit_code == 0, result.output
    report = invoke("report", "--format", "json", "--home", home)
    assert report.exit_code == 0, report.output
    board = json.loads((home / "leaderboards" / "leaderboard.json").read_text())
    assert not (tmp_path / "leaderboards").exists()
    assert [c["attack"]["params"]["steps"] for c in board["cards"]] == [3]


def test_the_card_and_the_header_name_the_data_source(home):
    card = json.loads((home / "models" / "vanilla-tiny-digits" / "card.json").read_text())
    assert "load_digits" in card["data_source"]["source"]
    invoke("attack", "--attacks", "fgsm", "--n", "20", "--home", home, "--quiet")
    assert invoke("report", "--format", "md", "--home", home).exit_code == 0
    assert "load_digits" in (home / "leaderboards" / "leaderboard.md").read_text()


def test_cifar10_source_tells_the_jpeg_copy_from_the_original(tmp_path):
    archive = tmp_path / "cifar10-jpeg.tar.gz"
    archive.write_bytes(b"not really an archive")
    jpeg = data.data_source("cifar10", tmp_path)
    assert jpeg["source"].startswith("JPEG copy")
    assert jpeg["sha256"] == hashlib.sha256(b"not really an archive").hexdigest()
    batches = tmp_path / "cifar-10-batches-py"
    batches.mkdir()
    (batches / "test_batch").write_bytes(b"x")
    assert data.data_source("cifar10", tmp_path)["source"].startswith("original")


def test_the_terminal_labels_cascade_members_as_the_markdown_does(monkeypatch):
    import io

    from rich.console import Console

    from snnbench import cli

    screen = io.StringIO()
    monkeypatch.setattr(cli, "out", Console(file=screen, width=300))
    card = {
        "model": {"name": "m"},
        "attack": {"id": "apgd-ce", "eps": 32 / 255, "eot": 4},
        "eval": {"n": 10, "cascade": {"position": 14, "of": 14, "member": "apgd-ce:200"}},
        "result": {"clean_acc": 1.0, "robust_acc": 0.5, "ci95": [0.2, 0.8]},
        "timing": {"seconds": 1.0},
    }
    cli._print_cards([card])
    assert "→apgd-ce:200 (14/14)" in screen.getvalue() and "+eot4" not in screen.getvalue()
