"""The model zoo (issue 9): manifests, sha256-checked resumable downloads from a local HTTP
server on 127.0.0.1, safe unpacking, and ``snnbench.load("zoo:NAME")``."""

from __future__ import annotations

import io
import sys
import tarfile
import threading
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import snnbench
from snnbench import zoo
from snnbench.cli import app
from snnbench.errors import SnnbenchError

MODEL = "vanilla-tiny-digits"
runner = CliRunner()


class FileServer:
    """Files by path; ``/drop/...`` closes the connection after ``cut`` bytes the first time;
    ``/short/...`` serves a truncated copy (with a consistent Content-Length); Range requests
    are honoured. Every request's path and Range header are logged."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.log: list[tuple[str, str | None]] = []
        self.cut = 0
        self.dropped: set[str] = set()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                server.log.append((self.path, self.headers.get("Range")))
                name = self.path.split("/", 2)[-1]
                data = server.files.get(name)
                if data is None:
                    self.send_error(404, "Not Found")
                    return
                if self.path.startswith("/short/"):
                    data = data[: len(data) // 2]
                start = 0
                ranged = self.headers.get("Range", "")
                if ranged.startswith("bytes="):
                    start = int(ranged[len("bytes=") :].split("-")[0])
                    if start >= len(data):
                        self.send_error(416, "Range Not Satisfiable")
                        return
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(data) - start))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                body = data[start:]
                if self.path.startswith("/drop/") and self.path not in server.dropped:
                    server.dropped.add(self.path)
                    self.wfile.write(body[: server.cut])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)


@pytest.fixture
def server():
    srv = FileServer()
    srv.thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


@pytest.fixture(scope="module")
def packed(trained_home, tmp_path_factory):
    """The trained digits model packed by ``zoo add``: (entry, archive bytes)."""
    tmp = tmp_path_factory.mktemp("zoo")
    entry, archive = zoo.add(
        trained_home / "models" / MODEL,
        "http://unused/x.tar",
        manifest=tmp / "models.toml",
        out=tmp / "dist",
        licence="CC-BY-4.0",
    )
    return entry, archive.read_bytes()


def manifest_for(tmp_path: Path, entry: zoo.ZooEntry, urls: list[str], **changes) -> Path:
    import dataclasses

    path = tmp_path / "models.toml"
    zoo.write_entry(dataclasses.replace(entry, urls=tuple(urls), **changes), path)
    return path


def pull(manifest: Path, home: Path, name: str = MODEL):
    return runner.invoke(
        app, ["zoo", "pull", name, "--manifest", str(manifest), "--home", str(home), "--quiet"]
    )


def one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def no_model_left(home: Path) -> bool:
    models = home / "models"
    return not models.exists() or not any(models.iterdir())


def test_add_writes_the_entry_from_the_card(packed, trained_home, tmp_path):
    entry, data = packed
    card = snnbench.load_card(trained_home / "models" / MODEL)
    assert entry.sha256 == __import__("hashlib").sha256(data).hexdigest() and entry.size == len(
        data
    )
    assert (entry.defense, entry.arch, entry.dataset, entry.timesteps) == (
        "vanilla",
        "tiny",
        "digits",
        4,
    )
    assert entry.weights_sha256 == card["weights_sha256"] and entry.licence == "CC-BY-4.0"
    assert (
        entry.extra["settings"] == card["spec"]["settings"] and entry.extra["train"]["epochs"] == 6
    )
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        assert sorted(archive.getnames()) == ["card.json", "model.safetensors"]
    result = runner.invoke(
        app,
        [
            "zoo",
            "add",
            str(trained_home / "models" / MODEL),
            "--url",
            "https://example.org/m.tar",
            "--manifest",
            str(tmp_path / "m.toml"),
            "--dist",
            str(tmp_path / "dist"),
        ],
    )
    assert result.exit_code == 0, result.output
    again = zoo.read_manifest(tmp_path / "m.toml")[MODEL]
    assert again.sha256 == entry.sha256 and again.urls == ("https://example.org/m.tar",)
    assert again.extra["settings"] == entry.extra["settings"]  # the recipe survives TOML
    listed = runner.invoke(app, ["zoo", "list", "--manifest", str(tmp_path / "m.toml")])
    assert listed.exit_code == 0 and MODEL in listed.stdout and "vanilla" in listed.stdout


def test_pull_then_load_predicts(packed, server, trained_home, tmp_path, monkeypatch):
    entry, data = packed
    server.files["m.tar"] = data
    manifest = manifest_for(tmp_path, entry, [f"{server.url}/files/m.tar"])
    home = tmp_path / "home"
    result = pull(manifest, home)
    assert result.exit_code == 0, result.output
    assert "pulled" in result.stdout and (home / "models" / MODEL / "card.json").is_file()
    assert "up to date" in pull(manifest, home).stdout and len(server.log) == 1
    x, y = snnbench.load_dataset("digits", "test")
    ours = snnbench.load(MODEL, home)
    original = snnbench.load(trained_home / "models" / MODEL)
    with torch.no_grad():
        logits = ours(x[:64])
        assert torch.equal(logits, original(x[:64]))
    assert (logits.argmax(1) == y[:64]).float().mean() > 0.3
    # load("zoo:NAME") pulls on first use into another home
    monkeypatch.setenv("SNNBENCH_ZOO", str(manifest))
    fresh = tmp_path / "fresh"
    model = snnbench.load(f"zoo:{MODEL}", fresh)
    assert (fresh / "models" / MODEL / "model.safetensors").is_file()
    assert model(x[:2]).shape == (2, 10)


def test_truncated_file_is_refused_and_nothing_kept(packed, server, tmp_path):
    entry, data = packed
    server.files["m.tar"] = data
    home = tmp_path / "home"
    line = one_line_error(pull(manifest_for(tmp_path, entry, [f"{server.url}/short/m.tar"]), home))
    assert "does not match the manifest" in line and f"got {len(data) // 2} bytes" in line
    assert no_model_left(home) and not list((home / "cache" / "zoo").iterdir())


def test_wrong_checksum_is_refused(packed, server, tmp_path):
    entry, data = packed
    server.files["m.tar"] = data
    home = tmp_path / "home"
    manifest = manifest_for(tmp_path, entry, [f"{server.url}/files/m.tar"], sha256="0" * 64)
    assert "sha256" in one_line_error(pull(manifest, home))
    assert no_model_left(home) and not list((home / "cache" / "zoo").iterdir())


def test_missing_file_and_missing_checksum(packed, server, tmp_path):
    entry, _ = packed
    home = tmp_path / "home"
    line = one_line_error(
        pull(manifest_for(tmp_path, entry, [f"{server.url}/files/none.tar"]), home)
    )
    assert "HTTP 404" in line and no_model_left(home)
    server.log.clear()
    manifest = manifest_for(tmp_path, entry, [f"{server.url}/files/m.tar"], sha256="")
    assert "no valid sha256" in one_line_error(pull(manifest, home))
    assert server.log == []  # nothing fetched without a checksum
    assert "no zoo model 'vanila-tiny-digits'" in one_line_error(
        pull(manifest, home, "vanila-tiny-digits")
    )


def test_dropped_connection_resumes_with_a_range_request(packed, server, tmp_path):
    entry, data = packed
    server.files["m.tar"] = data
    server.cut = len(data) // 3
    home = tmp_path / "home"
    # a mirror that 404s comes first: the next url is tried
    manifest = manifest_for(
        tmp_path, entry, [f"{server.url}/files/gone.tar", f"{server.url}/drop/m.tar"]
    )
    result = pull(manifest, home)
    assert result.exit_code == 0, result.output
    drops = [r for p, r in server.log if p == "/drop/m.tar"]
    assert drops == [None, f"bytes={server.cut}-"]
    assert snnbench.load(MODEL, home) is not None


def test_a_broken_transfer_keeps_its_part_for_the_next_pull(packed, server, tmp_path, monkeypatch):
    entry, data = packed
    server.files["m.tar"] = data
    server.cut = 1000
    monkeypatch.setattr(zoo, "ATTEMPTS", 1)
    home = tmp_path / "home"
    manifest = manifest_for(tmp_path, entry, [f"{server.url}/drop/m.tar"])
    assert "rerun to resume" in one_line_error(pull(manifest, home))
    assert no_model_left(home)
    assert (home / "cache" / "zoo" / f"{entry.sha256}.part").stat().st_size == 1000
    assert pull(manifest, home).exit_code == 0
    assert server.log[-1] == ("/drop/m.tar", "bytes=1000-")


def _tar(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.mark.parametrize(
    "name", ["../card.json", "/tmp/card.json", "extra.txt", "sub/../card.json"]
)
def test_unsafe_archives_are_refused(tmp_path, name):
    path = tmp_path / "bad.tar"
    path.write_bytes(_tar({name: b"{}", "model.safetensors": b"x"}))
    target = tmp_path / "out"
    target.mkdir()
    with pytest.raises(SnnbenchError, match="unsafe path|exactly"):
        zoo.unpack(path, target)
    assert not list(target.iterdir()) and not (tmp_path / "card.json").exists()


def test_hub_urls_need_huggingface_hub(packed, tmp_path, monkeypatch):
    entry, data = packed
    manifest = manifest_for(tmp_path, entry, ["hf://owner/repo/m.tar"])
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    assert "pip install 'huggingface_hub>=0.20'" in one_line_error(
        pull(manifest, tmp_path / "home")
    )
    (tmp_path / "hub.tar").write_bytes(data)
    calls = []

    def hf_hub_download(repo_id: str, filename: str, cache_dir: str) -> str:
        calls.append((repo_id, filename))
        return str(tmp_path / "hub.tar")

    monkeypatch.setitem(
        sys.modules, "huggingface_hub", types.SimpleNamespace(hf_hub_download=hf_hub_download)
    )
    assert pull(manifest, tmp_path / "home").exit_code == 0
    assert calls == [("owner/repo", "m.tar")]


@pytest.mark.parametrize("name", sorted(zoo.read_manifest(zoo.MANIFEST)) or ["(empty)"])
def test_the_packaged_manifest_is_complete(name):
    """Every shipped entry can be checked: a sha256, a size, a url, the card's fields."""
    entries = zoo.read_manifest(zoo.MANIFEST)
    if not entries:
        pytest.skip("no model is hosted yet")
    entry = entries[name]
    assert len(entry.sha256) == 64 and entry.size > 0 and entry.urls and entry.weights_sha256
    assert entry.defense and entry.arch and entry.dataset and entry.timesteps and entry.licence


@pytest.mark.parametrize(
    "name",
    [
        n
        for n, e in sorted(zoo.read_manifest(zoo.MANIFEST).items())
        if e.urls and "://" not in e.urls[0]
    ],
)
def test_a_pinned_model_pulls_by_name_and_keeps_its_clean_accuracy(name, tmp_path):
    """The models shipped beside the manifest (zoo/pinned/) pull offline, verify, and score
    the clean accuracy their card recorded on the digits test split."""
    from snnbench.data import dataset_info

    entry = zoo.read_manifest(zoo.MANIFEST)[name]
    folder, _ = zoo.pull(name, home=tmp_path / "home", manifest=zoo.MANIFEST)
    model = snnbench.load(str(folder), device="cpu")
    stochastic = getattr(model, "stochastic", False)
    x, y = dataset_info(entry.dataset).loader("test", None)
    torch.manual_seed(0)
    with torch.no_grad():
        acc = (model(x).argmax(1) == y).float().mean().item()
    tolerance = 0.03 if stochastic else 1e-4  # a fresh noise draw for tgo; 4 digits kept
    assert abs(acc - entry.clean_accuracy) <= tolerance, (name, acc, entry.clean_accuracy)
