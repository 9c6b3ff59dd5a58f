"""The attack batch: the whole chunk on CUDA, halved on out-of-memory, and the batch that fitted
carried to the next chunk; results never depend on it (docs/guide.md)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

import snnbench
from snnbench.attacks import create_attack
from snnbench.checkpoint import load_card
from snnbench.data import load_dataset
from snnbench.evaluate import CPU_BATCH, EvalConfig, ModelInfo, eval_batch, run_attacks
from snnbench.metrics import decode_counts
from snnbench.store import ResultStore

NAME = "vanilla-tiny-digits"
CPU = torch.device("cpu")


class FitsUpTo(nn.Module):
    """The model, out of memory on attack batches (gradients on) above ``limit`` images."""

    def __init__(self, inner: nn.Module, limit: int) -> None:
        super().__init__()
        self.inner, self.limit = inner, limit
        self.calls: list[tuple[int, bool]] = []  # (batch, refused) of every attack call

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            self.calls.append((len(x), len(x) > self.limit))
            if len(x) > self.limit:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory (test)")
        return self.inner(x)


def attack_run(model: nn.Module, home, tmp_path, tag: str, config: EvalConfig) -> list[dict]:
    card = load_card(NAME, home)
    x, y = load_dataset("digits", "test")
    with ResultStore(tmp_path / f"{tag}.sqlite") as store:
        return run_attacks(
            model,
            ModelInfo.from_card(card),
            [create_attack("fgsm", 32 / 255)],
            x,
            y,
            store,
            config,
            CPU,
        )


def test_first_batch_is_the_chunk_on_cuda_and_fixed_on_the_cpu():
    config = EvalConfig(chunk_size=300)
    assert eval_batch(config, torch.device("cuda")) == 300
    assert eval_batch(config, CPU) == CPU_BATCH
    assert eval_batch(EvalConfig(chunk_size=300, batch_size=64), torch.device("cuda")) == 64


def test_out_of_memory_halves_the_batch_and_the_next_chunk_starts_there(trained_home, tmp_path):
    plain = attack_run(
        snnbench.load(NAME, trained_home),
        trained_home,
        tmp_path,
        "plain",
        EvalConfig(n=100, chunk_size=50),
    )
    tight = FitsUpTo(snnbench.load(NAME, trained_home), limit=20)
    shrunk = attack_run(
        tight, trained_home, tmp_path, "tight", EvalConfig(n=100, chunk_size=50, batch_size=50)
    )
    refused = [size for size, no in tight.calls if no]
    worked = max(size for size, no in tight.calls if not no)
    assert refused and all(size > 20 for size in refused) and worked <= 20
    first_fit = next(i for i, (_, no) in enumerate(tight.calls) if not no)
    assert not any(no for _, no in tight.calls[first_fit:])  # chunk 2 did not start over
    assert shrunk[0]["timing"]["batch_size"] == worked  # the card tells the truth
    assert plain[0]["timing"]["batch_size"] == CPU_BATCH
    assert np.array_equal(
        decode_counts(plain[0]["per_sample"]["adv"]), decode_counts(shrunk[0]["per_sample"]["adv"])
    )
