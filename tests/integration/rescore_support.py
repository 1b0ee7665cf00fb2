"""Shared helpers of the rescoring tests: a small exported champion and a synthetic lead database."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

from features.build import scoring_matrix
from features.loading import load_crm
from leadscore.synth import SynthConfig, iter_chunks, write_synthetic
from serving import score_store
from serving.core import ScoreBatch, ScoringConfig, ScoringCore
from serving.loader import ServingSettings, load_exported
from serving.rescore import data_config_for, sql_data_config
from tests.serving_fixtures import (
    MODEL_NAME,
    export_champion,
    export_time_to_close,
    train_small_champion,
    train_small_time_to_close,
)

AS_OF = pd.Timestamp("2026-05-01")
LATER = pd.Timestamp("2026-06-01")
N_LEADS = 1200
PARTITION_LEADS = 300
# columns that must be identical between two runs with the same as_of and model
VALUE_COLUMNS = ["lead_id", "score", "probability", "grade", "mql", "base_score", "fit_score", "engagement_score",
                 "lifecycle_score", "p_close_30d", "p_close_60d", "p_close_90d", "median_days", "reasons",
                 "model_name", "model_version", "time_to_close_version", "as_of"]
TIME_TO_CLOSE_VERSION = "3"


@dataclass
class Champion:
    models_dir: Path
    settings: ServingSettings
    version: str

    def core(self, top_k: int = 3) -> ScoringCore:
        core, _ = load_exported(self.models_dir, MODEL_NAME, ScoringConfig(top_k=top_k))
        return core


def make_champion(folder: Path, version: str = "7") -> Champion:
    """Both champions exported (sales readiness ``version``, time to close TIME_TO_CLOSE_VERSION)."""
    trained = train_small_champion(1200, seed=1, max_rounds=60)
    models_dir = folder / "models"
    export_champion(trained.model, models_dir, version)
    export_time_to_close(train_small_time_to_close(1200, seed=1), models_dir, TIME_TO_CLOSE_VERSION)
    return Champion(models_dir, ServingSettings(model_dir=models_dir), version)


def make_lead_db(url: str, n_leads: int = N_LEADS, seed: int = 11) -> None:
    write_synthetic(SynthConfig(n_leads=n_leads, seed=seed, events_per_lead=20), url, "sql", overwrite=True)


# their bytewise order ('B2' 'Z' '_x' 'a10' 'b1') is not a locale's ('_x' 'a10' 'b1' 'B2' 'Z')
TEXT_IDS_OUT_OF_LOCALE_ORDER = ["a10", "B2", "b1", "_x", "Z", "é1", "0007"]
TEXT_N_LEADS = 600


def text_id(k: int) -> str:
    """The text id of the k-th lead (0-based): tricky ones first, then CRM-like forms of every kind."""
    if k < len(TEXT_IDS_OUT_OF_LOCALE_ORDER):
        return TEXT_IDS_OUT_OF_LOCALE_ORDER[k]
    forms = (f"a-{k}", f"B-{k}", f"b-{k}", f"_x-{k}", f"Z-{k}", f"{k:07d}", f"é-{k}",
             str(uuid.uuid5(uuid.NAMESPACE_OID, str(k))), f"00Q5g00000{k:08X}")
    return forms[k % len(forms)]


def make_text_lead_db(url: str, collation: str | None = None, n_leads: int = TEXT_N_LEADS,
                      id_type: sa.types.TypeEngine | None = None) -> list[str]:
    """A synthetic CRM whose lead ids are text (TEXT columns, of ``collation``; or of ``id_type``, such as
    PostgreSQL's UUID, the ids then UUIDs); returns the ids as text."""
    chunks = list(iter_chunks(SynthConfig(n_leads=n_leads, seed=11, events_per_lead=20)))
    tables = {name: pd.concat([c.tables()[name] for c in chunks], ignore_index=True)
              for name in ("leads", "events", "outcomes")}
    mapping = {i: text_id(k) if id_type is None else str(uuid.uuid5(uuid.NAMESPACE_OID, str(k)))
               for k, i in enumerate(sorted(tables["leads"]["lead_id"].unique()))}
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for name, frame in tables.items():
            frame = frame.assign(lead_id=frame["lead_id"].map(mapping))
            frame.to_sql(name, conn, index=False, dtype={"lead_id": id_type or sa.Text(collation=collation)})
    engine.dispose()
    return list(mapping.values())


def in_memory_scores(url: str, core: ScoringCore, as_of: pd.Timestamp, top_k: int = 3) -> ScoreBatch:
    """The reference: whole CRM through the contract, scoring_matrix, the scoring core directly."""
    crm, _ = load_crm(data_config_for(sql_data_config(url), core.spec))
    ids, matrix = scoring_matrix(crm, core.spec, as_of)
    order = np.argsort(ids, kind="stable")
    return core.score_matrix(ids[order], matrix[order], top_k)


def stored_scores(url: str) -> pd.DataFrame:
    """The ``lead_scores`` table of a scores database."""
    engine = sa.create_engine(url)
    try:
        return score_store.read_scores(engine)
    finally:
        engine.dispose()


def changed_leads(url: str, since: pd.Timestamp, as_of: pd.Timestamp) -> set[int]:
    """Ids of the leads created, or with an event, in ``[since, as_of)`` (what an incremental run calls
    changed; the synthetic leads table has no ``updated_at``)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            created = pd.read_sql("SELECT lead_id, created_at FROM leads", conn, parse_dates=["created_at"])
            active = pd.read_sql("SELECT lead_id, occurred_at FROM events", conn, parse_dates=["occurred_at"])
    finally:
        engine.dispose()
    window = (active["occurred_at"] >= since) & (active["occurred_at"] < as_of)
    return set(created.loc[created["created_at"] >= since, "lead_id"]) | set(active.loc[window, "lead_id"])


def delete_scores(url: str, lead_ids: list[int]) -> None:
    """Remove the stored scores of some leads (as if they had never been scored)."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(score_store.lead_scores.delete().where(score_store.lead_scores.c.lead_id.in_(lead_ids)))
    finally:
        engine.dispose()


def check_unscored_leads_were_scored(url: str, champion: Champion, summary: object, run_id: str, before: set[int],
                                     lost: list[int], since: pd.Timestamp, as_of: pd.Timestamp) -> None:
    """After a full run (its leads ``before``), the deletion of the scores of ``lost`` and an incremental run
    from ``since``: the run scored exactly the changed open leads and those without a stored score."""
    open_leads = set(in_memory_scores(url, champion.core(0), as_of, top_k=0).lead_id.tolist())
    changed = changed_leads(url, since, as_of) & open_leads
    never = open_leads - (before - set(lost)) - changed  # created since the full run, too
    assert summary.never_scored == len(never) > 0 and summary.unchanged > 0  # type: ignore[attr-defined]
    assert summary.scored == len(changed) + summary.never_scored  # type: ignore[attr-defined]
    after = stored_scores(url)
    assert set(after.loc[after["run_id"] == run_id, "lead_id"]) == changed | never
