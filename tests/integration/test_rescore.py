"""Batch rescoring against real SQLite and PostgreSQL: parity with the scoring core, idempotence,
history, incremental mode, quarantine, the CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from features.contract import AttributesConfig, ColumnMapping, ContractError, DataConfig, SourceConfig
from leadscore.cli import app
from serving import score_store
from serving.rescore import (
    ProcessExecutor,
    RescoreConfig,
    WorkerDiedError,
    load_scoring_core,
    plan_partitions,
    rescore,
    sql_data_config,
    top_leads,
)
from serving.rescore import (
    score_engine as score_store_engine,
)
from tests.integration.rescore_support import (
    AS_OF,
    LATER,
    PARTITION_LEADS,
    TIME_TO_CLOSE_VERSION,
    VALUE_COLUMNS,
    Champion,
    check_unscored_leads_were_scored,
    delete_scores,
    in_memory_scores,
    make_champion,
    make_lead_db,
    stored_scores,
)


@pytest.fixture(scope="module")
def champion(tmp_path_factory: pytest.TempPathFactory) -> Champion:
    return make_champion(tmp_path_factory.mktemp("rescore-champion"))


@pytest.fixture(params=["sqlite", "postgres"])
def lead_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")
    make_lead_db(url)
    return url


def _history(url: str, run_id: str | None = None) -> pd.DataFrame:
    engine = sa.create_engine(url)
    try:
        return score_store.read_history(engine, run_id)
    finally:
        engine.dispose()


def _config(**kwargs: object) -> RescoreConfig:
    return RescoreConfig(partition_leads=PARTITION_LEADS, **kwargs)


def test_plan_partitions_cover_every_id_once() -> None:
    ids = np.array([3, 4, 9, 10, 11, 40, 41, 100])
    parts = plan_partitions(ids, 3)
    assert [(p.start, p.stop) for p in parts] == [(3, 10), (10, 41), (41, 101)]
    covered = np.concatenate([ids[(ids >= p.start) & (ids < p.stop)] for p in parts])
    assert sorted(covered.tolist()) == ids.tolist()


def test_rescore_matches_scoring_core(lead_db: str, champion: Champion) -> None:
    summary = rescore(sql_data_config(lead_db), lead_db, champion.settings, _config(as_of=AS_OF))
    stored = stored_scores(lead_db)
    reference = in_memory_scores(lead_db, champion.core(), AS_OF)

    assert summary.partitions > 1
    assert summary.scored == len(stored) == len(reference)
    assert summary.leads == summary.scored + summary.skipped_converted + summary.skipped_not_created
    assert summary.skipped_converted > 0 and summary.skipped_not_created > 0
    np.testing.assert_array_equal(stored["lead_id"].to_numpy(), reference.lead_id)
    np.testing.assert_allclose(stored["probability"].to_numpy(), reference.probability, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(stored["score"].to_numpy(), reference.score)
    np.testing.assert_array_equal(stored["grade"].to_numpy(), reference.grade)
    np.testing.assert_array_equal(stored["mql"].astype(bool).to_numpy(), reference.mql)
    np.testing.assert_allclose(stored["fit_score"].to_numpy(), reference.fit_score, atol=1e-9)
    np.testing.assert_allclose(stored["engagement_score"].to_numpy(), reference.engagement_score, atol=1e-9)
    for field in ("p_close_30d", "p_close_60d", "p_close_90d", "median_days"):
        np.testing.assert_allclose(stored[field].to_numpy(dtype=float), reference.closing[field], atol=1e-12)
    assert stored["p_close_90d"].notna().all() and stored["p_close_90d"].nunique() > 1
    assert (stored["time_to_close_version"] == TIME_TO_CLOSE_VERSION).all()
    assert summary.time_to_close_model == f"lead-time-to-close v{TIME_TO_CLOSE_VERSION}"
    for i in range(0, len(stored), 97):
        got, want = json.loads(stored["reasons"].iloc[i]), reference.reasons_of(i)
        assert [r["feature"] for r in got] == [r["feature"] for r in want]
        assert [r["value"] for r in got] == [r["value"] for r in want]
        np.testing.assert_allclose([r["impact"] for r in got], [r["impact"] for r in want], atol=1e-12)
    assert (stored["model_version"] == champion.version).all()
    assert (stored["run_id"] == summary.run_id).all()
    assert (pd.to_datetime(stored["as_of"]) == AS_OF).all()
    assert summary.mql == int(reference.mql.sum())
    assert summary.grades == {g: int((reference.grade == g).sum()) for g in "ABCD"}
    # first scoring: one history row per lead, no previous score
    history = _history(lead_db, summary.run_id)
    assert len(history) == summary.scored and history["previous_score"].isna().all()


def test_rerun_is_idempotent_and_history_records_changes(lead_db: str, champion: Champion) -> None:
    data = sql_data_config(lead_db)
    first = rescore(data, lead_db, champion.settings, _config(as_of=AS_OF, run_id="first"))
    before = stored_scores(lead_db)

    again = rescore(data, lead_db, champion.settings, _config(run_id="first"))  # finished run: nothing to do
    assert again.partitions_run_now == 0 and again.scored == first.scored
    pd.testing.assert_frame_equal(stored_scores(lead_db), before)

    same = rescore(data, lead_db, champion.settings, _config(as_of=AS_OF, run_id="same"))
    after = stored_scores(lead_db)
    pd.testing.assert_frame_equal(after[VALUE_COLUMNS], before[VALUE_COLUMNS])
    assert (after["run_id"] == "same").all()
    assert same.history_rows == 0 and len(_history(lead_db, "same")) == 0

    later = rescore(data, lead_db, champion.settings, _config(as_of=LATER, run_id="later"))
    history = _history(lead_db, "later")
    now = stored_scores(lead_db).set_index("lead_id")
    known = history[history["previous_score"].notna()].set_index("lead_id")
    assert len(known) > 0
    prev = before.set_index("lead_id").loc[known.index, "score"]
    np.testing.assert_array_equal(known["previous_score"].to_numpy(), prev.to_numpy())
    np.testing.assert_array_equal(known["delta"].to_numpy(), (known["score"] - known["previous_score"]).to_numpy())
    assert (known["delta"] != 0).all()
    np.testing.assert_array_equal(known["score"].to_numpy(), now.loc[known.index, "score"].to_numpy())
    # every lead scored in both runs with an unchanged score has no history row in the later run
    both = now.index[now["run_id"] == "later"].intersection(before["lead_id"])
    unchanged = both[now.loc[both, "score"].to_numpy() == before.set_index("lead_id").loc[both, "score"].to_numpy()]
    assert not set(unchanged) & set(history["lead_id"])
    assert later.largest_increases[0]["delta"] == known["delta"].max()
    assert later.largest_decreases[0]["delta"] == known["delta"].min()


def test_converted_leads_leave_the_table_and_older_runs_never_replace_newer_scores(lead_db: str,
                                                                                  champion: Champion) -> None:
    data = sql_data_config(lead_db)
    rescore(data, lead_db, champion.settings, _config(as_of=AS_OF, run_id="early"))
    early = stored_scores(lead_db)
    engine = sa.create_engine(lead_db)
    with engine.connect() as conn:
        outcomes = pd.read_sql("SELECT lead_id, converted_at FROM outcomes", conn, parse_dates=["converted_at"])
    converted_since = set(outcomes.loc[(outcomes["converted_at"] > AS_OF) & (outcomes["converted_at"] <= LATER),
                                       "lead_id"]) & set(early["lead_id"])
    assert converted_since  # leads scored in May that closed before June
    score_store.set_run_status(engine, "early", score_store.FAILED)  # as if it had died before its end
    with engine.begin() as conn:  # values the model never saw are scored as missing, and reported
        lead = int(early["lead_id"].iloc[0])
        conn.execute(sa.text("UPDATE leads SET industry = 'martian' WHERE lead_id = :id"), {"id": lead})
        conn.execute(sa.text("INSERT INTO events (lead_id, occurred_at, event_type) VALUES (:id, :at, 'teleport')"),
                     {"id": lead, "at": (AS_OF + pd.Timedelta(days=3)).to_pydatetime()})

    summary = rescore(data, lead_db, champion.settings, _config(as_of=LATER, run_id="late"))
    assert summary.unseen["event_type"] == ["teleport"] and summary.unseen["industry"] == ["martian"]
    late = stored_scores(lead_db)
    assert not converted_since & set(late["lead_id"])  # a closed deal is no open lead: its row is gone
    assert (late["as_of"] == LATER).all()
    # the older, unfinished run is not resumed over the newer scores, nor is a new run at an earlier as-of
    # started (it would put the closed deals back)
    with pytest.raises(ValueError, match="older than the finished run late"):
        rescore(data, lead_db, champion.settings, _config(resume=True))
    with pytest.raises(ValueError, match="is before the as-of .* of the finished run late"):
        rescore(data, lead_db, champion.settings, _config(as_of=AS_OF, run_id="backfill"))
    with pytest.raises(ValueError, match="is in the future"):  # a typo would block every later run
        rescore(data, lead_db, champion.settings, _config(as_of=pd.Timestamp("2150-01-01"), run_id="typo"))
    pd.testing.assert_frame_equal(stored_scores(lead_db), late)
    # a partition committed late by a run of an earlier as-of (still running elsewhere) replaces no newer
    # score and deletes none: the store's own guard, on SQLite (ADBC) and PostgreSQL (SQLAlchemy) alike
    # ...and the leads that closed since do not come back
    closed = early[early["lead_id"].isin(converted_since)]
    stale = pd.concat([late.head(3).assign(score=late["score"].head(3) + 1), closed]).assign(as_of=AS_OF,
                                                                                           run_id="early")
    run = score_store.load_run(engine, "early")
    engine.dispose()
    engine = score_store_engine(lead_db)
    with engine.begin() as conn:
        conn.execute(score_store.lead_score_run_partitions.update().where(
            score_store.lead_score_run_partitions.c.run_id == "early").values(status=score_store.PENDING))
    for part in run.partitions:
        rows = stale[(stale["lead_id"] >= part.start) & (stale["lead_id"] < part.stop)]
        retired = tuple(int(i) for i in late["lead_id"] if part.start <= i < part.stop)[:2]
        score_store.commit_partition(engine, "early", part, rows, score_store.PartitionCounts(retired_ids=retired),
                                     AS_OF.to_pydatetime())
    pd.testing.assert_frame_equal(stored_scores(lead_db), late)
    engine.dispose()


def test_incremental_rescores_only_changed_leads(sqlite_url: str, champion: Champion) -> None:
    make_lead_db(sqlite_url)
    data = sql_data_config(sqlite_url)
    rescore(data, sqlite_url, champion.settings, _config(as_of=AS_OF, run_id="full"))
    before = stored_scores(sqlite_url)
    since = AS_OF + pd.Timedelta(days=1)
    engine = sa.create_engine(sqlite_url)
    with engine.begin() as conn:
        events = pd.read_sql("SELECT * FROM events LIMIT 1", conn)
        touched = before["lead_id"].iloc[[3, 50, 400]].tolist()
        new = pd.concat([events] * len(touched), ignore_index=True)
        new["lead_id"] = touched
        new["occurred_at"] = since + pd.Timedelta(hours=2)
        new["event_type"] = "demo_request"
        new.to_sql("events", conn, if_exists="append", index=False)
        created = pd.read_sql("SELECT lead_id, created_at FROM leads", conn, parse_dates=["created_at"])
        active = pd.read_sql("SELECT lead_id, occurred_at FROM events", conn, parse_dates=["occurred_at"])
    engine.dispose()
    window = (active["occurred_at"] >= since) & (active["occurred_at"] < LATER)
    changed = set(created.loc[created["created_at"] >= since, "lead_id"]) | set(active.loc[window, "lead_id"])
    eligible = set(in_memory_scores(sqlite_url, champion.core(0), LATER, top_k=0).lead_id.tolist())

    summary = rescore(data, sqlite_url, champion.settings, _config(as_of=LATER, changed_since=since, run_id="inc"))
    after = stored_scores(sqlite_url)
    rescored = set(after.loc[after["run_id"] == "inc", "lead_id"])
    assert set(touched) <= rescored
    never = eligible - set(before["lead_id"]) - changed  # created after the full run's as-of, before since
    assert rescored == (changed & eligible) | never and summary.never_scored == len(never) > 0
    assert summary.scored == len(rescored) and summary.unchanged == len(eligible - changed - never) > 0
    untouched = after[after["run_id"] == "full"].set_index("lead_id")
    pd.testing.assert_frame_equal(untouched, before.set_index("lead_id").loc[untouched.index])


def test_incremental_rescores_a_lead_whose_updated_at_changed(sqlite_url: str, champion: Champion) -> None:
    # --changed-since takes the leads "with events / updates / creation at or after" it: an updated_at
    # column of the leads table (not a model attribute) was dropped by the contract, so updates never counted
    make_lead_db(sqlite_url)
    engine = sa.create_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE leads ADD COLUMN updated_at TIMESTAMP"))
        conn.execute(sa.text("UPDATE leads SET updated_at = created_at"))
    engine.dispose()
    data = sql_data_config(sqlite_url)
    rescore(data, sqlite_url, champion.settings, _config(as_of=AS_OF, run_id="full"))
    since = AS_OF + pd.Timedelta(days=1)
    engine = sa.create_engine(sqlite_url)
    with engine.begin() as conn:
        quiet = set(stored_scores(sqlite_url)["lead_id"]) - set(pd.read_sql(
            sa.text("SELECT DISTINCT lead_id FROM events WHERE occurred_at >= :since"), conn,
            params={"since": since.to_pydatetime()})["lead_id"]) - set(pd.read_sql(
            "SELECT lead_id FROM outcomes WHERE converted_at IS NOT NULL", conn)["lead_id"])
        updated = sorted(quiet)[:2]
        conn.execute(sa.text("UPDATE leads SET updated_at = :at WHERE lead_id IN (:a, :b)"),
                     {"at": (since + pd.Timedelta(hours=3)).to_pydatetime(), "a": updated[0], "b": updated[1]})
    engine.dispose()
    rescore(data, sqlite_url, champion.settings, _config(as_of=LATER, changed_since=since, run_id="inc"))
    after = stored_scores(sqlite_url).set_index("lead_id")
    assert after.loc[updated, "run_id"].tolist() == ["inc", "inc"]


def test_quarantine_counts_and_strict_refuses(sqlite_url: str, champion: Champion, tmp_path: Path) -> None:
    make_lead_db(sqlite_url)
    engine = sa.create_engine(sqlite_url)
    with engine.begin() as conn:
        bad = conn.execute(sa.text("SELECT lead_id FROM outcomes ORDER BY lead_id LIMIT 2 OFFSET 500")).scalars().all()
        # a conversion before the lead existed: the outcome is quarantined and takes its lead along
        conn.execute(sa.text("UPDATE outcomes SET converted_at = '2000-01-01 00:00:00' WHERE lead_id IN (:a, :b)"),
                     {"a": bad[0], "b": bad[1]})
        # a value the endpoint refuses (employees < 0) is no score in the batch either, once the project
        # names the column under attributes.non_negative
        negative = conn.execute(sa.text("SELECT lead_id FROM leads WHERE employees > 0 ORDER BY lead_id "
                                        "LIMIT 1 OFFSET 700")).scalar_one()
        conn.execute(sa.text("UPDATE leads SET employees = -7 WHERE lead_id = :id"), {"id": negative})
    engine.dispose()
    strict = sql_data_config(sqlite_url)
    with pytest.raises(ContractError, match="converted_before_created"):
        rescore(strict, sqlite_url, champion.settings, _config(as_of=AS_OF, run_id="strict"))
    engine = sa.create_engine(sqlite_url)
    assert score_store.load_run(engine, "strict").status == score_store.FAILED
    engine.dispose()

    quarantine = DataConfig(source=SourceConfig(kind="sql", url=sqlite_url), policy="quarantine",
                            quarantine_dir=tmp_path / "quarantine",
                            attributes=AttributesConfig(non_negative=["employees"]))
    summary = rescore(quarantine, sqlite_url, champion.settings, _config(as_of=AS_OF, run_id="q"))
    assert summary.quarantined == 3
    stored = stored_scores(sqlite_url)
    assert not {*bad, negative} & set(stored["lead_id"])
    files = list((tmp_path / "quarantine" / "rescore-q").rglob("leads.csv"))
    quarantined_rows = pd.concat([frame for frame in map(pd.read_csv, files) if len(frame)])
    assert sorted(quarantined_rows["lead_id"].tolist()) == sorted([*bad, negative])
    assert quarantined_rows.set_index("lead_id").loc[negative, "_reason"].startswith("negative_value")


def test_a_partition_that_breaks_the_contract_is_named_with_what_the_run_kept(sqlite_url: str,
                                                                             champion: Champion) -> None:
    """The first partition with a violation ends a strict run: the error named only the violation, with a row
    counted within the partition as if within the table, and said nothing of the partitions the run kept in
    lead_scores nor of --resume. It now names the partition's lead ids, the run and what it kept."""
    make_lead_db(sqlite_url)
    engine = sa.create_engine(sqlite_url)
    with engine.begin() as conn:
        ids = conn.execute(sa.text("SELECT lead_id FROM leads ORDER BY lead_id")).scalars().all()
        bad = ids[PARTITION_LEADS + 10]  # in the second partition: the first is committed before it
        conn.execute(sa.text("UPDATE leads SET employees = -7 WHERE lead_id = :id"), {"id": bad})
    engine.dispose()
    data = sql_data_config(sqlite_url).model_copy(update={"attributes": AttributesConfig(non_negative=["employees"])})
    config = _config(as_of=AS_OF, run_id="located", processes=1)
    with pytest.raises(ContractError) as caught:
        rescore(data, sqlite_url, champion.settings, config)
    text = str(caught.value)
    first, second = ids[PARTITION_LEADS], ids[2 * PARTITION_LEADS]
    assert text.startswith(f"data contract violated in partition 1 (lead ids {first} to {second - 1}) (1 problem(s))")
    assert f"row=10, lead_id={bad}" in text and f"(row = position among the rows read for partition 1 (lead ids {first} to {second - 1}), from 0)" in text
    assert ("run located failed; the 1 partition it committed keeps its scores in lead_scores; fix the data, "
            "then `leadscore rescore --resume` scores the rest") in text
    engine = sa.create_engine(sqlite_url)
    assert score_store.load_run(engine, "located").status == score_store.FAILED
    engine.dispose()


