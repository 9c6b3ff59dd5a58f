"""Shared fixtures: one small vanilla digits model trained once per test session."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

from snnbench.config import ModelConfig, TrainConfig
from snnbench.train import train_model

TEST_EPOCHS = 6

# One CPU thread for the tests and the CLI runs they start: on a shared 2-core machine a second
# intra-op thread that finds its core busy spins (runtime.cpu_threads), and tests are small.
os.environ.setdefault("SNNBENCH_THREADS", "1")
torch.set_num_threads(int(os.environ["SNNBENCH_THREADS"]))


@pytest.fixture(scope="session")
def trained_home(tmp_path_factory) -> Path:
    """A home holding ``vanilla-tiny-digits`` (few epochs: tests need a model, not a good one)."""
    home = tmp_path_factory.mktemp("home")
    train_model(
        ModelConfig("vanilla", "tiny", "digits", 4),
        TrainConfig(epochs=TEST_EPOCHS),
        home=home,
        device="cpu",
    )
    return home


@pytest.fixture(scope="session")
def stochastic_home(tmp_path_factory) -> Path:
    """A home holding ``randhet-tiny-digits`` (random decays per step), briefly trained: an
    untrained tiny SNN on digits never fires its last layer, so every draw looks alike."""
    home = tmp_path_factory.mktemp("randhet")
    train_model(
        ModelConfig("randhet", "tiny", "digits", 4), TrainConfig(epochs=3), home=home, device="cpu"
    )
    return home


@pytest.fixture
def home(trained_home, tmp_path) -> Path:
    """A private copy of the trained home, free to change."""
    target = tmp_path / "home"
    shutil.copytree(trained_home, target)
    return target
