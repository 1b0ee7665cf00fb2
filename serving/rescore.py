"""Batch rescoring of the lead database: partitions by lead-id range, one transaction each, resumable.

A run (:func:`rescore`):

1. loads the champion (the scoring core shared with the endpoint) and fixes ``as_of`` (default now,
   UTC); both are stored in ``lead_score_runs`` so a resumed run uses the same ones;
2. splits the lead base into partitions of ``partition_leads`` consecutive lead ids (integers, or text
   in bytewise order: :func:`plan_partitions`) and records them, pending, in ``lead_score_run_partitions``;
3. per partition (:func:`score_partition`): reads that range's leads, events and outcomes (only the
   columns the model uses: :func:`scoring_columns`) through the data contract (strict: a violation
   stops the run; quarantine: bad rows go to
   ``<quarantine_dir>/rescore-<run>/part-<k>/`` and are counted), builds the features at ``as_of``
   with :func:`features.build.scoring_matrix` (open leads only: created before as_of, not
   converted), scores them with :meth:`serving.core.ScoringCore.score_matrix` (top-k reasons);
4. writes each partition with :func:`serving.score_store.commit_partition` (scores upsert + history +
   checkpoint in ONE transaction) on a thread of its own, overlapping with the scoring of the next
   partitions, reports progress, and finally marks the run finished with its summary.

``resume=True`` continues the latest unfinished run (or ``run_id``) without redoing committed
partitions. Incremental mode (``changed_since``): only leads with an event at or after that instant,
a lead ``updated_at`` at or after it (when the leads table has such a column), or created at or
after it are scored (features still see their whole history), and so are the leads whose stored score
came from other models than the run's (counted as ``model_changed``: ``lead_scores`` never mixes models)
and the open leads with no stored score at all (counted as ``never_scored``: leads backfilled with an old
``created_at``, a first incremental run on an empty store); the others count as ``unchanged``. The driver
reads the ids of the stored scores once per call (a resumed run too) and hands each partition its slice.

Execution is pluggable (:class:`PartitionExecutor`): in this process (:class:`LocalExecutor`), in
this process plus spawned worker processes (:class:`ProcessExecutor`, the default for bases of
:data:`AUTO_PROCESSES_MIN_LEADS` lead ids or more: one process per core), or on Dask workers with
:mod:`serving.rescore_dask`; commits always happen here, on the driver, through the same code.

Speed (``benchmarks/rescore.py``): only the columns the model uses are read, through the fast
paths of :mod:`features.fast_sql` (the same frames as SQLAlchemy + pandas with far less per-row
Python work; SQLite through :mod:`features.sqlite_arrow`), the next partition is read and validated
ahead on a thread while this one is scored, commits run on a thread of their own (a partition's
rows are staged in bulk and moved in place by SQL, :mod:`serving.score_store`), and large bases are
scored on every core. On one process the scoring thread (features, SHAP, reasons) is the critical path.
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import json
import logging
import multiprocessing
import os
import queue
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field

from features import sqlite_arrow
from features.build import instant_ns, scoring_matrix
from features.contract import (
    EMPTY_TABLE,
    QUARANTINE,
    ContractError,
    ContractViolation,
    DataConfig,
    ValidationReport,
    validate_crm,
)
from features.loading import set_aside_rows_without_lead_id
from features.readers import (
    SqlDatabase,
    check_sqlite_file,
    lead_id_range_text,
    lead_id_ranges,
    read_crm,
    read_lead_ids,
)
from features.schema import (
    CREATED_AT,
    EVENT_TYPE,
    EVENTS,
    LEAD_ID,
    LEADS,
    OCCURRED_AT,
    OPTIONAL_COLUMNS,
    OUTCOMES,
    CRMData,
    naive_utc,
    to_numbers,
    utc_now,
)
from features.spec import FLAT_KIND, FeatureSpec
from serving.core import GRADES, ScoreBatch, ScoringCore, unseen_text
from serving.loader import ServingSettings, load_exported, load_registered
from serving.schemas import FUTURE_TOLERANCE
from serving.score_store import (
    FAILED,
    FINISHED,
    LEAD_SCORE_RUNS,
    LEAD_SCORES,
    RUNNING,
    SCORE_COLUMNS,
    PartitionCounts,
    PartitionSpec,
    RunRecord,
    commit_partition,
    count_history,
    count_run_scores,
    create_run,
    create_score_tables,
    in_schema,
    largest_changes,
    lead_score_runs,
    lead_scores,
    load_run,
    partition_counts,
    read_run_scores,
    schema_of,
    set_run_status,
    stored_lead_ids,
    stored_text_ids,
    top_scores,
)

logger = logging.getLogger("leadscore.rescore")
UNSEEN_SHOWN = 10  # unseen values kept per column in a run's summary
# an as-of this many days after the base's latest lead or event: most likely a historical export scored "now"
STALE_AS_OF_DAYS = 365

UPDATED_AT = "updated_at"  # optional lead column used by incremental mode

# progress(lead_ids_done, total_lead_ids_of_the_run, partition_index): per committed partition; a resumed
# run first reports the lead ids of the partitions committed before this call, with partition index -1
RescoreProgress = Callable[[int, int, int], None]
AUTO_PROCESSES_MIN_LEADS = 250_000  # below this, a worker's start-up (~5 s CPU of imports) costs more than it saves
SQLITE_BUSY_SECONDS = 120.0  # readers and the committing writer wait for each other's locks this long


class RescoreConfig(BaseModel):
    """Parameters of a rescoring run (loaded once at the edge)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    partition_leads: int = Field(50_000, ge=1, description="lead ids per partition")
    as_of: datetime | None = Field(None, description="features as of this instant (naive UTC); default now")
    changed_since: datetime | None = Field(None, description="incremental: only leads changed since then")
    top_k: int = Field(3, ge=0, le=50, description="reasons per lead")
    run_id: str | None = Field(None, description="id of a new run, or of the run to resume")
    resume: bool = Field(False, description="continue the latest unfinished run (or run_id)")
    processes: int | None = Field(
        None, ge=1, le=256,
        description="processes scoring partitions, this one included (1: this one only); default: one per "
                    f"core when the run has several partitions and at least {AUTO_PROCESSES_MIN_LEADS:,} lead ids",
    )


class WorkerDiedError(RuntimeError):
    """A process scoring partitions ended abruptly (killed, e.g. by the system out of memory)."""

    def __init__(self, partition: int | None) -> None:
        stays = "the run is marked failed, partitions committed before stay: --resume continues it"
        if partition is None:  # most often its start raised (the model does not load there, an unguarded script)
            super().__init__("a worker process failed to start (its error is printed above, if it had one; else "
                             f"it was killed, e.g. by the system out of memory); {stays}")
            return
        # a broken pool fails every partition in flight: the one named may be another worker's
        super().__init__(f"a worker process died while scoring partitions (partition {partition} among them; "
                         f"killed, e.g. by the system out of memory); {stays} (fewer --processes / --workers use "
                         "less memory)")


