"""Where batch rescoring writes: ``lead_scores`` (one row per lead, upserted), ``lead_score_history``
(one row per (run, lead) whose score changed), and the run checkpoints ``lead_score_runs`` /
``lead_score_run_partitions``. SQLite and PostgreSQL through SQLAlchemy Core; the bulk rows of a
partition go through the driver (SQLite: batched ``executemany`` of one prepared upsert;
PostgreSQL: ``COPY`` into a temporary staging table, then one ``INSERT ... SELECT ... ON CONFLICT``).

:func:`commit_partition` is the unit of crash safety: the scores upsert, the history rows and the
partition's checkpoint row are written in ONE transaction, so a partition is either entirely
committed (and never redone on resume) or not at all.

History rule: a lead gets a history row in a run when it had no score before (``previous_score``
NULL) or its integer score (0-100) differs from the stored one; ``delta = score - previous_score``.
Rewriting the same partition with the same values appends nothing (and the primary key
``(run_id, lead_id)`` forbids duplicates).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from features.schema import LEAD_ID

LEAD_SCORES = "lead_scores"
LEAD_SCORE_HISTORY = "lead_score_history"
LEAD_SCORE_RUNS = "lead_score_runs"
LEAD_SCORE_RUN_PARTITIONS = "lead_score_run_partitions"

RUNNING = "running"
FINISHED = "finished"
FAILED = "failed"
PENDING = "pending"
DONE = "done"

# Columns of lead_scores besides lead_id, in order (what a partition's score frame must hold).
SCORE_COLUMNS = (
    "score", "probability", "grade", "mql", "base_score", "fit_score", "engagement_score", "lifecycle_score",
    "horizon_days", "p_close_30d", "p_close_60d", "p_close_90d", "median_days", "reasons", "model_name",
    "model_version", "time_to_close_version", "scored_at", "as_of", "run_id",
)
UPSERT_BATCH = 5_000

metadata = sa.MetaData()

lead_scores = sa.Table(
    LEAD_SCORES, metadata,
    sa.Column(LEAD_ID, sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("score", sa.Integer, nullable=False),
    sa.Column("probability", sa.Float, nullable=False),
    sa.Column("grade", sa.String(1), nullable=False),
    sa.Column("mql", sa.Boolean, nullable=False),
    sa.Column("base_score", sa.Float),
    sa.Column("fit_score", sa.Float),
    sa.Column("engagement_score", sa.Float),
    sa.Column("lifecycle_score", sa.Float),
    sa.Column("horizon_days", sa.Integer),
    # time to close: NULL without a time-to-close champion; median_days NULL also when beyond its horizon
    sa.Column("p_close_30d", sa.Float),
    sa.Column("p_close_60d", sa.Float),
    sa.Column("p_close_90d", sa.Float),
    sa.Column("median_days", sa.Float),
    sa.Column("reasons", sa.Text, nullable=False),
    sa.Column("model_name", sa.String(200), nullable=False),
    sa.Column("model_version", sa.String(100), nullable=False),
    sa.Column("time_to_close_version", sa.String(100)),
    sa.Column("scored_at", sa.DateTime, nullable=False),
    sa.Column("as_of", sa.DateTime, nullable=False),
    sa.Column("run_id", sa.String(64), nullable=False),
)

lead_score_history = sa.Table(
    LEAD_SCORE_HISTORY, metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column(LEAD_ID, sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("score", sa.Integer, nullable=False),
    sa.Column("previous_score", sa.Integer),
    sa.Column("delta", sa.Integer),
    sa.Column("probability", sa.Float, nullable=False),
    sa.Column("previous_probability", sa.Float),
    sa.Column("grade", sa.String(1), nullable=False),
    sa.Column("previous_run_id", sa.String(64)),
    sa.Column("model_version", sa.String(100), nullable=False),
    sa.Column("as_of", sa.DateTime, nullable=False),
    sa.Column("scored_at", sa.DateTime, nullable=False),
)
sa.Index("ix_lead_score_history_lead", lead_score_history.c[LEAD_ID])

lead_score_runs = sa.Table(
    LEAD_SCORE_RUNS, metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("as_of", sa.DateTime, nullable=False),
    sa.Column("model_name", sa.String(200), nullable=False),
    sa.Column("model_version", sa.String(100), nullable=False),
    sa.Column("model_source", sa.Text),
    sa.Column("time_to_close_version", sa.String(100)),  # NULL: the run scores without a time-to-close model
    sa.Column("changed_since", sa.DateTime),
    sa.Column("top_k", sa.Integer, nullable=False),
    sa.Column("n_partitions", sa.Integer, nullable=False),
    sa.Column("started_at", sa.DateTime, nullable=False),
    sa.Column("finished_at", sa.DateTime),
    sa.Column("error", sa.Text),
    sa.Column("summary", sa.Text),
)

lead_score_run_partitions = sa.Table(
    LEAD_SCORE_RUN_PARTITIONS, metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("partition", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("lead_id_start", sa.BigInteger, nullable=False),
    sa.Column("lead_id_stop", sa.BigInteger, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("leads", sa.Integer),
    sa.Column("scored", sa.Integer),
    sa.Column("skipped_converted", sa.Integer),
    sa.Column("skipped_not_created", sa.Integer),
    sa.Column("unchanged", sa.Integer),
    sa.Column("quarantined", sa.Integer),
    sa.Column("mql", sa.Integer),
    sa.Column("grades", sa.Text),
    sa.Column("committed_at", sa.DateTime),
)


def utc_now() -> datetime:
    """Naive UTC now (the convention of every timestamp column here)."""
    return datetime.now(UTC).replace(tzinfo=None)


def create_score_tables(engine: sa.Engine) -> None:
    """Create the four tables (and the history index) when missing; add the nullable columns that
    tables written by an older version lack (``ALTER TABLE ... ADD COLUMN``; existing rows get NULL)."""
    metadata.create_all(engine, checkfirst=True)
    inspector = sa.inspect(engine)
    for table in metadata.sorted_tables:
        present = {c["name"] for c in inspector.get_columns(table.name)}
        missing = [c for c in table.columns if c.name not in present]
        not_addable = [c.name for c in missing if not c.nullable]
        if not_addable:
            raise ValueError(f"table {table.name} lacks the required column(s) {not_addable}: it was not written "
                             f"by this version of leadscore; rename or drop it and rescore")
        with engine.begin() as conn:
            for column in missing:
                kind = column.type.compile(dialect=engine.dialect)
                conn.execute(sa.text(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}'))


# ----- runs and partitions ----------------------------------------------------------------------
@dataclass(frozen=True)
class PartitionSpec:
    """One lead-id range ``[start, stop)`` of a run."""

    index: int
    start: int
    stop: int


@dataclass
class RunRecord:
    """A row of ``lead_score_runs`` and its partitions."""

    run_id: str
    status: str
    as_of: datetime
    model_name: str
    model_version: str
    model_source: str | None
    changed_since: datetime | None
    top_k: int
    started_at: datetime
    partitions: list[PartitionSpec] = field(default_factory=list)
    done: set[int] = field(default_factory=set)
    time_to_close_version: str | None = None

    @property
    def pending(self) -> list[PartitionSpec]:
        return [p for p in self.partitions if p.index not in self.done]


def create_run(engine: sa.Engine, run: RunRecord) -> None:
    """Insert the run and all its partitions (pending) in one transaction."""
    with engine.begin() as conn:
        conn.execute(lead_score_runs.insert().values(
            run_id=run.run_id, status=RUNNING, as_of=run.as_of, model_name=run.model_name,
            model_version=run.model_version, model_source=run.model_source, changed_since=run.changed_since,
            top_k=run.top_k, n_partitions=len(run.partitions), started_at=run.started_at,
            time_to_close_version=run.time_to_close_version,
        ))
        rows = [{"run_id": run.run_id, "partition": p.index, "lead_id_start": p.start, "lead_id_stop": p.stop,
                 "status": PENDING} for p in run.partitions]
        for i in range(0, len(rows), UPSERT_BATCH):
            conn.execute(lead_score_run_partitions.insert(), rows[i : i + UPSERT_BATCH])


def load_run(engine: sa.Engine, run_id: str | None = None) -> RunRecord:
    """A run by id, or (``run_id`` None) the latest unfinished one; raises LookupError when none."""
    runs = lead_score_runs
    with engine.connect() as conn:
        if run_id is None:
            row = conn.execute(
                sa.select(runs).where(runs.c.status != FINISHED).order_by(runs.c.started_at.desc()).limit(1)
            ).mappings().first()
            if row is None:
                raise LookupError(f"no unfinished run in {LEAD_SCORE_RUNS} to resume")
        else:
            row = conn.execute(sa.select(runs).where(runs.c.run_id == run_id)).mappings().first()
            if row is None:
                raise LookupError(f"run {run_id!r} not found in {LEAD_SCORE_RUNS}")
        parts = conn.execute(
            sa.select(lead_score_run_partitions).where(lead_score_run_partitions.c.run_id == row["run_id"])
            .order_by(lead_score_run_partitions.c.partition)
        ).mappings().all()
    return RunRecord(
        run_id=row["run_id"], status=row["status"], as_of=row["as_of"], model_name=row["model_name"],
        model_version=row["model_version"], model_source=row["model_source"], changed_since=row["changed_since"],
        top_k=int(row["top_k"]), started_at=row["started_at"],
        partitions=[PartitionSpec(int(p["partition"]), int(p["lead_id_start"]), int(p["lead_id_stop"])) for p in parts],
        done={int(p["partition"]) for p in parts if p["status"] == DONE},
        time_to_close_version=row.get("time_to_close_version"),
    )


def set_run_status(engine: sa.Engine, run_id: str, status: str, *, error: str | None = None,
                   summary: dict[str, Any] | None = None) -> None:
    values: dict[str, Any] = {"status": status, "error": error}
    if status == FINISHED:
        values["finished_at"] = utc_now()
    if summary is not None:
        values["summary"] = json.dumps(summary, default=str)
    with engine.begin() as conn:
        conn.execute(lead_score_runs.update().where(lead_score_runs.c.run_id == run_id).values(**values))


def partition_counts(engine: sa.Engine, run_id: str) -> pd.DataFrame:
    """Committed partitions of a run with their counts (one row per partition)."""
    table = lead_score_run_partitions
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(table).where(table.c.run_id == run_id, table.c.status == DONE).order_by(table.c.partition)
        ).mappings().all()
    return pd.DataFrame([dict(r) for r in rows])


# ----- the partition transaction ----------------------------------------------------------------
@dataclass
class PartitionCounts:
    """What happened to the leads of one partition."""

    leads: int = 0
    scored: int = 0
    skipped_converted: int = 0
    skipped_not_created: int = 0
    unchanged: int = 0
    quarantined: int = 0
    mql: int = 0
    grades: dict[str, int] = field(default_factory=dict)


def _previous_scores(conn: sa.Connection, start: int, stop: int) -> pd.DataFrame:
    t = lead_scores
    rows = conn.execute(
        sa.select(t.c[LEAD_ID], t.c.score, t.c.probability, t.c.run_id)
        .where(t.c[LEAD_ID] >= start, t.c[LEAD_ID] < stop)
    ).all()
    return pd.DataFrame(rows, columns=[LEAD_ID, "previous_score", "previous_probability", "previous_run_id"])


def history_rows(scores: pd.DataFrame, previous: pd.DataFrame) -> pd.DataFrame:
    """History rows of ``scores`` against ``previous`` (lead_id, previous_score, ...): new or changed."""
    merged = scores[[LEAD_ID, "score", "probability", "grade", "model_version", "as_of", "scored_at", "run_id"]].merge(
        previous, on=LEAD_ID, how="left", validate="one_to_one"
    )
    previous_score = merged["previous_score"]
    changed = previous_score.isna() | (previous_score != merged["score"])
    out = merged[changed.to_numpy()].copy()
    out["delta"] = out["score"] - out["previous_score"]
    return out


SQLITE_DATETIME = "%Y-%m-%d %H:%M:%S.%f"  # SQLAlchemy's storage format of DateTime on SQLite


def _driver_rows(conn: sa.Connection, frame: pd.DataFrame) -> list[tuple[Any, ...]]:
    """Rows as tuples of plain Python values for the driver (columnar conversion, no per-cell pandas)."""
    columns = []
    for name in frame.columns:
        series = frame[name]
        if pd.api.types.is_datetime64_any_dtype(series.dtype):
            values = _datetime_values(series, sqlite=conn.dialect.name == "sqlite")
        elif series.isna().any():
            values = series.astype(object).where(series.notna(), None).tolist()
        else:
            values = series.tolist()
        columns.append(values)
    return list(zip(*columns, strict=True))


def _datetime_values(series: pd.Series, sqlite: bool) -> list[Any]:
    """A datetime column as SQLite text or ``datetime`` (None for NaT), each distinct instant converted once
    (a partition's ``scored_at`` / ``as_of`` columns hold one instant)."""
    codes, uniques = pd.factorize(series)
    instants = pd.DatetimeIndex(uniques)
    converted = instants.strftime(SQLITE_DATETIME).tolist() if sqlite else instants.to_pydatetime().tolist()
    lookup = np.array([*converted, None], dtype=object)  # code -1 (NaT) -> None
    return lookup[codes].tolist()


def _write_rows(conn: sa.Connection, table: sa.Table, frame: pd.DataFrame, keys: Sequence[str],
                update: Sequence[str]) -> None:
    """Upsert (``update`` columns) or insert-if-absent (no ``update``) the rows of ``frame`` into ``table``.

    SQLite: batched ``executemany`` of one prepared ``INSERT ... ON CONFLICT``. PostgreSQL: ``COPY`` into a
    temporary staging table (emptied at commit), then one ``INSERT ... SELECT ... ON CONFLICT``: both in
    the caller's transaction.
    """
    columns = list(frame.columns)
    whole = {c: frame[c].astype("Int64") for c in columns  # e.g. previous_score: float after the merge
             if isinstance(table.c[c].type, sa.Integer) and pd.api.types.is_float_dtype(frame[c].dtype)}
    rows = _driver_rows(conn, frame.assign(**whole) if whole else frame)
    if conn.dialect.name != "postgresql":
        statement = _upsert_sql(conn, table, columns, keys, update)
        for i in range(0, len(rows), UPSERT_BATCH):
            conn.exec_driver_sql(statement, rows[i : i + UPSERT_BATCH])
        return
    quote = conn.dialect.identifier_preparer.quote
    stage = quote(f"_stage_{table.name}")
    names = ", ".join(quote(c) for c in columns)
    conn.exec_driver_sql(f"CREATE TEMPORARY TABLE IF NOT EXISTS {stage} (LIKE {quote(table.name)}) "
                         "ON COMMIT DELETE ROWS")
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    with cursor, cursor.copy(f"COPY {stage} ({names}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
    action = ("DO UPDATE SET " + ", ".join(f"{quote(c)} = excluded.{quote(c)}" for c in update)) if update \
        else "DO NOTHING"
    conn.exec_driver_sql(f"INSERT INTO {quote(table.name)} ({names}) SELECT {names} FROM {stage} "
                         f"ON CONFLICT ({', '.join(quote(k) for k in keys)}) {action}")
    conn.exec_driver_sql(f"TRUNCATE {stage}")


def _upsert_sql(conn: sa.Connection, table: sa.Table, columns: Sequence[str], keys: Sequence[str],
                update: Sequence[str]) -> str:
    """Driver-level ``INSERT ... ON CONFLICT (keys) DO UPDATE / DO NOTHING`` (same text on SQLite and PostgreSQL)."""
    if conn.dialect.name not in ("sqlite", "postgresql"):
        raise ValueError(f"score store: database dialect {conn.dialect.name!r} not supported (SQLite or PostgreSQL)")
    quote = conn.dialect.identifier_preparer.quote
    names = ", ".join(quote(c) for c in columns)
    if conn.dialect.name == "sqlite":
        markers = ["?"] * len(columns)
    else:  # explicit types: psycopg picks int2/int4/int8 per value, which breaks batched statements
        markers = [f"CAST(%s AS {table.c[c].type.compile(dialect=conn.dialect)})" for c in columns]
    action = ("DO UPDATE SET " + ", ".join(f"{quote(c)} = excluded.{quote(c)}" for c in update)) if update \
        else "DO NOTHING"
    return (f"INSERT INTO {quote(table.name)} ({names}) VALUES ({', '.join(markers)}) "
            f"ON CONFLICT ({', '.join(quote(k) for k in keys)}) {action}")


def commit_partition(
    engine: sa.Engine, run_id: str, partition: PartitionSpec, scores: pd.DataFrame, counts: PartitionCounts
) -> int:
    """Upsert the scores, append history, mark the partition done: ONE transaction. Returns history rows.

    A partition already marked done for this run is left untouched (returns 0).
    """
    missing = [c for c in (LEAD_ID, *SCORE_COLUMNS) if c not in scores.columns]
    if missing:
        raise ValueError(f"{LEAD_SCORES}: score frame lacks columns {missing}")
    outside = scores[(scores[LEAD_ID] < partition.start) | (scores[LEAD_ID] >= partition.stop)]
    if len(outside):
        raise ValueError(
            f"partition {partition.index} [{partition.start}, {partition.stop}): "
            f"lead ids outside the range {outside[LEAD_ID].head(5).tolist()}"
        )
    parts = lead_score_run_partitions
    with engine.begin() as conn:
        status = conn.execute(
            sa.select(parts.c.status).where(parts.c.run_id == run_id, parts.c.partition == partition.index)
        ).scalar_one_or_none()
        if status is None:
            raise LookupError(f"run {run_id!r} has no partition {partition.index} in {LEAD_SCORE_RUN_PARTITIONS}")
        if status == DONE:
            return 0
        n_history = 0
        if len(scores):
            previous = _previous_scores(conn, partition.start, partition.stop)
            history = history_rows(scores, previous)
            _write_rows(conn, lead_scores, scores[[LEAD_ID, *SCORE_COLUMNS]], [LEAD_ID], SCORE_COLUMNS)
            if len(history):
                columns = [c.name for c in lead_score_history.columns]
                _write_rows(conn, lead_score_history, history[columns], ["run_id", LEAD_ID], [])
            n_history = len(history)
        conn.execute(
            parts.update().where(parts.c.run_id == run_id, parts.c.partition == partition.index).values(
                status=DONE, leads=counts.leads, scored=counts.scored, skipped_converted=counts.skipped_converted,
                skipped_not_created=counts.skipped_not_created, unchanged=counts.unchanged,
                quarantined=counts.quarantined, mql=counts.mql, grades=json.dumps(counts.grades),
                committed_at=utc_now(),
            )
        )
    return n_history


# ----- reading back -----------------------------------------------------------------------------
def read_scores(engine: sa.Engine, lead_ids: Sequence[int] | None = None) -> pd.DataFrame:
    """``lead_scores`` (all rows or some lead ids), ordered by lead_id."""
    query = sa.select(lead_scores).order_by(lead_scores.c[LEAD_ID])
    if lead_ids is not None:
        query = query.where(lead_scores.c[LEAD_ID].in_([int(i) for i in lead_ids]))
    with engine.connect() as conn:
        return pd.read_sql(query, conn)


def read_history(engine: sa.Engine, run_id: str | None = None) -> pd.DataFrame:
    query = sa.select(lead_score_history).order_by(lead_score_history.c.run_id, lead_score_history.c[LEAD_ID])
    if run_id is not None:
        query = query.where(lead_score_history.c.run_id == run_id)
    with engine.connect() as conn:
        return pd.read_sql(query, conn)


def count_history(engine: sa.Engine, run_id: str) -> int:
    """Number of history rows of a run."""
    h = lead_score_history
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(h).where(h.c.run_id == run_id)).scalar_one())


def largest_changes(engine: sa.Engine, run_id: str, n: int = 5) -> tuple[pd.DataFrame, pd.DataFrame]:
    """History rows of a run with the largest score increases and decreases (previous score known)."""
    h = lead_score_history
    base = sa.select(h.c[LEAD_ID], h.c.previous_score, h.c.score, h.c.delta).where(
        h.c.run_id == run_id, h.c.delta.is_not(None)
    )
    with engine.connect() as conn:
        up = pd.read_sql(base.where(h.c.delta > 0).order_by(h.c.delta.desc(), h.c[LEAD_ID]).limit(n), conn)
        down = pd.read_sql(base.where(h.c.delta < 0).order_by(h.c.delta.asc(), h.c[LEAD_ID]).limit(n), conn)
    return up, down


def top_scores(engine: sa.Engine, n: int = 10) -> pd.DataFrame:
    """The n highest-scored leads (probability, then lead_id), reasons decoded to a list."""
    t = lead_scores
    with engine.connect() as conn:
        frame = pd.read_sql(sa.select(t).order_by(t.c.probability.desc(), t.c[LEAD_ID]).limit(n), conn)
    frame["reasons"] = frame["reasons"].map(json.loads)
    return frame