def test_mapped_optional_columns_are_not_read_nor_reported_missing(sqlite_url: str, champion: Champion) -> None:
    # a project that maps the optional outcome and event columns (README's own example maps
    # outcomes.amount: Amount): a rescore reads none of them, so none is "mapped source column not found"
    make_lead_db(sqlite_url)
    engine = sa.create_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(sa.text('ALTER TABLE outcomes RENAME COLUMN amount TO "Amount"'))
        conn.execute(sa.text('ALTER TABLE events RENAME COLUMN channel TO "Channel"'))
    engine.dispose()
    mapped = DataConfig(source=SourceConfig(kind="sql", url=sqlite_url),
                        columns=ColumnMapping(events={"channel": "Channel"}, outcomes={"amount": "Amount"}))
    summary = rescore(mapped, sqlite_url, champion.settings, _config(as_of=AS_OF, run_id="mapped"))
    want = in_memory_scores(sqlite_url, champion.core(), AS_OF)
    assert summary.scored == len(want.lead_id) > 0
    assert sorted(stored_scores(sqlite_url)["lead_id"]) == sorted(want.lead_id.tolist())


def test_a_lead_without_id_is_refused_by_name_or_quarantined_before_any_partition(
        sqlite_url: str, champion: Champion, tmp_path: Path) -> None:
    make_lead_db(sqlite_url)
    engine = sa.create_engine(sqlite_url)
    with engine.begin() as conn:  # no id range holds it: its events used to be blamed as unknown leads instead
        gone = conn.execute(sa.text("SELECT lead_id FROM leads ORDER BY lead_id LIMIT 1 OFFSET 300")).scalar_one()
        conn.execute(sa.text("UPDATE leads SET lead_id = NULL WHERE lead_id = :id"), {"id": gone})
    engine.dispose()
    with pytest.raises(ContractError, match=r"leads\.lead_id: null_value: 1 row"):
        rescore(sql_data_config(sqlite_url), sqlite_url, champion.settings, _config(as_of=AS_OF, run_id="nid"))
    engine = sa.create_engine(sqlite_url)
    with pytest.raises(LookupError):  # refused before the run was created
        score_store.load_run(engine, "nid")
    # a lead whose id is text in the INTEGER column (SQLite keeps it): set aside as well, not a partitioning error
    with engine.begin() as conn:
        texted = conn.execute(sa.text("SELECT lead_id FROM leads ORDER BY lead_id LIMIT 1 OFFSET 600")).scalar_one()
        for table in ("leads", "events", "outcomes"):
            conn.execute(sa.text(f"UPDATE {table} SET lead_id = 'L' || lead_id WHERE lead_id = :id"), {"id": texted})
    engine.dispose()
    quarantine = DataConfig(source=SourceConfig(kind="sql", url=sqlite_url), policy="quarantine",
                            quarantine_dir=tmp_path / "quarantine")
    rescore(quarantine, sqlite_url, champion.settings, _config(as_of=AS_OF, run_id="q"))
    set_aside = pd.read_csv(tmp_path / "quarantine" / "rescore-q" / "no-lead-id" / "leads.csv")
    assert len(set_aside) == 1 and set_aside["lead_id"].isna().all()
    text_id = pd.read_csv(tmp_path / "quarantine" / "rescore-q" / "text-lead-id" / "leads.csv")
    assert text_id["lead_id"].tolist() == [f"L{texted}"] and texted not in set(stored_scores(sqlite_url)["lead_id"])


