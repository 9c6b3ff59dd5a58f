"""Power of the masking checks on planted masking (docs/protocol.md, docs/protocol.md).

Tiny digits MLPs, each wrapped so that its gradients are obfuscated in a known way, go through
the real attacks (``run_attacks``) and checks; on every rerun (seed: weights, samples and
attack seeds) each is flagged by the check that should catch it, and the unwrapped MLP under
the same attacks is flagged by none. The measured rate over more reruns is in docs/protocol.md.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import pytest
import torch
from torch import nn

from snnbench.attacks import create_attack
from snnbench.checks import Probe, Results, run_probe_checks, run_result_checks
from snnbench.data import load_dataset
from snnbench.evaluate import EvalConfig, ModelInfo, run_attacks
from snnbench.store import ResultStore

EPS = 32 / 255
SEEDS = range(8)
N = 100  # samples per rerun (C13: all 1,797 digits; PGD's EoT gap is 6-11 pp)


@functools.lru_cache(maxsize=None)
def train_mlp(seed: int) -> nn.Module:
    """A 64-64-10 ReLU MLP on the digits training split (full batch, a second or two)."""
    x, y = load_dataset("digits", "train")
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(100):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


class _ZeroBackward(torch.autograd.Function):
    """Identity forward, zero backward: a straight-through op that passes no gradient."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return torch.zeros_like(grad)


class _Shattered(torch.autograd.Function):
    """A 16-level quantiser (non-differentiable) whose backward is random: shattered gradients."""

    @staticmethod
    def forward(ctx, x):
        return torch.round(x * 16) / 16

    @staticmethod
    def backward(ctx, grad):
        return torch.randn_like(grad)


class _RandomScale(torch.autograd.Function):
    """Identity forward; backward scales each sample's gradient by ``1 - 2 z``, z ~ N(0, 1) per
    call: its mean is the true gradient, but one draw points the wrong way 31% of the time,
    the mean of two draws 24%, of four 16% - randomness more EoT draws defeat (for PGD; APGD
    already copes at two)."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        z = torch.randn(len(grad), *([1] * (grad.dim() - 1)))
        return grad * (1 - 2 * z)


class Planted(nn.Module):
    """``model`` behind an input op (an autograd Function or None), its logits times ``scale``;
    ``stochastic`` declares randomness (the evaluation then uses EoT and k_eval draws)."""

    def __init__(self, model: nn.Module, op=None, scale: float = 1.0, stochastic: bool = False):
        super().__init__()
        self.model, self.op, self.scale, self.stochastic = model, op, scale, stochastic

    def forward(self, x):
        return self.scale * self.model(self.op.apply(x) if self.op else x)


def attack(name: str, steps: int | None = None, eot: int = 1):
    return create_attack(name, EPS, "Linf", steps, eot)


# case: (the planted model, its attacks, samples, the check that must fail)
CASES = {
    "zero gradients": (lambda m: Planted(m, _ZeroBackward), None, N, "C07"),
    "shattered gradients": (
        lambda m: Planted(m, _Shattered),
        [attack("pgd10"), attack("apgd-ce", 20), attack("square", 300)],
        N,
        "C14",
    ),
    "saturated cross-entropy": (
        lambda m: Planted(m, scale=1e4),
        [attack("apgd-ce", 20), attack("apgd-dlr", 20)],
        N,
        "C19",
    ),
    "randomness EoT defeats": (
        lambda m: Planted(m, _RandomScale, stochastic=True),
        [attack("pgd10", 20, 2), attack("pgd10", 20, 4)],
        1797,
        "C13",
    ),
}
VANILLA_ATTACKS = [
    attack("pgd10"),
    attack("pgd10", eot=2),
    attack("pgd10", eot=4),
    attack("apgd-ce", 20),
    attack("apgd-dlr", 20),
    attack("square", 300),
]


def samples(seed: int, n: int):
    """A seed's own class-mixed subset of the test split; beyond its 360 digits, of every digit
    (the planted cases ask whether a check sees the masking, not how well the model learnt)."""
    x, y = load_dataset("digits", "test")
    if n > len(y):
        train = load_dataset("digits", "train")
        x, y = torch.cat([x, train[0]]), torch.cat([y, train[1]])
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))[:n]
    return x[order], y[order]


def outcomes(model: nn.Module, attacks, seed: int, n: int) -> dict:
    """Every result check on the cards of ``attacks``, and the C07/C08 probes: by id."""
    x, y = samples(seed, n)
    stochastic = getattr(model, "stochastic", False)
    probe = Probe(model, x[:N], y[:N], stochastic, 10, EPS, seed=seed)
    found = {o.id: o for o in run_probe_checks(probe, ["C07", "C08"])}
    if attacks:
        info = ModelInfo.from_module(model, "planted")
        with tempfile.TemporaryDirectory() as tmp, ResultStore(Path(tmp) / "r.sqlite") as store:
            cards = run_attacks(
                model,
                info,
                attacks,
                x,
                y,
                store,
                EvalConfig(n=n, k_eval=3, seed=seed),
                torch.device("cpu"),
            )
        found.update({o.id: o for o in run_result_checks(Results(cards))})
    return found


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_planted_masking_is_flagged_by_its_check_on_every_rerun(case, seed):
    plant, attacks, n, check = CASES[case]
    result = outcomes(plant(train_mlp(seed)), attacks, seed, n)[check]
    assert result.status == "fail", (case, seed, result)


@pytest.mark.parametrize("seed", SEEDS)
def test_the_unwrapped_model_is_flagged_by_no_check(seed):
    found = outcomes(train_mlp(seed), VANILLA_ATTACKS, seed, N)
    assert [o for o in found.values() if o.status == "fail"] == []
    assert {"C07", "C08", "C13", "C14", "C17", "C19", "C21"} <= {
        i for i, o in found.items() if o.status == "pass"
    }
