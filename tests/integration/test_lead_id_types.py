"""Lead ids stored as text in the leads table ('1.0', written by a float column; 'X3') and as integers in
events and outcomes: the unknown_lead violation says that the id types differ."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from features.contract import UNKNOWN_LEAD, ContractError, DataConfig
from features.loading import load_crm

COLUMNS = {"leads": {"lead_id": "Id", "created_at": "Created"},
           "events": {"lead_id": "LeadId", "occurred_at": "At", "event_type": "Type"},
           "outcomes": {"lead_id": "LeadId", "converted_at": "Won"}}


def frames(lead_ids: list[str]) -> dict[str, pd.DataFrame]:
    return {
        "leads": pd.DataFrame({"Id": lead_ids, "Created": ["2024-01-01", "2024-01-02", "2024-01-03"],
                               "industry": ["a", "b", "a"]}),
        "events": pd.DataFrame({"LeadId": [1, 2, 2, 3], "At": ["2024-02-01"] * 4,
                                "Type": ["email_open", "page_view", "form_fill", "email_open"]}),
        "outcomes": pd.DataFrame({"LeadId": [2], "Won": ["2024-03-01"]}),
    }


def write(kind: str, folder: Path, tables: dict[str, pd.DataFrame]) -> DataConfig:
    if kind == "sqlite":
        url = f"sqlite:///{folder / 'crm.db'}"
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            for name, frame in tables.items():  # leads.Id a TEXT column, the others INTEGER
                frame.to_sql(name, conn, index=False)
        engine.dispose()
        return DataConfig(source={"kind": "sql", "url": url, **{t: t for t in tables}}, columns=COLUMNS,
                          reference_time="2025-01-01")
    ext = "csv" if kind == "csv" else "parquet"
    for name, frame in tables.items():
        if kind == "csv":
            frame.to_csv(folder / f"{name}.csv", index=False)
        else:
            frame.to_parquet(folder / f"{name}.parquet", index=False)  # leads.Id a string column, the others int64
    return DataConfig(source={"kind": kind, **{t: str(folder / f"{t}.{ext}") for t in tables}}, columns=COLUMNS,
                      reference_time="2025-01-01")


@pytest.mark.parametrize(("kind", "ids"), [("sqlite", ["1.0", "2.0", "3.0"]), ("parquet", ["1.0", "2.0", "3.0"]),
                                           ("sqlite", ["1.0", "2.0", "X3"]), ("parquet", ["1.0", "2.0", "X3"]),
                                           ("csv", ["1.0", "2.0", "X3"])])
def test_text_ids_beside_numbers_say_the_id_types_differ(kind: str, ids: list[str], tmp_path: Path) -> None:
    """Every event and outcome was reported unknown_lead, with nothing saying why."""
    with pytest.raises(ContractError) as caught:
        load_crm(write(kind, tmp_path, frames(ids)))
    unknown = [v for v in caught.value.violations if v.rule == UNKNOWN_LEAD]
    assert {v.table for v in unknown} == {"events", "outcomes"}
    for violation in unknown:
        assert violation.detail == (f"the id types differ: leads.lead_id holds text ids (e.g. '1.0'), "
                                    f"{violation.table}.lead_id numbers; they are matched as text, where '1.0' is "
                                    "not '1': store the ids alike in every table"), violation.detail


def test_text_ids_of_the_same_type_everywhere_get_no_such_detail(tmp_path: Path) -> None:
    tables = frames(["A1", "A2", "A3"])
    tables["events"]["LeadId"] = ["A1", "A2", "A2", "Z9"]  # one unknown id, text as the leads table's
    tables["outcomes"]["LeadId"] = ["A2"]
    with pytest.raises(ContractError) as caught:
        load_crm(write("sqlite", tmp_path, tables))
    unknown = [v for v in caught.value.violations if v.rule == UNKNOWN_LEAD]
    assert [v.table for v in unknown] == ["events"] and "id types differ" not in unknown[0].detail


@pytest.mark.parametrize("kind", ["csv", "sqlite", "parquet"])
def test_an_unknown_number_among_text_ids_of_one_type_gets_no_such_detail(kind: str, tmp_path: Path) -> None:
    """Events whose ids are text like the leads table's ('X1'), one of them an unknown '7': the id types are the
    same, and nothing would match if they were compared as numbers; the detail said the id types differ."""
    tables = frames(["X1", "X2", "X3"])
    tables["events"]["LeadId"] = ["X1", "X2", "X2", "7"]
    tables["outcomes"]["LeadId"] = ["X2"]
    with pytest.raises(ContractError) as caught:
        load_crm(write(kind, tmp_path, tables))
    unknown = [v for v in caught.value.violations if v.rule == UNKNOWN_LEAD]
    assert [v.table for v in unknown] == ["events"] and unknown[0].n_rows == 1
    assert "id types differ" not in unknown[0].detail, unknown[0].detail
