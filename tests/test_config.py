"""Parsers and settings (config.py, registry.py, model.py)."""

from __future__ import annotations

import pytest

from snnbench.archs import ARCHS
from snnbench.config import TrainConfig, dataclass_from, format_eps, parse_assignment, parse_eps
from snnbench.errors import SnnbenchError
from snnbench.model import apply_overrides, create_model, default_settings, resolve
from snnbench.config import ModelConfig


@pytest.mark.parametrize(
    "text, value",
    [("8/255", 8 / 255), ("0.031", 0.031), (0, 0.0), ("1", 1.0), (" 32/255 ", 32 / 255)],
)
def test_parse_eps_accepts(text, value):
    assert parse_eps(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["abc", "8/0", "-0.1", "2", "nan", "300/255"])
def test_parse_eps_refuses(text):
    with pytest.raises(SnnbenchError) as info:
        parse_eps(text)
    assert "\n" not in str(info.value)


def test_format_eps_round_trip():
    assert format_eps(8 / 255) == "8/255"
    assert format_eps(0.03) == "0.03"


def test_unknown_name_suggests_close_matches():
    with pytest.raises(SnnbenchError, match="did you mean 'vgg11'"):
        ARCHS.canonical("vgg1")
    assert ARCHS.canonical("WRN16_4") == "wrn16"


def test_settings_by_dotted_or_bare_key():
    base = default_settings("vanilla", "tgo")
    assert apply_overrides(base, {"decay": "0.25"})["neuron.decay"] == 0.25
    assert apply_overrides(base, {"neuron.theta": 2})["neuron.theta"] == 2.0
    with pytest.raises(SnnbenchError, match="valid keys"):
        apply_overrides(base, {"lambda_max": 0.6})
    with pytest.raises(SnnbenchError, match="must be of type float"):
        apply_overrides(base, {"decay": "fast"})


def test_parse_assignment():
    assert parse_assignment("neuron.decay=0.5") == ("neuron.decay", "0.5")
    with pytest.raises(SnnbenchError):
        parse_assignment("decay")


def test_track_presets_resolve():
    spec = resolve(ModelConfig("vanilla", "tiny", "digits", None, "randhet"))
    assert spec.timesteps == 8 and spec.settings["neuron.form"] == "convex"
    assert spec.settings["surrogate.kind"] == "atan"
    model = create_model("vanilla", arch="tiny", dataset="digits", timesteps=2, decay=1.0)
    assert model.timesteps == 2


def test_train_config_refuses_unknown_keys_and_types():
    with pytest.raises(SnnbenchError, match="unknown key 'epoch'"):
        dataclass_from(TrainConfig, {"epoch": 3}, "[train]")
    with pytest.raises(SnnbenchError, match="must be of type int"):
        dataclass_from(TrainConfig, {"epochs": "many"}, "[train]")
    with pytest.raises(SnnbenchError):
        TrainConfig(epochs=0)
