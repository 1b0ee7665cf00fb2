"""Out of core: Dask tasks read their own lead-id ranges from the database; same rows as pandas."""

from __future__ import annotations

import os
from pathlib import Path

import dask
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from distributed import Client, LocalCluster

from features.build import build_training_set
from features.contract import ContractError, DataConfig, SourceConfig
from features.distributed import build_training_set_from_source
from features.loading import load_crm
from leadscore.synth import SynthConfig, write_synthetic
from tests.integration.rescore_support import TEXT_IDS_OUT_OF_LOCALE_ORDER, make_text_lead_db

pytestmark = pytest.mark.timeout(240)



def assert_same_training_set(result, expected) -> None:
    """The distributed build's result is the in-memory build: the same learned spec state (the config differs
    only by data_end / event_types being pinned), data end, as-of dates and rows, exactly."""
    for learned in ("columns_", "families_", "labels_", "event_types_", "categorical_vocab_", "numeric_columns_",
                    "missing_values_"):
        assert getattr(result.spec, learned) == getattr(expected.spec, learned), learned
    assert result.data_end == expected.data_end
    pd.testing.assert_index_equal(result.as_of_dates, expected.as_of_dates)
    pd.testing.assert_frame_equal(result.read(), expected.frame, check_exact=True)


def test_source_driven_dask_build_equals_the_in_memory_build(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    write_synthetic(SynthConfig(n_leads=700, seed=4, events_per_lead=15), url, "sql")
    data = DataConfig(source=SourceConfig(kind="sql", url=url), missing_values=["", "Select"])
    crm, _ = load_crm(data)
    expected = build_training_set(crm)
    assert expected.spec.missing_values_ == ["", "Select"]  # the contract's markers travel with the spec

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster):
        result = build_training_set_from_source(data, tmp_path / "parts", partition_leads=150)

    assert len(result.files) == 5  # 700 ids in ranges of 150: every task read only its own leads
    assert_same_training_set(result, expected)


def test_non_integer_lead_ids_are_refused_with_the_column_named(tmp_path: Path) -> None:
    leads = pd.DataFrame({"lead_id": [1.5, 2.0], "created_at": ["2025-01-01", "2025-01-02"]})
    events = pd.DataFrame({"lead_id": [1.5], "occurred_at": ["2025-01-03"], "event_type": ["email_open"]})
    outcomes = pd.DataFrame({"lead_id": [1.5], "converted_at": [None]})
    for name, frame in (("leads", leads), ("events", events), ("outcomes", outcomes)):
        frame.to_csv(tmp_path / f"{name}.csv", index=False)
    data = DataConfig(source=SourceConfig(kind="csv", leads=str(tmp_path / "leads.csv"),
                                          events=str(tmp_path / "events.csv"),
                                          outcomes=str(tmp_path / "outcomes.csv")))
    with pytest.raises(ValueError, match=r"column 'lead_id': partitioning by integer lead-id ranges; non-integer"):
        build_training_set_from_source(data, tmp_path / "parts")


@pytest.mark.parametrize("kind", ["sqlite", "postgres", "csv"])
def test_text_lead_ids_build_equals_the_in_memory_build(kind: str, tmp_path: Path,
                                                        request: pytest.FixtureRequest) -> None:
    """Text ids (UUIDs, CRM ids, zero-padded numbers) were refused ("partitioning by integer lead-id ranges"):
    they are cut in ranges of their bytewise order, as a rescore cuts them, whatever the collation orders
    them in (a SQLite NOCASE column, a PostgreSQL database of ICU en-US: '_x' 'a10' 'b1' 'B2' 'Z')."""
    url = request.getfixturevalue("postgres_locale_url") if kind == "postgres" else f"sqlite:///{tmp_path / 'crm.db'}"
    ids = make_text_lead_db(url, "NOCASE" if kind == "sqlite" else None, n_leads=300)
    assert set(TEXT_IDS_OUT_OF_LOCALE_ORDER) <= set(ids)
    data = DataConfig(source=SourceConfig(kind="sql", url=url))
    if kind == "csv":
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            for table in ("leads", "events", "outcomes"):
                pd.read_sql_table(table, conn).to_csv(tmp_path / f"{table}.csv", index=False)
        engine.dispose()
        data = DataConfig(source=SourceConfig(kind="csv", **{t: str(tmp_path / f"{t}.csv")
                                                             for t in ("leads", "events", "outcomes")}))
    crm, _ = load_crm(data)
    assert crm.leads["lead_id"].map(type).eq(str).all() and "0007" in set(crm.leads["lead_id"])
    expected = build_training_set(crm)

    result = build_training_set_from_source(data, tmp_path / "parts", partition_leads=70)

    assert len(result.files) == 5  # 300 ids in ranges of 70
    parts = [set(pd.read_parquet(f)["lead_id"]) for f in result.files]
    assert all(a.isdisjoint(b) for i, a in enumerate(parts) for b in parts[i + 1:])  # each lead in one range
    assert_same_training_set(result, expected)


