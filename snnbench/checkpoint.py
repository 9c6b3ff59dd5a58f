"""Checkpoints: weights in safetensors, everything else in ``card.json`` (docs/guide.md).

Loading never unpickles: safetensors holds only tensors, the card is JSON. ``load`` verifies
the weights' sha256 against the card, the architecture named in the weights' metadata against
the card's, and the card's schema version, then rebuilds the model from the card's spec.

Besides the spec, training settings and history, a card keeps the recipe that trained the model:
``recipe`` (its name), ``recipe_path`` (the file, resolved) and ``recipe_toml`` (its whole text),
so the recipe travels with the checkpoint (``train.recipe_fields``, ``api.recipe_of``). These
keys are optional (schema version 1 readers ignore them; older cards hold the name only).

``spec.input_norm`` (``{"mean": [...], "std": [...]}``, optional): the input normalisation of a
model whose weights expect other statistics than its data set's (an imported BrainCog model);
``build`` uses it, and a card without it keeps the data set's.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from snnbench.errors import SnnbenchError
from snnbench.files import atomic_write, atomic_write_json, check_name, sha256_file
from snnbench.model import ModelSpec, build
from snnbench.runtime import place

CARD_SCHEMA = "snnbench.model"
CARD_VERSION = 1
WEIGHTS = "model.safetensors"
CARD = "card.json"
LIBRARIES = ("snnbench", "torch", "torchvision", "torchattacks", "pyautoattack", "safetensors")


def default_home() -> Path:
    return Path(os.environ.get("SNNBENCH_HOME", "snnbench-runs"))


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def save_weights(path: Path, module: nn.Module, meta: dict[str, str]) -> str:
    """Write ``module``'s state dict atomically as safetensors; returns its sha256.

    The metadata go in as one JSON string: safetensors orders several metadata keys
    differently from run to run, which would change the file's sha256 for identical weights.
    """
    state = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
    header = {"snnbench": json.dumps(meta, sort_keys=True)}
    atomic_write(path, lambda tmp: save_file(state, str(tmp), metadata=header))
    return sha256_file(path)


def read_weights_meta(handle_meta: dict[str, str] | None) -> dict[str, str]:
    try:
        meta = json.loads((handle_meta or {}).get("snnbench", "{}"))
    except json.JSONDecodeError:
        return {}
    return meta if isinstance(meta, dict) else {}


def weights_meta(spec: ModelSpec) -> dict[str, str]:
    return {
        "format": "snnbench",
        "arch": spec.arch,
        "defense": spec.defense,
        "dataset": spec.dataset,
    }


def card_head(name: str, spec: ModelSpec, stochastic: bool) -> dict[str, Any]:
    """The fields every model card opens with, trained or imported alike."""
    return {
        "name": name,
        "defense": spec.defense,
        "arch": spec.arch,
        "dataset": spec.dataset,
        "timesteps": spec.timesteps,
        "stochastic": bool(stochastic),
    }


def save_checkpoint(
    folder: Path, model: nn.Module, spec: ModelSpec, card: dict[str, Any]
) -> dict[str, Any]:
    """Write ``model.safetensors`` then ``card.json`` (the card last: it marks the checkpoint whole)."""
    folder = Path(folder)
    sha = save_weights(folder / WEIGHTS, model, weights_meta(spec))
    full = {
        "schema": CARD_SCHEMA,
        "schema_version": CARD_VERSION,
        **card,
        "spec": spec.to_dict(),
        "weights_sha256": sha,
        # training sums gradients in an order that depends on the CPU thread count
        "versions": {**library_versions(), "torch_threads": torch.get_num_threads()},
        "created": now(),
    }
    atomic_write_json(folder / CARD, full)
    return full


def model_dir(ref: str | Path, home: Path | None = None) -> Path:
    """The checkpoint folder for a path (folder, card or weights file) or a model name in the home."""
    text = str(ref)  # (``zoo:NAME`` refs: snnbench.zoo.resolve, above this)
    path = Path(ref)
    if path.is_file() and path.name in (WEIGHTS, CARD):
        return path.parent
    if path.is_dir():
        return path
    home = Path(home) if home is not None else default_home()
    try:
        check_name(text, "model name")
    except SnnbenchError as exc:  # a name never leads outside <home>/models
        raise SnnbenchError(f"no model {text!r}: no folder {path}, and {exc}") from None
    candidate = home / "models" / text
    if candidate.is_dir():
        return candidate
    raise SnnbenchError(
        f"no model {text!r}: looked for a folder {path} and for {candidate}; "
        f"{_model_hint(text, home)}train one with `snnbench train` or pass a "
        "checkpoint folder"
    )


def _model_hint(name: str, home: Path) -> str:
    """``did you mean ...? `` over the home's finished models (empty when none is close)."""
    import difflib

    folder = home / "models"
    names = (
        sorted(p.name for p in folder.iterdir() if (p / CARD).is_file()) if folder.is_dir() else []
    )
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    return f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""


