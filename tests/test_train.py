"""The training loop: resume after a kill gives the same weights as an uninterrupted run."""

from __future__ import annotations

import pytest
from safetensors.torch import load_file

from snnbench.config import ModelConfig, TrainConfig
from snnbench.errors import SnnbenchError
from snnbench.train import STATE_JSON, cosine_lr, train_model

CONFIG = ModelConfig("vanilla", "tiny", "digits", 2)
TRAIN = TrainConfig(epochs=3, batch_size=256)


class Killed(Exception):
    pass


def test_resume_continues_from_the_last_finished_epoch(tmp_path):
    def kill_after_two(done, total, stats):
        if done == 2:
            raise Killed

    with pytest.raises(Killed):
        train_model(CONFIG, TRAIN, home=tmp_path / "a", device="cpu", on_epoch=kill_after_two)
    folder = tmp_path / "a" / "models" / "vanilla-tiny-digits"
    assert (folder / STATE_JSON).is_file() and not (folder / "card.json").exists()
    epochs_seen = []
    resumed = train_model(
        CONFIG,
        TRAIN,
        home=tmp_path / "a",
        device="cpu",
        on_epoch=lambda d, t, s: epochs_seen.append(d),
    )
    assert resumed.status == "resumed" and epochs_seen == [3]
    assert not (folder / STATE_JSON).exists()
    whole = train_model(CONFIG, TRAIN, home=tmp_path / "b", device="cpu")
    a = load_file(str(folder / "model.safetensors"))
    b = load_file(str(whole.folder / "model.safetensors"))
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    assert resumed.card["clean_accuracy"] == whole.card["clean_accuracy"]
    assert resumed.card["weights_sha256"] == whole.card["weights_sha256"]  # bit-identical file
    assert [h["loss"] for h in resumed.card["history"]] == [
        h["loss"] for h in whole.card["history"]
    ]


def test_same_name_other_settings_is_refused(tmp_path):
    train_model(CONFIG, TrainConfig(epochs=1), home=tmp_path, device="cpu")
    assert train_model(CONFIG, TrainConfig(epochs=1), home=tmp_path).status == "up to date"
    with pytest.raises(SnnbenchError, match="other settings already exists"):
        train_model(CONFIG, TrainConfig(epochs=2), home=tmp_path, device="cpu")


def test_cosine_schedule():
    assert cosine_lr(0.1, 0, 10) == pytest.approx(0.1)
    assert cosine_lr(0.1, 5, 10) == pytest.approx(0.05)
    values = [cosine_lr(0.1, e, 10) for e in range(10)]
    assert values == sorted(values, reverse=True)
