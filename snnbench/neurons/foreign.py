"""SpikingJelly and snntorch neurons in the attacker's gradient modes and the twins.

A model brought as an ``nn.Module`` may spike through another library's neurons. snnbench
reaches them without importing that library (classes are recognised by their import path):

- SpikingJelly (``spikingjelly.activation_based.neuron``): ``IFNode``, ``LIFNode``,
  ``ParametricLIFNode``, ``SimpleIFNode``, ``SimpleLIFNode``, ``QIFNode``, ``EIFNode``,
  ``IzhikevichNode``, in either step mode; they fire ``surrogate_function(v - v_threshold)``
  with ``H(0) = 1``.
- snntorch (``snntorch``): ``Leaky``; it fires ``spike_grad(mem - threshold)`` with ``H(0) = 0``.

What each mode does to them (docs/guide.md, "Foreign neurons"):

- ``SHAPE:WIDTH``: the neuron's spike function is swapped for the Heaviside step its library
  computes (same forward, checked on probe points) with snnbench's surrogate backward.
- ``bptr``: the neuron's spikes pass the gradient straight to its input current where the
  neuron fired at any step of the forward pass, as snnbench's LIF does (SNN-RAT's ``RateBp``).
  A single-step neuron is called once per step, so its firing is gathered over every call of
  one forward of the attacked model (a forward pre-hook marks where a pass starts).
- ann twin: each neuron becomes ``relu`` of its input current, called as the neuron was.
- mean twin: these neurons draw no random numbers, so noise off leaves them as they are.

Anything else that looks like a neuron (a library neuron outside these lists, a subclass, a
module with ``v_threshold``/``spike_grad``/... or a neuron-like class name) makes these modes
refuse with one line, and so does a model with no neuron snnbench can reach: the mode would
otherwise run the plain attack under its own label. ``grad_mode(model, "own")`` undoes all of it.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any, Iterator

import torch
from torch import nn

from snnbench.errors import SnnbenchError
from snnbench.neurons.lif import LIF
from snnbench.neurons.surrogate import Surrogate, spike

SJ_PATH = "spikingjelly.activation_based.neuron"
SJ_NEURONS = (
    "IFNode",
    "LIFNode",
    "ParametricLIFNode",
    "SimpleIFNode",
    "SimpleLIFNode",
    "QIFNode",
    "EIFNode",
    "IzhikevichNode",
)
SNNTORCH_PATH = "snntorch"
SNNTORCH_NEURONS = ("Leaky",)
SUPPORTED = (
    f"snnbench's neurons, SpikingJelly {SJ_PATH}.{{{', '.join(SJ_NEURONS)}}}, "
    f"snntorch.{{{', '.join(SNNTORCH_NEURONS)}}}"
)
# Signs of a spiking neuron snnbench does not know: where a library keeps its neurons, the
# attributes they carry, their usual class names.
NEURON_PATHS = (SJ_PATH, "snntorch._neurons", "norse.torch.module", "braincog.base.node")
NEURON_ATTRS = ("surrogate_function", "spike_grad", "spike_fn", "surrogate_grad_fn", "v_threshold")
NEURON_NAME = re.compile(r"LIF|IFNode|IFCell|IAF|Neuron|Leaky|Izhikevich|Spik")
PROBE = (-1.0, -1e-3, 0.0, 1e-3, 1.0)  # the Heaviside step's forward is checked here
SAVED = "_snnbench_spike"  # the neuron's own spike function while swapped
PASS = "_snnbench_pass"  # BPTR: the firing gathered in this forward


@dataclass(frozen=True)
class Kind:
    """How a foreign neuron fires: the attribute holding its spike function and ``H(0)``."""

    library: str
    spike_attr: str
    ge: bool


SPIKINGJELLY = Kind("spikingjelly", "surrogate_function", ge=True)
SNNTORCH = Kind("snntorch", "spike_grad", ge=False)


def foreign_kind(module: nn.Module) -> Kind | None:
    """The kind of a recognised foreign neuron; None for anything else, subclasses included
    (a subclass may fire differently)."""
    cls = type(module)
    path = cls.__module__
    if path.startswith(SJ_PATH) and cls.__name__ in SJ_NEURONS:
        return SPIKINGJELLY
    if path.startswith(SNNTORCH_PATH + ".") and cls.__name__ in SNNTORCH_NEURONS:
        return SNNTORCH
    return None


def foreign_neurons(model: nn.Module) -> list[tuple[nn.Module, Kind]]:
    """The recognised foreign neurons of ``model`` with their kinds, in module order."""
    return [(m, kind) for m in model.modules() if (kind := foreign_kind(m)) is not None]


def _reachable(module: nn.Module) -> bool:
    return (
        isinstance(module, LIF)
        or foreign_kind(module) is not None
        or getattr(module, "ann_twin_activation", False)
    )


def _looks_like_neuron(module: nn.Module) -> bool:
    cls = type(module)
    if cls.__module__.startswith(("snnbench.", "torch.")) or _reachable(module):
        return False
    if any(_reachable(m) for m in module.modules()):
        return False  # a container of neurons snnbench reaches
    if cls.__module__.startswith(NEURON_PATHS) or any(hasattr(module, a) for a in NEURON_ATTRS):
        return True
    leaf = not any(any(True for _ in child.parameters()) for child in module.children())
    return leaf and bool(NEURON_NAME.search(cls.__name__))


def unknown_neurons(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every module that looks like a spiking neuron snnbench cannot reach."""
    return [(name or "<model>", m) for name, m in model.named_modules() if _looks_like_neuron(m)]


