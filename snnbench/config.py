"""Settings as frozen dataclasses, and the parsers for what users type ("8/255", "key=value").

Every default lives in exactly one dataclass here (or in the defence that owns it); CLI options
default to None so that an unset flag never overrides a recipe or a default.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Mapping

from snnbench.errors import SnnbenchError
from snnbench.files import check_name


# --------------------------------------------------------------------------------------- parsers


def parse_eps(text: str | float | int) -> float:
    """An attack budget in [0, 1] pixel units: ``"8/255"``, ``"0.031"`` or a number."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        raw = str(text).strip()
        try:
            value = float(Fraction(raw)) if "/" in raw else float(raw)
        except (ValueError, ZeroDivisionError, OverflowError):
            raise SnnbenchError(
                f"cannot read eps {text!r}; write a fraction such as 8/255 "
                "or a number such as 0.031"
            ) from None
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise SnnbenchError(
            f"eps {text!r} is outside [0, 1]; eps is in pixel units of [0,1] images, e.g. 8/255"
        )
    return value


def check_count(value: Any, option: str, minimum: int = 1) -> Any:
    """``value`` when it is None or an integer of at least ``minimum``; else one error line
    naming the option (``--steps``) and its range. Counts reach the library from the CLI,
    Python and recipes, so each entry point checks them here, before anything is written."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise SnnbenchError(f"{option} must be at least {minimum} (an integer), got {value!r}")
    return value


def format_eps(eps: float) -> str:
    """``8/255`` when eps is a whole number of grey levels, else the decimal value."""
    levels = eps * 255
    if abs(levels - round(levels)) < 1e-6:
        return f"{round(levels)}/255"
    return f"{eps:.6g}"


def parse_assignment(text: str) -> tuple[str, str]:
    """``"key=value"`` from ``--set``; the value is typed later against the setting's default."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise SnnbenchError(
            f"cannot read --set {text!r}; write KEY=VALUE, e.g. --set neuron.decay=0.5"
        )
    return key.strip(), value.strip()


def coerce(key: str, value: Any, default: Any) -> Any:
    """``value`` converted to the type of ``default``; a mismatch is one clear error."""
    kind = type(default)
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            text = str(value).lower()
            if text in ("true", "1", "yes", "on"):
                return True
            if text in ("false", "0", "no", "off"):
                return False
            raise ValueError
        if kind is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if kind is float:
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, str) and "/" in value:
                return float(Fraction(value))
            return float(value)
        if kind is str:
            if not isinstance(value, str):
                raise ValueError
            return value
    except (ValueError, TypeError, ZeroDivisionError, OverflowError):
        pass
    else:
        return value
    raise SnnbenchError(
        f"setting {key!r} must be of type {kind.__name__} (default {default!r}), got {value!r}"
    )


# --------------------------------------------------------------------------------------- neurons


@dataclass(frozen=True)
class NeuronConfig:
    """One spiking layer's neuron (docs/defenses.md); the keys of ``neuron.*``/``surrogate.*``."""

    kind: str = "lif"
    form: str = "tet"  # "tet": u = k v + I ; "convex": u = k v + (1-k) I
    decay: float = 0.5  # k
    theta: float = 1.0  # threshold
    spike_ge: bool = True  # H(0) = 1 (tet) or 0 (BrainCog)
    detach_reset: bool = False  # BrainCog detaches the spike in the reset
    surrogate: str = "triangle"
    surrogate_width: float = 1.0

    def __post_init__(self) -> None:
        if self.form not in ("tet", "convex"):
            raise SnnbenchError(f"neuron.form must be 'tet' or 'convex', got {self.form!r}")
        if not 0.0 <= self.decay <= 1.0:
            raise SnnbenchError(f"neuron.decay must lie in [0, 1], got {self.decay}")
        if not self.theta > 0:
            raise SnnbenchError(f"neuron.theta must be positive, got {self.theta}")


