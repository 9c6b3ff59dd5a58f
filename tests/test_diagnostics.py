"""Diagnostics (docs/protocol.md) on neurons with known potentials and on trained models."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import snnbench
from snnbench import api
from snnbench.checks import Probe
from snnbench.cli import app
from snnbench.config import NeuronConfig
from snnbench.diagnostics import diagnose
from snnbench.layouts import DIAG, Column, Layout, Row, render_layout
from snnbench.neurons import LIF


def one_neuron_probe(current: float, samples: int = 8) -> Probe:
    """Four neurons at T = 1 fed a constant current: u = current, theta = 1."""
    model = nn.Sequential(LIF(NeuronConfig(theta=1.0), timesteps=1), nn.Flatten())
    x = torch.full((samples, 1, 2, 2), current)
    return Probe(model, x, torch.zeros(samples, dtype=torch.long), False, 4, 0.1)


def test_tnf_counts_potentials_near_the_threshold_relative_to_theta():
    values = diagnose(one_neuron_probe(0.93), ["tnf"])
    assert values["tnf@0.1"] == 1.0 and values["tnf@0.05"] == 0.0 and values["tnf@0.5"] == 1.0
    far = diagnose(one_neuron_probe(0.2), ["tnf"])
    assert far["tnf@0.5"] == 0.0 and far["surrogate_nonzero"] == 1.0  # triangle: |u-1| < 1
    assert diagnose(one_neuron_probe(-0.5), ["tnf"])["surrogate_nonzero"] == 0.0


def test_spike_rate_is_spikes_per_neuron_and_step():
    assert diagnose(one_neuron_probe(1.5), ["spike_rate"])["spike_rate"] == 1.0
    assert diagnose(one_neuron_probe(0.5), ["spike_rate"])["spike_rate"] == 0.0


def test_agcs_is_one_for_a_deterministic_model_and_below_for_random_decays(
    trained_home, stochastic_home
):
    from snnbench.data import load_dataset

    x, y = load_dataset("digits", "test")
    vanilla = snnbench.load("vanilla-tiny-digits", home=trained_home)
    randhet = snnbench.load("randhet-tiny-digits", home=stochastic_home)
    assert diagnose(Probe(vanilla, x[:40], y[:40], False, 10, 0.1), ["agcs"])[
        "agcs"
    ] == pytest.approx(1.0)
    random_agcs = diagnose(Probe(randhet, x[:40], y[:40], True, 10, 0.1), ["agcs"])["agcs"]
    assert 0.0 < random_agcs < 0.999


def test_gradient_sparsity_of_a_masked_model():
    probe = one_neuron_probe(0.5)
    probe.model = nn.Sequential(
        nn.Hardtanh(2, 3), nn.Flatten(), nn.Linear(4, 4)
    )  # flat: zero grads
    values = diagnose(probe, ["sparsity"])
    assert values["grad_zero_samples"] == 1.0 and values["grad_zero_fraction"] == 1.0


def test_diagnose_command_stores_values_that_a_layout_column_shows(home):
    result = CliRunner().invoke(
        app,
        [
            "diagnose",
            "vanilla-tiny-digits",
            "--home",
            str(home),
            "--n",
            "50",
            "--metrics",
            "agcs,spike_rate",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "spike_rate/layer0" in result.stdout
    api.attack(home=home, attacks=["fgsm"], n=50, device="cpu")
    row = api.leaderboard(home).rows[0]
    assert row["diagnostics"]["agcs"] == pytest.approx(1.0)
    layout = Layout(
        "t",
        "t",
        (Column("AGCS", (f"{DIAG}agcs",)), Column("FGSM", ("fgsm",))),
        (Row("SNN", "vanilla", dataset="digits"),),
    )
    table = render_layout(layout, [row])
    assert table.body[0][3:5] == ["1.0000", f"{100 * row['attacks']['fgsm']['robust_acc']:.2f}"]
