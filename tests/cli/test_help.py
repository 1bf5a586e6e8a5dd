"""``--help`` of every command and subcommand: no traceback, and no bracketed word (``[plot]``) eaten as markup."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import typer

from lrserve.cli.main import app
from tests.cli.conftest import Run

#: ``[plot]``, ``[server]``, ``lrserve[plot]``: what rich would take for a style tag and drop (not ``[OPTIONS]``).
BRACKETED = re.compile(r"\[[A-Za-z][^\[\]\s]*\]")


def walk(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every command of the tree (typer's click commands; a group has ``commands``), with its words."""
    yield path, command
    for name, sub in (getattr(command, "commands", None) or {}).items():
        yield from walk(sub, (*path, name))


COMMANDS = list(walk(typer.main.get_command(app)))


def written(command: Any) -> list[str]:
    """The help texts as written in the source (a ``\\[`` there is rich's escape for a literal bracket)."""
    texts = [command.help or "", command.short_help or ""]
    texts += [getattr(p, "help", None) or "" for p in command.params]
    texts += [sub.help or "" for sub in (getattr(command, "commands", None) or {}).values()]
    return [t.replace("\\[", "[") for t in texts]


def test_the_walk_finds_every_command() -> None:
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"", "serve", "validate", "preview", "token new", "token hash", "runs curve", "runs change"} <= names


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[" ".join(p) or "lrserve" for p, _ in COMMANDS])
def test_help_keeps_every_bracketed_word(lrserve: Run, path: tuple[str, ...], command: Any) -> None:
    result = lrserve(*path, "--help", env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    for text in written(command):
        for word in BRACKETED.findall(text):
            assert word in result.output, f"{' '.join(path)} --help lost {word!r}"
    assert not re.search(r"\(needs( the)?\s*(extra)?\)", result.output)


def test_the_plot_extra_is_named(lrserve: Run) -> None:
    for path in (("preview",), ("runs", "curve")):
        assert "[plot]" in lrserve(*path, "--help", env={"COLUMNS": "250"}).output
