"""``--compile``: torch.compile gives the eager model's logits and input gradients, checkpoints
keep plain state_dict keys, and a compiler failure is one line that says how to go without."""

from __future__ import annotations

import pytest
import torch
from test_cli import invoke, one_line_error

import snnbench
from snnbench import api
from snnbench.config import ModelConfig, TrainConfig
from snnbench.errors import SnnbenchError
from snnbench.metrics import decode_counts
from snnbench.runtime import compile_model, is_compiled
from snnbench.train import train_model

CONFIG = ModelConfig("vanilla", "tiny", "digits", 2)


@pytest.fixture(autouse=True)
def fresh_dynamo():
    yield
    torch._dynamo.reset()  # no compiled frames or failures carried into other tests


def with_backend(monkeypatch, backend) -> None:
    """``torch.compile`` as snnbench calls it, with another backend (cheap, or broken)."""
    real = torch.compile
    monkeypatch.setattr(torch, "compile", lambda model, **_: real(model, backend=backend))


def test_compiled_model_matches_eager_logits_and_input_gradients():
    torch.manual_seed(0)
    model = snnbench.create_model("vanilla", arch="tiny", dataset="digits", timesteps=2).eval()
    compiled = compile_model(model)  # default mode: inductor
    assert is_compiled(compiled) and not is_compiled(model)
    assert list(compiled.state_dict())[0].startswith("_orig_mod.")  # why we save ``model``
    x = torch.rand(6, 1, 8, 8)
    results = []
    for net in (model, compiled):
        inputs = x.clone().requires_grad_(True)
        logits = net(inputs)
        (grad,) = torch.autograd.grad(
            torch.nn.functional.cross_entropy(logits, torch.arange(6)), inputs
        )
        results.append((logits.detach(), grad))
    (eager_logits, eager_grad), (logits, grad) = results
    torch.testing.assert_close(logits, eager_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grad, eager_grad, atol=1e-5, rtol=1e-5)


def test_trained_with_compile_saves_plain_weights_and_runtime_flag(tmp_path, monkeypatch):
    with_backend(monkeypatch, "eager")  # the wrapping, not inductor, is tested here
    train = TrainConfig(epochs=1, batch_size=479)  # 1,437 digits: three equal batches
    compiled = train_model(CONFIG, train, home=tmp_path, device="cpu", compile=True)
    model = snnbench.load(compiled.name, tmp_path)  # strict load into the plain module
    assert not any(k.startswith("_orig_mod.") for k in model.state_dict())
    assert compiled.card["compiled"] is True and "compile" not in compiled.card["train"]
    assert train_model(CONFIG, train, home=tmp_path).status == "up to date"  # same identity


def test_attack_with_compile_matches_eager_and_says_so(home, monkeypatch):
    eager = api.attack(home=home, attacks=["fgsm"], n=60, device="cpu")
    with_backend(monkeypatch, "eager")
    kwargs = dict(attacks=["fgsm"], n=60, device="cpu", compile=True, chunk_size=60)
    compiled = api.attack(home=home, **kwargs)
    assert compiled[0]["env"]["compiled"] is True and "compiled" not in eager[0]["env"]
    assert (
        decode_counts(compiled[0]["per_sample"]["adv"]).tolist()
        == decode_counts(eager[0]["per_sample"]["adv"]).tolist()
    )


def broken(graph, example_inputs):
    raise RuntimeError("no C++ compiler (test)")


def test_a_failing_compiler_is_one_line_naming_the_way_out(home, tmp_path, monkeypatch):
    with_backend(monkeypatch, broken)
    with pytest.raises(SnnbenchError, match="run the same command without --compile"):
        train_model(CONFIG, TrainConfig(epochs=1), home=tmp_path, device="cpu", compile=True)
    result = invoke("attack", "--attacks", "fgsm", "--n", "20", "--compile", "--home", home)
    assert result.exit_code == 2
    assert "without --compile" in one_line_error(result)