def test_an_empty_leads_table_is_refused_before_a_run_and_keeps_the_out_file(
        sqlite_url: str, champion: Champion, tmp_path: Path) -> None:
    """An emptied leads table (a failed export or load) breaks the contract's empty_table rule, as the
    whole-table load says: the run is refused, not recorded as a finished run that scored 0 leads, and the
    previous --out file stays (it was replaced by an empty one)."""
    make_lead_db(sqlite_url)
    out = tmp_path / "scores.csv"
    rescore(sql_data_config(sqlite_url), sqlite_url, champion.settings, _config(as_of=AS_OF), out=out)
    before = out.read_bytes()
    engine = sa.create_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM leads"))
    with pytest.raises(ContractError, match=r"leads\.lead_id: empty_table: 0 rows \(the leads table has no rows\)"):
        rescore(sql_data_config(sqlite_url), sqlite_url, champion.settings, _config(as_of=LATER, run_id="e"), out=out)
    with pytest.raises(LookupError):  # refused before the run was created
        score_store.load_run(engine, "e")
    engine.dispose()
    assert out.read_bytes() == before


def test_a_disk_full_while_writing_out_names_out_and_resume_writes_the_whole_file(
        sqlite_url: str, champion: Champion, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The file system fails while the --out copy is written (the second partition's rows: disk full): the
    error names --out, not the hidden temporary file it happened in; no temporary file stays, the earlier
    file is as it was, and --resume writes the whole run's file."""
    make_lead_db(sqlite_url)
    out = tmp_path / "scores.csv"
    out.write_text("an earlier run's file\n", encoding="utf-8")
    written = 0
    to_csv = pd.DataFrame.to_csv

    def full_disk(frame: pd.DataFrame, path: object = None, *args: object, **kwargs: object) -> object:
        nonlocal written
        if isinstance(path, Path) and path.name.endswith(".tmp") and (written := written + 1) == 2:
            raise OSError(28, "No space left on device", str(path))
        return to_csv(frame, path, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "to_csv", full_disk)
    with pytest.raises(OSError) as failure:
        rescore(sql_data_config(sqlite_url), sqlite_url, champion.settings, _config(as_of=AS_OF, run_id="full"),
                out=out)
    monkeypatch.undo()
    message = str(failure.value)
    assert message.startswith(f"--out {out}: the scores file could not be written (No space left on device)")
    assert ".tmp" not in message and "--resume" in message and failure.value.errno == 28
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    assert out.read_text(encoding="utf-8") == "an earlier run's file\n"
    engine = sa.create_engine(sqlite_url)
    failed = score_store.load_run(engine, "full")
    assert failed.status == score_store.FAILED
    engine.dispose()
    resumed = rescore(sql_data_config(sqlite_url), sqlite_url, champion.settings, _config(resume=True, run_id="full"),
                      out=out)
    assert resumed.partitions_run_now == len(failed.pending) < resumed.partitions  # the committed ones are read back
    stored = stored_scores(sqlite_url)
    assert len(stored) > PARTITION_LEADS  # the run had several partitions
    written_rows = pd.read_csv(out).sort_values("lead_id").reset_index(drop=True)
    np.testing.assert_array_equal(written_rows["lead_id"].to_numpy(), stored["lead_id"].to_numpy())


def test_cli_rescore_as_of_before_every_lead_scores_nothing_and_fails(sqlite_url: str, champion: Champion) -> None:
    """``--as-of 1990-01-01`` on a base whose leads are all created later finished a run that scored nothing,
    exit 0: a scheduled job would report success. It now ends with exit 1, naming the as-of."""
    make_lead_db(sqlite_url)
    engine = sa.create_engine(sqlite_url)
    with engine.connect() as conn:
        leads = conn.execute(sa.text("SELECT COUNT(*) FROM leads")).scalar_one()
    engine.dispose()
    result = CliRunner().invoke(app, ["rescore", "--db", sqlite_url, "--model-dir", str(champion.models_dir),
                                      "--as-of", "1990-01-01"], env={"COLUMNS": "200"})
    assert result.exit_code == 1, result.output
    assert (f"error: the as-of 1990-01-01 is before the created_at of every lead read ({leads:,}): no lead was "
            "scored; pass a later --as-of") in " ".join(result.output.split())
    assert stored_scores(sqlite_url).empty


def test_cli_rescore_writes_table_out_file_and_top(sqlite_url: str, champion: Champion, tmp_path: Path) -> None:
    make_lead_db(sqlite_url)
    out = tmp_path / "scores.parquet"
    result = CliRunner().invoke(app, [
        "rescore", "--db", sqlite_url, "--model-dir", str(champion.models_dir), "--as-of", "2026-05-01",
        "--partition-leads", "400", "--out", str(out), "--top", "3",
    ])
    assert result.exit_code == 0, result.output
    assert "scored" in result.output and "MQLs" in result.output
    stored = stored_scores(sqlite_url)
    written = pd.read_parquet(out).sort_values("lead_id").reset_index(drop=True)
    np.testing.assert_array_equal(written["lead_id"].to_numpy(), stored["lead_id"].to_numpy())
    np.testing.assert_array_equal(written["score"].to_numpy(), stored["score"].to_numpy())
    top = top_leads(sqlite_url, 3)
    assert top["probability"].is_monotonic_decreasing and len(top["reasons"].iloc[0]) == 3
    assert str(top["lead_id"].iloc[0]) in result.output

    missing = CliRunner().invoke(app, ["rescore", "--db", sqlite_url, "--model-dir",
                                               str(champion.models_dir), "--resume"])
    assert missing.exit_code == 1 and "no unfinished run" in missing.output
    clash = CliRunner().invoke(app, ["rescore", "--db", sqlite_url, "--model-dir", str(champion.models_dir),
                                             "--resume", "--top-k", "3"])
    squeezed = "".join(clash.output.replace("│", " ").split())  # typer's error box, wrapped at any width
    assert clash.exit_code == 2 and "aresumedrunkeepsthevaluesitstartedwith" in squeezed
    # -c: the registry is the project's own store (as for train), not .demo/
    project = tmp_path / "project"
    project.mkdir()
    (project / "leadscore.yaml").write_text(f"data:\n  source: {{kind: sql, url: '{sqlite_url}'}}\n", encoding="utf-8")
    own = CliRunner().invoke(app, ["rescore", "-c", str(project / "leadscore.yaml")],
                             env={"LEADSCORE_PROJECT_DIR": "", "MLFLOW_TRACKING_URI": "", "COLUMNS": "200"})
    assert own.exit_code == 1 and f"{project / 'mlflow.db'}" in "".join(own.output.split())  # a path cut by wrapping


def test_worker_processes_give_the_single_process_result(sqlite_url: str, champion: Champion, tmp_path: Path) -> None:
    """Partitions scored in spawned worker processes: the same rows as in process and as scoring in memory."""
    make_lead_db(sqlite_url)
    single_url = f"sqlite:///{tmp_path / 'single.db'}"
    make_lead_db(single_url)
    config = RescoreConfig(partition_leads=150, as_of=AS_OF)
    scored_by: dict[int, int] = {}
    summary = rescore(sql_data_config(sqlite_url), sqlite_url, champion.settings, config,
                      executor=ProcessExecutor(2, help_locally=False),
                      on_result=lambda result: scored_by.update({result.partition.index: result.pid}))
    single = rescore(sql_data_config(single_url), single_url, champion.settings, config.model_copy(update={"processes": 1}))
    assert sorted(scored_by) == list(range(summary.partitions)) and summary.partitions > 4
    assert os.getpid() not in scored_by.values()  # every partition was scored by a worker
    for field in ("scored", "skipped_converted", "skipped_not_created", "mql", "grades", "history_rows"):
        assert getattr(summary, field) == getattr(single, field), field
    got, want = stored_scores(sqlite_url), stored_scores(single_url)
    pd.testing.assert_frame_equal(got[VALUE_COLUMNS], want[VALUE_COLUMNS])
    reference = in_memory_scores(sqlite_url, champion.core(), AS_OF)
    np.testing.assert_array_equal(got["lead_id"].to_numpy(), reference.lead_id)
    np.testing.assert_allclose(got["probability"].to_numpy(), reference.probability, rtol=0, atol=1e-12)



def test_a_violation_in_a_worker_process_fails_the_run_with_the_contracts_message(
        sqlite_url: str, champion: Champion) -> None:
    """A partition scored by a worker process breaks the contract: the run fails with the violation named, as
    in process (it was "BrokenProcessPool: a process in the process pool was terminated abruptly")."""
    make_lead_db(sqlite_url, n_leads=700)  # three partitions
    engine = sa.create_engine(sqlite_url)
    with engine.begin() as conn:
        dup = conn.execute(sa.text("SELECT lead_id FROM leads ORDER BY lead_id LIMIT 1 OFFSET 450")).scalar_one()
        conn.execute(sa.text("INSERT INTO leads SELECT * FROM leads WHERE lead_id = :id"), {"id": dup})
    with pytest.raises(ContractError, match=rf"leads\.lead_id: duplicate_lead_id: 2 rows; e\.g\. .*lead_id={dup}"):
        rescore(sql_data_config(sqlite_url), sqlite_url, champion.settings, _config(as_of=AS_OF, run_id="w"),
                executor=ProcessExecutor(2, help_locally=False))
    runs = score_store.lead_score_runs
    with engine.connect() as conn:
        status, error = conn.execute(sa.select(runs.c.status, runs.c.error).where(runs.c.run_id == "w")).one()
    engine.dispose()
    assert status == score_store.FAILED and "duplicate_lead_id" in error


def test_worker_processes_score_the_leads_without_a_stored_score(sqlite_url: str, champion: Champion) -> None:
    """An incremental run on worker processes: each partition gets the ids of its stored scores, so only the
    changed leads and those without a score (three whose rows are gone, those created since the full run)
    are scored."""
    make_lead_db(sqlite_url, n_leads=700)  # three partitions
    data = sql_data_config(sqlite_url)
    rescore(data, sqlite_url, champion.settings, _config(as_of=AS_OF, run_id="full", processes=1))
    before = set(stored_scores(sqlite_url)["lead_id"])
    lost = sorted(before)[0:1000:250]
    delete_scores(sqlite_url, lost)
    since = LATER - pd.Timedelta(days=3)
    pids: set[int] = set()
    summary = rescore(data, sqlite_url, champion.settings, _config(as_of=LATER, changed_since=since, run_id="inc"),
                      executor=ProcessExecutor(2, help_locally=False), on_result=lambda result: pids.add(result.pid))
    assert pids and os.getpid() not in pids
    check_unscored_leads_were_scored(sqlite_url, champion, summary, "inc", before, lost, since, LATER)


def _column(column: sa.Column) -> sa.Column:
    """A bare copy of a table's column (name, type, key, nullability) for another table."""
    return sa.Column(column.name, column.type, primary_key=column.primary_key, nullable=column.nullable)


def test_an_older_scores_table_gets_the_new_columns(sqlite_url: str, champion: Champion) -> None:
    """A ``lead_scores`` written before the time-to-close columns existed, and a checkpoint table before
    ``never_scored``, are extended, not refused."""
    make_lead_db(sqlite_url)
    engine = sa.create_engine(sqlite_url)
    old = [c for c in score_store.lead_scores.columns
           if c.name not in ("p_close_30d", "p_close_60d", "p_close_90d", "median_days", "time_to_close_version")]
    sa.Table(score_store.LEAD_SCORES, sa.MetaData(), *map(_column, old)).create(engine)
    parts = [c for c in score_store.lead_score_run_partitions.columns if c.name != "never_scored"]
    sa.Table(score_store.LEAD_SCORE_RUN_PARTITIONS, sa.MetaData(), *map(_column, parts)).create(engine)
    engine.dispose()
    summary = rescore(sql_data_config(sqlite_url), sqlite_url, champion.settings,
                      _config(as_of=AS_OF, changed_since=AS_OF))  # an empty store: every open lead is new
    stored = stored_scores(sqlite_url)
    assert len(stored) == summary.scored == summary.never_scored > 0 and stored["p_close_60d"].notna().all()


def test_a_resumed_run_keeps_its_time_to_close_model(champion: Champion) -> None:
    """Resuming pins both models: a run begun without a time-to-close model resumes without one, and a
    run begun with another time-to-close version than the exported one is refused by name."""
    same = load_scoring_core(champion.settings, champion.version, 3, TIME_TO_CLOSE_VERSION)
    assert same.closing_info is not None and same.closing_info.version == TIME_TO_CLOSE_VERSION
    assert load_scoring_core(champion.settings, champion.version, 3, None).closing is None
    with pytest.raises(ValueError, match="time-to-close model version 99"):
        load_scoring_core(champion.settings, champion.version, 3, "99")


def test_resume_refused_after_a_same_as_of_run_finished_later(sqlite_url: str, champion: Champion) -> None:
    """A newer champion's run at the same as-of finished after the unfinished one started: resuming the
    old run would put the older model's scores back."""
    make_lead_db(sqlite_url)
    data = sql_data_config(sqlite_url)
    rescore(data, sqlite_url, champion.settings, _config(as_of=AS_OF, run_id="old"))
    engine = sa.create_engine(sqlite_url)
    score_store.set_run_status(engine, "old", score_store.FAILED)  # as if it had died
    engine.dispose()
    rescore(data, sqlite_url, champion.settings, _config(as_of=AS_OF, run_id="new"))
    newer = stored_scores(sqlite_url)
    with pytest.raises(ValueError, match="older than the finished run new"):
        rescore(data, sqlite_url, champion.settings, _config(resume=True, run_id="old"))
    pd.testing.assert_frame_equal(stored_scores(sqlite_url), newer)


def test_an_as_of_beyond_a_day_of_clock_skew_is_refused(sqlite_url: str, champion: Champion) -> None:
    make_lead_db(sqlite_url)
    data = sql_data_config(sqlite_url)
    now = pd.Timestamp.now(tz="UTC").tz_localize(None)
    with pytest.raises(ValueError, match="is in the future"):
        rescore(data, sqlite_url, champion.settings, _config(as_of=now + pd.Timedelta(days=2), run_id="ahead"))
    summary = rescore(data, sqlite_url, champion.settings, _config(as_of=now + pd.Timedelta(hours=12), run_id="skew"))
    assert summary.scored > 0


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["rescore", *args], env={"COLUMNS": "300", "NO_COLOR": "1"})
    return result.exit_code, " ".join(result.output.replace("│", " ").split())


def test_a_worker_process_killed_mid_run_fails_the_run_saying_so(sqlite_url: str, champion: Champion) -> None:
    """A worker process killed mid-run (as by the system out of memory): the run fails with an error that says
    a worker died and that ``--resume`` continues (it was the pool's "BrokenProcessPool: A process in the
    process pool was terminated abruptly"); the partitions committed before stay."""
    import multiprocessing
    import signal

    make_lead_db(sqlite_url)

    def kill_the_workers(_: object) -> None:
        for child in multiprocessing.active_children():
            os.kill(child.pid, signal.SIGKILL)

    with pytest.raises(WorkerDiedError, match=r"a worker process died while scoring partitions \(partition \d+ among them; .*--resume"):
        rescore(sql_data_config(sqlite_url), sqlite_url, champion.settings, _config(as_of=AS_OF, run_id="k"),
                executor=ProcessExecutor(2, help_locally=False), on_result=kill_the_workers)
    engine = sa.create_engine(sqlite_url)
    runs = score_store.lead_score_runs
    with engine.connect() as conn:
        status, error = conn.execute(sa.select(runs.c.status, runs.c.error).where(runs.c.run_id == "k")).one()
    run = score_store.load_run(engine, "k")
    engine.dispose()
    assert status == score_store.FAILED and error.startswith("WorkerDiedError: a worker process died"), error
    assert len(run.done) >= 1 and run.pending


def test_a_worker_process_that_fails_to_start_is_not_said_to_be_killed(sqlite_url: str, champion: Champion) -> None:
    """A worker whose start fails (the model does not load there; a script without ``if __name__ ==
    "__main__":``) prints its error and the run fails saying so, not "killed, e.g. by the system out of
    memory" with advice to use fewer processes."""
    make_lead_db(sqlite_url, n_leads=700)
    core = champion.core()
    core.parts = lambda: {"not_a_part": 1}  # type: ignore[method-assign]  # ScoringCore(**parts) fails there
    with pytest.raises(WorkerDiedError) as failed:
        rescore(sql_data_config(sqlite_url), sqlite_url, champion.settings, _config(as_of=AS_OF, run_id="s"),
                core=core, executor=ProcessExecutor(2, help_locally=False))
    message = str(failed.value)
    assert message.startswith("a worker process failed to start (its error is printed above"), message
    assert "--resume continues it" in message


@pytest.mark.parametrize("options", [["--processes", "2"], ["--workers", "2"]])
def test_cli_a_worker_that_died_is_a_one_line_error(
        options: list[str], sqlite_url: str, champion: Champion, monkeypatch: pytest.MonkeyPatch) -> None:
    """The command prints that error alone, not a traceback."""
    import serving.rescore_dask

    def died(*args: object, **kwargs: object) -> None:
        raise WorkerDiedError(3)

    monkeypatch.setattr("serving.rescore.rescore", died)
    monkeypatch.setattr(serving.rescore_dask, "rescore_on_dask", died)
    code, output = _cli("--db", sqlite_url, "--model-dir", str(champion.models_dir), *options)
    assert code == 1, output
    assert output.startswith("error: a worker process died while scoring partitions (partition 3 among them"), output
    assert output.rstrip().endswith("--resume continues it (fewer --processes / --workers use less memory)"), output


def test_cli_refuses_bad_options_before_any_run_and_creates_no_database(tmp_path: Path, sqlite_url: str,
                                                                       champion: Champion) -> None:
    models = str(champion.models_dir)
    missing = tmp_path / "typo.db"
    code, output = _cli("--db", f"sqlite:///{missing}", "--model-dir", models, "--as-of", "2026-05-01")
    assert code == 1 and "SQLite database file not found" in output, output
    assert not missing.exists()

    make_lead_db(sqlite_url)
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    (tmp_path / "a_folder.csv").mkdir()
    # an --out that cannot be written was found after the whole run, named as its hidden temporary file
    # ("/proc/.x.csv.<host>.<pid>.<hex>.tmp"); the destination is tried before any work
    for args, needle in ((["--out", "scores.txt"], "expected a .parquet or .csv file"),
                         (["--out", "/proc/x.csv"], "error: --out /proc/x.csv: cannot be written: /proc is not "
                                                    "writable (No such file or directory)"),
                         (["--out", str(a_file / "x.csv")], f"error: --out {a_file / 'x.csv'}: cannot be created: "
                                                            f"{a_file} is not a folder"),
                         (["--out", str(tmp_path / "a_folder.csv")], f"error: --out {tmp_path / 'a_folder.csv'}: is "
                                                                     "a folder; give a file name"),
                         (["--processes", "2", "--workers", "2"], "--processes is for a run on this machine")):
        code, output = _cli("--db", sqlite_url, "--model-dir", models, *args)
        assert code == 2 and needle in output and ".tmp" not in output, output
    assert not sa.inspect(sa.create_engine(sqlite_url)).has_table(score_store.LEAD_SCORE_RUNS)

    code, output = _cli("--model-dir", models)
    assert code == 2 and "give --db URL or -c leadscore.yaml" in output, output
    (tmp_path / "leadscore.yaml").write_text("data:\n  source: {kind: csv, leads: l.csv, events: e.csv, outcomes: o.csv}\n")
    code, output = _cli("-c", str(tmp_path / "leadscore.yaml"), "--model-dir", models)
    assert code == 2 and "the data is not in a database" in output, output
    # the project file is checked whole, as train checks it: a missing file, an empty one, a misspelt key in any
    # section is refused by name before anything runs (a missing file was a traceback, a typo passed over)
    (tmp_path / "typo.yaml").write_text(f"data:\n  source: {{kind: sql, url: '{sqlite_url}'}}\nfeatures: {{horizon_day: 30}}\n")
    (tmp_path / "empty.yaml").write_text("")
    for name, needle in (("nope.yaml", "project file not found"), ("typo.yaml", "features.horizon_day: Extra inputs"),
                         ("empty.yaml", "empty; it needs at least a 'data:' section")):
        code, output = _cli("-c", str(tmp_path / name), "--model-dir", models)
        assert code == 2 and needle in output and "Traceback" not in output, output
    assert not sa.inspect(sa.create_engine(sqlite_url)).has_table(score_store.LEAD_SCORE_RUNS)
    (tmp_path / "flat.yaml").write_text("data:\n  mode: flat\n  source: {path: x.csv}\n  id_column: Id\n  label_column: y\n")
    code, output = _cli("-c", str(tmp_path / "flat.yaml"), "--model-dir", models)
    assert code == 2 and "rescoring needs the CRM data mode" in output, output


def test_reason_values_read_as_a_person_would() -> None:
    from leadscore.cli_rescore import shown_value

    assert shown_value(None, "days since last page view") == "never"
    assert shown_value(float("nan"), "days since last form fill") == "never"
    assert shown_value(None, "industry") == "none"
    assert shown_value(101_000_000.0, "annual revenue") == "101,000,000"
    assert shown_value(2_330.0, "employees") == "2,330"
    assert shown_value(12_345, "employees") == "12,345"
    assert shown_value(7.9612, "pricing page views") == "7.96" and shown_value(118.0, "days since x") == "118"
    assert shown_value("saas", "industry") == "saas" and shown_value(True, "flag") == "True"
    # no scientific notation: a decayed count weeks after its events, a value that rounds to 1,000
    assert shown_value(6.566668569113746e-08, "email clicks, decayed count") == "< 0.001"
    assert shown_value(-2e-5, "engagement trend") == "> -0.001" and shown_value(0.0, "page views") == "0"
    assert shown_value(999.7, "days since x") == "1,000" and shown_value(0.00292, "days since x") == "0.00292"
    for value in (1e-3, 0.0123, 0.5, 9.999, 99.96, 999.4, 999.5, -999.9, 1e12, -3e-4):
        assert "e" not in shown_value(value, "x"), value


def test_small_impacts_keep_their_sign_and_say_they_are_small(monkeypatch: pytest.MonkeyPatch) -> None:
    """An impact (or fit / engagement sum) that rounds to 0.0 reads "+<0.1" / "-<0.1", not "+0.0" / "-0.0";
    a null one (reasons written by earlier versions with nan) reads "n/a" instead of a traceback."""
    from rich.console import Console

    from leadscore import cli_rescore
    from leadscore.cli_rescore import print_top_leads, shown_impact

    assert [shown_impact(v) for v in (0.04, -0.0499, 0.05, -0.05, 1.26, -12.0, 0.0, -0.0, None, float("nan"))] == [
        "+<0.1", "-<0.1", "+0.1", "-0.1", "+1.3", "-12.0", "0", "0", "n/a", "n/a"]
    reasons = [{"label": "pricing page views", "value": 3.0, "impact": 2.04},
               {"label": "industry", "value": "saas", "impact": -0.03},
               {"label": "employees", "value": 250.0, "impact": 0.004},
               {"label": "annual revenue", "value": None, "impact": None}]
    leads = pd.DataFrame({"lead_id": [7], "score": [31], "grade": ["A"], "mql": [True], "fit_score": [-0.02],
                          "engagement_score": [0.01], "p_close_90d": [float("nan")], "median_days": [float("nan")],
                          "reasons": [reasons]})
    screen = Console(width=300, record=True, color_system=None)
    monkeypatch.setattr(cli_rescore, "console", screen)
    print_top_leads(leads)
    text = screen.export_text()
    assert ("7: pricing page views = 3 (+2.0); industry = saas (-<0.1); employees = 250 (+<0.1); "
            "annual revenue = none (n/a)") in text, text
    assert "-<0.1" in text.split("top reasons")[0] and "+<0.1" in text.split("top reasons")[0], text  # the split
    assert "0.0)" not in text and "+0.0" not in text and "-0.0" not in text, text


def test_the_top_leads_fold_in_a_narrow_terminal_instead_of_cutting_values(monkeypatch: pytest.MonkeyPatch) -> None:
    """In a 60-column terminal the top table cut its values and headers with an ellipsis ("beyond" read
    "bey…", "P(close 90d)" read "P(cl…"). There every value now stays whole on its line, and narrower still
    a value folds onto more lines: never cut."""
    from rich.console import Console

    from leadscore import cli_rescore
    from leadscore.cli_rescore import print_top_leads

    leads = pd.DataFrame({"lead_id": [4988, 123456], "score": [100, 31], "grade": ["A", "B"], "mql": [True, False],
                          "fit_score": [12.34, -0.5], "engagement_score": [-23.45, 0.01], "p_close_90d": [0.99, 0.25],
                          "median_days": [float("nan"), 123.0], "reasons": [[], []]})
    values = [["4988", "100", "A", "yes", "+12.3", "-23.4", "0.99", "beyond"],
              ["123456", "31", "B", "no", "-0.5", "+<0.1", "0.25", "123"]]

    def table_at(width: int) -> tuple[str, list[list[str]]]:
        screen = Console(width=width, record=True, color_system=None)
        monkeypatch.setattr(cli_rescore, "console", screen)
        print_top_leads(leads)
        table = screen.export_text().split("top reasons")[0]
        assert "…" not in table and max(len(line) for line in table.splitlines()) <= width, table
        return table, [[cell.strip() for cell in line.strip("│").split("│")] for line in table.splitlines()
                       if line.startswith("│")]

    table, rows = table_at(60)
    assert rows == values, table  # one line per lead, every value whole
    assert "P(clos" in table and "days to" in table, table  # headers wrap, folded only where a word is too long
    table, rows = table_at(40)
    for column in range(len(values[0])):  # folded onto more lines: read down the column, the values come back
        assert "".join(row[column] for row in rows) == "".join(v[column] for v in values), table


def test_cli_shows_the_processes_refuses_ignored_options_and_leaves_no_bar_before_errors(
        sqlite_url: str, champion: Champion, tmp_path: Path) -> None:
    make_lead_db(sqlite_url)
    models = str(champion.models_dir)
    # one partition, two processes asked: the summary says how many scored, and why not two
    code, output = _cli("--db", sqlite_url, "--model-dir", models, "--as-of", "2026-05-01",
                        "--partition-leads", "100000", "--processes", "2", "--top", "3")
    assert code == 0, output
    assert "partitions 1 (1 run now)" in output and "processes 1 of the 2 asked (1 partition to score" in output
    # reasons: no scientific notation, no "None"
    reasons = output.split("top reasons")[1]
    assert "e+0" not in reasons and "= None" not in reasons and "= nan" not in reasons, reasons

    # --tracking-uri would be ignored next to exported models: refused, one line, before any work
    result = CliRunner().invoke(app, ["rescore", "--db", sqlite_url, "--model-dir", models, "--tracking-uri",
                                              f"sqlite:///{tmp_path / 'mlflow.db'}"], env={"COLUMNS": "300"})
    squeezed = "".join(result.stderr.split())  # rich wraps at the console's width, whatever COLUMNS says
    assert result.exit_code == 2 and squeezed == "".join((
        f"error: --tracking-uri with --model-dir {models}: the exported models would be used and the registry "
        "ignored; give one of them").split()), result.stderr
    assert not (tmp_path / "mlflow.db").exists()

    # options a run would ignore: a resumed run keeps its partitions; --dask and --workers are two clusters
    for options, message in (
            (["--resume", "--partition-leads", "100"], "--partition-leads: a resumed run keeps the values it started with"),
            (["--dask", "tcp://127.0.0.1:1", "--workers", "2"],
             "--dask scores on that scheduler's workers, --workers starts a local cluster; give one of them")):
        result = CliRunner().invoke(app, ["rescore", "--db", sqlite_url, "--model-dir", models, *options],
                                    env={"COLUMNS": "300"})
        assert result.exit_code == 2 and message in " ".join(result.stderr.replace("│", " ").split()), result.stderr

    # an error during the run replaces the progress bar: the message stands alone (a folder without an export;
    # one that does not exist is refused before the run, naming the option)
    (tmp_path / "none").mkdir()
    result = CliRunner().invoke(app, ["rescore", "--db", sqlite_url, "--model-dir", str(tmp_path / "none"),
                                              "--as-of", "2026-05-01"], env={"COLUMNS": "300"})
    squeezed = "".join(result.stderr.split())
    assert result.exit_code == 1 and squeezed == "".join(
        f"error: no champion.json in {tmp_path / 'none'} or {tmp_path / 'none' / 'lead-conversion'}".split()), \
        result.stderr  # the error alone: no progress bar left above it

    # an empty --model-dir is the registry (the MLproject default), even with LEADSCORE_MODEL_DIR set
    registry = tmp_path / "registry" / "mlflow.db"
    result = CliRunner().invoke(app, ["rescore", "--db", sqlite_url, "--model-dir", "", "--as-of", "2026-05-01"],
                                env={"COLUMNS": "300", "LEADSCORE_MODEL_DIR": models,
                                     "MLFLOW_TRACKING_URI": f"sqlite:///{registry}"})
    assert result.exit_code == 1 and str(registry) in "".join(result.stderr.split()), result.stderr
    assert "champion.json" not in result.stderr


def test_a_run_stopped_while_summarising_is_marked_failed_and_resume_finishes_it(
        sqlite_url: str, champion: Champion, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C (or SIGTERM) after the last commit, while the summary was built, left the run 'running'."""
    import serving.rescore as rescore_module

    make_lead_db(sqlite_url)
    data = sql_data_config(sqlite_url)

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(rescore_module, "build_summary", interrupted)
        with pytest.raises(KeyboardInterrupt):
            rescore(data, sqlite_url, champion.settings, _config(as_of=AS_OF, run_id="stopped"))
    engine = sa.create_engine(sqlite_url)
    try:
        with engine.connect() as conn:
            status, error = conn.execute(sa.text("SELECT status, error FROM lead_score_runs WHERE run_id = 'stopped'")).one()
        assert status == score_store.FAILED and error.startswith("summarising: KeyboardInterrupt")
        summary = rescore(data, sqlite_url, champion.settings, _config(resume=True, run_id="stopped"))
        assert score_store.load_run(engine, "stopped").status == score_store.FINISHED
        assert summary.partitions_run_now == 0  # every partition was committed before the stop: none run again
        assert summary.scored == len(stored_scores(sqlite_url)) > 0
    finally:
        engine.dispose()
