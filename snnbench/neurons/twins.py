"""Deterministic twins of a spiking model, the sources of transfer attacks (docs/protocol.md).

A defence whose randomness or spike nonlinearity hides the gradient is still vulnerable to
adversarial examples crafted on a smooth or noise-free model with the same weights:

- ``mean_twin``: the same SNN with its randomness at the mean: Noisy-LIF without noise,
  RandHet's decays at ``sigmoid(0) = 0.5`` (the mean of ``sigmoid(sigma * eps)``, eps
  symmetric), StoG gates replaced by their keep probability ``p`` (``E[s * m] = s * p``).
- ``ann_twin``: every spiking neuron replaced by a ReLU of its input current (SNN-RAT's
  activation attack), gates at their mean; the input is still repeated over T steps, so the
  time-averaged readout is that of the ANN.

Both are deep copies in eval mode: the target model is never touched. SpikingJelly's and
snntorch's neurons are reached too (``snnbench.neurons.foreign``: ReLU in the ANN twin; they
draw no random numbers, so the mean twin keeps them); a neuron snnbench does not know, or a
model with no neuron it knows, makes both twins refuse.
"""

from __future__ import annotations

from torch import nn

from snnbench.neurons.foreign import check_reachable, copy_model, prepare_twin, replace_with_relu
from snnbench.neurons.lif import LIF
from snnbench.neurons.noisy import NoisyLIF
from snnbench.neurons.randhet import RandHetLIF
from snnbench.neurons.stog import StoGGate


class ReLUNeuron(nn.Module):
    """The ANN twin's activation: ``relu(I)`` for the input current, step by step."""

    ann_twin_activation = True  # a neuron the attacker's gradient modes reach (no spike)

    def forward(self, x):  # noqa: ANN001 - a tensor in, a tensor out
        return x.relu()


def _mean_field(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, NoisyLIF):
            module.noise_var, module.noise_std = 0.0, 0.0
        elif isinstance(module, RandHetLIF):
            module.sigma = 0.0
        elif isinstance(module, StoGGate):
            module.mean_field = True
    if hasattr(model, "stochastic"):
        model.stochastic = False


def mean_twin(model: nn.Module) -> nn.Module:
    """A noise-free copy of ``model``: every random quantity at its mean."""
    twin = copy_model(model).eval()
    prepare_twin(twin, "mean-twin")
    _mean_field(twin)
    return twin


def ann_twin(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with ReLU in place of every spiking neuron (gates at their mean)."""
    twin = copy_model(model).eval()
    check_reachable(twin, "ann-twin")
    _mean_field(twin)
    replace_with_relu(twin)
    for parent in list(twin.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, LIF):
                setattr(parent, name, ReLUNeuron())
    return twin


TWINS = {"ann-twin": ann_twin, "mean-twin": mean_twin}