def _csv_crm(tmp_path: Path, **config: object) -> tuple[DataConfig, dict[str, pd.DataFrame]]:
    folder = tmp_path / "crm"
    write_synthetic(SynthConfig(n_leads=200, seed=5, events_per_lead=5), str(folder), "csv")
    tables = {t: pd.read_csv(folder / f"{t}.csv") for t in ("leads", "events", "outcomes")}
    source = SourceConfig(kind="csv", **{t: str(folder / f"{t}.csv") for t in tables})
    return DataConfig(source=source, **config), tables


def test_rows_outside_every_lead_range_are_read_and_refused(tmp_path: Path) -> None:
    """Events of an id above the largest lead id, or without an id, belong to no partition's range:
    they are still found (the in-memory build refuses them too), never silently left unread."""
    data, tables = _csv_crm(tmp_path)
    events = tables["events"]
    events.loc[3, "lead_id"] = 999_999
    events.to_csv(data.source.events, index=False)
    with pytest.raises(ContractError, match=r"events.lead_id: unknown_lead: 1 row.*lead_id=999999") as caught:
        build_training_set_from_source(data, tmp_path / "parts", partition_leads=50)
    # its row is counted within the last (open-ended) range, which the error names
    last = sorted(tables["leads"]["lead_id"])[-(len(tables["leads"]) % 50 or 50)]
    assert str(caught.value).startswith(f"data contract violated in the partition of lead ids from {last} (")
    assert f"(row = position among the rows read for the partition of lead ids from {last}, from 0)" in str(
        caught.value)
    events.loc[3, "lead_id"] = None
    events.to_csv(data.source.events, index=False)
    with pytest.raises(ContractError, match=r"events.lead_id: null_value: 1 row"):
        build_training_set_from_source(data, tmp_path / "parts", partition_leads=50)


def test_quarantine_keeps_every_partitions_rows_and_counts_them(tmp_path: Path) -> None:
    data, tables = _csv_crm(tmp_path, policy="quarantine", quarantine_dir=tmp_path / "q")
    events = tables["events"]
    events.loc[[5, len(events) - 5], "occurred_at"] = "not a date"  # one in the first, one in the last partition
    events["lead_id"] = events["lead_id"].astype("Int64")
    events.loc[[9, 10], "lead_id"] = None  # in no partition's range: quarantined, not refused
    events.to_csv(data.source.events, index=False)
    _, report = load_crm(data.model_copy(update={"quarantine_dir": tmp_path / "q-memory"}))
    result = build_training_set_from_source(data, tmp_path / "parts", partition_leads=50)
    assert result.rows_quarantined == report.rows_quarantined and report.rows_quarantined["events"] >= 4
    in_parts = pd.concat([pd.read_csv(f) for f in sorted((tmp_path / "q").glob("part-*/events.csv"))])
    without_id = pd.read_csv(tmp_path / "q" / "no-lead-id" / "events.csv")
    assert without_id["_row"].tolist() == [9, 10] and set(without_id["_reason"]) == {"null_value:lead_id"}
    assert without_id["occurred_at"].tolist() == events.loc[[9, 10], "occurred_at"].tolist()
    assert len(in_parts) + len(without_id) == report.rows_quarantined["events"]
    assert not (tmp_path / "q" / "no-lead-id" / "leads.csv").exists()


