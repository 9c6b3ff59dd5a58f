"""The Defense protocol: the hooks through which a defence changes training, and nothing more.

A defence never edits the training loop (design.md). It may choose the neuron, make the
training inputs (AT's PGD, RAT's FGSM), add loss terms (which may read membrane potentials),
and act after each optimiser step (RAT's orthogonality update). Each defence owns a frozen
settings dataclass whose fields become dotted keys ``<prefix>.<field>`` (``tgo.lambda_max``).
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Mapping

import torch
from torch import nn


@dataclasses.dataclass(frozen=True)
class NoSettings:
    """Settings of a defence that has none."""


class Defense:
    """Base class: every hook defaults to "no change"; a defence overrides what it needs."""

    name: ClassVar[str] = ""
    prefix: ClassVar[str] = ""                      # dotted-key scope of its settings
    settings_cls: ClassVar[type] = NoSettings
    neuron_kind: ClassVar[str | None] = None        # None: the track's LIF
    needs_potentials: ClassVar[bool] = False        # record u_t for ``loss`` (costs memory)

    def __init__(self, settings: Mapping[str, Any] | None = None) -> None:
        values = {f.name: settings[f"{self.prefix}.{f.name}"]
                  for f in dataclasses.fields(self.settings_cls)
                  if settings and f"{self.prefix}.{f.name}" in settings}
        self.settings = self.settings_cls(**values)

    @classmethod
    def default_settings(cls) -> dict[str, Any]:
        """The defence's settings as dotted keys with their defaults."""
        defaults = cls.settings_cls()
        return {f"{cls.prefix}.{f.name}": getattr(defaults, f.name)
                for f in dataclasses.fields(cls.settings_cls)}

    def stochastic(self) -> bool:
        """Whether the model draws random numbers at test time (the attack layer uses EoT)."""
        return False

    def weight_decay(self, track_default: float) -> float:
        return track_default

    def training_inputs(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The batch the model trains on; clean by default."""
        return x

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor,
             epoch: int, epochs: int) -> torch.Tensor | None:
        """An extra loss term added to cross-entropy, or None."""
        return None

    def after_step(self, model: nn.Module, epoch: int) -> None:
        """Called after every optimiser step."""
