"""runtime: glibc's mallopt at start-up (a no-op elsewhere); placing a model (channels_last)."""

from __future__ import annotations

import subprocess
import sys

from snnbench import runtime


def test_tune_allocator_is_idempotent_and_keeps_results():
    code = (
        "import torch; from snnbench import runtime; a = runtime.tune_allocator(); "
        "b = runtime.tune_allocator(); x = torch.ones(20_000_000); y = x * 2; del y; "
        "print(a, b, (x * 2).sum().item())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    expected = "True" if sys.platform.startswith("linux") else "False"
    assert out[0] == out[1] == expected and float(out[2]) == 40_000_000


def test_cli_setup_tunes_the_allocator(monkeypatch):
    from typer.testing import CliRunner

    from snnbench.cli import app

    calls = []
    monkeypatch.setattr(runtime, "tune_allocator", lambda: calls.append(1) or True)
    CliRunner().invoke(app, ["list", "neurons"])
    assert calls == [1]


def _channels_last(model) -> bool:
    import torch

    convs = [m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    return all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)


def test_place_uses_channels_last_where_the_arch_declares_it(monkeypatch):
    from snnbench.model import create_model

    monkeypatch.delenv(runtime.CHANNELS_LAST_ENV, raising=False)
    assert _channels_last(runtime.place(create_model("vanilla", arch="tiny"), "cpu"))
    vgg = create_model("vanilla", arch="vgg11", dataset="cifar10")
    assert not _channels_last(runtime.place(vgg, "cpu"))  # no faster on the CPU: measured
    monkeypatch.setenv(runtime.CHANNELS_LAST_ENV, "1")
    assert _channels_last(runtime.place(vgg, "cpu"))
    monkeypatch.setenv(runtime.CHANNELS_LAST_ENV, "0")
    assert not _channels_last(runtime.place(create_model("vanilla", arch="tiny"), "cpu"))


def test_place_refuses_a_bad_setting(monkeypatch):
    import pytest

    from snnbench.errors import SnnbenchError
    from snnbench.model import create_model

    monkeypatch.setenv(runtime.CHANNELS_LAST_ENV, "yes")
    with pytest.raises(SnnbenchError, match="must be 0, 1 or auto"):
        runtime.place(create_model("vanilla", arch="tiny"), "cpu")


def test_channels_last_changes_no_numbers(monkeypatch):
    """Logits and input gradients of a model in both layouts, stochastic neurons included."""
    import copy

    import torch

    from snnbench.model import create_model

    monkeypatch.setenv(runtime.CHANNELS_LAST_ENV, "0")
    for defense in ("vanilla", "tgo", "randhet"):
        torch.manual_seed(0)
        plain = runtime.place(create_model(defense, arch="tiny"), "cpu").eval()
        monkeypatch.setenv(runtime.CHANNELS_LAST_ENV, "1")
        nhwc = runtime.place(copy.deepcopy(plain), "cpu")
        monkeypatch.setenv(runtime.CHANNELS_LAST_ENV, "0")
        assert _channels_last(nhwc) and not _channels_last(plain)
        x = torch.rand(16, 1, 8, 8)
        grads = []
        for model in (plain, nhwc):
            xi = x.clone().requires_grad_(True)
            torch.manual_seed(1)
            logits = model(xi)
            logits.logsumexp(1).sum().backward()
            grads.append((logits.detach(), xi.grad))
        torch.testing.assert_close(grads[0][0], grads[1][0], rtol=0, atol=1e-6)
        torch.testing.assert_close(grads[0][1], grads[1][1], rtol=1e-5, atol=1e-7)
