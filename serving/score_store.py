"""Where batch rescoring writes: ``lead_scores`` (one row per lead, upserted), ``lead_score_history``
(one row per (run, lead) whose score changed), and the run checkpoints ``lead_score_runs`` /
``lead_score_run_partitions``. SQLite and PostgreSQL through SQLAlchemy Core; the bulk rows of a
partition go through the driver (SQLite: batched ``executemany`` of one prepared upsert;
PostgreSQL: ``COPY`` into a temporary staging table, then one ``INSERT ... SELECT ... ON CONFLICT``).

:func:`commit_partition` is the unit of crash safety: the scores upsert, the history rows and the
partition's checkpoint row are written in ONE transaction, so a partition is either entirely
committed (and never redone on resume) or not at all.

Schema: the tables are declared without one. An engine from :func:`in_schema` places them in a schema of
its database (SQLAlchemy's ``schema_translate_map`` for the Core statements; the SQL text here reads the
same map through :func:`schema_of`); a plain engine keeps them in the default schema, unqualified.

History rule: a lead gets a history row in a run when it had no score before (``previous_score``
NULL) or its integer score (0-100) differs from the stored one; ``delta = score - previous_score``.
Rewriting the same partition with the same values appends nothing (and the primary key
``(run_id, lead_id)`` forbids duplicates).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import sqlalchemy as sa

from features import sqlite_arrow
from features.schema import LEAD_ID, utc_now

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
    sa.Column("quarantined", sa.Integer),  # distinct lead ids
    sa.Column("mql", sa.Integer),
    sa.Column("grades", sa.Text),
    sa.Column("committed_at", sa.DateTime),
    # incremental: scored although unchanged, their stored score being another model's (NULL: older version)
    sa.Column("model_changed", sa.Integer),
    # scores that went into lead_scores (fewer than scored when a run of a later as-of keeps some out; NULL:
    # written by an older version)
    sa.Column("written", sa.Integer),
    # incremental: scored although unchanged, having no stored score at all (NULL: older version)
    sa.Column("never_scored", sa.Integer),
)


# The same four tables for text lead ids (UUIDs, CRM ids, hashes, zero-padded numbers): ``lead_id`` and the
# partitions' ``lead_id_start`` / ``lead_id_stop`` are TEXT, and ``lead_id_stop`` is NULL on the last partition
# (no text sorts after every other). Only their DDL differs: statements go through the tables above, whose
# SQL is the same, and text ranges compare bytewise (``COLLATE "C"`` on PostgreSQL: :func:`id_range`).
text_metadata = sa.MetaData()
for _table_of_ints in metadata.sorted_tables:
    _copy = _table_of_ints.to_metadata(text_metadata)
    for _name in (LEAD_ID, "lead_id_start", "lead_id_stop"):
        if _name in _copy.c:
            _copy.c[_name].type = sa.Text()
    if "lead_id_stop" in _copy.c:
        _copy.c["lead_id_stop"].nullable = True



def table_for(name: str, text_ids: bool) -> sa.Table:
    """A score table as statements binding lead ids use it: of text ids (``text_ids``) or integers (the
    driver may cast the bound values to the column's type)."""
    return (text_metadata if text_ids else metadata).tables[name]


SQLITE_SCHEMAS = (None, "main")  # a SQLite database's own tables (leadscore attaches no other file)


def in_schema(engine: sa.Engine, schema: str | None) -> sa.Engine:
    """``engine`` with the score tables in ``schema`` of its database (None: the default schema, every
    name unqualified as before). SQLite has no schemas: only ``main`` (the file itself) is taken."""
    if engine.dialect.name == "sqlite" and schema not in SQLITE_SCHEMAS:
        raise ValueError(f"score tables: schema {schema!r} (source.db_schema) on the SQLite database {engine.url}: "
                         "SQLite has no schemas but main (leadscore attaches no other database file); write the "
                         "scores into a database that has that schema")
    if schema is None:
        return engine
    return engine.execution_options(schema_translate_map={None: schema})


def schema_of(bind: sa.Engine | sa.Connection) -> str | None:
    """The schema of the score tables behind ``bind`` (:func:`in_schema`; None: the default one)."""
    translate = bind.get_execution_options().get("schema_translate_map") or {}
    return translate.get(None)


def _where(schema: str | None) -> str:
    return "the default schema" if schema is None else f"schema {schema!r}"


def qualified_name(name: str, schema: str | None) -> str:
    """A score table's name as messages give it: ``schema.name`` when in a schema."""
    return name if schema is None else f"{schema}.{name}"


def create_score_tables(engine: sa.Engine, text_ids: bool = False) -> None:
    """Create the four tables (and the history index) when missing, in the engine's schema (which must
    exist), their lead ids integers or (``text_ids``) text; add the nullable columns that tables written by
    an older version lack (``ALTER TABLE ... ADD COLUMN``; existing rows get NULL). Tables whose lead ids
    are of the other kind are refused, naming the table and column."""
    schema = schema_of(engine)
    inspector = sa.inspect(engine)
    if schema is not None and engine.dialect.name != "sqlite" and not inspector.has_schema(schema):
        raise ValueError(f"score tables: schema {schema!r} (source.db_schema) not found in the database "
                         f"{engine.url.render_as_string(hide_password=True)}")
    tables = text_metadata if text_ids else metadata
    tables.create_all(engine, checkfirst=True)
    inspector = sa.inspect(engine)  # a fresh one: the first may have cached the tables' absence
    for table in sorted(tables.sorted_tables, key=lambda t: t.name != LEAD_SCORES):  # lead_scores named first
        columns = inspector.get_columns(table.name, schema=schema)
        for column in columns:
            if column["name"] in (LEAD_ID, "lead_id_start", "lead_id_stop") and \
                    isinstance(column["type"], sa.Integer) == text_ids:
                have, want = ("integer", "text") if text_ids else ("text", "integer")
                raise ValueError(
                    f"table {qualified_name(table.name, schema)}, column {column['name']}: holds {have} lead ids "
                    f"({column['type']}), the leads table's ids are {want}: scores of another lead base; write "
                    "them into another database or schema, or drop the score tables of the old base")
        present = {c["name"] for c in columns}
        missing = [c for c in table.columns if c.name not in present]
        not_addable = [c.name for c in missing if not c.nullable]
        if not_addable:
            raise ValueError(f"table {table.name} ({_where(schema)}) lacks the required column(s) {not_addable}: it "
                             "was not written by this version of leadscore; rename or drop it and rescore")
        with engine.begin() as conn:
            for column in missing:
                kind = column.type.compile(dialect=engine.dialect)
                conn.execute(sa.text(f"ALTER TABLE {_table(table.name, schema)} ADD COLUMN {_quote(column.name)} "
                                     f"{kind}"))


def stored_text_ids(engine: sa.Engine) -> bool | None:
    """Whether the score tables of the engine's schema hold text lead ids (None: no ``lead_scores`` yet)."""
    schema = schema_of(engine)
    inspector = sa.inspect(engine)
    if not inspector.has_table(LEAD_SCORES, schema=schema):
        return None
    kinds = {c["name"]: c["type"] for c in inspector.get_columns(LEAD_SCORES, schema=schema)}
    return LEAD_ID in kinds and not isinstance(kinds[LEAD_ID], sa.Integer)


def drop_score_tables(engine: sa.Engine) -> None:
    """Drop the four tables of the engine's schema (when present): scores of data that has been replaced."""
    metadata.drop_all(engine, checkfirst=True)


def count_scores(engine: sa.Engine) -> int | None:
    """Rows of ``lead_scores`` in the engine's schema (None: no such table)."""
    if not sa.inspect(engine).has_table(LEAD_SCORES, schema=schema_of(engine)):
        return None
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(lead_scores)).scalar_one())