@dataclass
class PartitionResult:
    """Scores of one partition (columns of ``lead_scores``) and its counts."""

    partition: PartitionSpec
    scores: pd.DataFrame
    counts: PartitionCounts
    seconds: float = 0.0
    stages: dict[str, float] = field(default_factory=dict)  # seconds per stage (read, features, score, ...)
    pid: int = field(default_factory=os.getpid)  # the process that scored the partition
    # values the model never saw, scored as missing: categorical column -> values, "event_type" -> types
    unseen: dict[str, list[str]] = field(default_factory=dict)
    # the partition's latest lead creation or event before the as-of (ns since the epoch; None: neither)
    latest_activity_ns: int | None = None


@dataclass
class RescoreSummary:
    """What a run did (over all its committed partitions, resumed ones included)."""

    run_id: str
    status: str
    as_of: datetime
    model_name: str
    model_version: str
    partitions: int
    partitions_run_now: int
    leads: int
    scored: int
    written: int  # scores that went into lead_scores: fewer when a run of a later as-of kept some out
    skipped_converted: int
    skipped_not_created: int
    unchanged: int
    model_changed: int  # incremental: rescored because their stored score came from another model
    never_scored: int  # incremental: scored although unchanged, having no stored score at all
    quarantined: int  # distinct lead ids
    mql: int
    grades: dict[str, int]
    history_rows: int
    seconds: float
    largest_increases: list[dict[str, Any]] = field(default_factory=list)
    largest_decreases: list[dict[str, Any]] = field(default_factory=list)
    time_to_close_model: str | None = None  # "name vN" of the time-to-close champion this call scored with
    unseen: dict[str, list[str]] = field(default_factory=dict)  # over the partitions run now (a few each)
    # the latest lead creation or event before the as-of in the partitions run now (None: none run now)
    latest_activity: datetime | None = None

    @property
    def leads_per_second(self) -> float:
        return self.scored / self.seconds if self.seconds > 0 else float("nan")

    def as_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["as_of"] = pd.Timestamp(self.as_of).isoformat()
        if self.latest_activity is not None:
            out["latest_activity"] = pd.Timestamp(self.latest_activity).isoformat()
        return out

    @property
    def days_since_latest_activity(self) -> float | None:
        """Days from the base's latest lead creation or event (in the partitions run now) to the as-of."""
        if self.latest_activity is None:
            return None
        return (pd.Timestamp(self.as_of) - pd.Timestamp(self.latest_activity)).total_seconds() / 86400


# ----- champion --------------------------------------------------------------------------------
def load_scoring_core(
    settings: ServingSettings, version: str | None = None, top_k: int = 3, closing_version: str | None = None
) -> ScoringCore:
    """The champions' scoring core (exported folders or registry). ``version`` (a resumed run): the
    sales-readiness version is pinned to it and the time-to-close model to ``closing_version`` (None:
    the run scored without one, so the resumed part does too)."""
    scoring = settings.scoring.model_copy(update={"top_k": top_k})
    closing_name = settings.time_to_close_name if version is None or closing_version is not None else ""
    if settings.model_dir is not None:
        core, _ = load_exported(settings.model_dir, settings.model_name, scoring, closing_name)
        pinned = [(what, want, got) for what, want, got in (
            ("model", version, core.info.version),
            ("time-to-close model", closing_version, core.closing_info.version if core.closing_info else None),
        ) if want is not None and want != got]
        if pinned:
            raise ValueError("; ".join(f"run was scored with {what} version {want}, but {settings.model_dir} holds "
                                       f"version {got}" for what, want, got in pinned) + "; resume with the same models")
        return core
    core, _ = load_registered(settings.resolved_tracking_uri, settings.model_name, settings.alias, scoring, version,
                              closing_name=closing_name, closing_version=closing_version)
    return core


# ----- data ------------------------------------------------------------------------------------
def with_model_markers(data: DataConfig, spec: FeatureSpec) -> DataConfig:
    """``data`` with the missing markers of the model's contract (``spec.missing_values_``) added to its own,
    so that its tables read as the model's training data and the endpoint's leads were (a project file or a
    bare ``--db`` that does not list them too)."""
    markers = list(dict.fromkeys([*data.missing_values, *sorted(spec.missing_markers)]))
    return data.model_copy(update={"missing_values": markers})


def data_config_for(data: DataConfig, spec: FeatureSpec) -> DataConfig:
    """``data`` with exactly the model's lead attributes, typed as in training (in every partition);
    other lead columns are neither read (:func:`scoring_columns`) nor inferred. The project's
    ``attributes.non_negative`` rule stays for the attributes the model uses. The mappings of the
    optional event and outcome columns go too: they are not read, so not checked for presence. The
    missing markers of the model's contract are added to ``data``'s (:func:`with_model_markers`)."""
    numeric = list(spec.numeric_columns_)
    attributes = data.attributes.model_copy(update={
        "categorical": spec.categorical_columns, "numeric": numeric, "ignore": [],
        "infer_undeclared": False, "non_negative": [c for c in data.attributes.non_negative if c in numeric],
    })
    columns = data.columns.model_copy(update={
        table: {k: v for k, v in getattr(data.columns, table).items() if k not in OPTIONAL_COLUMNS[table]}
        for table in (EVENTS, OUTCOMES)})
    return with_model_markers(data, spec).model_copy(update={"attributes": attributes, "columns": columns})


def scoring_columns(spec: FeatureSpec) -> dict[str, list[str]]:
    """Columns a rescore reads besides each table's required ones: the model's lead attributes and
    ``updated_at`` (incremental mode); no optional event or outcome column (channel, campaign, value,
    amount: no feature uses them), so a bad value there does not hold a lead back."""
    return {LEADS: [*spec.fit_columns, UPDATED_AT], EVENTS: [], OUTCOMES: []}


def plan_partitions(lead_ids: np.ndarray, partition_leads: int) -> list[PartitionSpec]:
    """Half-open id ranges of ``partition_leads`` consecutive existing ids each, covering them all (text ids:
    in bytewise order, the last range open-ended)."""
    ranges = lead_id_ranges(lead_ids, partition_leads)
    if ranges and isinstance(ranges[0][0], str):
        n = len(lead_ids)
        return [PartitionSpec(i, a, b, n_ids=min(partition_leads, n - i * partition_leads))
                for i, (a, b) in enumerate(ranges)]
    return [PartitionSpec(i, a, b) for i, (a, b) in enumerate(ranges)]


def changed_lead_mask(crm: CRMData, since_ns: int, as_of_ns: int) -> np.ndarray:
    """Per lead row of ``crm.leads``: created, updated (``updated_at``) or with an event in ``[since, as_of)``."""
    leads = crm.leads
    changed = (leads[CREATED_AT].to_numpy().view(np.int64) >= since_ns)
    if UPDATED_AT in leads.columns:
        updated = pd.to_datetime(leads[UPDATED_AT], errors="coerce", utc=True).dt.tz_localize(None)
        changed |= (updated >= pd.Timestamp(since_ns)).to_numpy(dtype=bool)
    events = crm.events
    occurred = events[OCCURRED_AT].to_numpy().view(np.int64)
    recent = events[LEAD_ID][(occurred >= since_ns) & (occurred < as_of_ns)]
    changed |= leads[LEAD_ID].isin(recent.unique()).to_numpy()
    return changed


