"""Helpers for options shared by several subcommands (no heavy imports: ``leadscore --help`` loads this)."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import typer

T = TypeVar("T")

MODEL_DIR = "--model-dir"
MODEL_DIR_ALIAS = "--models-dir"  # an older spelling (`forecast` showed it): accepted by all three, hidden in their help


def refusal(message: str, code: int = 2) -> typer.Exit:
    """``error: message`` on stderr, one line however narrow the terminal (exit 2: a usage error)."""
    from rich.console import Console

    Console(stderr=True).print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def given_spelling(values: dict[str, T | None]) -> tuple[T | None, str]:
    """The value of one option spelt several ways (one parameter per spelling, e.g. ``--model-dir`` and its
    hidden alias ``--models-dir``) and the spelling the user gave (the first one when none was given), so
    that messages name the option as typed. Two spellings with different values are refused."""
    given = {name: value for name, value in values.items() if value is not None}
    if len({str(v) for v in given.values()}) > 1:
        both = " and ".join(f"{name} {value}" for name, value in given.items())
        raise refusal(f"{both}: two spellings of one option with different values; give one of them")
    if not given:
        return None, next(iter(values))
    name, value = next(iter(given.items()))
    return value, name


def output_folder_problem(path: Path) -> str | None:
    """Why ``path`` cannot be (or become) an output folder, before any work: it is a file, or one of its
    parents is; None when it can (it may still be unwritable: creating it says so)."""
    if path.exists() and not path.is_dir():
        return "is a file, not a folder"
    if any(parent.exists() and not parent.is_dir() for parent in path.parents):
        return "a parent of it is a file, not a folder"
    return None


def make_output_folder(path: Path, option: str) -> None:
    """Create the output folder ``path`` given by ``option``: a usage error (exit 2) when it is a file or
    under one, a run failure (exit 1) when the system refuses (permissions, read-only file system)."""
    if problem := output_folder_problem(path):
        raise refusal(f"{option} {path}: {problem}")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise refusal(f"{option} {path}: cannot create the folder ({exc.strerror or exc})", 1) from exc
