"""Fast SQL reads that give exactly the frame of the generic path (SQLAlchemy rows -> ``pd.read_sql``).

The generic path spends most of its time in per-row Python work (SQLAlchemy ``Row`` objects,
result processors, pandas' record conversion). For the two databases the project supports, the
same rows are read with far less of it:

- **SQLite** (``sqlite3`` driver, any subset): the very SELECT the generic path would run, on the
  raw DBAPI cursor, fetched by chunks; each chunk becomes a frame through the record conversion
  ``pd.read_sql`` itself uses (``DataFrame.from_records(coerce_float=True)``), and the columns
  whose SQLAlchemy type has a result processor (``DATETIME`` text -> ``datetime``, ``NUMERIC`` ->
  ``Decimal``...) get that same processor. Only SQLAlchemy's per-row machinery is skipped. A
  database file is first read column-wise through the ADBC SQLite driver instead
  (:mod:`features.sqlite_arrow`: Arrow arrays, no Python object per value), same frame.
- **PostgreSQL** (``psycopg`` 3, a lead-id range or one column of the whole table): ONE row comes
  back, holding each column aggregated: numbers and timestamps as PostgreSQL's binary array of the
  stored values (``array_send(array_agg(...))``: exact, read by numpy without parsing), texts as one
  ``string_agg`` text, and a binary null mask per column. The server builds them in one scan, so the
  client does almost no per-row work. Taken on: integers, float4/float8, text/varchar, timestamp,
  timestamptz (given in UTC, where the generic path gives the session's time zone: same instants);
  any other type (numeric, boolean, date, char(n), json, arrays, enums...) sends the table to the
  generic path.

Every fast read either returns the frame the generic path would have returned or ``None``
(unsupported driver/type, a text holding the separator, a value the parser refuses...), and the
caller then reads the table the generic way. ``tests/integration/test_readers.py`` compares the two
paths on tables with nulls, extreme floats, big integers, awkward text and tz-aware timestamps.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import processors

from features import sqlite_arrow

TEXT_SEPARATOR = "\x1e"  # ASCII record separator between text values (a value holding it -> generic path)


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


def range_clause(column: sa.Column, dialect: str, start: Any, stop: Any) -> list[sa.ColumnElement[bool]]:
    """The conditions of a half-open lead-id range ``[start, stop)``. Text bounds compare bytewise (the order
    of Python's str, which the ranges were cut in): ``COLLATE "C"`` on PostgreSQL (its default collation
    follows the locale: 'B2' between 'a10' and 'b1'), ``BINARY`` on SQLite; a text ``stop`` None: no end."""
    if isinstance(start, str):
        key = column
        if dialect == "postgresql":  # a column of another type (uuid) compared as its text
            key = (column if isinstance(column.type, sa.String) else sa.cast(column, sa.Text)).collate("C")
        elif dialect == "sqlite":
            key = column.collate("BINARY")
        return [key >= start] if stop is None else [key >= start, key < stop]
    key = range_key(column, dialect, start)
    return [key >= start, key < stop]


def range_key(column: sa.Column, dialect: str, bound: Any) -> sa.ColumnElement[Any]:
    """What a lead-id range compares: the column itself, or, for a numeric range on a text column, its
    value as a number (compared as text, '10' sorts before '5' and a partition would read other leads'
    rows). Text that is no whole number compares as 0: it lands in one partition, whose validation
    reports it, as loading the whole table does."""
    if not isinstance(bound, int | float) or isinstance(bound, bool):
        return column
    if dialect == "sqlite":  # numbers are stored as numbers in columns of INTEGER, REAL or NUMERIC affinity
        affinity = sqlite_arrow.type_affinity(column.info.get(sqlite_arrow.DECLARED_TYPE))
        return column if affinity in ("INTEGER", "REAL", "NUMERIC") else sa.cast(column, sa.Numeric(38, 0))
    if isinstance(column.type, sa.Integer | sa.Numeric | sa.Float):
        return column
    text = sa.func.trim(sa.cast(column, sa.Text))
    if dialect == "postgresql":  # its casts refuse text that is no number
        return sa.case((text.op("~")(r"^[+-]?[0-9]+(\.0*)?$"), sa.cast(text, sa.Numeric)), else_=0)
    return sa.cast(column, sa.Numeric(38, 0))  # a bare DECIMAL is DECIMAL(10, 0) on MySQL


# ----- SQLite ----------------------------------------------------------------------------------
def _sqlite_read(
    engine: sa.Engine, table: sa.Table, columns: Sequence[str], statements: Sequence[sa.Select], chunksize: int
) -> pd.DataFrame | None:
    dialect = engine.dialect
    processors = {}
    for name in columns:
        processor = _sqlite_processor(table.c[name].type, dialect)
        if processor is not None:  # a value it cannot convert stays as stored, for the contract to report
            processors[name] = processor if processor is SQLITE_STR_TO_DATETIME else _lenient(processor)
    datetimes = {name for name, processor in processors.items() if processor is SQLITE_STR_TO_DATETIME}
    others = {name: processor for name, processor in processors.items() if name not in datetimes}
    parts: list[pd.DataFrame] = []
    for statement in statements:
        frames = _sqlite_columnar(statement, table, engine, columns, datetimes, others, chunksize)
        if frames is not None:
            parts.extend(frames)
            continue
        sql, params = _compiled(statement, dialect)
        with sqlite_arrow.sqlite3_module_use(engine), engine.connect() as conn:
            cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            try:
                cursor.execute(sql, params)
                while rows := cursor.fetchmany(chunksize):
                    parts.append(_records_frame(rows, columns, processors))
            finally:
                cursor.close()
    if not parts:
        return None  # the generic path decides the columns of an empty result
    return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]


def _compiled(statement: sa.Select, dialect: sa.Dialect) -> tuple[str, list[Any]]:
    """SQL text and positional parameters of a statement, as the generic path would run it."""
    compiled = statement.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
    values = compiled.construct_params()
    return str(compiled), [values[key] for key in compiled.positiontup or ()]


def _sqlite_columnar(statement: sa.Select, table: sa.Table, engine: sa.Engine, columns: Sequence[str],
                     datetimes: set[str], others: dict[str, Any], chunksize: int) -> list[pd.DataFrame] | None:
    """The statement's frames through :mod:`features.sqlite_arrow` (None: read with the sqlite3 module).

    The columns' declared types (noted at reflection) give their affinities; a column with BLOB
    affinity (no declared type), or whose declared type is unknown, gets its values' storage classes
    read beside them."""
    path = sqlite_arrow.adbc_file(engine)
    if path is None:
        return None
    affinity = {name: sqlite_arrow.type_affinity(table.c[name].info.get(sqlite_arrow.DECLARED_TYPE))
                for name in columns}
    checked = [name for name, kind in affinity.items() if kind in (None, "BLOB")]
    text = [name for name, kind in affinity.items() if kind == "TEXT"]
    sql, params = _compiled(sqlite_arrow.with_storage_classes(statement, checked), engine.dialect)
    return sqlite_arrow.read_frames(path, sql, params, columns, datetimes, others, chunksize, checked, text)


def _records_frame(rows: list[tuple[Any, ...]], columns: Sequence[str], processors: dict[str, Any]) -> pd.DataFrame:
    """Rows -> frame by pandas' record conversion (what ``pd.read_sql`` does per chunk)."""
    frame = pd.DataFrame.from_records(rows, columns=list(columns), coerce_float=True)
    for name, processor in processors.items():
        raw = frame[name].to_numpy(dtype=object)
        parsed = _sqlite_datetimes(raw) if processor is SQLITE_STR_TO_DATETIME else None
        if parsed is None:
            convert = _lenient(processor) if processor is SQLITE_STR_TO_DATETIME else processor
            converted = pd.DataFrame.from_records(((convert(v),) for v in raw), columns=[name], coerce_float=True)
            parsed = converted[name] if len(converted) else frame[name]
        frame[name] = parsed
    return frame


