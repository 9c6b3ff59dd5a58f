"""Every shell command in README.md and docs/*.md runs as written on a fresh clone.

The commands are the lines of the documents' code blocks (indented by four spaces, or fenced
with no language, ``bash``, ``sh``, ``shell`` or ``console``) that start with ``snnbench``,
``pip``, ``python`` or ``pytest`` (``&&`` chains are split; a trailing ``\\`` joins lines).

Marker convention: a command that needs more than a fresh clone on a small CPU machine ends with
a comment ``# needs: WHAT`` (WHAT one or more of ``gpu``, ``cifar``, ``dvs``, ``data``, ``long``
(minutes or more), ``home`` (models or results an earlier command made), ``ray``, ``network``;
e.g. ``snnbench run cifar10-tgo   # needs: gpu, cifar``). Such a command is never run.

What is checked, for every command (marked or not):

- ``snnbench``: the subcommand exists and every ``--option`` on the line is one of its options
  (or a global one); names that must exist do (``run RECIPE``, ``train DEFENSE``, ``--suite``,
  ``--attacks`` (each entry, with the suite-member grammar), ``--layout``, ``--arch``,
  ``--data``, ``zoo pull NAME``), unless the line is a synopsis (``[...]``, ``{a|b}``, ``...``,
  upper-case placeholders such as ``MODEL``);
- ``pip install``: only ``.``, ``-e .`` or ``'.[EXTRA]'`` with an extra of pyproject.toml for
  snnbench itself (no index serves ``snnbench`` until a release exists);
- ``python benchmarks/X.py``: the script exists and takes each ``--option`` named.

Unmarked cheap commands run for real, in a temporary folder with its own home: ``--version``,
``--help``, ``list``, ``zoo list`` and ``zoo pull`` (the pinned models, offline). Everything
else (training, attacks, reports) is parse-checked only, to keep this test to seconds.
"""

from __future__ import annotations

import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from snnbench.cli import app

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMANDS = ("snnbench", "pip", "python", "pytest")
SHELL_FENCES = ("", "bash", "sh", "shell", "console")
NEEDS = {"gpu", "cifar", "dvs", "data", "long", "home", "ray", "network"}
PLACEHOLDER = re.compile(r"^[A-Z][A-Z0-9_]*([.:=/-][A-Za-z0-9_.]*)?$")
RUN_FOR_REAL = {("--version",), ("--help",), ("list",), ("zoo", "list"), ("zoo", "pull")}


@dataclass(frozen=True)
class Command:
    doc: str
    line: int
    text: str  # the command without its comment
    needs: frozenset

    def __str__(self) -> str:
        return f"{self.doc}:{self.line}: {self.text}"


