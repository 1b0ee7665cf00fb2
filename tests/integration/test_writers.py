"""TableWriter round trips on real files, SQLite and the machine's PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from features.schema import CONVERTED_AT, CREATED_AT, EVENTS, LEAD_ID, LEADS, OCCURRED_AT, OUTCOMES
from features.writers import DestinationExistsError, TableWriter, write_tables

TIMESTAMPS = {LEADS: [CREATED_AT], EVENTS: [OCCURRED_AT], OUTCOMES: [CONVERTED_AT]}


def _tables(n_leads: int = 30, seed: int = 1) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    ids = np.arange(1, n_leads + 1, dtype=np.int64)
    created = pd.Timestamp("2025-01-01") + pd.to_timedelta(rng.integers(0, 10**7, n_leads), unit="s")
    leads = pd.DataFrame({
        LEAD_ID: ids,
        CREATED_AT: created,
        "industry": pd.Categorical(rng.choice(["software", "retail", None], n_leads), categories=["software", "retail"]),
        "employees": np.where(rng.random(n_leads) < 0.2, np.nan, rng.integers(1, 1000, n_leads).astype(float)),
        "note": rng.choice(["a, b", 'say "hi"', "plain"], n_leads),
    })
    n_events = 4 * n_leads
    events = pd.DataFrame({
        LEAD_ID: rng.choice(ids, n_events),
        OCCURRED_AT: pd.Timestamp("2025-03-01") + pd.to_timedelta(rng.integers(0, 10**7, n_events), unit="s"),
        "event_type": pd.Categorical(rng.choice(["page_view", "email_open"], n_events)),
        "value": np.where(rng.random(n_events) < 0.5, np.nan, rng.random(n_events) * 100),
    })
    converted = pd.Series(created + pd.Timedelta(days=30))
    converted[rng.random(n_leads) < 0.7] = pd.NaT
    outcomes = pd.DataFrame({LEAD_ID: ids, CONVERTED_AT: converted, "amount": rng.random(n_leads) * 1e4})
    return {LEADS: leads, EVENTS: events, OUTCOMES: outcomes}


def _read(dest: str, fmt: str, table: str) -> pd.DataFrame:
    if fmt == "csv":
        return pd.read_csv(Path(dest) / f"{table}.csv", parse_dates=TIMESTAMPS.get(table, []))
    if fmt == "parquet":
        return pd.read_parquet(Path(dest) / f"{table}.parquet")
    engine = sa.create_engine(dest)
    try:
        with engine.connect() as conn:
            return pd.read_sql_table(table, conn, parse_dates=TIMESTAMPS.get(table, []))
    finally:
        engine.dispose()


def _assert_same(expected: pd.DataFrame, actual: pd.DataFrame) -> None:
    assert list(actual.columns) == list(expected.columns)
    assert len(actual) == len(expected)
    for column in expected.columns:
        want, got = expected[column], actual[column]
        if pd.api.types.is_datetime64_any_dtype(want):
            pd.testing.assert_series_equal(got.astype("datetime64[ns]"), want.astype("datetime64[ns]"), check_names=False)
        elif pd.api.types.is_numeric_dtype(want):
            np.testing.assert_allclose(got.to_numpy(dtype=float), want.to_numpy(dtype=float), rtol=1e-12)
            assert got.dtype.kind in "iuf"
        else:
            assert got.astype(object).where(got.notna(), None).tolist() == want.astype(object).where(want.notna(), None).tolist()


def _destinations(tmp_path: Path, sqlite_url: str) -> list[tuple[str, str]]:
    return [(str(tmp_path / "csv_out"), "csv"), (str(tmp_path / "pq_out"), "parquet"), (sqlite_url, "sql")]


def _round_trip(dest: str, fmt: str) -> None:
    tables = _tables()
    with TableWriter(dest, fmt) as writer:
        for table, frame in tables.items():
            for part in np.array_split(np.arange(len(frame)), 3):  # three chunks per table
                writer.write(table, frame.iloc[part])
    for table, frame in tables.items():
        _assert_same(frame, _read(dest, fmt, table))


@pytest.mark.parametrize("fmt", ["csv", "parquet", "sql"])
def test_round_trip_in_chunks(tmp_path: Path, sqlite_url: str, fmt: str) -> None:
    dest = dict((f, d) for d, f in _destinations(tmp_path, sqlite_url))[fmt]
    _round_trip(dest, fmt)


@pytest.mark.postgres
def test_round_trip_postgres(postgres_url: str) -> None:
    _round_trip(postgres_url, "sql")
    engine = sa.create_engine(postgres_url)
    try:
        inspector = sa.inspect(engine)
        columns = {c["name"]: c["type"] for c in inspector.get_columns(EVENTS)}
        assert isinstance(columns[LEAD_ID], sa.BigInteger)
        assert isinstance(columns[OCCURRED_AT], sa.DateTime)
        assert any(ix["column_names"] == [LEAD_ID] for ix in inspector.get_indexes(EVENTS))
        assert not [t for t in inspector.get_table_names() if "staging" in t]
    finally:
        engine.dispose()


def test_sqlite_types_and_index(sqlite_url: str) -> None:
    write_tables(_tables(), sqlite_url, "sql")
    engine = sa.create_engine(sqlite_url)
    try:
        inspector = sa.inspect(engine)
        columns = {c["name"]: c["type"] for c in inspector.get_columns(EVENTS)}
        assert isinstance(columns[LEAD_ID], sa.BigInteger)
        assert isinstance(columns[OCCURRED_AT], sa.DateTime)
        assert any(ix["column_names"] == [LEAD_ID] for ix in inspector.get_indexes(EVENTS))
        assert sorted(inspector.get_table_names()) == sorted([LEADS, EVENTS, OUTCOMES])
    finally:
        engine.dispose()


def _refuses_then_overwrites(dest: str, fmt: str) -> None:
    first, second = _tables(seed=1), _tables(n_leads=12, seed=2)
    write_tables(first, dest, fmt)
    with pytest.raises(DestinationExistsError, match=LEADS):
        write_tables({LEADS: second[LEADS]}, dest, fmt)
    _assert_same(first[LEADS], _read(dest, fmt, LEADS))  # untouched
    write_tables(second, dest, fmt, overwrite=True)
    for table, frame in second.items():
        _assert_same(frame, _read(dest, fmt, table))


@pytest.mark.parametrize("fmt", ["csv", "parquet", "sql"])
def test_refuses_existing_tables_unless_overwrite(tmp_path: Path, sqlite_url: str, fmt: str) -> None:
    dest = dict((f, d) for d, f in _destinations(tmp_path, sqlite_url))[fmt]
    _refuses_then_overwrites(dest, fmt)


@pytest.mark.postgres
def test_refuses_existing_tables_unless_overwrite_postgres(postgres_url: str) -> None:
    _refuses_then_overwrites(postgres_url, "sql")


def _listing(dest: str, fmt: str) -> list[str]:
    if fmt != "sql":
        return sorted(p.name for p in Path(dest).iterdir()) if Path(dest).exists() else []
    engine = sa.create_engine(dest)
    try:
        return sorted(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _cleans_up_on_error(dest: str, fmt: str) -> None:
    old = _tables(n_leads=8, seed=3)
    write_tables({OUTCOMES: old[OUTCOMES]}, dest, fmt)
    before = _listing(dest, fmt)
    tables = _tables()
    with pytest.raises(RuntimeError, match="boom"), TableWriter(dest, fmt, overwrite=True) as writer:
        writer.write(LEADS, tables[LEADS])
        writer.write(OUTCOMES, tables[OUTCOMES])
        raise RuntimeError("boom")
    assert _listing(dest, fmt) == before
    _assert_same(old[OUTCOMES], _read(dest, fmt, OUTCOMES))  # the replaced table is still the old one


@pytest.mark.parametrize("fmt", ["csv", "parquet", "sql"])
def test_cleans_up_on_error(tmp_path: Path, sqlite_url: str, fmt: str) -> None:
    dest = dict((f, d) for d, f in _destinations(tmp_path, sqlite_url))[fmt]
    _cleans_up_on_error(dest, fmt)


@pytest.mark.postgres
def test_cleans_up_on_error_postgres(postgres_url: str) -> None:
    _cleans_up_on_error(postgres_url, "sql")


def test_new_directory_removed_on_error(tmp_path: Path) -> None:
    dest = tmp_path / "fresh"
    with pytest.raises(RuntimeError), TableWriter(dest, "parquet") as writer:
        writer.write(LEADS, _tables()[LEADS])
        raise RuntimeError("boom")
    assert not dest.exists()


def test_chunk_with_other_columns_is_refused(tmp_path: Path) -> None:
    leads = _tables()[LEADS]
    with pytest.raises(ValueError, match="'leads'.*columns"), TableWriter(tmp_path / "out", "parquet") as writer:
        writer.write(LEADS, leads)
        writer.write(LEADS, leads.drop(columns=["note"]))
    assert not (tmp_path / "out").exists()


def test_parquet_schema_is_stable_across_chunks(tmp_path: Path) -> None:
    leads = _tables()[LEADS]
    first, second = leads.iloc[:10].copy(), leads.iloc[10:].copy()
    second["employees"] = second["employees"].astype(object).where(second["employees"].notna(), None)
    second["industry"] = second["industry"].astype(object)  # plain strings after a categorical chunk
    with TableWriter(tmp_path, "parquet") as writer:
        writer.write(LEADS, first)
        writer.write(LEADS, second)
    schema = pq.read_schema(tmp_path / f"{LEADS}.parquet")
    assert str(schema.field("employees").type) == "double"
    _assert_same(leads, pd.read_parquet(tmp_path / f"{LEADS}.parquet"))


def test_write_synthetic_summary_matches_written_tables(sqlite_url: str) -> None:
    from leadscore.synth import TRUTH, SynthConfig, write_synthetic

    seen: list[int] = []
    summary = write_synthetic(SynthConfig(n_leads=600, seed=2, chunk_leads=250), sqlite_url, "sql",
                              progress=seen.append)
    assert seen == [250, 250, 100]
    leads, events, outcomes = (_read(sqlite_url, "sql", t) for t in (LEADS, EVENTS, OUTCOMES))
    assert summary.leads == len(leads) == 600
    assert summary.events == len(events)
    assert summary.conversions == outcomes[CONVERTED_AT].notna().sum()
    assert set(_read(sqlite_url, "sql", TRUTH)[LEAD_ID]) == set(leads[LEAD_ID])


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///", "sqlite:///:memory:",
                                 # SQLite URI filenames: a memory database by its mode or its name
                                 "sqlite:///file:crm?mode=memory&uri=true", "sqlite:///file::memory:?uri=true"])
def test_in_memory_sqlite_is_refused(url: str) -> None:
    # everything written there would vanish when the writer closes: a "success" that kept nothing
    with pytest.raises(ValueError, match="in-memory SQLite"):
        TableWriter(url, "sql")


def test_other_databases_are_refused_by_name_before_loading_a_driver() -> None:
    with pytest.raises(ValueError, match="SQLite or PostgreSQL, got 'mysql'"):
        TableWriter("mysql://user@127.0.0.1/crm", "sql")  # no MySQL driver is installed: no ImportError


def test_new_sqlite_file_removed_on_error(tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"
    with pytest.raises(RuntimeError), TableWriter(f"sqlite:///{path}", "sql") as writer:
        writer.write(LEADS, _tables()[LEADS])
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []  # no empty database file (its staging pages made it large)
