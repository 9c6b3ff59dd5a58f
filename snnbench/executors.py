"""Where the attack matrix runs: ``local`` (this process, in order) or ``ray`` (a Ray cluster).

docs/guide.md. :func:`run_models` runs each model's attacks with either executor; the
local one is :func:`snnbench.evaluate.run_attacks`. On Ray, the attack tasks and a recipe's
training jobs become Ray tasks. Workers get paths and configs, never pickled models: the checkpoint
folder (safetensors + card, verified on load), the chunk's sample indices, the attack, the
cached clean draws and the cascade's earlier chunk (its still-robust counts). They run
:func:`snnbench.evaluate.compute_task`, the local executor's own per-chunk function, and return
per-sample arrays; the driver alone writes the store, one transaction per chunk. Chunks run in
parallel; a cascade's members run in order within a chunk (Ray object dependencies). One GPU
per task when the cluster has GPUs. A worker that dies is retried (``MAX_RETRIES``); a chunk
that still fails is stored nowhere and reported, and the next run computes it.
Ray is optional (extra ``ray``) and imported only here, lazily.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from snnbench import progress
from snnbench.attacks import Attack
from snnbench.attacks.transfer import MODEL_SOURCE, TransferAttack
from snnbench.checkpoint import load, model_dir
from snnbench.config import ModelConfig, TrainConfig
from snnbench.data import dataset_info, load_dataset
from snnbench.errors import SnnbenchError
from snnbench.home import bind_model_source
from snnbench.evaluate import (
    ChunkCallback,
    EvalConfig,
    ModelInfo,
    Plan,
    Task,
    cached_clean,
    clean_draws,
    compute_task,
    eval_draws,
    finish_plan,
    plan_attacks,
    run_attacks,
    sample_indices,
    samples_digest,
    stored_chunk,
)
from snnbench.runtime import compile_errors, compile_model, resolve_device
from snnbench.store import Chunk, ResultStore
from snnbench.train import TrainOutcome, train_model

EXECUTORS = ("local", "ray")
MAX_RETRIES = 3  # attempts after a worker dies (Ray retries system failures only)
FAULT_ENV = "SNNBENCH_RAY_FAULT"  # tests: a file holding a chunk index kills its worker


@dataclass(frozen=True)
class ModelRun:
    """One model's share of the matrix: its attacks (a cascade when ``cascade``), Drop pairs
    and the headline tail (a cascade after the attacks, on their survivors)."""

    name: str
    card: dict[str, Any]
    attacks: list[Attack]
    cascade: bool = False
    paired: list[Attack] = field(default_factory=list)
    tail: list[Attack] = field(default_factory=list)


def check_executor(executor: str) -> None:
    if executor not in EXECUTORS:
        raise SnnbenchError(f"unknown executor {executor!r}; choose local or ray")


def run_models(
    runs: Sequence[ModelRun],
    *,
    home: Path,
    store: str,
    config: EvalConfig,
    device: str,
    data_root: str | Path | None,
    on_chunk: ChunkCallback | None = None,
    max_chunks: int | None = None,
    per_attack_full: bool = True,
    executor: str = "local",
    ray_address: str | None = None,
    compile: bool = False,
) -> list[dict]:
    """Each model's attacks by the chosen executor into ``home / store``; the finished cards.
    On Ray, chunks that failed are reported after every other chunk is stored. ``compile``
    attacks each model through ``torch.compile``."""
    check_executor(executor)
    cards: list[dict] = []
    full = lambda run: per_attack_full or not run.cascade  # noqa: E731
    if executor == "local":
        dev = resolve_device(device)
        with ResultStore(home / store) as results:
            for run in runs:
                model = load(run.name, home, device=dev)
                x, y = load_dataset(run.card["spec"]["dataset"], "test", data_root)
                with compile_errors(compile):
                    cards += run_attacks(
                        compile_model(model) if compile else model,
                        ModelInfo.from_card(run.card),
                        run.attacks,
                        x,
                        y,
                        results,
                        config,
                        dev,
                        on_chunk,
                        max_chunks,
                        cascade=run.cascade,
                        per_attack_full=full(run),
                        paired=run.paired,
                        tail=run.tail,
                    )
        return cards
    failures: list[str] = []
    with connect(ray_address) as ray, ResultStore(home / store) as results:
        for run in runs:
            job = Job(
                str(model_dir(run.name, home).resolve()),
                ModelInfo.from_card(run.card),
                config,
                device,
                str(data_root) if data_root is not None else None,
                str(home.resolve()),
                compile,
            )
            done, failed = run_ray(
                ray,
                job,
                run.attacks,
                results,
                on_chunk,
                max_chunks,
                cascade=run.cascade,
                per_attack_full=full(run),
                paired=run.paired,
                tail=run.tail,
            )
            cards += done
            failures += failed
    if failures:
        raise SnnbenchError(
            f"{len(failures)} chunk(s) failed on the Ray cluster and were not "
            f"stored: {'; '.join(failures)}; everything else is stored, rerun "
            "the same command to finish them"
        )
    return cards


def ray_module() -> Any:
    """The ``ray`` package, or one clear error line."""
    try:
        import ray
    except ImportError:
        raise SnnbenchError(
            "--executor ray needs Ray, which is not installed; run "
            "pip install 'ray>=2.9' (in a clone: pip install '.[ray]')"
        ) from None
    return ray


def runtime_env(env_vars: dict[str, str] | None = None) -> dict[str, Any]:
    """Ray's runtime env for snnbench's workers: the driver's own snnbench package is shipped
    to them (on a cluster, and when the driver's working directory holds another copy: Ray
    puts that directory on the workers' path)."""
    env: dict[str, Any] = {"py_modules": [str(Path(__file__).resolve().parent)]}
    if env_vars:
        env["env_vars"] = dict(env_vars)
    return env


@contextlib.contextmanager
def connect(address: str | None = None) -> Iterator[Any]:
    """Ray, connected to ``address`` (``auto``: the running cluster; None: start a local one
    for this call). An existing connection in this process is reused and left open."""
    ray = ray_module()
    if ray.is_initialized():
        yield ray
        return
    try:
        ray.init(
            address=address,
            include_dashboard=False,
            logging_level=logging.WARNING,
            runtime_env=runtime_env(),
        )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise SnnbenchError(
            f"cannot connect to the Ray cluster at {address!r} ({exc}); start "
            "one with `ray start --head` or drop --ray-address"
        ) from None
    try:
        yield ray
    finally:
        ray.shutdown()


def task_gpus(ray: Any, device: str) -> int:
    """1 when tasks should take a GPU each (cluster has GPUs and ``device`` allows), else 0."""
    gpus = ray.cluster_resources().get("GPU", 0)
    if device.startswith("cuda") and not gpus:
        raise SnnbenchError(
            "--device cuda was asked for but the Ray cluster has no GPU; use "
            "--device cpu or add GPU nodes"
        )
    return 1 if gpus and device != "cpu" else 0


@dataclass(frozen=True)
class Job:
    """What every task of one model's run needs, as plain data (no tensors, no modules)."""

    folder: str
    info: ModelInfo
    config: EvalConfig
    device: str
    data_root: str | None
    home: str | None
    compile: bool = False
    # the driver's torch CPU threads, taken when the job is made: workers use the same count
    threads: int = field(default_factory=torch.get_num_threads)


def _same_threads(job: Job) -> None:
    """Results depend on the CPU thread count (reduction order): match the driver's."""
    if job.threads and torch.get_num_threads() != job.threads:
        torch.set_num_threads(job.threads)


def _chunk_data(job: Job, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = load_dataset(job.info.dataset, job.config.split, job.data_root)
    picked = torch.as_tensor(np.array(indices))  # Ray hands over a read-only view
    return x[picked], y[picked]


def _inject_fault(index: int) -> None:
    """Tests kill a worker mid-task: when the file named by ``SNNBENCH_RAY_FAULT`` exists and
    holds this chunk's index, the first worker to remove it exits at once (once per arming)."""
    armed = os.environ.get(FAULT_ENV)
    if not armed or not Path(armed).is_file() or Path(armed).read_text().strip() != str(index):
        return
    try:
        Path(armed).unlink()
    except FileNotFoundError:
        return
    os._exit(1)


def clean_worker(job: Job, index: int, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Remote: the clean draws of one chunk (shared by every attack on it)."""
    _same_threads(job)
    device = resolve_device(job.device)
    x, y = _chunk_data(job, indices)
    with compile_errors(job.compile):
        return clean_draws(
            _load(job, device), x, y, index=index, info=job.info, config=job.config, device=device
        )


def _load(job: Job, device: torch.device) -> torch.nn.Module:
    model = load(job.folder, device=device)
    return compile_model(model) if job.compile else model


def attack_worker(
    job: Job,
    task: Task,
    indices: np.ndarray,
    clean: tuple[np.ndarray, np.ndarray] | None,
    previous: Chunk | None,
    own: Chunk | None,
) -> Chunk:
    """Remote: one task through :func:`compute_task`; Ray has resolved the chunks it awaits."""
    if own is None:
        _inject_fault(task.index)
    _same_threads(job)
    device = resolve_device(job.device)
    attack, x, y = task.attack, torch.empty(0), torch.empty(0)  # a derived task needs no data
    if own is None:
        x, y = _chunk_data(job, indices)
        if isinstance(attack, TransferAttack) and attack.source.startswith(MODEL_SOURCE):
            attack = bind_model_source(attack, job.home, device)  # from the shared home
    with compile_errors(job.compile):
        chunk, _ = compute_task(
            dataclasses.replace(task, attack=attack),
            lambda: _load(job, device),
            x,
            y,
            info=job.info,
            config=job.config,
            device=device,
            clean=clean,
            previous=previous,
            own=own,
        )
    return chunk


def run_ray(
    ray: Any,
    job: Job,
    attacks: list[Attack],
    store: ResultStore,
    on_chunk: ChunkCallback | None = None,
    max_chunks: int | None = None,
    cascade: bool = False,
    per_attack_full: bool = True,
    paired: list[Attack] | None = None,
    tail: list[Attack] | None = None,
) -> tuple[list[dict], list[str]]:
    """:func:`snnbench.evaluate.run_attacks` on Ray: ``(finished cards, failed chunks)``.

    The tasks and their order are the local executor's; ``max_chunks`` caps the tasks sent.
    """
    info, config = job.info, job.config
    _, labels = load_dataset(info.dataset, config.split, job.data_root)
    indices = sample_indices(labels, config.n, dataset_info(info.dataset).num_classes)
    plan = plan_attacks(
        info,
        attacks,
        config,
        len(indices),
        cascade,
        per_attack_full,
        paired,
        samples_digest(info.dataset, config.split, indices),
        tail,
    )
    gpus = task_gpus(ray, job.device)
    job_ref = ray.put(job)
    clean_remote = ray.remote(max_retries=MAX_RETRIES)(clean_worker).options(num_gpus=gpus)
    attack_remote = ray.remote(max_retries=MAX_RETRIES)(attack_worker)
    pending: dict[tuple[str, int], Any] = {}
    cleans: dict[int, Any] = {}
    sent: dict[Any, Task] = {}
    for task in plan.tasks:
        if len(sent) == max_chunks:
            break
        part = indices[plan.part(task.index, config.chunk_size)]
        previous = _lookup(store, info, pending, task.earlier, task.index)
        if task.earlier is not None and previous is None:
            continue  # another process still works on the earlier member
        own = _lookup(store, info, pending, task.own, task.index)
        if not store.claim(info.sha256, task.key, task.index):
            continue
        clean = None
        if own is None:
            clean = cached_clean(store, info.sha256, plan, task.index, config.chunk_size)
            if clean is None:
                if task.index not in cleans:
                    cleans[task.index] = clean_remote.remote(job_ref, task.index, part)
                clean = cleans[task.index]
        ref = attack_remote.options(num_gpus=gpus if own is None else 0).remote(
            job_ref, task, part, clean, previous, own
        )
        pending[(task.key, task.index)] = ref
        sent[ref] = task
    failures = _collect(ray, sent, store, info, plan, on_chunk)
    for index, ref in cleans.items():
        with contextlib.suppress(ray.exceptions.RayError):
            selection, report = ray.get(ref)
            store.put_clean_draws(
                info.sha256, plan.clean_key, index, eval_draws(info, config), selection, report
            )
    return finish_plan(plan, store, info, config), failures


def _lookup(
    store: ResultStore,
    info: ModelInfo,
    pending: dict[tuple[str, int], Any],
    key: str | None,
    index: int,
) -> Any:
    """A stored chunk, else the reference of one sent in this run, else None."""
    if key is None:
        return None
    ref = pending.get((key, index))
    return ref if ref is not None else stored_chunk(store, info.sha256, key, index)


def _collect(
    ray: Any,
    sent: dict[Any, Task],
    store: ResultStore,
    info: ModelInfo,
    plan: Plan,
    on_chunk: ChunkCallback | None,
) -> list[str]:
    """Store each chunk as it arrives (one transaction each); the failed ones, described."""
    failures: list[str] = []
    waiting = list(sent)
    bar = progress.begin(f"attack chunks of {info.name} on Ray", len(waiting), "chunks")
    while waiting:
        ready, waiting = ray.wait(waiting, num_returns=1)
        task = sent[ready[0]]
        try:
            chunk = ray.get(ready[0])
        except ray.exceptions.RayError as exc:
            store.release(info.sha256, task.key, task.index)
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
            failures.append(f"{info.name} {task.attack.id} chunk {task.index} ({reason[:200]})")
            continue
        store.put_chunk(info.sha256, task.key, chunk)
        bar.advance()
        if on_chunk:
            on_chunk(info.name, task.attack.id, task.index + 1, plan.count)
    bar.end()
    return failures


def train_models(
    ray: Any,
    models: list[tuple[ModelConfig, TrainConfig]],
    *,
    home: Path,
    data_root: str | Path | None,
    device: str,
    recipe: Any,
    compile: bool = False,
) -> list[TrainOutcome]:
    """A recipe's training jobs as Ray tasks (one GPU each where present), in recipe order.
    Each job resumes from its last finished epoch, so a retried job loses at most one epoch."""
    progress.status(
        f"training {len(models)} model(s) on the Ray cluster (no per-epoch progress from there)"
    )
    remote = ray.remote(max_retries=MAX_RETRIES)(train_model).options(
        num_gpus=task_gpus(ray, device)
    )
    refs = [
        remote.remote(
            m,
            t,
            home=Path(home).resolve(),
            data_root=data_root,
            device=device,
            recipe=recipe,
            compile=compile,
        )
        for m, t in models
    ]
    outcomes, failed = [], []
    for (config, _), ref in zip(models, refs):
        try:
            outcomes.append(ray.get(ref))
        except ray.exceptions.RayError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, SnnbenchError):
                raise SnnbenchError(str(cause)) from None
            failed.append(
                f"{config.name or config.defense}-{config.arch} "
                f"({(str(exc).strip().splitlines() or ['?'])[-1][:200]})"
            )
    if failed:
        raise SnnbenchError(
            f"training failed on the Ray cluster: {'; '.join(failed)}; finished "
            "epochs are kept, rerun the same command to resume"
        )
    return outcomes
