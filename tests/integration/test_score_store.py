"""The partition commit writes the same rows whichever way it stages them: through the ADBC driver (a
SQLite file), the sqlite3 module (in-memory SQLite) or COPY (PostgreSQL); history follows the rule."""

from __future__ import annotations

import json
from datetime import datetime

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from features import sqlite_arrow
from serving import score_store as store

N = 300
AS_OF = datetime(2026, 11, 1)


def _run(engine: sa.Engine, run_id: str, started: datetime) -> store.RunRecord:
    run = store.RunRecord(run_id=run_id, status=store.RUNNING, as_of=AS_OF, model_name="lead-conversion",
                          model_version="3", model_source=None, changed_since=None, top_k=3, started_at=started,
                          partitions=[store.PartitionSpec(0, 0, N // 2), store.PartitionSpec(1, N // 2, N)])
    store.create_run(engine, run)
    return run


def _scores(run_id: str, seed: int, closing: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = N
    p_close = rng.random(n) if closing else np.full(n, np.nan)
    p_close[:5] = np.nan  # some NULLs among values
    return pd.DataFrame({
        "lead_id": np.arange(n, dtype=np.int64), "score": rng.integers(0, 101, n), "probability": rng.random(n),
        "grade": rng.choice(list("ABCD"), n), "mql": rng.random(n) < 0.3, "base_score": rng.random(n),
        "fit_score": rng.random(n), "engagement_score": rng.random(n), "lifecycle_score": rng.random(n),
        "horizon_days": np.full(n, 90.0), "p_close_30d": p_close / 3, "p_close_60d": p_close / 2,
        "p_close_90d": p_close, "median_days": np.where(rng.random(n) < 0.5, np.nan, 40.5),
        "reasons": [json.dumps([{"feature": "pricing_views", "label": "Prix \u00e9lev\u00e9 \U0001f680", "value": i}])
                    for i in range(n)],
        "model_name": "lead-conversion \\ \t tab\nline\r", "model_version": "3", "time_to_close_version": "2" if closing else None,
        "scored_at": pd.Timestamp("2026-11-01 08:30:00.123456"), "as_of": pd.Timestamp(AS_OF), "run_id": run_id,
    })


def _commit_two_runs(url: str, schema: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, list[int]]:
    base = sa.create_engine(url)
    engine = store.in_schema(base, schema)
    try:
        store.create_score_tables(engine)
        counts = []
        for k, run_id in enumerate(("first", "second")):
            run = _run(engine, run_id, datetime(2026, 11, 1 + k))
            scores = _scores(run_id, seed=k, closing=k == 1)
            if k == 1:
                scores.loc[scores["lead_id"] % 3 == 0, "score"] = 50  # some unchanged, most changed
            for partition in run.partitions:
                inside = scores[(scores["lead_id"] >= partition.start) & (scores["lead_id"] < partition.stop)]
                counts.append(store.commit_partition(engine, run_id, partition, inside,
                                                     store.PartitionCounts(leads=len(inside), scored=len(inside))))
            counts.append(store.commit_partition(engine, run_id, run.partitions[0], scores.iloc[:0],
                                                 store.PartitionCounts()))  # already done: untouched
        with engine.connect() as conn:
            parts = pd.read_sql(sa.select(store.lead_score_run_partitions.c.run_id, store.lead_score_run_partitions.c
                                          .partition, store.lead_score_run_partitions.c.status,
                                          store.lead_score_run_partitions.c.leads)
                                .order_by("run_id", "partition"), conn)
        return store.read_scores(engine), store.read_history(engine), parts, counts
    finally:
        base.dispose()


@pytest.fixture(scope="module")
def in_memory() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, list[int]]:
    return _commit_two_runs("sqlite://")  # staged through the sqlite3 module


def test_in_memory_result_follows_the_history_rule(in_memory) -> None:
    scores, history, parts, counts = in_memory
    assert len(scores) == N and (scores["run_id"] == "second").all()
    first = history[history["run_id"] == "first"]
    second = history[history["run_id"] == "second"]
    assert len(first) == N and first["previous_score"].isna().all()
    assert counts[:3] == [N // 2, N - N // 2, 0]
    assert len(second) == counts[3] + counts[4] and counts[5] == 0
    assert (second["score"] != second["previous_score"]).all()
    assert (second["delta"] == second["score"] - second["previous_score"]).all()
    assert (second["previous_run_id"] == "first").all()
    expected_changed = (_scores("second", 1, True).assign(
        score=lambda f: f["score"].where(f["lead_id"] % 3 != 0, 50))["score"].to_numpy()
        != _scores("first", 0, False)["score"].to_numpy())
    assert sorted(second["lead_id"]) == np.flatnonzero(expected_changed).tolist()
    assert (parts["status"] == store.DONE).all() and len(parts) == 4


@pytest.mark.parametrize("database", ["sqlite_file", "sqlite_wal", "postgres"])
def test_every_staging_path_writes_the_same_rows(database: str, in_memory, sqlite_url: str, request) -> None:
    """SQLite file: through the ADBC driver; in WAL mode: through the sqlite3 module (the driver's copy
    closing as the last connection it knows of would checkpoint and delete the WAL under the pool's)."""
    url = request.getfixturevalue("postgres_url") if database == "postgres" else sqlite_url
    if database == "sqlite_wal":
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode = WAL").scalar() == "wal"
        assert sqlite_arrow.adbc_file(engine) is None
        engine.dispose()
    elif database == "sqlite_file":
        assert sqlite_arrow.adbc_file(sa.create_engine(url)) is not None
    scores, history, parts, counts = _commit_two_runs(url)
    expected_scores, expected_history, expected_parts, expected_counts = in_memory
    assert counts == expected_counts
    pd.testing.assert_frame_equal(scores, expected_scores, check_dtype=False)
    pd.testing.assert_frame_equal(history, expected_history, check_dtype=False)
    pd.testing.assert_frame_equal(parts, expected_parts, check_dtype=False)


@pytest.mark.parametrize("database", ["sqlite_file", "sqlite_memory", "postgres"])
def test_every_staging_path_writes_the_same_rows_into_a_schema(database: str, in_memory, sqlite_url: str,
                                                              request) -> None:
    """The tables of a schema (PostgreSQL ``crm``; SQLite's only one, ``main``), the default one untouched."""
    url = {"postgres": lambda: request.getfixturevalue("postgres_url"), "sqlite_file": lambda: sqlite_url,
           "sqlite_memory": lambda: "sqlite://"}[database]()
    schema = "crm" if database == "postgres" else "main"
    if database == "postgres":
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE SCHEMA crm"))
        engine.dispose()
    result = _commit_two_runs(url, schema)
    for got, want in zip(result[:3], in_memory[:3], strict=True):
        pd.testing.assert_frame_equal(got, want, check_dtype=False)
    assert result[3] == in_memory[3]
    if database == "postgres":
        engine = sa.create_engine(url)
        assert sa.inspect(engine).get_table_names(schema="public") == []
        assert store.count_scores(store.in_schema(engine, schema)) == N and store.count_scores(engine) is None
        store.drop_score_tables(store.in_schema(engine, schema))
        assert sa.inspect(engine).get_table_names(schema="crm") == []
        engine.dispose()


def test_sqlite_file_values_have_the_storage_classes_of_the_sqlite3_module(sqlite_url: str) -> None:
    _commit_two_runs(sqlite_url)
    engine = sa.create_engine(sqlite_url)
    with engine.connect() as conn:
        classes = conn.exec_driver_sql(
            "SELECT DISTINCT typeof(lead_id), typeof(score), typeof(mql), typeof(horizon_days), typeof(scored_at), "
            "typeof(reasons), typeof(time_to_close_version) FROM lead_scores").all()
        committed = conn.exec_driver_sql("SELECT DISTINCT typeof(committed_at) FROM lead_score_run_partitions "
                                         "WHERE status = 'done'").all()
    engine.dispose()
    assert classes == [("integer", "integer", "integer", "integer", "text", "text", "text")]
    assert committed == [("text",)]


def test_a_failed_commit_leaves_nothing(sqlite_url: str) -> None:
    engine = sa.create_engine(sqlite_url)
    store.create_score_tables(engine)
    run = _run(engine, "run", datetime(2026, 11, 1))
    scores = _scores("run", 0, False).iloc[: N // 2]
    scores.loc[3, "reasons"] = None  # NOT NULL in lead_scores only: the upsert fails after the history insert
    with pytest.raises(Exception, match="NOT NULL"):
        store.commit_partition(engine, "run", run.partitions[0], scores, store.PartitionCounts())
    assert len(store.read_scores(engine)) == 0 and len(store.read_history(engine)) == 0
    assert store.load_run(engine, "run").done == set()
    engine.dispose()
