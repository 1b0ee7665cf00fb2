"""Pieces shared by the subcommands: option helpers, the error line, progress lines and the project loader (no
heavy imports: ``leadscore --help`` loads this)."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from leadscore.project import ProjectConfig

T = TypeVar("T")

# The metavar of a flag (``metavar=FLAG``): none. typer 0.29's rich help (not its plain one) shows each option's type,
# ``<bool>`` beside a flag too, as if it took a value; its own ``--help`` row keeps that.
FLAG = ""

MODEL_DIR = "--model-dir"
MODEL_DIR_ALIAS = "--models-dir"  # an older spelling (`forecast` showed it): accepted by all three, hidden in their help


# Text is printed as it is, not as rich markup: paths, column names, category values and messages hold square
# brackets ("[/x]" raised rich's MarkupError, "[bold]" was dropped); the few styled lines ask for markup=True.
console = Console(markup=False)  # results: tables, summaries, "... -> path" lines
err_console = Console(stderr=True, markup=False)  # errors, warnings, progress lines and bars


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``error: message`` on stderr, one line however narrow the terminal, the message as it is (square
    brackets too: not rich markup); the exit to raise (1: the work failed, 2: a usage error)."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", markup=True, highlight=False, soft_wrap=True)
    return typer.Exit(code)


def say(message: str) -> None:
    """A progress line on stderr (``- message``, dim), the message as it is."""
    err_console.print(f"[dim]- {escape(message)}[/]", markup=True, highlight=False)


def load_project_or_fail(path: Path) -> ProjectConfig:
    """The project file (or a bare data config) at ``path``; a bad one ends the command (exit 2)."""
    from leadscore.project import ProjectConfigError, load_project

    try:
        return load_project(path)
    except ProjectConfigError as exc:
        raise fail(str(exc), 2) from exc


def both_sources_problem(exported: str, *, used: str = "used", drop: str = "give one of them") -> str:
    """The refusal of ``--tracking-uri`` beside an exported models folder (``exported``: the option or variable
    as the user gave it, with its value), which serve, rescore and forecast share: the folder would be
    ``used`` (served) and the registry ignored; ``drop`` says what to do."""
    return f"--tracking-uri with {exported}: the exported models would be {used} and the registry ignored; {drop}"


def folder_problem(folder: Path) -> str | None:
    """Why ``folder`` (a given models or project folder) is none: "not a folder" or "no such folder"; None
    when it is one."""
    if folder.is_dir():
        return None
    return "not a folder" if folder.exists() else "no such folder"


_BOUND_WORDS = {"gt": "above", "ge": "at least", "lt": "below", "le": "at most"}


def bounds_text(field: Any) -> str | None:
    """The numeric bounds of a pydantic field as words, e.g. "above 0 and below 1"; None when it has none."""
    words = [f"{_BOUND_WORDS[name]} {getattr(rule, name):g}" for rule in getattr(field, "metadata", ())
             for name in _BOUND_WORDS if isinstance(getattr(rule, name, None), int | float)]
    return " and ".join(words) or None


def option_error_text(exc: Any, options: Mapping[str, str], model: Any, section: str = "") -> str:
    """A pydantic ValidationError of ``model`` (a typed config the command's options were copied into) as one
    line naming each option as typed, with its value: ``--interval: must be above 0 and below 1, got 1.5``.
    ``options`` maps a field to its option; an error of another field (or of the whole model) is named
    ``section.field``."""
    parts = []
    for error in exc.errors(include_url=False):
        loc = [str(part) for part in error["loc"]]
        message = error["msg"].removeprefix("Value error, ")
        if not loc or loc[0] not in options:
            parts.append(f"{'.'.join([section, *loc] if section else loc) or section or 'options'}: {message}")
            continue
        bounds = bounds_text(model.model_fields.get(loc[0]))
        is_bound = error["type"] in ("greater_than", "greater_than_equal", "less_than", "less_than_equal")
        reason = f"must be {bounds}" if bounds and is_bound else message
        value = error.get("input")
        parts.append(f"{options[loc[0]]}: {reason}, got {value:g}" if isinstance(value, float)
                     else f"{options[loc[0]]}: {reason}, got {value}")
    return "; ".join(parts) or str(exc).splitlines()[0]


def given_spelling(values: dict[str, T | None]) -> tuple[T | None, str]:
    """The value of one option spelt several ways (one parameter per spelling, e.g. ``--model-dir`` and its
    hidden alias ``--models-dir``) and the spelling the user gave (the first one when none was given), so
    that messages name the option as typed. Two spellings with different values are refused."""
    given = {name: value for name, value in values.items() if value is not None}
    if len({str(v) for v in given.values()}) > 1:
        both = " and ".join(f"{name} {value}" for name, value in given.items())
        raise fail(f"{both}: two spellings of one option with different values; give one of them", 2)
    if not given:
        return None, next(iter(values))
    name, value = next(iter(given.items()))
    return value, name


def destination_problem(path: Path, *, folder: bool) -> str | None:
    """Why ``path`` cannot receive a command's output (a folder when ``folder``, else a file), checked before
    any work; None when it can. Missing folders above it count as makeable when the nearest existing one
    takes a new entry: that is tried by creating and removing a probe file in it (root ignores permission
    bits, and read-only or pseudo file systems such as /proc refuse what ``os.access`` allows)."""
    if path.exists() and path.is_dir() != folder:
        return "exists and is not a folder" if folder else "is a folder; give a file name"
    target = path if folder else path.parent
    existing = target
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    verb = "written" if existing == target else "created"
    if not existing.is_dir():
        return f"cannot be created: {existing} is not a folder"
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".leadscore-probe."):
            pass
    except OSError as exc:
        return f"cannot be {verb}: {existing} is not writable ({exc.strerror or exc})"
    return None
