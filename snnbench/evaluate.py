"""The attack matrix: (model x attack x chunk) tasks, each stored in one transaction.

For every task: the chunk's clean predictions over ``k_eval`` selection and report draws; the
attack on the samples whose candidate input still has a correct selection draw (clean-incorrect
samples count as non-robust and are never attacked, docs/protocol.md); selection draws on the
adversarial inputs decide which candidate each sample keeps (ties to the adversarial one), and
fresh report draws score it (:func:`run_chunk`). Seeds come from
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

from snnbench import progress
from snnbench.attacks import Attack
from snnbench.checkpoint import library_versions, now
from snnbench.files import stable_seed
from snnbench.data import DATASETS, balanced_subset, dataset_info
from snnbench.metrics import Candidates, accuracy_interval, encode_counts
from snnbench.runtime import is_compiled, map_batches
from snnbench.store import Chunk, ResultStore

RESULT_SCHEMA = "snnbench.result/1"
# The scoring rule in every attack key: chunks scored by an older rule are never reused.
# select2 = selection draws choose every candidate (across attacks and the cascade pool),
# ties go to the adversarial one, fresh report draws score it.
SCORING_RULE = "select2"
ChunkCallback = Callable[[str, str, int, int], None]


@dataclass(frozen=True)
class EvalConfig:
    """Which samples, how many evaluation draws, and how the work is cut."""

    n: int | None = None  # None: the whole split
    k_eval: int = 3  # draws per sample for stochastic models (deterministic: 1)
    seed: int = 0
    chunk_size: int = 500
    batch_size: int | None = None  # None: eval_batch (CUDA: the chunk; CPU: CPU_BATCH)
    split: str = "test"


CPU_BATCH = 256  # the CPU's batch: no memory limit to find, and results do not depend on it


def eval_batch(config: EvalConfig, device: torch.device) -> int:
    """The first batch to try: ``config.batch_size``, else on CUDA the whole chunk (the largest
    useful batch; :func:`snnbench.runtime.map_batches` halves it on out-of-memory), else
    :data:`CPU_BATCH`."""
    if config.batch_size is not None:
        return config.batch_size
    return config.chunk_size if device.type == "cuda" else CPU_BATCH


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
    notes: tuple[str, ...] = ()  # what a result card says about how the model was read

    @classmethod
    def from_card(cls, card: dict[str, Any]) -> "ModelInfo":
        spec = card["spec"]
        return cls(
            card["name"],
            card["weights_sha256"],
            spec["defense"],
            spec["arch"],
            spec["dataset"],
            spec["timesteps"],
            bool(card.get("stochastic")),
            spec["track"],
        )

    @classmethod
    def from_module(
        cls,
        model: nn.Module,
        name: str = "model",
        dataset: str = "digits",
        stochastic: bool | None = None,
        timesteps: int | None = None,
        notes: tuple[str, ...] = (),
    ) -> "ModelInfo":
        """For a module without a card: identified by the sha256 of its class and state dict
        (:func:`module_sha256`); ``stochastic`` and ``timesteps`` default to its attributes."""
        if stochastic is None:
            stochastic = bool(getattr(model, "stochastic", False))
        steps = int(getattr(model, "timesteps", 0)) if timesteps is None else timesteps
        return cls(
            name,
            module_sha256(model),
            "unknown",
            type(model).__name__,
            dataset,
            steps,
            stochastic,
            notes=tuple(notes),
        )


def state_dict_sha256(model: nn.Module) -> str:
    """The sha256 of ``model``'s state dict (as safetensors bytes, no metadata)."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return hashlib.sha256(save(state)).hexdigest()


def module_sha256(model: nn.Module) -> str:
    """What results are stored under for a module without a card: its class name (not its
    import path, which depends on how it was imported) and its state dict, so two
    parameter-free modules of different classes never share a cache."""
    return hashlib.sha256(
        f"{type(model).__qualname__}|{state_dict_sha256(model)}".encode()
    ).hexdigest()


