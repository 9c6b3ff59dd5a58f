"""runtime.tune_allocator: glibc's mallopt at start-up, a no-op elsewhere."""
from __future__ import annotations

import subprocess
import sys

from snnbench import runtime


def test_tune_allocator_is_idempotent_and_keeps_results():
    code = ("import torch; from snnbench import runtime; a = runtime.tune_allocator(); "
            "b = runtime.tune_allocator(); x = torch.ones(20_000_000); y = x * 2; del y; "
            "print(a, b, (x * 2).sum().item())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    expected = "True" if sys.platform.startswith("linux") else "False"
    assert out[0] == out[1] == expected and float(out[2]) == 40_000_000


def test_cli_setup_tunes_the_allocator(monkeypatch):
    from typer.testing import CliRunner

    from snnbench.cli import app

    calls = []
    monkeypatch.setattr(runtime, "tune_allocator", lambda: calls.append(1) or True)
    CliRunner().invoke(app, ["list", "neurons"])
    assert calls == [1]