# ----- one partition ----------------------------------------------------------------------------
def unseen_values_of(crm: CRMData, spec: FeatureSpec, lead_ids: np.ndarray) -> dict[str, np.ndarray]:
    """``FeatureSpec.unseen_values`` of the leads ``lead_ids`` (in that order), for their reasons."""
    texts = spec.unseen_values(crm.leads)
    if not texts:
        return {}
    rows = pd.Index(crm.leads[LEAD_ID]).get_indexer(lead_ids)  # the contract leaves one row per lead
    return {c: values[rows] for c, values in texts.items()}


def reasons_json(batch: ScoreBatch) -> np.ndarray:
    """Top-k reasons of each lead as a JSON array string (what ``reasons_of`` returns), built column-wise."""
    n, k = len(batch), batch.top_k
    if n == 0:
        return np.empty(0, dtype=object)
    if k == 0:
        return np.full(n, "[]", dtype=object)
    heads = [
        "{" + f'"feature": {json.dumps(c)}, "label": {json.dumps(lab)}, "family": {json.dumps(f)}, "value": '
        for c, lab, f in zip(batch.columns, batch.labels, batch.families, strict=True)
    ]
    categorical = np.zeros(len(batch.columns), dtype=bool)
    categorical[list(batch.vocab)] = True
    slots = []
    for slot in range(k):
        j = batch.reason_feature[:, slot]
        raw = batch.reason_value[:, slot]
        value = np.full(n, "null", dtype=object)
        present = ~np.isnan(raw)
        numeric = present & ~categorical[j]
        if numeric.any():
            value[numeric] = json_numbers(raw[numeric])
        for col, vocab in batch.vocab.items():
            rows = present & (j == col)
            if rows.any():
                encoded = np.array([json.dumps(v) for v in vocab], dtype=object)
                value[rows] = encoded[raw[rows].astype(np.int64)]
        for col, texts in batch.unseen.items():  # a category the model never saw: its text, marked
            for i in np.flatnonzero(~present & (j == col)).tolist():
                if texts[i] is not None:
                    value[i] = json.dumps(unseen_text(texts[i]))
        slots.append([f'{heads[c]}{v}, "impact": {impact}}}' for c, v, impact
                      in zip(j.tolist(), value.tolist(), json_numbers(batch.reason_impact[:, slot]), strict=True)])
    return np.array(["[" + ", ".join(parts) + "]" for parts in zip(*slots, strict=True)], dtype=object)


def json_numbers(values: np.ndarray) -> list[str]:
    """Floats as JSON numbers (``repr``: exact); infinite and NaN ones, which JSON lacks, as null."""
    texts = list(map(repr, values.tolist()))
    for i in np.flatnonzero(~np.isfinite(values)).tolist():
        texts[i] = "null"
    return texts


def scores_frame(batch: ScoreBatch, as_of: datetime, run_id: str, scored_at: datetime) -> pd.DataFrame:
    """Rows of ``lead_scores`` from a score batch (time-to-close columns NULL without that model)."""
    n = len(batch)
    return pd.DataFrame({
        LEAD_ID: _lead_id_array(batch.lead_id),
        "score": batch.score.astype(np.int64),
        "probability": batch.probability,
        "grade": batch.grade,
        "mql": batch.mql.astype(bool),
        "base_score": batch.base_score,
        "fit_score": batch.fit_score,
        "engagement_score": batch.engagement_score,
        "lifecycle_score": batch.lifecycle_score,
        "horizon_days": np.full(n, np.nan if batch.horizon_days is None else batch.horizon_days),
        **batch.closing_columns(),
        "reasons": reasons_json(batch),
        "model_name": batch.model.name,
        "model_version": batch.model.version,
        "time_to_close_version": None if batch.closing_model is None else batch.closing_model.version,
        "scored_at": pd.Timestamp(scored_at),
        "as_of": pd.Timestamp(as_of),
        "run_id": run_id,
    })


def _lead_id_array(lead_ids: Any) -> np.ndarray:
    """Lead ids as int64, or as objects (str) when text."""
    ids = np.asarray(lead_ids)
    return ids.astype(object) if ids.dtype.kind in "OUS" else ids.astype(np.int64)


@dataclass
class PreparedPartition:
    """One lead-id range read and validated by the contract (what :func:`score_partition` goes on from)."""

    crm: CRMData
    report: ValidationReport
    stages: dict[str, float]  # seconds: read, contract


def partition_text(partition: PartitionSpec) -> str:
    """``partition 3 (lead ids 901 to 1200)``: a partition and its range."""
    return f"partition {partition.index} ({lead_id_range_text(partition.start, partition.stop)})"


def prepare_partition(data: DataConfig, spec: FeatureSpec, partition: PartitionSpec, run: RunRecord,
                      database: SqlDatabase | None = None) -> PreparedPartition:
    """Read one lead-id range and validate it through the contract (quarantined rows go to the run's
    ``part-<k>`` folder): the part of :func:`score_partition` that the local executor runs ahead."""
    if data.policy == QUARANTINE and data.quarantine_dir is not None:
        folder = Path(data.quarantine_dir) / f"rescore-{run.run_id}" / f"part-{partition.index:05d}"
        data = data.model_copy(update={"quarantine_dir": folder})
    began = time.perf_counter()
    tables = read_crm(data, lead_id_range=(partition.start, partition.stop), database=database,
                      used_columns=scoring_columns(spec))  # only the columns the model uses
    read = time.perf_counter()
    try:
        crm, report = validate_crm(tables, data, passthrough=(UPDATED_AT,))  # updated_at: for --changed-since
    except ContractError as exc:  # its rows are counted within the partition: named, with its lead ids
        raise exc.located(partition_text(partition)) from None
    return PreparedPartition(crm, report, {"read": read - began, "contract": time.perf_counter() - read})


