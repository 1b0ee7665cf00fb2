"""A flag's row in `leadscore <cmd> --help` shows no value placeholder: typer 0.29's rich help put ``<bool>``
beside every boolean option (its plain help does not), as if ``--backtest`` took a value."""

from __future__ import annotations

from collections.abc import Iterator

import click
import pytest
import typer.main
from typer.testing import CliRunner

from leadscore.cli import app


def _commands(group: click.Command, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    for name, command in getattr(group, "commands", {}).items():
        yield from _commands(command, (*path, name)) if getattr(command, "commands", None) else [((*path, name), command)]


COMMANDS = list(_commands(typer.main.get_command(app)))


def _flags(command: click.Command) -> list[str]:
    return [param.opts[0] for param in command.params
            if getattr(param, "is_flag", False) and not getattr(param, "hidden", False)]


def test_the_commands_have_flags_to_check() -> None:
    flagged = {path: _flags(command) for path, command in COMMANDS if _flags(command)}
    assert {("forecast",), ("train",), ("serve",), ("rescore",), ("synth",)} <= set(flagged), flagged


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[" ".join(path) for path, _ in COMMANDS])
def test_flags_render_as_flags(path: tuple[str, ...], command: click.Command) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    rows = {}  # first option name -> its row (a required option's row starts with "*")
    for line in result.output.splitlines():
        words = [w for w in line.strip("│ ").split() if w != "*"]
        if line.startswith("│") and words and words[0].startswith("--"):
            rows[words[0]] = line
    for flag in _flags(command):
        assert flag in rows, (flag, result.output)
        assert "<bool>" not in rows[flag], rows[flag]
    # typer's own --help row keeps it (no option of its API reaches that row); options taking a value keep their type
    assert [line for line in result.output.splitlines() if "<bool>" in line] == [rows["--help"]], result.output
    valued = [p.opts[0] for p in command.params if not getattr(p, "is_flag", False) and not p.hidden
              and isinstance(p, click.Option)]
    for option in valued:
        assert "<" in rows[option], rows[option]
