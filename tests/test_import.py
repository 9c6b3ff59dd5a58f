"""``snnbench import``: foreign .pt files become verified checkpoints; no file can run code."""

from __future__ import annotations

import os

import pytest
import torch
from test_bad_input import refused, tree
from test_cli import invoke

import snnbench
from snnbench import api
from snnbench.files import sha256_file

NAME = "vanilla-tiny-digits"
ATTACK = ("attack", "--attacks", "fgsm", "--n", "40", "--quiet")


@pytest.fixture
def exported(home, tmp_path):
    """The trained model's weights as a training script would save them (DataParallel, nested)."""
    state = snnbench.load(NAME, home).state_dict()
    path = tmp_path / "foreign.pth"
    torch.save({"epoch": 6, "state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    return path


def _import(path, home, *extra):
    return invoke("import", path, "--arch", "tiny", "--defense", "vanilla", "--home", home, *extra)


def test_round_trip_gives_the_same_model_and_results(home, tmp_path, exported):
    other = tmp_path / "other"
    timesteps = snnbench.load_card(NAME, home)["timesteps"]
    args = ("--name", "imported", "--timesteps", timesteps)
    result = _import(exported, other, *args)
    assert result.exit_code == 0, result.output
    card = snnbench.load_card("imported", other)
    original = snnbench.load_card(NAME, home)
    assert card["imported_from"]["file"] == "foreign.pth"
    assert card["imported_from"]["sha256"] == sha256_file(exported)
    assert card["history"] == [] and card["train"] is None
    assert card["weights_sha256"] == original["weights_sha256"]  # the same tensors, bit for bit
    assert card["clean_accuracy"] == original["clean_accuracy"]
    for where, model in ((home, NAME), (other, "imported")):
        assert invoke(*ATTACK, model, "--home", where).exit_code == 0
    mine, theirs = (api.open_store(h) for h in (other, home))
    with mine, theirs:
        (a,), (b,) = mine.cards(), theirs.cards()
    assert a["result"] == b["result"] and a["per_sample"] == b["per_sample"]
    again = _import(exported, other, *args)
    assert again.exit_code == 0 and "up to date" in again.stdout


def test_wrong_arch_is_refused_naming_the_keys(home, tmp_path, exported):
    before = tree(home)
    line = refused(
        invoke(
            "import",
            exported,
            "--arch",
            "vgg11",
            "--defense",
            "vanilla",
            "--home",
            home,
            "--name",
            "wrong",
        ),
        "does not fit vanilla vgg11",
    )
    assert "missing keys body." in line and "shape mismatches body.0.weight" in line
    assert tree(home) == before


class Planted:
    """Unpickling this runs ``touch MARKER``: the attack an unsafe torch.load would allow."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize(
    "wrap",
    [lambda p: p, lambda p: {"state_dict": {"body.0.weight": p}}],
    ids=["bare", "inside-a-state-dict"],
)
def test_a_planted_pickle_is_refused_and_never_runs(home, tmp_path, wrap):
    marker = tmp_path / "MARKER"
    path = tmp_path / "planted.pt"
    torch.save(wrap(Planted(marker)), path)
    before = tree(home)
    refused(_import(path, home), "nothing in it was run")
    assert not marker.exists() and tree(home) == before
    torch.load(path, weights_only=False)  # the file is armed: an unsafe load runs it
    assert marker.exists()


@pytest.mark.parametrize(
    "content, fragment",
    [
        (b"hello, this is not a checkpoint\n", "is not a PyTorch checkpoint"),
        (b"", "is not a PyTorch checkpoint"),
        (None, "no file"),
    ],
    ids=["text", "empty", "missing"],
)
def test_a_non_checkpoint_is_refused(home, tmp_path, content, fragment):
    path = tmp_path / "weights.pt"
    if content is not None:
        path.write_bytes(content)
    before = tree(home)
    refused(_import(path, home), fragment)
    assert tree(home) == before


def test_tensors_without_a_state_dict_are_refused(home, tmp_path):
    path = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), path)
    refused(_import(path, home), "holds no state dict")