def score_partition(
    data: DataConfig,
    core: ScoringCore,
    partition: PartitionSpec,
    run: RunRecord,
    scored_at: datetime | None = None,
    database: SqlDatabase | None = None,
    prepared: PreparedPartition | None = None,
) -> PartitionResult:
    """Read one lead-id range through the contract, build features at the run's as_of, score it.

    ``database``: an open :class:`~features.readers.SqlDatabase` on the source to reuse across partitions.
    ``prepared``: that range as already read and validated by :func:`prepare_partition`.
    """
    prepared = prepared or prepare_partition(data, core.spec, partition, run, database)
    crm, report, stages = prepared.crm, prepared.report, dict(prepared.stages)
    del prepared
    began = mark = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        stages[stage], mark = now - mark, now

    as_of_ns = instant_ns(pd.Timestamp(run.as_of))
    n = len(crm.leads)
    lead_ids, matrix = scoring_matrix(crm, core.spec, as_of_ns, eligible_only=True)
    created = crm.leads[CREATED_AT].to_numpy().view(np.int64) < as_of_ns
    latest_activity_ns = latest_before(as_of_ns, crm.leads[CREATED_AT], crm.events[OCCURRED_AT])
    not_created = int((~created).sum())
    # created by the as-of but not eligible: converted (and not recycled since); with the quarantined
    # leads their stored scores are deleted (else a converted lead keeps heading the top list)
    converted = np.setdiff1d(crm.leads[LEAD_ID].to_numpy()[created], lead_ids)
    quarantined = np.unique(_lead_id_array([i for i in report.quarantined_lead_ids
                                            if isinstance(i, str) == partition.text and partition.holds(i)]))
    counts = PartitionCounts(leads=n, skipped_not_created=not_created,
                             skipped_converted=n - len(lead_ids) - not_created,
                             quarantined=len(quarantined),  # a lead id given twice is one lead
                             retired_ids=tuple(i if isinstance(i, str) else int(i)
                                               for i in np.union1d(converted, quarantined).tolist()))
    unseen = {c: v[:UNSEEN_SHOWN] for c, v in core.spec.unseen_categories(crm.leads).items()}
    unseen_rows = unseen_values_of(crm, core.spec, lead_ids) if unseen else {}
    if unknown_types := core.spec.unseen_event_types(crm.events):
        unseen[EVENT_TYPE] = unknown_types[:UNSEEN_SHOWN]
    if run.changed_since is not None and len(lead_ids):
        changed_ids = crm.leads[LEAD_ID].to_numpy()[changed_lead_mask(crm, instant_ns(pd.Timestamp(run.changed_since)), as_of_ns)]
        keep = np.isin(lead_ids, changed_ids)
        other_model = ~keep & np.isin(lead_ids, _lead_id_array(partition.other_model_ids))
        counts.model_changed = int(other_model.sum())
        keep |= other_model
        never_scored = ~keep & ~np.isin(lead_ids, _lead_id_array(partition.stored_ids))
        counts.never_scored = int(never_scored.sum())
        keep |= never_scored
        counts.unchanged = int((~keep).sum())
        lead_ids, matrix = lead_ids[keep], matrix[keep]
        unseen_rows = {c: texts[keep] for c, texts in unseen_rows.items()}
    del crm
    lap("features")
    scored_at = scored_at or utc_now()
    if len(lead_ids):
        batch = core.score_matrix(lead_ids, matrix, run.top_k, unseen_rows)
    else:
        batch = core.score_matrix(np.empty(0, dtype=np.int64), np.empty((0, len(core.columns))), 0)
    lap("score")
    frame = scores_frame(batch, run.as_of, run.run_id, scored_at)
    counts.scored = len(frame)
    counts.mql = int(frame["mql"].sum())
    counts.grades = {g: int(c) for g, c in frame["grade"].value_counts().items()}
    lap("reasons")
    seconds = stages["read"] + stages["contract"] + time.perf_counter() - began
    return PartitionResult(partition, frame, counts, seconds, stages, unseen=unseen,
                           latest_activity_ns=latest_activity_ns)


def latest_before(as_of_ns: int, *instants: pd.Series) -> int | None:
    """The latest of the timestamps ``instants`` (datetime64[ns] columns, NaT ignored) before ``as_of_ns``."""
    latest = None
    for column in instants:
        values = column.to_numpy().view(np.int64)
        values = values[(values != np.iinfo(np.int64).min) & (values < as_of_ns)]
        if len(values):
            latest = int(values.max()) if latest is None else max(latest, int(values.max()))
    return latest


def open_source_database(data: DataConfig) -> SqlDatabase | None:
    """A :class:`SqlDatabase` on a SQL source (one engine, tables reflected once), else None."""
    if data.source.kind != "sql" or not data.source.url:
        return None
    return SqlDatabase(score_engine(data.source.url), data.source.db_schema, data.source.chunksize)


def score_engine(url: str, schema: str | None = None) -> sa.Engine:
    """An engine for rescoring, its score tables in ``schema`` (:func:`serving.score_store.in_schema`): on
    SQLite, readers and the committing writer wait for each other's locks (:data:`SQLITE_BUSY_SECONDS`)
    instead of failing with "database is locked"."""
    if sa.engine.make_url(url).get_backend_name() == "sqlite":
        engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_SECONDS})
    else:
        engine = sa.create_engine(url)
    try:
        return in_schema(engine, schema)
    except ValueError:
        engine.dispose()
        raise


def score_schema(data: DataConfig) -> str | None:
    """The schema of a project's score tables: its SQL source's ``db_schema`` (None: the default schema),
    so the scores sit beside the CRM tables they come from."""
    return data.source.db_schema if data.source.kind == "sql" else None


# ----- execution --------------------------------------------------------------------------------
class PartitionExecutor(Protocol):
    """Runs :func:`score_partition` over partitions and yields results as they finish (any order).

    ``map`` is a generator: a failed run closes it, and its ``finally`` stops the reads and workers."""

    def map(self, data: DataConfig, core: ScoringCore, run: RunRecord,
            partitions: list[PartitionSpec]) -> Generator[PartitionResult, None, None]: ...


class LocalExecutor:
    """Partitions one after the other in this process; the next partition is read and validated on a
    thread of its own while this one is scored (the SQL drivers read in C), so memory holds two
    partitions at most."""

    def map(self, data: DataConfig, core: ScoringCore, run: RunRecord,
            partitions: list[PartitionSpec]) -> Iterator[PartitionResult]:
        database = open_source_database(data)
        reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rescore-read")
        try:
            ahead: Future[PreparedPartition] | None = None
            for i, partition in enumerate(partitions):
                prepared = ahead.result() if ahead is not None else \
                    prepare_partition(data, core.spec, partition, run, database)
                ahead = None
                if i + 1 < len(partitions):
                    ahead = reader.submit(prepare_partition, data, core.spec, partitions[i + 1], run, database)
                yield score_partition(data, core, partition, run, database=database, prepared=prepared)
                del prepared
        finally:
            reader.shutdown(wait=True, cancel_futures=True)
            if database is not None:
                sqlite_arrow.dispose(database.engine)


# State of a worker process of ProcessExecutor (set once by its initializer, in the worker only).
_WORKER: dict[str, Any] = {}


def _start_worker(parts: dict[str, Any], data: DataConfig) -> None:
    _WORKER["core"] = ScoringCore(**parts)
    _WORKER["database"] = open_source_database(data)


def _worker_ready() -> None:
    """A no-op task: returns once the worker has started (its initializer has run)."""


def _score_in_worker(data: DataConfig, partition: PartitionSpec, run: RunRecord) -> PartitionResult:
    return score_partition(data, _WORKER["core"], partition, run, database=_WORKER["database"])


