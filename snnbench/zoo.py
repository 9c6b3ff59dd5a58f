"""The model zoo: manifests of shared checkpoints and their sha256-checked downloads (docs/guide.md).

``zoo/models.toml`` names each shared model: defence, arch, dataset, T, where to get it (one or
more URLs, tried in order), the sha256 and size of the file, the weights' own sha256, licence,
paper and the recipe that made it. The distributable unit is one uncompressed tar,
``<name>.tar``, holding exactly ``card.json`` and ``model.safetensors`` (packed with fixed
metadata, so the same checkpoint always gives the same bytes and sha256). ``pull`` downloads it
to ``<home>/cache/zoo/<sha256>.part`` (a broken transfer resumes with an HTTP Range request),
checks size and sha256, unpacks the two files (regular files only; no absolute paths, no ``..``)
into a temporary folder beside the models, verifies the weights against the card, and only then
renames the folder to ``<home>/models/<name>/``: the models folder never holds a partial model.
A ``.part`` whose transfer broke stays in the cache for the next pull; one with the wrong
checksum is deleted. Nothing is fetched for an entry without a sha256, nothing is unpickled.

URLs: ``http(s)://...`` through ``urllib`` (standard library), a local path or ``file://``, or
``hf://owner/repo/path/in/repo`` through ``huggingface_hub`` (``pip install 'huggingface_hub>=0.20'``; in a clone ``pip install '.[hub]'``).
Unlike RobustBench's ``load_model`` (no checksum, ``torch.load``), bytes and weights are checked.
"""

from __future__ import annotations

import http.client
import io
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import tomli_w
import torch
from torch import nn

from snnbench.checkpoint import CARD, WEIGHTS, default_home, load, load_card, model_dir, verify
from snnbench.errors import SnnbenchError
from snnbench.files import (
    atomic_write,
    atomic_write_json,
    atomic_write_text,
    check_name,
    sha256_file,
)

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

MANIFEST = Path(__file__).resolve().parent.parent / "zoo" / "models.toml"  # source checkout
MEMBERS = (CARD, WEIGHTS)
PREFIX = "zoo:"  # snnbench.load("zoo:NAME")
ATTEMPTS = 3  # transfers per URL: a dropped connection resumes from the .part
TIMEOUT_S = 30.0
BLOCK = 1 << 16
BANNER = (
    "# The model zoo manifest: written by `snnbench zoo add`; edit licence/paper by hand "
    "if needed.\n# Each entry: one <name>.tar (card.json + model.safetensors) at `urls`, "
    "checked against `sha256` and `size`.\n"
)
Progress = Callable[[int, int], None]  # (bytes done, bytes total)


