"""Helpers for options shared by several subcommands (no heavy imports: ``leadscore --help`` loads this)."""

from __future__ import annotations

from typing import TypeVar

import typer

T = TypeVar("T")

MODEL_DIR = "--model-dir"
MODEL_DIR_ALIAS = "--models-dir"  # the spelling of `forecast`; accepted by `serve` and `rescore`, hidden in their help


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