class ProcessExecutor:
    """Partitions scored by ``processes`` processes: this one and ``processes - 1`` workers.

    Each worker (see :func:`worker_context`) loads the model once, keeps one connection to the source
    and scores whole partitions (read, contract, features, SHAP with one thread: the processes are the
    parallelism). A worker gets its next partition as soon as it returns one (no waiting for this
    process); this process hands results over for commit and, whenever none is ready, scores the next
    partition itself, so work starts at once while the workers start up. One partition per worker is
    in flight, so memory stays bounded by a few partitions whatever the size of the base.
    """

    def __init__(self, processes: int, help_locally: bool = True) -> None:
        if processes < 1:
            raise ValueError(f"processes must be >= 1, got {processes}")
        self.processes = processes
        self.help_locally = help_locally  # False: this process only commits (all partitions go to workers)

    def map(self, data: DataConfig, core: ScoringCore, run: RunRecord,
            partitions: list[PartitionSpec]) -> Iterator[PartitionResult]:
        workers = min(self.processes - (1 if self.help_locally else 0), len(partitions) - 1)
        if workers < 1:
            yield from LocalExecutor().map(data, core, run, partitions)
            return
        scoring = core.config.model_copy(update={"explain_threads": 1})
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=worker_context(), initializer=_start_worker,
                                   initargs=({**core.parts(), "config": scoring}, data))
        todo = list(reversed(partitions))
        lock = threading.Lock()
        finished: queue.Queue[Future[PartitionResult]] = queue.Queue()
        outstanding = [0]
        running: dict[Future[PartitionResult], int] = {}  # partition index of each submitted future
        closing = threading.Event()

        def feed(_: Future[PartitionResult] | None = None) -> None:
            """Give a worker the next partition (called again, in the pool's thread, when one returns)."""
            with lock:
                if not todo or closing.is_set():
                    return
                partition = todo.pop()
                outstanding[0] += 1
            try:
                future = pool.submit(_score_in_worker, data, partition, run)
            except RuntimeError:  # shut down meanwhile (the caller stopped)
                return
            with lock:
                running[future] = partition.index
            future.add_done_callback(finished.put)
            future.add_done_callback(feed)

        def started(future: Future[None]) -> None:
            """A worker is up: feed it (a start-up failure is raised to the caller like a failed partition)."""
            if future.cancelled():
                return
            if future.exception() is not None:
                with lock:
                    outstanding[0] += 1
                finished.put(future)  # type: ignore[arg-type]
                return
            feed()

        def start() -> None:
            # starting a worker blocks until it has unpickled the model (after its imports): not in this thread
            for _ in range(workers):
                if closing.is_set():
                    return
                try:
                    ready = pool.submit(_worker_ready)
                except RuntimeError:  # shut down meanwhile (the run ended before the workers were up)
                    return
                ready.add_done_callback(started)

        database = open_source_database(data)
        starter = threading.Thread(target=start, name="rescore-workers-start", daemon=True)
        try:
            starter.start()  # partitions go to workers once they are up; until then this process works
            while True:
                try:
                    future = finished.get_nowait()
                except queue.Empty:
                    with lock:
                        partition = todo.pop() if todo and self.help_locally else None
                        waiting = outstanding[0]
                    if partition is not None:  # nothing to commit: score the next partition here
                        yield score_partition(data, core, partition, run, database=database)
                        continue
                    if waiting == 0 and (self.help_locally or not todo):
                        break
                    future = finished.get()
                with lock:
                    outstanding[0] -= 1
                    index = running.pop(future, None)
                try:
                    result = future.result()
                except BrokenProcessPool as exc:
                    raise WorkerDiedError(index) from exc
                yield result
        finally:
            with lock:
                closing.set()
            starter.join()  # a run shorter than a worker's start-up waits for it here, then stops it cleanly
            pool.shutdown(wait=False, cancel_futures=True)
            if database is not None:
                sqlite_arrow.dispose(database.engine)


def worker_context() -> multiprocessing.context.BaseContext:
    """``spawn``: fresh interpreters (``fork`` is unsafe once LightGBM's OpenMP threads have run).

    As with any spawned process, a script that calls :func:`rescore` must guard its entry point with
    ``if __name__ == "__main__":`` (the workers import the main module).
    """
    return multiprocessing.get_context("spawn")


def default_processes(config: RescoreConfig, partitions: list[PartitionSpec]) -> int:
    """Worker processes for a run: ``config.processes``, else one per core for a large enough run."""
    if config.processes is not None:
        return config.processes
    leads = sum(p.span for p in partitions)
    if len(partitions) < 2 or leads < AUTO_PROCESSES_MIN_LEADS:
        return 1
    return max(1, min(os.cpu_count() or 1, len(partitions)))


FLAT_MODEL_REFUSED = ("model {name} version {version} was trained on a flat export (one row per lead, no dates): "
                      "a rescore builds CRM features (leads/events/outcomes) it has none of; score such leads "
                      "through the endpoint (leadscore serve, POST /score)")


def refuse_flat_model(core: ScoringCore) -> None:
    """A flat model has no CRM features to rescore a lead database with: refused before any run is recorded."""
    if core.spec.kind_ == FLAT_KIND:
        raise ValueError(FLAT_MODEL_REFUSED.format(name=core.info.name, version=core.info.version))


def _new_run(engine: sa.Engine, data: DataConfig, core: ScoringCore, config: RescoreConfig,
             text_store: bool | None = None) -> RunRecord:
    """Record a new run and its partitions; ``text_store``: whether the score tables hold text ids (None:
    no tables yet; they are made for the kind of the base's ids, or refused when of the other kind)."""
    as_of = naive_utc(config.as_of if config.as_of is not None else utc_now())
    changed = naive_utc(config.changed_since).to_pydatetime() if config.changed_since is not None else None
    if as_of > pd.Timestamp(utc_now()) + FUTURE_TOLERANCE:
        raise ValueError(f"as of {as_of:%Y-%m-%d %H:%M:%S} is in the future (now {utc_now():%Y-%m-%d %H:%M:%S} UTC)")
    _refuse_earlier_as_of(engine, as_of.to_pydatetime())
    run_id = config.run_id or f"{utc_now():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    # rows without a lead id are in no id range: refused (strict) or quarantined before any partition
    set_aside = set_aside_rows_without_lead_id(data if data.quarantine_dir is None else data.model_copy(
        update={"quarantine_dir": Path(data.quarantine_dir) / f"rescore-{run_id}"}))
    lead_ids = read_lead_ids(data, text_ids=True)
    if len(lead_ids) == 0 and not set_aside.get(LEADS):  # as the whole-table load refuses it (empty_table)
        raise ContractError([ContractViolation(LEADS, LEAD_ID, EMPTY_TABLE, 0, [], "the leads table has no rows")],
                            data.source.kind)
    text_ids = lead_ids.dtype == object
    if text_store is None or text_store != text_ids:  # made for these ids, or refused naming table and column
        create_score_tables(engine, text_ids=text_ids)
    run = RunRecord(
        run_id=run_id,
        status=RUNNING, as_of=as_of.to_pydatetime(), model_name=core.info.name, model_version=core.info.version,
        model_source=core.info.source, changed_since=changed, top_k=config.top_k, started_at=utc_now(),
        partitions=plan_partitions(lead_ids, config.partition_leads),
        time_to_close_version=None if core.closing_info is None else core.closing_info.version,
    )
    create_run(engine, run)
    return run


