"""The attack matrix: (model x attack x chunk) tasks, each stored in one transaction.

For every task: the chunk's clean predictions over ``k_eval`` draws; the attack on the samples
that are clean-correct in at least one draw (clean-incorrect samples count as non-robust and are
never attacked, evaluation.md section 6); ``k_eval`` draws on the adversarial inputs. A sample's
robust count is ``min(clean, adversarial)`` correct draws. Seeds come from
``sha256(seed|model|attack|chunk)``, so a resumed or moved task gives the same result.
"""
from __future__ import annotations

import dataclasses
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
from snnbench.data import DATASETS, balanced_subset, dataset_info
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


def data_key(info: ModelInfo, config: EvalConfig, n: int) -> str:
    """What the clean draws of a chunk depend on besides the model: data, cut, draws, seed."""
    k_eval = config.k_eval if info.stochastic else 1
    return (f"{info.dataset}:{config.split}:n={n}:balanced|chunk={config.chunk_size}"
            f"|k_eval={k_eval}|seed={config.seed}|torch={library_versions()['torch']}")


def clean_draws(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, index: int,
                info: ModelInfo, config: EvalConfig, device: torch.device,
                store: ResultStore | None = None, key: str = "") -> tuple[np.ndarray, np.ndarray]:
    """``(selection, report)`` correct-draw counts on the clean chunk, cached in ``store``.

    Their seeds depend on the chunk, not on the attack, so every attack shares them.
    """
    cached = store.clean_draws(info.sha256, key, index) if store is not None else None
    if cached is not None and len(cached[0]) == len(y):
        return cached
    k_eval = config.k_eval if info.stochastic else 1
    select = count_correct(model, x, y, k_eval, _draws(config, "eval", index, k_eval), device,
                           config.batch_size)
    report = count_correct(model, x, y, k_eval, _draws(config, "eval-report", index, k_eval),
                           device, config.batch_size) if info.stochastic else select
    if store is not None:
        store.put_clean_draws(info.sha256, key, index, k_eval, select, report)
    return select, report


def run_chunk(model: nn.Module, attack: Attack, x: torch.Tensor, y: torch.Tensor, *, index: int,
              key: str, info: ModelInfo, config: EvalConfig, device: torch.device,
              clean: tuple[np.ndarray, np.ndarray] | None = None,
              pool: np.ndarray | None = None) -> Chunk:
    """One task: clean draws, the attack on clean-correct samples, adversarial draws.

    Stochastic models follow evaluation.md section 4: ``k_eval`` *selection* draws on x and
    on x' pick the worse candidate z* per sample, then ``k_eval`` fresh *report* draws on z*
    give its count (no winner's curse); the clean column uses report draws on x. A
    deterministic model needs one pass per candidate, and the rule reduces to AutoAttack's.
    ``clean`` passes cached ``(selection, report)`` clean counts. ``pool`` (a cascade) holds
    each sample's count after the earlier attacks: only samples with a count above 0 are
    attacked, and the chunk stores the per-sample minimum with it.
    """
    start = time.perf_counter()
    k_eval = config.k_eval if info.stochastic else 1
    task_seed = stable_seed(config.seed, info.sha256, key, index)
    count = lambda inputs, labels, tag: count_correct(  # noqa: E731
        model, inputs, labels, k_eval, _draws(config, tag, index, k_eval), device, config.batch_size)
    select, clean = clean if clean is not None else clean_draws(
        model, x, y, index=index, info=info, config=config, device=device)
    adv = clean.copy()                 # z* = x until an attack does better
    alive = select > 0 if pool is None else (select > 0) & (pool > 0)
    target = np.flatnonzero(alive)
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
    if pool is not None:
        adv = np.minimum(adv, pool)
    return Chunk(index, clean.astype(np.uint8), adv.astype(np.uint8), k_eval,
                 time.perf_counter() - start, attack.grad_evals() * len(target),
                 batch, task_seed, {"device": device.type, "attacked": int(len(target))})


