"""The results store: one SQLite file per home (docs/guide.md).

One row per (model sha256, attack key, chunk) holds that chunk's per-sample correct-draw counts
for the clean and the adversarial inputs; it is written in one transaction, so a killed run
loses at most the chunk in flight and a rerun skips every stored chunk. Once all chunks of a
(model, attack key) are in, its result card (docs/protocol.md) is stored beside them.
Clean-input draws are cached per (model, data, seeds, chunk), shared by every attack.
A claim table keeps two ``attack`` processes off the same chunk. WAL mode lets readers in
while a writer works; a ``meta`` table names the tool and schema, so a foreign file is refused.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from snnbench.errors import SnnbenchError

TOOL = "snnbench"
SCHEMA = 2  # 2: chunks keep the chosen candidates' selection counts and origin
CLAIM_TIMEOUT_S = 6 * 3600

_TABLES = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS chunks (
    model_sha TEXT NOT NULL, attack_key TEXT NOT NULL, chunk INTEGER NOT NULL,
    n INTEGER NOT NULL, k_eval INTEGER NOT NULL, clean BLOB NOT NULL, adv BLOB NOT NULL,
    seconds REAL NOT NULL, grad_evals INTEGER NOT NULL, batch_size INTEGER NOT NULL,
    seed INTEGER NOT NULL, env TEXT NOT NULL, created REAL NOT NULL,
    adv_select BLOB, origin BLOB,
    PRIMARY KEY (model_sha, attack_key, chunk));
CREATE TABLE IF NOT EXISTS cards (
    model_sha TEXT NOT NULL, attack_key TEXT NOT NULL, card TEXT NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (model_sha, attack_key));
CREATE TABLE IF NOT EXISTS clean (
    model_sha TEXT NOT NULL, data_key TEXT NOT NULL, chunk INTEGER NOT NULL,
    k_eval INTEGER NOT NULL, selection BLOB NOT NULL, report BLOB NOT NULL,
    PRIMARY KEY (model_sha, data_key, chunk));
CREATE TABLE IF NOT EXISTS checks (
    model_sha TEXT NOT NULL, check_id TEXT NOT NULL, level TEXT NOT NULL, status TEXT NOT NULL,
    detail TEXT NOT NULL, created REAL NOT NULL, PRIMARY KEY (model_sha, check_id));
CREATE TABLE IF NOT EXISTS diagnostics (
    model_sha TEXT NOT NULL, metric TEXT NOT NULL, value REAL, n INTEGER NOT NULL,
    created REAL NOT NULL, PRIMARY KEY (model_sha, metric));
CREATE TABLE IF NOT EXISTS claims (
    model_sha TEXT NOT NULL, attack_key TEXT NOT NULL, chunk INTEGER NOT NULL,
    owner TEXT NOT NULL, since REAL NOT NULL, PRIMARY KEY (model_sha, attack_key, chunk));
"""


@dataclass(frozen=True)
class Chunk:
    """Per-sample correct-draw counts (out of ``k_eval``) of one chunk of one attack run.

    Per sample, the run keeps one candidate input: the clean one, or an adversarial one that
    did at least as badly on the selection draws. ``adv`` holds the candidate's fresh *report*
    counts (the result), ``adv_select`` its *selection* counts (what later choices among
    candidates compare, so that no report draw takes part in a choice) and ``origin`` where it
    came from: 0 the clean input, m the attack at position m of a cascade (1 for a single
    attack's run). Ties between candidates go to the adversarial one.
    """

    index: int
    clean: np.ndarray  # uint8 [n]; report counts of the clean input
    adv: np.ndarray  # uint8 [n]; report counts of the chosen candidate
    k_eval: int
    seconds: float = 0.0
    grad_evals: int = 0
    batch_size: int = 0
    seed: int = 0
    env: dict[str, Any] | None = None
    adv_select: np.ndarray | None = None  # uint8 [n]; None: a deterministic run (= adv)
    origin: np.ndarray | None = None  # uint8 [n]; None: 1 where adv < clean, else 0

    def candidate_select(self) -> np.ndarray:
        return self.adv if self.adv_select is None else self.adv_select

    def candidate_origin(self) -> np.ndarray:
        return (self.adv < self.clean).astype(np.uint8) if self.origin is None else self.origin


