"""``snnbench import``: a foreign PyTorch checkpoint (.pt/.pth) as a verified snnbench checkpoint.

The file is read with ``torch.load(weights_only=True)`` and nothing else, so a planted pickle
that would run code is refused before any of it runs (docs/guide.md). A plain state dict or
one under ``state_dict``/``model``/``net`` is accepted, ``module.`` prefixes (DataParallel) are
stripped, and every key and shape must match the model built from (defence, arch, data, T).
The result is an ordinary checkpoint (safetensors + card.json) whose card records the file it
came from (``imported_from``: name and sha256) and no training history.

Other code bases' names (``--from snn-rat|braincog|spikingjelly``, ``snnbench.import_maps``, or
``--map OLD=NEW`` / ``--drop PATTERN``) are translated first. Neuron constants a preset knows
(BrainCog's ``threshold``, ``act_fun.alpha``, ``sigma``) are checked against the model's
settings: equal ones are dropped, a different one is refused naming the key and both values.
The input normalisation (``--mean/--std``, else the file's ``normalize`` buffers, else the
preset's, else the data set's) goes into the card's spec (``input_norm``) when it is not the
data set's, and ``build`` honours it.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from snnbench.checkpoint import CARD, card_head, default_home, load_card, save_checkpoint
from snnbench.config import ModelConfig, model_name
from snnbench.data import dataset_info, input_card, load_dataset
from snnbench.errors import SnnbenchError
from snnbench.files import check_name, sha256_file, stable_seed
from snnbench.import_maps import Preset, Rename, preset, rename
from snnbench.model import ModelSpec, build, check_input_norm, input_norm, resolve
from snnbench.runtime import place, resolve_device
from snnbench.train import TrainOutcome, accuracy

NESTED = ("state_dict", "model", "net")  # where training scripts commonly put the weights
PREFIXES = ("module.", "_orig_mod.")  # DataParallel, torch.compile
SHOWN = 3  # offending keys named in an error
Norm = tuple[list[float], list[float]]  # input (mean, std) per channel


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a ``.pt``/``.pth`` (or ``.safetensors``) file, read without unpickling
    any code."""
    path = Path(path)
    if not path.is_file():
        raise SnnbenchError(f"no file {path}; pass the path of a .pt or .pth checkpoint")
    if path.suffix == ".safetensors":
        try:
            return _strip_prefixes(_find_state(load_file(str(path)), path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise SnnbenchError(f"{path} is not a readable safetensors file ({exc})") from None
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = next(
            (line for line in str(exc).splitlines() if "GLOBAL" in line),
            str(exc).splitlines()[0] if str(exc) else "unpickling refused",
        )
        raise SnnbenchError(
            f"refusing {path}: it holds Python objects, not only tensors "
            f"({reason.strip()}); nothing in it was run; save "
            "model.state_dict() with torch.save and import that"
        ) from None
    except (
        Exception
    ) as exc:  # torch.load fails on non-checkpoints in many ways (EOF, KeyError, zip)
        raise SnnbenchError(
            f"{path} is not a PyTorch checkpoint ({type(exc).__name__}); pass "
            "a file written by torch.save(model.state_dict(), ...)"
        ) from None
    return _strip_prefixes(_find_state(loaded, path))


def _find_state(loaded: Any, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(loaded, dict):
        for key in NESTED:
            if isinstance(loaded.get(key), dict):
                loaded = loaded[key]
                break
    if (
        not isinstance(loaded, dict)
        or not loaded
        or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items())
    ):
        raise SnnbenchError(
            f"{path} holds no state dict: expected a dict of tensors, or one under "
            f"{', '.join(repr(k) for k in NESTED)}; save model.state_dict()"
        )
    return loaded


def _strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    for prefix in PREFIXES:
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def _names(keys: list[str]) -> str:
    more = f" (+{len(keys) - SHOWN} more)" if len(keys) > SHOWN else ""
    return ", ".join(keys[:SHOWN]) + more


def check_fit(
    state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], spec: ModelSpec, path: Path
) -> None:
    """Refuse missing or unexpected keys and shape mismatches with one line naming them."""
    problems = []
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    for label, keys in (
        ("missing keys", missing),
        ("unexpected keys", unexpected),
        ("shape mismatches", shapes),
    ):
        if keys:
            problems.append(f"{label} {_names(keys)}")
    if problems:
        raise SnnbenchError(
            f"{path.name} does not fit {spec.defense} {spec.arch} on "
            f"{spec.dataset} with T={spec.timesteps}: {'; '.join(problems)}; "
            "check --arch, --defense, --data and --set"
        )


@dataclass
class Translation:
    """A foreign state dict under our names, and what was taken out of it on the way."""

    state: dict[str, torch.Tensor]
    norm: Norm | None = None  # the file's normalize buffers
    dropped: list[str] = field(default_factory=list)  # constants checked, unused, --drop


def parse_maps(maps: Sequence[str]) -> list[Rename]:
    """``OLD=NEW`` dotted prefixes (an empty OLD prefixes every key, an empty NEW strips OLD)."""
    rules = []
    for text in maps:
        old, sep, new = text.partition("=")
        if not sep or (not old and not new):
            raise SnnbenchError(f"--map {text!r} is not OLD=NEW; e.g. --map features=body")
        rules.append((old.strip(), new.strip()))
    return rules


def translate(
    state: dict[str, torch.Tensor],
    expected: dict[str, torch.Tensor],
    spec: ModelSpec,
    path: Path,
    source: str | None = None,
    maps: Sequence[str] = (),
    drops: Sequence[str] = (),
) -> Translation:
    """``state`` renamed to the model's keys: --drop, the preset's normalisation buffers and
    neuron constants, then --map rules before the preset's, then (SpikingJelly) order."""
    chosen = preset(source) if source else None
    result = Translation(dict(state))
    _drop(result, drops, path)
    if chosen and chosen.norm_keys and all(k in result.state for k in chosen.norm_keys):
        mean, std = (result.state.pop(k).flatten().tolist() for k in chosen.norm_keys)
        result.norm = (mean, std)
    rules = parse_maps(maps) + (chosen.rules(spec.arch) if chosen else [])
    if chosen:
        _check_constants(result, chosen, rules, expected, spec)
    renamed: dict[str, torch.Tensor] = {}
    for key, value in result.state.items():
        new = rename(key, rules)
        if new in renamed:
            raise SnnbenchError(f"two keys of {path.name} map to {new}; check --map")
        renamed[new] = value
    if chosen and chosen.order_fallback and set(renamed) != set(expected):
        renamed = _spikingjelly_names(renamed, expected, path)
    result.state = renamed
    return result


def _drop(result: Translation, patterns: Sequence[str], path: Path) -> None:
    for pattern in patterns:
        hits = [k for k in result.state if fnmatch.fnmatchcase(k, pattern)]
        if not hits:
            raise SnnbenchError(
                f"--drop {pattern!r} matches no key of {path.name} (keys such as "
                f"{_names(list(result.state))}); fix the pattern"
            )
        for key in hits:
            del result.state[key]
        result.dropped += hits


def _ends_with(key: str, suffix: str) -> bool:
    return key == suffix or key.endswith("." + suffix)


def _check_constants(
    result: Translation,
    chosen: Preset,
    rules: list[Rename],
    expected: dict[str, torch.Tensor],
    spec: ModelSpec,
) -> None:
    """Drop the preset's neuron constants that equal the model's settings; refuse the first
    that does not, naming the key and both values."""
    for key in [k for k in result.state if rename(k, rules) not in expected]:
        if any(_ends_with(key, suffix) for suffix in chosen.unused):
            result.dropped.append(key)
            del result.state[key]
            continue
        constant = next((c for c in chosen.constants if _ends_with(key, c.suffix)), None)
        if constant is None:
            continue
        ours = constant.expected(spec.settings)
        values = {constant.from_file(float(v)) for v in result.state[key].flatten().tolist()}
        if ours is None:
            raise SnnbenchError(
                f"{key} = {_listed(values)} in the file has no counterpart in "
                f"this model ({constant.setting} does not apply: surrogate "
                f"{spec.settings.get('surrogate.kind')}); import with "
                f"{constant.hint}"
            )
        wrong = [v for v in values if not math.isclose(v, ours, rel_tol=1e-5, abs_tol=1e-6)]
        if wrong:
            raise SnnbenchError(
                f"{key} = {_listed(values)} in the file, but this model's "
                f"{constant.setting} is {ours:g}: the file's neurons differ from "
                f"the model's; import with {constant.hint}"
            )
        result.dropped.append(key)
        del result.state[key]


def _listed(values: set[float]) -> str:
    shown = sorted(values)
    return ", ".join(f"{v:g}" for v in shown[:SHOWN]) + (" ..." if len(shown) > SHOWN else "")


def _spikingjelly_names(
    state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], path: Path
) -> dict[str, torch.Tensor]:
    """A SpikingJelly net in our layer order: our names without ``body.``; else (containers
    such as ``layer.SeqToANNContainer`` renumber modules) the tensors in declaration order."""
    prefixed = {f"body.{k}": v for k, v in state.items()}
    if set(prefixed) == set(expected):
        return prefixed
    return pair_in_order(state, expected, path)


