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
train_module = importlib.import_module("snnbench.train")  # snnbench.train is also a function
MODEL = Path("models") / NAME


def tree(home: Path) -> dict[str, str]:
    """sha256 of every file under ``home`` by relative path."""
    return {
        str(p.relative_to(home)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(home.rglob("*"))
        if p.is_file()
    }


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
    (
        "unknown-layout",
        ["report", "--layout", "randhet-tabel1"],
        "did you mean 'randhet-table1'",
        None,
    ),
    ("unknown-surrogate", ["attack", "--surrogate", "bptx"], "not available", None),
    (
        "transfer-unreadable",
        ["attack", "--attacks", "transfer-nowhere-pgd10"],
        "transfer-SOURCE-ATTACK",
        None,
    ),
    (
        "transfer-missing-source",
        ["attack", "--attacks", "transfer-model:ghost-pgd10"],
        "not in",
        None,
    ),
    ("combo-neurons", ["train", "tgo+randhet"], "cannot combine 'tgo' and 'randhet'", None),
    ("combo-generators", ["train", "at+rat"], "cannot combine 'at' and 'rat'", None),
    ("combo-vanilla", ["train", "vanilla+at"], "combines with nothing", None),
    ("combo-twice", ["train", "tgo+tgo"], "twice", None),
    ("eps-above", ["attack", "--eps", "2"], "outside [0, 1]", None),
    ("eps-below", ["attack", "--eps", "-0.1"], "outside [0, 1]", None),
    ("eps-nan", ["attack", "--eps", "nan"], "outside [0, 1]", None),
    ("eps-garbage", ["attack", "--eps", "8/0"], "cannot read eps", None),
    ("eps-words", ["attack", "--eps", "eight"], "cannot read eps", None),
    (
        "timesteps-zero",
        ["train", "vanilla", "--timesteps", "0"],
        "timesteps must be at least 1",
        None,
    ),
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
    (
        "card-lost-recipe",
        ATTACK,
        "names recipe 'lost', which is not packaged",
        _edit_card(lambda card: card.update(recipe="lost")),
    ),
    ("model-path-name", ["attack", "../models/x"], "not a valid name", None),
]

# Every count of the CLI, out of range: one line naming the option and its range (issue 9).
COUNTS = [  # (id, arguments, fragment)
    (
        "attack-steps-negative",
        ["attack", "--attacks", "pgd10", "--steps", "-2"],
        "--steps must be at least 1",
    ),
    (
        "attack-steps-zero",
        ["attack", "--attacks", "pgd10", "--steps", "0"],
        "--steps must be at least 1",
    ),
    ("attack-n-zero", ["attack", "--attacks", "fgsm", "--n", "0"], "--n must be at least 1"),
    (
        "attack-chunk-zero",
        ["attack", "--attacks", "fgsm", "--chunk-size", "0"],
        "--chunk-size must be at least 1",
    ),
    ("attack-eot-zero", ["attack", "--attacks", "fgsm", "--eot", "0"], "--eot must be at least 1"),
    (
        "attack-seed-negative",
        ["attack", "--attacks", "fgsm", "--seed", "-1"],
        "--seed must be at least 0",
    ),
    ("train-epochs-zero", ["train", "vanilla", "--epochs", "0"], "--epochs must be at least 1"),
    (
        "train-batch-zero",
        ["train", "vanilla", "--batch-size", "0"],
        "--batch-size must be at least 1",
    ),
    (
        "train-timesteps-negative",
        ["train", "vanilla", "--timesteps", "-3"],
        "--timesteps must be at least 1",
    ),
    (
        "train-workers-negative",
        ["train", "vanilla", "--workers", "-1"],
        "--workers must be at least 0",
    ),
    ("train-seed-negative", ["train", "vanilla", "--seed", "-5"], "--seed must be at least 0"),
    (
        "import-timesteps-zero",
        ["import", "x.pt", "--arch", "tiny", "--defense", "vanilla", "--timesteps", "0"],
        "--timesteps must be at least 1",
    ),
    ("check-n-zero", ["check", "--n", "0"], "--n must be at least 1"),
    ("check-eot-zero", ["check", "--eot", "0"], "--eot must be at least 1"),
    ("check-seed-negative", ["check", "--seed", "-1"], "--seed must be at least 0"),
    ("diagnose-n-zero", ["diagnose", NAME, "--n", "0"], "--n must be at least 1"),
    ("diagnose-seed-negative", ["diagnose", NAME, "--seed", "-1"], "--seed must be at least 0"),
    ("threads-zero", ["--threads", "0", "list", "archs"], "--threads must be at least 1"),
    ("run-workers-negative", ["run", "digits", "--workers", "-1"], "--workers must be at least 0"),
    (
        "gate-tolerance-negative",
        ["gate", "--baseline", "b.json", "--tolerance", "-1"],
        "--tolerance must be a number of points >= 0",
    ),
]