class ResultStore:
    """``ResultStore(home / "results.sqlite")``; creates the file or checks that it is ours."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        existed = self.path.exists() and self.path.stat().st_size > 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        try:
            if existed:  # before WAL: a refused file must stay exactly as it was
                self._check_ours()
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_TABLES)
            self._migrate()
            self._db.execute(
                "INSERT OR IGNORE INTO meta VALUES ('tool', ?), ('schema', ?)", (TOOL, str(SCHEMA))
            )
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise SnnbenchError(
                f"{self.path} is not a readable snnbench results store ({exc}); "
                "move it away or point --home elsewhere"
            ) from None
        except SnnbenchError:
            self._db.close()
            raise

    def _check_ours(self) -> None:
        try:
            rows = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError as exc:
            if "not a database" in str(exc):
                raise
            rows = {}
        if rows.get("tool") != TOOL:
            raise SnnbenchError(
                f"{self.path} is not an snnbench results store; move it away "
                "or point --home elsewhere"
            )
        schema = str(rows.get("schema", "0"))
        if not schema.isdigit():
            raise SnnbenchError(
                f"{self.path} names schema {schema!r}, which no snnbench writes; "
                "move it away or point --home elsewhere"
            )
        if int(schema) > SCHEMA:
            raise SnnbenchError(
                f"{self.path} was written by a newer snnbench (schema "
                f"{rows['schema']}); upgrade snnbench"
            )

    def _migrate(self) -> None:
        """Schema 1 -> 2: two nullable columns; old chunks read as deterministic runs. Their
        attack keys carry no ``rule=`` token, so no new run ever reuses them."""
        names = {r[1] for r in self._db.execute("PRAGMA table_info(chunks)")}
        missing = [c for c in ("adv_select", "origin") if c not in names]
        for column in missing:
            self._db.execute(f"ALTER TABLE chunks ADD COLUMN {column} BLOB")
        stored = self._db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        if stored is not None and stored[0] != str(SCHEMA):  # an up-to-date store stays unwritten
            self._db.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (str(SCHEMA),))

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "ResultStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- meta
    def set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    # ---- chunks
    def stored_chunks(self, model_sha: str, attack_key: str) -> set[int]:
        rows = self._db.execute(
            "SELECT chunk FROM chunks WHERE model_sha = ? AND attack_key = ?",
            (model_sha, attack_key),
        )
        return {r[0] for r in rows}

    def put_chunk(self, model_sha: str, attack_key: str, chunk: Chunk) -> None:
        """Store one chunk and drop its claim, in one transaction; ``env`` records who computed it."""
        with self._transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO chunks VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    model_sha,
                    attack_key,
                    chunk.index,
                    len(chunk.clean),
                    chunk.k_eval,
                    chunk.clean.astype(np.uint8).tobytes(),
                    chunk.adv.astype(np.uint8).tobytes(),
                    chunk.seconds,
                    chunk.grad_evals,
                    chunk.batch_size,
                    chunk.seed,
                    json.dumps({**(chunk.env or {}), "owner": self.owner}),
                    time.time(),
                    _blob(chunk.adv_select),
                    _blob(chunk.origin),
                ),
            )
            self._db.execute(
                "DELETE FROM claims WHERE model_sha=? AND attack_key=? AND chunk=?",
                (model_sha, attack_key, chunk.index),
            )

    def chunks(self, model_sha: str, attack_key: str, index: int | None = None) -> list[Chunk]:
        """The stored chunks of a run in order (only chunk ``index`` when given)."""
        query = (
            "SELECT chunk, clean, adv, k_eval, seconds, grad_evals, batch_size, seed, env, "
            "adv_select, origin FROM chunks WHERE model_sha = ? AND attack_key = ?"
        )
        args: tuple = (model_sha, attack_key)
        if index is not None:
            query, args = query + " AND chunk = ?", (*args, index)
        rows = self._db.execute(query + " ORDER BY chunk", args)
        return [
            Chunk(
                r[0],
                np.frombuffer(r[1], np.uint8).copy(),
                np.frombuffer(r[2], np.uint8).copy(),
                r[3],
                r[4],
                r[5],
                r[6],
                r[7],
                json.loads(r[8]),
                _array(r[9]),
                _array(r[10]),
            )
            for r in rows
        ]

    # ---- clean draws, shared by every attack on the same samples
    def clean_draws(
        self, model_sha: str, data_key: str, chunk: int
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Cached ``(selection, report)`` correct-draw counts of one chunk's clean inputs."""
        row = self._db.execute(
            "SELECT selection, report FROM clean WHERE model_sha=? AND data_key=? AND chunk=?",
            (model_sha, data_key, chunk),
        ).fetchone()
        if row is None:
            return None
        return np.frombuffer(row[0], np.uint8).copy(), np.frombuffer(row[1], np.uint8).copy()

    def put_clean_draws(
        self,
        model_sha: str,
        data_key: str,
        chunk: int,
        k_eval: int,
        selection: np.ndarray,
        report: np.ndarray,
    ) -> None:
        with self._transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO clean VALUES (?,?,?,?,?,?)",
                (
                    model_sha,
                    data_key,
                    chunk,
                    k_eval,
                    selection.astype(np.uint8).tobytes(),
                    report.astype(np.uint8).tobytes(),
                ),
            )

    # ---- claims: two processes never compute the same chunk
    def claim(self, model_sha: str, attack_key: str, chunk: int) -> bool:
        """True when this process may compute ``chunk`` (unclaimed, stale, or already ours)."""
        with self._transaction():
            if self._db.execute(
                "SELECT 1 FROM chunks WHERE model_sha=? AND attack_key=? AND chunk=?",
                (model_sha, attack_key, chunk),
            ).fetchone():
                return False
            row = self._db.execute(
                "SELECT owner, since FROM claims WHERE model_sha=? AND attack_key=? AND chunk=?",
                (model_sha, attack_key, chunk),
            ).fetchone()
            if (
                row
                and row[0] != self.owner
                and time.time() - row[1] < CLAIM_TIMEOUT_S
                and _alive(row[0])
            ):
                return False
            self._db.execute(
                "INSERT OR REPLACE INTO claims VALUES (?,?,?,?,?)",
                (model_sha, attack_key, chunk, self.owner, time.time()),
            )
            return True

    def release(self, model_sha: str, attack_key: str, chunk: int) -> None:
        self._db.execute(
            "DELETE FROM claims WHERE model_sha=? AND attack_key=? AND chunk=? AND owner=?",
            (model_sha, attack_key, chunk, self.owner),
        )

    # ---- result cards
    def put_card(self, model_sha: str, attack_key: str, card: dict[str, Any]) -> None:
        with self._transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO cards VALUES (?,?,?,?)",
                (model_sha, attack_key, json.dumps(card, sort_keys=True), time.time()),
            )

    def card(self, model_sha: str, attack_key: str) -> dict[str, Any] | None:
        row = self._db.execute(
            "SELECT card FROM cards WHERE model_sha=? AND attack_key=?", (model_sha, attack_key)
        ).fetchone()
        return json.loads(row[0]) if row else None

    def cards(self) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT card FROM cards ORDER BY created, model_sha, attack_key")
        return [json.loads(r[0]) for r in rows]

    # ---- sanity-check outcomes (snnbench check), the newest per (model, check)
    def put_checks(self, model_sha: str, outcomes: list[dict[str, str]]) -> None:
        with self._transaction():
            for o in outcomes:
                self._db.execute(
                    "INSERT OR REPLACE INTO checks VALUES (?,?,?,?,?,?)",
                    (model_sha, o["id"], o["level"], o["status"], o["detail"], time.time()),
                )

    def checks(self) -> dict[str, list[dict[str, str]]]:
        """Stored check outcomes by model sha256, in check order."""
        rows = self._db.execute(
            "SELECT model_sha, check_id, level, status, detail FROM checks "
            "ORDER BY model_sha, check_id"
        )
        out: dict[str, list[dict[str, str]]] = {}
        for sha, check_id, level, status, detail in rows:
            out.setdefault(sha, []).append(
                {"id": check_id, "level": level, "status": status, "detail": detail}
            )
        return out

    # ---- diagnostics (snnbench diagnose), the newest per (model, metric)
    def put_diagnostics(self, model_sha: str, values: dict[str, float], n: int) -> None:
        with self._transaction():
            for metric, value in values.items():
                self._db.execute(
                    "INSERT OR REPLACE INTO diagnostics VALUES (?,?,?,?,?)",
                    (model_sha, metric, value, n, time.time()),
                )

    def diagnostics(self) -> dict[str, dict[str, float]]:
        rows = self._db.execute("SELECT model_sha, metric, value FROM diagnostics ORDER BY metric")
        out: dict[str, dict[str, float]] = {}
        for sha, metric, value in rows:
            out.setdefault(sha, {})[metric] = value
        return out

    def _transaction(self) -> "_Transaction":
        return _Transaction(self._db)


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error): takes the write lock up front."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, *rest: object) -> None:
        self.db.execute("ROLLBACK" if kind else "COMMIT")


def _blob(values: np.ndarray | None) -> bytes | None:
    return None if values is None else np.asarray(values).astype(np.uint8).tobytes()


def _array(blob: bytes | None) -> np.ndarray | None:
    return None if blob is None else np.frombuffer(blob, np.uint8).copy()


def _alive(owner: str) -> bool:
    """Whether the claiming process still runs (only decidable on this host)."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname():
        return True
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True
    return True
