"""The SQLite results store."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from snnbench.errors import SnnbenchError
from snnbench.store import Chunk, ResultStore


def chunk(i: int) -> Chunk:
    return Chunk(i, np.array([1, 0, 1], np.uint8), np.array([1, 0, 0], np.uint8), 1, seed=i)


def test_chunks_round_trip_and_claims(tmp_path):
    path = tmp_path / "results.sqlite"
    with ResultStore(path) as store:
        assert store.claim("m", "k", 0)
        store.put_chunk("m", "k", chunk(0))
        assert store.stored_chunks("m", "k") == {0}
        assert not store.claim("m", "k", 0)  # stored: nothing to claim
        assert store.claim("m", "k", 1)
    with ResultStore(path) as again:
        (stored,) = again.chunks("m", "k")
        assert stored.adv.tolist() == [1, 0, 0] and stored.clean.tolist() == [1, 0, 1]


def test_a_live_claim_keeps_a_second_process_off(tmp_path, monkeypatch):
    path = tmp_path / "results.sqlite"
    first, second = ResultStore(path), ResultStore(path)
    second.owner = second.owner.rsplit(":", 1)[0] + ":1"  # pid 1 is alive: another process
    assert second.claim("m", "k", 0)
    assert not first.claim("m", "k", 0)
    second.owner = second.owner.rsplit(":", 1)[0] + ":999999999"  # a dead process's claim
    assert second.claim("m", "k", 1)
    assert first.claim("m", "k", 1)


def test_foreign_sqlite_file_is_refused(tmp_path):
    path = tmp_path / "results.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE meta (key TEXT, value TEXT)")
    db.execute("INSERT INTO meta VALUES ('tool', 'other')")
    db.commit()
    db.close()
    with pytest.raises(SnnbenchError, match="not an snnbench results store"):
        ResultStore(path)


def test_corrupt_file_is_refused(tmp_path):
    path = tmp_path / "results.sqlite"
    path.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(SnnbenchError, match="not"):
        ResultStore(path)


def test_a_schema_1_store_is_migrated_and_its_chunks_read_as_deterministic(tmp_path):
    import sqlite3

    path = tmp_path / "old.sqlite"
    with ResultStore(path) as store:
        store.put_chunk("sha", "key", chunk(0))
    db = sqlite3.connect(path)  # as schema 1 wrote it: no selection counts, no origin
    db.execute("UPDATE chunks SET adv_select = NULL, origin = NULL")
    db.execute("UPDATE meta SET value = '1' WHERE key = 'schema'")
    db.commit()
    db.close()
    with ResultStore(path) as store:
        (old,) = store.chunks("sha", "key")
        assert store.get_meta("schema") == "2"
        assert old.candidate_select().tolist() == old.adv.tolist()
        assert old.candidate_origin().tolist() == [0, 0, 1]  # where adv < clean