# ----- runs and partitions ----------------------------------------------------------------------
@dataclass(frozen=True)
class PartitionSpec:
    """One lead-id range ``[start, stop)`` of a run: integers, or texts in bytewise order (``stop`` None on
    the last one: no end). ``n_ids``: the ids planned in it (text ranges; not stored)."""

    index: int
    start: Any
    stop: Any
    # incremental runs, set by the driver for the partitions it hands out (sorted int64, not stored): ids of
    # the range whose stored score came from other models than the run's (rescored as changed), and ids of the
    # range with a stored score at all (an eligible lead outside them is scored: it never was)
    other_model_ids: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64), repr=False, compare=False)
    stored_ids: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64), repr=False, compare=False)
    n_ids: int | None = field(default=None, repr=False, compare=False)

    @property
    def text(self) -> bool:
        """Whether the range is of text ids."""
        return isinstance(self.start, str)

    @property
    def span(self) -> int:
        """Progress units of the range: the integer ids it spans; text ranges: the ids planned in it (1 for
        a partition loaded back from the store, where that count is not kept)."""
        return int(self.n_ids or 1) if self.text else int(self.stop - self.start)

    def holds(self, lead_id: Any) -> bool:
        """Whether ``lead_id`` lies in the range (text: bytewise order)."""
        return self.start <= lead_id and (self.stop is None or lead_id < self.stop)

    def mask(self, ids: pd.Series) -> pd.Series:
        """Rows of ``ids`` inside the range (none given: an empty mask, whatever their dtype)."""
        if not len(ids):
            return pd.Series(np.zeros(0, dtype=bool), index=ids.index)
        inside = ids >= self.start
        return inside if self.stop is None else inside & (ids < self.stop)


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
            conn.execute(table_for(LEAD_SCORE_RUN_PARTITIONS, any(p.text for p in run.partitions)).insert(),
                         rows[i : i + UPSERT_BATCH])


