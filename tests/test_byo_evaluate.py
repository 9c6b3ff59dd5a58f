"""Bring your own SNN: ``snnbench.evaluate`` and ``attack --model`` on plain PyTorch modules
(tests/byo_models.py), not built by snnbench: rows, randomness detection, [T, B, K], state."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save
from torch import nn
from typer.testing import CliRunner

import byo_models
import snnbench
from snnbench import api
from snnbench.attacks.suites import SUITES
from snnbench.cli import app
from snnbench.data import load_dataset
from snnbench.errors import SnnbenchError
from snnbench.evaluate import select_samples

MODELS = Path(byo_models.__file__)
runner = CliRunner()


def quick(model: nn.Module, **options):
    """A cheap evaluation: FGSM only, 20 samples, no checks, unless the test says otherwise."""
    return snnbench.evaluate(
        model,
        **{
            "dataset": "digits",
            "attacks": ["fgsm"],
            "n": 20,
            "checks": False,
            "device": "cpu",
            **options,
        },
    )


def test_a_plain_module_is_a_leaderboard_row_that_report_and_gate_read(tmp_path):
    net = byo_models.plain_net()
    tensors = {k: v.contiguous() for k, v in net.state_dict().items()}
    state = hashlib.sha256(save(tensors)).hexdigest()
    result = snnbench.evaluate(
        net, dataset="digits", suite="quick", n=40, home=tmp_path, name="my-net", device="cpu"
    )
    quick_ids = {a.id for a in SUITES.get("quick").attacks(32 / 255)}
    assert {c["attack"]["id"] for c in result.cards} == quick_ids
    top = result.headline  # the per-sample worst case: at most every column
    assert top["ci95"][0] <= top["acc"] <= top["ci95"][1] and top["n"] == 40
    assert top["acc"] <= min(c["result"]["robust_acc"] for c in result.cards)
    assert result.checks and result.flags == [] and not result.stochastic and result.k_eval == 1
    card = json.loads((tmp_path / "modules" / "my-net" / "card.json").read_text())
    assert card["class"].endswith("PlainNet") and card["state_dict_sha256"] == state
    assert card["declared"] == {"stochastic": None, "by": None}
    board, _ = api.report(tmp_path, tmp_path / "out", ("json",))
    (row,) = board.rows
    assert row["model"] == "my-net" and row["headline"]["acc"] == top["acc"]
    assert row["checks"] and not row["unreliable"]  # the checks are stored with the row
    gated = api.gate(tmp_path / "out" / f"{board.name}.json", tmp_path)
    assert gated.ok and gated.passed == len(row["attacks"]) + 1 and not gated.missing


def test_a_random_module_without_a_declaration_is_detected_and_scored_as_stochastic():
    with pytest.warns(UserWarning, match="NoisyNet is random"):
        result = quick(byo_models.noisy_net(), attacks=["pgd10"], eot=2)
    (card,) = result.cards
    assert result.stochastic and result.k_eval == 3 and card["eval"]["k_eval"] == 3
    assert card["attack"]["eot"] == 2 and card["attack"]["eot_note"] == ""
    assert card["model"]["stochastic"] and "detected" in card["model"]["notes"][0]
    assert result.model["declared"]["stochastic"] is None


def test_a_deterministic_module_stays_deterministic():
    result = quick(byo_models.plain_net())
    assert not result.stochastic and result.k_eval == 1
    assert result.cards[0]["attack"]["eot_note"].startswith("model is deterministic")


@pytest.mark.parametrize(
    "factory, declared, behaviour",
    [
        (byo_models.noisy_net, False, "differ by up to"),
        (byo_models.plain_net, True, "give the same logits"),
    ],
)
def test_a_declaration_the_behaviour_contradicts_is_an_error(factory, declared, behaviour):
    with pytest.raises(SnnbenchError, match=f"stochastic={declared}.*{behaviour}"):
        quick(factory(), stochastic=declared)


def test_the_modules_own_stochastic_attribute_is_a_declaration_too():
    net = byo_models.noisy_net()
    net.stochastic = False
    with pytest.raises(SnnbenchError, match="`stochastic` attribute says False.*differ"):
        quick(net)
    net.stochastic = True
    assert quick(net).model["declared"] == {
        "stochastic": True,
        "by": "the module's `stochastic` attribute",
    }


def test_time_first_outputs_are_averaged_over_time_and_the_card_says_so():
    net = byo_models.time_first_net()
    result = quick(net, n=40)
    (card,) = result.cards
    assert result.model["output"].startswith("[T, B, K] with T = 3")
    assert result.model["timesteps"] == 3
    assert any("averaged over T" in note for note in card["model"]["notes"])
    x, y = load_dataset("digits", "test")
    x, y = select_samples(x, y, 40, 10)
    with torch.no_grad():
        clean = float((net(x).mean(0).argmax(1) == y).float().mean())
    assert card["result"]["clean_acc"] == pytest.approx(clean)


class NumpyNoise(nn.Module):
    """Random through numpy, which torch.manual_seed does not reach."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        noise = torch.as_tensor(np.random.default_rng().normal(size=(len(x), 10)), dtype=x.dtype)
        return x.flatten(1)[:, :10] + noise