def _sqlite_crm(tmp_path: Path, *updates: str) -> str:
    """A 200-lead synthetic CRM in SQLite with ``updates`` applied; its URL."""
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    write_synthetic(SynthConfig(n_leads=200, seed=6, events_per_lead=5), url, "sql")
    with sa.create_engine(url).begin() as conn:
        for statement in updates:
            conn.execute(sa.text(statement))
    return url


def test_sql_rows_without_a_lead_id_are_quarantined_whole(tmp_path: Path) -> None:
    url = _sqlite_crm(tmp_path, "UPDATE events SET lead_id = NULL WHERE rowid IN (3, 4, 5)")
    data = DataConfig(source=SourceConfig(kind="sql", url=url), policy="quarantine",
                      quarantine_dir=tmp_path / "q", quarantine_format="parquet")
    result = build_training_set_from_source(data, tmp_path / "parts", partition_leads=80)
    without_id = pd.read_parquet(tmp_path / "q" / "no-lead-id" / "events.parquet")
    assert len(without_id) == 3 and without_id["lead_id"].isna().all()
    assert {"occurred_at", "event_type"} <= set(without_id.columns)
    assert result.rows_quarantined["events"] == 3 and result.rows_quarantined["leads"] == 0


def test_sqlite_text_ids_in_an_integer_column_are_refused_or_quarantined_not_lost(tmp_path: Path) -> None:
    """SQLite keeps text in an INTEGER column and compares it above every number: no id range holds such a
    row, so no partition would read it. It is found up front, as the in-memory load finds it."""
    url = _sqlite_crm(tmp_path, "UPDATE events SET lead_id = 'abc' WHERE rowid = 3",
                      "UPDATE events SET lead_id = 'x9' WHERE rowid = 7")
    strict = DataConfig(source=SourceConfig(kind="sql", url=url))
    with pytest.raises(ContractError, match=r"events.lead_id: wrong_type: 2 rows \(text lead ids in a numeric "
                                            r"column: no lead-id range holds them\); e.g. value='abc'; value='x9'") as caught:
        build_training_set_from_source(strict, tmp_path / "parts", partition_leads=80)
    assert "row = position" not in str(caught.value)  # its examples carry no row number to explain
    data = strict.model_copy(update={"policy": "quarantine", "quarantine_dir": tmp_path / "q"})
    _, report = load_crm(data.model_copy(update={"quarantine_dir": tmp_path / "q-memory"}))
    result = build_training_set_from_source(data, tmp_path / "parts", partition_leads=80)
    assert result.rows_quarantined["events"] == report.rows_quarantined["events"] == 2
    text_ids = pd.read_csv(tmp_path / "q" / "text-lead-id" / "events.csv")
    assert sorted(text_ids["lead_id"]) == ["abc", "x9"] and set(text_ids["_reason"]) == {"wrong_type:lead_id"}


def test_a_missing_marker_stored_as_text_in_an_integer_id_column_is_a_missing_id_as_in_a_whole_load(
        tmp_path: Path) -> None:
    """'' (a missing marker) kept as text by SQLite in the INTEGER lead-id column is null_value, as the
    whole load reads it (it was wrong_type in a range job); other text stays wrong_type."""
    url = _sqlite_crm(tmp_path, "UPDATE events SET lead_id = '' WHERE rowid = 3",
                      "UPDATE events SET lead_id = 'NA' WHERE rowid = 7")
    strict = DataConfig(source=SourceConfig(kind="sql", url=url))
    with pytest.raises(ContractError) as whole:
        load_crm(strict)
    with pytest.raises(ContractError) as ranges:
        build_training_set_from_source(strict, tmp_path / "parts", partition_leads=80)
    rules = {(v.rule, v.n_rows) for v in ranges.value.violations}
    assert rules == {(v.rule, v.n_rows) for v in whole.value.violations} == {("null_value", 1), ("wrong_type", 1)}
    data = strict.model_copy(update={"policy": "quarantine", "quarantine_dir": tmp_path / "q"})
    build_training_set_from_source(data, tmp_path / "parts", partition_leads=80)
    assert pd.read_csv(tmp_path / "q" / "no-lead-id" / "events.csv", keep_default_na=False)["lead_id"].tolist() == [""]
    assert pd.read_csv(tmp_path / "q" / "text-lead-id" / "events.csv", keep_default_na=False)["lead_id"].tolist() == ["NA"]