def check_reachable(model: nn.Module, what: str) -> None:
    """Refuse ``what`` (a gradient mode, a twin) on a model whose neurons it cannot reach."""
    unknown = unknown_neurons(model)
    if unknown:
        name, module = unknown[0]
        cls = type(module)
        raise SnnbenchError(
            f"{what} cannot reach neuron type {cls.__module__}.{cls.__qualname__} "
            f"({name}); supported: {SUPPORTED}; run the plain attack (surrogate "
            "own) or use a supported neuron"
        )
    if not any(_reachable(m) for m in model.modules()):
        raise SnnbenchError(
            f"{what} found no spiking neuron it can reach in "
            f"{type(model).__qualname__}, so it would run the plain attack under "
            f"its own label; supported: {SUPPORTED}"
        )
    for module, kind in foreign_neurons(model):
        own = module.__dict__.get(SAVED)
        _check_heaviside(
            getattr(module, kind.spike_attr) if own is None else own, kind, module, what
        )


def _check_heaviside(fn: Any, kind: Kind, module: nn.Module, what: str) -> None:
    """The swap keeps the forward only if the neuron's own spike is that Heaviside step."""
    probe = torch.tensor(PROBE)
    with torch.no_grad():
        out = fn(probe)
    expected = (probe >= 0) if kind.ge else (probe > 0)
    if not (isinstance(out, torch.Tensor) and torch.equal(out, expected.to(out.dtype))):
        raise SnnbenchError(
            f"{what} cannot reach {type(module).__qualname__}: its spike function "
            f"{type(fn).__name__} is not the Heaviside step {kind.library} fires "
            "with (SpikingJelly: spiking=False?); give it a spiking surrogate"
        )


class ForeignSpike(nn.Module):
    """The Heaviside step a foreign neuron fires with, with snnbench's surrogate backward."""

    def __init__(self, surrogate: Surrogate, ge: bool) -> None:
        super().__init__()
        self.surrogate, self.ge = surrogate, ge

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return spike(x, self.surrogate, self.ge)


def _put(module: nn.Module, name: str, value: Any) -> None:
    """Set a spike function: a child module in SpikingJelly, a plain attribute in snntorch."""
    if name in module._modules:
        module._modules[name] = value
    else:
        module.__dict__[name] = value


def swap_spike(module: nn.Module, kind: Kind, surrogate: Surrogate) -> None:
    """Fire through ``surrogate``'s backward, keeping the neuron's own function to restore."""
    if SAVED not in module.__dict__:  # a twin copies a swapped neuron: keep the original
        module.__dict__[SAVED] = getattr(module, kind.spike_attr)
    _put(module, kind.spike_attr, ForeignSpike(surrogate, kind.ge))


def restore_spike(module: nn.Module, kind: Kind) -> None:
    if SAVED in module.__dict__:
        _put(module, kind.spike_attr, module.__dict__.pop(SAVED))


class _Firing:
    """Which neurons fired in one forward pass, per input shape (BPTR's mask, filled late)."""

    def __init__(self) -> None:
        self.fired: dict[tuple[int, ...], torch.Tensor] = {}

    def add(self, fired: torch.Tensor) -> tuple[int, ...]:
        key = tuple(fired.shape)
        self.fired[key] = self.fired[key] | fired if key in self.fired else fired
        return key


