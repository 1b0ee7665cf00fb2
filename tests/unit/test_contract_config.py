"""Config models: YAML loading, path resolution, mode dispatch, errors that name the field."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from features.contract import (
    DataConfig,
    FlatConfig,
    config_error_text,
    parse_data_config,
    yaml_error_text,
)
from leadscore.project import ProjectConfigError, load_project

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def load_data_config(path: Path) -> DataConfig | FlatConfig:
    """The data config of a project file or of a bare data config, as the product reads it."""
    return load_project(path).data


def write_yaml(path: Path, document: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def test_crm_config_paths_resolve_against_the_yaml_folder(tmp_path: Path) -> None:
    path = write_yaml(
        tmp_path / "conf" / "data.yaml",
        {"source": {"kind": "csv", "leads": "../exports/leads.csv", "events": "/abs/events.csv"},
         "quarantine_dir": "q", "policy": "quarantine", "columns": {"leads": {"lead_id": "Id"}}},
    )
    config = load_data_config(path)
    assert isinstance(config, DataConfig) and config.mode == "crm"
    assert config.source.leads == str(tmp_path / "exports" / "leads.csv")
    assert config.source.events == "/abs/events.csv"
    assert config.source.outcomes == str(tmp_path / "conf" / "outcomes")
    assert config.quarantine_dir == tmp_path / "conf" / "q"
    assert config.columns.source_name("leads", "lead_id") == "Id"
    assert config.columns.source_name("leads", "created_at") == "created_at"


def test_sqlite_url_resolves_but_postgres_url_is_untouched(tmp_path: Path) -> None:
    sqlite = load_data_config(write_yaml(tmp_path / "a.yaml", {"source": {"kind": "sql", "url": "sqlite:///crm.db"}}))
    assert sqlite.source.url == f"sqlite:///{tmp_path / 'crm.db'}"
    pg_url = "postgresql+psycopg://u@h:5432/crm"
    pg = load_data_config(write_yaml(tmp_path / "b.yaml", {"source": {"kind": "sql", "url": pg_url}}))
    assert pg.source.url == pg_url


def test_project_file_with_data_section_and_flat_mode(tmp_path: Path) -> None:
    path = write_yaml(
        tmp_path / "leadscore.yaml",
        {"data": {"mode": "flat", "source": {"path": "leads.csv"}, "id_column": "Id", "label_column": "Won"},
         "features": {}, "training": {}},
    )
    config = load_data_config(path)
    assert isinstance(config, FlatConfig)
    assert config.source.path == str(tmp_path / "leads.csv")
    path = write_yaml(tmp_path / "misspelt.yaml", {"data": {"source": {"kind": "csv"}}, "feautres": {}})
    with pytest.raises(ProjectConfigError, match=r"unknown section\(s\) \['feautres'\]"):
        load_data_config(path)


def test_an_empty_file_is_refused_not_read_as_the_defaults(tmp_path: Path) -> None:
    (tmp_path / "data.yaml").write_text("# nothing yet\n", encoding="utf-8")
    with pytest.raises(ProjectConfigError, match=f"project file {tmp_path / 'data.yaml'}: empty"):
        load_data_config(tmp_path / "data.yaml")


def test_errors_name_the_field() -> None:
    with pytest.raises(ValidationError) as unknown:
        parse_data_config({"columns": {"events": {"when": "Date"}}})
    assert config_error_text("data", unknown.value).startswith(  # the field named once
        "data.columns.events: unknown canonical column(s) ['when']; allowed: ")
    with pytest.raises(ValidationError, match="source.url is required"):
        parse_data_config({"source": {"kind": "sql"}})
    with pytest.raises(ValidationError, match="policy"):
        parse_data_config({"policy": "lenient"})
    with pytest.raises(ValidationError, match="'Score' is in both"):
        parse_data_config(
            {"mode": "flat", "source": {"path": "x.csv"}, "id_column": "Id", "label_column": "y",
             "numeric": ["Score"], "score_columns": ["Score"]}
        )
    with pytest.raises(ValidationError, match="unknown family"):
        parse_data_config(
            {"mode": "flat", "source": {"path": "x.csv"}, "id_column": "Id", "label_column": "y",
             "families": {"behaviour": ["Visits"]}}
        )


def test_unignore_puts_columns_back_and_refuses_unknown_ones() -> None:
    config = load_data_config(PROJECT_ROOT / "configs" / "xeducation.yaml")
    assert isinstance(config, FlatConfig)
    leaky = config.unignore("Tags", "Lead Quality")
    assert "Tags" not in leaky.ignore and "Lead Quality" not in leaky.ignore
    assert "Lead Profile" in leaky.ignore and "Tags" in config.ignore
    with pytest.raises(ValueError, match="not in the ignore list"):
        config.unignore("Converted")


def test_example_crm_config_loads() -> None:
    config = load_data_config(PROJECT_ROOT / "configs" / "example_crm.yaml")
    assert isinstance(config, DataConfig)
    assert config.columns.source_name("events", "occurred_at") == "ActivityDate"
    assert config.attributes.ignore == ["Email", "Phone", "OwnerId"]


@pytest.mark.parametrize("mode", ["crm", "flat"])
def test_a_sqlite_source_takes_main_as_its_schema_and_refuses_any_other(tmp_path: Path, mode: str) -> None:
    """SQLite has no schemas (leadscore attaches no other file): ``main`` is the file itself, another name
    is refused when the config loads, not by a driver error in the middle of a job."""
    source = {"kind": "sql", "url": "sqlite:///crm.db", **({"table": "leads"} if mode == "flat" else {})}
    extra = {"mode": "flat", "id_column": "id", "label_column": "y"} if mode == "flat" else {}
    main = load_data_config(write_yaml(tmp_path / "main.yaml", {"source": {**source, "db_schema": "main"}, **extra}))
    assert main.source.db_schema == "main"
    with pytest.raises(ValueError, match="db_schema 'crm': a SQLite database has no schemas"):
        load_data_config(write_yaml(tmp_path / "crm.yaml", {"source": {**source, "db_schema": "crm"}, **extra}))
    postgres = {**source, "url": "postgresql+psycopg://u@h/db", "db_schema": "crm"}
    assert load_data_config(write_yaml(tmp_path / "pg.yaml", {"source": postgres, **extra})).source.db_schema == "crm"


@pytest.mark.parametrize(("text", "expected"), [
    ("a: 1\n---\nb: 2\n", "line 2, column 1: expected a single document in the stream started at line 1, column 1, "
                         "but found another document"),
    ("a: [1, 2\n", "line 2, column 1: expected ',' or ']', but got '<stream end>' (while parsing a flow sequence "
                   "started at line 1, column 4)"),
    ("a: 1\n a: 2\n", "line 2, column 3: mapping values are not allowed here"),
])
def test_a_yaml_error_is_one_line_that_reads_in_order(text: str, expected: str) -> None:
    """The composer's error (context "expected a single document ...", problem "but found another document")
    read "but found another document (expected a single document ...)": the context now comes first there."""
    with pytest.raises(yaml.YAMLError) as error:
        yaml.safe_load(text)
    assert yaml_error_text(error.value) == expected


@pytest.mark.parametrize(("source", "expected"), [
    ({"csv_encoding": "no-such-codec"}, r"source\.csv_encoding: unknown encoding 'no-such-codec'"),
    ({"csv_separator": ""}, r"source\.csv_separator: must be one character, got ''"),
    ({"csv_separator": "||"}, r"source\.csv_separator: must be one character, got '\|\|'"),
])
def test_a_csv_encoding_or_separator_no_reader_can_use_is_refused_naming_the_field(source: dict,
                                                                                    expected: str) -> None:
    # was a LookupError traceback at the CLI, and pandas' own words ("Py_UCS4", "Falling back to the 'python'
    # engine") naming no field
    for section in ({"source": source}, {"mode": "flat", "source": {"path": "x.csv", **source}, "id_column": "Id",
                                         "label_column": "y"}):
        with pytest.raises(ValidationError) as caught:
            parse_data_config(section)
        assert re.search(expected, config_error_text("data", caught.value))
    assert DataConfig(source={"csv_separator": "\t", "csv_encoding": "latin-1"}).source.csv_separator == "\t"


def test_a_timestamp_format_with_a_bad_directive_is_refused_naming_the_field_and_table() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_data_config({"timestamp_format": "%Q-%m"})
    assert "data.timestamp_format: 'Q' is a bad directive in format '%Q-%m'" in config_error_text("data", caught.value)
    with pytest.raises(ValidationError) as per_table:
        parse_data_config({"timestamp_format": {"leads": "%Y-%m-%d", "events": "%d.%m.%Y %K"}})
    assert "data.timestamp_format: events: 'K' is a bad directive" in config_error_text("data", per_table.value)
    assert DataConfig(timestamp_format={"leads": "%d-%m-%Y"}).timestamp_format_of("leads") == "%d-%m-%Y"


def test_two_canonical_columns_mapped_onto_one_source_column_are_refused_naming_both() -> None:
    # was reported as "events.lead_id: missing_column (column not found)" although the column is there
    with pytest.raises(ValidationError) as caught:
        parse_data_config({"columns": {"events": {"lead_id": "Id", "occurred_at": "Id"}}})
    assert ("data.columns.events: 'lead_id' and 'occurred_at' are both mapped onto source column 'Id'"
            in config_error_text("data", caught.value))
    with pytest.raises(ValidationError, match="'created_at' and 'lead_id' are both mapped onto source column 'lead_id'"):
        parse_data_config({"columns": {"leads": {"created_at": "lead_id"}}})  # lead_id keeps its own name


def test_a_flat_label_whose_positive_and_negative_values_are_the_same_is_refused() -> None:
    with pytest.raises(ValidationError, match="positive_label and negative_label must differ, both are 1"):
        parse_data_config({"mode": "flat", "source": {"path": "x.csv"}, "id_column": "Id", "label_column": "y",
                           "positive_label": 1, "negative_label": "1"})


@pytest.mark.parametrize(("positive", "negative"), [(1, "1.0"), (1, "01"), ("1e0", 1), (True, "TRUE"), ("false", False),
                                                    (True, 1), ("0.0", False)])
def test_flat_labels_the_label_reader_takes_for_one_value_are_refused(positive: object, negative: object) -> None:
    """The label column's values match numbers as numbers and a boolean label in any case: a negative label
    that is the positive one read so (1 and "1.0") made every such row positive, none negative. A boolean label
    matches a numeric column as its number (true is 1): true and 1 read a 0/1 column's 1 as both."""
    with pytest.raises(ValidationError, match="positive_label and negative_label must differ"):
        parse_data_config({"mode": "flat", "source": {"path": "x.csv"}, "id_column": "Id", "label_column": "y",
                           "positive_label": positive, "negative_label": negative})


def test_an_unknown_table_in_a_timestamp_format_is_named_once_under_the_field() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_data_config({"timestamp_format": {"leadz": "%Y"}})
    assert config_error_text("data", caught.value) == (  # was "data.timestamp_format: timestamp_format: unknown ..."
        "data.timestamp_format: unknown table(s) ['leadz']; allowed: ['leads', 'events', 'outcomes']")
