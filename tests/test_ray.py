"""Issue 10: the Ray executor gives the local executor's results, and survives a dead worker.

One local Ray (2 CPUs, no dashboard) serves the whole module. Workers import this checkout's
``snnbench`` (Ray puts the driver's working directory on their path).
"""

from __future__ import annotations

import shutil
import sys

import pytest
import torch
from typer.testing import CliRunner

ray = pytest.importorskip("ray")

from snnbench import api, executors  # noqa: E402
from snnbench.cli import app  # noqa: E402
from snnbench.errors import SnnbenchError  # noqa: E402

ATTACKS = ["fgsm", "pgd10"]
ARGS = dict(attacks=ATTACKS, n=60, chunk_size=25, device="cpu")  # 3 chunks: 25, 25, 10
MODELS = ("vanilla-tiny-digits", "randhet-tiny-digits")
CHUNKS = len(MODELS) * len(ATTACKS) * 3


@pytest.fixture(scope="module")
def armed(tmp_path_factory):
    """The file that, holding a chunk index, makes the first worker at that chunk exit."""
    return tmp_path_factory.mktemp("fault") / "armed"


@pytest.fixture(scope="module", autouse=True)
def local_ray(armed):
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        logging_level="ERROR",
        runtime_env=executors.runtime_env(
            {executors.FAULT_ENV: str(armed), "SNNBENCH_THREADS": "1"}
        ),
    )
    yield
    ray.shutdown()


@pytest.fixture
def both(home, stochastic_home):
    """A home holding a deterministic (vanilla) and a stochastic (randhet) digits model."""
    shutil.copytree(stochastic_home / "models" / MODELS[1], home / "models" / MODELS[1])
    return home


def comparable(cards):
    """Everything of the cards but where and when they were computed."""
    return sorted(
        ({k: v for k, v in card.items() if k not in ("timing", "created")} for card in cards),
        key=lambda c: (c["model"]["name"], c["attack"]["key"]),
    )


def stored(home):
    with api.open_store(home) as store:
        return store._db.execute("SELECT model_sha, attack_key, chunk FROM chunks").fetchall()


def test_workers_import_the_drivers_snnbench():
    """Workers run the driver's package, not another copy on their path (such as a source
    checkout in the working directory of a driver that imports an installed snnbench)."""

    def digest() -> str:
        import hashlib
        import importlib
        from pathlib import Path

        module = importlib.import_module("snnbench.evaluate")  # not the evaluate() function
        return hashlib.sha256(Path(module.__file__).read_bytes()).hexdigest()

    assert ray.get(ray.remote(digest).remote()) == digest()


@pytest.mark.parametrize("threads", [1, 2])
def test_ray_matches_local_for_the_same_seed(both, tmp_path, threads):
    """Also at 2 threads (one attack, to keep it short): workers take the driver's thread count
    (reductions sum in another order at another count, so a sample near a boundary could flip)."""
    local_home = tmp_path / "local"
    shutil.copytree(both, local_home)
    args = ARGS if threads == 1 else {**ARGS, "attacks": ATTACKS[1:]}
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        local = api.attack(home=local_home, **args)
        remote = api.attack(home=both, executor="ray", **args)
    finally:
        torch.set_num_threads(before)
    assert {c["env"]["threads"] for c in local + remote} == {threads}
    assert len(remote) == len(MODELS) * len(args["attacks"])
    assert comparable(remote) == comparable(local)
    assert len(stored(both)) == CHUNKS // len(ATTACKS) * len(args["attacks"])
    assert api.attack(home=both, executor="ray", **args) == remote  # all stored: nothing runs


