"""The score tables follow the source's ``db_schema``: on the real PostgreSQL a project whose CRM lives in a
schema gets its scores there (nothing in ``public``), a second project in another schema of the same
database keeps its own; resumed and incremental runs, ``--out``, ``--top`` and ``synth --overwrite``
(which writes the default schema) included. SQLite has no schemas: ``main`` only, anything else refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from features.contract import AttributesConfig, DataConfig, SourceConfig
from leadscore.cli import app
from serving import score_store
from serving.rescore import RescoreConfig, rescore, sql_data_config, top_leads
from tests.integration.rescore_support import (
    AS_OF,
    LATER,
    Champion,
    check_unscored_leads_were_scored,
    delete_scores,
    in_memory_scores,
    make_champion,
    make_lead_db,
    stored_scores,
)

SCORE_TABLES = {score_store.LEAD_SCORES, score_store.LEAD_SCORE_HISTORY, score_store.LEAD_SCORE_RUNS,
                score_store.LEAD_SCORE_RUN_PARTITIONS}
PARTITION_LEADS = 200


@pytest.fixture(scope="module")
def champion(tmp_path_factory: pytest.TempPathFactory) -> Champion:
    return make_champion(tmp_path_factory.mktemp("schema-champion"))


def _in_schema(url: str, schema: str) -> str:
    """``url`` whose unqualified names resolve in ``schema`` (the test's own view of that schema)."""
    return f"{url}?options=-csearch_path%3D{schema}"


@pytest.fixture
def two_projects(postgres_url: str) -> Iterator[str]:
    """Schemas ``crm`` (600 leads) and ``crm_b`` (400 other leads) of one fresh database, each a CRM."""
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE SCHEMA crm"))
        conn.execute(sa.text("CREATE SCHEMA crm_b"))
    engine.dispose()
    make_lead_db(_in_schema(postgres_url, "crm"), n_leads=600, seed=11)
    make_lead_db(_in_schema(postgres_url, "crm_b"), n_leads=400, seed=12)
    yield postgres_url


def _tables(url: str, schema: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names(schema=schema))
    finally:
        engine.dispose()


def _data(url: str, schema: str | None) -> DataConfig:
    return DataConfig(source=SourceConfig(kind="sql", url=url, db_schema=schema), attributes=AttributesConfig())


@pytest.mark.postgres
def test_cli_rescore_writes_the_scores_into_the_sources_schema_and_a_second_project_keeps_its_own(
        two_projects: str, champion: Champion, tmp_path: Path) -> None:
    url = two_projects
    runs = {}
    for schema in ("crm", "crm_b"):
        project = tmp_path / schema
        project.mkdir()
        (project / "leadscore.yaml").write_text(
            f"data:\n  source: {{kind: sql, url: '{url}', db_schema: {schema}}}\n", encoding="utf-8")
        out = project / "scores.parquet"
        result = CliRunner().invoke(app, [
            "rescore", "-c", str(project / "leadscore.yaml"), "--model-dir", str(champion.models_dir),
            "--as-of", AS_OF.isoformat(), "--partition-leads", str(PARTITION_LEADS), "--out", str(out), "--top", "3",
        ], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        stored = stored_scores(_in_schema(url, schema))
        reference = in_memory_scores(_in_schema(url, schema), champion.core(), AS_OF)
        np.testing.assert_array_equal(stored["lead_id"].to_numpy(), reference.lead_id)
        np.testing.assert_allclose(stored["probability"].to_numpy(), reference.probability, atol=1e-12)
        written = pd.read_parquet(out).sort_values("lead_id").reset_index(drop=True)
        np.testing.assert_array_equal(written["lead_id"].to_numpy(), stored["lead_id"].to_numpy())
        top = top_leads(url, 3, schema)
        assert top["probability"].is_monotonic_decreasing and str(top["lead_id"].iloc[0]) in result.output
        runs[schema] = stored
        assert _tables(url, schema) >= SCORE_TABLES
    assert not SCORE_TABLES & _tables(url, "public")  # nothing written into the default schema
    # the second project's run neither replaced nor retired the first one's scores
    pd.testing.assert_frame_equal(stored_scores(_in_schema(url, "crm")), runs["crm"])
    assert set(runs["crm"]["run_id"]).isdisjoint(runs["crm_b"]["run_id"])

    # synth --overwrite writes the database's default schema and drops the stale scores there only
    again = CliRunner().invoke(app, ["synth", "--out", url, "--leads", "200", "--overwrite"])
    assert again.exit_code == 0, again.output
    assert "stored scores dropped" not in again.output
    pd.testing.assert_frame_equal(stored_scores(_in_schema(url, "crm")), runs["crm"])


@pytest.mark.postgres
def test_resumed_and_incremental_runs_stay_in_the_schema(two_projects: str, champion: Champion) -> None:
    url = two_projects
    crm = _in_schema(url, "crm")
    data = _data(url, "crm")
    committed: list[int] = []

    def stop_after_first(result: object) -> None:
        committed.append(1)
        raise RuntimeError("stopped mid-run")

    with pytest.raises(RuntimeError, match="stopped mid-run"):
        rescore(data, url, champion.settings, RescoreConfig(partition_leads=PARTITION_LEADS, as_of=AS_OF,
                                                            run_id="halfway"), on_result=stop_after_first)
    engine = sa.create_engine(crm)
    try:
        stopped = score_store.load_run(engine, "halfway")
        assert stopped.status == score_store.FAILED and len(stopped.done) == 1 < len(stopped.partitions)
    finally:
        engine.dispose()
    resumed = rescore(data, url, champion.settings, RescoreConfig(resume=True))
    assert resumed.run_id == "halfway" and resumed.partitions_run_now == len(stopped.partitions) - 1
    reference = in_memory_scores(crm, champion.core(), AS_OF)
    before = stored_scores(crm)
    np.testing.assert_array_equal(before["lead_id"].to_numpy(), reference.lead_id)
    assert (before["run_id"] == "halfway").all()

    lost = before["lead_id"].iloc[::25].tolist()
    delete_scores(crm, lost)
    since = LATER - pd.Timedelta(days=10)
    summary = rescore(data, url, champion.settings, RescoreConfig(partition_leads=PARTITION_LEADS, as_of=LATER,
                                                                  changed_since=since, run_id="incremental"))
    check_unscored_leads_were_scored(crm, champion, summary, "incremental", set(before["lead_id"]), lost, since, LATER)
    assert not SCORE_TABLES & _tables(url, "public") and not SCORE_TABLES & _tables(url, "crm_b")


@pytest.mark.postgres
def test_a_schema_missing_from_the_scores_database_is_refused_by_name(postgres_url: str, champion: Champion) -> None:
    make_lead_db(postgres_url, n_leads=200)
    data = _data(postgres_url, "nowhere")
    with pytest.raises(ValueError, match="schema 'nowhere'"):
        rescore(data, postgres_url, champion.settings, RescoreConfig(as_of=AS_OF))
    assert not SCORE_TABLES & _tables(postgres_url, "public")


def test_sqlite_takes_main_as_its_schema_and_refuses_any_other(sqlite_url: str, champion: Champion) -> None:
    """``main`` qualifies every statement, the ADBC commit's too (other names: tests/unit/test_contract_config)."""
    make_lead_db(sqlite_url, n_leads=400)
    summary = rescore(_data(sqlite_url, "main"), sqlite_url, champion.settings,
                      RescoreConfig(partition_leads=PARTITION_LEADS, as_of=AS_OF))
    stored = stored_scores(sqlite_url)
    assert summary.scored == len(stored) > 0 and (stored["run_id"] == summary.run_id).all()
    assert len(top_leads(sqlite_url, 2, "main")) == 2
    with pytest.raises(ValueError, match="SQLite"):  # PostgreSQL source's schema, scores into a SQLite --db
        score_store.in_schema(sa.create_engine(sqlite_url), "crm")
    assert sql_data_config(sqlite_url).source.db_schema is None


@pytest.mark.postgres
def test_a_table_missing_from_the_sources_schema_names_the_schema(two_projects: str) -> None:
    from features.readers import SqlDatabase

    with SqlDatabase(two_projects, "crm") as database, pytest.raises(ValueError, match="'lead' not found in schema 'crm'"):
        database.table("lead")