# Presets of docs/defenses.md "pku" is the IF neuron of SNN-RAT, SR and StoG.
TRACKS: dict[str, NeuronConfig] = {
    "tgo": NeuronConfig(),
    "pku": NeuronConfig(decay=1.0),
    "randhet": NeuronConfig(
        form="convex",
        decay=0.5,
        theta=0.5,
        spike_ge=False,
        detach_reset=True,
        surrogate="atan",
        surrogate_width=2.0,
    ),
}
# Weight decay of the vanilla recipe per track (docs/defenses.md).
TRACK_WEIGHT_DECAY = {"tgo": 5e-4, "pku": 5e-4, "randhet": 1e-4}
TRACK_TIMESTEPS = {"tgo": 4, "pku": 8, "randhet": 8}

NEURON_KEYS = {
    "neuron.form": "form",
    "neuron.decay": "decay",
    "neuron.theta": "theta",
    "neuron.spike_ge": "spike_ge",
    "neuron.detach_reset": "detach_reset",
    "surrogate.kind": "surrogate",
    "surrogate.width": "surrogate_width",
}


def track_config(track: str) -> NeuronConfig:
    if track not in TRACKS:
        raise SnnbenchError(f"unknown track {track!r}; choose one of {', '.join(TRACKS)}")
    return TRACKS[track]


def neuron_settings(track: str) -> dict[str, Any]:
    """The track's neuron preset as dotted settings (``neuron.decay`` ...)."""
    base = track_config(track)
    return {key: getattr(base, attr) for key, attr in NEURON_KEYS.items()}


def neuron_config_from(settings: Mapping[str, Any], kind: str = "lif") -> NeuronConfig:
    return NeuronConfig(kind=kind, **{attr: settings[key] for key, attr in NEURON_KEYS.items()})


# --------------------------------------------------------------------------------------- training


@dataclass(frozen=True)
class TrainConfig:
    """The training loop's settings (docs/defenses.md: SGD, momentum 0.9, lr 0.1, cosine)."""

    epochs: int = 30
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float | None = None  # None: the defence's / track's default
    augment: bool | None = None  # None: crop + flip on 32 px data, none on digits
    seed: int = 0
    amp: bool = True  # used on CUDA only

    def __post_init__(self) -> None:
        check_count(self.epochs, "--epochs")
        check_count(self.batch_size, "--batch-size")
        check_count(self.seed, "--seed", 0)
        if not self.lr > 0:
            raise SnnbenchError(f"learning rate must be positive, got {self.lr}")

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


def dataclass_from(cls: type, values: Mapping[str, Any], where: str) -> Any:
    """Build ``cls`` from a mapping, refusing unknown keys and wrong types with one line."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise SnnbenchError(
            f"unknown key {unknown[0]!r} in {where}; valid keys: {', '.join(fields)}"
        )
    defaults = cls()
    typed = {}
    for key, value in values.items():
        default = getattr(defaults, key)
        if default is None:  # an optional field: type-check against its annotation
            if value is None:
                typed[key] = None
                continue
            default = _PROTOTYPES.get(str(fields[key].type).split("|")[0].strip())
        typed[key] = value if default is None else coerce(key, value, default)
    return cls(**typed)


_PROTOTYPES: dict[str, Any] = {"float": 0.0, "int": 0, "bool": False, "str": ""}


# --------------------------------------------------------------------------------------- models


def model_name(defense: str, arch: str, dataset: str) -> str:
    """Default model name ``<defence>-<arch>-<dataset>``, ``randhet*`` spelt ``randhet-star``."""
    return f"{defense.replace('*', '-star')}-{arch}-{dataset}"


@dataclass(frozen=True)
class ModelConfig:
    """What to build: defence, architecture, data, time steps, neuron track and settings."""

    defense: str = "vanilla"
    arch: str = "tiny"
    dataset: str = "digits"
    timesteps: int | None = None  # None: the track's T
    track: str = "tgo"
    settings: dict[str, Any] = field(default_factory=dict)  # dotted overrides
    name: str | None = None

    def __post_init__(self) -> None:
        check_count(self.timesteps, "--timesteps")
        if self.name is not None:
            check_name(self.name, "model name (--name)")
        track_config(self.track)
