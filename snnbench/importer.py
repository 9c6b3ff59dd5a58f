"""``snnbench import``: a foreign PyTorch checkpoint (.pt/.pth) as a verified snnbench checkpoint.

The file is read with ``torch.load(weights_only=True)`` and nothing else, so a planted pickle
that would run code is refused before any of it runs (docs/guide.md). A plain state dict or
one under ``state_dict``/``model``/``net`` is accepted, ``module.`` prefixes (DataParallel) are
stripped, and every key and shape must match the model built from (defence, arch, data, T).
The result is an ordinary checkpoint (safetensors + card.json) whose card records the file it
came from (``imported_from``: name and sha256) and no training history.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from snnbench.checkpoint import CARD, default_home, load_card, save_checkpoint
from snnbench.config import ModelConfig, model_name
from snnbench.data import dataset_info, input_card, load_dataset
from snnbench.errors import SnnbenchError
from snnbench.files import check_name, sha256_file, stable_seed
from snnbench.model import ModelSpec, build, resolve
from snnbench.runtime import place, resolve_device
from snnbench.train import TrainOutcome, accuracy

NESTED = ("state_dict", "model", "net")      # where training scripts commonly put the weights
PREFIXES = ("module.", "_orig_mod.")         # DataParallel, torch.compile
SHOWN = 3                                    # offending keys named in an error


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a ``.pt``/``.pth`` file, read without unpickling any code."""
    path = Path(path)
    if not path.is_file():
        raise SnnbenchError(f"no file {path}; pass the path of a .pt or .pth checkpoint")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = next((line for line in str(exc).splitlines() if "GLOBAL" in line),
                      str(exc).splitlines()[0] if str(exc) else "unpickling refused")
        raise SnnbenchError(f"refusing {path}: it holds Python objects, not only tensors "
                            f"({reason.strip()}); nothing in it was run; save "
                            "model.state_dict() with torch.save and import that") from None
    except Exception as exc:   # torch.load fails on non-checkpoints in many ways (EOF, KeyError, zip)
        raise SnnbenchError(f"{path} is not a PyTorch checkpoint ({type(exc).__name__}); pass "
                            "a file written by torch.save(model.state_dict(), ...)") from None
    return _strip_prefixes(_find_state(loaded, path))


def _find_state(loaded: Any, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(loaded, dict):
        for key in NESTED:
            if isinstance(loaded.get(key), dict):
                loaded = loaded[key]
                break
    if not isinstance(loaded, dict) or not loaded or \
            not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items()):
        raise SnnbenchError(f"{path} holds no state dict: expected a dict of tensors, or one under "
                            f"{', '.join(repr(k) for k in NESTED)}; save model.state_dict()")
    return loaded


def _strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    for prefix in PREFIXES:
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def _names(keys: list[str]) -> str:
    more = f" (+{len(keys) - SHOWN} more)" if len(keys) > SHOWN else ""
    return ", ".join(keys[:SHOWN]) + more


def check_fit(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor],
              spec: ModelSpec, path: Path) -> None:
    """Refuse missing or unexpected keys and shape mismatches with one line naming them."""
    problems = []
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
              if k in state and state[k].shape != v.shape]
    for label, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                        ("shape mismatches", shapes)):
        if keys:
            problems.append(f"{label} {_names(keys)}")
    if problems:
        raise SnnbenchError(f"{path.name} does not fit {spec.defense} {spec.arch} on "
                            f"{spec.dataset} with T={spec.timesteps}: {'; '.join(problems)}; "
                            "check --arch, --defense, --data and --set")


def import_checkpoint(path: str | Path, config: ModelConfig, *, home: Path | None = None,
                      data_root: Path | None = None, device: str = "auto") -> TrainOutcome:
    """Import ``path`` as the model ``config`` describes, into ``home/models/<name>``."""
    path = Path(path)
    spec = resolve(config)
    name = check_name(config.name or model_name(spec.defense, spec.arch, spec.dataset),
                      "model name (--name)")
    folder = Path(home or default_home()) / "models" / name
    state = read_state_dict(path)
    file_sha = sha256_file(path)
    origin = {"file": path.name, "sha256": file_sha}
    if (folder / CARD).is_file():
        card = load_card(folder)
        if card.get("imported_from") == origin and card.get("spec") == spec.to_dict():
            return TrainOutcome(name, folder, card, "up to date")
        raise SnnbenchError(f"a model named {name!r} already exists in {folder.parent}; pick "
                            f"another --name or delete {folder}")
    model = build(spec)
    check_fit(state, model.state_dict(), spec, path)
    model.load_state_dict(state, strict=True)
    dev = resolve_device(device)
    x_test, y_test = load_dataset(spec.dataset, "test", data_root)
    torch.manual_seed(stable_seed(file_sha, "import"))     # one draw for a stochastic model
    model = place(model, dev)
    clean = accuracy(model, x_test, y_test, dev)
    info = dataset_info(spec.dataset)
    card = save_checkpoint(folder, model, spec, {
        "name": name, "defense": spec.defense, "arch": spec.arch, "dataset": spec.dataset,
        "timesteps": spec.timesteps, "stochastic": bool(model.stochastic),
        "input": input_card(info),
        "train": None, "recipe": None, "history": [], "imported_from": origin,
        "clean_accuracy": {"split": "test", "n": len(x_test), "acc": clean},
        "device": dev.type})
    return TrainOutcome(name, folder, card, "imported")
