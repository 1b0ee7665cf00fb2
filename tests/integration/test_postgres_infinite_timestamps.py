"""PostgreSQL's ``infinity`` / ``-infinity`` timestamps and dates (and years past 9999, which no Python
datetime holds) are contract violations naming table, column and rows, not a failed read."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from features.contract import WRONG_TYPE, ContractError, DataConfig
from features.loading import load_crm

pytestmark = pytest.mark.postgres

COLUMNS = {"leads": {"lead_id": "id", "created_at": "created"},
           "events": {"lead_id": "lead", "occurred_at": "at", "event_type": "kind"},
           "outcomes": {"lead_id": "lead", "converted_at": "won"}}


@pytest.fixture
def schema(postgres_server_url: str) -> Iterator[tuple[str, str]]:
    """(url, schema): a schema of its own in the test database, dropped afterwards."""
    name = f"leadscore_inf_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(postgres_server_url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{name}"')
            conn.exec_driver_sql(f'CREATE TABLE "{name}".leads (id bigint, created timestamp, industry text)')
            conn.exec_driver_sql(f'''INSERT INTO "{name}".leads VALUES (1, '2024-01-01', 'a'), (2, 'infinity', 'b'),
                                     (3, '-infinity', 'a'), (4, '2024-01-04', 'b'), (5, '20000-01-01', 'a')''')
            conn.exec_driver_sql(f'CREATE TABLE "{name}".events (lead bigint, at timestamptz, kind text)')
            conn.exec_driver_sql(f'''INSERT INTO "{name}".events VALUES (1, '2024-02-01Z', 'email_open'),
                                     (4, 'infinity', 'page_view'), (4, '2024-02-02Z', 'page_view')''')
            conn.exec_driver_sql(f'CREATE TABLE "{name}".outcomes (lead bigint, won date)')
            conn.exec_driver_sql(f'''INSERT INTO "{name}".outcomes VALUES (1, '2024-03-01'), (4, 'infinity')''')
        yield postgres_server_url, name
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        engine.dispose()


def config(url: str, schema: str, **extra: object) -> DataConfig:
    return DataConfig(source={"kind": "sql", "url": url, "db_schema": schema, "leads": "leads", "events": "events",
                              "outcomes": "outcomes"}, columns=COLUMNS, reference_time="2025-01-01", **extra)


@pytest.mark.parametrize("subset", [None, (1, 6)], ids=["whole", "by-range"])
def test_infinite_timestamps_are_wrong_type_naming_table_column_and_rows(schema: tuple[str, str],
                                                                         subset: tuple[int, int] | None) -> None:
    url, name = schema
    with pytest.raises(ContractError) as caught:
        load_crm(config(url, name), lead_id_range=subset)
    found = {(v.table, v.column, v.rule): v for v in caught.value.violations}
    leads = found[("leads", "created_at", WRONG_TYPE)]
    assert leads.n_rows == 3
    assert {(e["lead_id"], e["value"]) for e in leads.examples} == {
        (2, "infinity"), (3, "-infinity"), (5, "20000-01-01 00:00:00")}
    events = found[("events", "occurred_at", WRONG_TYPE)]
    assert events.n_rows == 1 and events.examples[0]["lead_id"] == 4 and events.examples[0]["value"] == "infinity"
    outcomes = found[("outcomes", "converted_at", WRONG_TYPE)]
    assert outcomes.n_rows == 1 and outcomes.examples[0]["value"] == "infinity"
    assert "leads.created_at: wrong_type: 3 rows" in str(caught.value)


def test_infinite_timestamps_are_quarantined_or_read_as_missing_when_listed(schema: tuple[str, str],
                                                                             tmp_path: Path) -> None:
    url, name = schema
    data, report = load_crm(config(url, name, policy="quarantine", quarantine_dir=str(tmp_path / "q")))
    # lead 4's outcome is quarantined, and takes the lead along (else its conversion would silently vanish)
    assert data.leads["lead_id"].tolist() == [1] and report.rows_quarantined == {"leads": 4, "events": 2,
                                                                                  "outcomes": 1}
    quarantined = (tmp_path / "q" / "leads.csv").read_text(encoding="utf-8")
    assert "infinity" in quarantined and "wrong_type:created_at" in quarantined
    # an outcome 'infinity' meaning "never": listed as a missing value, it reads as not converted
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f'DELETE FROM "{name}".leads WHERE id IN (2, 3, 5)')
        conn.exec_driver_sql(f'DELETE FROM "{name}".events WHERE at = \'infinity\'')
    engine.dispose()
    data, report = load_crm(config(url, name, missing_values=["", "infinity"]))
    assert report.ok
    assert data.outcomes.set_index("lead_id")["converted_at"].isna().to_dict() == {1: False, 4: True}
