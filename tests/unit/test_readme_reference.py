"""The README names every key of the project file, every option of the CLI and every LEADSCORE_* variable the code
reads (what is undocumented fails here, naming it)."""

from __future__ import annotations

import re
import typing
from collections.abc import Iterator
from pathlib import Path

import typer.main
from pydantic import BaseModel

from features.contract import DataConfig, FlatConfig
from leadscore.cli import app
from leadscore.project import ProjectConfig

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _keys(model: type[BaseModel], prefix: str = "") -> Iterator[str]:
    for name, field in model.model_fields.items():
        yield prefix + name
        for sub in typing.get_args(field.annotation) or (field.annotation,):
            if isinstance(sub, type) and issubclass(sub, BaseModel):
                yield from _keys(sub, f"{prefix}{name}.")


def test_every_project_file_key_is_in_the_reference() -> None:
    reference = README.split("### Project file reference", 1)[1].split("\n## ", 1)[0]
    models = [DataConfig, FlatConfig, *(ProjectConfig.model_fields[s].annotation for s in
                                        ("features", "training", "time_to_close", "forecast"))]
    keys = {"name"} | {key for model in models for key in _keys(model)}  # type: ignore[arg-type]
    missing = sorted(k for k in keys if not re.search(rf"`{re.escape(k.rsplit('.', 1)[-1])}:?`", reference))
    assert not missing, f"project file keys not in README's 'Project file reference': {missing}"


def _commands(group: typing.Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, typing.Any]]:
    if hasattr(group, "commands"):  # a group (typer carries its own click: duck-typed)
        for name, command in group.commands.items():
            yield from _commands(command, (*path, name))
    else:
        yield " ".join(path), group


def test_every_cli_option_is_in_the_readme() -> None:
    missing = []
    for name, command in _commands(typer.main.get_command(app)):
        *group, last = name.split()  # `leadscore models promote / rollback / export / list` names all four
        if not re.search(rf"`leadscore {' '.join(group)}[^`]*\b{last}\b", README):
            missing.append(f"leadscore {name}")
        options = [p for p in command.params if p.param_type_name == "option" and not p.hidden and "--help" not in p.opts]
        for param in options:  # named under any of its names (-c for --config)
            if not any(re.search(rf"`[^`]*(?<![\w-]){re.escape(opt)}\b", README) for opt in param.opts):
                missing.append(f"{name} {param.opts[0]}")
    assert not missing, f"options not in README: {missing}"


def test_every_leadscore_variable_the_code_reads_is_in_the_readme() -> None:
    sources = [p for folder in ("leadscore", "features", "training", "serving", "notebooks", "tests")
               for p in (ROOT / folder).rglob("*") if p.suffix in (".py", ".ipynb") and p != Path(__file__)]
    names = {m for p in sources for m in re.findall(r"LEADSCORE_[A-Z][A-Z_]*[A-Z]", p.read_text(encoding="utf-8"))}
    assert names, "no LEADSCORE_* variable found: the search is broken"
    missing = sorted(n for n in names if f"`{n}`" not in README and f"`{n}=" not in README)
    assert not missing, f"variables not in README: {missing}"


def test_every_points_rules_key_is_in_the_readme() -> None:
    from training.baselines import ColumnRule, FitRule, PointsRules

    keys = {f.alias or name for model in (PointsRules, FitRule, ColumnRule) for name, f in model.model_fields.items()}
    missing = sorted(k for k in keys if not re.search(rf"`({k}[`:]|\{{[^`]*\b{k}\b)", README))
    assert not missing, f"points rules keys not in README: {missing}"