def rescore(
    data: DataConfig,
    scores_url: str,
    settings: ServingSettings | None = None,
    config: RescoreConfig | None = None,
    *,
    core: ScoringCore | None = None,
    executor: PartitionExecutor | None = None,
    progress: RescoreProgress | None = None,
    out: Path | None = None,
    on_result: Callable[[PartitionResult], None] | None = None,
) -> RescoreSummary:
    """Rescore the open leads of ``data`` into the score tables at ``scores_url``, in the schema of the source
(:func:`score_schema`: its ``db_schema``; the database's default schema without one) (see module doc).

    ``core``: an already loaded scoring core (else loaded from ``settings``; on resume, the run's model
    version is required). ``out``: also write the run's scores to a ``.parquet`` or ``.csv`` file (see
    :class:`_OutWriter`; a resumed run's file holds its earlier partitions too).
    ``on_result``: called with each committed partition's result (counts, seconds per stage).
    """
    config = config or RescoreConfig()
    settings = settings or ServingSettings()
    began = time.perf_counter()
    if data.source.kind == "sql" and data.source.url:
        check_sqlite_file(data.source.url)  # else SQLite would create it, score tables included
    writer = _OutWriter(out)  # a bad --out fails before a run is recorded
    engine = score_engine(scores_url, score_schema(data))  # the scores beside the CRM: its db_schema
    try:
        text_store = stored_text_ids(engine)  # None: no score tables yet (a new run creates them for its ids)
        if text_store is not None:
            create_score_tables(engine, text_store)  # the columns tables of older versions lack
        if config.resume or (config.run_id is not None and _run_exists(engine, config.run_id)):
            run = load_run(engine, config.run_id)
            _refuse_stale_resume(engine, run)
            if core is None:
                core = load_scoring_core(settings, run.model_version, run.top_k, run.time_to_close_version)
            elif core.info.version != run.model_version:
                raise ValueError(f"run {run.run_id} used model version {run.model_version}, "
                                 f"the given core is version {core.info.version}")
        else:
            core = core or load_scoring_core(settings, None, config.top_k)
            refuse_flat_model(core)
            run = _new_run(engine, data, core, config, text_store)
        data = data_config_for(data, core.spec)
        pending = run.pending
        if run.changed_since is not None and pending:
            pending = _with_stored_ids(engine, run, pending)
        total = _total_leads(run)
        if executor is None:
            processes = default_processes(config, pending)
            executor = ProcessExecutor(processes) if processes > 1 else LocalExecutor()
        writer.text_ids = any(p.text for p in run.partitions)
        writer.add_committed(engine, run)  # a resumed run's earlier partitions (refused when incomplete)
        if run.status != FINISHED and pending:
            set_run_status(engine, run.run_id, RUNNING)
        committed_before = total - sum(p.span for p in pending)
        if progress is not None and committed_before:
            progress(committed_before, total, -1)  # a resumed run's bar starts where the run stands

        unseen: dict[str, set[str]] = {}
        latest_ns: list[int] = []  # each partition's latest activity before the as-of

        committed_now = [0]

        def commit(result: PartitionResult) -> None:
            committed_now[0] += 1
            if result.latest_activity_ns is not None:
                latest_ns.append(result.latest_activity_ns)
            for column, values in result.unseen.items():
                kept = unseen.setdefault(column, set())
                kept.update(values[: max(UNSEEN_SHOWN - len(kept), 0)])  # a few examples per column, bounded
            committing = time.perf_counter()
            commit_partition(engine, run.run_id, result.partition, result.scores, result.counts, run.as_of)
            writer.add(result.scores)
            result.stages["commit"] = time.perf_counter() - committing
            logger.info("run %s partition %d: %d scored in %.2fs (%s)", run.run_id, result.partition.index,
                        result.counts.scored, result.seconds,
                        ", ".join(f"{stage} {seconds:.2f}s" for stage, seconds in result.stages.items()))
            if on_result is not None:
                on_result(result)
            if progress is not None:
                progress(result.partition.span, total, result.partition.index)

        committer = _Committer(commit)
        results = executor.map(data, core, run, pending)
        try:
            for result in results:
                committer.put(result)
            committer.close()
        except BaseException as exc:
            if isinstance(exc, ContractError):  # bad data in one partition: those scored before it are good
                with contextlib.suppress(BaseException):  # a commit's own error is not the one to report
                    committer.close()
            else:
                committer.abort()
            results.close()  # its reads (and workers) stop before the status below is written
            set_run_status(engine, run.run_id, FAILED, error=f"{type(exc).__name__}: {exc}")
            if isinstance(exc, ContractError):  # the user's data: what the run kept, and how to go on
                kept = len(run.partitions) - len(pending) + committed_now[0]
                raise exc.followed_by(
                    f"run {run.run_id} failed; the {kept:,} partition{'' if kept == 1 else 's'} it committed "
                    f"{'keeps its' if kept == 1 else 'keep their'} scores in lead_scores; fix the data, then "
                    "`leadscore rescore --resume` scores the rest") from None
            raise
        try:
            writer.close()
        except BaseException as exc:  # every partition is committed; --resume writes the whole file again
            set_run_status(engine, run.run_id, FAILED, error=f"writing --out: {type(exc).__name__}: {exc}")
            raise
        try:
            summary = build_summary(engine, run, len(pending), time.perf_counter() - began)
            if core.closing_info is not None:
                summary.time_to_close_model = f"{core.closing_info.name} v{core.closing_info.version}"
            summary.unseen = {column: sorted(values) for column, values in sorted(unseen.items())}
            if latest_ns:
                summary.latest_activity = pd.Timestamp(max(latest_ns)).to_pydatetime()
            for column, values in summary.unseen.items():
                logger.warning("run %s: %s: values the model never saw, scored as missing, e.g. %s", run.run_id,
                               column, ", ".join(map(repr, values)))
            set_run_status(engine, run.run_id, FINISHED, summary=summary.as_dict())
        except BaseException as exc:  # every partition is committed: --resume only summarises
            set_run_status(engine, run.run_id, FAILED, error=f"summarising: {type(exc).__name__}: {exc}")
            raise
        return summary
    except BaseException:
        writer.abort()  # no half-written --out file
        raise
    finally:
        sqlite_arrow.dispose(engine)


