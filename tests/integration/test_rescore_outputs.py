"""What a rescoring run reports and writes besides the score tables: the ``--out`` file (resumed and empty
runs), incremental runs after a promotion, the summary's counts, the progress of a resumed run, and
reasons JSON for non-finite values."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from features.build import scoring_matrix
from features.contract import AttributesConfig, ContractError, DataConfig, SourceConfig
from features.loading import load_crm
from leadscore.cli import app
from leadscore.cli_rescore import scored_text
from serving import score_store
from serving.loader import ServingSettings
from serving.rescore import (
    LocalExecutor,
    RescoreConfig,
    _host_label,
    data_config_for,
    json_numbers,
    out_schema,
    reasons_json,
    rescore,
    sql_data_config,
    top_leads,
)
from tests.integration.rescore_support import (
    AS_OF,
    LATER,
    PARTITION_LEADS,
    Champion,
    changed_leads,
    delete_scores,
    in_memory_scores,
    make_champion,
    make_lead_db,
    stored_scores,
)
from tests.serving_fixtures import MODEL_NAME

OUT_COLUMNS = [c.name for c in score_store.lead_scores.columns]


@pytest.fixture(scope="module")
def champion(tmp_path_factory: pytest.TempPathFactory) -> Champion:
    return make_champion(tmp_path_factory.mktemp("outputs-champion"))


@pytest.fixture(params=["sqlite", "postgres"])
def lead_db(request: pytest.FixtureRequest) -> str:
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")
    make_lead_db(url)
    return url


def _execute(url: str, sql: str, **params: object) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(sql), params)
    finally:
        engine.dispose()


def _scalar(url: str, sql: str) -> object:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(sql)).scalar_one()
    finally:
        engine.dispose()


def _read_out(path: Path) -> pd.DataFrame:
    if path.suffix == ".csv":
        return pd.read_csv(path, float_precision="round_trip")
    return pd.read_parquet(path)


def _stopped_at_the_partition_of(url: str, run_id: str, bad_lead: int, committed: pd.DataFrame) -> None:
    """The run stopped at the partition holding ``bad_lead``: every partition before it is done, none from it
    on, and the scores it committed are leads of those partitions. (The partition just before it was left
    undone now and then: a scored result still waiting for the commit thread was dropped when the run stopped;
    bad data now lets the waiting commit finish.)"""
    engine = sa.create_engine(url)
    try:
        run = score_store.load_run(engine, run_id)
    finally:
        engine.dispose()
    stopped = next(p for p in run.partitions if p.start <= bad_lead < p.stop)
    assert stopped.index >= 2 and run.done == set(range(stopped.index)), (stopped, run.done)
    last = run.partitions[stopped.index - 1]
    assert len(committed) > 0 and committed["lead_id"].max() < last.stop, (committed["lead_id"].max(), last)
    assert committed["lead_id"].max() >= last.start  # the partition just before the bad one was committed


def _cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["rescore", *args], env={"COLUMNS": "300", "NO_COLOR": "1"})
    return result.exit_code, " ".join(result.stdout.replace("│", " ").split()), " ".join(result.stderr.split())


def test_out_file_of_a_resumed_run_holds_the_whole_run(lead_db: str, champion: Champion, tmp_path: Path) -> None:
    """A run stopped at its third partition, resumed with --out: the file holds every score of the run (the
    partitions committed before are read back), the progress starts at the committed lead ids and ends at
    the total, and temporary files left by killed runs writing that file are removed (no other file)."""
    folder = tmp_path / "out"  # (the SQLite database is in tmp_path)
    folder.mkdir()
    out = folder / ("scores.csv" if lead_db.startswith("sqlite") else "scores.parquet")
    third = int(_scalar(lead_db, f"SELECT lead_id FROM leads ORDER BY lead_id LIMIT 1 OFFSET {2 * PARTITION_LEADS + 5}"))
    _execute(lead_db, "UPDATE leads SET employees = -1 WHERE lead_id = :id", id=third)
    config = RescoreConfig(partition_leads=PARTITION_LEADS, as_of=AS_OF, run_id="stopped", processes=1)
    with pytest.raises(ContractError, match=rf"leads\.employees: negative_value: 1 row .*lead_id={third}, value=-1"):
        rescore(sql_data_config(lead_db), lead_db, champion.settings, config, out=out)
    assert list(folder.iterdir()) == []  # the failed call left no file, whole or partial
    committed = stored_scores(lead_db)
    _stopped_at_the_partition_of(lead_db, "stopped", third, committed)

    _execute(lead_db, "UPDATE leads SET employees = 10 WHERE lead_id = :id", id=third)
    orphan, kept = folder / f".{out.name}.0a1b2c3d.tmp", folder / f".{out.name}.notes.tmp"
    orphan.write_text("left by a killed run")
    kept.write_text("not a temporary file of this writer")
    calls: list[tuple[int, int, int]] = []
    summary = rescore(sql_data_config(lead_db), lead_db, champion.settings,
                      RescoreConfig(partition_leads=PARTITION_LEADS, resume=True, processes=1), out=out,
                      progress=lambda done, total, partition: calls.append((done, total, partition)))
    stored = stored_scores(lead_db)
    written = _read_out(out).sort_values("lead_id").reset_index(drop=True)
    assert summary.scored == len(stored) == len(written) > len(committed)
    assert list(written.columns) == OUT_COLUMNS
    np.testing.assert_array_equal(written["lead_id"].to_numpy(), stored["lead_id"].to_numpy())
    np.testing.assert_array_equal(written["score"].to_numpy(), stored["score"].to_numpy())
    np.testing.assert_allclose(written["probability"].to_numpy(), stored["probability"].to_numpy(), rtol=0, atol=0)
    assert written["reasons"].tolist() == stored["reasons"].tolist()
    assert (written["run_id"] == "stopped").all() and (pd.to_datetime(written["as_of"]) == AS_OF).all()
    if out.suffix == ".parquet":
        assert pq.read_schema(out).remove_metadata() == out_schema()
    assert not orphan.exists() and kept.exists()
    assert sorted(p.name for p in folder.iterdir()) == sorted([out.name, kept.name])
    # the bar of the resumed call starts at the lead ids committed before it and ends at the run's total
    total = calls[0][1]
    assert calls[0][2] == -1 and 0 < calls[0][0] < total
    assert sum(done for done, _, _ in calls) == total and all(t == total for _, t, _ in calls)


def test_cli_resume_bar_ends_at_the_total(sqlite_url: str, champion: Champion) -> None:
    make_lead_db(sqlite_url)
    third = int(_scalar(sqlite_url, f"SELECT lead_id FROM leads ORDER BY lead_id LIMIT 1 OFFSET {2 * PARTITION_LEADS}"))
    _execute(sqlite_url, "UPDATE leads SET employees = -1 WHERE lead_id = :id", id=third)
    models = str(champion.models_dir)
    code, _, _ = _cli("--db", sqlite_url, "--model-dir", models, "--as-of", "2026-05-01", "--partition-leads",
                      str(PARTITION_LEADS), "--processes", "1")
    assert code == 1
    _execute(sqlite_url, "UPDATE leads SET employees = 10 WHERE lead_id = :id", id=third)
    code, output, bar = _cli("--db", sqlite_url, "--model-dir", models, "--resume")
    assert code == 0, output
    total = int(_scalar(sqlite_url, "SELECT SUM(lead_id_stop - lead_id_start) FROM lead_score_run_partitions"))
    assert f"{total}/{total} lead ids 100%" in bar, bar


def test_a_run_whose_out_file_cannot_be_written_is_marked_failed(sqlite_url: str, champion: Champion,
                                                                 tmp_path: Path) -> None:
    """Every partition committed, then the final rename fails (the path is a folder): the run is marked
    failed with the reason, not left running, and --resume writes the whole file."""
    make_lead_db(sqlite_url)
    data = sql_data_config(sqlite_url)
    out = tmp_path / "scores.csv"
    out.mkdir()
    with pytest.raises(OSError):
        rescore(data, sqlite_url, champion.settings, RescoreConfig(as_of=AS_OF, run_id="unwritten"), out=out)
    with sa.create_engine(sqlite_url).connect() as conn:
        status, error = conn.execute(sa.text("SELECT status, error FROM lead_score_runs WHERE run_id = 'unwritten'")).one()
    assert status == score_store.FAILED and error.startswith("writing --out: IsADirectoryError"), (status, error)
    out.rmdir()
    summary = rescore(data, sqlite_url, champion.settings, RescoreConfig(resume=True), out=out)
    assert len(_read_out(out)) == summary.scored == len(stored_scores(sqlite_url)) > 0


def test_a_run_scoring_nothing_writes_an_empty_out_file(sqlite_url: str, champion: Champion, tmp_path: Path) -> None:
    """An incremental run that scores no lead replaces the previous run's file by an empty one (CSV header,
    Parquet schema): no earlier run's rows are shown as this run's output."""
    make_lead_db(sqlite_url)
    data = sql_data_config(sqlite_url)
    folder = tmp_path / "out"
    for out, as_of in ((folder / "scores.csv", AS_OF), (folder / "scores.parquet", LATER)):
        run = out.suffix[1:]
        full = rescore(data, sqlite_url, champion.settings, RescoreConfig(as_of=as_of, run_id=f"full-{run}"), out=out)
        assert len(_read_out(out)) == full.scored > 0
        # the same as-of: no event, creation or update in [since, as-of), and every open lead has its score
        empty = rescore(data, sqlite_url, champion.settings,
                        RescoreConfig(as_of=as_of, run_id=f"none-{run}", changed_since=as_of), out=out)
        assert empty.scored == 0 and empty.unchanged > 0
        written = _read_out(out)
        assert len(written) == 0 and list(written.columns) == OUT_COLUMNS
        if out.suffix == ".parquet":
            assert pq.read_schema(out).remove_metadata() == out_schema()
        else:
            assert out.read_text().strip() == ",".join(OUT_COLUMNS)
    assert sorted(p.name for p in folder.iterdir()) == ["scores.csv", "scores.parquet"]


def _promoted(champion: Champion, folder: Path, version: str) -> ServingSettings:
    """The same model exported again as another version (a promotion, as far as lead_scores can tell)."""
    models = folder / "models"
    shutil.copytree(champion.models_dir, models)
    meta_file = models / MODEL_NAME / "champion.json"
    meta = json.loads(meta_file.read_text())
    meta_file.write_text(json.dumps({**meta, "version": version, "run_id": f"run-{version}"}))
    return ServingSettings(model_dir=models)


def test_an_incremental_run_after_a_promotion_rescores_the_other_models_leads(
        lead_db: str, champion: Champion, tmp_path: Path) -> None:
    data = sql_data_config(lead_db)
    rescore(data, lead_db, champion.settings, RescoreConfig(partition_leads=PARTITION_LEADS, as_of=AS_OF,
                                                             run_id="v7"))
    before = stored_scores(lead_db)
    assert (before["model_version"] == champion.version).all()
    since = LATER - pd.Timedelta(days=3)
    promoted = _promoted(champion, tmp_path, "8")
    summary = rescore(data, lead_db, promoted, RescoreConfig(partition_leads=PARTITION_LEADS, as_of=LATER,
                                                              changed_since=since, run_id="v8"))
    after = stored_scores(lead_db)
    assert set(after["model_version"]) == {"8"} and (after["run_id"] == "v8").all()  # no model mixed in
    assert summary.scored == len(after)
    engine = sa.create_engine(lead_db)
    with engine.connect() as conn:
        created = pd.read_sql("SELECT lead_id, created_at FROM leads", conn, parse_dates=["created_at"])
        active = pd.read_sql("SELECT lead_id, occurred_at FROM events", conn, parse_dates=["occurred_at"])
    engine.dispose()
    window = (active["occurred_at"] >= since) & (active["occurred_at"] < LATER)
    changed = set(created.loc[created["created_at"] >= since, "lead_id"]) | set(active.loc[window, "lead_id"])
    kept_open = set(before["lead_id"]) & set(after["lead_id"])
    assert summary.model_changed == len(kept_open - changed) > 0  # rescored for the model alone

    # the same model again: only the changed leads are rescored
    again = rescore(data, lead_db, promoted, RescoreConfig(partition_leads=PARTITION_LEADS,
                                                            as_of=LATER + pd.Timedelta(days=1), changed_since=since,
                                                            run_id="v8-again"))
    assert again.model_changed == 0 and again.scored < summary.scored


def test_cli_summary_names_the_leads_rescored_for_another_model(sqlite_url: str, champion: Champion,
                                                               tmp_path: Path) -> None:
    make_lead_db(sqlite_url)
    rescore(sql_data_config(sqlite_url), sqlite_url, champion.settings, RescoreConfig(as_of=AS_OF))
    promoted = _promoted(champion, tmp_path, "8")
    code, output, _ = _cli("--db", sqlite_url, "--model-dir", str(promoted.model_dir), "--as-of", "2026-06-01",
                           "--changed-since", "2026-05-29")
    assert code == 0, output
    shown = int(output.split("rescored: other model ")[1].split()[0].replace(",", ""))
    engine = sa.create_engine(sqlite_url)
    run = json.loads(engine.connect().execute(sa.text(
        "SELECT summary FROM lead_score_runs ORDER BY started_at DESC LIMIT 1")).scalar_one())
    engine.dispose()
    assert shown == run["model_changed"] > 0


def test_quarantined_leads_count_distinct_ids(sqlite_url: str, champion: Champion, tmp_path: Path) -> None:
    """A lead id given twice is quarantined as both its rows, and counted as one lead."""
    make_lead_db(sqlite_url)
    twice = int(_scalar(sqlite_url, "SELECT lead_id FROM leads ORDER BY lead_id LIMIT 1 OFFSET 40"))
    _execute(sqlite_url, "INSERT INTO leads SELECT * FROM leads WHERE lead_id = :id", id=twice)
    data = DataConfig(source=SourceConfig(kind="sql", url=sqlite_url), policy="quarantine",
                      quarantine_dir=tmp_path / "quarantine", attributes=AttributesConfig())
    summary = rescore(data, sqlite_url, champion.settings, RescoreConfig(as_of=AS_OF, run_id="dup"))
    rows = pd.concat(map(pd.read_csv, (tmp_path / "quarantine" / "rescore-dup").rglob("leads.csv")))
    assert rows["lead_id"].tolist() == [twice, twice]
    assert summary.quarantined == 1
    assert twice not in set(stored_scores(sqlite_url)["lead_id"])


def test_scores_kept_out_by_a_later_run_are_reported(lead_db: str, champion: Champion) -> None:
    """A run of an earlier as-of that commits while a later one finishes: the store's guard keeps its scores
    out, and the summary says how many went in."""
    data = sql_data_config(lead_db)
    late: list[int] = []

    def run_later_meanwhile(result: object) -> None:  # after the early run's first commit
        if not late:
            late.append(rescore(data, lead_db, champion.settings,
                                RescoreConfig(partition_leads=PARTITION_LEADS, as_of=LATER, run_id="late")).scored)

    early = rescore(data, lead_db, champion.settings,
                    RescoreConfig(partition_leads=PARTITION_LEADS, as_of=AS_OF, run_id="early"),
                    executor=LocalExecutor(), on_result=run_later_meanwhile)
    stored = stored_scores(lead_db)
    assert late and (stored["run_id"] == "late").sum() == late[0]
    engine = sa.create_engine(lead_db)
    parts = score_store.partition_counts(engine, "early")
    engine.dispose()
    assert parts["written"].tolist()[1:] == [0] * (len(parts) - 1)  # committed after the later run finished
    assert early.written == parts["scored"].iloc[0] < early.scored
    assert scored_text(early) == (f"{early.scored:,} ({early.written:,} written: a later run's scores are newer)")


def test_reasons_json_writes_non_finite_numbers_as_null(sqlite_url: str, champion: Champion) -> None:
    make_lead_db(sqlite_url)
    core = champion.core()
    crm, _ = load_crm(data_config_for(sql_data_config(sqlite_url), core.spec))
    ids, matrix = scoring_matrix(crm, core.spec, AS_OF)
    column = core.columns.index("employees")
    matrix = matrix[:3].copy()
    matrix[:, column] = [np.inf, -np.inf, 5.0]
    batch = core.score_matrix(ids[:3], matrix, len(core.columns))  # every feature among the reasons
    texts = reasons_json(batch)
    values = [{r["feature"]: r["value"] for r in json.loads(text)} for text in texts]  # valid JSON
    assert [v["employees"] for v in values] == [None, None, 5.0]
    assert json_numbers(np.array([1.5, np.inf, -np.inf, np.nan, -0.25])) == ["1.5", "null", "null", "null", "-0.25"]


def test_top_reads_reasons_that_earlier_versions_wrote_with_inf(lead_db: str, champion: Champion) -> None:
    """Reasons stored with bare inf / nan (invalid JSON, written by earlier versions) read as null; other
    invalid text is a one-line error of --top, not a traceback."""
    rescore(sql_data_config(lead_db), lead_db, champion.settings, RescoreConfig(as_of=AS_OF, run_id="first"))
    top = int(top_leads(lead_db, 1)["lead_id"].iloc[0])
    legacy = ('[{"feature": "employees", "label": "employees", "family": "fit", "value": inf, "impact": 0.5}, '
              '{"feature": "annual_revenue", "label": "annual revenue", "family": "fit", "value": -inf, '
              '"impact": nan}]')
    _execute(lead_db, "UPDATE lead_scores SET reasons = :r WHERE lead_id = :id", r=legacy, id=top)
    reasons = top_leads(lead_db, 1)["reasons"].iloc[0]
    assert [r["value"] for r in reasons] == [None, None] and reasons[0]["impact"] == 0.5
    assert reasons[1]["impact"] is None

    _execute(lead_db, "UPDATE lead_scores SET reasons = :r WHERE lead_id = :id", r="[{oops", id=top)
    with pytest.raises(ValueError, match=f"the reasons of lead {top} are not JSON"):
        top_leads(lead_db, 1)
    code, _, errors = _cli("--db", lead_db, "--model-dir", str(champion.models_dir), "--run-id", "first", "--top", "3")
    assert code == 1 and errors.endswith(f"error: --top: lead_scores: the reasons of lead {top} are not JSON "
                                         "(Expecting property name enclosed in double quotes at character 2); "
                                         "rescore the lead"), errors


def test_out_of_a_run_whose_scores_were_replaced_is_refused(sqlite_url: str, champion: Champion,
                                                            tmp_path: Path) -> None:
    """The file of a run can only be whole when its scores are still in lead_scores: else a clear error,
    before any work, and no file."""
    make_lead_db(sqlite_url)
    data = sql_data_config(sqlite_url)
    rescore(data, sqlite_url, champion.settings, RescoreConfig(as_of=AS_OF, run_id="first"))
    rescore(data, sqlite_url, champion.settings, RescoreConfig(as_of=LATER, run_id="second"))
    out = tmp_path / "out" / "first.parquet"
    with pytest.raises(ValueError, match=r"--out .*first.parquet: [\d,]+ of the [\d,]+ scores run first committed "
                                         r"before are not in lead_scores .*; run without --out"):
        rescore(data, sqlite_url, champion.settings, RescoreConfig(run_id="first"), out=out)
    assert not out.parent.exists() or list(out.parent.iterdir()) == []
    # the run's own scores still there: its file is written whole by a call that scores nothing more
    rescore(data, sqlite_url, champion.settings, RescoreConfig(run_id="second"), out=out)
    assert len(pd.read_parquet(out)) == len(stored_scores(sqlite_url))


def test_an_incremental_run_scores_the_leads_without_a_stored_score(lead_db: str, champion: Champion) -> None:
    """Leads backfilled with an old created_at after the full run, and leads whose score row is gone, are
    scored by the next incremental run although unchanged (counted as never_scored, per partition too), by
    a resumed one as well; a backfilled lead already converted is not."""
    data = sql_data_config(lead_db)
    rescore(data, lead_db, champion.settings, RescoreConfig(partition_leads=PARTITION_LEADS, as_of=AS_OF, run_id="full"))
    before = stored_scores(lead_db)
    top = int(_scalar(lead_db, "SELECT MAX(lead_id) FROM leads"))
    originals = before["lead_id"].iloc[[1, 2]].tolist()  # open on May 1st: created long before
    engine = sa.create_engine(lead_db)
    columns = ", ".join(c["name"] for c in sa.inspect(engine).get_columns("leads"))
    engine.dispose()
    copied = columns.replace("lead_id", f"lead_id + {top}", 1)
    _execute(lead_db, f"INSERT INTO leads ({columns}) SELECT {copied} FROM leads WHERE lead_id IN ({originals[0]}, "
                      f"{originals[1]})")  # no event: unchanged since any recent instant
    backfilled, converted = originals[0] + top, originals[1] + top
    _execute(lead_db, "INSERT INTO outcomes (lead_id, converted_at) VALUES (:a, NULL), (:b, :at)",
             a=backfilled, b=converted, at=(AS_OF - pd.Timedelta(days=1)).to_pydatetime())
    lost = before["lead_id"].iloc[[0, -1]].tolist()  # first and fourth partitions
    delete_scores(lead_db, lost)
    third = int(_scalar(lead_db, f"SELECT lead_id FROM leads ORDER BY lead_id LIMIT 1 OFFSET {2 * PARTITION_LEADS + 5}"))
    _execute(lead_db, "UPDATE leads SET employees = -1 WHERE lead_id = :id", id=third)

    since = LATER - pd.Timedelta(days=3)
    config = RescoreConfig(partition_leads=PARTITION_LEADS, as_of=LATER, changed_since=since, run_id="inc")
    with pytest.raises(ContractError, match=rf"leads\.employees: negative_value: 1 row .*lead_id={third}, value=-1"):
        rescore(data, lead_db, champion.settings, config)  # stops at the third partition
    _stopped_at_the_partition_of(lead_db, "inc", third, stored_scores(lead_db).query("run_id == 'inc'"))
    _execute(lead_db, "UPDATE leads SET employees = 10 WHERE lead_id = :id", id=third)
    summary = rescore(data, lead_db, champion.settings, RescoreConfig(partition_leads=PARTITION_LEADS, resume=True))

    open_leads = set(in_memory_scores(lead_db, champion.core(0), LATER, top_k=0).lead_id.tolist())
    changed = changed_leads(lead_db, since, LATER) & open_leads
    never = open_leads - set(before["lead_id"]).difference(lost) - changed
    assert {backfilled, *lost} <= never and converted not in open_leads
    after = stored_scores(lead_db)
    rescored = set(after.loc[after["run_id"] == "inc", "lead_id"])
    assert rescored == changed | never and converted not in set(after["lead_id"])
    assert summary.never_scored == len(never) and summary.model_changed == 0
    assert summary.scored == len(changed) + summary.never_scored
    engine = sa.create_engine(lead_db)
    parts = score_store.partition_counts(engine, "inc")
    engine.dispose()
    assert parts["never_scored"].tolist()[0] >= 1 and parts["never_scored"].sum() == summary.never_scored

    # nothing left unscored: the next incremental run scores only what changed
    again = rescore(data, lead_db, champion.settings, RescoreConfig(
        partition_leads=PARTITION_LEADS, as_of=LATER, changed_since=since, run_id="again"))
    assert again.never_scored == 0 and again.scored == len(changed)


def test_cli_first_incremental_run_on_an_empty_store_scores_every_open_lead(sqlite_url: str,
                                                                           champion: Champion) -> None:
    make_lead_db(sqlite_url)
    code, output, _ = _cli("--db", sqlite_url, "--model-dir", str(champion.models_dir), "--as-of", "2026-06-01",
                           "--changed-since", "2026-05-29")
    assert code == 0, output
    shown = int(output.split("scored: no stored score ")[1].split()[0].replace(",", ""))
    engine = sa.create_engine(sqlite_url)
    with engine.connect() as conn:
        run = json.loads(conn.execute(sa.text("SELECT summary FROM lead_score_runs")).scalar_one())
    engine.dispose()
    assert shown == run["never_scored"] > 0 and run["unchanged"] == 0
    assert run["scored"] == len(stored_scores(sqlite_url)) == run["never_scored"] + len(
        changed_leads(sqlite_url, pd.Timestamp("2026-05-29"), LATER) & set(stored_scores(sqlite_url)["lead_id"]))


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_two_runs_writing_one_out_file_at_once_keep_their_own_temporary_files(
        sqlite_url: str, postgres_url: str, champion: Champion, tmp_path: Path, suffix: str) -> None:
    """A run on SQLite writing --out, and meanwhile a whole run on PostgreSQL writing the same file (one
    process): both finish, the file holds the last one's whole output, and no temporary file is left; nor
    by a third run that fails after writing some rows."""
    make_lead_db(sqlite_url, n_leads=600)
    make_lead_db(postgres_url, n_leads=300)
    out = tmp_path / "out" / f"scores{suffix}"
    config = RescoreConfig(partition_leads=PARTITION_LEADS, as_of=AS_OF, processes=1)
    meanwhile: list[int] = []

    def run_other(result: object) -> None:  # after the first run's first partition went to its file
        if not meanwhile:
            meanwhile.append(rescore(sql_data_config(postgres_url), postgres_url, champion.settings, config,
                                     out=out).scored)

    first = rescore(sql_data_config(sqlite_url), sqlite_url, champion.settings, config.model_copy(
        update={"run_id": "first"}), out=out, on_result=run_other)
    assert meanwhile and meanwhile[0] > 0 and first.partitions > 1
    written = _read_out(out).sort_values("lead_id").reset_index(drop=True)
    stored = stored_scores(sqlite_url)
    assert list(written.columns) == OUT_COLUMNS and len(written) == first.scored == len(stored)
    np.testing.assert_array_equal(written["lead_id"].to_numpy(), stored["lead_id"].to_numpy())
    assert (written["run_id"] == "first").all()
    assert [p.name for p in out.parent.iterdir()] == [out.name]

    def fail(result: object) -> None:
        raise RuntimeError("stopped")

    # left by a killed run of this host (removed), by a process of another host (kept: it may be running)
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    killed = out.with_name(f".{out.name}.{_host_label()}.{ended.pid}.0123abcd.tmp")
    elsewhere = out.with_name(f".{out.name}.other-host.{ended.pid}.0123abcd.tmp")
    for orphan in (killed, elsewhere):
        orphan.write_text("partial")
    with pytest.raises(RuntimeError, match="stopped"):
        rescore(sql_data_config(sqlite_url), sqlite_url, champion.settings, config.model_copy(
            update={"run_id": "stopped", "as_of": LATER}), out=out, on_result=fail)
    assert sorted(p.name for p in out.parent.iterdir()) == sorted([out.name, elsewhere.name])
    assert len(_read_out(out)) == first.scored


def test_a_scores_database_that_cannot_be_written_is_named(champion: Champion, tmp_path: Path) -> None:
    """The lead data read from a read-only database (a read-only mount; here SQLite's mode=ro), scores written to
    another with -c and --db: one that cannot be written said only "error: database: attempt to write a readonly
    database", not which of the two. Now the scores database is named (password masked)."""
    source = tmp_path / "crm.db"
    make_lead_db(f"sqlite:///{source}", n_leads=50)
    project = tmp_path / "leadscore.yaml"
    project.write_text(f"data:\n  source: {{kind: sql, url: 'sqlite:///{source}'}}\n", encoding="utf-8")
    scores = tmp_path / "scores.db"
    engine = sa.create_engine(f"sqlite:///{scores}")
    with engine.begin() as conn:  # mode=ro opens only a database that exists
        conn.execute(sa.text("CREATE TABLE placeholder (x INTEGER)"))
    engine.dispose()
    read_only = f"sqlite:///file:{scores}?mode=ro&uri=true"
    code, _, errors = _cli("-c", str(project), "--db", read_only, "--model-dir", str(champion.models_dir),
                           "--as-of", "2026-06-01")
    assert code == 1, errors
    assert errors == f"error: database {read_only}: attempt to write a readonly database", errors


def test_cli_reasons_per_lead_default_to_leadscore_top_k(sqlite_url: str, champion: Champion) -> None:
    """Without --top-k a rescore gives LEADSCORE_TOP_K reasons per lead, as the endpoint does when a request names
    none (it read and validated the variable but scored 3 reasons whatever it said); --top-k still decides."""
    make_lead_db(sqlite_url, n_leads=300)
    args = ("--db", sqlite_url, "--model-dir", str(champion.models_dir), "--as-of", AS_OF.isoformat())
    for env, extra, expected in (({"LEADSCORE_TOP_K": "1"}, (), 1), ({"LEADSCORE_TOP_K": "1"}, ("--top-k", "2"), 2),
                                 ({}, (), 3)):
        result = CliRunner().invoke(app, ["rescore", *args, *extra], env={"COLUMNS": "300", "NO_COLOR": "1", **env})
        assert result.exit_code == 0, result.output
        reasons = stored_scores(sqlite_url)["reasons"].map(lambda text: len(json.loads(text)))
        assert len(reasons) > 0 and reasons.max() == expected, (env, extra)


def test_an_as_of_years_after_the_base_is_noted_with_the_date_to_pass(sqlite_url: str, champion: Champion) -> None:
    """Olist's export (last lead 2018-05-31) rescored as of now scored every lead ~3,100 days old without a word:
    the summary names the base's latest lead or event, and an as-of more than a year after it gets a note
    saying which --as-of would score the export as it stood."""
    from datetime import date

    from leadscore.synth import SynthConfig, write_synthetic

    history = SynthConfig(n_leads=300, seed=5, events_per_lead=10, start=date(2021, 1, 1), end=date(2023, 6, 30))
    write_synthetic(history, sqlite_url, "sql", overwrite=True)
    crm, _ = load_crm(sql_data_config(sqlite_url))
    instants = pd.Series([*crm.leads["created_at"], *crm.events["occurred_at"]]).dropna()
    end = pd.Timestamp("2023-07-01")
    summary = rescore(sql_data_config(sqlite_url), sqlite_url, champion.settings, RescoreConfig(as_of=end))
    assert pd.Timestamp(summary.latest_activity) == instants[instants < end].max()
    assert 0 <= summary.days_since_latest_activity < 2
    code, output, errors = _cli("--db", sqlite_url, "--model-dir", str(champion.models_dir), "--as-of", "2023-07-01")
    assert code == 0, (output, errors)
    assert f"latest lead or event {instants.max():%Y-%m-%d %H:%M}" in output and "note:" not in errors, errors
    code, output, errors = _cli("--db", sqlite_url, "--model-dir", str(champion.models_dir), "--as-of", "2026-01-01")
    assert code == 0, (output, errors)
    days = (pd.Timestamp("2026-01-01") - instants.max()).total_seconds() / 86400
    assert f"note: the as-of 2026-01-01 is {days:,.0f} days after the latest lead or event" in errors, errors
    assert f"pass --as-of (e.g. --as-of {instants.max():%Y-%m-%d})" in errors