def test_a_sqlite_text_id_in_the_leads_integer_column_is_set_aside_not_a_partitioning_error(tmp_path: Path) -> None:
    """A lead (with its events and outcome) whose id is text in the INTEGER column: the driver's id list
    leaves it out, as it leaves out missing ids, so it is refused as wrong_type or quarantined whole; it was
    "partitioning by integer lead-id ranges; the ids are text" under both policies."""
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    write_synthetic(SynthConfig(n_leads=200, seed=6, events_per_lead=5), url, "sql")
    with sa.create_engine(url).begin() as conn:
        for table in ("leads", "events", "outcomes"):
            conn.execute(sa.text(f"UPDATE {table} SET lead_id = 'L3' WHERE lead_id = 3"))
        moved = {t: conn.execute(sa.text(f"SELECT COUNT(*) FROM {t} WHERE lead_id = 'L3'")).scalar_one()
                 for t in ("leads", "events", "outcomes")}
    strict = DataConfig(source=SourceConfig(kind="sql", url=url))
    with pytest.raises(ContractError, match=r"leads.lead_id: wrong_type: 1 row \(text lead ids in a numeric column"):
        build_training_set_from_source(strict, tmp_path / "parts", partition_leads=80)
    data = strict.model_copy(update={"policy": "quarantine", "quarantine_dir": tmp_path / "q"})
    result = build_training_set_from_source(data, tmp_path / "parts", partition_leads=80)
    assert moved["leads"] == 1 and result.rows_quarantined == moved
    assert pd.read_csv(tmp_path / "q" / "text-lead-id" / "leads.csv")["lead_id"].tolist() == ["L3"]


def test_a_rebuild_into_the_same_folder_leaves_only_its_own_partitions(tmp_path: Path) -> None:
    """A build with fewer (larger) partitions than the previous one in ``out_dir``: the folder read whole
    (``pd.read_parquet(out_dir)``, as Dask or Spark read it) holds this build's rows once, no stale part."""
    data, _ = _csv_crm(tmp_path)
    first = build_training_set_from_source(data, tmp_path / "parts", partition_leads=50)
    assert len(first.files) == 4
    second = build_training_set_from_source(data, tmp_path / "parts", partition_leads=120)
    assert sorted(p.name for p in (tmp_path / "parts").iterdir()) == ["part-00000.parquet", "part-00001.parquet"]
    assert second.files == sorted((tmp_path / "parts").iterdir())
    whole = pd.read_parquet(tmp_path / "parts").sort_values(["as_of", "lead_id"], kind="stable")
    pd.testing.assert_frame_equal(whole.reset_index(drop=True), second.read(), check_exact=True)