def pair_in_order(
    state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], path: Path
) -> dict[str, torch.Tensor]:
    """The file's tensors paired with the model's in order; each pair must have the same
    leaf name (weight, bias, running_mean, ...) and shape."""
    if len(state) != len(expected):
        raise SnnbenchError(
            f"{path.name} holds {len(state)} tensors, the model {len(expected)}: "
            "the net's layers are not the model's; check --arch, or rename keys "
            "with --map OLD=NEW"
        )
    paired = {}
    for (theirs, value), (ours, want) in zip(state.items(), expected.items()):
        if theirs.rsplit(".", 1)[-1] != ours.rsplit(".", 1)[-1] or value.shape != want.shape:
            raise SnnbenchError(
                f"in declaration order {path.name}'s {theirs} "
                f"{tuple(value.shape)} meets the model's {ours} "
                f"{tuple(want.shape)}: the net's layers differ from the "
                "model's or come in another order; rename keys with --map OLD=NEW"
            )
        paired[ours] = value
    return paired


def choose_norm(
    spec: ModelSpec,
    source: str | None,
    from_file: Norm | None,
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
) -> dict[str, list[float]] | None:
    """The model's input (mean, std): --mean/--std, else the file's buffers, else the preset's
    (BrainCog: CIFAR-10's on CIFAR-10 and CIFAR-100), else the data set's (None)."""
    info = dataset_info(spec.dataset)
    chosen = preset(source) if source else None
    base = (list(info.mean), list(info.std))
    if chosen and chosen.cifar_norm and info.name in ("cifar10", "cifar100"):
        base = (list(chosen.cifar_norm[0]), list(chosen.cifar_norm[1]))
    if from_file is not None:
        for label, given, found in (("mean", mean, from_file[0]), ("std", std, from_file[1])):
            if given is not None and not _same(given, found):
                raise SnnbenchError(
                    f"--{label} {_floats(given)} differs from the file's "
                    f"normalize.{label} {_floats(found)}, which the model was "
                    f"trained with; drop --{label}"
                )
        base = (list(from_file[0]), list(from_file[1]))
    final = (
        [float(v) for v in mean] if mean is not None else base[0],
        [float(v) for v in std] if std is not None else base[1],
    )
    check_input_norm(final[0], final[1], info.channels)
    if _same(final[0], info.mean) and _same(final[1], info.std):
        return None
    return {"mean": final[0], "std": final[1]}


