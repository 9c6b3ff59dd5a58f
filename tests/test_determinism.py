"""Same seed, same model, two homes: bit-identical per-sample results (docs/guide.md)."""

from __future__ import annotations

import shutil

from test_cli import invoke

from snnbench import api
from snnbench.checkpoint import LIBRARIES
from snnbench.config import ModelConfig, TrainConfig
from snnbench.train import train_model

SEED = 5


def _chunks(home):
    """Every stored chunk's per-sample counts, and the result cards."""
    with api.open_store(home) as store:
        cards = store.cards()
        rows = {
            (c["attack"]["key"], chunk.index): (
                chunk.clean.tobytes(),
                chunk.adv.tobytes(),
                chunk.seed,
            )
            for c in cards
            for chunk in store.chunks(c["model"]["sha256"], c["attack"]["key"])
        }
    return rows, cards


def test_same_seed_same_per_sample_results_in_two_homes(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    trained = train_model(
        ModelConfig("tgo", "tiny", "digits", 2), TrainConfig(epochs=1), home=first, device="cpu"
    )  # stochastic: the seeds matter
    shutil.copytree(first, second)
    for home in (first, second):
        result = invoke(
            "attack",
            "--attacks",
            "fgsm,pgd10",
            "--n",
            "60",
            "--chunk-size",
            "20",
            "--seed",
            SEED,
            "--device",
            "cpu",
            "--home",
            home,
            "--quiet",
        )
        assert result.exit_code == 0, result.output
    (rows_a, cards_a), (rows_b, cards_b) = _chunks(first), _chunks(second)
    assert rows_a and rows_a == rows_b
    assert [c["per_sample"] for c in cards_a] == [c["per_sample"] for c in cards_b]
    for card in cards_a:
        assert card["model"]["stochastic"] and card["model"]["name"] == trained.name
        assert card["seed"] == SEED and card["env"]["device"] == "cpu"
        assert set(LIBRARIES) <= set(card["env"]) and card["env"]["torch"]