def result_card(info: ModelInfo, attack: Attack, key: str, config: EvalConfig,
                chunks: list[Chunk], device: str,
                extra_eval: dict[str, Any] | None = None) -> dict[str, Any]:
    """The result card of evaluation.md section 10, built from all chunks of one run."""
    k_eval = chunks[0].k_eval
    clean = np.concatenate([c.clean for c in chunks])
    adv = np.concatenate([c.adv for c in chunks])
    clean_acc, clean_ci, _ = accuracy_interval(clean, k_eval)
    robust, ci, method = accuracy_interval(adv, k_eval)
    majority = float((adv > k_eval // 2).mean()) if len(adv) else 0.0
    data = dataset_info(info.dataset) if info.dataset in DATASETS else None
    if data is not None and data.frames:   # eps is in frame-value units, not pixels
        extra_eval = {"input": data.input, **(extra_eval or {})}
    return {
        "schema": RESULT_SCHEMA,
        "model": {"name": info.name, "sha256": info.sha256, "defense": info.defense,
                  "arch": info.arch, "dataset": info.dataset, "timesteps": info.timesteps,
                  "stochastic": info.stochastic, "track": info.track},
        "attack": {"id": attack.id, "key": key, "impl": attack.impl, "params": attack.params,
                   "eps": attack.eps, "norm": attack.norm, "grad": attack.grad, "eot": attack.eot,
                   "eot_note": "model is deterministic: EoT not needed" if not info.stochastic else ""},
        "eval": {"split": config.split, "n": int(len(adv)), "k_eval": k_eval, "rule": "expected",
                 "subset": "balanced", "chunk_size": config.chunk_size,
                 "attacked": int(sum((c.env or {}).get("attacked", 0) for c in chunks)),
                 **(extra_eval or {})},
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


def cascade_key(key: str, earlier: list[str]) -> str:
    """A cascade member's key: its own plus a digest of every earlier member's key."""
    digest = hashlib.sha256("\n".join(earlier).encode()).hexdigest()[:16]
    return f"{key}|cascade={len(earlier)}:{digest}"


def run_attacks(model: nn.Module, info: ModelInfo, attacks: list[Attack], x: torch.Tensor,
                y: torch.Tensor, store: ResultStore, config: EvalConfig, device: torch.device,
                on_chunk: ChunkCallback | None = None, max_chunks: int | None = None,
                cascade: bool = False, per_attack_full: bool = True,
                paired: list[Attack] | None = None) -> list[dict]:
    """Run every attack on ``model`` over the chunks not yet stored; returns the finished cards.

    Per-attack runs attack every clean-correct sample. With ``cascade``, the attacks also run
    in order as a cascade (evaluation.md section 6): each on the samples that survived all the
    earlier ones, its column the per-sample minimum so far; with ``per_attack_full`` the
    per-attack runs come first and the cascade is derived from them without a new attack.
    ``paired`` attacks (Drop pairs) run first, on every clean-correct sample.
    ``max_chunks`` stops after that many newly computed chunks (a budget, and how the tests
    inject a stop); a rerun continues with the rest.
    """
    x, y = select_samples(x, y, config.n, dataset_info(info.dataset).num_classes)
    model.eval()
    count = (len(y) + config.chunk_size - 1) // config.chunk_size
    clean_key = data_key(info, config, len(y))
    budget = [max_chunks]
    cards: list[dict] = []

    def compute(index: int, attack: Attack, key: str, pool: np.ndarray | None,
                derived: Chunk | None) -> bool:
        """Run (or derive) one chunk unless stored or claimed; False once the budget is spent."""
        if budget[0] is not None and budget[0] <= 0:
            return False
        if not store.claim(info.sha256, key, index):
            return True
        part = slice(index * config.chunk_size, (index + 1) * config.chunk_size)
        try:
            clean = clean_draws(model, x[part], y[part], index=index, info=info, config=config,
                                device=device, store=store, key=clean_key)
            if derived is not None:    # the per-attack run already holds this attack's counts
                chunk = dataclasses.replace(derived, adv=np.minimum(derived.adv, pool),
                                            seconds=0.0, grad_evals=0,
                                            env={**(derived.env or {}), "attacked": 0,
                                                 "derived_from": "per-attack run"})
            else:
                chunk = run_chunk(model, attack, x[part], y[part], index=index, key=key,
                                  info=info, config=config, device=device, clean=clean, pool=pool)
        except BaseException:
            store.release(info.sha256, key, index)
            raise
        store.put_chunk(info.sha256, key, chunk)
        if budget[0] is not None:
            budget[0] -= 1
        if on_chunk:
            on_chunk(info.name, attack.id, index + 1, count)
        return True

    def finish(attack: Attack, key: str, extra: dict[str, Any] | None = None) -> None:
        card = store.card(info.sha256, key)
        chunks = store.chunks(info.sha256, key)
        if card is None and len(chunks) == count:
            card = result_card(info, attack, key, config, chunks, device.type, extra)
            store.put_card(info.sha256, key, card)
        if card is not None:
            cards.append(card)

    keys = [attack_key(a, info, config, len(y)) for a in attacks]
    singles = {attack_key(a, info, config, len(y)): a for a in
               [*(paired or []), *(attacks if not cascade or per_attack_full else [])]}
    for key, attack in singles.items():     # one run per key, whichever list named it
        done = store.stored_chunks(info.sha256, key)
        for index in range(count):
            if index not in done and not compute(index, attack, key, None, None):
                return cards
        finish(attack, key)
    if cascade:
        for position, (attack, key) in enumerate(zip(attacks, keys)):
            own_key = cascade_key(key, keys[:position])
            earlier = cascade_key(keys[position - 1], keys[:position - 1]) if position else None
            done = store.stored_chunks(info.sha256, own_key)
            for index in range(count):
                if index in done:
                    continue
                pool = None
                if earlier is not None:
                    previous = store.chunks(info.sha256, earlier, index)
                    if not previous:      # another process still works on the earlier member
                        continue
                    pool = previous[0].adv
                own = store.chunks(info.sha256, key, index) if per_attack_full else []
                derived = own[0] if own else None
                if derived is not None and pool is None:
                    pool = derived.adv
                if not compute(index, attack, own_key, pool, derived):
                    return cards
            finish(attack, own_key, {"cascade": {
                "position": position + 1, "of": len(attacks), "member": attack.label or attack.id,
                "after": [a.label or a.id for a in attacks[:position]]}})
    return cards
