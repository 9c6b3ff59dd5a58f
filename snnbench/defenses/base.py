"""The Defense protocol: the hooks through which a defence changes training, and nothing more.

A defence never edits the training loop (docs/guide.md). Per docs/defenses.md a defence fills
some of these slots: a neuron (or a gate after every neuron), training inputs (a generator such
as AT's PGD or RAT's FGSM), loss terms (which may read membrane potentials or input currents),
a hook after each optimiser step (RAT's retraction), and optimiser settings. Each defence owns a
frozen settings dataclass whose fields become dotted keys ``<prefix>.<field>``
(``tgo.lambda_max``); ``defaults(track)`` may differ per neuron track.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import torch
from torch import nn

from snnbench.config import NeuronConfig
from snnbench.neurons import NeuronFactory


@dataclass(frozen=True)
class NoSettings:
    """Settings of a defence that has none."""


@dataclass
class LossContext:
    """What a loss term may read: the clean batch, the training inputs and the forward on them.

    The spiking neurons hold the potentials / currents of that forward when the defence asked
    for them in ``setup``.
    """

    model: nn.Module
    x: torch.Tensor  # the clean batch
    x_in: torch.Tensor  # what the model trained on (clean, or a generator's output)
    y: torch.Tensor
    logits: torch.Tensor  # model(x_in)
    epoch: int  # 0-based
    epochs: int


class Defense:
    """Base class: every hook defaults to "no change"; a defence overrides what it needs."""

    name: ClassVar[str] = ""
    prefix: ClassVar[str] = ""  # dotted-key scope of its settings
    settings_cls: ClassVar[type] = NoSettings
    slot: ClassVar[str] = "none"  # neuron | gate | generator | loss | none
    # Defaults this member sets for its partners' keys when they are present (StoG's reference
    # crafts its training examples with BatchNorm in train mode): {dotted key: value}.
    partner_defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, settings: Mapping[str, Any] | None = None, track: str = "tgo") -> None:
        base = self.defaults(track)
        keys = self.setting_keys()
        values = {name: settings[key] for name, key in keys.items() if settings and key in settings}
        self.track = track
        self.settings = dataclasses.replace(base, **values)

    @classmethod
    def setting_keys(cls) -> dict[str, str]:
        """Field name -> dotted key: ``<prefix>.<field>``, or ``<scope>.<field>`` where a field's
        metadata names the part it belongs to (TGO's ``nlif.noise_var``)."""
        return {
            f.name: f"{f.metadata.get('scope', cls.prefix)}.{f.name}"
            for f in dataclasses.fields(cls.settings_cls)
        }

    @classmethod
    def defaults(cls, track: str) -> Any:
        """The settings' defaults on ``track`` (override where a track's paper differs)."""
        return cls.settings_cls()

    @classmethod
    def default_settings(cls, track: str = "tgo") -> dict[str, Any]:
        """The defence's settings as dotted keys with their defaults."""
        defaults = cls.defaults(track)
        return {key: getattr(defaults, name) for name, key in cls.setting_keys().items()}

    # ---- the model
    def neuron_factory(self, config: NeuronConfig, timesteps: int) -> NeuronFactory | None:
        """Neuron-slot defences return the factory of their neuron; others None (track LIF)."""
        return None

    def wrap_neuron(self, factory: NeuronFactory, timesteps: int) -> NeuronFactory:
        """Gate-slot defences wrap every neuron (StoG); others return ``factory``."""
        return factory

    def stochastic(self) -> bool:
        """Whether the model draws random numbers at test time (the attack layer uses EoT)."""
        return False

    # ---- training
    def setup(self, model: nn.Module) -> None:
        """Once before training: ask neurons to record what ``loss`` reads."""

    def weight_decay(self, track_default: float) -> float:
        return track_default

    def separate_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        """Parameters this defence optimises itself (excluded from the main SGD)."""
        return []

    def no_decay_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        """Parameters the main SGD trains without weight decay."""
        return []

    def make_optimizer(self, model: nn.Module) -> torch.optim.Optimizer | None:
        """An optimiser for ``separate_parameters`` (StoG's rho), or None."""
        return None

    def step_optimizer(self, optimizer: torch.optim.Optimizer, epoch: int, epochs: int) -> None:
        """Step this defence's own optimiser after the main step."""

    def training_inputs(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The batch the model trains on; clean by default."""
        return x

    def task_loss(self, ctx: LossContext) -> torch.Tensor | None:
        """A replacement for cross-entropy on ``ctx.logits`` (DLIF's mix), or None."""
        return None

    def extra_loss(self, ctx: LossContext) -> torch.Tensor | None:
        """A term added to the task loss, weights included, or None."""
        return None

    def after_step(self, model: nn.Module, epoch: int) -> None:
        """Called after every optimiser step (RAT's retraction)."""
