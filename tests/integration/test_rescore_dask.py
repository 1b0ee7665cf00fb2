"""Rescoring on a local Dask cluster (2 worker processes) gives exactly the single-process result."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from distributed import Client, LocalCluster

from features.contract import ContractError
from serving import score_store
from serving.rescore import RescoreConfig, rescore, sql_data_config
from serving.rescore_dask import rescore_on_dask
from tests.integration.rescore_support import (
    AS_OF,
    LATER,
    PARTITION_LEADS,
    VALUE_COLUMNS,
    Champion,
    check_unscored_leads_were_scored,
    delete_scores,
    in_memory_scores,
    make_champion,
    make_lead_db,
    make_text_lead_db,
    stored_scores,
)


@pytest.fixture(scope="module")
def champion(tmp_path_factory: pytest.TempPathFactory) -> Champion:
    return make_champion(tmp_path_factory.mktemp("dask-champion"))


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    """One local cluster for the module: 2 worker processes, as in production on 2 cores."""
    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None) as cluster, \
            Client(cluster) as dask_client:
        yield dask_client


@pytest.mark.parametrize("database", ["postgres"])
def test_dask_matches_single_process(
    database: str, request: pytest.FixtureRequest, tmp_path: Path, champion: Champion, client: Client
) -> None:
    url = request.getfixturevalue("sqlite_url" if database == "sqlite" else "postgres_url")
    single_url = f"sqlite:///{tmp_path / 'single.db'}"
    make_lead_db(url)
    make_lead_db(single_url)
    config = RescoreConfig(partition_leads=PARTITION_LEADS, as_of=AS_OF)
    single = rescore(sql_data_config(single_url), single_url, champion.settings, config)
    distributed = rescore_on_dask(sql_data_config(url), url, champion.settings, config, client=client)
    assert len(client.scheduler_info()["workers"]) == 2

    assert distributed.partitions == single.partitions > 2
    for field in ("scored", "skipped_converted", "skipped_not_created", "mql", "grades", "history_rows"):
        assert getattr(distributed, field) == getattr(single, field), field
    got, want = stored_scores(url), stored_scores(single_url)
    assert len(got) == single.scored
    pd.testing.assert_frame_equal(got[VALUE_COLUMNS], want[VALUE_COLUMNS], check_dtype=False)
    np.testing.assert_array_equal(got["probability"].to_numpy(), want["probability"].to_numpy())


def test_dask_incremental_run_scores_the_leads_without_a_stored_score(
    postgres_url: str, champion: Champion, client: Client
) -> None:
    """The partitions sent to the workers carry the ids of their stored scores: only the changed leads and
    those without a score (three whose rows are gone, those created since the full run) are scored."""
    make_lead_db(postgres_url, n_leads=700)  # three partitions
    data = sql_data_config(postgres_url)
    rescore(data, postgres_url, champion.settings, RescoreConfig(partition_leads=PARTITION_LEADS, as_of=AS_OF))
    before = set(stored_scores(postgres_url)["lead_id"])
    lost = sorted(before)[0:1000:250]
    delete_scores(postgres_url, lost)
    since = LATER - pd.Timedelta(days=3)
    summary = rescore_on_dask(data, postgres_url, champion.settings, RescoreConfig(
        partition_leads=PARTITION_LEADS, as_of=LATER, changed_since=since), client=client)
    check_unscored_leads_were_scored(postgres_url, champion, summary, summary.run_id, before, lost, since, LATER)


def test_a_contract_violation_on_a_worker_fails_the_run_cleanly_and_resume_finishes_it(
    sqlite_url: str, tmp_path: Path, champion: Champion, client: Client
) -> None:
    """A partition that breaks the contract ends the run with the contract's message (its violations named),
    no worker log of a "Compute Failed" task with its traceback (a data error is no crash); the run is
    marked failed, and once the data is fixed ``--resume`` on the workers gives the single-process result."""
    make_lead_db(sqlite_url, n_leads=700)  # three partitions
    engine = sa.create_engine(sqlite_url)
    with engine.begin() as conn:
        dup = conn.execute(sa.text("SELECT lead_id FROM leads ORDER BY lead_id LIMIT 1 OFFSET 450")).scalar_one()
        conn.execute(sa.text("INSERT INTO leads SELECT * FROM leads WHERE lead_id = :id"), {"id": dup})
    data = sql_data_config(sqlite_url)
    config = RescoreConfig(partition_leads=PARTITION_LEADS, as_of=AS_OF, run_id="bad-dask")
    with pytest.raises(ContractError, match=rf"leads\.lead_id: duplicate_lead_id: 2 rows; e\.g\. .*lead_id={dup}"):
        rescore_on_dask(data, sqlite_url, champion.settings, config, client=client)
    assert score_store.load_run(engine, "bad-dask").status == score_store.FAILED
    logs = [message for records in client.get_worker_logs().values() for _, message in records]
    assert not [m for m in logs if "bad-dask" in m], logs
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM leads WHERE rowid = (SELECT MAX(rowid) FROM leads WHERE lead_id = :id)"),
                     {"id": dup})
    engine.dispose()
    resumed = rescore_on_dask(data, sqlite_url, champion.settings,
                              RescoreConfig(partition_leads=PARTITION_LEADS, resume=True, run_id="bad-dask"),
                              client=client)
    single_url = f"sqlite:///{tmp_path / 'single.db'}"
    make_lead_db(single_url, n_leads=700)
    single = rescore(sql_data_config(single_url), single_url, champion.settings,
                     RescoreConfig(partition_leads=PARTITION_LEADS, as_of=AS_OF))
    assert resumed.status == score_store.FINISHED and resumed.scored == single.scored
    got, want = stored_scores(sqlite_url), stored_scores(single_url)
    pd.testing.assert_frame_equal(got[VALUE_COLUMNS], want[VALUE_COLUMNS], check_dtype=False)


def test_cli_local_cluster_failure_prints_the_error_alone(sqlite_url: str, champion: Champion) -> None:
    """``leadscore rescore --workers 2`` on data that breaks the contract: stderr holds the contract's message,
    not the workers' log lines (a failed task with its traceback, cancelled tasks, a nanny killing a busy
    worker) around it."""
    make_lead_db(sqlite_url, n_leads=700)
    engine = sa.create_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO leads SELECT * FROM leads WHERE lead_id = 400"))
    engine.dispose()
    done = subprocess.run(
        [sys.executable, "-m", "leadscore.cli", "rescore", "--db", sqlite_url, "--model-dir",
         str(champion.models_dir), "--as-of", AS_OF.isoformat(), "--partition-leads", str(PARTITION_LEADS),
         "--workers", "2"],
        cwd=Path(__file__).parents[2], capture_output=True, text=True, timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"},
    )
    assert done.returncode == 1
    assert "duplicate_lead_id: 2 rows" in done.stderr
    assert " - distributed." not in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_a_relative_sqlite_url_names_the_drivers_file_on_the_workers(
    tmp_path: Path, champion: Champion, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--db sqlite:///crm.db`` with ``--dask``: workers started in another folder read the file the command
    was given (they opened, and SQLite created, an empty ``crm.db`` of their own: "table 'leads' not found")."""
    make_lead_db(f"sqlite:///{tmp_path / 'crm.db'}", n_leads=700)
    monkeypatch.chdir(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    before = client.run(os.getcwd)
    client.run(os.chdir, str(elsewhere))
    try:
        summary = rescore_on_dask(sql_data_config("sqlite:///crm.db"), "sqlite:///crm.db", champion.settings,
                                  RescoreConfig(partition_leads=PARTITION_LEADS, as_of=AS_OF), client=client)
    finally:
        for address, cwd in before.items():
            client.run(os.chdir, cwd, workers=[address])
    assert summary.scored > 0 and len(stored_scores(f"sqlite:///{tmp_path / 'crm.db'}")) == summary.scored
    assert list(elsewhere.iterdir()) == []


def test_a_scheduler_without_workers_is_noted_and_the_run_goes_on_when_one_joins(
        sqlite_url: str, champion: Champion) -> None:
    """--dask ADDRESS of a scheduler with no worker showed a bar at 0/? forever, without a word."""
    import threading
    import time

    make_lead_db(sqlite_url, n_leads=700)
    notes: list[str] = []
    outcome: dict[str, object] = {}
    with LocalCluster(n_workers=0, processes=False, dashboard_address=None) as cluster:
        def run() -> None:
            try:
                outcome["summary"] = rescore_on_dask(
                    sql_data_config(sqlite_url), sqlite_url, champion.settings,
                    RescoreConfig(partition_leads=PARTITION_LEADS, as_of=AS_OF),
                    address=cluster.scheduler_address, note=notes.append)
            except BaseException as exc:  # noqa: BLE001 - handed to the test thread
                outcome["error"] = exc

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        deadline = time.monotonic() + 60
        while not notes and time.monotonic() < deadline and worker.is_alive():
            time.sleep(0.05)
        assert notes and "no worker is connected" in notes[0] and cluster.scheduler_address in notes[0]
        assert worker.is_alive()  # waiting, not failed
        cluster.scale(1)
        worker.join(timeout=120)
    assert "error" not in outcome, outcome.get("error")
    assert outcome["summary"].scored == len(stored_scores(sqlite_url)) > 0


def test_text_lead_ids_on_dask(sqlite_url: str, champion: Champion, client: Client) -> None:
    """Text ids (bytewise ranges, the last open-ended) on the workers: every open lead scored once."""
    ids = make_text_lead_db(sqlite_url, n_leads=600)
    config = RescoreConfig(partition_leads=97, as_of=AS_OF, run_id="dask-text")
    summary = rescore_on_dask(sql_data_config(sqlite_url), sqlite_url, champion.settings, config, client=client)
    reference = in_memory_scores(sqlite_url, champion.core(), AS_OF)
    stored = stored_scores(sqlite_url).set_index("lead_id")
    assert sorted(stored.index) == sorted(reference.lead_id.tolist()) and summary.scored == len(stored) > 0
    np.testing.assert_array_equal(stored.loc[list(reference.lead_id), "score"].to_numpy(), reference.score)
    engine = sa.create_engine(sqlite_url)
    assert score_store.partition_counts(engine, "dask-text")["leads"].sum() == len(ids)
    engine.dispose()