@dataclass(frozen=True)
class ZooEntry:
    name: str
    defense: str
    arch: str
    dataset: str
    timesteps: int
    urls: tuple[str, ...]
    sha256: str
    size: int
    weights_sha256: str = ""
    licence: str = "unspecified"
    paper: str = ""
    recipe: str = ""
    clean_accuracy: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # the manifest's folder: a relative local path in ``urls`` is relative to it (not written)
    base: Path | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The manifest table of this entry (TOML has no null: empty values are left out)."""
        table = {
            key: getattr(self, key)
            for key in (
                "defense",
                "arch",
                "dataset",
                "timesteps",
                "urls",
                "sha256",
                "size",
                "weights_sha256",
                "licence",
                "paper",
                "recipe",
                "clean_accuracy",
            )
        }
        table["urls"] = list(self.urls)
        return _without_none({**table, **dict(sorted(self.extra.items()))})


def _without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None and v != ""}
    return value


LOCAL_MANIFEST = Path("zoo") / "models.toml"  # `zoo add` writes here unless told otherwise


def manifest_path(manifest: str | Path | None = None) -> Path:
    """``manifest``, else env ``SNNBENCH_ZOO``, else the packaged ``zoo/models.toml``."""
    if manifest is not None:
        return Path(manifest)
    if os.environ.get("SNNBENCH_ZOO"):
        return Path(os.environ["SNNBENCH_ZOO"])
    from snnbench.recipe import _zoo_folders  # the packaged zoo, then a source checkout's

    return next(
        (f / "models.toml" for f in _zoo_folders() if (f / "models.toml").is_file()), MANIFEST
    )


def manifest_paths(manifest: str | Path | None = None) -> list[Path]:
    """The manifests ``zoo list``, ``zoo pull`` and ``load("zoo:NAME")`` read: ``manifest`` or
    ``SNNBENCH_ZOO`` alone; else the packaged one and ``./zoo/models.toml`` (where ``zoo add``
    writes by default; its entries win), so what ``zoo add`` wrote is what ``zoo list`` shows."""
    if manifest is not None or os.environ.get("SNNBENCH_ZOO"):
        return [manifest_path(manifest)]
    packaged = manifest_path()
    local = LOCAL_MANIFEST
    if local.is_file() and local.resolve() != packaged.resolve():
        return [packaged, local]
    return [packaged]


def write_target(manifest: str | Path | None = None) -> Path:
    """Where ``zoo add`` writes: ``manifest``, else ``SNNBENCH_ZOO``, else ``./zoo/models.toml``."""
    if manifest is not None or os.environ.get("SNNBENCH_ZOO"):
        return manifest_path(manifest)
    return LOCAL_MANIFEST


def describe_manifests(manifest: str | Path | None = None) -> str:
    return " and ".join(str(p) for p in manifest_paths(manifest))


def read_manifest(manifest: str | Path | None = None) -> dict[str, ZooEntry]:
    """Every entry of the manifests (``manifest_paths``); a later file's entry wins."""
    entries: dict[str, ZooEntry] = {}
    for path in manifest_paths(manifest):
        entries.update(_read_one(path))
    return entries


def _read_one(path: Path) -> dict[str, ZooEntry]:
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise SnnbenchError(f"{path} is not valid TOML ({exc})") from None
    return {name: _entry(name, raw, path) for name, raw in (data.get("models") or {}).items()}


def _entry(name: str, raw: Any, path: Path) -> ZooEntry:
    try:
        check_name(name, "zoo entry name")  # it becomes <home>/models/<name>, <name>.tar
    except SnnbenchError as exc:
        raise SnnbenchError(f"{path}: {exc}; rename models.{name!r} in the manifest") from None
    if not isinstance(raw, dict):
        raise SnnbenchError(f"{path}: models.{name} is not a table")
    urls = raw.get("urls", raw.get("url", []))
    urls = (urls,) if isinstance(urls, str) else tuple(urls)
    known = {
        "defense",
        "arch",
        "dataset",
        "timesteps",
        "urls",
        "url",
        "sha256",
        "size",
        "weights_sha256",
        "licence",
        "paper",
        "recipe",
        "clean_accuracy",
    }
    try:
        return ZooEntry(
            name,
            str(raw.get("defense", "")),
            str(raw.get("arch", "")),
            str(raw.get("dataset", "")),
            int(raw.get("timesteps", 0)),
            urls,
            str(raw.get("sha256", "")).lower(),
            int(raw.get("size", 0)),
            str(raw.get("weights_sha256", "")),
            str(raw.get("licence", "unspecified")),
            str(raw.get("paper", "")),
            str(raw.get("recipe", "")),
            raw.get("clean_accuracy"),
            {k: v for k, v in raw.items() if k not in known},
            path.resolve().parent,
        )
    except (TypeError, ValueError) as exc:
        raise SnnbenchError(f"{path}: models.{name} has a bad value ({exc})") from None


def get_entry(name: str, manifest: str | Path | None = None) -> ZooEntry:
    import difflib

    entries = read_manifest(manifest)
    if name not in entries:
        close = difflib.get_close_matches(name, list(entries), n=3)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise SnnbenchError(
            f"no zoo model {name!r} in {describe_manifests(manifest)}{hint} "
            "(see `snnbench zoo list`)"
        )
    return entries[name]


# --- downloads -------------------------------------------------------------------------------


def cache_dir(home: Path) -> Path:
    return Path(home) / "cache" / "zoo"


def _sha_ok(path: Path, entry: ZooEntry) -> bool:
    return path.stat().st_size == entry.size and sha256_file(path) == entry.sha256


