"""Issue 7: a SIGKILL at any moment loses nothing, and two processes share a home.

Real subprocesses, real ``SIGKILL``: ``attack`` and ``train`` are killed at seeded-random
moments and rerun; the finished results equal an uninterrupted run's, bit for bit.
"""

from __future__ import annotations

import json
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import snnbench
from snnbench import api
from snnbench.config import ModelConfig, TrainConfig
from snnbench.store import ResultStore
from snnbench.train import STATE_JSON, train_model

ATTACKS = ("fgsm", "pgd10")
N, CHUNK = 200, 20
CHUNKS = len(ATTACKS) * (N // CHUNK)
ATTACK_ARGS = ["attack", "--attacks", ",".join(ATTACKS), "--n", str(N), "--chunk-size", str(CHUNK)]
KILLS = 2
POLL_S = 0.01


def snnbench_cli(*args, home: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "snnbench.cli",
            *map(str, args),
            "--home",
            str(home),
            "--device",
            "cpu",
            "--quiet",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


# The CLI with every chunk slowed by 0.3 s (patched in the child only): two processes started
# together then both find unclaimed chunks, however the machine schedules their start-up.
SLOW_CLI = (
    "import importlib, time; e = importlib.import_module('snnbench.evaluate'); "
    "run = e.run_chunk; "
    "e.run_chunk = lambda *a, **k: (time.sleep(0.3), run(*a, **k))[1]; "
    "from snnbench.cli import main; main()"
)


def slow_cli(*args, home: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            SLOW_CLI,
            *map(str, args),
            "--home",
            str(home),
            "--device",
            "cpu",
            "--quiet",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen) -> str:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err + out
    return out


def _query(home: Path, sql: str):
    path = home / api.STORE
    if not path.exists():
        return None
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return db.execute(sql).fetchone()[0]
    except sqlite3.Error:  # the schema is not written yet
        return None
    finally:
        db.close()


def stored_chunks(home: Path) -> int:
    return _query(home, "SELECT count(*) FROM chunks") or 0


def last_chunk_seconds(home: Path) -> float:
    return _query(home, "SELECT seconds FROM chunks ORDER BY created DESC LIMIT 1") or 0.0


def kill_when(proc: subprocess.Popen, ready, delay_s) -> bool:
    """SIGKILL ``proc`` ``delay_s()`` seconds after ``ready()`` holds; False if it ended first."""
    while not ready():
        if proc.poll() is not None:
            return False
        time.sleep(POLL_S)
    time.sleep(delay_s())
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return True


def assert_home_whole(home: Path) -> None:
    """After a kill: the store opens, every file reads, every finished model loads."""
    with ResultStore(home / api.STORE) as store:
        store.cards()
    for path in home.rglob("*"):
        if path.is_file():
            path.read_bytes()
    for name in api.home_models(home):
        snnbench.load(name, home)


def comparable(cards: list[dict]) -> dict:
    """Result cards by (model, attack), without timing and creation fields."""
    keep = ("model", "attack", "eval", "seed", "result", "per_sample")
    return {(c["model"]["name"], c["attack"]["id"]): {k: c[k] for k in keep} for c in cards}


def store_cards(home: Path) -> dict:
    with api.open_store(home) as store:
        return comparable(store.cards())


@pytest.fixture(scope="module")
def reference(trained_home, tmp_path_factory) -> dict:
    """The uninterrupted single-process attack run."""
    home = tmp_path_factory.mktemp("reference")
    shutil.copytree(trained_home, home, dirs_exist_ok=True)
    api.attack(home=home, attacks=list(ATTACKS), n=N, chunk_size=CHUNK, device="cpu")
    cards = store_cards(home)
    assert len(cards) == len(ATTACKS)
    return cards


def test_attack_killed_at_random_moments_resumes_to_the_same_results(home, reference):
    rng = random.Random(7)
    kills = 0
    for _ in range(KILLS):
        target = stored_chunks(home) + rng.randint(1, 3)
        proc = snnbench_cli(*ATTACK_ARGS, home=home)
        kills += kill_when(
            proc,
            lambda t=target: stored_chunks(home) >= t,
            lambda: rng.uniform(0, 1) * last_chunk_seconds(home),
        )
        assert_home_whole(home)
    assert kills == KILLS and stored_chunks(home) < CHUNKS, "a run finished before its kill"
    finish(snnbench_cli(*ATTACK_ARGS, home=home))
    assert_home_whole(home)
    mine = store_cards(home)
    assert mine.keys() == reference.keys()
    for key in reference:
        assert mine[key] == reference[key], key


def test_train_killed_mid_run_resumes_to_identical_weights(tmp_path):
    rng = random.Random(11)
    args = ("train", "vanilla", "--epochs", "4", "--timesteps", "2", "--name", "crash")
    home = tmp_path / "killed"
    folder = home / "models" / "crash"
    target = rng.randint(1, 2)

    def into_next_epoch() -> float:  # a random fraction of the last epoch's measured time
        history = json.loads((folder / STATE_JSON).read_text())["history"]
        return rng.uniform(0, 0.9) * history[-1]["seconds"]

    assert kill_when(
        snnbench_cli(*args, home=home), lambda: _epochs_done(folder) >= target, into_next_epoch
    ), "training finished before its kill"
    assert_home_whole(home)
    assert "resumed: crash" in finish(snnbench_cli(*args, home=home))
    whole = train_model(
        ModelConfig("vanilla", "tiny", "digits", 2, name="crash"),
        TrainConfig(epochs=4),
        home=tmp_path / "whole",
        device="cpu",
    )
    resumed = snnbench.load_card("crash", home)
    assert resumed["weights_sha256"] == whole.card["weights_sha256"]
    assert [h["loss"] for h in resumed["history"]] == [h["loss"] for h in whole.card["history"]]


def _epochs_done(folder: Path) -> int:
    try:
        return json.loads((folder / STATE_JSON).read_text())["epochs_done"]
    except (OSError, ValueError, KeyError):
        return 0


def test_two_attack_processes_share_a_home(home, reference):
    with ResultStore(home / api.STORE):
        pass
    db = sqlite3.connect(home / api.STORE)  # count every chunk write, replacements included
    db.executescript("""
        CREATE TABLE writes (model_sha TEXT, attack_key TEXT, chunk INTEGER, owner TEXT);
        CREATE TRIGGER count_writes BEFORE INSERT ON chunks BEGIN
            INSERT INTO writes VALUES (NEW.model_sha, NEW.attack_key, NEW.chunk,
                                       json_extract(NEW.env, '$.owner'));
        END;""")
    db.close()
    procs = [slow_cli(*ATTACK_ARGS, home=home) for _ in range(2)]
    for proc in procs:
        finish(proc)
    db = sqlite3.connect(home / api.STORE)
    writes = db.execute(
        "SELECT model_sha, attack_key, chunk, count(*) FROM writes "
        "GROUP BY model_sha, attack_key, chunk"
    ).fetchall()
    rows = db.execute(
        "SELECT count(*), count(DISTINCT model_sha || attack_key || chunk) FROM chunks"
    ).fetchone()
    owners = {r[0] for r in db.execute("SELECT owner FROM writes")}
    db.close()
    assert rows == (CHUNKS, CHUNKS)  # every chunk once
    assert len(writes) == CHUNKS and all(w[3] == 1 for w in writes)  # none computed twice
    assert len(owners) == 2, owners  # both processes computed chunks
    assert store_cards(home) == reference