class _RateGradient(torch.autograd.Function):
    """Zero forward; backward ``grad * 1[fired in the pass]``, read when backward runs, after
    every step of the pass has been seen."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, firing: _Firing, key: tuple[int, ...]) -> torch.Tensor:  # type: ignore[override]
        ctx.firing, ctx.key = firing, key
        return torch.zeros_like(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        return grad * ctx.firing.fired[ctx.key].to(grad.dtype), None, None


def _first_input(args: tuple, kwargs: dict) -> torch.Tensor:
    if args:
        return args[0]
    for name in ("x", "x_seq", "input_", "input"):
        if name in kwargs:
            return kwargs[name]
    raise SnnbenchError(
        "bptr cannot find the input current of a foreign neuron; call it with "
        "the current as its first argument"
    )


def _rate_output(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
    """Forward hook: the neuron's spikes, with the gradient passed straight to its input current
    where it fired (``[T, B, ...]`` in SpikingJelly's multi-step mode: any of the T steps)."""
    x = _first_input(args, kwargs)
    spikes = output[0] if isinstance(output, tuple) else output
    fired = spikes.detach() != 0
    if getattr(module, "step_mode", "s") == "m":
        fired = fired.any(0)
    firing = module.__dict__.setdefault(PASS, _Firing())
    rate = spikes.detach() + _RateGradient.apply(x, firing, firing.add(fired))
    return (rate, *output[1:]) if isinstance(output, tuple) else rate


def _new_pass(model: nn.Module, args: tuple) -> None:
    """Forward pre-hook on the attacked model: a new forward gathers its own firing."""
    for module in model.modules():
        if PASS in module.__dict__:
            module.__dict__[PASS] = _Firing()


def _hook_ids(fn: Any, hooks: dict) -> list[int]:
    return [key for key, hook in hooks.items() if hook is fn]


def _remove_hooks(module: nn.Module) -> None:
    # By identity, not by handle: a twin's deep copy carries the hooks, and a copied handle
    # would remove the original's.
    for key in _hook_ids(_rate_output, module._forward_hooks):
        del module._forward_hooks[key]
        module._forward_hooks_with_kwargs.pop(key, None)
    for key in _hook_ids(_new_pass, module._forward_pre_hooks):
        del module._forward_pre_hooks[key]
    module.__dict__.pop(PASS, None)


def set_rate_backward(model: nn.Module, neurons: list[tuple[nn.Module, Kind]]) -> None:
    if not _hook_ids(_new_pass, model._forward_pre_hooks):
        model.register_forward_pre_hook(_new_pass)
    for module, _ in neurons:
        if not _hook_ids(_rate_output, module._forward_hooks):
            module.register_forward_hook(_rate_output, with_kwargs=True)
        module.__dict__[PASS] = _Firing()


def set_foreign_grad_mode(model: nn.Module, token: str, override: Surrogate | None) -> None:
    """Apply the attacker's gradient mode (``parse_grad_mode``'s token) to the foreign neurons;
    ``bptt`` restores them. Any other mode refuses a model it cannot fully reach."""
    neurons = foreign_neurons(model)
    for module in model.modules():
        _remove_hooks(module)
    for module, kind in neurons:
        restore_spike(module, kind)
    if token == "bptt":
        return
    check_reachable(model, f"gradient mode {token}")
    if token == "bptr":
        set_rate_backward(model, neurons)
        return
    for module, kind in neurons:
        swap_spike(module, kind, override)


class ForeignReLU(nn.Module):
    """The ANN twin's stand-in for a foreign neuron: ``relu`` of its input current, returned
    as the neuron returned its spikes. An snntorch neuron that also returns its membrane gets
    the current itself there (the ANN's pre-activation), so a membrane readout reads logits.
    Other attributes (``init_leaky``, ``reset``, ``step_mode``) come from the replaced neuron."""

    ann_twin_activation = True

    def __init__(self, neuron: nn.Module, kind: Kind) -> None:
        super().__init__()
        self.returns_state = kind is SNNTORCH and (
            getattr(neuron, "output", False) or not getattr(neuron, "init_hidden", False)
        )
        self.__dict__["_replaced"] = neuron

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        current = _first_input(args, kwargs)
        out = current.relu()
        return (out, current) if self.returns_state else out

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            replaced = self.__dict__.get("_replaced")
            if replaced is None:
                raise
            return getattr(replaced, name)


def replace_with_relu(twin: nn.Module) -> None:
    """Every recognised foreign neuron of ``twin`` becomes a ``ForeignReLU`` (in place)."""
    for parent in list(twin.modules()):
        for name, child in list(parent.named_children()):
            kind = foreign_kind(child)
            if kind is not None:
                setattr(parent, name, ForeignReLU(child, kind))


def _reset_copied_snntorch_state(model: nn.Module, args: tuple) -> None:
    for module, kind in foreign_neurons(model):
        if kind is SNNTORCH and getattr(module, "init_hidden", False):
            module.mem = torch.zeros_like(module.mem)


def _state_tensors(module: nn.Module) -> Iterator[torch.Tensor]:
    for value in vars(module).values():
        inner = value.values() if isinstance(value, dict) else (value,)
        yield from (v for v in inner if isinstance(v, torch.Tensor))


def copy_model(model: nn.Module) -> nn.Module:
    """A deep copy of ``model``. A foreign neuron keeps its last state (SpikingJelly until
    ``reset_net``), which may still hold the graph of the last forward: deep copy refuses such a
    tensor, so the copy gets it detached; the target is not touched."""
    memo: dict[int, Any] = {}
    for module in model.modules():
        for tensor in _state_tensors(module):
            if not tensor.is_leaf:
                memo[id(tensor)] = tensor.detach().clone()
    return copy.deepcopy(model, memo)


def prepare_twin(twin: nn.Module, what: str) -> None:
    """Refuse a twin of a model with neurons snnbench cannot reach; keep the copy's state apart.

    snntorch resets ``init_hidden`` state through a class-level list of its neurons that a deep
    copy never joins, so a twin resets its copies' membranes at the start of every forward.
    """
    check_reachable(twin, what)
    if any(kind is SNNTORCH for _, kind in foreign_neurons(twin)):
        twin.register_forward_pre_hook(_reset_copied_snntorch_state)
