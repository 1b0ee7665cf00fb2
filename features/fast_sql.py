"""Fast SQL reads that give exactly the frame of the generic path (SQLAlchemy rows -> ``pd.read_sql``).

The generic path spends most of its time in per-row Python work (SQLAlchemy ``Row`` objects,
result processors, pandas' record conversion). For the two databases the project supports, the
same rows are read with far less of it:

- **SQLite** (``sqlite3`` driver, any subset): the very SELECT the generic path would run, on the
  raw DBAPI cursor, fetched by chunks; each chunk becomes a frame through the record conversion
  ``pd.read_sql`` itself uses (``DataFrame.from_records(coerce_float=True)``), and the columns
  whose SQLAlchemy type has a result processor (``DATETIME`` text -> ``datetime``, ``NUMERIC`` ->
  ``Decimal``...) get that same processor. Only SQLAlchemy's per-row machinery is skipped. Results
  of :data:`features.sqlite_columns.MIN_ROWS` rows or more are read column-wise through the SQLite
  C library instead (:mod:`features.sqlite_columns`: no Python object per value), same frame.
- **PostgreSQL** (``psycopg`` 3, a lead-id range or one column of the whole table): ONE row comes
  back, holding each column as a single aggregated text (``string_agg``, exact text forms: integers,
  shortest round-trip floats, ISO timestamps in UTC) plus a null mask; pyarrow parses the numbers
  and timestamps in C. The server builds the text, so the client does almost no per-row work.
  Column types whose text form is not exact or not parsed here (numeric, boolean, date, char(n),
  json, arrays, enums...) are not taken on: the table is read by the generic path.

Every fast read either returns the frame the generic path would have returned or ``None``
(unsupported driver/type, a text holding the separator, a value the parser refuses...), and the
caller then reads the table the generic way. ``tests/integration/test_readers.py`` compares the two
paths on tables with nulls, extreme floats, big integers, awkward text and tz-aware timestamps.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import sqlalchemy as sa
from sqlalchemy.engine import processors

from features import sqlite_columns

TEXT_SEPARATOR = "\x1e"  # ASCII record separator between text values (a value holding it -> generic path)
VALUE_SEPARATOR = "\n"  # between numbers / timestamps (their text forms never hold it)


def fast_read(
    engine: sa.Engine,
    table: sa.Table,
    columns: Sequence[str],
    statements: Sequence[sa.Select],
    lead_id_range: tuple[Any, Any] | None,
    lead_id_column: str,
    chunksize: int,
) -> pd.DataFrame | None:
    """The frame of ``statements`` (one per id batch) as the generic path builds it, or None (use it).

    ``columns``: the selected column names, in order. ``lead_id_range``: the half-open range the
    statements filter on (None: the whole table or an id list).
    """
    dialect = engine.dialect
    if dialect.name == "sqlite" and dialect.driver == "pysqlite":
        return _sqlite_read(engine, table, columns, statements, chunksize)
    if dialect.name == "postgresql" and dialect.driver == "psycopg":
        whole_column = lead_id_range is None and len(statements) == 1 and len(columns) == 1
        if lead_id_range is not None or whole_column:
            return _postgres_read(engine, table, columns, lead_id_range, lead_id_column)
    return None


# ----- SQLite ----------------------------------------------------------------------------------
def _sqlite_read(
    engine: sa.Engine, table: sa.Table, columns: Sequence[str], statements: Sequence[sa.Select], chunksize: int
) -> pd.DataFrame | None:
    dialect = engine.dialect
    processors = {}
    for name in columns:
        processor = _sqlite_processor(table.c[name].type, dialect)
        if processor is not None:
            processors[name] = processor
    datetimes = {name for name, processor in processors.items() if processor is SQLITE_STR_TO_DATETIME}
    others = {name: processor for name, processor in processors.items() if name not in datetimes}
    parts: list[pd.DataFrame] = []
    with engine.connect() as conn:
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            for statement in statements:
                compiled = statement.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
                values = compiled.construct_params()
                params = [values[key] for key in compiled.positiontup or ()]
                sql = str(compiled)
                if _large(cursor, sql, params) and sqlite_columns.available():
                    frames = sqlite_columns.read_frames(engine.url.database or "", sql, params, columns, datetimes,
                                                        others, chunksize)
                    if frames is not None:
                        parts.extend(frames)
                        continue
                cursor.execute(sql, params)
                while rows := cursor.fetchmany(chunksize):
                    parts.append(_records_frame(rows, columns, processors))
        finally:
            cursor.close()
    if not parts:
        return None  # the generic path decides the columns of an empty result
    return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]


def _large(cursor: Any, sql: str, params: list[Any]) -> bool:
    """Whether the statement returns enough rows for the columnar reader (a count on the index: cheap)."""
    cursor.execute(f"SELECT count(*) FROM ({sql})", params)
    return int(cursor.fetchone()[0]) >= sqlite_columns.MIN_ROWS


def _records_frame(rows: list[tuple[Any, ...]], columns: Sequence[str], processors: dict[str, Any]) -> pd.DataFrame:
    """Rows -> frame by pandas' record conversion (what ``pd.read_sql`` does per chunk)."""
    frame = pd.DataFrame.from_records(rows, columns=list(columns), coerce_float=True)
    for name, processor in processors.items():
        raw = frame[name].to_numpy(dtype=object)
        parsed = _sqlite_datetimes(raw) if processor is SQLITE_STR_TO_DATETIME else None
        if parsed is None:
            converted = pd.DataFrame.from_records(((processor(v),) for v in raw), columns=[name], coerce_float=True)
            parsed = converted[name] if len(converted) else frame[name]
        frame[name] = parsed
    return frame


