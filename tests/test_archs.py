"""Architectures (defenses.md section 3): every registered arch builds, runs forward and backward
through ``SpikingModel``; the big ones match the spec's parameter and spiking-layer counts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from snnbench.archs import ARCHS, SpikingModel
from snnbench.config import TRACKS
from snnbench.neurons import neuron_factory, spiking_neurons

TIMESTEPS = 2

# (arch, in_channels, image_size, num_classes) -> parameters, defenses.md section 3 table.
PARAMETER_COUNTS = [
    ("vgg11", 3, 32, 10, 61_377_034),
    ("vgg11", 3, 32, 100, 61_745_764),
    ("wrn16", 3, 32, 10, 2_748_902),
    ("wrn16", 3, 32, 100, 2_772_032),
    ("sew-resnet19", 3, 32, 10, 12_569_226),
    ("sew-resnet19", 3, 32, 100, 12_615_396),
    ("tiny", 1, 8, 10, 6_186),
    ("tiny", 1, 28, 10, 20_586),
    ("tiny", 3, 32, 10, 25_674),
]
SPIKING_LAYERS = {"tiny": 2, "vgg11": 10, "wrn16": 13, "sew-resnet19": 19}


def build(name: str, in_channels: int, image_size: int, num_classes: int) -> nn.Module:
    neuron = neuron_factory(TRACKS["tgo"], timesteps=TIMESTEPS)
    return ARCHS.get(name)(
        neuron, in_channels=in_channels, num_classes=num_classes, image_size=image_size
    )


def wrap(body: nn.Module, channels: int) -> SpikingModel:
    return SpikingModel(body, timesteps=TIMESTEPS, mean=(0.5,) * channels, std=(0.25,) * channels)


@pytest.mark.parametrize("name", ARCHS.names())
def test_forward_backward(name: str) -> None:
    torch.manual_seed(0)
    model = wrap(build(name, 3, 32, 10), 3)
    images = torch.rand(2, 3, 32, 32)
    logits = model(images)
    assert logits.shape == (2, 10)
    assert torch.isfinite(logits).all()
    logits.sum().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads, "no parameter received a gradient"
    assert all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("name, in_channels, image_size, num_classes, expected", PARAMETER_COUNTS)
def test_parameter_count(
    name: str, in_channels: int, image_size: int, num_classes: int, expected: int
) -> None:
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        body = build(name, in_channels, image_size, num_classes)
    assert sum(p.numel() for p in body.parameters()) == expected


@pytest.mark.parametrize("name", ARCHS.names())
def test_spiking_layer_count(name: str) -> None:
    with torch.device("meta"):
        body = build(name, 3, 32, 10)
    assert len(spiking_neurons(body)) == SPIKING_LAYERS[name]


@pytest.mark.parametrize("name", ["wrn16", "sew-resnet19"])
def test_neuron_shapes_match_activations(name: str) -> None:
    """Each neuron's declared shape is the per-sample shape it actually sees."""
    torch.manual_seed(0)
    body = build(name, 3, 32, 10)
    seen: list[tuple[tuple[int, ...], tuple[int, ...]]] = []

    def record(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        seen.append((module.shape, tuple(output.shape[1:])))

    hooks = [m.register_forward_hook(record) for m in spiking_neurons(body)]
    body(torch.rand(TIMESTEPS * 1, 3, 32, 32))
    for hook in hooks:
        hook.remove()
    assert len(seen) == SPIKING_LAYERS[name]
    assert all(declared == actual for declared, actual in seen)


@pytest.mark.parametrize(
    "alias, name",
    [("wrn16_4", "wrn16"), ("sew_resnet19", "sew-resnet19"), ("resnet19", "sew-resnet19")],
)
def test_aliases(alias: str, name: str) -> None:
    assert ARCHS.canonical(alias) == name
    assert ARCHS.get(alias) is ARCHS.get(name)


@pytest.mark.parametrize("name", ["wrn16", "sew-resnet19"])
def test_digits_input(name: str) -> None:
    """Global pooling lets the residual nets run on 8x8x1 digits."""
    torch.manual_seed(0)
    model = wrap(build(name, 1, 8, 10), 1)
    assert model(torch.rand(2, 1, 8, 8)).shape == (2, 10)


def test_wrn_mixing_weights() -> None:
    """Each WRN block has a learnable ``mix = (c0, c1)`` initialised to (0.5, 0.5)."""
    with torch.device("meta"):
        body = build("wrn16", 3, 32, 10)
    mixes = [p for n, p in body.named_parameters() if n.endswith(".mix")]
    assert len(mixes) == 6
    assert all(p.shape == (2,) and p.requires_grad for p in mixes)
    body = build("wrn16", 1, 8, 10)
    assert all(
        torch.equal(p, torch.full((2,), 0.5))
        for n, p in body.named_parameters()
        if n.endswith(".mix")
    )