def download(entry: ZooEntry, home: Path, on_progress: Progress | None = None) -> Path:
    """The verified archive of ``entry`` in the cache (downloaded or resumed as needed)."""
    if len(entry.sha256) != 64 or any(c not in "0123456789abcdef" for c in entry.sha256):
        raise SnnbenchError(
            f"zoo model {entry.name!r} has no valid sha256 in the manifest: "
            "nothing is downloaded without a checksum to check"
        )
    if not entry.urls:
        raise SnnbenchError(f"zoo model {entry.name!r} has no url in the manifest")
    folder = cache_dir(home)
    folder.mkdir(parents=True, exist_ok=True)
    done = folder / f"{entry.sha256}.tar"
    if done.is_file() and _sha_ok(done, entry):
        return done
    part = folder / f"{entry.sha256}.part"
    errors = []
    for url in entry.urls:
        try:
            _fetch(url, part, entry, home, on_progress)
        except SnnbenchError as exc:
            errors.append(str(exc))
            continue
        os.replace(part, done)
        return done
    raise SnnbenchError(
        errors[0] if len(errors) == 1 else "every url failed: " + " | ".join(errors)
    )


def _fetch(url: str, part: Path, entry: ZooEntry, home: Path, on_progress: Progress | None) -> None:
    """Fill ``part`` from ``url`` and check it; a wrong file is deleted, a broken one kept."""
    if url.startswith("hf://"):
        _fetch_hub(url, part, home)
    elif url.startswith(("http://", "https://")):
        for attempt in range(ATTEMPTS):
            if _transfer(url, part, entry.size, on_progress):
                break
        else:
            have = part.stat().st_size if part.exists() else 0
            raise SnnbenchError(
                f"download of {url} broke off {ATTEMPTS} times ({have} of "
                f"{entry.size} bytes kept in {part}); rerun to resume"
            )
    else:
        source = Path(url[len("file://") :] if url.startswith("file://") else url)
        if not source.is_absolute() and entry.base is not None:
            source = entry.base / source  # pinned files shipped beside the manifest
        if not source.is_file():
            raise SnnbenchError(f"zoo file {source} not found")
        shutil.copyfile(source, part)
    size = part.stat().st_size
    if size != entry.size or sha256_file(part) != entry.sha256:
        got = sha256_file(part)
        part.unlink(missing_ok=True)
        raise SnnbenchError(
            f"{url} does not match the manifest (got {size} bytes, sha256 "
            f"{got[:12]}...; expected {entry.size} bytes, {entry.sha256[:12]}...): "
            "the file is truncated, altered or the manifest is wrong; nothing kept"
        )