def _blocks(text: str) -> list[tuple[int, list[str]]]:
    """(first line number, lines) of each shell code block: fenced or indented by 4 spaces."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        fence = re.match(r"^\s*```(\w*)", lines[i])
        if fence:
            end = next(
                (j for j in range(i + 1, len(lines)) if lines[j].strip().startswith("```")),
                len(lines),
            )
            if fence.group(1) in SHELL_FENCES:
                blocks.append((i + 2, lines[i + 1 : end]))
            i = end + 1
            continue
        if lines[i].startswith("    ") and (i == 0 or not lines[i - 1].strip()):
            end = i
            while end < len(lines) and (lines[end].startswith("    ") or not lines[end].strip()):
                end += 1
            blocks.append((i + 1, [line[4:] for line in lines[i:end]]))
            i = end
            continue
        i += 1
    return blocks


def _commands(path: Path) -> list[Command]:
    found = []
    for start, block in _blocks(path.read_text(encoding="utf-8")):
        joined: list[tuple[int, str]] = []
        for offset, raw in enumerate(block):
            if joined and joined[-1][1].rstrip().endswith("\\"):
                joined[-1] = (joined[-1][0], joined[-1][1].rstrip()[:-1] + " " + raw.strip())
            else:
                joined.append((start + offset, raw.strip()))
        for number, line in joined:
            code, _, comment = line.partition(" #")
            needs = re.search(r"needs:\s*([\w ,]+)", comment)
            wanted = (
                frozenset(w.strip() for w in needs.group(1).split(",")) if needs else frozenset()
            )
            for part in code.split("&&"):
                part = part.strip()
                if part.split(" ", 1)[0] in COMMANDS:
                    found.append(Command(path.relative_to(ROOT).as_posix(), number, part, wanted))
    return found


ALL = [c for doc in DOCS for c in _commands(doc)]


def test_the_docs_have_commands_and_markers_are_known():
    assert len(ALL) > 40 and any(c.text.startswith("snnbench run") for c in ALL)
    unknown = [f"{c}: needs {sorted(c.needs - NEEDS)}" for c in ALL if c.needs - NEEDS]
    assert not unknown, unknown


# --- snnbench ----------------------------------------------------------------------------------

CLICK = typer.main.get_command(app)


def _synopsis(tokens: list[str]) -> bool:
    return any(
        t.startswith("[")
        or t.endswith("]")
        or "{" in t
        or "|" in t
        or "..." in t
        or PLACEHOLDER.match(t)
        for t in tokens
    )


def _split_snnbench(tokens: list[str]) -> tuple[tuple[str, ...], Any, list[str]]:
    """(the command path, its click command, the remaining tokens) of ``snnbench ...``."""
    group: Any = CLICK
    path: list[str] = []
    rest = tokens[1:]
    while rest:
        token = rest[0].strip("[]")
        if token in ("--threads",):  # the global option and its value
            rest = rest[2:]
            continue
        if token in ("--version", "--help"):
            return (token,), group, rest[1:]
        if token in getattr(group, "commands", {}):
            group, path, rest = group.commands[token], [*path, token], rest[1:]
            continue
        break
    return tuple(path), group, rest


def _options(command: Any) -> set[str]:
    names = {"--help"}
    for param in [*command.params, *CLICK.params]:
        names.update(getattr(param, "opts", []))
        names.update(getattr(param, "secondary_opts", []))
    return names


def _value(tokens: list[str], option: str) -> str | None:
    for i, token in enumerate(tokens):
        if token == option and i + 1 < len(tokens):
            return tokens[i + 1]
        if token.startswith(option + "="):
            return token.split("=", 1)[1]
    return None


def _check_names(path: tuple[str, ...], rest: list[str]) -> None:
    """Every concrete name on the line exists (a misspelt one raises SnnbenchError)."""
    from snnbench import api
    from snnbench.archs import ARCHS
    from snnbench.attacks.suites import SUITES
    from snnbench.data import DATASETS
    from snnbench.defenses.compose import parse_defense
    from snnbench.layouts import get_layout
    from snnbench.recipe import recipe_path
    from snnbench.zoo import get_entry

    positional = [
        t
        for i, t in enumerate(rest)
        if not t.startswith("-") and (i == 0 or not rest[i - 1].startswith("--"))
    ]
    if path == ("run",) and positional and not positional[0].endswith(".toml"):
        recipe_path(positional[0])  # a packaged recipe (a .toml path is the user's file)
    if path == ("train",) and positional:
        parse_defense(positional[0])
    if path == ("zoo", "pull") and positional:
        get_entry(positional[0])
    if (suite := _value(rest, "--suite")) is not None:
        SUITES.get(suite)
    if (layout := _value(rest, "--layout")) is not None:
        get_layout(layout)
    if (arch := _value(rest, "--arch")) is not None:
        ARCHS.get(arch)
    if (data := _value(rest, "--data")) is not None:
        DATASETS.get(data)
    if (attacks := _value(rest, "--attacks")) is not None:
        for name in attacks.split(","):
            api.named_attack(name, 8 / 255, "Linf", None, 1)


SNNBENCH = [c for c in ALL if c.text.startswith("snnbench")]


@pytest.mark.parametrize("command", SNNBENCH, ids=str)
def test_snnbench_command_parses(command):
    tokens = shlex.split(command.text)
    path, click_command, rest = _split_snnbench(tokens)
    if rest[:1] == ["COMMAND"]:  # the README's `snnbench [--threads N] COMMAND`
        return
    assert path, f"{command}: no such snnbench command"
    known = _options(click_command)
    used = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", command.text))
    assert used <= known, f"{command}: unknown option(s) {sorted(used - known)}"
    if not _synopsis(rest):
        _check_names(path, rest)


CHEAP = [
    c
    for c in SNNBENCH
    if not c.needs
    and _split_snnbench(shlex.split(c.text))[0] in RUN_FOR_REAL
    and not _synopsis(_split_snnbench(shlex.split(c.text))[2])
]


@pytest.mark.parametrize("command", CHEAP, ids=str)
def test_cheap_snnbench_command_runs(command, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SNNBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SNNBENCH_ZOO", raising=False)
    result = CliRunner().invoke(app, shlex.split(command.text)[1:])
    assert result.exit_code == 0, f"{command}: exit {result.exit_code}\n{result.output}"


def test_some_commands_run_for_real():
    assert {c.text.split()[1] for c in CHEAP} >= {"list", "zoo", "--version"}


# --- pip and python -----------------------------------------------------------------------------

EXTRAS = set(
    tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
)


@pytest.mark.parametrize("command", [c for c in ALL if c.text.startswith("pip install")], ids=str)
def test_pip_installs_snnbench_from_the_clone(command):
    for token in shlex.split(command.text)[2:]:
        assert not token.lower().startswith("snnbench"), (
            f"{command}: no package index serves snnbench; install from the clone (pip install .)"
        )
        extra = re.fullmatch(r"\.\[([\w,-]+)\]", token)
        if extra:
            assert set(extra.group(1).split(",")) <= EXTRAS, f"{command}: unknown extra"


@pytest.mark.parametrize(
    "command", [c for c in ALL if c.text.startswith("python benchmarks/")], ids=str
)
def test_benchmark_scripts_exist_with_their_options(command):
    tokens = shlex.split(command.text)
    script = ROOT / tokens[1]
    assert script.is_file(), f"{command}: no {tokens[1]}"
    source = script.read_text(encoding="utf-8")
    for option in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", command.text):
        assert f'"{option}"' in source or f"'{option}'" in source, (
            f"{command}: {tokens[1]} has no option {option}"
        )


def test_the_checks_catch_broken_commands(tmp_path, monkeypatch):
    """Each check fails on a command it must refuse (so a passing run means something)."""
    from snnbench.errors import SnnbenchError

    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (tmp_path / "bad.md").write_text(
        "Text.\n\n    snnbench attack --atacks fgsm\n    snnbench attack --attacks apgd-ce:2x\n"
        "    snnbench run digit\n    pip install 'snnbench[dvs]'\n    snnbench frobnicate\n\n"
        "```bash\npython benchmarks/none.py --fast   # needs: gpu\n```\n"
    )
    bad = _commands(tmp_path / "bad.md")
    assert [c.line for c in bad] == [3, 4, 5, 6, 7, 10] and bad[-1].needs == {"gpu"}
    for command in (bad[0], bad[4]):
        with pytest.raises(AssertionError):
            test_snnbench_command_parses(command)
    for command in (bad[1], bad[2]):
        with pytest.raises(SnnbenchError):
            test_snnbench_command_parses(command)
    with pytest.raises(AssertionError):
        test_pip_installs_snnbench_from_the_clone(bad[3])
    with pytest.raises(AssertionError):
        test_benchmark_scripts_exist_with_their_options(bad[5])