def load_run(engine: sa.Engine, run_id: str | None = None) -> RunRecord:
    """A run by id, or (``run_id`` None) the latest unfinished one; raises LookupError when none."""
    runs = lead_score_runs
    where = qualified_name(LEAD_SCORE_RUNS, schema_of(engine))
    if not sa.inspect(engine).has_table(LEAD_SCORE_RUNS, schema=schema_of(engine)):  # no score tables yet
        raise LookupError(f"no unfinished run in {where} to resume" if run_id is None
                          else f"run {run_id!r} not found in {where}")
    with engine.connect() as conn:
        if run_id is None:
            row = conn.execute(
                sa.select(runs).where(runs.c.status != FINISHED).order_by(runs.c.started_at.desc()).limit(1)
            ).mappings().first()
            if row is None:
                raise LookupError(f"no unfinished run in {where} to resume")
        else:
            row = conn.execute(sa.select(runs).where(runs.c.run_id == run_id)).mappings().first()
            if row is None:
                raise LookupError(f"run {run_id!r} not found in {where}")
        parts = conn.execute(
            sa.select(lead_score_run_partitions).where(lead_score_run_partitions.c.run_id == row["run_id"])
            .order_by(lead_score_run_partitions.c.partition)
        ).mappings().all()
    return RunRecord(
        run_id=row["run_id"], status=row["status"], as_of=row["as_of"], model_name=row["model_name"],
        model_version=row["model_version"], model_source=row["model_source"], changed_since=row["changed_since"],
        top_k=int(row["top_k"]), started_at=row["started_at"],
        partitions=[PartitionSpec(int(p["partition"]), _stored_id(p["lead_id_start"]), _stored_id(p["lead_id_stop"]))
                    for p in parts],
        done={int(p["partition"]) for p in parts if p["status"] == DONE},
        time_to_close_version=row.get("time_to_close_version"),
    )


def _stored_id(value: Any) -> Any:
    """A stored range bound: text as is (None: no end), integers as int."""
    return value if value is None or isinstance(value, str) else int(value)


def id_range(column: sa.ColumnElement[Any], partition: PartitionSpec, dialect: str) -> list[sa.ColumnElement[bool]]:
    """Conditions on a score table's lead id ``column``: inside the partition's range (text: bytewise)."""
    if not partition.text:
        return [column >= partition.start, column < partition.stop]
    key = column.collate("C") if dialect == "postgresql" else column  # SQLite's BINARY: bytewise already
    return [key >= partition.start] + ([] if partition.stop is None else [key < partition.stop])


def _literal(value: Any) -> str:
    """A lead id range bound in SQL text: integers plainly, text quoted (its quotes doubled)."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError(f"lead id {value!r} holds a NUL character, which PostgreSQL text columns refuse")
        return "'" + value.replace("'", "''") + "'"
    return str(int(value))


def set_run_status(engine: sa.Engine, run_id: str, status: str, *, error: str | None = None,
                   summary: dict[str, Any] | None = None) -> None:
    """Record a run's ``status`` with its ``error`` (None clears it) and ``summary`` (JSON, when given);
    a finished run gets its ``finished_at``."""
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
    quarantined: int = 0  # distinct lead ids
    mql: int = 0
    grades: dict[str, int] = field(default_factory=dict)
    model_changed: int = 0  # incremental: scored because their stored score came from another model
    never_scored: int = 0  # incremental: scored because they had no stored score at all
    # leads of the range that left the open pipeline (converted by the as-of, or quarantined): their
    # stored rows are deleted in the partition's transaction (not a column of the checkpoint row)
    retired_ids: tuple[Any, ...] = ()  # ints, or str for text ids


STAGE = "_stage_lead_scores"  # temporary table of the scores of the partition being committed
SQLITE_DATETIME = "%Y-%m-%d %H:%M:%S.%f"  # SQLAlchemy's storage format of DateTime on SQLite
SQLITE_COMMIT_CACHE_KIB = 65_536  # page cache of a commit's connection: a partition's pages stay in memory


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'  # standard SQL quoting, the same on SQLite and PostgreSQL


def _table(name: str, schema: str | None) -> str:
    """A score table's name in SQL text: qualified by its schema when it has one."""
    return _quote(name) if schema is None else f"{_quote(schema)}.{_quote(name)}"


