"""Readers end to end: canonical frames written with plain pandas/SQLAlchemy under a company's own
column names, read back through the readers with a column mapping, validated, compared equal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from features.contract import DataConfig, FlatConfig
from features.flat import load_flat
from features.loading import load_crm, load_data
from features.readers import DataSourceError, LeadSubset, read_csv_table, read_lead_ids, read_sql_table

MAPPING = {
    "leads": {"lead_id": "Id", "created_at": "CreatedDate"},
    "events": {"lead_id": "LeadId", "occurred_at": "ActivityDate", "event_type": "Type", "channel": "Channel"},
    "outcomes": {"lead_id": "LeadId", "converted_at": "WonDate", "amount": "Amount"},
}
SOURCE_NAMES = {t: {c: s for c, s in m.items()} for t, m in MAPPING.items()}


def canonical_frames(n_leads: int = 40) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(7)
    ids = np.arange(1, n_leads + 1, dtype=np.int64)
    created = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 90 * 24, n_leads), "h")
    leads = pd.DataFrame(
        {"lead_id": ids, "created_at": created.astype("datetime64[ns]"),
         "industry": rng.choice(["saas", "retail", "bank"], n_leads).astype(object),
         "employees": rng.integers(1, 500, n_leads).astype("float64")}
    )
    lead_of_event = rng.choice(ids, 5 * n_leads)
    events = pd.DataFrame(
        {"lead_id": lead_of_event,
         "occurred_at": (pd.Timestamp("2024-05-01") + pd.to_timedelta(rng.integers(0, 10**6, lead_of_event.size), "s")
                         ).astype("datetime64[ns]"),
         "event_type": pd.Categorical(rng.choice(["email_open", "page_view", "form_fill"], lead_of_event.size)),
         "channel": rng.choice(["email", "web"], lead_of_event.size).astype(object)}
    )
    won = rng.random(n_leads) < 0.3
    outcomes = pd.DataFrame(
        {"lead_id": ids,
         "converted_at": pd.Series(pd.Timestamp("2024-06-01"), index=range(n_leads)).where(won).astype("datetime64[ns]"),
         "amount": np.where(won, rng.integers(100, 5000, n_leads), np.nan).astype("float64")}
    )
    return {"leads": leads, "events": events, "outcomes": outcomes}


def company_frame(table: str, frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.rename(columns={c: s for c, s in SOURCE_NAMES[table].items()})
    if "Type" in out:
        out["Type"] = out["Type"].astype(str)
    return out


def assert_same(data, expected: dict[str, pd.DataFrame], lead_ids: set[int] | None = None) -> None:
    for table, frame in expected.items():
        if lead_ids is not None:
            frame = frame[frame["lead_id"].isin(lead_ids)]
        got = getattr(data, table).sort_values(list(getattr(data, table).columns[:2])).reset_index(drop=True)
        want = frame.sort_values(list(frame.columns[:2])).reset_index(drop=True)
        if table == "events":
            got["event_type"] = got["event_type"].astype(str)
            want = want.assign(event_type=want["event_type"].astype(str))
        pd.testing.assert_frame_equal(got, want, check_like=False)


def file_config(kind: str, folder: Path) -> DataConfig:
    ext = "csv" if kind == "csv" else "parquet"
    return DataConfig(
        source={"kind": kind, **{t: str(folder / f"{t}.{ext}") for t in MAPPING}},
        columns=MAPPING, reference_time="2025-01-01",
    )


def write_files(kind: str, folder: Path, frames: dict[str, pd.DataFrame]) -> None:
    for table, frame in frames.items():
        out = company_frame(table, frame)
        if kind == "csv":
            out.to_csv(folder / f"{table}.csv", index=False)
        else:
            out.to_parquet(folder / f"{table}.parquet", index=False)


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_file_round_trip_with_mapping_and_subset(tmp_path: Path, kind: str) -> None:
    frames = canonical_frames()
    write_files(kind, tmp_path, frames)
    config = file_config(kind, tmp_path)
    data, report = load_crm(config)
    assert report.ok
    assert_same(data, frames)
    assert data.categorical_attributes == ["industry"] and data.numeric_attributes == ["employees"]
    subset, _ = load_crm(config, lead_ids=[3, 5, 8])
    assert_same(subset, frames, {3, 5, 8})
    if kind == "csv":  # ids given as text find the same rows in every table
        as_text, _ = load_crm(config, lead_ids=["3", "5", "8"])
        assert_same(as_text, frames, {3, 5, 8})
    ranged, _ = load_crm(config, lead_id_range=(10, 20))
    assert_same(ranged, frames, set(range(10, 20)))


def test_zero_padded_csv_ids_stay_text_and_cannot_be_cut_into_ranges(tmp_path: Path) -> None:
    frames = canonical_frames(12)
    write_files("csv", tmp_path, frames)
    for table in MAPPING:  # the company's ids are six digits with leading zeros
        path = tmp_path / f"{table}.csv"
        frame = pd.read_csv(path)
        frame[SOURCE_NAMES[table]["lead_id"]] = frame[SOURCE_NAMES[table]["lead_id"]].map("{:06d}".format)
        frame.to_csv(path, index=False)
    config = file_config("csv", tmp_path)
    data, report = load_crm(config)
    assert report.ok
    assert sorted(data.leads["lead_id"]) == [f"{i:06d}" for i in range(1, 13)]
    assert set(data.events["lead_id"]) <= set(data.leads["lead_id"]) and len(data.events) == len(frames["events"])
    assert data.outcomes["lead_id"].tolist() == [f"{i:06d}" for i in range(1, 13)]
    subset, _ = load_crm(config, lead_ids=["000003", "000005"])
    assert sorted(subset.leads["lead_id"]) == ["000003", "000005"]
    with pytest.raises(ValueError, match=r"column 'Id'.*text.*'000001'"):
        read_lead_ids(config)


def test_an_empty_or_missing_file_is_refused_naming_its_config_key_and_path(tmp_path: Path) -> None:
    write_files("csv", tmp_path, canonical_frames(5))
    config = file_config("csv", tmp_path)
    (tmp_path / "leads.csv").write_text("")  # a 0-byte export: pandas' own error names no file
    with pytest.raises(DataSourceError, match=rf"^data\.source\.leads: {tmp_path}/leads\.csv: empty CSV file"):
        load_crm(config)
    (tmp_path / "leads.csv").unlink()
    with pytest.raises(FileNotFoundError, match=rf"^data\.source\.leads: CSV file not found: {tmp_path}/leads\.csv"):
        load_crm(config)
    (tmp_path / "flat.csv").write_text("\n\n")
    flat = FlatConfig(source={"kind": "csv", "path": str(tmp_path / "flat.csv")}, id_column="id", label_column="y")
    with pytest.raises(DataSourceError, match=r"^data\.source\.path: .*flat\.csv: empty CSV file"):
        load_data(flat)


@pytest.mark.parametrize("extra_on", ["one row", "every row"])
def test_a_csv_row_with_a_field_too_many_is_refused_not_cut_or_shifted(tmp_path: Path, extra_on: str) -> None:
    frames = canonical_frames(12)
    write_files("csv", tmp_path, frames)
    path = tmp_path / "events.csv"
    lines = path.read_text().splitlines()
    # events are read by their mapped columns only: the extra field is where pandas' usecols would drop it
    rows = range(4, 5) if extra_on == "one row" else range(1, len(lines))
    for i in rows:
        lines[i] += ",stray"
    path.write_text("\n".join(lines) + "\n")
    config = file_config("csv", tmp_path)
    line = "record 5" if extra_on == "one row" else "record 2"  # the header is record 1
    with pytest.raises(DataSourceError, match=rf"malformed CSV: .*events\.csv: rows with more fields than the "
                                              rf"header's 4, e\.g\. {line}: '"):
        load_crm(config)
    small_chunks = config.model_copy(update={"source": config.source.model_copy(update={"chunksize": 3})})
    with pytest.raises(DataSourceError, match=line):  # a subset read in chunks: every chunk is checked
        load_crm(small_chunks, lead_id_range=(0, 10**9))


def test_csv_ids_as_written_survive_chunked_subsets_huge_numbers_and_markers(tmp_path: Path) -> None:
    frames = canonical_frames(12)
    codes = {i: (f"{1000 + i}" if i <= 9 else f"{i:04d}") for i in range(1, 13)}  # 1001..1009, then 0010..0012
    write_files("csv", tmp_path, frames)
    for table in MAPPING:
        path = tmp_path / f"{table}.csv"
        frame = pd.read_csv(path)
        frame[SOURCE_NAMES[table]["lead_id"]] = frame[SOURCE_NAMES[table]["lead_id"]].map(codes)
        frame.to_csv(path, index=False)
    config = file_config("csv", tmp_path)
    small_chunks = config.model_copy(update={"source": config.source.model_copy(update={"chunksize": 4})})
    data, report = load_crm(small_chunks, lead_ids=["1001", "1005", "0011"])
    assert report.ok and sorted(data.leads["lead_id"]) == ["0011", "1001", "1005"]
    assert set(data.events["lead_id"]) <= {"0011", "1001", "1005"} and len(data.events)
    # integers beyond exact float range stay text instead of merging into one number
    huge = pd.DataFrame({"Id": ["900000000000000000001", "900000000000000000002"],
                         "CreatedDate": ["2024-01-01", "2024-01-02"]})
    huge.to_csv(tmp_path / "leads.csv", index=False)
    pd.DataFrame({"LeadId": [], "ActivityDate": [], "Type": [], "Channel": []}).to_csv(tmp_path / "events.csv",
                                                                                   index=False)
    pd.DataFrame({"LeadId": [], "WonDate": [], "Amount": []}).to_csv(tmp_path / "outcomes.csv", index=False)
    data, _ = load_crm(config)
    assert sorted(data.leads["lead_id"]) == ["900000000000000000001", "900000000000000000002"]
    # a blank first line (pandas skips it) is no header of one column
    (tmp_path / "blank_first.csv").write_text("  \nId,CreatedDate\n1,2024-01-01\n", encoding="utf-8")
    assert read_csv_table(tmp_path / "blank_first.csv", lead_id_column="Id")["Id"].tolist() == [1]
    # a missing-value marker among integer ids: not a reason to call every id text
    pd.DataFrame({"Id": ["1", "2", "unknown", "4"], "CreatedDate": ["2024-01-01"] * 4}).to_csv(
        tmp_path / "leads.csv", index=False)
    marked = config.model_copy(update={"missing_values": ["", "unknown"]})
    np.testing.assert_array_equal(read_lead_ids(marked), [1, 2, 4])


@pytest.mark.parametrize("kind", ["csv", "parquet", "parquet-no-pandas-metadata", "sqlite", "postgres",
                                  "parquet-text-ids"])
def test_integer_ids_beyond_floats_stay_exact_beside_a_missing_id(kind: str, tmp_path: Path,
                                                                  request: pytest.FixtureRequest) -> None:
    frames = canonical_frames(6)
    base = 2**53 + 1  # 9007199254740993: as a float it is 9007199254740992, its neighbour's value
    for frame in frames.values():
        frame["lead_id"] = (frame["lead_id"] - 1 + base).astype("int64")
    # one event without a lead: read plainly, every id of the column becomes a float
    events = frames["events"].assign(lead_id=frames["events"]["lead_id"].astype("Int64"))
    events.loc[0, "lead_id"] = pd.NA
    if kind == "parquet-text-ids":  # ids stored as text in the events file only
        events["lead_id"] = events["lead_id"].astype(str).where(events["lead_id"].notna(), None)
    written = {**frames, "events": events}
    if kind in ("sqlite", "postgres"):
        url = request.getfixturevalue(f"{kind}_url")
        write_sql(url, written)
        config = sql_config(url, chunksize=4)
    else:
        write_files("csv" if kind == "csv" else "parquet", tmp_path, written)
        config = file_config("csv" if kind == "csv" else "parquet", tmp_path)
        if kind == "parquet-no-pandas-metadata":  # as Spark or plain pyarrow write it: no Int64 to restore
            import pyarrow.parquet as pq

            table = pq.read_table(tmp_path / "events.parquet")
            pq.write_table(table.replace_schema_metadata(None), tmp_path / "events.parquet")
    config = DataConfig.model_validate({**config.model_dump(), "policy": "quarantine",
                                        "quarantine_dir": str(tmp_path / "quarantine")})
    for subset in ({}, {"lead_id_range": (base, base + 6)}):
        data, report = load_crm(config, **subset)
        assert data.leads["lead_id"].dtype == np.int64 and data.events["lead_id"].dtype == np.int64
        assert sorted(data.events["lead_id"].tolist()) == sorted(frames["events"]["lead_id"].iloc[1:].tolist())
        assert report.rows_quarantined.get("events", 0) == (1 if not subset else 0)  # a range holds no missing id


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_text_ids_of_a_table_are_cut_into_numeric_ranges_by_number_not_by_text(
        kind: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue(f"{kind}_url")
    engine = sa.create_engine(url)
    written = ["5", "10", " 11 ", "7.0", "2", "X17", "100"]  # '10' < '5' as text
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE ev (lead_id TEXT, n INTEGER)"))
            conn.execute(sa.text("INSERT INTO ev VALUES (:i, :n)"), [{"i": v, "n": n} for n, v in enumerate(written)])
    finally:
        engine.dispose()
    ranges = [(-(2**63), 5), (5, 10), (10, 2**63 - 1)]  # open-ended, as the distributed build cuts them
    seen = {r: sorted(read_sql_table(url, "ev", subset=LeadSubset(lead_id_range=r))["n"].tolist()) for r in ranges}
    # 'X17' is no number: it lands in one partition (as 0), whose validation refuses it as an unknown lead
    assert seen == {ranges[0]: [4, 5], ranges[1]: [0, 3], ranges[2]: [1, 2, 6]}


def test_csv_text_like_na_or_none_is_a_value_unless_declared_a_missing_marker(tmp_path: Path) -> None:
    frames = canonical_frames(4)
    write_files("csv", tmp_path, frames)
    leads = pd.read_csv(tmp_path / "leads.csv")
    leads.assign(Country=["NA", "DE", "", "null"], Seniority=["None", "VP", "NaN", "N/A"]).to_csv(
        tmp_path / "leads.csv", index=False)
    config = file_config("csv", tmp_path)
    data, report = load_crm(config)  # Namibia's code and a "None" seniority are values, as in Parquet or SQL
    assert report.ok
    assert data.leads["Country"].tolist()[:2] == ["NA", "DE"] and pd.isna(data.leads["Country"][2])
    assert data.leads["Country"][3] == "null" and data.leads["Seniority"].tolist() == ["None", "VP", "NaN", "N/A"]
    marked, _ = load_crm(config.model_copy(update={"missing_values": ["", "N/A", "null"]}))
    assert marked.leads["Country"].isna().tolist() == [False, False, True, True]
    assert marked.leads["Seniority"].isna().tolist() == [False, False, False, True]


def test_a_sqlite_date_column_with_a_time_or_junk_is_validated_not_a_failed_read(sqlite_url: str) -> None:
    from features.contract import ContractError

    engine = sa.create_engine(sqlite_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE crm_leads (Id INTEGER, CreatedDate DATE)"))
            conn.execute(sa.text("INSERT INTO crm_leads VALUES (1, '2024-01-10'), (2, '2024-01-12 08:30:00'), "
                                 "(3, 'not a date')"))
            conn.execute(sa.text("CREATE TABLE crm_events (LeadId INTEGER, ActivityDate TEXT, Type TEXT, Channel TEXT)"))
            conn.execute(sa.text("CREATE TABLE crm_outcomes (LeadId INTEGER, WonDate TEXT, Amount REAL)"))
    finally:
        engine.dispose()
    with pytest.raises(ContractError, match=r"leads\.created_at: wrong_type: 1 row .*row=2, lead_id=3"):
        load_crm(sql_config(sqlite_url, chunksize=10))


def test_lead_id_ranges_cover_every_id_and_refuse_the_largest_int64() -> None:
    from features.readers import lead_id_ranges

    ids = np.array([5, 1, 9, 3, 7, 2**62])
    ranges = lead_id_ranges(ids, 2)
    assert ranges == [(1, 5), (5, 9), (9, 2**62 + 1)]
    assert all(sum(a <= i < b for a, b in ranges) == 1 for i in ids.tolist())
    with pytest.raises(ValueError, match=r"lead id 9223372036854775807 is the largest 64-bit integer"):
        lead_id_ranges(np.array([1, 2**63 - 1]), 1000)  # its stop would wrap around to the smallest


def test_binary_bytes_in_a_sqlite_text_column_are_wrong_type_not_a_decode_crash(sqlite_url: str,
                                                                              tmp_path: Path) -> None:
    from features.contract import ContractError

    frames = canonical_frames(6)
    write_sql(sqlite_url, frames)
    engine = sa.create_engine(sqlite_url)
    try:
        with engine.begin() as conn:  # a BLOB where the CRM wrote text
            conn.execute(sa.text("UPDATE crm_leads SET industry = x'FFFE' WHERE Id = 3"))
    finally:
        engine.dispose()
    config = sql_config(sqlite_url, chunksize=10)
    with pytest.raises(ContractError, match=r"leads\.industry: wrong_type: 1 row \(binary data \(a BLOB\), not text\)"
                                            r".*lead_id=3"):
        load_crm(config)
    quarantine = DataConfig.model_validate({**config.model_dump(), "policy": "quarantine",
                                            "quarantine_dir": str(tmp_path / "quarantine")})
    data, report = load_crm(quarantine)
    assert report.rows_quarantined["leads"] == 1 and 3 not in set(data.leads["lead_id"])


@pytest.mark.parametrize("kind", ["parquet", "csv"])
def test_text_ids_of_a_file_are_cut_into_numeric_ranges_by_number(kind: str, tmp_path: Path) -> None:
    from features.readers import read_parquet_table

    written = ["5", "10", " 11 ", "7.0", "2", "X17", "100"]
    frame = pd.DataFrame({"lead_id": written, "n": range(len(written))})
    path = tmp_path / f"ev.{kind}"
    if kind == "parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    ranges = [(-(2**63), 5), (5, 10), (10, 2**63 - 1)]
    read = (lambda r: read_parquet_table(path, subset=LeadSubset(lead_id_range=r))) if kind == "parquet" else (
        lambda r: read_csv_table(path, subset=LeadSubset(lead_id_range=r), ids_as_text=True, chunksize=2))
    seen = {r: sorted(int(n) for n in read(r)["n"]) for r in ranges}  # CSV values come as written (text)
    # 'X17' is no number: it lands in one partition (as 0), whose validation refuses it as an unknown lead
    assert seen == {ranges[0]: [4, 5], ranges[1]: [0, 3], ranges[2]: [1, 2, 6]}


def test_a_csv_leads_table_with_big_ids_and_a_missing_one_types_its_ids_alike_whole_and_by_range(
        tmp_path: Path) -> None:
    frames = canonical_frames(6)
    base = 2**53 + 1
    for frame in frames.values():
        frame["lead_id"] = (frame["lead_id"] - 1 + base).astype("Int64")
    frames["leads"].loc[5, "lead_id"] = pd.NA  # a lead without an id: plain parsing makes every id a float
    write_files("csv", tmp_path, frames)
    config = DataConfig.model_validate({**file_config("csv", tmp_path).model_dump(), "policy": "quarantine",
                                        "quarantine_dir": str(tmp_path / "quarantine")})
    whole, _ = load_crm(config)
    ranged, _ = load_crm(config, lead_id_range=(base, base + 6))
    for data in (whole, ranged):
        assert data.leads["lead_id"].dtype == np.int64 and data.events["lead_id"].dtype == np.int64
        assert data.leads["lead_id"].tolist() == list(range(base, base + 5))


def test_whole_number_codes_get_one_text_whether_or_not_a_blank_made_the_column_float(tmp_path: Path) -> None:
    from features.build import features_from_payload
    from features.spec import FeatureSpec

    frames = canonical_frames(6)
    write_files("csv", tmp_path, frames)
    leads = pd.read_csv(tmp_path / "leads.csv")
    codes = {}
    for name, column in (("blank", [75, None, 13, 75, 13, 75]), ("full", [75, 13, 13, 75, 13, 75])):
        leads.assign(RegionCode=column).to_csv(tmp_path / "leads.csv", index=False)  # a blank: pandas writes "75.0"
        config = DataConfig.model_validate({**file_config("csv", tmp_path).model_dump(),
                                            "attributes": {"categorical": ["RegionCode"]}})
        data, report = load_crm(config)
        assert report.ok
        spec = FeatureSpec().fit(data)
        assert sorted(spec.categorical_vocab_["RegionCode"]) == ["13", "75"], name
        lead = {"lead_id": 99, "created_at": "2024-01-01", "events": []}
        rows = [features_from_payload({**lead, "attributes": {"RegionCode": value}}, spec, as_of="2024-06-01")
                for value in ("75", 75, 75.0)]
        column = spec.columns_.index("RegionCode")
        codes[name] = {float(row[0, column]) for row in rows}
        assert not spec.unseen_in_payload({"attributes": {"RegionCode": 75.0}})
    assert codes["blank"] == codes["full"] and len(codes["blank"]) == 1 and not np.isnan(next(iter(codes["blank"])))


def write_sql(url: str, frames: dict[str, pd.DataFrame]) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            for table, frame in frames.items():
                company_frame(table, frame).to_sql(f"crm_{table}", conn, index=False)
    finally:
        engine.dispose()


def sql_config(url: str, chunksize: int) -> DataConfig:
    return DataConfig(
        source={"kind": "sql", "url": url, "chunksize": chunksize,
                "leads": "crm_leads", "events": "crm_events", "outcomes": "crm_outcomes"},
        columns=MAPPING, reference_time="2025-01-01",
    )


def check_sql(url: str) -> None:
    frames = canonical_frames()
    write_sql(url, frames)
    config = sql_config(url, chunksize=17)  # several chunks per table
    data, report = load_crm(config)
    assert report.ok and report.rows_in["events"] == len(frames["events"])
    assert_same(data, frames)
    subset, _ = load_crm(config, lead_ids=[2, 4, 40])
    assert_same(subset, frames, {2, 4, 40})
    ranged, _ = load_crm(config, lead_id_range=(30, 35))
    assert_same(ranged, frames, set(range(30, 35)))
    empty, report = load_crm(config, lead_ids=[999])
    assert len(empty.leads) == 0 and report.rows_in == {"leads": 0, "events": 0, "outcomes": 0}


def test_sqlite_round_trip_and_subsets(sqlite_url: str) -> None:
    check_sql(sqlite_url)


@pytest.mark.postgres
def test_postgres_round_trip_and_subsets(postgres_url: str) -> None:
    check_sql(postgres_url)


@pytest.mark.postgres
def test_postgres_tz_aware_timestamps_become_naive_utc(postgres_url: str) -> None:
    frames = canonical_frames(5)
    frames["leads"]["created_at"] = frames["leads"]["created_at"].dt.tz_localize("Europe/Paris")
    write_sql(postgres_url, frames)
    data, _ = load_crm(sql_config(postgres_url, chunksize=1000))
    expected = frames["leads"]["created_at"].dt.tz_convert("UTC").dt.tz_localize(None)
    assert data.leads["created_at"].tolist() == expected.tolist()
    assert data.leads["created_at"].dtype == "datetime64[ns]"


def test_many_ids_are_batched_below_parameter_limits(sqlite_url: str) -> None:
    engine = sa.create_engine(sqlite_url)
    with engine.begin() as conn:
        pd.DataFrame({"lead_id": np.arange(40_000), "x": 1}).to_sql("t", conn, index=False)
    engine.dispose()
    wanted = np.arange(0, 40_000, 3)
    frame = read_sql_table(sqlite_url, "t", subset=LeadSubset(lead_ids=wanted))
    assert sorted(frame["lead_id"].tolist()) == wanted.tolist()


def test_flat_from_sqlite_and_load_data_dispatch(sqlite_url: str, tmp_path: Path) -> None:
    flat = pd.DataFrame({"Id": ["a", "b", "c"], "Won": [1, 0, 1], "Visits": [3.0, 1.0, np.nan], "Src": ["x", "Select", "y"]})
    engine = sa.create_engine(sqlite_url)
    with engine.begin() as conn:
        flat.to_sql("export", conn, index=False)
    engine.dispose()
    config = FlatConfig(source={"kind": "sql", "url": sqlite_url, "table": "export"}, id_column="Id",
                        label_column="Won", missing_values=["Select"])
    data, report = load_data(config)
    assert report.ok and data.frame["lead_id"].tolist() == ["a", "b", "c"]
    assert data.frame["Src"].isna().tolist() == [False, True, False]
    subset, _ = load_flat(config, lead_ids=["b"])
    assert subset.frame["lead_id"].tolist() == ["b"]


def test_sql_column_names_are_plain_strings(sqlite_url: str) -> None:
    """SQLAlchemy reflects `quoted_name` objects; downstream (scikit-learn) needs exact `str`."""
    import sqlalchemy as sa

    from features.readers import read_sql_table

    engine = sa.create_engine(sqlite_url)
    pd.DataFrame({"lead_id": [1, 2], "Industry": ["a", "b"]}).to_sql("leads", engine, index=False)
    engine.dispose()
    frame = read_sql_table(sqlite_url, "leads")
    assert [type(c) for c in frame.columns] == [str, str]


# ----- fast SQL paths: the same frame as the generic SQLAlchemy + pandas path ---------------------
def awkward_frame(n: int = 3000) -> pd.DataFrame:
    """Columns that trip text round trips: nulls, extreme floats, big ints, separators in text, unicode."""
    rng = np.random.default_rng(5)
    floats = rng.normal(size=n) * 10.0 ** rng.integers(-300, 300, n)
    floats[::7] = np.nan
    words = np.array(["plain", "", "new\nline", "sep\x1erecord", "üñí ☃", "comma, \"quoted\"", "tab\tx"], dtype=object)
    text = words[rng.integers(0, len(words), n)].astype(object)
    text[::5] = None
    stamps = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 10**12, n), "us")
    return pd.DataFrame({
        "lead_id": np.arange(n, dtype=np.int64),
        "big": rng.integers(-(2**62), 2**62, n, dtype=np.int64),
        "maybe_int": pd.array(np.where(np.arange(n) % 3 == 0, None, np.arange(n)), dtype="Int64"),
        "value": floats,
        "label": text,
        "empty": pd.Series([None] * n, dtype=object),
        "at": pd.Series(stamps).where(np.arange(n) % 11 != 0),
    })


def _write(url: str, name: str, frame: pd.DataFrame, dtype: dict | None = None) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        frame.to_sql(name, conn, index=False, dtype=dtype)
    engine.dispose()


def _both_paths(url: str, name: str, subset: LeadSubset, chunksize: int = 1000) -> tuple[pd.DataFrame, pd.DataFrame]:
    generic = read_sql_table(url, name, subset=subset, chunksize=chunksize, fast=False)
    fast = read_sql_table(url, name, subset=subset, chunksize=chunksize, fast=True)
    return generic, fast


def _fast_only(url: str, name: str, subset: LeadSubset, chunksize: int = 1000) -> pd.DataFrame | None:
    """The fast path alone (None: it declined and the reader would take the generic path)."""
    from features.fast_sql import fast_read
    from features.readers import SqlDatabase

    with SqlDatabase(url, chunksize=chunksize) as database:
        table, columns, statements = database.plan(name, None, "lead_id", subset)
        return fast_read(database.engine, table, columns, statements, subset.lead_id_range, "lead_id", chunksize)


def _columnar(url: str, name: str, lead_id_range: tuple[int, int], datetimes: set[str],
              chunksize: int = 1000, checked: list[str] | None = None,
              text: tuple[str, ...] = ()) -> list[pd.DataFrame] | None:
    """:func:`features.sqlite_arrow.read_frames` alone on a lead-id range of a table (None: it declined);
    ``checked``: the columns whose storage classes are read (default all), ``text``: TEXT affinity."""
    from features import sqlite_arrow
    from features.readers import SqlDatabase

    with SqlDatabase(url) as database:
        table = database.table(name)
        statement = sa.select(table).where(table.c.lead_id >= lead_id_range[0], table.c.lead_id < lead_id_range[1])
        compiled = sqlite_arrow.with_storage_classes(statement, checked).compile(dialect=database.engine.dialect)
        params = [compiled.construct_params()[k] for k in compiled.positiontup]
        path = database.engine.url.database
        columns = [c.name for c in table.columns]
    return sqlite_arrow.read_frames(path, str(compiled), params, columns, datetimes, {}, chunksize, checked, text)


def test_sqlite_fast_paths_give_the_generic_frame(sqlite_url: str) -> None:
    from features import sqlite_arrow

    frame = awkward_frame()
    _write(sqlite_url, "awkward", frame)
    for subset in (LeadSubset(), LeadSubset(lead_id_range=(100, 2500)), LeadSubset(lead_ids=list(range(0, 3000, 7)))):
        generic, fast = _both_paths(sqlite_url, "awkward", subset)
        pd.testing.assert_frame_equal(fast, generic)
        assert generic["at"].dtype == "datetime64[ns]" and generic["label"].isna().any()
        assert _fast_only(sqlite_url, "awkward", subset) is not None

    # the columnar reader on the same statement, batch by batch
    assert sqlite_arrow.available()
    frames = _columnar(sqlite_url, "awkward", (100, 2500), {"at"})
    assert frames is not None and [len(f) for f in frames] == [1000, 1000, 400]
    generic = read_sql_table(sqlite_url, "awkward", subset=LeadSubset(lead_id_range=(100, 2500)), chunksize=1000,
                             fast=False)
    pd.testing.assert_frame_equal(pd.concat(frames, ignore_index=True), generic)

    # what it cannot convert exactly is left to the sqlite3 module: texts mixed with numbers, other datetimes
    engine = sa.create_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE awkward SET big = 'not a number' WHERE lead_id = 150"))
        conn.execute(sa.text("UPDATE awkward SET at = '2024-03-01T10:00:00' WHERE lead_id = 151"))
    engine.dispose()
    assert _columnar(sqlite_url, "awkward", (100, 2500), {"at"}) is None
    generic, fast = _both_paths(sqlite_url, "awkward", LeadSubset(lead_id_range=(100, 2500)))
    pd.testing.assert_frame_equal(fast, generic)
    assert generic.loc[generic["lead_id"] == 150, "big"].item() == "not a number"


def test_sqlite_columnar_reader_declines_values_the_driver_would_convert(sqlite_url: str) -> None:
    """The ADBC driver types a column from its first rows and turns a later number or BLOB into text;
    the storage classes read beside the values send such a result to the sqlite3 module."""
    n = 3000
    engine = sa.create_engine(sqlite_url)
    with engine.begin() as conn:  # ``code`` has no declared type: SQLite keeps each value's own class
        conn.execute(sa.text("CREATE TABLE mixed (lead_id BIGINT, code, late TEXT)"))
        conn.execute(sa.text("INSERT INTO mixed VALUES (:i, :c, NULL)"), [{"i": i, "c": f"c{i}"} for i in range(n)])
    assert _columnar(sqlite_url, "mixed", (0, n), set()) is not None
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE mixed SET late = 'first text' WHERE lead_id = 2900"))  # after a NULL-only batch
    assert _columnar(sqlite_url, "mixed", (0, n), set()) is None
    generic, fast = _both_paths(sqlite_url, "mixed", LeadSubset(lead_id_range=(0, n)))
    pd.testing.assert_frame_equal(fast, generic)
    assert generic["late"].tolist() == [None] * 2900 + ["first text"] + [None] * 99
    for value in ("42", "x'00ff'"):  # an integer, then a BLOB, in a column of texts
        with engine.begin() as conn:
            conn.execute(sa.text(f"UPDATE mixed SET code = {value} WHERE lead_id = 2500"))
        assert _columnar(sqlite_url, "mixed", (0, n), set()) is None
        generic, fast = _both_paths(sqlite_url, "mixed", LeadSubset(lead_id_range=(0, n)))
        pd.testing.assert_frame_equal(fast, generic)
        assert not isinstance(generic.loc[2500, "code"], str)
    engine.dispose()


def test_sqlite_columnar_reader_trusts_declared_affinities_only_as_far_as_they_go(sqlite_url: str) -> None:
    """Columns with a declared type are read without storage classes: TEXT affinity stores numbers as
    text (read as they are); a text in a numeric column, or a number in a DATETIME column, declines."""
    n = 3000
    engine = sa.create_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE typed (lead_id BIGINT, amount FLOAT, note TEXT, at DATETIME)"))
        conn.execute(sa.text("INSERT INTO typed VALUES (:i, :a, :t, '2024-01-02 03:04:05.000006')"),
                     [{"i": i, "a": i / 4 if i % 9 else None, "t": f"n{i}" if i % 5 else None} for i in range(n)])
        conn.execute(sa.text("UPDATE typed SET note = 42 WHERE lead_id = 2500"))  # stored as the text '42'
    typed = {"datetimes": {"at"}, "checked": [], "text": ("note",)}
    frames = _columnar(sqlite_url, "typed", (0, n), **typed)
    generic = read_sql_table(sqlite_url, "typed", subset=LeadSubset(lead_id_range=(0, n)), chunksize=1000, fast=False)
    assert frames is not None
    pd.testing.assert_frame_equal(pd.concat(frames, ignore_index=True), generic)
    assert generic.loc[2500, "note"] == "42" and generic["at"].dtype == "datetime64[ns]"
    # SQLite's affinity rules on the declared text: "VARCHAR-INT" has INTEGER affinity (SQLAlchemy reflects a
    # VARCHAR), so its numbers stay numbers beside texts; the fast path must not take them for texts
    with engine.begin() as conn:
        conn.execute(sa.text('CREATE TABLE odd (lead_id BIGINT, code "VARCHAR-INT")'))
        conn.execute(sa.text("INSERT INTO odd VALUES (:i, :c)"), [{"i": i, "c": "abc" if i % 2 else "42"} for i in range(50)])
    generic, fast = _both_paths(sqlite_url, "odd", LeadSubset(lead_id_range=(0, 50)))
    pd.testing.assert_frame_equal(fast, generic)
    assert generic.loc[0, "code"] == 42 and generic.loc[1, "code"] == "abc"
    for statement in ("UPDATE typed SET amount = 'abc' WHERE lead_id = 10",  # among numbers of its batch
                      "UPDATE typed SET amount = 'abc' WHERE lead_id = 2700",  # in a later batch
                      "UPDATE typed SET at = 5 WHERE lead_id = 20"):  # a number among DATETIME texts
        with engine.begin() as conn:
            conn.execute(sa.text(statement))
        assert _columnar(sqlite_url, "typed", (0, n), **typed) is None, statement
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE typed SET amount = lead_id / 4.0, at = '2024-01-02 03:04:05.000006'"))
    engine.dispose()


def test_postgres_fast_path_gives_the_generic_frame(postgres_url: str) -> None:
    from sqlalchemy.dialects import postgresql

    frame = awkward_frame()
    frame["label"] = frame["label"].where(frame["label"] != "sep\x1erecord", "no separator")
    frame["small"] = np.linspace(-3, 3, len(frame)).astype(np.float32)
    frame["aware"] = frame["at"].dt.tz_localize("Europe/Paris", nonexistent="shift_forward", ambiguous="NaT")
    _write(postgres_url, "awkward", frame, dtype={"small": postgresql.REAL(), "empty": sa.Text()})
    subset = LeadSubset(lead_id_range=(100, 2500))
    generic, fast = _both_paths(postgres_url, "awkward", subset)
    # tz-aware timestamps: the generic path gives the session's time zone, the fast path UTC; same instants
    assert fast["aware"].dt.tz is not None and generic["aware"].dt.tz is not None
    for column in ("aware",):
        generic[column] = generic[column].dt.tz_convert("UTC")
    pd.testing.assert_frame_equal(fast, generic)
    assert generic["maybe_int"].isna().any() and generic["value"].isna().any()
    assert _fast_only(postgres_url, "awkward", subset) is not None

    # a text holding the separator, and a type the fast path does not take on: read the generic way
    frame.loc[5, "label"] = "sep\x1erecord"
    _write(postgres_url, "with_separator", frame.drop(columns=["aware"]))
    generic, fast = _both_paths(postgres_url, "with_separator", LeadSubset(lead_id_range=(0, 100)))
    pd.testing.assert_frame_equal(fast, generic)
    assert _fast_only(postgres_url, "with_separator", LeadSubset(lead_id_range=(0, 100))) is None
    _write(postgres_url, "numeric", frame[["lead_id"]].assign(amount=1.5), dtype={"amount": sa.Numeric(10, 2)})
    generic, fast = _both_paths(postgres_url, "numeric", LeadSubset(lead_id_range=(0, 100)))
    pd.testing.assert_frame_equal(fast, generic)
    assert _fast_only(postgres_url, "numeric", LeadSubset(lead_id_range=(0, 100))) is None


def test_sqlite_columnar_read_waits_for_a_sqlite3_module_writer(sqlite_url: str) -> None:
    """The driver's SQLite copy does not see the sqlite3 module's locks in this process: a writer holding
    :meth:`features.sqlite_arrow.FileGate.sqlite3_module` of the file keeps the driver's reads out until it
    has committed, so the read sees the committed rows and never a half-written file."""
    import threading
    import time

    from features import sqlite_arrow

    n = 2000
    _write(sqlite_url, "counts", pd.DataFrame({"lead_id": np.arange(n, dtype=np.int64), "value": np.zeros(n)}))
    engine = sa.create_engine(sqlite_url)
    gate = sqlite_arrow.file_gate(sqlite_arrow.database_file(engine))
    in_transaction, reader_waits = threading.Event(), threading.Event()

    def writer() -> None:
        with sqlite_arrow.sqlite3_module_use(engine), engine.begin() as conn:
            conn.execute(sa.text("UPDATE counts SET value = 1"))
            in_transaction.set()
            for _ in range(500):  # commits once the driver's read waits at the gate (or after 10 s without)
                if gate.waiting() == (1, 0):
                    reader_waits.set()
                    break
                time.sleep(0.02)

    thread = threading.Thread(target=writer)
    thread.start()
    assert in_transaction.wait(10)
    frames = _columnar(sqlite_url, "counts", (0, n), set())
    thread.join()
    engine.dispose()
    assert reader_waits.is_set()  # the read was held at the gate by the writer (counted, not timed)
    assert frames is not None
    assert (pd.concat(frames)["value"] == 1).all()


@pytest.mark.parametrize("repeated", ["industry", "created_at", "lead_id"])
def test_a_csv_header_naming_a_column_twice_is_refused_naming_the_file_and_column(tmp_path: Path,
                                                                                   repeated: str) -> None:
    # pandas renames the second copy 'industry.1': the second created_at was silently an attribute, and a second
    # lead_id column a categorical feature holding every lead's id
    frames = canonical_frames(6)
    write_files("csv", tmp_path, frames)
    path = tmp_path / "leads.csv"
    header, *rows = path.read_text(encoding="utf-8").splitlines()
    names = header.split(",")
    twice = {"industry": "employees", "created_at": "CreatedDate", "lead_id": "Id"}[repeated]
    names[names.index("industry")] = twice
    path.write_text("\ufeff" + ",".join(names) + "\n" + "\n".join(rows) + "\n", encoding="utf-8")  # a BOM too
    with pytest.raises(DataSourceError, match=rf"^data\.source\.leads: {tmp_path}/leads\.csv: the header names "
                                              rf"column '{twice}' twice \(columns \d+ and \d+\)"):
        load_crm(file_config("csv", tmp_path))
    (tmp_path / "flat.csv").write_text("Id,y,y\n1,0,1\n", encoding="utf-8")
    flat = FlatConfig(source={"kind": "csv", "path": str(tmp_path / "flat.csv")}, id_column="Id", label_column="y")
    with pytest.raises(DataSourceError, match=r"^data\.source\.path: .*flat\.csv: the header names column 'y' twice "
                                              r"\(columns 2 and 3\)"):
        load_data(flat)


def test_a_csv_header_with_several_blank_names_is_not_a_repeated_column(tmp_path: Path) -> None:
    # spreadsheet exports end rows with empty fields ("...,saas,,"): pandas names each blank header field
    # 'Unnamed: <n>' (no column is renamed over another), as it read before repeated names were refused
    frames = canonical_frames(6)
    write_files("csv", tmp_path, frames)
    path = tmp_path / "leads.csv"
    header, *rows = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join([header + ",,", *(row + ",," for row in rows)]) + "\n", encoding="utf-8")
    crm, _ = load_crm(file_config("csv", tmp_path))
    assert sorted(crm.leads["lead_id"].tolist()) == sorted(frames["leads"]["lead_id"].tolist())


@pytest.mark.parametrize("values", ["plain", "with_commas"])
def test_a_csv_file_of_another_separator_is_refused_naming_it(tmp_path: Path, values: str) -> None:
    """X Education saved with ';' (a European spreadsheet's CSV): read with ',' its header is one column, and the
    error was a missing id column, or 'rows with more fields than the header's 1' where a value held a comma."""
    text = "Prospect ID;Converted;Specialization\na1;1;Finance\na2;0;" + \
        ("Banking, Investment And Insurance\n" if values == "with_commas" else "Media\n")
    (tmp_path / "flat.csv").write_text(text, encoding="utf-8")
    flat = FlatConfig(source={"kind": "csv", "path": str(tmp_path / "flat.csv")}, id_column="Prospect ID",
                      label_column="Converted")
    with pytest.raises(DataSourceError, match=r"^data\.source\.path: .*flat\.csv: the header is one column "
                                              r"'Prospect ID;Converted;Specialization', which holds ';': set "
                                              r"source\.csv_separator: ';' if the file is separated by it"):
        load_data(flat)
    data, _ = load_flat(flat.model_copy(update={"source": flat.source.model_copy(update={"csv_separator": ";"})}))
    assert len(data.frame) == 2


@pytest.mark.postgres
def test_a_table_name_of_another_case_or_schema_is_named_in_the_error(postgres_url: str) -> None:
    """A PostgreSQL table created quoted as "Leads" is not `leads`: the error said only "table 'leads' not found",
    and a schema that does not exist read as a missing table. Now the error names the table of the other case,
    and the schema that is not there."""
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE SCHEMA sales"))
    engine.dispose()
    _write(postgres_url, "Leads", pd.DataFrame({"lead_id": [1, 2]}))
    with pytest.raises(ValueError, match=r"table 'leads' not found in database .*; did you mean 'Leads'\? "
                                         r"\(PostgreSQL table names are case-sensitive"):
        read_sql_table(postgres_url, "leads")
    with pytest.raises(ValueError, match=r"table 'Leads' not found in schema 'sales' of database .*"
                                         r"; it is in schema 'public'"):
        read_sql_table(postgres_url, "Leads", schema="sales")
    with pytest.raises(ValueError, match=r"schema 'sale' \(source.db_schema\) does not exist in database .*"
                                         r"; did you mean 'sales'\?"):
        read_sql_table(postgres_url, "Leads", schema="sale")
    assert read_sql_table(postgres_url, "Leads")["lead_id"].tolist() == [1, 2]
