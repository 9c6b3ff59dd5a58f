"""Bring your own SNN, end to end: a SpikingJelly net through ``snnbench.evaluate`` into a home
whose row ``snnbench report`` and ``gate`` read; and a plan whose gradient mode cannot reach a
model's neurons is refused before any attack runs (``api.check_plan_reaches``)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import snnbench
from snnbench import api
from snnbench.cli import app
from snnbench.data import load_dataset
from snnbench.errors import SnnbenchError

runner = CliRunner()


def spikingjelly_net(steps: int = 60) -> nn.Module:
    """conv-BN-LIF, avgpool, linear on 8x8 digits, T = 4 (SpikingJelly single-step neurons,
    reset at every forward), trained for a few full-batch Adam steps."""
    sj = pytest.importorskip("spikingjelly.activation_based")
    from spikingjelly.activation_based import functional, neuron, surrogate

    class SJNet(nn.Module):
        timesteps = 4

        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(
                nn.Conv2d(1, 8, 3, padding=1),
                nn.BatchNorm2d(8),
                neuron.LIFNode(surrogate_function=surrogate.ATan()),
                nn.AvgPool2d(2),
                nn.Flatten(),
                nn.Linear(8 * 4 * 4, 10),
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            functional.reset_net(self)
            return torch.stack([self.body(x) for _ in range(self.timesteps)]).mean(0)

    assert sj is not None
    torch.manual_seed(0)
    net = SJNet()
    x, y = load_dataset("digits", "train")
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
    for _ in range(steps):
        optimizer.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        optimizer.step()
    return net.eval()


def test_a_spikingjelly_net_is_evaluated_into_a_row_that_report_and_gate_read(tmp_path):
    net = spikingjelly_net()
    result = snnbench.evaluate(
        net, dataset="digits", suite="quick", eot=4, home=tmp_path, name="sj-net", device="cpu"
    )
    assert not result.stochastic and result.headline["n"] == 360
    assert result.headline["acc"] <= min(c["result"]["robust_acc"] for c in result.cards)
    out = tmp_path / "out"
    reported = runner.invoke(
        app, ["report", "--format", "json", "--out", str(out), "--home", str(tmp_path)]
    )
    assert reported.exit_code == 0, reported.output
    (row,) = api.leaderboard(tmp_path).rows
    assert row["model"] == "sj-net" and row["headline"]["acc"] == result.headline["acc"]
    (baseline,) = out.glob("*.json")
    gated = runner.invoke(app, ["gate", "--baseline", str(baseline), "--home", str(tmp_path)])
    assert gated.exit_code == 0, gated.output


class UnknownSpikingNeuron(nn.Module):
    """A neuron from a library snnbench does not know (its name and ``v_threshold`` say so)."""

    v_threshold = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x > self.v_threshold).float() + x - x.detach()


def test_a_mode_that_cannot_reach_the_neurons_refuses_before_any_attack_runs(tmp_path):
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), UnknownSpikingNeuron(), nn.Linear(32, 10))
    with pytest.raises(
        SnnbenchError,
        match="transfer-ann-twin-fgsm: the ann-twin cannot reach "
        "neuron type .*UnknownSpikingNeuron",
    ):
        snnbench.evaluate(
            net,
            dataset="digits",
            attacks=["fgsm", "transfer-ann-twin-fgsm"],
            n=20,
            checks=False,
            home=tmp_path,
            name="unknown",
            device="cpu",
        )
    with api.open_store(tmp_path) as store:
        assert store.cards() == []  # fgsm, first in the plan, never ran