def _apply_stage_sql(partition: PartitionSpec, schema: str | None = None,
                     dialect: str = "sqlite") -> tuple[str, str, str]:
    """The statements that move the staged scores of ``partition`` into place (the score tables of
    ``schema``), the same text on SQLite and PostgreSQL: history rows of the leads whose integer score is new
    or changed (joined with the stored scores of the partition's id range BEFORE the upsert: an index range,
    not the whole table), the upsert of ``lead_scores``, and the emptying of the stage."""
    score = [LEAD_ID, *SCORE_COLUMNS]
    names = ", ".join(_quote(c) for c in score)
    history_columns = ", ".join(_quote(c.name) for c in lead_score_history.columns)

    def q(name: str) -> str:
        return _table(name, schema) if name in metadata.tables else _quote(name)
    # a lead whose id range a run of a later as-of has committed is left alone: its score there is newer,
    # or the lead had left the open pipeline by then (converted, quarantined) and must not come back
    # text ids compare bytewise: COLLATE "C" on PostgreSQL (SQLite's default BINARY is bytewise), and a
    # text range's stop is NULL on the last partition (no end)
    bytewise = ' COLLATE "C"' if partition.text and dialect == "postgresql" else ""
    below_stop = (f"(pp.lead_id_stop IS NULL OR s.{q(LEAD_ID)}{bytewise} < pp.lead_id_stop)" if partition.text
                  else f"s.{q(LEAD_ID)} < pp.lead_id_stop")
    later = (
        f"NOT EXISTS (SELECT 1 FROM {q(LEAD_SCORE_RUN_PARTITIONS)} pp JOIN {q(LEAD_SCORE_RUNS)} r "
        f"ON r.run_id = pp.run_id WHERE pp.status = '{DONE}' AND r.as_of > s.as_of "
        f"AND pp.lead_id_start <= s.{q(LEAD_ID)}{bytewise} AND {below_stop})"
    )
    stop = "" if partition.stop is None else f"AND p.{q(LEAD_ID)}{bytewise} < {_literal(partition.stop)} "
    history = (
        f"INSERT INTO {q(LEAD_SCORE_HISTORY)} ({history_columns}) "
        f"SELECT s.run_id, s.{q(LEAD_ID)}, s.score, p.score, s.score - p.score, s.probability, p.probability, "
        f"s.grade, p.run_id, s.model_version, s.as_of, s.scored_at "
        f"FROM {q(STAGE)} s LEFT JOIN {q(LEAD_SCORES)} p ON p.{q(LEAD_ID)} = s.{q(LEAD_ID)} "
        f"AND p.{q(LEAD_ID)}{bytewise} >= {_literal(partition.start)} {stop}"
        f"WHERE (p.{q(LEAD_ID)} IS NULL OR (p.score <> s.score AND p.as_of <= s.as_of)) AND {later} "
        f"ON CONFLICT (run_id, {q(LEAD_ID)}) DO NOTHING"
    )
    # a stored score of a later as-of is never replaced by an earlier one (a late or resumed older run)
    upsert = (
        f"INSERT INTO {q(LEAD_SCORES)} ({names}) SELECT {names} FROM {q(STAGE)} s WHERE {later} "
        f"ON CONFLICT ({q(LEAD_ID)}) DO UPDATE SET " + ", ".join(f"{q(c)} = excluded.{q(c)}" for c in SCORE_COLUMNS)
        + f" WHERE {_quote(LEAD_SCORES)}.as_of <= excluded.as_of"
    )
    return history, upsert, f"DELETE FROM {q(STAGE)}"


def _partition_done_values(counts: PartitionCounts, written: int) -> dict[str, Any]:
    return {"status": DONE, "leads": counts.leads, "scored": counts.scored,
            "skipped_converted": counts.skipped_converted, "skipped_not_created": counts.skipped_not_created,
            "unchanged": counts.unchanged, "quarantined": counts.quarantined, "mql": counts.mql,
            "grades": json.dumps(counts.grades), "committed_at": utc_now(), "model_changed": counts.model_changed,
            "never_scored": counts.never_scored, "written": written}