@pytest.mark.parametrize("per_attack_full", [False, True], ids=["chained", "derived"])
def test_cascade_chains_chunks_on_ray_like_local(home, tmp_path, per_attack_full):
    from snnbench.attacks import create_attack
    from snnbench.checkpoint import load, load_card
    from snnbench.data import load_dataset
    from snnbench.evaluate import EvalConfig, ModelInfo, run_attacks
    import torch

    local_home = tmp_path / "local"
    shutil.copytree(home, local_home)
    card = load_card(MODELS[0], home)
    info, config = ModelInfo.from_card(card), EvalConfig(n=60, chunk_size=25)
    attacks = [create_attack(a, 32 / 255) for a in ATTACKS]
    x, y = load_dataset("digits", "test")
    with api.open_store(local_home) as store:
        local = run_attacks(
            load(MODELS[0], home),
            info,
            attacks,
            x,
            y,
            store,
            config,
            torch.device("cpu"),
            cascade=True,
            per_attack_full=per_attack_full,
        )
    job = executors.Job(str(home / "models" / MODELS[0]), info, config, "cpu", None, str(home))
    with api.open_store(home) as store:
        remote, failed = executors.run_ray(
            ray, job, attacks, store, cascade=True, per_attack_full=per_attack_full
        )
    cascade = [c["eval"]["cascade"]["position"] for c in remote if "cascade" in c["eval"]]
    assert failed == [] and cascade == [1, 2] and len(remote) == 2 + 2 * per_attack_full
    assert comparable(remote) == comparable(local)


def test_a_killed_worker_is_retried_and_each_chunk_stored_once(home, tmp_path, armed):
    fresh = tmp_path / "fresh"
    shutil.copytree(home, fresh)
    args = {**ARGS, "attacks": ["pgd10"]}
    armed.write_text("1")
    cards = api.attack(home=home, executor="ray", **args)
    assert not armed.exists()  # a worker took chunk 1 and died
    rows = stored(home)
    assert sorted(r[2] for r in rows) == [0, 1, 2] and len(set(rows)) == len(rows)
    assert comparable(cards) == comparable(api.attack(home=fresh, **args))


def test_attack_cli_with_the_ray_executor(home):
    result = CliRunner().invoke(
        app,
        [
            "attack",
            "--attacks",
            "fgsm",
            "--n",
            "50",
            "--chunk-size",
            "25",
            "--executor",
            "ray",
            "--home",
            str(home),
            "--device",
            "cpu",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "fgsm" in result.output and len(stored(home)) == 2


def test_missing_ray_is_one_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(SnnbenchError, match=r"pip install '\.\[ray\]'"):
        executors.ray_module()
    with pytest.raises(SnnbenchError, match="unknown executor"):
        api.attack(["x"], executor="dask")


RECIPE = """
name = "tiny-ray"
dataset = "digits"
eps = "32/255"
attacks = ["fgsm"]
n = 40
[train]
epochs = 1
[[models]]
defense = "randhet"
"""


def test_run_trains_and_attacks_on_ray_like_local(tmp_path):
    (tmp_path / "tiny-ray.toml").write_text(RECIPE)
    runs = {
        kind: api.run(
            str(tmp_path / "tiny-ray.toml"),
            home=tmp_path / kind,
            out=tmp_path / f"{kind}-boards",
            device="cpu",
            executor=kind,
        )
        for kind in ("local", "ray")
    }
    assert [t.card["weights_sha256"] for t in runs["ray"].trained] == [
        t.card["weights_sha256"] for t in runs["local"].trained
    ]
    assert comparable(runs["ray"].cards) == comparable(runs["local"].cards)
    assert (tmp_path / "ray-boards" / "tiny-ray.md").is_file()


def test_a_chunk_that_keeps_failing_is_reported_and_the_rerun_finishes_it(home, armed, monkeypatch):
    monkeypatch.setattr(executors, "MAX_RETRIES", 0)  # the first death is final
    args = {**ARGS, "attacks": ["fgsm"]}
    armed.write_text("2")
    with pytest.raises(SnnbenchError, match=r"1 chunk\(s\) failed .* fgsm chunk 2 .* rerun"):
        api.attack(home=home, executor="ray", **args)
    assert sorted(r[2] for r in stored(home)) == [0, 1]
    (card,) = api.attack(home=home, executor="ray", **args)
    assert card["eval"]["n"] == 60 and sorted(r[2] for r in stored(home)) == [0, 1, 2]