def _sqlite_processor(kind: sa.types.TypeEngine, dialect: sa.Dialect) -> Any:
    return kind.dialect_impl(dialect).result_processor(dialect, None)


SQLITE_STR_TO_DATETIME = processors.str_to_datetime  # SQLAlchemy's processor of SQLite DATETIME text
SQLITE_DATETIME_LAYOUT = "dddd-dd-dd dd:dd:dd.dddddd"  # how SQLAlchemy stores DATETIME on SQLite (d: a digit)


def _sqlite_datetimes(raw: np.ndarray) -> np.ndarray | None:
    """SQLAlchemy-stored DATETIME texts parsed at once (None unless every value has exactly that form).

    For ``YYYY-MM-DD HH:MM:SS.ffffff`` (checked character by character) numpy's parse and
    ``datetime.fromisoformat`` (the processor) give the same instant; anything else is left to the
    processor, value by value.
    """
    present = pd.notna(raw)
    values = raw[present]
    if values.size == 0 or pd.api.types.infer_dtype(values, skipna=False) != "string":
        return None
    lengths = np.fromiter(map(len, values), dtype=np.int64, count=values.size)
    if not (lengths == len(SQLITE_DATETIME_LAYOUT)).all():
        return None
    chars = values.astype(f"U{len(SQLITE_DATETIME_LAYOUT)}").view(np.uint32).reshape(values.size, -1)
    for position, expected in enumerate(SQLITE_DATETIME_LAYOUT):
        column = chars[:, position]
        ok = (column - ord("0") <= 9) if expected == "d" else (column == ord(expected))
        if not ok.all():
            return None
    out = np.full(raw.size, np.datetime64("NaT"), dtype="datetime64[ns]")
    try:
        out[present] = values.astype("datetime64[us]")
    except ValueError:  # e.g. month 13: the processor raises the error the generic path would
        return None
    return out


# ----- PostgreSQL ------------------------------------------------------------------------------
_INT, _FLOAT8, _FLOAT4, _TEXT, _TIMESTAMP, _TIMESTAMPTZ = "int", "float8", "float4", "text", "timestamp", "timestamptz"
_TEXT_TYPES = (sa.String, sa.Text, sa.VARCHAR, sa.TEXT, sa.Unicode, sa.UnicodeText)


def _postgres_kind(column: sa.Column) -> str | None:
    """How a column is read on the fast path, or None when its type is not taken on."""
    kind = column.type
    if isinstance(kind, sa.Integer):
        return _INT
    if isinstance(kind, sa.Float):
        if kind.asdecimal:
            return None
        return _FLOAT4 if isinstance(kind, sa.REAL) or (kind.precision or 53) <= 24 else _FLOAT8
    if type(kind) in _TEXT_TYPES:  # not CHAR(n) (blank-padded), enums, citext...
        return _TEXT
    if isinstance(kind, sa.DateTime):
        return _TIMESTAMPTZ if kind.timezone else _TIMESTAMP
    return None


