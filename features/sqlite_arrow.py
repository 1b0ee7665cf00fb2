"""Columnar reads of SQLite results through ADBC's SQLite driver (Arrow), without a Python object per value.

Python's ``sqlite3`` module builds a Python object for every value of every row; for a partition of
a million events that is most of the cost of a rescoring run on SQLite. Here the same SELECT runs on
a read-only connection of the ADBC SQLite driver, which steps through the rows in C into Arrow
arrays (numbers as stored, texts into one buffer); texts become Python strings once per distinct
value, and ``DATETIME`` texts in SQLAlchemy's storage form are parsed by Arrow.

:func:`read_frames` builds, batch by batch, the frame pandas builds from the rows the ``sqlite3``
module would return (``DataFrame.from_records(coerce_float=True)``, then SQLAlchemy's result
processors); it returns None when it cannot promise that, and the caller then reads with the
``sqlite3`` module. SQLite stores each value with its own storage class whatever the column's
declared type, and the driver types each column from its first rows (it may turn a later number
into text), so the statement is run with extra columns (:func:`with_storage_classes`) giving each
value's storage class; a column is converted only when its classes are ones this reader converts
exactly: integers (int64 without NULLs), integers and reals (float64, NaN for NULL), texts (strings,
or ``DATETIME`` texts of the form ``YYYY-MM-DD HH:MM:SS.ffffff``), or only NULLs (None). BLOBs,
texts mixed with numbers, text that is not valid UTF-8, other ``DATETIME`` forms, or a database
that is not a file all go to the ``sqlite3`` module.

The driver carries its own copy of the SQLite library, and two copies in one process must not use
the same file at the same time: SQLite's locks are POSIX locks, held per process, and each copy
keeps its own books of them, so one copy's reader does not see the other copy's writer and closing
its file releases the other's locks (https://www.sqlite.org/howtocorrupt.html, 2.2.1: a "disk I/O
error" at best). A read here holds :func:`file_lock` of the file; code that writes the same file
through the ``sqlite3`` module while reads may run on other threads (the rescore's commit thread)
holds it too.
"""

from __future__ import annotations

import contextlib
import os
import threading
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

BUSY_TIMEOUT_MS = 120_000  # wait for a writer's lock as long as the sqlite3 path's engines do
STORAGE_CLASS_COLUMN = "__leadscore_storage_classes_{}"
CLASSES_PER_COLUMN = 8  # one byte per selected column in each int64 storage-class column
# a storage class is the first letter of SQLite's typeof() (unicode(): one cheap call per value)
_INTEGER, _REAL, _TEXT, _BLOB, _NULL = (ord(c) for c in "irtbn")
SQLITE_DATETIME_LAYOUT = "dddd-dd-dd dd:dd:dd.dddddd"  # how SQLAlchemy stores DATETIME on SQLite (d: a digit)
_NS_RANGE = (np.datetime64("1678-01-01", "us"), np.datetime64("2262-01-01", "us"))  # datetime64[ns] holds these


_FILE_LOCKS: dict[str, threading.Lock] = {}
_FILE_LOCKS_GUARD = threading.Lock()


def file_lock(path: str) -> threading.Lock:
    """The process-wide lock of one SQLite database file (by its real path; see the module doc)."""
    key = os.path.realpath(path)
    with _FILE_LOCKS_GUARD:
        return _FILE_LOCKS.setdefault(key, threading.Lock())