def test_randomness_outside_torchs_generator_is_stochastic_and_the_card_says_so():
    with pytest.warns(UserWarning, match="is random"):
        result = quick(NumpyNoise())
    assert result.stochastic and "cannot be replayed" in result.model["randomness"]


class BatchSecond(nn.Module):
    """[B, T, K]: not a layout snnbench reads."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([x.flatten(1)[:, :10]] * 3, 1)


def test_an_output_layout_snnbench_cannot_read_is_refused_in_one_line():
    with pytest.raises(SnnbenchError, match=r"returns \[8, 3, 10\] .* \[T, B, K\]") as caught:
        quick(BatchSecond())
    assert "\n" not in str(caught.value)


def test_a_module_that_keeps_state_between_calls_is_refused_with_the_reset_hint():
    with pytest.raises(SnnbenchError, match="keeps state between calls.*reset_net"):
        quick(byo_models.stateful_net())


def test_a_module_for_other_inputs_fails_in_one_line():
    with pytest.raises(SnnbenchError, match=r"Linear fails on images \[8, 1, 8, 8\].*--data"):
        quick(nn.Linear(3 * 32 * 32, 10))


def test_a_name_that_a_trained_model_holds_is_refused(home):
    with pytest.raises(SnnbenchError, match="is a trained model"):
        quick(byo_models.PlainNet(), home=home, name="vanilla-tiny-digits")


def test_attack_model_from_a_file_writes_a_row_that_report_and_check_read(tmp_path, monkeypatch):
    ref = f"{MODELS}:plain_net"
    result = runner.invoke(
        app,
        [
            "attack",
            "--model",
            ref,
            "--attacks",
            "fgsm,pgd10",
            "--n",
            "20",
            "--home",
            str(tmp_path),
            "--device",
            "cpu",
            "--quiet",
            "--no-checks",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "plain_net: [B, K] logits" in result.stdout and "headline (worst case)" in result.stdout
    board = api.leaderboard(tmp_path)
    assert [r["model"] for r in board.rows] == ["plain_net"]
    assert set(board.rows[0]["attacks"]) == {"fgsm", "pgd10"}
    monkeypatch.chdir(MODELS.parent)  # MODULE:CALLABLE, importable from the current directory
    checked = runner.invoke(
        app,
        [
            "check",
            "--model",
            "byo_models:plain_net",
            "--name",
            "plain_net",
            "--checks",
            "C03,C20",
            "--n",
            "20",
            "--home",
            str(tmp_path),
            "--device",
            "cpu",
        ],
    )
    assert checked.exit_code == 0, checked.output
    with api.open_store(tmp_path) as store:
        stored = store.checks()[board.rows[0]["sha256"]]
    assert {o["id"] for o in stored} == {"C03", "C20"}


def test_attack_help_says_it_runs_the_users_code():
    text = runner.invoke(app, ["attack", "--help"], env={"COLUMNS": "300"}).output
    assert "RUNS THAT PYTHON CODE" in text


@pytest.mark.parametrize(
    "ref, message",
    [
        ("no-colon", "is not MODULE:CALLABLE"),
        ("tests/none.py:fn", "no file"),
        ("snnbench_no_such_module:fn", "cannot import"),
        (f"{MODELS}:no_such_fn", "has no callable"),
    ],
)
def test_a_bad_model_reference_is_one_error_line(ref, message, tmp_path):
    result = runner.invoke(app, ["attack", "--model", ref, "--home", str(tmp_path)])
    assert result.exit_code == 2 and message in result.stderr
    assert len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize("fixture, random", [("trained_home", False), ("stochastic_home", True)])
def test_detection_agrees_with_snnbench_own_declarations(request, fixture, random):
    """snnbench's own models through evaluate: the module declares itself (its ``stochastic``
    attribute) and the passes agree, vanilla deterministic and RandHet random."""
    home = request.getfixturevalue(fixture)
    (name,) = api.home_models(home)
    model = snnbench.load(name, home)
    assert model.stochastic is random
    result = quick(model)
    assert result.stochastic is random and result.model["declared"]["stochastic"] is random
    assert result.k_eval == (3 if random else 1)