def _postgres_read(
    engine: sa.Engine, table: sa.Table, columns: Sequence[str], lead_id_range: tuple[Any, Any] | None,
    lead_id_column: str,
) -> pd.DataFrame | None:
    kinds = {name: _postgres_kind(table.c[name]) for name in columns}
    if any(kind is None for kind in kinds.values()):
        return None
    aggregates: list[Any] = [sa.func.count()]
    for name in columns:
        column = table.c[name]
        value = sa.func.timezone("UTC", column) if kinds[name] == _TIMESTAMPTZ else column
        separator = TEXT_SEPARATOR if kinds[name] == _TEXT else VALUE_SEPARATOR
        aggregates.append(sa.func.count(column))
        aggregates.append(sa.func.string_agg(sa.cast(value, sa.Text), sa.literal(separator, sa.Text)))
        aggregates.append(sa.func.string_agg(sa.case((column.is_(None), "1"), else_="0"), sa.literal("", sa.Text)))
    query = sa.select(*aggregates).select_from(table)
    if lead_id_range is not None:
        start, stop = lead_id_range
        query = query.where(table.c[lead_id_column] >= start, table.c[lead_id_column] < stop)
    with engine.connect() as conn:
        # exact, unambiguous text forms whatever the server's or the role's settings (this transaction only)
        for setting, value in (("extra_float_digits", "3"), ("DateStyle", "ISO, YMD"), ("TimeZone", "UTC")):
            conn.execute(sa.text("SELECT set_config(:name, :value, true)"), {"name": setting, "value": value})
        try:
            row = conn.execute(query).one()
        except sa.exc.DBAPIError:  # e.g. a text beyond the server's 1 GB value limit
            conn.rollback()
            return None
        conn.rollback()
    n = int(row[0])
    if n == 0:
        return None  # the generic path decides the columns of an empty result
    out: dict[str, Any] = {}
    for i, name in enumerate(columns):
        present, text, nulls = int(row[1 + 3 * i]), row[2 + 3 * i], row[3 + 3 * i]
        values = _parse_column(kinds[name], text, present)
        if values is None:
            return None
        null_mask = np.frombuffer(nulls.encode("ascii"), dtype=np.uint8) == ord("1")
        out[name] = _with_nulls(kinds[name], values, null_mask, n)
    return pd.DataFrame(out, index=pd.RangeIndex(n), columns=list(columns))


_ARROW_TYPES = {_INT: pa.int64(), _FLOAT8: pa.float64(), _FLOAT4: pa.float32(), _TIMESTAMP: pa.timestamp("ns"),
                _TIMESTAMPTZ: pa.timestamp("ns")}


def _parse_column(kind: str | None, text: str | None, present: int) -> np.ndarray | None:
    """The non-null values of one column from its aggregated text (None: not parsed faithfully)."""
    if present == 0:
        return np.empty(0, dtype=object)
    assert text is not None and kind is not None
    if kind == _TEXT:
        values = text.split(TEXT_SEPARATOR)
        return np.array(values, dtype=object) if len(values) == present else None
    try:
        parsed = pa_csv.read_csv(
            io.BytesIO(text.encode()),
            read_options=pa_csv.ReadOptions(column_names=["v"]),
            parse_options=pa_csv.ParseOptions(quote_char=False, escape_char=False, ignore_empty_lines=False),
            convert_options=pa_csv.ConvertOptions(column_types={"v": _ARROW_TYPES[kind]}, null_values=[],
                                                  strings_can_be_null=False),
        ).column(0)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if len(parsed) != present or parsed.null_count:
        return None
    values = parsed.to_numpy()
    return values.astype(np.float64) if kind == _FLOAT4 else values


def _with_nulls(kind: str | None, values: np.ndarray, null_mask: np.ndarray, n: int) -> Any:
    """Full column (nulls put back) with the dtype ``pd.read_sql`` gives the same Python values."""
    if len(values) == 0:  # all null: an object column of None
        return np.full(n, None, dtype=object)
    if kind == _TIMESTAMPTZ:
        column = _scatter(values, null_mask, np.datetime64("NaT", "ns"))
        return pd.DatetimeIndex(column).tz_localize("UTC")
    if not null_mask.any():
        return values
    if kind == _TEXT:
        return _scatter(values, null_mask, None)
    if kind == _TIMESTAMP:
        return _scatter(values, null_mask, np.datetime64("NaT", "ns"))
    return _scatter(values.astype(np.float64), null_mask, np.nan)  # ints with nulls become floats, as in pandas


def _scatter(values: np.ndarray, null_mask: np.ndarray, fill: Any) -> np.ndarray:
    out = np.full(null_mask.size, fill, dtype=values.dtype)
    out[~null_mask] = values
    return out