def _with_stored_ids(engine: sa.Engine, run: RunRecord, partitions: list[PartitionSpec]) -> list[PartitionSpec]:
    """An incremental run's partitions, each with the ids of its range that have a stored score, and of those
    whose stored score came from other models than the run's: the latter are rescored (``lead_scores`` never
    mixes models), and so are the open leads outside the former (they were never scored). Each partition
    holds a slice (a view) of the two sorted arrays."""
    stored, other = stored_lead_ids(engine, run.model_name, run.model_version, run.time_to_close_version)
    if any(p.text for p in partitions):
        def bounds(ids: np.ndarray) -> list[list[int]]:  # text: bytewise (str) order, the last stop None: no end
            keys = ids.tolist()
            return [[bisect.bisect_left(keys, p.start), len(keys) if p.stop is None else bisect.bisect_left(keys, p.stop)]
                    for p in partitions]
        stored_bounds, other_bounds = bounds(stored), bounds(other)
    else:
        ranges = [[p.start, p.stop] for p in partitions]
        stored_bounds, other_bounds = np.searchsorted(stored, ranges).tolist(), np.searchsorted(other, ranges).tolist()
    return [dataclasses.replace(p, stored_ids=stored[a:b], other_model_ids=other[c:d])
            for p, (a, b), (c, d) in zip(partitions, stored_bounds, other_bounds, strict=True)]


def _latest_finished(engine: sa.Engine, after: datetime) -> Any:
    """The finished run of the latest as-of later than ``after`` (run_id, as_of), or None."""
    runs = lead_score_runs
    with engine.connect() as conn:
        return conn.execute(
            sa.select(runs.c.run_id, runs.c.as_of).where(runs.c.status == FINISHED, runs.c.as_of > after)
            .order_by(runs.c.as_of.desc()).limit(1)
        ).first()


def _refuse_earlier_as_of(engine: sa.Engine, as_of: datetime) -> None:
    """``lead_scores`` holds each lead's latest score: a run at an earlier as-of than a finished one would
    put back leads that have closed since (and its scores would be refused row by row anyway)."""
    if not sa.inspect(engine).has_table(LEAD_SCORE_RUNS, schema=schema_of(engine)):
        return  # no score tables yet: no run
    newer = _latest_finished(engine, as_of)
    if newer is not None:
        raise ValueError(
            f"as of {as_of:%Y-%m-%d %H:%M:%S} is before the as-of {newer.as_of:%Y-%m-%d %H:%M:%S} of the finished run "
            f"{newer.run_id}: {LEAD_SCORES} holds the latest scores; score an earlier date with the scoring core "
            f"or the endpoint instead")


def _refuse_stale_resume(engine: sa.Engine, run: RunRecord) -> None:
    """An unfinished run is not resumed once a run of a later as-of, or of the same as-of started after
    it (a newer champion, say), has finished: its scores are older."""
    if run.status == FINISHED:
        return
    newer = _latest_finished(engine, run.as_of)
    if newer is None:
        runs = lead_score_runs
        with engine.connect() as conn:
            newer = conn.execute(
                sa.select(runs.c.run_id, runs.c.as_of).where(runs.c.status == FINISHED, runs.c.as_of == run.as_of,
                                                             runs.c.started_at > run.started_at).limit(1)
            ).first()
    if newer is not None:
        raise ValueError(
            f"run {run.run_id} (as of {run.as_of:%Y-%m-%d %H:%M:%S}) is older than the finished run {newer.run_id} "
            f"(as of {newer.as_of:%Y-%m-%d %H:%M:%S}): resuming it would write older scores; start a new rescore "
            "instead")


def _run_exists(engine: sa.Engine, run_id: str) -> bool:
    try:
        load_run(engine, run_id)
    except LookupError:
        return False
    return True


def _total_leads(run: RunRecord) -> int:
    """Progress units: lead ids spanned by the run's partitions."""
    return int(sum(p.span for p in run.partitions))


def build_summary(engine: sa.Engine, run: RunRecord, partitions_now: int, seconds: float) -> RescoreSummary:
    """Summary of a run from its committed partition rows and its history."""
    parts = partition_counts(engine, run.run_id)

    def total(column: str) -> int:
        return int(to_numbers(parts[column]).fillna(0).sum()) if len(parts) else 0  # NULL: older rows

    grades = dict.fromkeys(GRADES, 0)
    for text in parts.get("grades", pd.Series(dtype=object)).dropna():
        for grade, count in json.loads(text).items():
            grades[grade] = grades.get(grade, 0) + int(count)
    up, down = largest_changes(engine, run.run_id)
    written = int(parts["written"].fillna(parts["scored"]).fillna(0).sum()) if len(parts) else 0  # NULL: older rows
    return RescoreSummary(
        run_id=run.run_id, status=FINISHED, as_of=run.as_of, model_name=run.model_name,
        model_version=run.model_version, partitions=len(run.partitions), partitions_run_now=partitions_now,
        leads=total("leads"), scored=total("scored"), written=written, skipped_converted=total("skipped_converted"),
        skipped_not_created=total("skipped_not_created"), unchanged=total("unchanged"),
        model_changed=total("model_changed"), never_scored=total("never_scored"), quarantined=total("quarantined"), mql=total("mql"), grades=grades,
        history_rows=count_history(engine, run.run_id), seconds=seconds,
        largest_increases=up.to_dict("records"), largest_decreases=down.to_dict("records"),
    )


class _Committer:
    """Commits scored partitions on a thread of its own while this thread scores the next ones.

    The database's share of a commit (SQLite / PostgreSQL work, the driver's binding) then overlaps
    with scoring. One result at most waits for the thread (memory stays bounded); a commit that fails
    is raised by the next :meth:`put` or by :meth:`close`, and nothing is committed after it.
    """

    def __init__(self, commit: Callable[[PartitionResult], None]) -> None:
        self._commit = commit
        self._queue: queue.Queue[PartitionResult | None] = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rescore-commit", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (result := self._queue.get()) is not None:
            if self._error is None and not self._stop.is_set():
                try:
                    self._commit(result)
                except BaseException as exc:  # handed to the scoring thread
                    self._error = exc

    def put(self, result: PartitionResult) -> None:
        """Queue a result for commit (waits while one is already waiting)."""
        self._raise()
        self._queue.put(result)

    def close(self) -> None:
        """Commit what is queued, stop the thread; raise a commit's error."""
        self._queue.put(None)
        self._thread.join()
        self._raise()

    def abort(self) -> None:
        """Stop after the commit in progress (a waiting result is dropped: redone on resume). A partition that
        breaks the contract uses :meth:`close` instead: the partitions scored before it are committed."""
        self._stop.set()
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error