def _lenient(processor: Any) -> Any:
    """The processor, but a value it cannot convert is kept as stored: the data contract then reports
    it (table, column, row) as an unparseable timestamp instead of the read failing."""
    def convert(value: Any) -> Any:
        try:
            return processor(value)
        except (ValueError, TypeError):
            return str(value)

    return convert


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
        kind = kinds[name]
        if kind == _TEXT:
            aggregates.append(sa.func.count(column))
            aggregates.append(sa.func.string_agg(column, sa.literal(TEXT_SEPARATOR, sa.Text)))
        else:  # numbers and timestamps: PostgreSQL's binary array of fixed-size values (NULL -> a 0 placeholder)
            cast, zero = _BINARY_CASTS[kind]
            value = sa.cast(sa.func.coalesce(column, sa.cast(sa.literal(zero), cast)), cast)
            aggregates.append(sa.func.array_send(sa.func.array_agg(value)))
        aggregates.append(sa.func.array_send(sa.func.array_agg(column.is_(None))))
    query = sa.select(*aggregates).select_from(table)
    if lead_id_range is not None:
        start, stop = lead_id_range
        query = query.where(*range_clause(table.c[lead_id_column], engine.dialect.name, start, stop))
    compiled = query.compile(dialect=engine.dialect)
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection  # type: ignore[union-attr]
        try:
            with raw.cursor(binary=True) as cursor:  # bytea comes back as raw bytes
                cursor.execute(str(compiled), compiled.params)
                row = cursor.fetchone()
        except raw.Error:  # e.g. a value beyond the server's 1 GB limit
            conn.rollback()
            return None
        conn.rollback()
    n = int(row[0])
    if n == 0:
        return None  # the generic path decides the columns of an empty result
    out: dict[str, Any] = {}
    position = 1
    for name in columns:
        kind = kinds[name]
        if kind == _TEXT:
            present, text = int(row[position]), row[position + 1]
            position += 2
            values = _split_text(text, present)
        else:
            values = _binary_array(row[position], _BINARY_ELEMENTS[kind], n)
            position += 1
        null_mask = _binary_array(row[position], np.dtype("u1"), n)
        position += 1
        if values is None or null_mask is None:
            return None
        null_mask = null_mask.astype(bool)
        if kind != _TEXT:
            values = _decode(kind, values[~null_mask])
            if values is None:
                return None
        out[name] = _with_nulls(kind, values, null_mask, n)
    return pd.DataFrame(out, index=pd.RangeIndex(n), columns=list(columns))


