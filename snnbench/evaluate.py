"""The attack matrix: (model x attack x chunk) tasks, each stored in one transaction.

For every task: the chunk's clean predictions over ``k_eval`` draws; the attack on the samples
that are clean-correct in at least one draw (clean-incorrect samples count as non-robust and are
never attacked, evaluation.md section 6); ``k_eval`` draws on the adversarial inputs. A sample's
robust count is ``min(clean, adversarial)`` correct draws. Seeds come from
``sha256(seed|model|attack|chunk)``, so a resumed or moved task gives the same result.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import numpy as np
import torch
from safetensors.torch import save
from torch import nn

from snnbench.attacks import Attack
from snnbench.checkpoint import library_versions, now
from snnbench.files import stable_seed
from snnbench.data import balanced_subset, dataset_info
from snnbench.metrics import accuracy_interval, encode_counts
from snnbench.runtime import map_batches
from snnbench.store import Chunk, ResultStore

RESULT_SCHEMA = "snnbench.result/1"
ChunkCallback = Callable[[str, str, int, int], None]


@dataclass(frozen=True)
class EvalConfig:
    """Which samples, how many evaluation draws, and how the work is cut."""

    n: int | None = None          # None: the whole split
    k_eval: int = 3               # draws per sample for stochastic models (deterministic: 1)
    seed: int = 0
    chunk_size: int = 500
    batch_size: int = 256
    split: str = "test"


@dataclass(frozen=True)
class ModelInfo:
    """What a result card says about the model it was measured on."""

    name: str
    sha256: str
    defense: str
    arch: str
    dataset: str
    timesteps: int
    stochastic: bool
    track: str = ""

    @classmethod
    def from_card(cls, card: dict[str, Any]) -> "ModelInfo":
        spec = card["spec"]
        return cls(card["name"], card["weights_sha256"], spec["defense"], spec["arch"],
                   spec["dataset"], spec["timesteps"], bool(card.get("stochastic")), spec["track"])

    @classmethod
    def from_module(cls, model: nn.Module, name: str = "model", dataset: str = "digits") -> "ModelInfo":
        """For a module without a card: identified by the sha256 of its weights."""
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        sha = hashlib.sha256(save(state)).hexdigest()
        return cls(name, sha, "unknown", type(model).__name__, dataset,
                   int(getattr(model, "timesteps", 0)), bool(getattr(model, "stochastic", False)))


def attack_key(attack: Attack, info: ModelInfo, config: EvalConfig, n: int) -> str:
    """The attack's key plus every evaluation setting and library version."""
    k_eval = config.k_eval if info.stochastic else 1
    v = library_versions()
    return (f"{attack.key()}|k_eval={k_eval}|data={info.dataset}:{config.split}:n={n}:balanced"
            f"|chunk={config.chunk_size}|seed={config.seed}|torch={v['torch']}"
            f"|torchattacks={v['torchattacks']}|pyautoattack={v['pyautoattack']}")


def select_samples(x: torch.Tensor, y: torch.Tensor, n: int | None, num_classes: int):
    """The class-balanced evaluation subset (first n/#classes samples per class)."""
    if n is None or n >= len(y):
        return x, y
    idx = balanced_subset(y, n, num_classes)
    return x[idx], y[idx]


@torch.no_grad()
def count_correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor, draws: int,
                  seeds: Iterable[int], device: torch.device, batch_size: int) -> np.ndarray:
    """Per-sample number of correct predictions over ``draws`` forward passes."""
    counts = np.zeros(len(y), dtype=np.int64)
    for seed in list(seeds)[:draws]:
        torch.manual_seed(seed)
        preds, _ = map_batches(lambda s: model(x[s].to(device)).argmax(1).cpu(), len(y), batch_size)
        if preds:
            counts += (torch.cat(preds) == y).numpy()
    return counts


def _draws(config: EvalConfig, tag: str, index: int, k: int) -> list[int]:
    return [stable_seed(config.seed, tag, index, d) for d in range(k)]


