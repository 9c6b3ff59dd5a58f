"""Spiking neurons, registered by name; architectures receive them through a factory.

A neuron factory maps the shape of one sample's neurons (``(C, H, W)`` or ``(features,)``) to a
module ``[T*B, *shape] -> [T*B, *shape]``; defences that need per-neuron parameters (Het, StoG)
use the shape, the rest ignore it.
"""
from __future__ import annotations

from typing import Any, Callable

from torch import nn

from snnbench.config import NeuronConfig
from snnbench.neurons.lif import LIF
from snnbench.neurons.surrogate import SURROGATES, Surrogate, spike
from snnbench.registry import Registry

NeuronFactory = Callable[[tuple[int, ...]], nn.Module]
NEURONS: Registry[type[nn.Module]] = Registry("neuron")
NEURONS.add("lif", LIF, summary="multi-step LIF/IF, tet or convex charge (defenses.md 2.1)",
            paper="Deng et al. 2022 (TET); BrainCog")


def neuron_factory(config: NeuronConfig, timesteps: int, **options: Any) -> NeuronFactory:
    """A factory building ``config.kind`` neurons simulated for ``timesteps`` steps.

    ``options`` go to the neuron class's constructor (``noise_var`` for Noisy-LIF, ...).
    """
    cls = NEURONS.get(config.kind)

    def make(shape: tuple[int, ...]) -> nn.Module:
        return cls(config, timesteps, tuple(shape), **options)

    return make


def spiking_neurons(model: nn.Module) -> list[nn.Module]:
    """Every spiking neuron of ``model``, in forward order of registration."""
    return [m for m in model.modules() if isinstance(m, LIF)]


__all__ = ["NEURONS", "SURROGATES", "LIF", "NeuronFactory", "Surrogate", "grad_mode", "neuron_factory",
           "spike", "spiking_neurons"]


def grad_mode(model: nn.Module, mode: str = "own") -> nn.Module:
    """Choose the attacker's backward pass (evaluation.md section 3), leaving the forward as is.

    ``own`` (alias ``bptt``): the model's own surrogate. ``SHAPE:WIDTH`` (e.g. ``atan:2``):
    another surrogate for every spike. Unsupported modes are an error, never a silent fallback.
    """
    from snnbench.errors import SnnbenchError

    text = mode.strip().lower().removeprefix("sg:")
    if text in ("own", "bptt"):
        override = None
    elif ":" in text:
        shape, _, width = text.partition(":")
        try:
            override = Surrogate(shape, float(width))
        except ValueError:
            raise SnnbenchError(f"cannot read surrogate width in {mode!r}; write e.g. atan:2") from None
    else:
        raise SnnbenchError(f"gradient mode {mode!r} is not available; use 'own' or SHAPE:WIDTH "
                            f"with a shape of {', '.join(SURROGATES.names())}")
    for neuron in spiking_neurons(model):
        neuron.attack_surrogate = override
    return model
