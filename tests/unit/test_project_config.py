"""The project file: sections, relative paths, clear errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from features.contract import DataConfig, FlatConfig
from leadscore.project import (
    ProjectConfigError,
    load_project,
    parse_project,
    project_yaml,
    sqlite_project,
)


def test_sections_are_typed_and_relative_paths_resolve_against_the_file(tmp_path: Path) -> None:
    (tmp_path / "leadscore.yaml").write_text(
        "name: acme\n"
        "data:\n"
        "  source: {kind: parquet, leads: exports/l.parquet, events: exports/e.parquet,"
        " outcomes: exports/o.parquet}\n"
        "features: {horizon_days: 60, windows: [30, 7]}\n"
        "training: {cv_folds: 3}\n",
        encoding="utf-8",
    )
    project = load_project(tmp_path / "leadscore.yaml")
    assert project.name == "acme"
    assert isinstance(project.data, DataConfig)
    assert Path(project.data.source.leads) == tmp_path / "exports" / "l.parquet"
    assert project.features.horizon_days == 60
    assert project.features.windows == (7, 30)
    assert project.training.cv_folds == 3


def test_points_rules_resolve_as_the_data_paths_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    data = {"source": {"kind": "csv", "leads": "~/exports/l.csv"}}
    project = parse_project({"data": data, "training": {"points_rules": "~/rules.yaml"}}, tmp_path / "conf")
    assert Path(project.data.source.leads) == tmp_path / "home" / "exports" / "l.csv"
    assert project.training.points_rules == tmp_path / "home" / "rules.yaml"  # not conf/~/rules.yaml
    relative = parse_project({"data": data, "training": {"points_rules": "rules/mine.yaml"}}, tmp_path / "conf")
    assert relative.training.points_rules == tmp_path / "conf" / "rules" / "mine.yaml"


def test_flat_mode_is_selected_by_the_mode_field(tmp_path: Path) -> None:
    project = parse_project(
        {"data": {"mode": "flat", "source": {"path": "x.csv"}, "id_column": "id", "label_column": "y"}},
        tmp_path,
    )
    assert isinstance(project.data, FlatConfig)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({}, "'data:' section is required"),
        (None, "project file: empty; it needs at least a 'data:' section"),
        (["data"], "project file: must be a mapping of sections (data:, features:, ...), got a list"),
        ({"dta": {"source": {"kind": "sql"}}, "features": {}}, "unknown section(s) ['dta']"),  # not only 'required'
        ({"data": {"source": {"kind": "sql"}}, "modle": {}}, "unknown section(s) ['modle']"),
        ({"data": {"source": {"kind": "sql"}}}, "source.url is required"),
        ({"data": {"source": {"kind": "csv"}}, "features": {"windows": [0]}}, "windows must be positive"),
    ],
)
def test_invalid_project_files_are_refused_with_the_reason(document: object, message: str, tmp_path: Path) -> None:
    with pytest.raises(ProjectConfigError, match=re.escape(message)):
        parse_project(document, tmp_path)


def test_a_file_not_in_utf8_is_refused_by_name(tmp_path: Path) -> None:
    from training.baselines import load_points_rules

    (tmp_path / "leadscore.yaml").write_bytes("name: société\ndata: {}\n".encode("latin-1"))
    with pytest.raises(ProjectConfigError, match=f"project file {tmp_path / 'leadscore.yaml'}: not UTF-8 text"):
        load_project(tmp_path / "leadscore.yaml")
    (tmp_path / "rules.yaml").write_bytes("name: règles\n".encode("latin-1"))
    with pytest.raises(ValueError, match=f"points rules file {tmp_path / 'rules.yaml'}: not UTF-8 text"):
        load_points_rules(tmp_path / "rules.yaml")


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ProjectConfigError, match=f"^project file not found: {re.escape(str(tmp_path / 'nope.yaml'))}$"):
        load_project(tmp_path / "nope.yaml")
    with pytest.raises(ProjectConfigError, match=f"project file {tmp_path} is a folder: give the file in it"):
        load_project(tmp_path)  # "-c ." said "not found", though the folder is there


def test_the_embedded_default_round_trips_through_yaml(tmp_path: Path) -> None:
    project = sqlite_project(tmp_path)
    (tmp_path / "leadscore.yaml").write_text(project_yaml(project), encoding="utf-8")
    again = load_project(tmp_path / "leadscore.yaml")
    assert again.data.source.url == project.data.source.url
    assert again.data.source.url.endswith("crm.db")


def test_the_documented_references_name_every_field() -> None:
    """README: `training/survival_config.py` documents each field of `time_to_close:`, and
    `configs/example_crm.yaml` every field of the `data:` section."""
    from features.contract import AttributesConfig, ColumnMapping, DataConfig, SourceConfig
    from training.survival_config import TimeToCloseConfig

    undocumented = [name for name, field in TimeToCloseConfig.model_fields.items()
                    if not field.description and f"``{name}``" not in (TimeToCloseConfig.__doc__ or "")]
    assert undocumented == []
    example = (Path(__file__).resolve().parents[2] / "configs" / "example_crm.yaml").read_text(encoding="utf-8")
    for model in (DataConfig, SourceConfig, ColumnMapping, AttributesConfig):
        missing = [name for name in model.model_fields if not re.search(rf"^\s*#?\s*{name}:", example, re.M)]
        assert missing == [], (model.__name__, missing)