def run_chunk(model: nn.Module, attack: Attack, x: torch.Tensor, y: torch.Tensor, *, index: int,
              key: str, info: ModelInfo, config: EvalConfig, device: torch.device) -> Chunk:
    """One task: clean draws, the attack on clean-correct samples, adversarial draws.

    Stochastic models follow evaluation.md section 4: ``k_eval`` *selection* draws on x and
    on x' pick the worse candidate z* per sample, then ``k_eval`` fresh *report* draws on z*
    give its count (no winner's curse); the clean column uses report draws on x. A
    deterministic model needs one pass per candidate, and the rule reduces to AutoAttack's.
    """
    start = time.perf_counter()
    k_eval = config.k_eval if info.stochastic else 1
    task_seed = stable_seed(config.seed, info.sha256, key, index)
    count = lambda inputs, labels, tag: count_correct(  # noqa: E731
        model, inputs, labels, k_eval, _draws(config, tag, index, k_eval), device, config.batch_size)
    select = count(x, y, "eval")
    clean = count(x, y, "eval-report") if info.stochastic else select
    adv = clean.copy()                 # z* = x until an attack does better
    target = np.flatnonzero(select > 0)
    batch = config.batch_size
    if len(target):
        xt, yt = x[target], y[target]
        torch.manual_seed(task_seed)
        parts, batch = map_batches(lambda s: attack(model, xt[s].to(device), yt[s].to(device)).cpu(),
                                   len(target), config.batch_size)
        x_adv = torch.cat(parts)
        hit = count(x_adv, yt, "eval-adv")
        worse = hit < select[target]
        if info.stochastic and worse.any():
            report = count(x_adv[worse], yt[worse], "eval-adv-report")
            adv[target[worse]] = report
        elif worse.any():
            adv[target[worse]] = hit[worse]
    if not info.stochastic:
        adv = np.minimum(adv, clean)
    return Chunk(index, clean.astype(np.uint8), adv.astype(np.uint8), k_eval,
                 time.perf_counter() - start, attack.grad_evals() * len(target),
                 batch, task_seed, {"device": device.type})


def result_card(info: ModelInfo, attack: Attack, key: str, config: EvalConfig,
                chunks: list[Chunk], device: str) -> dict[str, Any]:
    """The result card of evaluation.md section 10, built from all chunks of one run."""
    k_eval = chunks[0].k_eval
    clean = np.concatenate([c.clean for c in chunks])
    adv = np.concatenate([c.adv for c in chunks])
    clean_acc, clean_ci, _ = accuracy_interval(clean, k_eval)
    robust, ci, method = accuracy_interval(adv, k_eval)
    majority = float((adv > k_eval // 2).mean()) if len(adv) else 0.0
    return {
        "schema": RESULT_SCHEMA,
        "model": {"name": info.name, "sha256": info.sha256, "defense": info.defense,
                  "arch": info.arch, "dataset": info.dataset, "timesteps": info.timesteps,
                  "stochastic": info.stochastic, "track": info.track},
        "attack": {"id": attack.id, "key": key, "impl": attack.impl, "params": attack.params,
                   "eps": attack.eps, "norm": attack.norm, "grad": attack.grad, "eot": attack.eot,
                   "eot_note": "model is deterministic: EoT not needed" if not info.stochastic else ""},
        "eval": {"split": config.split, "n": int(len(adv)), "k_eval": k_eval, "rule": "expected",
                 "subset": "balanced", "chunk_size": config.chunk_size},
        "seed": config.seed,
        "env": {**library_versions(), "device": device},
        "result": {"clean_acc": clean_acc, "clean_ci95": list(clean_ci), "robust_acc": robust,
                   "ci95": list(ci), "ci": method, "majority_acc": majority,
                   "asr": 1 - robust / clean_acc if clean_acc > 0 else 0.0},
        "per_sample": {"encoding": "base64 uint8 correct-draw counts",
                       "clean": encode_counts(clean), "adv": encode_counts(adv)},
        "timing": {"seconds": round(sum(c.seconds for c in chunks), 3),
                   "grad_evals": int(sum(c.grad_evals for c in chunks)),
                   "batch_size": min(c.batch_size for c in chunks)},
        "checks": {"C01": "pass"}, "flags": [], "created": now(),
    }


def run_attacks(model: nn.Module, info: ModelInfo, attacks: list[Attack], x: torch.Tensor,
                y: torch.Tensor, store: ResultStore, config: EvalConfig, device: torch.device,
                on_chunk: ChunkCallback | None = None, max_chunks: int | None = None) -> list[dict]:
    """Run every attack on ``model`` over the chunks not yet stored; returns the finished cards.

    ``max_chunks`` stops after that many newly computed chunks (a budget, and how the tests
    inject a stop); a rerun continues with the rest.
    """
    x, y = select_samples(x, y, config.n, dataset_info(info.dataset).num_classes)
    model.eval()
    cards, computed = [], 0
    count = (len(y) + config.chunk_size - 1) // config.chunk_size
    for attack in attacks:
        key = attack_key(attack, info, config, len(y))
        done = store.stored_chunks(info.sha256, key)
        for index in range(count):
            if index in done:
                continue
            if max_chunks is not None and computed >= max_chunks:
                return cards
            if not store.claim(info.sha256, key, index):
                continue
            part = slice(index * config.chunk_size, (index + 1) * config.chunk_size)
            try:
                chunk = run_chunk(model, attack, x[part], y[part], index=index, key=key,
                                  info=info, config=config, device=device)
            except BaseException:
                store.release(info.sha256, key, index)
                raise
            store.put_chunk(info.sha256, key, chunk)
            computed += 1
            if on_chunk:
                on_chunk(info.name, attack.id, index + 1, count)
        card = store.card(info.sha256, key)
        chunks = store.chunks(info.sha256, key)
        if card is None and len(chunks) == count:
            card = result_card(info, attack, key, config, chunks, device.type)
            store.put_card(info.sha256, key, card)
        if card is not None:
            cards.append(card)
    return cards
