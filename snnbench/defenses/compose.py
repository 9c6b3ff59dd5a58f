"""Composition ``a+b`` (docs/defenses.md): which members combine, and how.

Slots: at most one neuron member (tgo, het, randhet, randhet*, dlif), at most one gate (stog),
at most one generator (at, rat); loss terms and hooks add up. Members are put in canonical
order (neuron, gate, generator, losses): ``rat+tgo`` is ``tgo+rat``. Loss:
``L = L_task + sum of the members' extra terms`` with ``L_task`` = CE or DLIF's mix. Step order:
generator -> forward -> backward -> main step -> own optimisers (StoG) -> hooks (RAT).
Weight decay is 0 whenever a member (rat) says so.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from snnbench.config import NeuronConfig
from snnbench.defenses.base import Defense, LossContext
from snnbench.defenses.registry import DEFENSES
from snnbench.errors import SnnbenchError
from snnbench.neurons import NeuronFactory

SLOT_ORDER = {"neuron": 0, "gate": 1, "generator": 2, "loss": 3, "none": 4}


def parse_defense(expr: str) -> list[str]:
    """Canonical, ordered member names of ``expr`` (``"rat+TGO"`` -> ``["tgo", "rat"]``)."""
    parts = [p.strip().lower() for p in str(expr).split("+")]
    if not str(expr).strip() or any(not p for p in parts):
        raise SnnbenchError(
            f"cannot read defence {expr!r}; write a name such as 'vanilla' or "
            "a combination such as 'tgo+rat'; see `snnbench list defenses`"
        )
    names = [DEFENSES.canonical(p) for p in parts]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise SnnbenchError(f"defence {expr!r} names {repeated[0]!r} twice; name each member once")
    if len(names) > 1 and "vanilla" in names:
        raise SnnbenchError(
            f"'vanilla' means no defence and combines with nothing; drop it from {expr!r}"
        )
    _check_slots(names)
    return sorted(names, key=lambda n: (SLOT_ORDER[DEFENSES.get(n).slot], names.index(n)))


def _check_slots(names: list[str]) -> None:
    for slot, why in (
        ("neuron", "both replace the neuron model"),
        ("gate", "both gate the spikes"),
        ("generator", "both generate adversarial training inputs"),
    ):
        members = [n for n in names if DEFENSES.get(n).slot == slot]
        if len(members) > 1:
            extra = "; rat already trains on FGSM examples" if set(members) == {"at", "rat"} else ""
            raise SnnbenchError(f"cannot combine {members[0]!r} and {members[1]!r}: {why}{extra}")


class Composite(Defense):
    """Several members acting as one defence through the same hooks."""

    def __init__(self, members: list[Defense]) -> None:
        self.members = members
        self.name = "+".join(m.name for m in members)
        self.track = members[0].track

    def _of(self, slot: str) -> Defense | None:
        return next((m for m in self.members if m.slot == slot), None)

    def neuron_factory(self, config: NeuronConfig, timesteps: int) -> NeuronFactory | None:
        neuron = self._of("neuron")
        factory = neuron.neuron_factory(config, timesteps) if neuron else None
        return factory

    def wrap_neuron(self, factory: NeuronFactory, timesteps: int) -> NeuronFactory:
        for member in self.members:
            factory = member.wrap_neuron(factory, timesteps)
        return factory

    def stochastic(self) -> bool:
        return any(m.stochastic() for m in self.members)

    def setup(self, model: nn.Module) -> None:
        for member in self.members:
            member.setup(model)

    def weight_decay(self, track_default: float) -> float:
        return min(m.weight_decay(track_default) for m in self.members)

    def separate_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        return [p for m in self.members for p in m.separate_parameters(model)]

    def no_decay_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        return [p for m in self.members for p in m.no_decay_parameters(model)]

    def own_optimizers(self, model: nn.Module) -> list[tuple[Defense, torch.optim.Optimizer]]:
        pairs = [(m, m.make_optimizer(model)) for m in self.members]
        return [(m, opt) for m, opt in pairs if opt is not None]

    def training_inputs(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        generator = self._of("generator")
        return generator.training_inputs(model, x, y) if generator else x

    def task_loss(self, ctx: LossContext) -> torch.Tensor | None:
        for member in self.members:
            loss = member.task_loss(ctx)
            if loss is not None:
                return loss
        return None

    def extra_loss(self, ctx: LossContext) -> torch.Tensor | None:
        terms = [t for t in (m.extra_loss(ctx) for m in self.members) if t is not None]
        return torch.stack([t.float() for t in terms]).sum() if terms else None

    def after_step(self, model: nn.Module, epoch: int) -> None:
        for member in self.members:
            member.after_step(model, epoch)


def partner_defaults(names: list[str]) -> dict[str, Any]:
    """The defaults members set for each other's keys (``stog`` makes ``at``/``rat`` craft
    with BatchNorm in train mode, as its reference code does)."""
    return {key: value for n in names for key, value in DEFENSES.get(n).partner_defaults.items()}


def create_defense(
    expr: str, settings: Mapping[str, Any] | None = None, track: str = "tgo"
) -> Composite:
    """The (possibly single-member) defence of ``expr`` with its settings."""
    names = parse_defense(expr)
    merged = {**partner_defaults(names), **(settings or {})}
    return Composite([DEFENSES.get(n)(merged, track) for n in names])
