"""Issue 7: every bad input through the CLI is exit 2, one line on stderr, no traceback, and
leaves every file of the home exactly as it was."""
from __future__ import annotations

import hashlib
import importlib
import json
import sqlite3
from pathlib import Path
from typing import Callable

import pytest
import torch
from test_cli import invoke, one_line_error

from snnbench.archs import SpikingModel
from snnbench.checkpoint import CARD, WEIGHTS
from snnbench.train import STATE_JSON

NAME = "vanilla-tiny-digits"
train_module = importlib.import_module("snnbench.train")   # snnbench.train is also a function
MODEL = Path("models") / NAME


def tree(home: Path) -> dict[str, str]:
    """sha256 of every file under ``home`` by relative path."""
    return {str(p.relative_to(home)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(home.rglob("*")) if p.is_file()}


def refused(result, fragment: str) -> str:
    """One ``error:`` line naming ``fragment``; the command raised nothing else."""
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    line = one_line_error(result)
    assert fragment in line, line
    return line


def _edit_card(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def prep(home: Path) -> None:
        path = home / MODEL / CARD
        card = json.loads(path.read_text())
        change(card)
        path.write_text(json.dumps(card))
    return prep


def _alter_weights(home: Path) -> None:
    path = home / MODEL / WEIGHTS
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate_weights(home: Path) -> None:
    path = home / MODEL / WEIGHTS
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _foreign_store(home: Path) -> None:
    db = sqlite3.connect(home / "results.sqlite")
    db.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
    db.execute("INSERT INTO notes (text) VALUES ('another tool wrote this')")
    db.commit()
    db.close()


def _corrupt_store(home: Path) -> None:
    (home / "results.sqlite").write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 16)


def _set_arch(card: dict) -> None:
    card["spec"]["arch"] = "wrn16"


def _newer_schema(card: dict) -> None:
    card["schema_version"] += 1


def _remove_card(home: Path) -> None:
    (home / MODEL / CARD).unlink()


ATTACK = ["attack", NAME, "--attacks", "fgsm", "--n", "20", "--quiet"]
CASES = [  # (id, arguments, fragment of the message, preparation of the home)
    ("unknown-defense", ["train", "tgp"], "did you mean 'tgo'", None),
    ("unknown-defense-typo", ["train", "vanila"], "did you mean 'vanilla'", None),
    ("unknown-defense-far", ["train", "qqqqqq"], "see `snnbench list defenses`", None),
    ("unknown-arch", ["train", "vanilla", "--arch", "tinyy"], "did you mean 'tiny'", None),
    ("unknown-dataset", ["train", "vanilla", "--data", "digit"], "did you mean 'digits'", None),
    ("unknown-attack", ["attack", "--attacks", "pgd11"], "did you mean 'pgd10'", None),
    ("unknown-suite", ["attack", "--suite", "paper"], "did you mean 'paper-tgo'", None),
    ("unknown-listing", ["list", "things"], "cannot list", None),
    ("unknown-layout", ["report", "--layout", "randhet-tabel1"], "did you mean 'randhet-table1'",
     None),
    ("unknown-surrogate", ["attack", "--surrogate", "bptx"], "not available", None),
    ("transfer-unreadable", ["attack", "--attacks", "transfer-nowhere-pgd10"],
     "transfer-SOURCE-ATTACK", None),
    ("transfer-missing-source", ["attack", "--attacks", "transfer-model:ghost-pgd10"],
     "not in", None),
    ("combo-neurons", ["train", "tgo+randhet"], "cannot combine 'tgo' and 'randhet'", None),
    ("combo-generators", ["train", "at+rat"], "cannot combine 'at' and 'rat'", None),
    ("combo-vanilla", ["train", "vanilla+at"], "combines with nothing", None),
    ("combo-twice", ["train", "tgo+tgo"], "twice", None),
    ("eps-above", ["attack", "--eps", "2"], "outside [0, 1]", None),
    ("eps-below", ["attack", "--eps", "-0.1"], "outside [0, 1]", None),
    ("eps-nan", ["attack", "--eps", "nan"], "outside [0, 1]", None),
    ("eps-garbage", ["attack", "--eps", "8/0"], "cannot read eps", None),
    ("eps-words", ["attack", "--eps", "eight"], "cannot read eps", None),
    ("timesteps-zero", ["train", "vanilla", "--timesteps", "0"], "timesteps must be at least 1", None),
    ("set-type", ["train", "vanilla", "--set", "decay=slow"], "must be of type float", None),
    ("set-unknown", ["train", "vanilla", "--set", "nonsense=1"], "valid keys", None),
    ("set-syntax", ["train", "vanilla", "--set", "decay"], "write KEY=VALUE", None),
    ("weights-altered", ATTACK, "altered or truncated", _alter_weights),
    ("weights-truncated", ATTACK, "altered or truncated", _truncate_weights),
    ("card-other-arch", ATTACK, "its card names arch 'wrn16'", _edit_card(_set_arch)),
    ("card-missing", ATTACK, "no card.json", _remove_card),
    ("card-newer-schema", ATTACK, "upgrade snnbench", _edit_card(_newer_schema)),
    ("store-foreign", ATTACK, "not an snnbench results store", _foreign_store),
    ("store-corrupt", ATTACK, "not a readable snnbench results store", _corrupt_store),
    ("model-unknown", ["attack", "nobody"], "no model 'nobody'", None),
    ("device-unknown", ATTACK + ["--device", "tpu"], "unknown device", None),
]


@pytest.mark.parametrize("args, fragment, prep", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_leaves_the_home_alone(home, args, fragment, prep):
    if prep:
        prep(home)
    before = tree(home)
    refused(invoke(*args, "--home", home), fragment)
    assert tree(home) == before


def test_missing_data_set(home, tmp_path):
    (tmp_path / "empty").mkdir()
    before = tree(home)
    line = refused(invoke("train", "vanilla", "--data", "cifar10", "--epochs", "1", "--home", home,
                          "--data-root", tmp_path / "empty"), "cifar10 not found")
    assert str(tmp_path / "empty") in line and "--data-root" in line
    assert tree(home) == before


RECIPE = """name = "bad"
dataset = "digits"
seed = 0
[train]
epochs = 1
[[models]]
defense = "vanilla"
"""


@pytest.mark.parametrize("old, new, fragments", [
    ("epochs = 1", "epochs = 1\nepochz = 2", ["unknown key 'epochz'", "line 6", "valid keys"]),
    ("epochs = 1", 'epochs = "many"', ["'epochs'", "line 5", "must be of type int"]),
    ("seed = 0", 'seed = "zero"', ["'seed'", "line 3", "must be of type int"]),
    ('defense = "vanilla"', 'defense = "vanilla"\ntimesteps = "four"', ["'timesteps'", "line 8"]),
    ('defense = "vanilla"', 'defence = "vanilla"', ["unknown key 'defence'", "line 7"]),
    ("seed = 0", "seed = = 0", ["not valid TOML", "line 3"]),
], ids=["unknown-key", "train-type", "top-type", "model-type", "model-key", "toml-syntax"])
def test_bad_recipe_names_the_key_and_its_line(home, tmp_path, old, new, fragments):
    path = tmp_path / "bad.toml"
    path.write_text(RECIPE.replace(old, new))
    before = tree(home)
    result = invoke("run", path, "--home", home, "--out", tmp_path / "boards", "--quiet")
    for fragment in fragments:
        refused(result, fragment)
    assert tree(home) == before and not (tmp_path / "boards").exists()


def test_out_of_memory_in_training_suggests_a_batch_size(home, monkeypatch):
    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(train_module, "_train_epoch", out_of_memory)
    before = tree(home)
    refused(invoke("train", "vanilla", "--name", "oom", "--batch-size", "64", "--home", home),
            "--batch-size 32")
    assert tree(home) == before


def test_out_of_memory_under_attack_even_at_batch_1(home, monkeypatch):
    def out_of_memory(self, x):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(SpikingModel, "forward", out_of_memory)
    models = tree(home)
    refused(invoke(*ATTACK, "--home", home), "--device cpu")
    assert tree(home) == {**models, **{k: v for k, v in tree(home).items() if "results" in k}}
    from snnbench import api
    with api.open_store(home) as store:
        assert store.cards() == []


def test_nan_loss_stops_keeps_the_last_good_epoch_and_names_it(home, monkeypatch):
    real = train_module._train_epoch

    def poisoned(model, defense, optimizer, own, x, y, train, augment, epoch, device, *rest):
        if epoch >= 1:       # the second epoch starts from diverged (NaN) weights
            with torch.no_grad():
                for parameter in model.parameters():
                    parameter.fill_(float("nan"))
        return real(model, defense, optimizer, own, x, y, train, augment, epoch, device, *rest)

    monkeypatch.setattr(train_module, "_train_epoch", poisoned)
    args = ("train", "vanilla", "--name", "nan", "--epochs", "3", "--timesteps", "2", "--home", home)
    refused(invoke(*args), "in epoch 2")
    folder = home / "models" / "nan"
    assert json.loads((folder / STATE_JSON).read_text())["epochs_done"] == 1
    assert not (folder / CARD).exists()
    before = tree(home)
    refused(invoke(*args), "in epoch 2")            # resumes at epoch 2, stops there again
    assert tree(home) == before


@pytest.mark.parametrize("eps", ["8/255", "0.031"])
def test_eps_forms_are_accepted(home, eps):
    result = invoke(*ATTACK, "--eps", eps, "--home", home)
    assert result.exit_code == 0, result.output