def _typed_scores(scores: pd.DataFrame) -> pd.DataFrame:
    """The ``lead_scores`` columns, integer columns as integers (e.g. ``horizon_days``: float with NaN)."""
    frame = scores[[LEAD_ID, *SCORE_COLUMNS]]
    whole = {c: frame[c].astype("Int64") for c in frame.columns
             if isinstance(lead_scores.c[c].type, sa.Integer) and pd.api.types.is_float_dtype(frame[c].dtype)}
    return frame.assign(**whole) if whole else frame


def _datetime_texts(series: pd.Series) -> list[str | None]:
    """A datetime column as SQLAlchemy's SQLite text (None for NaT), each distinct instant converted once
    (a partition's ``scored_at`` / ``as_of`` columns hold one instant)."""
    codes, uniques = pd.factorize(series)
    converted = pd.DatetimeIndex(uniques).strftime(SQLITE_DATETIME).tolist()
    lookup = np.array([*converted, None], dtype=object)  # code -1 (NaT) -> None
    return lookup[codes].tolist()


def _driver_rows(frame: pd.DataFrame) -> list[tuple[Any, ...]]:
    """Rows as tuples of plain Python values for the sqlite3 module (columnar conversion, no per-cell pandas)."""
    columns = []
    for name in frame.columns:
        series = frame[name]
        if pd.api.types.is_datetime64_any_dtype(series.dtype):
            values = _datetime_texts(series)
        elif series.isna().any():
            values = series.astype(object).where(series.notna(), None).tolist()
        else:
            values = series.tolist()
        columns.append(values)
    return list(zip(*columns, strict=True))


def _arrow_rows(frame: pd.DataFrame) -> pa.Table:
    """The rows as Arrow columns bound by the ADBC SQLite driver, stored as the ``sqlite3`` module stores
    them through SQLAlchemy: integers (booleans as 0/1), reals, texts, DATETIME as its text, NULLs."""
    arrays = {}
    for name in frame.columns:
        kind = lead_scores.c[name].type
        series = frame[name]
        if name == LEAD_ID and series.dtype == object:  # text lead ids
            kind = sa.Text()
        if isinstance(kind, sa.DateTime):
            arrays[name] = pa.array(_datetime_texts(series), pa.string())
        elif isinstance(kind, sa.Boolean):
            arrays[name] = pa.array(series.astype("Int64"), pa.int64(), from_pandas=True)
        elif isinstance(kind, sa.Integer):
            arrays[name] = pa.array(series, pa.int64(), from_pandas=True)
        elif isinstance(kind, sa.Float):
            arrays[name] = pa.array(series, pa.float64(), from_pandas=True)
        else:  # texts (a non-string value as its str, as the sqlite3 module's text column would hold it)
            try:
                arrays[name] = pa.array(series, pa.string(), from_pandas=True)
            except pa.ArrowTypeError:
                present = series.notna().to_numpy()
                values = series.to_numpy(dtype=object).copy()
                values[present] = [v if isinstance(v, str) else str(v) for v in values[present]]
                values[~present] = None
                arrays[name] = pa.array(values, pa.string())
    return pa.table(arrays)


def _stage_insert_sql(columns: Sequence[str]) -> str:
    return (f"INSERT INTO {_quote(STAGE)} ({', '.join(_quote(c) for c in columns)}) "
            f"VALUES ({', '.join('?' * len(columns))})")


def _sqlite_stage_ddl(columns: Sequence[str], schema: str | None = None) -> str:
    """The stage on SQLite: a temporary table with the columns (and affinities) of ``lead_scores``."""
    return (f"CREATE TEMP TABLE IF NOT EXISTS {_quote(STAGE)} AS "
            f"SELECT {', '.join(_quote(c) for c in columns)} FROM {_table(LEAD_SCORES, schema)} WHERE 0")


