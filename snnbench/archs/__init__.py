"""Architectures: ``tiny``, ``vgg11``, ``wrn16``, ``sew-resnet19`` (docs/defenses.md)."""

from __future__ import annotations

from snnbench.archs import resnet as _resnet  # noqa: F401  (registers)
from snnbench.archs import tiny as _tiny  # noqa: F401  (registers)
from snnbench.archs import vgg as _vgg  # noqa: F401  (registers)
from snnbench.archs import wrn as _wrn  # noqa: F401  (registers)
from snnbench.archs.base import Normalize, SpikingModel, init_weights
from snnbench.archs.registry import ARCHS, ArchBuilder

__all__ = ["ARCHS", "ArchBuilder", "Normalize", "SpikingModel", "init_weights"]