def load_card(ref: str | Path, home: Path | None = None) -> dict[str, Any]:
    """The model card of a checkpoint, checked for format and schema version."""
    folder = model_dir(ref, home)
    path = folder / CARD
    if not path.is_file():
        raise SnnbenchError(
            f"{folder} has no {CARD}: it is not a finished snnbench checkpoint "
            "(rerun `snnbench train` to finish it)"
        )
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SnnbenchError(
            f"{path} is not valid JSON ({exc.msg if hasattr(exc, 'msg') else exc}); "
            "the card is damaged: retrain or restore it"
        ) from None
    if not isinstance(card, dict) or card.get("schema") != CARD_SCHEMA:
        raise SnnbenchError(f"{path} is not an snnbench model card")
    version = card.get("schema_version")
    if not isinstance(version, int) or version > CARD_VERSION:
        raise SnnbenchError(
            f"{path} has card schema version {version!r}, newer than this "
            f"snnbench reads ({CARD_VERSION}); upgrade snnbench"
        )
    return card


def load_weights(path: Path, card: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The verified state dict of ``path``: sha256 and architecture must match the card."""
    if not path.is_file():
        raise SnnbenchError(f"{path} is missing; the checkpoint is incomplete")
    sha = sha256_file(path)
    if sha != card.get("weights_sha256"):
        raise SnnbenchError(
            f"{path} does not match its card (sha256 {sha[:12]}... vs "
            f"{str(card.get('weights_sha256'))[:12]}...): the weights were altered "
            "or truncated; retrain or restore the checkpoint"
        )
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = read_weights_meta(handle.metadata())
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise SnnbenchError(f"{path} is not a readable safetensors file ({exc})") from None
    spec = card["spec"]
    if meta.get("arch") != spec["arch"]:
        raise SnnbenchError(
            f"{path} holds weights of arch {meta.get('arch')!r} but its card "
            f"names arch {spec['arch']!r}; the card does not belong to these weights"
        )
    return state


def verify(ref: str | Path, home: Path | None = None) -> dict[str, Any]:
    """The card of a checkpoint whose card and weights pass every check of ``load``, so a
    command can refuse a damaged checkpoint before it writes anything."""
    folder = model_dir(ref, home)
    card = load_card(folder)
    load_weights(folder / WEIGHTS, card)
    return card


def load(
    ref: str | Path, home: Path | None = None, device: str | torch.device = "cpu"
) -> nn.Module:
    """The verified model of a checkpoint, in eval mode: [0,1] images -> logits."""
    folder = model_dir(ref, home)
    card = load_card(folder)
    try:
        spec = ModelSpec.from_dict(card["spec"])
    except (KeyError, TypeError) as exc:
        raise SnnbenchError(
            f"{folder / CARD} lacks the model spec ({exc}); the card is damaged"
        ) from None
    state = load_weights(folder / WEIGHTS, card)
    model = build(spec)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "shape mismatch"
        raise SnnbenchError(
            f"the weights in {folder} do not fit arch {spec.arch!r} as its card "
            f"describes it ({first})"
        ) from None
    return place(model, device).eval()