def commit_partition(
    engine: sa.Engine, run_id: str, partition: PartitionSpec, scores: pd.DataFrame, counts: PartitionCounts,
    as_of: datetime | None = None,
) -> int:
    """Upsert the scores, append history, mark the partition done: ONE transaction. Returns history rows.

    A partition already marked done for this run is left untouched (returns 0). The scores are staged
    in a temporary table (SQLite file: bound from Arrow columns through the ADBC driver, under the
    file's :class:`~features.sqlite_arrow.FileGate`; PostgreSQL: ``COPY``; in-memory SQLite or a file
    in WAL mode: the ``sqlite3`` module), then :func:`_apply_stage_sql` moves them in place inside the
    database.
    """
    missing = [c for c in (LEAD_ID, *SCORE_COLUMNS) if c not in scores.columns]
    if missing:
        raise ValueError(f"{LEAD_SCORES}: score frame lacks columns {missing}")
    outside = scores[~partition.mask(scores[LEAD_ID]).to_numpy(dtype=bool)]
    if len(outside):
        raise ValueError(
            f"partition {partition.index} [{partition.start}, {partition.stop}): "
            f"lead ids outside the range {outside[LEAD_ID].head(5).tolist()}"
        )
    if engine.dialect.name not in ("sqlite", "postgresql"):
        raise ValueError(f"score store: database dialect {engine.dialect.name!r} not supported (SQLite or PostgreSQL)")
    rows = _typed_scores(scores)
    path = sqlite_arrow.adbc_file(engine)
    if path is not None:
        with sqlite_arrow.file_gate(path).adbc():
            return _commit_through_adbc(path, run_id, partition, rows, counts, as_of, schema_of(engine))
    parts = lead_score_run_partitions
    with sqlite_arrow.sqlite3_module_use(engine), engine.begin() as conn:  # a SQLite file: no driver use meanwhile
        status = conn.execute(
            sa.select(parts.c.status).where(parts.c.run_id == run_id, parts.c.partition == partition.index)
        ).scalar_one_or_none()
        if status is None:
            raise LookupError(f"run {run_id!r} has no partition {partition.index} in {LEAD_SCORE_RUN_PARTITIONS}")
        if status == DONE:
            return 0
        n_history = written = 0
        if len(rows):
            _stage(conn, rows)
            history, upsert, clear = _apply_stage_sql(partition, schema_of(conn), conn.dialect.name)
            n_history = conn.exec_driver_sql(history).rowcount
            written = conn.exec_driver_sql(upsert).rowcount  # rows inserted or updated (not kept out)
            conn.exec_driver_sql(clear)
        retired = [i if isinstance(i, str) else int(i) for i in counts.retired_ids]
        for i in range(0, len(retired), UPSERT_BATCH):
            scores_table = table_for(LEAD_SCORES, partition.text)
            delete = scores_table.delete().where(scores_table.c[LEAD_ID].in_(retired[i : i + UPSERT_BATCH]))
            if as_of is not None:  # a score of a later as-of stays (the lead may be open again by then)
                delete = delete.where(scores_table.c.as_of <= as_of)
            conn.execute(delete)
        conn.execute(parts.update().where(parts.c.run_id == run_id, parts.c.partition == partition.index)
                     .values(**_partition_done_values(counts, written)))
    return n_history


def _stage(conn: sa.Connection, rows: pd.DataFrame) -> None:
    """The rows into the (emptied) stage, in the caller's transaction (PostgreSQL: ``COPY``)."""
    columns = list(rows.columns)
    schema = schema_of(conn)
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql(_sqlite_stage_ddl(columns, schema))
        conn.exec_driver_sql(f"DELETE FROM {_quote(STAGE)}")
        conn.exec_driver_sql(_stage_insert_sql(columns), _driver_rows(rows))
        return
    names = ", ".join(_quote(c) for c in columns)
    conn.exec_driver_sql(f"CREATE TEMPORARY TABLE IF NOT EXISTS {_quote(STAGE)} (LIKE {_table(LEAD_SCORES, schema)}) "
                         "ON COMMIT DELETE ROWS")
    conn.exec_driver_sql(f"TRUNCATE {_quote(STAGE)}")
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    with cursor, cursor.copy(f"COPY {_quote(STAGE)} ({names}) FROM STDIN") as copy:
        copy.write(_copy_text(rows))


_COPY_NULL = "\\N"
_COPY_ESCAPES = (("\\", "\\\\"), ("\t", "\\t"), ("\n", "\\n"), ("\r", "\\r"))


def _copy_text(frame: pd.DataFrame) -> str:
    """The rows in PostgreSQL's COPY text format, built column by column: integers, and floats by ``repr``
    (exact), booleans as t/f, timestamps with microseconds, texts with backslash, tab, newline and
    carriage return escaped, NULL (None, NaN, NaT, <NA>) as \\N."""
    columns: list[list[str]] = []
    for name in frame.columns:
        series = frame[name]
        null = series.isna().to_numpy()
        if pd.api.types.is_datetime64_any_dtype(series.dtype):
            texts = _datetime_texts(series)  # SQLite's text of the instant: PostgreSQL reads it
        elif pd.api.types.is_bool_dtype(series.dtype) and not null.any():
            texts = ["t" if v else "f" for v in series.tolist()]
        elif pd.api.types.is_integer_dtype(series.dtype):
            texts = list(map(str, series.fillna(0).to_numpy(dtype=np.int64).tolist()))
        elif pd.api.types.is_float_dtype(series.dtype):
            texts = list(map(repr, series.to_numpy(dtype=np.float64).tolist()))
        else:
            texts = _escaped_texts([str(v) for v in series.to_numpy(dtype=object)[~null].tolist()])
            if null.any():
                filled = np.full(len(series), _COPY_NULL, dtype=object)
                filled[~null] = texts
                texts = filled.tolist()
            columns.append(texts)
            continue
        if null.any():
            texts = np.where(null, _COPY_NULL, np.array(texts, dtype=object)).tolist()
        columns.append(texts)
    return "".join(f"{line}\n" for line in map("\t".join, zip(*columns, strict=True)))


