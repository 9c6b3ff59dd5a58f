"""Checkpoints: safetensors + card, verified on load (docs/guide.md)."""

from __future__ import annotations

import json

import pytest
import torch

import snnbench
from snnbench.checkpoint import CARD, WEIGHTS
from snnbench.errors import SnnbenchError

NAME = "vanilla-tiny-digits"


def test_load_rebuilds_the_trained_model(home):
    model = snnbench.load(NAME, home)
    card = snnbench.load_card(NAME, home)
    assert not model.training
    x, y = snnbench.load_dataset("digits", "test")
    with torch.no_grad():
        acc = (model(x).argmax(1) == y).float().mean().item()
    assert acc == pytest.approx(card["clean_accuracy"]["acc"])
    assert card["spec"]["arch"] == "tiny" and card["weights_sha256"]
    assert torch.__version__.startswith(card["versions"]["torch"])


def test_altered_weights_are_refused(home):
    path = home / "models" / NAME / WEIGHTS
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(SnnbenchError, match="altered"):
        snnbench.load(NAME, home)


def test_truncated_weights_are_refused(home):
    path = home / "models" / NAME / WEIGHTS
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(SnnbenchError, match="altered or truncated"):
        snnbench.load(NAME, home)


def test_card_naming_another_arch_is_refused(home):
    path = home / "models" / NAME / CARD
    card = json.loads(path.read_text())
    card["spec"]["arch"] = "wrn16"
    path.write_text(json.dumps(card))
    with pytest.raises(SnnbenchError, match="arch 'tiny' but its card names arch 'wrn16'"):
        snnbench.load(NAME, home)


def test_newer_schema_and_missing_card_are_refused(home):
    path = home / "models" / NAME / CARD
    card = json.loads(path.read_text())
    card["schema_version"] = 99
    path.write_text(json.dumps(card))
    with pytest.raises(SnnbenchError, match="upgrade snnbench"):
        snnbench.load(NAME, home)
    path.unlink()
    with pytest.raises(SnnbenchError, match="no card.json"):
        snnbench.load(NAME, home)


def test_unknown_model_names_where_it_looked(tmp_path):
    with pytest.raises(SnnbenchError, match="snnbench train"):
        snnbench.load("nothing-here", tmp_path)
