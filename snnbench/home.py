"""The home folder (``--home``, env ``SNNBENCH_HOME``, default ``./snnbench-runs``): its trained
models in ``models/<name>/``, its results store ``results.sqlite``, and the leaderboard read from
them. The API, the executors and the site all read a home through these functions."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from snnbench.attacks import Attack
from snnbench.attacks.transfer import MODEL_SOURCE, TransferAttack, bind_source
from snnbench.checkpoint import CARD, default_home, load, load_card
from snnbench.errors import SnnbenchError
from snnbench.report import Leaderboard, build_leaderboard
from snnbench.store import ResultStore

STORE = "results.sqlite"


def home_path(home: str | Path | None) -> Path:
    return Path(home) if home is not None else default_home()


def open_store(home: str | Path | None) -> ResultStore:
    return ResultStore(home_path(home) / STORE)


def home_models(home: str | Path | None) -> list[str]:
    """Names of the finished models in the home."""
    folder = home_path(home) / "models"
    return (
        sorted(p.name for p in folder.iterdir() if (p / CARD).is_file()) if folder.is_dir() else []
    )


def bind_model_source(attack: Attack, home: str | Path | None, device: Any) -> Attack:
    """Load the source model of a ``transfer-model:NAME-...`` attack from the home (with no
    ``device``, only check that it is there: a Ray worker loads it)."""
    if not isinstance(attack, TransferAttack) or not attack.source.startswith(MODEL_SOURCE):
        return attack
    name = attack.source[len(MODEL_SOURCE) :]
    if name not in home_models(home):
        raise SnnbenchError(
            f"transfer source model {name!r} is not in {home_path(home) / 'models'}; "
            f"train it first or choose one of: {', '.join(home_models(home)) or 'none'}"
        )
    if device is None:
        return attack
    card = load_card(name, home_path(home))
    return bind_source(attack, load(name, home_path(home), device=device), card["weights_sha256"])


def leaderboard(home: str | Path | None = None, name: str | None = None) -> Leaderboard:
    with open_store(home) as store:
        board_name = name or store.get_meta("recipe") or "leaderboard"
        board = build_leaderboard(store.cards(), board_name, store.checks(), store.diagnostics())
    join_model_cards(board, home)
    return board


def join_model_cards(board: Leaderboard, home: str | Path | None) -> None:
    """Each row's settings and training cost from its model card (when the home holds the same
    weights), so layouts can pick rows by setting (TGO Table 4) and show costs (RH Table 8)."""
    present = set(home_models(home))
    for row in board.rows:
        if row["model"] not in present:
            continue
        card = load_card(row["model"], home_path(home))
        if card.get("weights_sha256") != row["sha256"]:
            continue
        row["settings"] = card["spec"]["settings"]
        row["train_seed"] = (card.get("train") or {}).get("seed")
        if card.get("data_source"):  # which copy of the data (the JPEG CIFAR-10 or not)
            row["data_source"] = card["data_source"]
        epochs = [e for e in card.get("history", []) if e.get("seconds")]
        if epochs:
            row["train_s_epoch"] = statistics.median(e["seconds"] for e in epochs)
            row["train_images_per_s"] = statistics.median(e.get("images_per_s", 0) for e in epochs)
            row["train_device"] = card.get("device", "")
