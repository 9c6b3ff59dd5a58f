"""From a defence name, an architecture and a data set to a ready ``SpikingModel``.

``resolve`` turns a ``ModelConfig`` (what a user typed) into a ``ModelSpec`` (every setting
spelt out), which is what a model card stores; ``build`` makes the module from a spec, so a
checkpoint rebuilds exactly the model that was trained.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping

from snnbench.archs import ARCHS, SpikingModel
from snnbench.config import (
    TRACK_TIMESTEPS,
    ModelConfig,
    coerce,
    neuron_config_from,
    neuron_settings,
)
from snnbench.data import dataset_info
from snnbench.defenses import DEFENSES, create_defense, parse_defense, partner_defaults
from snnbench.errors import SnnbenchError
from snnbench.neurons import neuron_factory


@dataclass(frozen=True)
class ModelSpec:
    """A fully resolved model: what ``card.json`` records and ``build`` needs."""

    defense: str
    arch: str
    dataset: str
    timesteps: int
    track: str
    settings: dict[str, Any]
    # {"mean": [...], "std": [...]} per channel; None: the data set's (cards without the key)
    input_norm: dict[str, list[float]] | None = None

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if data["input_norm"] is None:  # cards of models on their data set's statistics
            del data["input_norm"]  # stay as they were
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ModelSpec":
        return cls(
            **{
                f.name: data[f.name]
                for f in dataclasses.fields(cls)
                if f.name in data or f.default is dataclasses.MISSING
            }
        )


def default_settings(defense: str, track: str) -> dict[str, Any]:
    """Every setting of ``defense`` on ``track`` as dotted keys with defaults."""
    settings = neuron_settings(track)
    members = parse_defense(defense)
    for member in members:
        settings.update(DEFENSES.get(member).default_settings(track))
    settings.update({k: v for k, v in partner_defaults(members).items() if k in settings})
    return settings


def apply_overrides(settings: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Overrides by dotted key, or by a bare key naming exactly one setting (``decay``)."""
    result = dict(settings)
    for key, value in overrides.items():
        if key in result:
            full = key
        else:
            matches = [k for k in result if k.rsplit(".", 1)[-1] == key]
            if len(matches) != 1:
                what = "ambiguous" if matches else "unknown"
                raise SnnbenchError(
                    f"{what} setting {key!r}; valid keys: {', '.join(sorted(result))}"
                )
            full = matches[0]
        result[full] = coerce(full, value, result[full])
    return result


def resolve(config: ModelConfig) -> ModelSpec:
    """Check every name and setting of ``config`` and spell out the defaults."""
    defense = "+".join(parse_defense(config.defense))
    arch = ARCHS.canonical(config.arch)
    info = dataset_info(config.dataset)
    settings = apply_overrides(default_settings(defense, config.track), config.settings)
    timesteps = config.timesteps or info.frames or TRACK_TIMESTEPS[config.track]
    if info.frames and timesteps != info.frames:
        raise SnnbenchError(
            f"{info.name} has {info.frames} frames per sample, so its models run "
            f"T = {info.frames} time steps, not {timesteps}; drop --timesteps or "
            f"pass {info.frames}"
        )
    return ModelSpec(defense, arch, info.name, timesteps, config.track, settings)


def input_norm(spec: ModelSpec) -> tuple[list[float], list[float]]:
    """The model's input (mean, std) per channel: the card's, else its data set's."""
    info = dataset_info(spec.dataset)
    if spec.input_norm is None:
        return list(info.mean), list(info.std)
    mean, std = list(spec.input_norm["mean"]), list(spec.input_norm["std"])
    check_input_norm(mean, std, info.channels)
    return mean, std


def check_input_norm(mean: list[float], std: list[float], channels: int) -> None:
    """One value per channel, finite, std positive."""
    for label, values in (("mean", mean), ("std", std)):
        if len(values) != channels or not all(math.isfinite(v) for v in values):
            raise SnnbenchError(
                f"input normalisation {label} {values} must hold {channels} "
                f"finite numbers (one per channel); pass --{label} with "
                f"{channels} comma-separated values"
            )
    if not all(v > 0 for v in std):
        raise SnnbenchError(
            f"input normalisation std {std} must be positive; pass --std with positive values"
        )


def build(spec: ModelSpec) -> SpikingModel:
    """A freshly initialised model for ``spec``."""
    info = dataset_info(spec.dataset)
    defense = create_defense(spec.defense, spec.settings, spec.track)
    neuron = neuron_config_from(spec.settings)
    factory = defense.neuron_factory(neuron, spec.timesteps) or neuron_factory(
        neuron, spec.timesteps
    )
    body = ARCHS.get(spec.arch)(
        defense.wrap_neuron(factory, spec.timesteps),
        in_channels=info.channels,
        num_classes=info.num_classes,
        image_size=info.image_size,
    )
    mean, std = input_norm(spec)
    return SpikingModel(
        body,
        spec.timesteps,
        mean,
        std,
        stochastic=defense.stochastic(),
        events=info.frames > 0,
        channels_last_on=ARCHS.entry(spec.arch).extra.get("channels_last", ()),
    )


def create_model(
    defense: str = "vanilla",
    *,
    arch: str = "tiny",
    dataset: str = "digits",
    timesteps: int | None = None,
    track: str = "tgo",
    settings: Mapping[str, Any] | None = None,
    **overrides: Any,
) -> SpikingModel:
    """A new, untrained model: ``create_model("vanilla", arch="tiny", dataset="digits", decay=0.5)``.

    ``settings`` takes dotted keys (``{"neuron.decay": 0.5}``); keyword overrides take bare
    keys that name exactly one setting.
    """
    merged = {**(settings or {}), **overrides}
    spec = resolve(ModelConfig(defense, arch, dataset, timesteps, track, merged))
    return build(spec)