def database_lock(engine: sa.Engine) -> contextlib.AbstractContextManager[Any]:
    """:func:`file_lock` of the SQLite file behind ``engine`` (a no-op for any other database): what a
    writer through the ``sqlite3`` module holds while columnar reads of that file may run on other threads."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        return contextlib.nullcontext()
    return file_lock(database)


class _Unsupported(Exception):
    """The result holds something this reader does not convert exactly (the caller reads it another way)."""


def available() -> bool:
    """True when the ADBC SQLite driver is installed."""
    try:
        import adbc_driver_sqlite.dbapi  # noqa: F401
    except ImportError:
        return False
    return True


def with_storage_classes(statement: sa.Select) -> sa.Select:
    """``statement`` with int64 columns appended that pack each selected value's SQLite storage class
    (one byte per column, :data:`CLASSES_PER_COLUMN` per int64: the code of typeof()'s first letter)."""
    selected = list(statement.selected_columns)
    packed = []
    for first in range(0, len(selected), CLASSES_PER_COLUMN):
        terms = [
            sa.func.unicode(sa.func.typeof(column)) * (256 ** k)
            for k, column in enumerate(selected[first:first + CLASSES_PER_COLUMN])
        ]
        packed.append(sum(terms[1:], start=terms[0]).label(STORAGE_CLASS_COLUMN.format(len(packed))))
    return statement.add_columns(*packed)


def read_frames(
    path: str,
    sql: str,
    params: Sequence[Any],
    columns: Sequence[str],
    datetime_columns: set[str],
    processors: dict[str, Callable[[Any], Any]],
    chunksize: int,
) -> list[pd.DataFrame] | None:
    """Frames of at most ``chunksize`` rows of ``sql`` on the database file ``path`` (see module doc).

    ``sql`` selects ``columns`` followed by the storage-class columns of :func:`with_storage_classes`.
    ``datetime_columns``: columns whose texts SQLAlchemy turns into ``datetime`` (parsed here when in
    its storage form); ``processors``: the other columns' SQLAlchemy result processors.
    """
    if not os.path.isfile(path) or not available():
        return None
    import adbc_driver_sqlite.dbapi as dbapi

    uri = f"file:{urllib.parse.quote(os.path.abspath(path))}?mode=ro"
    try:
        with file_lock(path), dbapi.connect(uri, autocommit=True) as conn, conn.cursor() as cursor:
            cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            cursor.fetchall()
            cursor.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": str(chunksize)})
            cursor.execute(sql, tuple(params))
            batches = list(cursor.fetch_record_batch())  # the file is released before the conversion
        return [_frame(batch, columns, datetime_columns, processors) for batch in batches if batch.num_rows]
    except (_Unsupported, dbapi.Error, OSError, pa.ArrowException):
        return None  # e.g. a value whose storage class differs from the driver's type of its column


def _frame(batch: pa.RecordBatch, columns: Sequence[str], datetime_columns: set[str],
           processors: dict[str, Callable[[Any], Any]]) -> pd.DataFrame:
    """One batch as pandas builds it from the ``sqlite3`` module's rows (raises _Unsupported otherwise)."""
    n = batch.num_rows
    if batch.num_columns != len(columns) + -(-len(columns) // CLASSES_PER_COLUMN):
        raise _Unsupported("unexpected result columns")
    packed_values = [_int64(batch.column(i)) for i in range(len(columns), batch.num_columns)]
    out: dict[str, Any] = {}
    for j, name in enumerate(columns):
        classes = (packed_values[j // CLASSES_PER_COLUMN] >> (8 * (j % CLASSES_PER_COLUMN))) & 255
        null = classes == _NULL
        kinds = set(np.flatnonzero(np.bincount(classes, minlength=256)).tolist()) - {_NULL}
        values = batch.column(j)
        if not kinds:  # all NULL: an object column of None
            out[name] = np.full(n, None, dtype=object)
        elif kinds <= {_INTEGER, _REAL}:
            if name in processors or name in datetime_columns:
                raise _Unsupported(f"{name}: numbers in a column with a result processor")
            if not (pa.types.is_integer(values.type) or pa.types.is_floating(values.type)):
                raise _Unsupported(f"{name}: numbers read as {values.type}")
            if kinds == {_INTEGER} and not null.any():
                out[name] = _int64(values)
            else:  # pandas: ints with floats or None -> float64, None -> NaN
                out[name] = values.cast(pa.float64()).to_numpy(zero_copy_only=False)
        elif kinds == {_TEXT}:
            if not pa.types.is_string(values.type) and not pa.types.is_large_string(values.type):
                raise _Unsupported(f"{name}: texts read as {values.type}")
            values.validate(full=True)  # invalid UTF-8: the sqlite3 module raises; let it
            if name in datetime_columns:
                parsed = _datetimes(values)
                if parsed is not None:
                    out[name] = parsed
                    continue
            strings = values.to_pandas(deduplicate_objects=True).to_numpy(dtype=object)
            processor = processors.get(name)
            if processor is not None:
                converted = pd.DataFrame.from_records(((processor(v),) for v in strings), columns=[name],
                                                      coerce_float=True)
                out[name] = converted[name].to_numpy() if len(converted) else strings
            else:
                out[name] = strings
        else:  # BLOBs, or texts mixed with numbers: left to the sqlite3 module
            raise _Unsupported(f"{name}: storage classes {sorted(kinds)}")
    return pd.DataFrame(out, columns=list(columns))


def _int64(values: pa.Array) -> np.ndarray:
    if not pa.types.is_integer(values.type) or values.null_count:
        raise _Unsupported(f"expected integers without NULL, got {values.type}")
    return values.cast(pa.int64()).to_numpy()


def _datetimes(values: pa.Array) -> np.ndarray | None:
    """datetime64[ns] of SQLAlchemy-stored DATETIME texts (NaT for NULL), None unless all have that form.

    For ``YYYY-MM-DD HH:MM:SS.ffffff`` (checked byte by byte) Arrow's parse and ``datetime.fromisoformat``
    (the processor) give the same instant; an impossible date (month 13) or one outside datetime64[ns]
    goes back to the processor, which raises or converts as the generic path does.
    """
    if not _datetime_layout(values):
        return None
    try:
        micros = values.cast(pa.timestamp("us"))
    except pa.ArrowInvalid:
        return None
    low, high = pc.min(micros).as_py(), pc.max(micros).as_py()
    if low is not None and not (_NS_RANGE[0] <= np.datetime64(low, "us") and np.datetime64(high, "us") < _NS_RANGE[1]):
        return None
    return micros.cast(pa.timestamp("ns")).to_numpy(zero_copy_only=False)


def _datetime_layout(values: pa.Array) -> bool:
    """Whether every non-NULL text is ``YYYY-MM-DD HH:MM:SS.ffffff`` with a valid time of day (fromisoformat
    refuses second 60, Arrow would not), read from the array's buffers with numpy."""
    width = len(SQLITE_DATETIME_LAYOUT)
    present = values.drop_null()
    if len(present) == 0:
        return True
    offset_type = np.int64 if pa.types.is_large_string(present.type) else np.int32
    offsets = np.frombuffer(present.buffers()[1], dtype=offset_type)[present.offset:present.offset + len(present) + 1]
    if not (np.diff(offsets) == width).all():
        return False
    data = np.frombuffer(present.buffers()[2], dtype=np.uint8)[offsets[0]:offsets[-1]].reshape(-1, width)
    digits = data - ord("0")
    for position, expected in enumerate(SQLITE_DATETIME_LAYOUT):
        column = digits[:, position]
        if not ((column <= 9).all() if expected == "d" else (data[:, position] == ord(expected)).all()):
            return False
    hour = digits[:, 11] * 10 + digits[:, 12]
    return bool((hour <= 23).all() and (digits[:, 14] <= 5).all() and (digits[:, 17] <= 5).all())