def test_a_failed_write_leaves_the_previous_build_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pass 2 writes every partition under a temporary name; they replace the previous build's files only
    once all are written: a partition that fails leaves the folder as it was (no mix of two builds)."""
    import features.distributed as distributed

    data, _ = _csv_crm(tmp_path)
    first = build_training_set_from_source(data, tmp_path / "parts", partition_leads=50)
    before = {p.name: p.read_bytes() for p in (tmp_path / "parts").iterdir()}
    write = distributed._partition_to_parquet

    def fail_on_the_last(data: DataConfig, start: int, stop: int, *args: object) -> Path:
        if stop == np.iinfo(np.int64).max:
            raise OSError("disk full")
        return write(data, start, stop, *args)

    monkeypatch.setattr(distributed, "_partition_to_parquet", fail_on_the_last)
    with dask.config.set(scheduler="synchronous"), pytest.raises(OSError, match="disk full"):
        build_training_set_from_source(data, tmp_path / "parts", partition_leads=120)
    assert {p.name: p.read_bytes() for p in (tmp_path / "parts").iterdir()} == before
    assert len(first.read()) == len(pd.read_parquet(tmp_path / "parts"))


def test_the_quarantine_folder_holds_only_the_last_builds_rows(tmp_path: Path) -> None:
    """As a whole-table load rewrites ``quarantine_dir/<table>.csv``, a distributed build leaves there only
    its own partitions' files: none of an earlier build's rows (more partitions, rows without a lead id)
    that the data no longer has, which would read as still quarantined."""
    data, tables = _csv_crm(tmp_path, policy="quarantine", quarantine_dir=tmp_path / "q")
    events = tables["events"].copy()
    events["lead_id"] = events["lead_id"].astype("Int64")
    events.loc[len(events) - 5, "occurred_at"] = "not a date"  # in the last partition
    events.loc[[9, 10], "lead_id"] = None
    events.to_csv(data.source.events, index=False)
    build_training_set_from_source(data, tmp_path / "parts", partition_leads=50)
    assert (tmp_path / "q" / "part-00003").is_dir() and (tmp_path / "q" / "no-lead-id").is_dir()
    tables["events"].to_csv(data.source.events, index=False)  # the data fixed
    result = build_training_set_from_source(data, tmp_path / "parts", partition_leads=120)
    assert sum(result.rows_quarantined.values()) == 0
    assert sorted(p.name for p in (tmp_path / "q").iterdir()) == ["part-00000", "part-00001"]
    assert sum(len(pd.read_csv(f)) for f in (tmp_path / "q").rglob("*.csv")) == 0


def test_a_failed_build_leaves_the_earlier_builds_quarantine_beside_its_partitions(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed build leaves the earlier build's partition files in place; their quarantine files were gone
    (cleared when the build started), and the new build's half-written ones were left instead."""
    import features.distributed as distributed

    data, tables = _csv_crm(tmp_path, policy="quarantine", quarantine_dir=tmp_path / "q")
    events = tables["events"].copy()
    events["lead_id"] = events["lead_id"].astype("Int64")
    events.loc[[9, 10], "lead_id"] = None
    events.to_csv(data.source.events, index=False)
    build_training_set_from_source(data, tmp_path / "parts", partition_leads=50)
    before = {p.relative_to(tmp_path / "q"): p.read_bytes() for p in (tmp_path / "q").rglob("*") if p.is_file()}
    assert any(p.parts[0] == "no-lead-id" for p in before)
    tables["events"].to_csv(data.source.events, index=False)  # the data fixed, then pass 2 fails

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(distributed, "_partition_to_parquet", broken)
    with pytest.raises(OSError, match="disk full"):
        build_training_set_from_source(data, tmp_path / "parts", partition_leads=120)
    after = {p.relative_to(tmp_path / "q"): p.read_bytes() for p in (tmp_path / "q").rglob("*") if p.is_file()}
    assert after == before and not [p for p in (tmp_path / "q").iterdir() if p.name.startswith(".")]


