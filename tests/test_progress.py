"""Progress a person can watch: start events before the work, a bounded screen, and a real
pseudo-terminal run that shows a moving bar and ends with a summary."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import re
import select
import struct
import subprocess
import sys
import tarfile
import termios
import time
from pathlib import Path

from rich.console import Console

from snnbench import api, progress
from snnbench.config import ModelConfig, TrainConfig
from snnbench.train import train_model

REPO = Path(__file__).resolve().parents[1]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")


class Recorder:
    """Every event, in order, as tuples."""

    def __init__(self) -> None:
        self.events: list[tuple] = []

    def started(self, task):
        self.events.append(("start", task.label, task.done, task.total, task.unit))

    def advanced(self, task):
        self.events.append(("advance", task.label, task.done, task.total, task.unit))

    def finished(self, task):
        self.events.append(("finish", task.label, task.done, task.total, task.unit))

    def status(self, text):
        self.events.append(("status", text))

    def of(self, label: str) -> list[tuple]:
        return [e for e in self.events if e[0] != "status" and e[1] == label]


def test_training_announces_its_images_before_the_first_batch(tmp_path):
    with progress.listen(Recorder()) as seen:
        train_model(
            ModelConfig("vanilla", "tiny", "digits", 2),
            TrainConfig(epochs=2),
            home=tmp_path,
            device="cpu",
        )
    events = seen.of("train vanilla-tiny-digits")
    assert events[0] == ("start", "train vanilla-tiny-digits", 0, 2 * 1437, "images")
    assert events[-1][0] == "finish" and events[-1][2] == 2 * 1437
    done = [e[2] for e in events if e[0] == "advance"]
    assert done == sorted(done) and len(set(done)) > 4  # batches, not only epochs
    assert ("status", "loading digits train") in seen.events


def test_an_attack_run_starts_at_zero_and_advances_per_chunk(home):
    with progress.listen(Recorder()) as seen:
        api.attack(home=home, attacks=["fgsm"], n=200, chunk_size=50, device="cpu")
    events = seen.of("fgsm on vanilla-tiny-digits")
    assert events[0] == ("start", "fgsm on vanilla-tiny-digits", 0, 200, "samples")
    done = [e[2] for e in events if e[0] == "advance"]
    assert done == sorted(done) and {50, 100, 150, 200} <= set(done)
    assert any(d % 50 for d in done)  # within a chunk: after its attacked batch
    assert events[-1] == ("finish", "fgsm on vanilla-tiny-digits", 200, 200, "samples")
    api.attack(home=home, attacks=["pgd10"], n=200, chunk_size=50, max_chunks=1, device="cpu")
    with progress.listen(Recorder()) as again:  # a rerun: stored chunks count as done
        api.attack(home=home, attacks=["fgsm", "pgd10"], n=200, chunk_size=50, device="cpu")
    assert again.of("fgsm on vanilla-tiny-digits") == []  # all stored: nothing to show
    assert again.of("pgd10 on vanilla-tiny-digits")[0][:3] == (
        "start",
        "pgd10 on vanilla-tiny-digits",
        50,
    )


def test_checks_count_each_probe_check(home):
    with progress.listen(Recorder()) as seen:
        api.check(home=home, n=20, checks=["C02", "C03", "C20"], device="cpu")
    events = seen.of("checks on vanilla-tiny-digits")
    assert events[0][0] == "start" and events[0][2] == 0 and events[0][3] >= 1
    assert events[-1][0] == "finish" and events[-1][2] == events[-1][3]


def test_the_live_screen_stays_bounded_after_many_tasks():
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=100, height=40)
    display = progress.LiveDisplay(console, keep=8)
    with progress.listen(display):  # events only, no live thread
        for i in range(100):
            progress.begin(f"attack {i} on model", 360, "samples").end()
        running = progress.begin("train model", 1000, "images")
        running.advance(10)
        progress.status("loading digits test")
        lines = console.render_lines(display.render(), console.options, pad=False)
    text = "\n".join("".join(seg.text for seg in line) for line in lines)
    assert len(lines) <= 8 + 4, text
    assert "92 earlier task(s) finished" in text and "attack 99 on model" in text
    assert "attack 91 on model" not in text and "10/1000 images" in text


def test_a_small_narrow_terminal_keeps_the_screen_within_its_height():
    console = Console(file=io.StringIO(), force_terminal=True, width=60, height=10)
    display = progress.LiveDisplay(console, keep=8)
    long = "→transfer-mean-twin-apgd-ce (cascade 8) on tgo+rat-resnet19-cifar10"
    with progress.listen(display):
        for i in range(30):
            progress.begin(f"{long} {i}", 1, "chunks").end()
        progress.begin(long, 5, "chunks")
        progress.status(f"unpacking test/ of cifar10-jpeg.tar.gz into {'/very/long/path' * 5}")
        lines = console.render_lines(display.render(), console.options, pad=False)
    assert len(lines) <= 10


def test_plain_log_prints_finished_tasks_and_slow_steps_only():
    buffer = io.StringIO()
    log = progress.PlainLog(Console(file=buffer, width=200), slow_s=0.2)
    with progress.listen(log):
        progress.status("loading digits train")  # quick: no line
        for _ in range(3):
            progress.status("loading digits test")  # slow, and named once
            time.sleep(0.5)
        with progress.task("fgsm on m", 2, "samples") as bar:
            bar.advance(2)
        progress.status("loading cifar10 train")  # ends in an error: no line
        log.close()
    lines = buffer.getvalue().splitlines()
    assert lines[0] == "… loading digits test" and len(lines) == 2, lines
    assert lines[1].startswith("✓ fgsm on m  2/2 samples in ")


def run_in_pty(args: list[str], rows: int = 40, cols: int = 110, timeout: float = 240) -> str:
    """The raw output of ``python -m snnbench.cli ARGS`` on a pseudo-terminal of ROWS x COLS."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    env = {
        **os.environ,
        "TERM": "xterm-256color",
        "PYTHONPATH": str(REPO),
        "COLUMNS": str(cols),
        "LINES": str(rows),
    }
    for key in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        env.pop(key, None)
    process = subprocess.Popen(
        [sys.executable, "-m", "snnbench.cli", *args],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=env,
        close_fds=True,
    )
    os.close(follower)
    chunks, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.5)
        if ready:
            try:
                data = os.read(leader, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif process.poll() is not None:
            break
    process.kill() if process.poll() is None else None
    process.wait()
    os.close(leader)
    return b"".join(chunks).decode("utf-8", "replace")


def test_attack_on_a_40_row_terminal_shows_a_moving_bar_and_ends_with_a_summary(home):
    raw = run_in_pty(
        [
            "attack",
            "--attacks",
            "fgsm,apgd-ce",
            "--n",
            "120",
            "--chunk-size",
            "30",
            "--home",
            str(home),
            "--device",
            "cpu",
        ]
    )
    screen = ANSI.sub("", raw)
    counts = [(int(a), int(b)) for a, b in re.findall(r"(\d+)/(\d+) samples", screen)]
    assert any(done < total for done, total in counts), screen[-3000:]
    assert any(done == total == 120 for done, total in counts), screen[-3000:]
    assert re.search(r" \d+(\.\d+)?/s +eta \d+:\d\d", screen), screen[-3000:]  # rate, ETA
    assert re.search(r"done in [\d.]+ s: 2 attack result\(s\) on 1 model\(s\)", screen)
    assert "next: snnbench report" in screen


def test_unpacking_and_decoding_cifar10_say_what_they_do(tmp_path, monkeypatch):
    from PIL import Image
    from snnbench.data import CIFAR10_CLASSES, load_dataset

    monkeypatch.setenv("SNNBENCH_CACHE", str(tmp_path / "cache"))
    build = tmp_path / "build" / "cifar10-jpeg" / "test"
    for name in CIFAR10_CLASSES:
        (build / name).mkdir(parents=True)
        Image.new("RGB", (32, 32)).save(build / name / "0000.jpg")
    (tmp_path / "data").mkdir()
    with tarfile.open(tmp_path / "data" / "cifar10-jpeg.tar.gz", "w:gz") as tar:
        tar.add(build.parent, arcname="cifar10-jpeg")
    with progress.listen(Recorder()) as seen:
        load_dataset("cifar10", "test", tmp_path / "data")
    statuses = [e[1] for e in seen.events if e[0] == "status"]
    assert statuses[0] == "loading cifar10 test"
    assert any(s.startswith("unpacking test/ of cifar10-jpeg.tar.gz") for s in statuses)
    decoding = [e for e in seen.events if e[0] != "status" and e[1].startswith("decoding")]
    assert decoding[0][:1] + decoding[0][2:] == ("start", 0, 10, "images")
    assert decoding[-1][0] == "finish" and decoding[-1][2] == 10


def test_check_prints_a_summary_and_writes_every_detail_to_a_file(home):
    from typer.testing import CliRunner
    from snnbench.cli import app

    args = ["check", "--home", str(home), "--n", "20", "--checks", "C02,C03,C07,C09"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "vanilla-tiny-digits" in result.stdout and "next: snnbench report" in result.stdout
    assert "||grad_x L||_1" not in result.stdout  # C07 detail: in the file only
    details = (home / "checks.txt").read_text()
    assert all(check in details for check in ("C02", "C03", "C07", "C09"))
    assert "||grad_x L||_1 = 0" in details
    verbose = CliRunner().invoke(app, [*args, "--verbose"])
    assert "||grad_x L||_1 = 0" in verbose.stdout