# type the values are cast to, and the placeholder of NULL; then the big-endian element of the binary array
_BINARY_CASTS = {_INT: (sa.BigInteger, 0), _FLOAT8: (sa.Float(precision=53), 0.0), _FLOAT4: (sa.REAL, 0.0),
                 _TIMESTAMP: (sa.DateTime(), "2000-01-01"), _TIMESTAMPTZ: (sa.DateTime(timezone=True), "2000-01-01Z")}
_BINARY_ELEMENTS = {_INT: np.dtype(">i8"), _FLOAT8: np.dtype(">f8"), _FLOAT4: np.dtype(">f4"),
                    _TIMESTAMP: np.dtype(">i8"), _TIMESTAMPTZ: np.dtype(">i8")}
_POSTGRES_EPOCH_US = 946_684_800_000_000  # 2000-01-01 (PostgreSQL's timestamp origin) in microseconds since 1970
_NS_RANGE_US = (-9_200_000_000_000_000, 9_200_000_000_000_000)  # microseconds: well within datetime64[ns]


def _binary_array(data: bytes | None, element: np.dtype, n: int) -> np.ndarray | None:
    """The n values of a one-dimensional PostgreSQL binary array without NULLs (None: another layout)."""
    if data is None or len(data) < 20:
        return None
    ndim, has_null, _ = np.frombuffer(data, dtype=">i4", count=3)
    length = np.frombuffer(data, dtype=">i4", count=1, offset=12)[0]
    layout = np.dtype([("size", ">i4"), ("value", element)])
    if ndim != 1 or has_null or length != n or len(data) != 20 + n * layout.itemsize:
        return None
    items = np.frombuffer(data, dtype=layout, offset=20)
    if (items["size"] != element.itemsize).any():
        return None
    return items["value"]


def _decode(kind: str | None, values: np.ndarray) -> np.ndarray | None:
    """Native values from the big-endian elements (timestamps: microseconds since 2000 -> datetime64[ns])."""
    if kind in (_TIMESTAMP, _TIMESTAMPTZ):
        micros = values.astype(np.int64)
        since_1970 = micros + _POSTGRES_EPOCH_US
        if ((since_1970 < _NS_RANGE_US[0]) | (since_1970 > _NS_RANGE_US[1])).any():  # +-infinity, far dates
            return None
        return (since_1970 * 1000).view("datetime64[ns]")
    return values.astype(np.int64 if kind == _INT else np.float64)


def _split_text(text: str | None, present: int) -> np.ndarray | None:
    """The non-null texts of one column from their aggregate (None: a text holds the separator)."""
    if present == 0:
        return np.empty(0, dtype=object)
    assert text is not None
    values = text.split(TEXT_SEPARATOR)
    return np.array(values, dtype=object) if len(values) == present else None


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
