"""Spiking neurons, registered by name; architectures receive them through a factory.

A neuron factory maps the shape of one sample's neurons (``(C, H, W)`` or ``(features,)``) to a
module ``[T*B, *shape] -> [T*B, *shape]``; defences that need per-neuron parameters (Het, StoG)
use the shape, the rest ignore it.
"""

from __future__ import annotations

from typing import Any, Callable

from torch import nn

from snnbench.config import NeuronConfig
from snnbench.neurons.dlif import DLIF
from snnbench.neurons.foreign import set_foreign_grad_mode
from snnbench.neurons.het import HetLIF
from snnbench.neurons.lif import LIF
from snnbench.neurons.noisy import NoisyLIF
from snnbench.neurons.randhet import RandHetLIF
from snnbench.neurons.stog import GatedNeuron, StoGGate, gated_factory
from snnbench.neurons.surrogate import SURROGATES, Surrogate, spike
from snnbench.registry import Registry

NeuronFactory = Callable[[tuple[int, ...]], nn.Module]
NEURONS: Registry[type[nn.Module]] = Registry("neuron")
NEURONS.add(
    "lif",
    LIF,
    summary="multi-step LIF/IF, tet or convex charge (docs/defenses.md)",
    paper="Deng et al. 2022 (TET); BrainCog",
)
NEURONS.add(
    "noisy",
    NoisyLIF,
    summary="LIF with Gaussian escape noise on the firing decision, TGO's NLIF (docs/defenses.md)",
    paper="Wang et al., ICLR 2026, arXiv 2602.20548 (TGO)",
)
NEURONS.add(
    "het",
    HetLIF,
    summary="LIF with learnable decays k = sigmoid(w) (docs/defenses.md)",
    paper="Wang et al., RandHet ablation (BrainCog-X); Xu et al.",
)
NEURONS.add(
    "randhet",
    RandHetLIF,
    summary="LIF with random decays sigmoid(sigma*eps), per step "
    "(RandHet) or per call (RandHet*, per_step=False) (docs/defenses.md)",
    paper="Wang et al., RandHet (BrainCog-X RHLIFNode, RHLIFNode2)",
)
NEURONS.add(
    "dlif",
    DLIF,
    summary="LIF with a learnable input gain p_t per time step (docs/defenses.md)",
    paper="Ding et al., ICML 2024, arXiv 2405.20694 (stable-snn)",
)


def neuron_factory(config: NeuronConfig, timesteps: int, **options: Any) -> NeuronFactory:
    """A factory building ``config.kind`` neurons simulated for ``timesteps`` steps.

    ``options`` go to the neuron class's constructor (``noise_var`` for Noisy-LIF, ...).
    """
    cls = NEURONS.get(config.kind)

    def make(shape: tuple[int, ...]) -> nn.Module:
        return cls(config, timesteps, tuple(shape), **options)

    return make


def spiking_neurons(model: nn.Module) -> list[nn.Module]:
    """Every spiking neuron of ``model`` (LIF and its subclasses), in order of registration."""
    return [m for m in model.modules() if isinstance(m, LIF)]


def stochastic_modules(model: nn.Module) -> list[nn.Module]:
    """The neurons and gates of ``model`` that draw random numbers at test time (eval mode).

    LIF, Het and DLIF: never; Noisy-LIF: noise_var > 0 and noise_at_eval; RandHet: sigma > 0;
    StoG gates: always. A model is stochastic (attacks need EoT) iff this list is non-empty.
    """
    return [m for m in model.modules() if isinstance(m, (LIF, StoGGate)) and m.stochastic]


__all__ = [
    "DLIF",
    "NEURONS",
    "SURROGATES",
    "GatedNeuron",
    "HetLIF",
    "LIF",
    "NeuronFactory",
    "NoisyLIF",
    "RandHetLIF",
    "StoGGate",
    "Surrogate",
    "gated_factory",
    "grad_mode",
    "neuron_factory",
    "spike",
    "spiking_neurons",
    "stochastic_modules",
]


def parse_grad_mode(mode: str) -> tuple[str, Surrogate | None]:
    """``(canonical key token, surrogate override)`` of an attacker's gradient mode.

    ``own`` / ``bptt``: the model's own surrogate (token ``bptt``). ``SHAPE:WIDTH`` or
    ``sg:SHAPE:WIDTH`` (e.g. ``atan:2``): another surrogate for every spike (token
    ``sg:atan:2``). ``bptr``: backward through the firing rate. Anything else is an error,
    never a silent fallback.
    """
    from snnbench.errors import SnnbenchError

    text = str(mode).strip().lower().removeprefix("sg:")
    if text in ("own", "bptt"):
        return "bptt", None
    if text == "bptr":
        return "bptr", None
    shape, sep, width = text.partition(":")
    if not sep:
        raise SnnbenchError(
            f"gradient mode {mode!r} is not available; use 'own', 'bptr' or "
            f"SHAPE:WIDTH with a shape of {', '.join(SURROGATES.names())}"
        )
    try:
        surrogate = Surrogate(shape, float(width))
    except ValueError:
        raise SnnbenchError(f"cannot read surrogate width in {mode!r}; write e.g. atan:2") from None
    return f"sg:{surrogate.kind}:{surrogate.width:g}", surrogate


def grad_mode(model: nn.Module, mode: str = "own") -> nn.Module:
    """Choose the attacker's backward pass (docs/protocol.md), leaving the forward as is.

    SpikingJelly's and snntorch's neurons follow too (``snnbench.neurons.foreign``); a mode
    other than ``own`` refuses a model with a neuron it cannot reach, or with none at all.
    """
    token, override = parse_grad_mode(mode)
    set_foreign_grad_mode(model, token, override)  # first: a refusal leaves ours untouched
    for neuron in spiking_neurons(model):
        neuron.attack_surrogate = override
        neuron.rate_backward = token == "bptr"
    return model
