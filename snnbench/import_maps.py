"""The papers' key names, as ``snnbench import --from`` presets (docs/guide.md).

A preset says how another code base names the tensors of one of our architectures, which
neuron constants it saves as parameters, and how it normalises its input:

- ``snn-rat`` (putshua/SNN-RAT, also SR, StoG, DLIF): ``vgg11`` (``layer1..5``, ``classifier``)
  and ``wrn16`` (``conv1``, ``blockN.i``, ``convShortcut``, ``convex.comb``); its LIF saves no
  constants; the data set's statistics (SNN-RAT's own).
- ``braincog`` (BrainCog-X/Brain-Cog ``examples/Snn_safety/RandHet-SNN``): ``sew-resnet19``
  (``conv1``/``bn1``, ``layerN.i``, ``fc1``); every node saves ``threshold`` and its AtanGrad
  ``act_fun.alpha``, RHLIF nodes also ``sigma`` and ``w``; the CIFAR-10 statistics for CIFAR-10
  and CIFAR-100 alike, as its data loader does), or the ``normalize.mean``/``normalize.std`` buffers when the
  file holds them.
- ``spikingjelly``: a net built from SpikingJelly's layers in our layer order (the body
  without the ``body.`` prefix), with or without ``layer.SeqToANNContainer`` groups, which only
  renumber the modules: when names do not match, tensors pair in declaration order
  (``importer.pair_in_order``). Nodes save ``v_threshold`` (some neurons) and PLIF's ``w``.

A rename is ``(old, new)`` on dotted prefixes: ``old`` matches the key itself or a key starting
with ``old + "."``; the first matching rule wins, so user ``--map`` rules come first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from snnbench.archs import resnet, vgg, wrn
from snnbench.errors import SnnbenchError

Rename = tuple[str, str]
BODY = "body"


@dataclass(frozen=True)
class NeuronConstant:
    """A neuron constant a foreign file saves per layer: its key ending and our setting."""

    suffix: str  # "threshold", "act_fun.alpha", ...
    setting: str  # the setting it must equal
    expected: Callable[[Mapping[str, Any]], float | None]  # our value; None: not comparable
    from_file: Callable[[float], float] = float  # the file's value in the setting's units
    hint: str = ""  # how to fix a mismatch


@dataclass(frozen=True)
class Preset:
    """How one code base names and normalises our architectures."""

    name: str
    renames: Mapping[str, Callable[[], list[Rename]]]  # arch -> rules; empty: any arch, none
    constants: tuple[NeuronConstant, ...] = ()
    unused: tuple[str, ...] = ()  # key endings the forward never reads
    norm_keys: tuple[str, str] | None = None  # (mean, std) buffers in the file
    cifar_norm: tuple[tuple[float, ...], tuple[float, ...]] | None = None
    order_fallback: bool = False
    summary: str = ""

    def rules(self, arch: str) -> list[Rename]:
        if not self.renames:
            return []
        if arch not in self.renames:
            raise SnnbenchError(
                f"--from {self.name} maps {', '.join(self.renames)}, not {arch}; "
                "pick one of those with --arch, or rename keys with --map OLD=NEW"
            )
        return self.renames[arch]()


def rename(key: str, rules: list[Rename]) -> str:
    """``key`` under the first rule whose dotted prefix it starts with, else unchanged."""
    for old, new in rules:
        if key == old or key.startswith(old + "."):
            return new + key[len(old) :]
    return key


def inverse(rules: list[Rename]) -> list[Rename]:
    """The rules that map our names back to theirs (tests build foreign files with them)."""
    return [(new, old) for old, new in rules]


# ------------------------------------------------------------------------------------ SNN-RAT


def snn_rat_vgg11() -> list[Rename]:
    """SNN-RAT's ``layerN`` Sequentials (one per stage, pool inside) and ``classifier``
    (Flatten first) are our one ``body`` Sequential, numbered on."""
    rules: list[Rename] = []
    ours = 0
    for stage, widths in enumerate(vgg.STAGES):
        length = 3 * len(widths) + (stage < len(vgg.STAGES) - 1)  # conv, BN, LIF (+ pool)
        rules += [(f"layer{stage + 1}.{i}", f"{BODY}.{ours + i}") for i in range(length)]
        ours += length
    rules += [(f"classifier.{i}", f"{BODY}.{ours + i}") for i in range(6)]
    return rules


def snn_rat_wrn16() -> list[Rename]:
    """``conv1`` is our stem, ``blockG.i`` our ``blocks.(2(G-1)+i)``, the top ``bn1`` our
    ``bn``; inside a block ``convShortcut`` is our ``shortcut`` and ``convex.comb`` our ``mix``."""
    rules: list[Rename] = [("conv1", f"{BODY}.stem"), ("bn1", f"{BODY}.bn"), ("fc", f"{BODY}.fc")]
    for group in range(len(wrn.WIDTHS)):
        for index in range(wrn.BLOCKS_PER_GROUP):
            theirs, ours = f"block{group + 1}.{index}", f"{BODY}.blocks.{group * 2 + index}"
            rules += [
                (f"{theirs}.convShortcut", f"{ours}.shortcut"),
                (f"{theirs}.convex.comb", f"{ours}.mix"),
                (theirs, ours),
            ]
    return rules


# ----------------------------------------------------------------------------------- BrainCog


def braincog_sew_resnet19() -> list[Rename]:
    """``conv1``/``bn1``/``node1`` are our stem, ``layerS.i`` our ``blocks.k`` (in order), whose
    ``conv1 bn1 node1 conv2 bn2 node2`` are our ``residual.0-5`` and ``downsample.0-1`` plus
    ``downsample_sn`` our ``downsample.0-2``; ``fc1`` is our ``fc``."""
    rules: list[Rename] = [
        ("conv1", f"{BODY}.stem.0"),
        ("bn1", f"{BODY}.stem.1"),
        ("node1", f"{BODY}.stem.2"),
        ("fc1", f"{BODY}.fc"),
    ]
    block = 0
    for stage, (_, count, _) in enumerate(resnet.STAGES):
        for index in range(count):
            theirs, ours = f"layer{stage + 1}.{index}", f"{BODY}.blocks.{block}"
            parts = ("conv1", "bn1", "node1", "conv2", "bn2", "node2")
            rules += [(f"{theirs}.{p}", f"{ours}.residual.{i}") for i, p in enumerate(parts)]
            rules += [
                (f"{theirs}.downsample_sn", f"{ours}.downsample.2"),
                (f"{theirs}.downsample", f"{ours}.downsample"),
            ]
            block += 1
    return rules


def _atan_alpha(settings: Mapping[str, Any]) -> float | None:
    return float(settings["surrogate.width"]) if settings["surrogate.kind"] == "atan" else None


THRESHOLD = NeuronConstant(
    "threshold",
    "neuron.theta",
    lambda s: float(s["neuron.theta"]),
    hint="--set neuron.theta=VALUE (or --track randhet)",
)
ATAN_ALPHA = NeuronConstant(
    "act_fun.alpha",
    "surrogate.width",
    _atan_alpha,
    hint="--set surrogate.kind=atan --set surrogate.width=VALUE (or --track randhet)",
)
# RHLIF's sigma; a model without random decays has sigma 0 (its decay is fixed).
SIGMA = NeuronConstant(
    "sigma",
    "randhet.sigma",
    lambda s: float(s.get("randhet.sigma", 0.0)),
    hint="--defense randhet (or randhet*) --set randhet.sigma=VALUE",
)

# BrainCog's RandHet-SNN get_norm_stat / get_loaders: CIFAR-10's, used for CIFAR-100 too.
BRAINCOG_CIFAR = ((0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616))

# ------------------------------------------------------------------------------- SpikingJelly

V_THRESHOLD = NeuronConstant(
    "v_threshold",
    "neuron.theta",
    lambda s: float(s["neuron.theta"]),
    hint="--set neuron.theta=VALUE",
)
# ParametricLIFNode: sigmoid(w) = 1/tau, so the decay of the membrane is 1 - sigmoid(w).
PLIF_W = NeuronConstant(
    "w",
    "neuron.decay",
    lambda s: float(s["neuron.decay"]),
    from_file=lambda w: 1.0 - 1.0 / (1.0 + math.exp(-w)),
    hint="--set neuron.decay=VALUE (1 - sigmoid(w))",
)

PRESETS: dict[str, Preset] = {
    "snn-rat": Preset(
        "snn-rat",
        {"vgg11": snn_rat_vgg11, "wrn16": snn_rat_wrn16},
        summary="putshua/SNN-RAT VGG-11 and WRN-16-4 (also SR, StoG, DLIF)",
    ),
    "braincog": Preset(
        "braincog",
        {"sew-resnet19": braincog_sew_resnet19},
        constants=(THRESHOLD, ATAN_ALPHA, SIGMA),
        unused=("w",),
        norm_keys=("normalize.mean", "normalize.std"),
        cifar_norm=BRAINCOG_CIFAR,
        summary="BrainCog SEW-ResNet19 of RandHet-SNN (LIF and RHLIF nodes)",
    ),
    "spikingjelly": Preset(
        "spikingjelly",
        {},
        constants=(V_THRESHOLD, PLIF_W),
        order_fallback=True,
        summary="a SpikingJelly net in our layer order (any arch)",
    ),
}


def preset(name: str) -> Preset:
    if name not in PRESETS:
        raise SnnbenchError(f"unknown --from {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]