def _transfer(url: str, part: Path, size: int, on_progress: Progress | None) -> bool:
    """One HTTP transfer into ``part``, resuming from its length; False when it broke off."""
    offset = part.stat().st_size if part.exists() else 0
    if size and offset >= size:
        return True  # whole (or too long): the checksum decides
    request = urllib.request.Request(url, headers={"User-Agent": "snnbench-zoo"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # the server has no such range: start over
            part.unlink(missing_ok=True)
            return False
        raise SnnbenchError(f"cannot download {url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SnnbenchError(f"cannot download {url}: {reason}") from None
    with response:
        if offset and response.status != 206:
            offset = 0  # the server ignored the Range: take the whole file
        length = response.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        received = 0
        with open(part, "ab" if offset else "wb") as handle:
            try:
                while block := response.read(BLOCK):
                    handle.write(block)
                    received += len(block)
                    if on_progress:
                        on_progress(offset + received, size)
                    if size and offset + received > size:
                        return True  # longer than the manifest says: the check refuses it
            except (OSError, ValueError, http.client.HTTPException):
                return False
    return expected is None or received >= expected


def _fetch_hub(url: str, part: Path, home: Path) -> None:
    """``hf://owner/repo/path``: the file from the Hugging Face Hub, copied to ``part``."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise SnnbenchError(
            f"{url} is on the Hugging Face Hub, which needs huggingface_hub: "
            "pip install 'huggingface_hub>=0.20' (in a clone: pip install '.[hub]')"
        ) from None
    parts = url[len("hf://") :].split("/", 2)
    if len(parts) < 3 or not all(parts):
        raise SnnbenchError(f"bad Hub url {url!r}: write hf://owner/repo/path/in/repo")
    try:
        local = hf_hub_download(
            repo_id=f"{parts[0]}/{parts[1]}",
            filename=parts[2],
            cache_dir=str(Path(home) / "cache" / "hf"),
        )
    except Exception as exc:  # the hub's own error types vary by version: one line
        raise SnnbenchError(
            f"cannot download {url}: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}"
        ) from None
    shutil.copyfile(local, part)


# --- archives --------------------------------------------------------------------------------


def _safe_members(archive: tarfile.TarFile, source: Path) -> dict[str, tarfile.TarInfo]:
    """The archive's two files; links, folders, absolute or ``..`` paths, other names: refused."""
    members: dict[str, tarfile.TarInfo] = {}
    for member in archive.getmembers():
        name = member.name
        if name.startswith(("/", "\\")) or ".." in Path(name).parts or Path(name).is_absolute():
            raise SnnbenchError(f"{source} holds an unsafe path {name!r}; refused")
        if not member.isfile():
            raise SnnbenchError(f"{source} holds {name!r}, which is not a regular file; refused")
        if name not in MEMBERS or name in members:
            raise SnnbenchError(
                f"{source} holds {name!r}; a zoo archive holds exactly {' and '.join(MEMBERS)}"
            )
        members[name] = member
    missing = [m for m in MEMBERS if m not in members]
    if missing:
        raise SnnbenchError(f"{source} lacks {', '.join(missing)}; not a zoo archive")
    return members


def unpack(archive_path: Path, target: Path) -> None:
    """Write the archive's card and weights into ``target`` (an existing folder)."""
    try:
        with tarfile.open(archive_path, "r:") as archive:
            for name, member in _safe_members(archive, archive_path).items():
                handle = archive.extractfile(member)
                assert handle is not None
                with handle, open(target / name, "wb") as out:
                    shutil.copyfileobj(handle, out)
    except tarfile.TarError as exc:
        raise SnnbenchError(f"{archive_path} is not a readable tar archive ({exc})") from None


def pack(folder: Path, target: Path) -> None:
    """``target``: a tar of the checkpoint's card and weights with fixed metadata."""

    def write(tmp: Path) -> None:
        with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as archive:
            for name in MEMBERS:
                data = (folder / name).read_bytes()
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(data), 0o644, 0
                archive.addfile(info, io.BytesIO(data))

    atomic_write(target, write)


# --- pull, ensure, add -----------------------------------------------------------------------


def pull(
    name: str,
    home: str | Path | None = None,
    manifest: str | Path | None = None,
    on_progress: Progress | None = None,
    as_name: str | None = None,
) -> tuple[Path, str]:
    """Download, verify and install zoo model ``name`` in ``<home>/models/<as_name or name>``
    (under another name, the card's ``name`` says so and ``zoo_name`` keeps the zoo's);
    returns the folder and ``"pulled"`` or ``"up to date"``."""
    check_name(name, "zoo model name")
    local = check_name(as_name, "zoo pull --name") if as_name is not None else name
    entry = get_entry(name, manifest)
    home = Path(home) if home is not None else default_home()
    models = home / "models"
    target = models / local
    if (target / CARD).is_file():
        card = load_card(target)
        if entry.weights_sha256 and card.get("weights_sha256") != entry.weights_sha256:
            raise SnnbenchError(
                f"{target} holds another model named {local!r} (weights "
                f"{str(card.get('weights_sha256'))[:12]}..., e.g. one `snnbench run` trained), not "
                f"zoo model {name!r} ({entry.weights_sha256[:12]}...); install the zoo's under "
                f"another name with `snnbench zoo pull {name} --name {name}-zoo`, or pull into "
                "another --home"
            )
        verify(target)
        return target, "up to date"
    archive = download(entry, home, on_progress)
    models.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{local}.", suffix=".pull", dir=models))
    try:
        unpack(archive, staging)
        card = verify(staging)
        if entry.weights_sha256 and card["weights_sha256"] != entry.weights_sha256:
            raise SnnbenchError(
                f"the archive of {name!r} holds weights {card['weights_sha256'][:12]}... "
                f"but the manifest names {entry.weights_sha256[:12]}...; refused"
            )
        if as_name is not None and card.get("name") != local:  # results are keyed by it
            atomic_write_json(staging / CARD, {**card, "name": local, "zoo_name": name})
        if target.exists():
            raise SnnbenchError(f"{target} exists but is not a finished checkpoint; remove it")
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target, "pulled"


def ensure(name: str, home: Path | None = None) -> Path:  # snnbench.load("zoo:NAME")
    return pull(name, home)[0]


def resolve(ref: str | Path, home: str | Path | None = None) -> str | Path:
    """``zoo:NAME`` as the folder of that model, pulled and sha256-checked on first use; any
    other reference unchanged."""
    text = str(ref)
    if not text.startswith(PREFIX):
        return ref
    return ensure(text[len(PREFIX) :], Path(home) if home is not None else None)


def load_model(
    ref: str | Path, home: str | Path | None = None, device: str | torch.device = "cpu"
) -> nn.Module:
    """``snnbench.load``: ``checkpoint.load`` that also takes ``zoo:NAME``."""
    return load(resolve(ref, home), home, device)


def load_model_card(ref: str | Path, home: str | Path | None = None) -> dict[str, Any]:
    """``snnbench.load_card``: ``checkpoint.load_card`` that also takes ``zoo:NAME``."""
    return load_card(resolve(ref, home), home)


def add(
    path: str | Path,
    url: str,
    *,
    manifest: str | Path | None = None,
    name: str | None = None,
    out: str | Path = "zoo-dist",
    licence: str = "unspecified",
    paper: str = "",
    home: Path | None = None,
) -> tuple[ZooEntry, Path]:
    """Write the manifest entry for a checkpoint (a folder, a model of the home, or a zoo tar).

    A folder is packed into ``<out>/<name>.tar``: upload that file to ``url``. Returns the
    entry and the archive it describes."""
    source = Path(path)
    if name is not None:
        check_name(name, "zoo --name")
    if source.is_file() and tarfile.is_tarfile(source):
        with tempfile.TemporaryDirectory() as tmp:
            unpack(source, Path(tmp))
            card = verify(Path(tmp))
        archive = source
    else:
        folder = model_dir(path, home)
        card = verify(folder)
        archive = Path(out) / f"{check_name(name or folder.name, 'zoo entry name (--name)')}.tar"
        pack(folder, archive)
    spec = card["spec"]
    label = check_name(
        name
        or card.get("name")
        or (source.stem if source.is_file() else model_dir(path, home).name),
        "zoo entry name (--name)",
    )
    clean = (card.get("clean_accuracy") or {}).get("acc")
    entry = ZooEntry(
        label,
        spec["defense"],
        spec["arch"],
        spec["dataset"],
        int(spec.get("timesteps") or 0),
        (url,),
        sha256_file(archive),
        archive.stat().st_size,
        card["weights_sha256"],
        licence,
        paper or _paper_of(spec["defense"]),
        card.get("recipe") or "",
        round(clean, 4) if isinstance(clean, float) else None,
        {
            "track": spec.get("track", ""),
            "settings": spec.get("settings") or {},
            "train": card.get("train") or {},
        },
    )
    write_entry(entry, manifest)
    return entry, archive


def _paper_of(defense: str) -> str:
    from snnbench.defenses import DEFENSES
    from snnbench.defenses.compose import parse_defense

    try:
        papers = [DEFENSES.entry(part).paper for part in parse_defense(defense)]
    except (SnnbenchError, AttributeError, KeyError):
        return ""
    return "; ".join(dict.fromkeys(p for p in papers if p))


def write_entry(entry: ZooEntry, manifest: str | Path | None = None) -> Path:
    """Add or replace ``entry`` in the manifest (entries sorted by name)."""
    path = write_target(manifest)
    entries = _read_one(path)
    entries[entry.name] = entry
    text = (
        BANNER
        + "\n"
        + tomli_w.dumps({"models": {n: entries[n].to_dict() for n in sorted(entries)}})
    )
    atomic_write_text(path, text)
    return path
