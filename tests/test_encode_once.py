"""Encode once (docs/performance.md): a direct-encoded model runs its first conv + BN on the image
once and repeats the result over T; logits, input and parameter gradients and BatchNorm's
running statistics equal those of the per-step path (float64, up to rounding)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import snnbench
from snnbench.archs import ARCHS, SpikingModel
from snnbench.archs.base import repeated_batch_norm
from snnbench.config import TRACKS
from snnbench.neurons import neuron_factory

TOL = {"rtol": 1e-9, "atol": 1e-11}


def twins(model: SpikingModel) -> tuple[SpikingModel, SpikingModel]:
    """The model encoding once and a copy on the per-step path, float64, same weights."""
    once = model.double()
    per_step = copy.deepcopy(once)
    per_step.encode_once = False
    return once, per_step


def arch_model(name: str, timesteps: int = 3, size: int = 8) -> SpikingModel:
    torch.manual_seed(0)
    body = ARCHS.get(name)(
        neuron_factory(TRACKS["tgo"], timesteps=timesteps),
        in_channels=3,
        num_classes=10,
        image_size=size,
    )
    return SpikingModel(body, timesteps, mean=(0.5,) * 3, std=(0.25,) * 3)


def step(model: SpikingModel, images: torch.Tensor, train: bool) -> tuple[torch.Tensor, ...]:
    """Logits, the input gradient and every parameter gradient of one cross-entropy step."""
    model.train(train)
    model.zero_grad(set_to_none=True)
    x = images.clone().requires_grad_()
    logits = model(x)
    nn.functional.cross_entropy(logits, torch.arange(len(x)) % logits.shape[1]).backward()
    params = [p.grad if p.grad is not None else torch.zeros_like(p) for p in model.parameters()]
    return (logits.detach(), x.grad, *params)


def assert_same(a: tuple[torch.Tensor, ...], b: tuple[torch.Tensor, ...]) -> None:
    assert len(a) == len(b)
    for left, right in zip(a, b):
        torch.testing.assert_close(left, right, **TOL)


@pytest.mark.parametrize("name", ["tiny", "wrn16", "sew-resnet19"])
@pytest.mark.parametrize("train", [False, True])
def test_logits_and_gradients_equal_the_per_step_path(name: str, train: bool) -> None:
    once, per_step = twins(arch_model(name))
    images = torch.rand(3, 3, 8, 8, dtype=torch.float64)
    calls = []
    real = once.body.encode
    once.body.encode = lambda image, repeats: calls.append(repeats) or real(image, repeats)
    first = step(once, images, train)
    assert calls == [3]  # the encoder ran once, for T = 3
    assert_same(first, step(per_step, images, train))
    if train:  # running statistics as over T copies
        assert_same(tuple(once.state_dict().values()), tuple(per_step.state_dict().values()))


def test_vgg_encoder_is_its_first_conv_and_batch_norm() -> None:
    with torch.device("meta"):
        body = ARCHS.get("vgg11")(
            neuron_factory(TRACKS["tgo"], timesteps=2), in_channels=3, num_classes=10, image_size=32
        )
    encoder = list(body)[: body.encoder_length]
    assert [type(m) for m in encoder] == [nn.Conv2d, nn.BatchNorm2d]


@pytest.mark.parametrize(
    "defense", ["vanilla", "tgo", "randhet", "randhet*", "stog", "dlif", "het"]
)
def test_training_steps_keep_running_statistics_exact(defense: str) -> None:
    """Three train steps: same losses, same weights, same BN running stats, stochastic
    neurons included (their draws come after the encoder, in the same order)."""
    torch.manual_seed(0)
    once, per_step = twins(
        snnbench.create_model(defense, arch="tiny", dataset="digits", timesteps=4)
    )
    images = torch.rand(5, 1, 8, 8, dtype=torch.float64)
    for model in (once, per_step):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
        torch.manual_seed(1)
        for _ in range(3):
            step(model, images, train=True)
            optimizer.step()
    assert_same(tuple(once.state_dict().values()), tuple(per_step.state_dict().values()))
    torch.manual_seed(2)
    with torch.no_grad():
        eval_once = once.eval()(images)
    torch.manual_seed(2)
    with torch.no_grad():
        torch.testing.assert_close(eval_once, per_step.eval()(images), **TOL)


@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("repeats", [1, 2, 5])
def test_repeated_batch_norm_equals_batch_norm_over_the_copies(momentum, repeats) -> None:
    torch.manual_seed(0)
    x = torch.randn(3, 4, 5, 5, dtype=torch.float64, requires_grad=True)
    once = nn.BatchNorm2d(4, momentum=momentum).double()
    with torch.no_grad():
        once.weight.uniform_(0.5, 1.5)
        once.bias.uniform_(-0.5, 0.5)
    copies = copy.deepcopy(once)
    for _ in range(2):  # the second call exercises the cumulative factor
        ours = repeated_batch_norm(once, x, repeats)
        theirs = copies(torch.cat([x] * repeats))
        torch.testing.assert_close(torch.cat([ours] * repeats), theirs, **TOL)
    (grad_ours,) = torch.autograd.grad((torch.cat([ours] * repeats) ** 3).sum(), x)
    (grad_theirs,) = torch.autograd.grad((theirs**3).sum(), x)
    torch.testing.assert_close(grad_ours, grad_theirs, **TOL)
    assert_same(tuple(once.state_dict().values()), tuple(copies.state_dict().values()))
    if repeats > 1:  # without the correction (one copy's count) the running variance differs
        plain = nn.BatchNorm2d(4, momentum=momentum).double()
        for _ in range(2):
            plain(x)
        assert not torch.allclose(plain.running_var, copies.running_var, **TOL)


def test_event_frames_keep_the_per_step_path() -> None:
    model = arch_model("tiny", timesteps=2)

    def refuse(image, repeats):
        raise AssertionError("event frames must not take the encode-once path")

    model.body.encode = refuse
    frames = torch.rand(2, 2, 3, 8, 8)
    assert model(frames).shape == (2, 10)