def _same(a: Sequence[float], b: Sequence[float]) -> bool:
    return len(a) == len(b) and all(
        math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-7) for x, y in zip(a, b)
    )


def _floats(values: Sequence[float]) -> str:
    return ",".join(f"{v:g}" for v in values)


def import_checkpoint(
    path: str | Path,
    config: ModelConfig,
    *,
    home: Path | None = None,
    data_root: Path | None = None,
    device: str = "auto",
    source: str | None = None,
    maps: Sequence[str] = (),
    drops: Sequence[str] = (),
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> TrainOutcome:
    """Import ``path`` as the model ``config`` describes, into ``home/models/<name>``.

    ``source`` names a preset of ``snnbench.import_maps`` (``snn-rat``, ``braincog``,
    ``spikingjelly``); ``maps`` are ``OLD=NEW`` prefix renames, ``drops`` glob patterns of keys
    to leave out; ``mean``/``std`` the input normalisation the weights were trained with.
    """
    path = Path(path)
    spec = resolve(config)
    name = check_name(
        config.name or model_name(spec.defense, spec.arch, spec.dataset), "model name (--name)"
    )
    folder = Path(home or default_home()) / "models" / name
    state = read_state_dict(path)
    file_sha = sha256_file(path)
    origin = {"file": path.name, "sha256": file_sha}
    expected = build(spec).state_dict()
    translation = translate(state, expected, spec, path, source, maps, drops)
    spec = dataclasses.replace(
        spec, input_norm=choose_norm(spec, source, translation.norm, mean, std)
    )
    if (folder / CARD).is_file():
        card = load_card(folder)
        recorded = card.get("imported_from") or {}
        if {k: recorded.get(k) for k in origin} == origin and card.get("spec") == spec.to_dict():
            return TrainOutcome(name, folder, card, "up to date")
        raise SnnbenchError(
            f"a model named {name!r} already exists in {folder.parent}; pick "
            f"another --name or delete {folder}"
        )
    check_fit(translation.state, expected, spec, path)
    model = build(spec)
    model.load_state_dict(translation.state, strict=True)
    dev = resolve_device(device)
    x_test, y_test = load_dataset(spec.dataset, "test", data_root)
    torch.manual_seed(stable_seed(file_sha, "import"))  # one draw for a stochastic model
    model = place(model, dev)
    clean = accuracy(model, x_test, y_test, dev)
    info = dataset_info(spec.dataset)
    mean_used, std_used = input_norm(spec)
    card = save_checkpoint(
        folder,
        model,
        spec,
        {
            **card_head(name, spec, model.stochastic),
            "input": {**input_card(info), "mean": mean_used, "std": std_used},
            "train": None,
            "recipe": None,
            "history": [],
            "imported_from": {
                **origin,
                **({"from": source} if source else {}),
                **({"dropped": len(translation.dropped)} if translation.dropped else {}),
            },
            "clean_accuracy": {"split": "test", "n": len(x_test), "acc": clean},
            "device": dev.type,
        },
    )
    return TrainOutcome(name, folder, card, "imported")
