"""Columns without a name (an empty header cell, a separator at the end of every CSV line, a Parquet or
SQLite column named '') and attributes null in every row: never a model feature without a word."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from features.contract import DataConfig, FlatConfig
from features.loading import load_data
from features.readers import DataSourceError

COLUMNS = {"leads": {"lead_id": "Id", "created_at": "Created"},
           "events": {"lead_id": "LeadId", "occurred_at": "At", "event_type": "Type"},
           "outcomes": {"lead_id": "LeadId", "converted_at": "Won"}}
LEADS_CSV = "Id,Created,industry,\n1,2024-01-01,saas,\n2,2024-01-02,bank,\n3,2024-01-03,saas,\n"


def write_crm_csv(folder: Path, leads: str = LEADS_CSV) -> DataConfig:
    (folder / "leads.csv").write_text(leads, encoding="utf-8")
    (folder / "events.csv").write_text("LeadId,At,Type\n1,2024-02-01,email_open\n", encoding="utf-8")
    (folder / "outcomes.csv").write_text("LeadId,Won\n1,2024-03-01\n", encoding="utf-8")
    return DataConfig(source={"kind": "csv", **{t: str(folder / f"{t}.csv") for t in COLUMNS}},
                      columns=COLUMNS, reference_time="2025-01-01")


def test_a_trailing_separator_on_every_csv_line_is_dropped_with_a_note_not_made_an_attribute(tmp_path: Path) -> None:
    data, report = load_data(write_crm_csv(tmp_path))
    assert data.categorical_attributes == ["industry"] and list(data.leads.columns) == ["lead_id", "created_at",
                                                                                         "industry"]
    assert any("leads" in n and "column 4" in n and "no name" in n and "not read" in n for n in report.notes), \
        report.notes


def test_a_trailing_separator_in_a_flat_csv_is_dropped_with_a_note(tmp_path: Path) -> None:
    (tmp_path / "flat.csv").write_text("Id,y,visits,\n1,0,3,\n2,1,5,\n", encoding="utf-8")
    data, report = load_data(FlatConfig(source={"kind": "csv", "path": str(tmp_path / "flat.csv")},
                                        id_column="Id", label_column="y"))
    assert data.numeric_features == ["visits"] and data.categorical_features == []
    assert any("flat" in n and "column 4" in n and "no name" in n for n in report.notes), report.notes


@pytest.mark.parametrize("mode", ["crm", "flat"])
def test_a_csv_column_without_a_name_but_with_values_is_refused_naming_file_column_and_rows(
        tmp_path: Path, mode: str) -> None:
    # pandas' to_csv writes its row index under an empty header cell: that index became a feature "Unnamed: 0"
    frame = pd.DataFrame({"Id": [1, 2, 3], "Created": ["2024-01-01"] * 3, "industry": ["a", "b", "a"]},
                         index=[10, 11, 12])
    frame.loc[[10, 12], "y"] = 1
    text = frame.fillna(0).astype({"y": int}).to_csv()  # header ",Id,Created,industry,y"
    if mode == "crm":
        config: DataConfig | FlatConfig = write_crm_csv(tmp_path, text)
        path, key = tmp_path / "leads.csv", "data.source.leads"
    else:
        path, key = tmp_path / "flat.csv", "data.source.path"
        path.write_text(text, encoding="utf-8")
        config = FlatConfig(source={"kind": "csv", "path": str(path)}, id_column="Id", label_column="y")
    with pytest.raises(DataSourceError, match=rf"^{key}: {path}: column 1 of the header has no name but holds "
                                              r"values in 3 rows, e.g\. row 0: '10'; row 1: '11'; row 2: '12'"):
        load_data(config)


def test_a_csv_column_named_with_blanks_only_is_refused_too(tmp_path: Path) -> None:
    config = write_crm_csv(tmp_path, "Id,Created, ,industry\n1,2024-01-01,x,saas\n2,2024-01-02,,bank\n")
    with pytest.raises(DataSourceError, match=r"column 3 of the header has no name but holds values in 1 row, "
                                              r"e\.g\. row 0: 'x'"):
        load_data(config)


def parquet_config(folder: Path, leads: pa.Table) -> DataConfig:
    pq.write_table(leads, folder / "leads.parquet")
    pd.DataFrame({"LeadId": [1], "At": [pd.Timestamp("2024-02-01")], "Type": ["email_open"]}).to_parquet(
        folder / "events.parquet")
    pd.DataFrame({"LeadId": [1], "Won": [pd.Timestamp("2024-03-01")]}).to_parquet(folder / "outcomes.parquet")
    return DataConfig(source={"kind": "parquet", **{t: str(folder / f"{t}.parquet") for t in COLUMNS}},
                      columns=COLUMNS, reference_time="2025-01-01")


def test_a_parquet_column_named_empty_is_dropped_when_null_and_refused_when_not(tmp_path: Path) -> None:
    created = pa.array(pd.to_datetime(["2024-01-01", "2024-01-02"]))
    empty = pa.table({"Id": [1, 2], "Created": created, "industry": ["a", "b"], "": pa.nulls(2, pa.string())})
    data, report = load_data(parquet_config(tmp_path, empty))
    assert data.categorical_attributes == ["industry"]
    assert any("column 4" in n and "no name" in n and "leads.parquet" in n for n in report.notes), report.notes
    full = pa.table({"Id": [1, 2], "Created": created, "": ["x", None], "industry": ["a", "b"]})
    with pytest.raises(DataSourceError, match=r"leads\.parquet: column 3 has no name but holds values in 1 row, "
                                              r"e\.g\. row 0: 'x'"):
        load_data(parquet_config(tmp_path, full))



def test_two_parquet_columns_named_empty_are_judged_each(tmp_path: Path) -> None:
    """Two columns named '' (a CSV with two trailing separators, converted): Arrow's dataset reader refused the
    file ("Multiple matches for FieldRef.Name()") instead of the file being read or the column named."""
    created = pa.array(pd.to_datetime(["2024-01-01", "2024-01-02"]))
    names = ["Id", "Created", "industry", "", ""]
    empty = pa.table([[1, 2], created, ["a", "b"], pa.nulls(2, pa.string()), pa.nulls(2, pa.string())], names=names)
    data, report = load_data(parquet_config(tmp_path, empty))
    assert data.categorical_attributes == ["industry"]
    assert [n for n in report.notes if "no name" in n and "leads.parquet" in n][-2:] == [
        f"leads: column {k} of {tmp_path / 'leads.parquet'} has no name and no value in any row: not read"
        for k in (4, 5)], report.notes
    full = pa.table([[1, 2], created, ["a", "b"], pa.nulls(2, pa.string()), ["y", None]], names=names)
    with pytest.raises(DataSourceError, match=r"leads\.parquet: column 5 has no name but holds values in 1 row, "
                                              r"e\.g\. row 0: 'y'"):
        load_data(parquet_config(tmp_path, full))

def test_a_sqlite_column_named_empty_is_refused_naming_the_table_and_column(sqlite_url: str) -> None:
    # SQLAlchemy cannot reflect a column without a name (nor can PostgreSQL hold one): the table cannot be read
    engine = sa.create_engine(sqlite_url)
    with engine.begin() as conn:
        conn.exec_driver_sql('CREATE TABLE leads (Id INTEGER, Created TEXT, industry TEXT, "" TEXT)')
        conn.exec_driver_sql("INSERT INTO leads VALUES (1, '2024-01-01', 'a', NULL), (2, '2024-01-02', 'b', NULL)")
        conn.exec_driver_sql("CREATE TABLE events (LeadId INTEGER, At TEXT, Type TEXT)")
        conn.exec_driver_sql("INSERT INTO events VALUES (1, '2024-02-01', 'email_open')")
        conn.exec_driver_sql("CREATE TABLE outcomes (LeadId INTEGER, Won TEXT)")
    engine.dispose()
    config = DataConfig(source={"kind": "sql", "url": sqlite_url, "leads": "leads", "events": "events",
                                "outcomes": "outcomes"}, columns=COLUMNS, reference_time="2025-01-01")
    with pytest.raises(DataSourceError, match=r"^table 'leads' in sqlite:///.*crm\.db: column 4 has no name; "
                                              r"rename it"):
        load_data(config)


def test_an_attribute_null_in_every_row_is_noted(tmp_path: Path) -> None:
    config = write_crm_csv(tmp_path, "Id,Created,industry,fax\n1,2024-01-01,saas,\n2,2024-01-02,bank,\n")
    data, report = load_data(config)
    assert "fax" in data.categorical_attributes + data.numeric_attributes  # kept, as declared or inferred
    assert any(n.startswith("leads.fax: null in every row") and "attributes.ignore" in n for n in report.notes), \
        report.notes
    (tmp_path / "flat.csv").write_text("Id,y,fax,visits\n1,0,,3\n2,1,,5\n", encoding="utf-8")
    _, flat_report = load_data(FlatConfig(source={"kind": "csv", "path": str(tmp_path / "flat.csv")},
                                          id_column="Id", label_column="y"))
    assert any(n.startswith("flat.fax: null in every row") and "ignore" in n for n in flat_report.notes), \
        flat_report.notes


def test_validate_prints_the_dropped_column_and_the_null_attribute(tmp_path: Path) -> None:
    write_crm_csv(tmp_path, "Id,Created,fax,\n1,2024-01-01,,\n2,2024-01-02,,\n")
    (tmp_path / "leadscore.yaml").write_text(
        "data:\n"
        "  source: {kind: csv, leads: leads.csv, events: events.csv, outcomes: outcomes.csv}\n"
        "  columns: {leads: {lead_id: Id, created_at: Created}, events: {lead_id: LeadId, occurred_at: At, "
        "event_type: Type}, outcomes: {lead_id: LeadId, converted_at: Won}}\n"
        "  reference_time: '2025-01-01'\n", encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "leadscore.cli", "validate", "-c",
                             str(tmp_path / "leadscore.yaml")], capture_output=True, text=True,
                            env={**os.environ, "COLUMNS": "300", "NO_COLOR": "1"}, check=False, timeout=300)
    assert result.returncode == 0, result.stderr
    out = " ".join(result.stdout.split())
    assert "note: leads.fax: null in every row" in out
    assert "note: leads: column 4 of" in out and "has no name" in out and "Unnamed" not in out


PEAK_OF_THE_CHECK = """
import sys
import pyarrow as pa
from features.readers import unnamed_parquet_columns
print(unnamed_parquet_columns(sys.argv[1]), pa.default_memory_pool().max_memory())
"""


def test_a_parquet_column_without_a_name_is_checked_without_reading_the_named_ones(tmp_path: Path) -> None:
    """Only the columns without a name are read to see whether they hold values: the check read the whole file
    (every attribute of every row, once more than the read itself) to look at one empty column."""
    n = 2_000_000
    path = tmp_path / "leads.parquet"
    scores = {f"score_{k}": pa.array([0.5 + k] * n, pa.float64()) for k in range(5)}
    pq.write_table(pa.table({"Id": pa.array(range(n), pa.int64()), **scores, "": pa.nulls(n)}), path)
    named = 8 * 6 * n  # the named columns, in bytes
    run = subprocess.run([sys.executable, "-c", PEAK_OF_THE_CHECK, str(path)], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[2])
    positions, peak = run.stdout.split(") ")
    assert positions == "(6,"
    assert int(peak) < named / 4, (int(peak), named)