def eval_draws(info: ModelInfo, config: EvalConfig) -> int:
    """Evaluation draws per sample: ``k_eval`` for a stochastic model, one otherwise."""
    return config.k_eval if info.stochastic else 1


def attack_key(attack: Attack, info: ModelInfo, config: EvalConfig, n: int) -> str:
    """The attack's key plus every evaluation setting and library version."""
    k_eval = eval_draws(info, config)
    v = library_versions()
    return (
        f"{attack.key()}|k_eval={k_eval}|rule={SCORING_RULE}"
        f"|data={info.dataset}:{config.split}:n={n}:balanced"
        f"|chunk={config.chunk_size}|seed={config.seed}|torch={v['torch']}"
        f"|torchattacks={v['torchattacks']}|pyautoattack={v['pyautoattack']}"
    )


def sample_indices(y: torch.Tensor, n: int | None, num_classes: int) -> np.ndarray:
    """The indices of the class-balanced evaluation subset (first n/#classes per class)."""
    if n is None or n >= len(y):
        return np.arange(len(y))
    return np.asarray(balanced_subset(y, n, num_classes))


def samples_digest(dataset: str, split: str, indices: np.ndarray) -> str:
    """A short name of the evaluated samples: equal digests, equal samples in equal order."""
    text = f"{dataset}:{split}:" + ",".join(map(str, np.asarray(indices).tolist()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def select_samples(x: torch.Tensor, y: torch.Tensor, n: int | None, num_classes: int):
    """The class-balanced evaluation subset (first n/#classes samples per class)."""
    if n is None or n >= len(y):
        return x, y
    idx = sample_indices(y, n, num_classes)
    return x[idx], y[idx]


@torch.no_grad()
def count_correct(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    draws: int,
    seeds: Iterable[int],
    device: torch.device,
    batch_size: int,
) -> np.ndarray:
    """Per-sample number of correct predictions over ``draws`` forward passes."""
    counts = np.zeros(len(y), dtype=np.int64)
    for seed in list(seeds)[:draws]:
        preds, _ = map_batches(
            lambda s: model(x[s].to(device)).argmax(1).cpu(),
            len(y),
            batch_size,
            restart=lambda: torch.manual_seed(seed),
        )
        if preds:
            counts += (torch.cat(preds) == y).numpy()
    return counts


def _draws(config: EvalConfig, tag: str, index: int, k: int) -> list[int]:
    return [stable_seed(config.seed, tag, index, d) for d in range(k)]


def data_key(info: ModelInfo, config: EvalConfig, n: int) -> str:
    """What the clean draws of a chunk depend on besides the model: data, cut, draws, seed."""
    k_eval = eval_draws(info, config)
    return (
        f"{info.dataset}:{config.split}:n={n}:balanced|chunk={config.chunk_size}"
        f"|k_eval={k_eval}|seed={config.seed}|torch={library_versions()['torch']}"
    )


def clean_draws(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    index: int,
    info: ModelInfo,
    config: EvalConfig,
    device: torch.device,
    store: ResultStore | None = None,
    key: str = "",
) -> tuple[np.ndarray, np.ndarray]:
    """``(selection, report)`` correct-draw counts on the clean chunk, cached in ``store``.

    Their seeds depend on the chunk, not on the attack, so every attack shares them.
    """
    cached = store.clean_draws(info.sha256, key, index) if store is not None else None
    if cached is not None and len(cached[0]) == len(y):
        return cached
    k_eval = eval_draws(info, config)
    batch = eval_batch(config, device)
    select = count_correct(
        model, x, y, k_eval, _draws(config, "eval", index, k_eval), device, batch
    )
    report = (
        count_correct(
            model, x, y, k_eval, _draws(config, "eval-report", index, k_eval), device, batch
        )
        if info.stochastic
        else select
    )
    if store is not None:
        store.put_clean_draws(info.sha256, key, index, k_eval, select, report)
    return select, report


def run_chunk(
    model: nn.Module,
    attack: Attack,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    index: int,
    key: str,
    info: ModelInfo,
    config: EvalConfig,
    device: torch.device,
    clean: tuple[np.ndarray, np.ndarray] | None = None,
    pool: Candidates | None = None,
    origin: int = 1,
    on_batch: Callable[[int], None] | None = None,
) -> Chunk:
    """One task: clean draws, the attack on the samples still in play, adversarial draws.

    Each sample holds one candidate input, at first the clean one (docs/protocol.md,
    "Stochastic models"): ``k_eval`` *selection* draws on the attack's output x' decide whether
    x' replaces it (as many or fewer correct draws; ties go to x'), then ``k_eval`` fresh
    *report* draws on x' give its result, so no draw is both chosen on and reported (no
    winner's curse). A deterministic model needs one pass per candidate and the rule reduces to
    AutoAttack's. ``clean`` passes cached ``(selection, report)`` clean counts. ``pool`` (a
    cascade) holds each sample's candidate after the earlier attacks: only samples with a
    correct selection draw left are attacked, and the chunk keeps the worse candidate.
    ``origin`` names this attack's candidates (its cascade position; 1 for a single run).
    ``on_batch(samples)`` after each attacked batch (progress).
    """
    start = time.perf_counter()
    validity: dict[str, float] = {}
    k_eval = eval_draws(info, config)
    task_seed = stable_seed(config.seed, info.sha256, key, index)
    batch = eval_batch(config, device)
    count = lambda inputs, labels, tag: count_correct(  # noqa: E731
        model, inputs, labels, k_eval, _draws(config, tag, index, k_eval), device, batch
    )
    select, clean = (
        clean
        if clean is not None
        else clean_draws(model, x, y, index=index, info=info, config=config, device=device)
    )
    current = pool if pool is not None else Candidates(select, clean, np.zeros(len(y), np.uint8))
    target = np.flatnonzero(current.select > 0)  # leaves play when every selection draw is wrong
    chosen = current
    if len(target):
        xt, yt = x[target], y[target]

        def attacked(s: slice) -> torch.Tensor:
            adversarial = attack(model, xt[s].to(device), yt[s].to(device)).cpu()
            if on_batch:
                on_batch(s.stop - s.start)
            return adversarial

        parts, batch = map_batches(
            attacked, len(target), batch, restart=lambda: torch.manual_seed(task_seed)
        )
        x_adv = torch.cat(parts)
        validity = perturbation_extent(x_adv, xt, attack.norm)
        hit = np.array(current.select)
        hit[target] = count(x_adv, yt, "eval-adv")
        outputs = np.zeros(len(y), np.uint8)
        outputs[target] = origin
        take = current.challenged_by(Candidates(hit, current.report, outputs))
        report = np.array(current.report)
        if take.any():
            taken = take[target]
            report[take] = (
                count(x_adv[taken], yt[taken], "eval-adv-report") if info.stochastic else hit[take]
            )
        chosen = Candidates(
            np.where(take, hit, current.select), report, np.where(take, origin, current.origin)
        )
    return Chunk(
        index,
        clean.astype(np.uint8),
        chosen.report.astype(np.uint8),
        k_eval,
        time.perf_counter() - start,
        attack.grad_evals() * len(target),
        batch,
        task_seed,
        {
            "device": device.type,
            "attacked": int(len(target)),
            "threads": torch.get_num_threads(),
            **validity,
            **({"compiled": True} if is_compiled(model) else {}),
        },
        chosen.select.astype(np.uint8),
        chosen.origin.astype(np.uint8),
    )


def perturbation_extent(x_adv: torch.Tensor, x: torch.Tensor, norm: str) -> dict[str, float]:
    """What check C01 reads: the largest perturbation (in the attack's norm) and the input
    range of a chunk's adversarial inputs, measured on what is counted."""
    delta = (x_adv - x).flatten(1)
    size = delta.abs().amax(1) if norm == "Linf" else delta.norm(dim=1)
    return {
        "max_delta": float(size.max()),
        "min_input": float(x_adv.min()),
        "max_input": float(x_adv.max()),
    }


def validity_check(chunks: list[Chunk], eps: float) -> str:
    """C01 from the measured extents: ``pass`` when every chunk's inputs stayed in the eps-ball
    (+1e-6) and in [0, 1] (+-1e-6); ``fail`` otherwise (check_valid stops such a run first)."""
    envs = [c.env or {} for c in chunks if "max_delta" in (c.env or {})]
    ok = all(
        e["max_delta"] <= eps + 1e-6 and e["min_input"] >= -1e-6 and e["max_input"] <= 1 + 1e-6
        for e in envs
    )
    return "pass" if ok else "fail"


def chunk_candidates(chunk: Chunk) -> Candidates:
    """The chunk's chosen candidates (a stored run's selection counts, report counts, origin)."""
    return Candidates(
        chunk.candidate_select().astype(np.int64),
        chunk.adv.astype(np.int64),
        chunk.candidate_origin().astype(np.int64),
    )


def result_card(
    info: ModelInfo,
    attack: Attack,
    key: str,
    config: EvalConfig,
    chunks: list[Chunk],
    device: str,
    extra_eval: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The result card of docs/protocol.md, built from all chunks of one run."""
    k_eval = chunks[0].k_eval
    clean = np.concatenate([c.clean for c in chunks])
    adv = np.concatenate([c.adv for c in chunks])
    adv_select = np.concatenate([c.candidate_select() for c in chunks])
    origin = np.concatenate([c.candidate_origin() for c in chunks])
    threads = sorted({int((c.env or {}).get("threads", 0)) for c in chunks} - {0})
    clean_acc, clean_ci, _ = accuracy_interval(clean, k_eval)
    robust, ci, method = accuracy_interval(adv, k_eval)
    majority = float((adv > k_eval // 2).mean()) if len(adv) else 0.0
    seconds = sum(c.seconds for c in chunks)
    attacked = int(sum((c.env or {}).get("attacked", 0) for c in chunks))
    data = dataset_info(info.dataset) if info.dataset in DATASETS else None
    if data is not None and data.frames:  # eps is in frame-value units, not pixels
        extra_eval = {"input": data.input, **(extra_eval or {})}
    return {
        "schema": RESULT_SCHEMA,
        "model": {
            "name": info.name,
            "sha256": info.sha256,
            "defense": info.defense,
            "arch": info.arch,
            "dataset": info.dataset,
            "timesteps": info.timesteps,
            "stochastic": info.stochastic,
            "track": info.track,
            **({"notes": list(info.notes)} if info.notes else {}),
        },
        "attack": {
            "id": attack.id,
            "key": key,
            "impl": attack.impl,
            "params": attack.params,
            "eps": attack.eps,
            "norm": attack.norm,
            "grad": attack.grad,
            "eot": attack.eot,
            "eot_note": "model is deterministic: EoT not needed" if not info.stochastic else "",
        },
        "eval": {
            "split": config.split,
            "n": int(len(adv)),
            "k_eval": k_eval,
            "rule": f"expected, {SCORING_RULE}",
            "subset": "balanced",
            "chunk_size": config.chunk_size,
            "attacked": attacked,
            **(extra_eval or {}),
        },
        "seed": config.seed,
        "env": {
            **library_versions(),
            "device": device,
            **({"threads": threads[0] if len(threads) == 1 else threads} if threads else {}),
            **({"compiled": True} if any((c.env or {}).get("compiled") for c in chunks) else {}),
        },
        "result": {
            "clean_acc": clean_acc,
            "clean_ci95": list(clean_ci),
            "robust_acc": robust,
            "ci95": list(ci),
            "ci": method,
            "majority_acc": majority,
            "asr": 1 - robust / clean_acc if clean_acc > 0 else 0.0,
        },
        "per_sample": {
            "encoding": "base64 uint8 correct-draw counts",
            "clean": encode_counts(clean),
            "adv": encode_counts(adv),
            "adv_select": encode_counts(adv_select),
            "origin": encode_counts(origin),
        },
        "validity": {
            "max_delta": max(
                (float((c.env or {}).get("max_delta", 0.0)) for c in chunks), default=0.0
            ),
            "eps": attack.eps,
            "norm": attack.norm,
        },
        "timing": {
            "seconds": round(seconds, 3),
            "grad_evals": int(sum(c.grad_evals for c in chunks)),
            "batch_size": min(c.batch_size for c in chunks),
            # throughput: samples the attack ran on (a cascade member: the survivors)
            "images_per_s": round(attacked / seconds, 1) if seconds > 0 else None,
        },
        "checks": {"C01": validity_check(chunks, attack.eps)},
        "flags": [],
        "created": now(),
    }


def cascade_key(key: str, earlier: list[str]) -> str:
    """A cascade member's key: its own plus a digest of every earlier member's key."""
    digest = hashlib.sha256("\n".join(earlier).encode()).hexdigest()[:16]
    return f"{key}|cascade={len(earlier)}:{digest}"


@dataclass(frozen=True)
class Task:
    """One (attack, chunk) of a run. A cascade member names the chunks it builds on:
    ``earlier``, the previous member's key (its chunk is the pool of still-robust samples), and
    ``own``, the per-attack run of the same attack, from which it is derived without an attack.
    ``position``: the member's place in the cascade (1 for a single attack's run), the origin
    its candidates carry."""

    attack: Attack
    key: str
    index: int
    earlier: str | None = None
    own: str | None = None
    position: int = 1


@dataclass(frozen=True)
class Plan:
    """Every task of one model's run in the local executor's order, and the keys whose cards
    are built once all their chunks are stored (with the cards' extra ``eval`` fields)."""

    tasks: list[Task]
    finishes: list[tuple[Attack, str, dict[str, Any] | None]]
    n: int
    count: int
    clean_key: str
    samples: str = ""  # samples_digest of the evaluated samples

    def part(self, index: int, chunk_size: int) -> slice:
        return slice(index * chunk_size, min((index + 1) * chunk_size, self.n))


def plan_attacks(
    info: ModelInfo,
    attacks: list[Attack],
    config: EvalConfig,
    n: int,
    cascade: bool = False,
    per_attack_full: bool = True,
    paired: list[Attack] | None = None,
    samples: str = "",
    tail: list[Attack] | None = None,
) -> Plan:
    """The tasks of :func:`run_attacks`: per-attack runs (``paired`` first), then the cascade.
    With a ``tail`` the cascade is ``attacks`` (each derived from its per-attack run) then the
    tail's attacks, which run only on the samples every earlier one left robust."""
    count = (n + config.chunk_size - 1) // config.chunk_size
    singles_too = not cascade or per_attack_full or bool(tail)
    own_runs = len(attacks) if cascade and (per_attack_full or tail) else 0
    singles = {
        attack_key(a, info, config, n): a
        for a in [*(paired or []), *(attacks if singles_too else [])]
    }
    attacks = [*attacks, *(tail or [])]
    keys = [attack_key(a, info, config, n) for a in attacks]
    tasks = [Task(attack, key, index) for key, attack in singles.items() for index in range(count)]
    finishes: list[tuple[Attack, str, dict[str, Any] | None]] = [
        (attack, key, None) for key, attack in singles.items()
    ]
    for position, (attack, key) in enumerate(zip(attacks, keys) if cascade else []):
        own_key = cascade_key(key, keys[:position])
        earlier = cascade_key(keys[position - 1], keys[: position - 1]) if position else None
        tasks += [
            Task(
                attack, own_key, index, earlier, key if position < own_runs else None, position + 1
            )
            for index in range(count)
        ]
        finishes.append(
            (
                attack,
                own_key,
                {
                    "cascade": {
                        "position": position + 1,
                        "of": len(attacks),
                        "member": attack.label or attack.id,
                        "after": [a.label or a.id for a in attacks[:position]],
                    }
                },
            )
        )
    return Plan(tasks, finishes, n, count, data_key(info, config, n), samples)


def compute_task(
    task: Task,
    model: Callable[[], nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    info: ModelInfo,
    config: EvalConfig,
    device: torch.device,
    clean: tuple[np.ndarray, np.ndarray] | None,
    previous: Chunk | None,
    own: Chunk | None,
    on_batch: Callable[[int], None] | None = None,
) -> tuple[Chunk, tuple[np.ndarray, np.ndarray] | None]:
    """The work of one task, the same in every executor: ``(chunk, clean draws)``.

    ``x, y`` are the chunk's samples; ``model()`` gives the model (called only when an attack
    runs); ``clean`` the cached clean draws (computed when None); ``previous`` the earlier
    cascade member's chunk and ``own`` this attack's per-attack chunk, if any: a cascade member
    with ``own`` is derived from it (per-sample minimum with the pool), no attack runs.
    """
    pool = chunk_candidates(previous) if previous is not None else None
    if own is not None:
        mine = chunk_candidates(own)
        mine = Candidates(mine.select, mine.report, np.where(mine.adversarial, task.position, 0))
        chosen = mine if pool is None else pool.merge(mine)
        return dataclasses.replace(
            own,
            adv=chosen.report.astype(np.uint8),
            adv_select=chosen.select.astype(np.uint8),
            origin=chosen.origin.astype(np.uint8),
            seconds=0.0,
            grad_evals=0,
            env={**(own.env or {}), "attacked": 0, "derived_from": "per-attack run"},
        ), clean
    net = model()
    if clean is None:
        clean = clean_draws(net, x, y, index=task.index, info=info, config=config, device=device)
    return run_chunk(
        net,
        task.attack,
        x,
        y,
        index=task.index,
        key=task.key,
        info=info,
        config=config,
        device=device,
        clean=clean,
        pool=pool,
        origin=task.position,
        on_batch=on_batch,
    ), clean


def stored_chunk(store: ResultStore, sha: str, key: str | None, index: int) -> Chunk | None:
    found = store.chunks(sha, key, index) if key is not None else []
    return found[0] if found else None


def cached_clean(
    store: ResultStore, sha: str, plan: Plan, index: int, chunk_size: int
) -> tuple[np.ndarray, np.ndarray] | None:
    cached = store.clean_draws(sha, plan.clean_key, index)
    part = plan.part(index, chunk_size)
    return cached if cached is not None and len(cached[0]) == part.stop - part.start else None


def finish_plan(plan: Plan, store: ResultStore, info: ModelInfo, config: EvalConfig) -> list[dict]:
    """The result cards of every key whose chunks are all stored (built and stored once)."""
    cards: list[dict] = []
    for attack, key, extra in plan.finishes:
        card = store.card(info.sha256, key)
        chunks = store.chunks(info.sha256, key)
        if card is None and len(chunks) == plan.count:
            device = str((chunks[0].env or {}).get("device", "cpu"))
            card = result_card(
                info,
                attack,
                key,
                config,
                chunks,
                device,
                {**({"samples": plan.samples} if plan.samples else {}), **(extra or {})},
            )
            store.put_card(info.sha256, key, card)
        if card is not None:
            cards.append(card)
    return cards


def run_attacks(
    model: nn.Module,
    info: ModelInfo,
    attacks: list[Attack],
    x: torch.Tensor,
    y: torch.Tensor,
    store: ResultStore,
    config: EvalConfig,
    device: torch.device,
    on_chunk: ChunkCallback | None = None,
    max_chunks: int | None = None,
    cascade: bool = False,
    per_attack_full: bool = True,
    paired: list[Attack] | None = None,
    tail: list[Attack] | None = None,
) -> list[dict]:
    """Run every attack on ``model`` over the chunks not yet stored (the local executor, in
    order, in this process); returns the finished cards.

    Per-attack runs attack every clean-correct sample. With ``cascade``, the attacks also run
    in order as a cascade (docs/protocol.md): each on the samples that survived all the
    earlier ones, its column the per-sample minimum so far; with ``per_attack_full`` the
    per-attack runs come first and the cascade is derived from them without a new attack.
    ``paired`` attacks (Drop pairs) run first, on every clean-correct sample.
    ``max_chunks`` stops after that many newly computed chunks (a budget, and how the tests
    inject a stop); a rerun continues with the rest.
    """
    indices = sample_indices(y, config.n, dataset_info(info.dataset).num_classes)
    picked = torch.as_tensor(indices)
    x, y = x[picked], y[picked]
    model.eval()
    plan = plan_attacks(
        info,
        attacks,
        config,
        len(y),
        cascade,
        per_attack_full,
        paired,
        samples_digest(info.dataset, config.split, indices),
        tail,
    )
    budget = max_chunks
    done: dict[str, set[int]] = {}
    bars = progress.Series()
    for task in plan.tasks:
        if task.key not in done:
            done[task.key] = store.stored_chunks(info.sha256, task.key)
            bars.close()
            if len(done[task.key]) < plan.count:  # else nothing to do, nothing to show
                bars.next(
                    task_label(task, info),
                    len(y),
                    "samples",
                    sum(_size(plan.part(i, config.chunk_size)) for i in done[task.key]),
                )
        if task.index in done[task.key]:
            continue
        previous = stored_chunk(store, info.sha256, task.earlier, task.index)
        if task.earlier is not None and previous is None:
            continue  # another process still works on the earlier member
        own = stored_chunk(store, info.sha256, task.own, task.index)
        if budget is not None and budget <= 0:
            break
        if not store.claim(info.sha256, task.key, task.index):
            continue
        part = plan.part(task.index, config.chunk_size)
        bar, before = bars.current, bars.current.done
        try:
            cached = cached_clean(store, info.sha256, plan, task.index, config.chunk_size)
            chunk, clean = compute_task(
                task,
                lambda: model,
                x[part],
                y[part],
                info=info,
                config=config,
                device=device,
                clean=cached,
                previous=previous,
                own=own,
                on_batch=bar.advance,
            )
            if own is None:  # the batch that fitted: where the next chunk starts
                config = dataclasses.replace(config, batch_size=chunk.batch_size)
            if cached is None and clean is not None:
                store.put_clean_draws(info.sha256, plan.clean_key, task.index, chunk.k_eval, *clean)
        except BaseException:
            store.release(info.sha256, task.key, task.index)
            raise
        store.put_chunk(info.sha256, task.key, chunk)
        bar.reach(before + _size(part))  # samples not attacked (clean-incorrect) too
        if budget is not None:
            budget -= 1
        if on_chunk:
            on_chunk(info.name, task.attack.id, task.index + 1, plan.count)
    bars.close()
    return finish_plan(plan, store, info, config)


def task_label(task: Task, info: ModelInfo) -> str:
    """``pgd10 on MODEL``; a cascade member ``→apgd-t (cascade 3) on MODEL``."""
    name = task.attack.label or task.attack.id
    cascade = f"→{name} (cascade {task.position})" if "|cascade=" in task.key else name
    return f"{cascade} on {info.name}"


def _size(part: slice) -> int:
    return part.stop - part.start
