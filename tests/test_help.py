"""Every command's --help shows every option's help text as written: rich markup must not eat
words like [model] (a table name) or munit-cli[export] (an extra)."""

from __future__ import annotations

import re

import pytest
import typer
from rich.errors import StyleSyntaxError
from rich.style import Style
from typer.testing import CliRunner

from munit_cli.cli import app

TAG = re.compile(r"(\\*)\[([^\[\]]*)\]")


def intended(text: str) -> str:
    """What the author meant to show: style tags such as [dim] and [/dim] are formatting, and a
    backslash-escaped bracket is a literal one. Anything else in brackets is text: rich would read
    it as a tag and drop it, which is the bug this test finds."""

    def replace(match: re.Match) -> str:
        slashes, tag = match.group(1), match.group(2)
        if len(slashes) % 2:  # \[ is an escaped, literal bracket
            return slashes[:-1] + f"[{tag}]"
        return slashes if is_style(tag) else match.group(0)

    return TAG.sub(replace, text)


def is_style(tag: str) -> bool:
    if tag.startswith("/"):
        return True
    try:
        Style.parse(tag)
    except StyleSyntaxError:
        return False
    return bool(tag.strip())


def normalised(text: str) -> str:
    """Words of the rendered help without the panels' box drawing, so wrapped lines join up."""
    return " ".join(re.sub(r"[\u2500-\u257f]", " ", text).split())


def commands(group, path: tuple[str, ...] = ()):
    """Every command and subcommand under `group` (typer may bring its own copy of click, so
    groups are known by their `commands`, not by class)."""
    for name, command in sorted(group.commands.items()):
        yield (*path, name), command
        if hasattr(command, "commands"):
            yield from commands(command, (*path, name))


ROOT = typer.main.get_command(app)
ALL = [((), ROOT), *commands(ROOT)]


def test_the_markup_reading_catches_eaten_words():
    assert intended("TOML config file ([model], [loss] tables)") == "TOML config file ([model], [loss] tables)"
    assert intended("pip install 'munit-cli\\[export]'") == "pip install 'munit-cli[export]'"
    assert intended("Translate.  [dim]munit translate x[/dim]") == "Translate.  munit translate x"
    assert intended("[bold red]error:[/] a") == "error: a"


@pytest.mark.parametrize("path,command", ALL, ids=[" ".join(p) or "munit" for p, _ in ALL])
def test_help_shows_every_option_intact(path, command, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("TERMINAL_WIDTH", "200")
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    shown = normalised(result.stdout)
    texts = [p.help for p in command.params if getattr(p, "help", None)]
    texts += [t for t in (command.help, command.epilog) if t]
    assert texts or not path  # every command documents something
    for text in texts:
        # the first paragraph of a command's help is its summary; typer shows all of it
        for part in intended(text).split("\n\n"):
            assert normalised(part) in shown, f"munit {' '.join(path)} --help lost text of: {part!r}"