def _escaped_texts(texts: list[str]) -> list[str]:
    """Texts with COPY's escapes, replaced on the column joined by NUL (which no PostgreSQL text holds)."""
    joined = "\x00".join(texts)
    if not any(character in joined for character, _ in _COPY_ESCAPES):
        return texts
    if "\x00" in "".join(texts):
        raise ValueError("a text holds a NUL character, which PostgreSQL text columns refuse")
    for character, escaped in _COPY_ESCAPES:
        joined = joined.replace(character, escaped)
    return joined.split("\x00")


def _commit_through_adbc(path: str, run_id: str, partition: PartitionSpec, rows: pd.DataFrame,
                         counts: PartitionCounts, as_of: datetime | None = None, schema: str | None = None) -> int:
    """:func:`commit_partition` on a SQLite file through the ADBC driver (the caller holds the file's gate)."""
    import adbc_driver_sqlite.dbapi as dbapi

    table = _arrow_rows(rows) if len(rows) else None
    uri = f"file:{urllib.parse.quote(os.path.abspath(path))}?mode=rw"
    with dbapi.connect(uri, autocommit=True) as conn, conn.cursor() as cursor:
        for pragma in (f"busy_timeout = {sqlite_arrow.BUSY_TIMEOUT_MS}", "temp_store = MEMORY",
                       f"cache_size = -{SQLITE_COMMIT_CACHE_KIB}"):
            cursor.execute(f"PRAGMA {pragma}")
            cursor.fetchall()
        cursor.execute("BEGIN IMMEDIATE")  # the write lock first: no deadlock with another writer
        try:
            cursor.execute(f"SELECT status FROM {_table(LEAD_SCORE_RUN_PARTITIONS, schema)} "
                           f"WHERE run_id = ? AND {_quote('partition')} = ?", (run_id, partition.index))
            found = cursor.fetchall()
            if not found:
                raise LookupError(f"run {run_id!r} has no partition {partition.index} in {LEAD_SCORE_RUN_PARTITIONS}")
            n_history = written = 0
            if found[0][0] != DONE:
                if table is not None:
                    cursor.execute(_sqlite_stage_ddl(table.column_names, schema))
                    cursor.execute(f"DELETE FROM {_quote(STAGE)}")
                    cursor.executemany(_stage_insert_sql(table.column_names), table)
                    history, upsert, clear = _apply_stage_sql(partition, schema)
                    cursor.execute(history)
                    cursor.execute("SELECT changes()")
                    n_history = int(cursor.fetchall()[0][0])
                    cursor.execute(upsert)
                    cursor.execute("SELECT changes()")  # rows inserted or updated (not kept out)
                    written = int(cursor.fetchall()[0][0])
                    cursor.execute(clear)
                if counts.retired_ids:
                    until = (as_of or datetime.max).strftime(SQLITE_DATETIME)  # a later as-of's score stays
                    cursor.executemany(f"DELETE FROM {_table(LEAD_SCORES, schema)} WHERE {_quote(LEAD_ID)} = ? "
                                       "AND as_of <= ?",
                                       pa.table({LEAD_ID: pa.array(counts.retired_ids,
                                                                   pa.string() if partition.text else pa.int64()),
                                                 "as_of": pa.array([until] * len(counts.retired_ids), pa.string())}))
                done = _partition_done_values(counts, written)
                done["committed_at"] = done["committed_at"].strftime(SQLITE_DATETIME)
                cursor.execute(
                    f"UPDATE {_table(LEAD_SCORE_RUN_PARTITIONS, schema)} SET "
                    + ", ".join(f"{_quote(c)} = ?" for c in done)
                    + f" WHERE run_id = ? AND {_quote('partition')} = ?",
                    (*done.values(), run_id, partition.index),
                )
            cursor.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(dbapi.Error):  # SQLite may have rolled back already (e.g. disk full)
                cursor.execute("ROLLBACK")
            raise
    return n_history


