"""dvs-cifar10 (issue 8): events read from synthetic AEDAT 2.0 files, framed, cached, and the
whole path (train, attack, report with tgo-table5) through the CLI, without the real data."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from dvs_fixture import address, make_dvs_root, write_aedat2
from snnbench import events
from snnbench.cli import app
from snnbench.data import load_dataset
from snnbench.errors import SnnbenchError
from snnbench.model import create_model

runner = CliRunner()


@pytest.fixture(scope="module")
def dvs_root(tmp_path_factory):
    return make_dvs_root(tmp_path_factory.mktemp("dvs"), per_class=5)


def test_decode_follows_spikingjelly_orientation():
    raw = np.array([(5 << 8) | (9 << 1) | 1], dtype=np.uint32)  # row 5, column 9, polarity 1
    x, y, p = events.decode_dvs128(raw)
    assert (x[0], y[0], p[0]) == (127 - 5, 127 - 9, 0)
    assert events.decode_dvs128(address(np.array([100]), np.array([20]), np.array([1]))) == (
        [100],
        [20],
        [1],
    )


def test_a_written_event_lands_in_its_frame_pixel(tmp_path):
    path = tmp_path / "one.aedat"
    n = 40
    write_aedat2(
        path,
        address(np.full(n, 100), np.full(n, 20), np.ones(n, dtype=np.int64)),
        np.arange(n, dtype=np.uint32),
    )
    read = events.read_events(path)
    assert (read["x"] == 100).all() and (read["y"] == 20).all() and (read["p"] == 1).all()
    full = events.to_frames(read, size=128)  # [T, 2, 128, 128] uint8
    assert full.shape == (10, 2, 128, 128)
    assert (full[:, 1, 20, 100] == 255).all() and int(full.sum()) == 10 * 255
    small = events.to_frames(read)  # area 128 -> 48: input 20 -> cell 7
    nonzero = torch.nonzero(small)
    assert set(map(tuple, nonzero[:, 1:].tolist())) == {(1, 7, 37)}


def test_frames_are_cached_once_per_split(dvs_root, monkeypatch):
    x, y = load_dataset("dvs-cifar10", "train", dvs_root)
    assert x.shape == (40, 10, 2, 48, 48) and x.dtype == torch.float32
    assert float(x.min()) >= 0 and float(x.max()) == 1.0 and y.bincount().tolist() == [4] * 10
    assert (dvs_root / "cifar10dvs.T10.s48.train.safetensors").is_file()
    xt, yt = load_dataset("dvs-cifar10", "test", dvs_root)
    assert xt.shape[0] == 10 and yt.tolist() == list(range(10))

    def no_reading(path):
        raise AssertionError("read events although the cache is current")

    monkeypatch.setattr(events, "read_events", no_reading)
    again, labels = load_dataset("dvs-cifar10", "train", dvs_root)
    assert torch.equal(again, x) and torch.equal(labels, y)


def test_a_changed_copy_is_framed_again(tmp_path):
    root = make_dvs_root(tmp_path, per_class=2, events=50)
    first, _ = load_dataset("dvs-cifar10", "test", root)
    make_dvs_root(tmp_path, per_class=2, events=60, seed=1)  # same names, other sizes
    second, _ = load_dataset("dvs-cifar10", "test", root)
    assert not torch.equal(first, second)


def test_missing_copy_and_missing_tonic_are_one_clear_line(tmp_path, monkeypatch):
    result = runner.invoke(
        app,
        [
            "train",
            "vanilla",
            "--data",
            "dvs-cifar10",
            "--home",
            str(tmp_path / "home"),
            "--data-root",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 2 and "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "CIFAR10DVS" in lines[0] and "<class>" in lines[0]
    assert "--data-root" in lines[0]
    monkeypatch.setitem(sys.modules, "tonic", None)
    with pytest.raises(SnnbenchError, match=r"pip install '\.\[dvs\]'"):
        events.to_frames(np.zeros(20, events.EVENT_DTYPE))
    monkeypatch.setitem(sys.modules, "aedat", None)
    monkeypatch.delitem(sys.modules, "tonic")
    (tmp_path / "x.aedat4").write_bytes(b"\0" * 16)
    with pytest.raises(SnnbenchError, match="needs the aedat package"):
        events.read_events(tmp_path / "x.aedat4")


def test_models_take_frames_with_their_own_time_axis():
    model = create_model("vanilla", arch="tiny", dataset="dvs-cifar10")
    assert model.timesteps == 10
    assert model(torch.rand(3, 10, 2, 48, 48)).shape == (3, 10)
    with pytest.raises(SnnbenchError, match="T=10, C=2"):
        model(torch.rand(3, 4, 2, 48, 48))
    with pytest.raises(SnnbenchError, match="T=10, C=2"):
        model(torch.rand(3, 10, 3, 48, 48))
    with pytest.raises(SnnbenchError, match="takes event frames"):
        model(torch.rand(3, 2, 48, 48))
    with pytest.raises(SnnbenchError, match="10 frames per sample"):
        create_model("vanilla", arch="tiny", dataset="dvs-cifar10", timesteps=4)


def test_train_attack_report_through_the_cli(dvs_root, tmp_path):
    common = ["--home", str(tmp_path / "home")]
    data = ["--data-root", str(dvs_root)]
    result = runner.invoke(
        app,
        [
            "train",
            "at",
            "--data",
            "dvs-cifar10",
            "--epochs",
            "1",
            "--batch-size",
            "20",
            *common,
            *data,
        ],
    )
    assert result.exit_code == 0, result.output
    card = json.loads((tmp_path / "home/models/at-tiny-dvs-cifar10/card.json").read_text())
    assert card["input"]["shape"] == [10, 2, 48, 48] and card["timesteps"] == 10
    result = runner.invoke(
        app, ["attack", "--attacks", "fgsm,rfgsm,pgd7", "--n", "10", *common, *data]
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        app,
        [
            "report",
            "--layout",
            "tgo-table5",
            "--format",
            "all",
            "--out",
            str(tmp_path / "out"),
            *common,
        ],
    )
    assert result.exit_code == 0, result.output
    table = json.loads(next((tmp_path / "out").glob("*-tgo-table5.json")).read_text())
    at = next(r for r in table["rows"] if r["row"] == "AT")
    assert at["model"] == "at-tiny-dvs-cifar10"
    assert all(at["ours"][c] is not None for c in ("Clean", "FGSM", "RFGSM", "PGD7"))
    assert at["ours"]["PGD50"] is None and at["paper"]["PGD7"] == 46.9
    assert "REDUCED PROTOCOL" in table["description"]
    from snnbench.store import ResultStore  # result cards say what eps perturbed

    with ResultStore(tmp_path / "home" / "results.sqlite") as store:
        cards = store.cards()
    assert len(cards) == 3 and all("event frames" in c["eval"]["input"] for c in cards)


def test_a_read_only_root_caches_under_snnbench_cache(tmp_path, monkeypatch):
    root = make_dvs_root(tmp_path / "data", per_class=2, events=50)
    monkeypatch.setenv("SNNBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(events, "writable", lambda directory: False)
    x, _ = load_dataset("dvs-cifar10", "test", root)
    assert not list(root.glob("*.safetensors"))
    (cached,) = (tmp_path / "cache").glob("*-cifar10dvs.T10.s48.test.safetensors")
    assert torch.equal(load_dataset("dvs-cifar10", "test", root)[0], x)


def test_paper_tgo_adds_pgd30_and_pgd50_on_event_data_and_square_takes_frames():
    from snnbench.attacks import create_attack
    from snnbench.attacks.suites import SUITES

    suite = SUITES.get("paper-tgo")
    assert {"pgd30", "pgd50"} <= {a.id for a in suite.attacks(8 / 255, events=True)}
    assert not {"pgd30", "pgd50"} & {a.id for a in suite.attacks(8 / 255)}
    torch.manual_seed(0)
    model = create_model("vanilla", arch="tiny", dataset="dvs-cifar10").eval()
    x = torch.rand(2, 10, 2, 48, 48)
    adv = create_attack("square", 8 / 255, steps=5).perturb(model, x, model(x).argmax(1))
    assert adv.shape == x.shape and float((adv - x).abs().max()) <= 8 / 255 + 1e-6