class _OutWriter:
    """Optional Parquet/CSV copy of a run's scores, written to a temporary file beside it and moved in place
    at the end by one atomic rename (never half-written). It holds the rows of every partition of the run: a
    resumed run first copies those committed before this call from ``lead_scores`` (:meth:`add_committed`).
    A run that scores nothing writes an empty file (CSV header, Parquet schema): no earlier run's file stays
    as if it were this one's.

    The temporary file is ``.<name>.<host>.<pid>.<8 hex digits>.tmp``: each writer has its own, so runs
    writing the same file at once never touch each other's (the last to finish leaves its whole output).
    At the start, temporary files of that name left by processes of this host that no longer run (killed
    while writing) are removed, and so are those of older versions (``.<name>.<8 hex digits>.tmp``)."""

    def __init__(self, path: Path | None) -> None:
        self.path = Path(path) if path is not None else None
        if self.path is not None and self.path.suffix.lower() not in (".parquet", ".csv"):
            raise ValueError(f"--out {self.path}: expected a .parquet or .csv file")
        self._tmp: Path | None = None
        self._writer: Any = None
        self.text_ids = False  # the run's lead ids are text (an empty Parquet file's lead_id type)
        if self.path is not None:
            self._remove_orphans()

    def _remove_orphans(self) -> None:
        assert self.path is not None
        pattern = re.compile(rf"\.{re.escape(self.path.name)}\.(?:(?P<host>[A-Za-z0-9-]+)\.(?P<pid>[0-9]+)\.)?"
                             r"[0-9a-f]{8}\.tmp")
        if not self.path.parent.is_dir():
            return
        for orphan in self.path.parent.iterdir():
            match = pattern.fullmatch(orphan.name)
            if match is None or not orphan.is_file():
                continue
            if match["pid"] is not None and (match["host"] != _host_label() or _process_alive(int(match["pid"]))):
                continue  # another run writing this file now (or on another host): its own temporary file
            orphan.unlink(missing_ok=True)
            logger.info("removed %s, left by an earlier run stopped while writing %s", orphan, self.path)

    @property
    def csv(self) -> bool:
        return self.path is not None and self.path.suffix.lower() == ".csv"

    @contextlib.contextmanager
    def _naming_out(self) -> Iterator[None]:
        """A file-system failure (disk full, permissions) as an error naming ``--out``, not the hidden
        temporary file it happened in."""
        try:
            yield
        except OSError as exc:
            named = type(exc)(f"--out {self.path}: the scores file could not be written ({exc.strerror or exc}); the "
                              f"scores committed to {LEAD_SCORES} stay, and --resume writes the whole file again")
            named.errno = exc.errno  # ENOSPC stays ENOSPC for a caller that checks it
            raise named from exc

    def add(self, frame: pd.DataFrame) -> None:
        if self.path is None or not len(frame):
            return
        with self._naming_out():
            self._add(frame)

    def _add(self, frame: pd.DataFrame) -> None:
        frame = frame[[LEAD_ID, *SCORE_COLUMNS]]
        text_ids = frame[LEAD_ID].dtype == object
        if self.csv:
            first = self._tmp is None
            integers = {c: kind for c, kind in _CSV_INTEGERS.items() if c != LEAD_ID or not text_ids}
            frame.astype(integers).to_csv(self._open(), mode="w" if first else "a", header=first, index=False)
            return
        import pyarrow as pa

        tmp = self._open()
        if self._writer is None:
            import pyarrow.parquet as pq

            self._writer = pq.ParquetWriter(tmp, out_schema(text_ids))
        self._writer.write_table(pa.Table.from_pandas(frame, schema=out_schema(text_ids), preserve_index=False))

    def add_committed(self, engine: sa.Engine, run: RunRecord) -> None:
        """The rows of the partitions the run committed before this call, read back from ``lead_scores``;
        refused (before any work) when some are no longer there: the file could not hold the whole run."""
        done = [p for p in run.partitions if p.index in run.done]
        if self.path is None or not done:
            return
        parts = partition_counts(engine, run.run_id)
        expected = int(parts["scored"].fillna(0).sum()) if len(parts) else 0
        missing = expected - count_run_scores(engine, run.run_id)
        if missing > 0:
            raise ValueError(
                f"--out {self.path}: {missing:,} of the {expected:,} scores run {run.run_id} committed before are not "
                f"in {LEAD_SCORES} (a run of a later as-of replaced them or kept them out), so the file cannot hold "
                "the whole run; run without --out")
        for partition in done:
            self.add(read_run_scores(engine, run.run_id, partition))

    def _open(self) -> Path:
        if self._tmp is None:
            assert self.path is not None
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._tmp = self.path.with_name(
                f".{self.path.name}.{_host_label()}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        return self._tmp

    def close(self) -> None:
        if self.path is None:
            return
        with self._naming_out():
            self._close()

    def _close(self) -> None:
        if self._tmp is None:  # no row: an empty file with the columns
            if self.csv:
                pd.DataFrame(columns=[LEAD_ID, *SCORE_COLUMNS]).to_csv(self._open(), index=False)
            else:
                import pyarrow.parquet as pq

                pq.write_table(out_schema(self.text_ids).empty_table(), self._open())
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        assert self._tmp is not None
        self._tmp.replace(self.path)
        self._tmp = None

    def abort(self) -> None:
        """Drop the temporary file (also when closing its Parquet writer fails: the run's error stands)."""
        try:
            if self._writer is not None:
                with contextlib.suppress(Exception):
                    self._writer.close()
                self._writer = None
        finally:
            if self._tmp is not None:
                self._tmp.unlink(missing_ok=True)
                self._tmp = None


def _host_label() -> str:
    """This machine's name as it goes into a temporary file's name (letters, digits and dashes)."""
    return re.sub(r"[^A-Za-z0-9-]+", "-", socket.gethostname()).strip("-") or "host"


def _process_alive(pid: int) -> bool:
    """Whether a process of this host has the id ``pid`` (one of another user counts; on Windows, where
    ``os.kill`` would end it, every process is taken as running)."""
    if os.name == "nt":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OverflowError:  # not a process id
        return False
    return True


# integer columns of lead_scores as pandas' nullable integers in a CSV copy (90, not 90.0, beside empty cells)
_CSV_INTEGERS = {c.name: "Int64" for c in lead_scores.columns if isinstance(c.type, sa.Integer)}


def out_schema(text_ids: bool = False) -> Any:
    """The Arrow schema of a Parquet copy of the scores: the columns and types of ``lead_scores`` (``lead_id``
    a string with ``text_ids``)."""
    import pyarrow as pa

    def arrow(kind: Any) -> Any:
        if isinstance(kind, sa.Boolean):
            return pa.bool_()
        if isinstance(kind, sa.Integer):
            return pa.int64()
        if isinstance(kind, sa.Float):
            return pa.float64()
        if isinstance(kind, sa.DateTime):
            return pa.timestamp("us")
        return pa.string()

    return pa.schema([(c.name, pa.string() if text_ids and c.name == LEAD_ID else arrow(c.type))
                      for c in lead_scores.columns])


def top_leads(url: str, n: int = 10, schema: str | None = None) -> pd.DataFrame:
    """The n highest-scored leads in ``lead_scores`` at ``url`` (in ``schema``: :func:`score_schema`), with
    their reasons (list of dicts)."""
    engine = in_schema(sa.create_engine(url), schema)
    try:
        return top_scores(engine, n)
    finally:
        sqlite_arrow.dispose(engine)


def sql_data_config(url: str) -> DataConfig:
    """The embedded default: canonical ``leads``/``events``/``outcomes`` tables in the database at ``url``,
    with the endpoint's non-negative attributes (:func:`data_config_for` keeps those the model uses)."""
    from features.contract import AttributesConfig, SourceConfig

    return DataConfig(source=SourceConfig(kind="sql", url=url),
                      attributes=AttributesConfig(non_negative=list(ServingSettings().non_negative_attributes)))