def test_relative_paths_name_the_drivers_files_on_the_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A data config with a relative SQLite URL and quarantine folder, built on workers started in another
    folder: they read the driver's file and write its quarantine folder (SQLite created an empty file of
    their own, and the build failed with "table 'leads' not found"); a relative ``out_dir`` is the driver's
    folder too (the workers wrote their partitions under their own folder: "Cannot save file into a
    non-existent directory: 'parts'")."""
    write_synthetic(SynthConfig(n_leads=300, seed=4, events_per_lead=5), f"sqlite:///{tmp_path / 'crm.db'}", "sql")
    monkeypatch.chdir(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    data = DataConfig(source=SourceConfig(kind="sql", url="sqlite:///crm.db"), policy="quarantine",
                      quarantine_dir=Path("q"))
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        client.run(os.chdir, str(elsewhere))
        result = build_training_set_from_source(data, Path("parts"), partition_leads=150)
    assert len(result.read()) > 0 and (tmp_path / "q" / "part-00000" / "leads.csv").is_file()
    assert result.files == sorted((tmp_path / "parts").iterdir())  # the driver's folder, named absolutely
    assert list(elsewhere.iterdir()) == []


def test_an_attribute_empty_in_a_whole_partition_is_typed_as_the_in_memory_build_types_it(tmp_path: Path) -> None:
    """A field the CRM added later is empty for every lead of the older id ranges: those partitions alone would
    infer it as text, the others as numbers. The build types it from the values it has, as the in-memory
    build does (it stopped with "attribute types were inferred differently in different lead partitions")."""
    data, tables = _csv_crm(tmp_path)
    leads = tables["leads"]
    old = leads["lead_id"] <= leads["lead_id"].sort_values().iloc[60]
    leads.loc[old, ["employees", "annual_revenue", "industry"]] = None
    leads.to_csv(data.source.leads, index=False)
    crm, _ = load_crm(data)
    expected = build_training_set(crm)
    assert "employees" in crm.numeric_attributes and "industry" in crm.categorical_attributes
    result = build_training_set_from_source(data, tmp_path / "parts", partition_leads=50)
    assert result.spec.numeric_columns_ == expected.spec.numeric_columns_
    assert result.spec.categorical_vocab_ == expected.spec.categorical_vocab_
    pd.testing.assert_frame_equal(result.read(), expected.frame, check_exact=True)


def test_missing_markers_among_text_ids_are_set_aside_once_not_again_by_their_range(tmp_path: Path) -> None:
    """A text id that is a ``missing_values`` marker ('NA', '') sorts inside a text range (or, '', at the start of
    the first): it was quarantined up front with the rows without a lead id AND again by the partition whose
    range holds it (6 rows counted for 4; the whole load counts 4)."""
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    make_text_lead_db(url, n_leads=300)
    with sa.create_engine(url).begin() as conn:
        conn.execute(sa.text("UPDATE events SET lead_id = '' WHERE rowid = 3"))
        conn.execute(sa.text("UPDATE events SET lead_id = 'NA' WHERE rowid = 7"))
        conn.execute(sa.text("UPDATE events SET lead_id = NULL WHERE rowid = 11"))
        conn.execute(sa.text("UPDATE events SET lead_id = '!early' WHERE rowid = 9"))  # before every lead id
    data = DataConfig(source=SourceConfig(kind="sql", url=url), missing_values=["", "NA"], policy="quarantine",
                      quarantine_dir=tmp_path / "q")
    _, report = load_crm(data.model_copy(update={"quarantine_dir": tmp_path / "q-memory"}))
    result = build_training_set_from_source(data, tmp_path / "parts", partition_leads=70)
    assert result.rows_quarantined == report.rows_quarantined and report.rows_quarantined["events"] == 4
    without_id = pd.read_csv(tmp_path / "q" / "no-lead-id" / "events.csv", keep_default_na=False)
    assert sorted(without_id["lead_id"]) == ["", "", "NA"]  # the NULL one written as ''
    in_parts = pd.concat([pd.read_csv(f, keep_default_na=False) for f in (tmp_path / "q").glob("part-*/events.csv")])
    assert in_parts[["lead_id", "_reason"]].values.tolist() == [["!early", "unknown_lead:lead_id"]]


def test_a_fixed_event_type_vocabulary_is_checked_against_every_range_s_types(tmp_path: Path) -> None:
    """The distributed build fits its spec without events: a misspelt ``features.event_types`` is refused against
    the types its ranges read, and a custom type the data has (no conventional one) is kept, as in memory."""
    from features.spec import FeatureConfig, FeatureSpecError

    data, tables = _csv_crm(tmp_path)
    events = tables["events"]
    events.loc[events.index[::7], "event_type"] = "trade_show"
    events.to_csv(data.source.events, index=False)
    with pytest.raises(FeatureSpecError, match=r"features\.event_types: \['emial_open'\] not among .*did you mean "
                                               r"'email_open'\?"):
        build_training_set_from_source(data, tmp_path / "parts", FeatureConfig(event_types=("emial_open",)),
                                       partition_leads=50)
    fixed = FeatureConfig(event_types=("trade_show", "email_open"))
    result = build_training_set_from_source(data, tmp_path / "parts", fixed, partition_leads=50)
    crm, _ = load_crm(data)
    assert_same_training_set(result, build_training_set(crm, fixed))
