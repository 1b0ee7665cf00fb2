"""Batch rescoring of a lead base whose ids are text (UUIDs, CRM ids, zero-padded numbers, ids whose order
differs between a locale collation and bytewise), on SQLite and PostgreSQL: full run, resume, incremental
run, worker processes, the CLI, and a score store made for the other kind of ids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from leadscore.cli import app
from serving import score_store
from serving.rescore import RescoreConfig, rescore, sql_data_config
from tests.integration.rescore_support import (
    AS_OF,
    LATER,
    TEXT_IDS_OUT_OF_LOCALE_ORDER,
    Champion,
    check_unscored_leads_were_scored,
    delete_scores,
    in_memory_scores,
    make_champion,
    make_text_lead_db,
    stored_scores,
    text_id,
)

PARTITION_LEADS = 97  # many partition bounds


@pytest.fixture(scope="module")
def champion(tmp_path_factory: pytest.TempPathFactory) -> Champion:
    return make_champion(tmp_path_factory.mktemp("rescore-text-champion"))


def _config(**kwargs: object) -> RescoreConfig:
    return RescoreConfig(partition_leads=PARTITION_LEADS, **kwargs)


def _partitions(url: str, run_id: str) -> pd.DataFrame:
    engine = sa.create_engine(url)
    try:
        return score_store.partition_counts(engine, run_id)
    finally:
        engine.dispose()


def _check_every_open_lead_scored_once(url: str, champion: Champion, run_id: str, ids: list[str],
                                       as_of: pd.Timestamp) -> None:
    reference = in_memory_scores(url, champion.core(), as_of)
    stored = stored_scores(url)
    mine = stored[stored["run_id"] == run_id].set_index("lead_id")
    assert sorted(mine.index) == sorted(reference.lead_id.tolist()) and len(mine) > 0
    np.testing.assert_array_equal(mine.loc[list(reference.lead_id), "score"].to_numpy(), reference.score)
    parts = _partitions(url, run_id)
    assert len(parts) == -(-len(ids) // PARTITION_LEADS)
    assert parts["leads"].sum() == len(ids)  # each lead read by exactly one partition
    assert parts["scored"].sum() == len(reference.lead_id)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_text_ids_are_rescored_once_each_and_a_cut_run_resumes(kind: str, champion: Champion,
                                                               request: pytest.FixtureRequest) -> None:
    """Text ids were refused ('partitioning by integer lead-id ranges'). A locale collation (a PostgreSQL
    database's ICU en-US default, a SQLite NOCASE column) must not shift the partitions' bytewise ranges."""
    url = request.getfixturevalue("sqlite_url" if kind == "sqlite" else "postgres_locale_url")
    ids = make_text_lead_db(url, "NOCASE" if kind == "sqlite" else None)
    data = sql_data_config(url)
    rescore(data, url, champion.settings, _config(as_of=AS_OF, run_id="full"))
    _check_every_open_lead_scored_once(url, champion, "full", ids, AS_OF)
    first = set(stored_scores(url)["lead_id"])

    committed: list[int] = []

    def cut(result: object) -> None:
        committed.append(result.partition.index)  # type: ignore[attr-defined]
        if len(committed) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        rescore(data, url, champion.settings, _config(as_of=LATER, run_id="cut"), on_result=cut)
    summary = rescore(data, url, champion.settings, _config(resume=True))
    assert summary.run_id == "cut"
    # resumed, not restarted: the two partitions committed before the cut are not run again
    assert len(committed) == 2 and summary.partitions_run_now == summary.partitions - 2, summary
    _check_every_open_lead_scored_once(url, champion, "cut", ids, LATER)
    engine = sa.create_engine(url)
    try:
        run = score_store.load_run(engine, "cut")
        assert all(isinstance(p.start, str) for p in run.partitions) and run.partitions[-1].stop is None
        history = score_store.read_history(engine, "cut")
        assert history["lead_id"].map(type).eq(str).all()
        # the previous score of a lead is found in its range: none of the first run's leads counts as new
        assert not set(history.loc[history["previous_score"].isna(), "lead_id"]) & first
        assert history["previous_score"].notna().any()
    finally:
        engine.dispose()


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_incremental_text_ids_on_worker_processes(kind: str, champion: Champion, request: pytest.FixtureRequest) -> None:
    """The stored scores of each partition (to find its never-scored leads) are found by its bytewise range,
    on PostgreSQL too, whose database collation (ICU en-US) orders the ids otherwise."""
    url = request.getfixturevalue("sqlite_url" if kind == "sqlite" else "postgres_locale_url")
    ids = make_text_lead_db(url)
    data = sql_data_config(url)
    rescore(data, url, champion.settings, _config(as_of=AS_OF, run_id="full"))
    before = set(stored_scores(url)["lead_id"])
    lost = sorted(before)[::50]
    delete_scores(url, lost)
    since = AS_OF + pd.Timedelta(days=1)
    summary = rescore(data, url, champion.settings,
                      _config(as_of=LATER, changed_since=since, run_id="inc", processes=2))
    check_unscored_leads_were_scored(url, champion, summary, "inc", before, lost, since, LATER)
    assert _partitions(url, "inc")["leads"].sum() == len(ids)


def test_a_store_of_the_other_kind_of_ids_is_refused_naming_table_and_column(sqlite_url: str,
                                                                              champion: Champion) -> None:
    make_text_lead_db(sqlite_url, n_leads=50)
    engine = sa.create_engine(sqlite_url)
    score_store.create_score_tables(engine)  # a store of integer lead ids
    engine.dispose()
    with pytest.raises(ValueError, match=r"table lead_scores, column lead_id: holds integer lead ids .*are text"):
        rescore(sql_data_config(sqlite_url), sqlite_url, champion.settings, _config(as_of=AS_OF))
    engine = sa.create_engine(sqlite_url)
    score_store.drop_score_tables(engine)
    score_store.create_score_tables(engine, text_ids=True)
    with pytest.raises(ValueError, match=r"table lead_scores, column lead_id: holds text lead ids .*are integer"):
        score_store.create_score_tables(engine)
    engine.dispose()


def test_cli_rescores_a_text_id_crm(sqlite_url: str, champion: Champion, tmp_path: Path) -> None:
    ids = make_text_lead_db(sqlite_url, n_leads=120)
    out = tmp_path / "scores.csv"
    result = CliRunner().invoke(app, [
        "rescore", "--db", sqlite_url, "--model-dir", str(champion.models_dir), "--as-of", "2026-05-01",
        "--partition-leads", "40", "--out", str(out), "--top", "3",
    ])
    assert result.exit_code == 0, result.output
    stored = stored_scores(sqlite_url)
    assert len(stored) > 0 and set(stored["lead_id"]) <= set(ids)
    written = pd.read_csv(out, dtype={"lead_id": str})
    assert sorted(written["lead_id"]) == sorted(stored["lead_id"])  # '0007' stays '0007'


def test_text_ranges_follow_the_bytewise_order_and_cover_every_id_once() -> None:
    """Python's str order is the bytewise order of UTF-8 (what COLLATE "C" / BINARY compare)."""
    from features.readers import LeadSubset, lead_id_ranges

    ids = [*TEXT_IDS_OUT_OF_LOCALE_ORDER, "é", "e\u0301", "\U0001f600x", "\uffff", "zz", "Zz", "", " a", *(text_id(k) for k in range(40))]
    assert sorted(ids) == sorted(ids, key=lambda t: t.encode("utf-8"))
    ranges = lead_id_ranges(np.array(ids, dtype=object), 4)
    assert ranges[-1][1] is None and all(a < b for a, b in ranges[:-1])
    series = pd.Series(ids, dtype=object)
    hits = sum(LeadSubset(lead_id_range=r).mask(series).astype(int) for r in ranges)
    assert (hits == 1).all()


@pytest.mark.parametrize("kind", ["parquet", "csv"])
def test_text_id_ranges_read_every_lead_of_a_file_once(kind: str, tmp_path: Path) -> None:
    from features.readers import LeadSubset, lead_id_ranges, read_csv_table, read_parquet_table

    ids = [text_id(k) for k in range(30)]
    frame = pd.DataFrame({"lead_id": ids, "x": range(30)})
    path = tmp_path / f"leads.{kind}"
    frame.to_parquet(path) if kind == "parquet" else frame.to_csv(path, index=False)
    read = []
    for start, stop in lead_id_ranges(np.array(ids, dtype=object), 7):
        reader = read_parquet_table if kind == "parquet" else read_csv_table
        read += reader(path, lead_id_column="lead_id", subset=LeadSubset(lead_id_range=(start, stop)))["lead_id"].tolist()
    assert sorted(read) == sorted(ids)


def test_postgres_uuid_lead_ids(postgres_locale_url: str, champion: Champion) -> None:
    """A native uuid column (no collation of its own) is cut as its text, bytewise."""
    from sqlalchemy.dialects import postgresql

    url = postgres_locale_url
    ids = make_text_lead_db(url, n_leads=300, id_type=postgresql.UUID(as_uuid=False))
    rescore(sql_data_config(url), url, champion.settings, _config(as_of=AS_OF, run_id="uuid"))
    _check_every_open_lead_scored_once(url, champion, "uuid", ids, AS_OF)


def test_a_text_id_run_scoring_nothing_writes_a_parquet_file_of_text_ids(sqlite_url: str, champion: Champion,
                                                                          tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    make_text_lead_db(sqlite_url, n_leads=50)
    out = tmp_path / "scores.parquet"
    summary = rescore(sql_data_config(sqlite_url), sqlite_url, champion.settings,
                      _config(as_of=pd.Timestamp("2001-01-01")), out=out)  # before every lead was created
    assert summary.scored == 0
    assert pq.read_schema(out).field("lead_id").type == pa.string()


def test_a_missing_marker_among_text_ids_is_quarantined_once(sqlite_url: str, champion: Champion,
                                                             tmp_path: Path) -> None:
    """'NA' (a ``missing_values`` marker) as an event's text lead id sorts inside a partition's range: set aside
    up front with the rows without a lead id, it was quarantined a second time by that partition."""
    make_text_lead_db(sqlite_url, n_leads=200)
    engine = sa.create_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE events SET lead_id = 'NA' WHERE rowid IN (5, 6)"))
    engine.dispose()
    data = sql_data_config(sqlite_url).model_copy(update={
        "missing_values": ["", "NA"], "policy": "quarantine", "quarantine_dir": tmp_path / "q"})
    rescore(data, sqlite_url, champion.settings, _config(as_of=AS_OF, run_id="marked"))
    run = tmp_path / "q" / "rescore-marked"
    assert pd.read_csv(run / "no-lead-id" / "events.csv", keep_default_na=False)["lead_id"].tolist() == ["NA", "NA"]
    in_parts = [pd.read_csv(f, keep_default_na=False) for f in run.glob("part-*/events.csv")]
    assert sum(len(f) for f in in_parts) == 0