# Names reach the disk as one folder or file name: each of these is refused.
BAD_NAMES = [
    "../../evil",
    "../evil",
    "a/b",
    ".hidden",
    "..",
    "",
    "two words",
    "x" * 101,
    "back\\slash",
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
    line = refused(
        invoke(
            "train",
            "vanilla",
            "--data",
            "cifar10",
            "--epochs",
            "1",
            "--home",
            home,
            "--data-root",
            tmp_path / "empty",
        ),
        "cifar10 not found",
    )
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


@pytest.mark.parametrize(
    "old, new, fragments",
    [
        ("epochs = 1", "epochs = 1\nepochz = 2", ["unknown key 'epochz'", "line 6", "valid keys"]),
        ("epochs = 1", 'epochs = "many"', ["'epochs'", "line 5", "must be of type int"]),
        ("seed = 0", 'seed = "zero"', ["'seed'", "line 3", "must be of type int"]),
        (
            'defense = "vanilla"',
            'defense = "vanilla"\ntimesteps = "four"',
            ["'timesteps'", "line 8"],
        ),
        ('defense = "vanilla"', 'defence = "vanilla"', ["unknown key 'defence'", "line 7"]),
        ("seed = 0", "seed = = 0", ["not valid TOML", "line 3"]),
    ],
    ids=["unknown-key", "train-type", "top-type", "model-type", "model-key", "toml-syntax"],
)
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
    refused(
        invoke("train", "vanilla", "--name", "oom", "--batch-size", "64", "--home", home),
        "--batch-size 32",
    )
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
        if epoch >= 1:  # the second epoch starts from diverged (NaN) weights
            with torch.no_grad():
                for parameter in model.parameters():
                    parameter.fill_(float("nan"))
        return real(model, defense, optimizer, own, x, y, train, augment, epoch, device, *rest)

    monkeypatch.setattr(train_module, "_train_epoch", poisoned)
    args = (
        "train",
        "vanilla",
        "--name",
        "nan",
        "--epochs",
        "3",
        "--timesteps",
        "2",
        "--home",
        home,
    )
    refused(invoke(*args), "in epoch 2")
    folder = home / "models" / "nan"
    assert json.loads((folder / STATE_JSON).read_text())["epochs_done"] == 1
    assert not (folder / CARD).exists()
    before = tree(home)
    refused(invoke(*args), "in epoch 2")  # resumes at epoch 2, stops there again
    assert tree(home) == before


@pytest.mark.parametrize("eps", ["8/255", "0.031"])
def test_eps_forms_are_accepted(home, eps):
    result = invoke(*ATTACK, "--eps", eps, "--home", home)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("args, fragment", [c[1:] for c in COUNTS], ids=[c[0] for c in COUNTS])
def test_bad_count_is_one_line_and_writes_nothing(home, tmp_path, monkeypatch, args, fragment):
    monkeypatch.chdir(tmp_path)  # relative outputs (leaderboards/) would land here
    before = tree(tmp_path)
    line = refused(invoke(*args, "--home", home), fragment)
    assert "got" in line  # the value given, beside the allowed range
    assert tree(tmp_path) == before


def test_counts_are_checked_by_the_library_too(home):
    """Python users get the same line as the CLI (the checks live in api/config)."""
    from snnbench import ModelConfig, SnnbenchError, TrainConfig, api

    calls = [
        lambda: api.attack([NAME], home=home, attacks=["pgd10"], steps=0),
        lambda: api.attack([NAME], home=home, attacks=["fgsm"], n=0),
        lambda: api.attack([NAME], home=home, attacks=["fgsm"], chunk_size=0),
        lambda: api.attack([NAME], home=home, attacks=["fgsm"], k_eval=0),
        lambda: api.check([NAME], home=home, n=0),
        lambda: api.diagnose(NAME, home=home, n=-1),
        lambda: TrainConfig(epochs=0),
        lambda: TrainConfig(seed=-1),
        lambda: ModelConfig(timesteps=0),
    ]
    before = tree(home)
    for call in calls:
        with pytest.raises(SnnbenchError, match="must be at least"):
            call()
    assert tree(home) == before


@pytest.mark.parametrize("name", BAD_NAMES, ids=range(len(BAD_NAMES)))
def test_bad_model_name_is_refused_and_nothing_is_written(home, tmp_path, monkeypatch, name):
    """`train --name ../../evil` once wrote a model two folders above the home's models."""
    monkeypatch.chdir(tmp_path)
    before = tree(tmp_path)
    refused(
        invoke("train", "vanilla", "--name", name, "--epochs", "1", "--home", home),
        "is not a valid name",
    )
    refused(
        invoke(
            "import",
            "x.pt",
            "--arch",
            "tiny",
            "--defense",
            "vanilla",
            "--name",
            name,
            "--home",
            home,
        ),
        "is not a valid name",
    )
    assert tree(tmp_path) == before
    assert not (tmp_path / "evil").exists() and not (home / "evil").exists()


@pytest.mark.parametrize(
    "command",
    [
        ["zoo", "pull", "../evil"],
        ["zoo", "add", NAME, "--url", "https://example.org/x.tar", "--name", "../evil"],
        ["report", "--name", "../evil"],
        ["report", "--name", "../evil", "--format", "html"],
    ],
    ids=["zoo-pull", "zoo-add", "report", "site"],
)
def test_bad_names_elsewhere_are_refused(home, tmp_path, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    invoke(*ATTACK, "--home", home)  # results for `report`
    before = tree(tmp_path)
    refused(
        invoke(*command, "--home", home, "--manifest", tmp_path / "m.toml")
        if command[0] == "zoo"
        else invoke(*command, "--home", home, "--out", tmp_path / "o"),
        "is not a valid name",
    )
    assert tree(tmp_path) == before


def test_a_manifest_entry_with_a_bad_name_is_refused(home, tmp_path):
    manifest = tmp_path / "m.toml"
    manifest.write_text('[models."../evil"]\ndefense = "vanilla"\nurls = ["x.tar"]\n')
    before = tree(tmp_path)
    for args in (["zoo", "list"], ["zoo", "pull", "vanilla"]):
        refused(
            invoke(*args, "--manifest", manifest, *(["--home", home] if "pull" in args else [])),
            "zoo entry name '../evil' is not a valid name",
        )
    assert tree(tmp_path) == before


@pytest.mark.parametrize(
    "old, new, fragment",
    [
        (
            'defense = "vanilla"',
            'defense = "vanilla"\nname = "../../evil"',
            "model name (--name) '../../evil'",
        ),
        ('name = "bad"', 'name = "../evil"', "line 1: recipe name '../evil'"),
        ("seed = 0", "seed = 0\neot = 0", "line 4: eot must be at least 1"),
        ("seed = 0", "seed = 0\nn = -1", "line 4: n must be at least 1"),
        ("epochs = 1", "epochs = 0", "line 5: --epochs must be at least 1"),
    ],
    ids=["model-name", "recipe-name", "eot", "n", "epochs"],
)
def test_bad_recipe_counts_and_names(home, tmp_path, monkeypatch, old, new, fragment):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "bad.toml"
    path.write_text(RECIPE.replace(old, new))
    before = tree(tmp_path)
    refused(invoke("run", path, "--home", home, "--quiet"), fragment)
    assert tree(tmp_path) == before


def test_python_api_refuses_bad_names(home, tmp_path):
    import snnbench
    from snnbench.files import check_name

    (tmp_path / "evil").mkdir()
    for call in (
        lambda: snnbench.load("../../evil", home),
        lambda: snnbench.load_card("a/b", home),
        lambda: snnbench.train(snnbench.ModelConfig(name="../evil"), home=home),
    ):
        with pytest.raises(snnbench.SnnbenchError, match="not a valid name"):
            call()
    assert check_name("randhet-star+rat-tiny-digits", "model") == "randhet-star+rat-tiny-digits"


def test_every_default_model_name_is_a_valid_name():
    """Derived names (DEFENCE-ARCH-DATA, `randhet*` spelt `randhet-star`) pass check_name for
    every registered defence, arch and data set, and every packaged recipe's names."""
    from snnbench.archs import ARCHS
    from snnbench.config import model_name
    from snnbench.data import DATASETS
    from snnbench.defenses import DEFENSES
    from snnbench.files import check_name
    from snnbench.model import resolve
    from snnbench.recipe import load_recipe

    for defense in DEFENSES.names():
        for arch in ARCHS.names():
            for dataset in DATASETS.names():
                check_name(model_name(defense, arch, dataset))
    assert model_name("randhet*+rat", "tiny", "digits") == "randhet-star+rat-tiny-digits"
    from test_recipes import RECIPES

    for recipe in map(load_recipe, RECIPES):
        for model, _ in recipe.models:
            spec = resolve(model)
            check_name(model.name or model_name(spec.defense, spec.arch, spec.dataset))