# ----- reading back -----------------------------------------------------------------------------
def read_scores(engine: sa.Engine, lead_ids: Sequence[int] | None = None) -> pd.DataFrame:
    """``lead_scores`` (all rows or some lead ids), ordered by lead_id."""
    ids = None if lead_ids is None else [i if isinstance(i, str) else int(i) for i in lead_ids]
    t = table_for(LEAD_SCORES, bool(ids) and isinstance(ids[0], str))
    query = sa.select(t).order_by(t.c[LEAD_ID])
    if ids is not None:
        query = query.where(t.c[LEAD_ID].in_(ids))
    with engine.connect() as conn:
        return pd.read_sql(query, conn)


def count_run_scores(engine: sa.Engine, run_id: str) -> int:
    """Rows of ``lead_scores`` written by a run (and not replaced since)."""
    t = lead_scores
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(t).where(t.c.run_id == run_id)).scalar_one())


def read_run_scores(engine: sa.Engine, run_id: str, partition: PartitionSpec) -> pd.DataFrame:
    """The rows of ``lead_scores`` a run wrote in one partition's id range, ordered by lead_id."""
    t = table_for(LEAD_SCORES, partition.text)
    query = sa.select(t).where(t.c.run_id == run_id, *id_range(t.c[LEAD_ID], partition, engine.dialect.name))
    with engine.connect() as conn:
        return pd.read_sql(query.order_by(t.c[LEAD_ID]), conn)


STORED_IDS_CHUNK = 10_000  # rows fetched at a time by stored_lead_ids (bounded Python objects)


def stored_lead_ids(engine: sa.Engine, model_name: str, model_version: str,
                    time_to_close_version: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Sorted int64 ids of the leads with a stored score, and of those whose score came from other models
    than these (name and version, or time-to-close version, NULL meaning none): one scan of ``lead_scores``,
    fetched by chunks into numpy (8 bytes an id; a million stored scores: ~1.5 s, ~30 MB at the peak)."""
    t = lead_scores
    other = sa.or_(t.c.model_name != model_name, t.c.model_version != model_version,
                   t.c.time_to_close_version.is_distinct_from(time_to_close_version))
    query = sa.select(t.c[LEAD_ID], sa.case((other, 1), else_=0)).order_by(t.c[LEAD_ID])
    ids: list[np.ndarray] = []
    others: list[np.ndarray] = []
    with sqlite_arrow.sqlite3_module_use(engine), engine.connect() as conn:  # a SQLite file: no ADBC use meanwhile
        result = conn.execution_options(stream_results=True).execute(query)
        while rows := result.fetchmany(STORED_IDS_CHUNK):
            if isinstance(rows[0][0], str):  # text ids: object arrays, sorted below in bytewise (str) order
                chunk = np.array([tuple(r) for r in rows], dtype=object)
                ids.append(chunk[:, 0].copy())
                others.append(chunk[chunk[:, 1] == 1, 0])
                continue
            chunk = np.fromiter(itertools.chain.from_iterable(rows), np.int64, 2 * len(rows)).reshape(-1, 2)
            ids.append(chunk[:, 0].copy())
            others.append(chunk[chunk[:, 1] == 1, 0])
    empty = np.empty(0, np.int64)
    if ids and ids[0].dtype == object:  # the database's order of text may follow its locale
        return np.sort(np.concatenate(ids)), np.sort(np.concatenate(others))
    return (np.concatenate(ids) if ids else empty), (np.concatenate(others) if others else empty)


def read_history(engine: sa.Engine, run_id: str | None = None) -> pd.DataFrame:
    """The score history rows of the run ``run_id`` (None: of every run), by run and lead id."""
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
    frame["reasons"] = [decoded_reasons(text, lead) for text, lead in zip(frame["reasons"], frame[LEAD_ID], strict=True)]
    return frame


# a number written by Python's repr() as inf / nan (earlier versions wrote those, invalid JSON): null
_NON_FINITE = re.compile(r'(?<=": )-?(?:inf|nan)(?=[,}])')


def decoded_reasons(text: str, lead_id: Any = None) -> list[dict[str, Any]]:
    """A stored ``reasons`` JSON array as a list of dicts. The bare ``inf`` / ``nan`` numbers that older
    versions wrote (invalid JSON) read as null; any other invalid text raises a one-line ValueError."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        try:
            return json.loads(_NON_FINITE.sub("null", text))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{LEAD_SCORES}: the reasons of lead {lead_id} are not JSON ({exc.msg} at character "
                             f"{exc.pos}); rescore the lead") from None
