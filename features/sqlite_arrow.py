"""Columnar reads of SQLite results through ADBC's SQLite driver (Arrow), without a Python object per value.

Python's ``sqlite3`` module builds a Python object for every value of every row; for a partition of
a million events that is most of the cost of a rescoring run on SQLite. Here the same SELECT runs on
a read-only connection of the ADBC SQLite driver, which steps through the rows in C into Arrow
arrays (numbers as stored, texts into one buffer); texts become Python strings once per distinct
value, and ``DATETIME`` texts in SQLAlchemy's storage form are parsed by Arrow.

:func:`read_frames` builds, batch by batch, the frame pandas builds from the rows the ``sqlite3``
module would return (``DataFrame.from_records(coerce_float=True)``, then SQLAlchemy's result
processors); it returns None when it cannot promise that, and the caller then reads with the
``sqlite3`` module. SQLite stores each value with its own storage class, within what the column's
type affinity allows, and the driver types each column from its first rows: it turns a later number
into text (or fails on a later text or BLOB, which is caught). What makes that visible:

- a column with TEXT affinity (declared ``TEXT``, ``VARCHAR``...) stores numbers as text: its texts
  are texts, a BLOB comes back as binary (declined);
- a column with a numeric affinity (``INTEGER``, ``REAL``, ``NUMERIC``, ``DATETIME``...) read as
  numbers is numbers; read as text it may hide numbers turned into text, so it is declined unless it
  is a ``DATETIME`` column whose texts all have SQLAlchemy's storage form (no number does);
- a column with no declared type may hold anything: the statement is run with extra columns
  (:func:`with_storage_classes`) giving each of its values' storage class.

Integers become int64 (float64 with NaN when NULLs are among them), reals float64, texts strings
(``DATETIME`` texts of the form ``YYYY-MM-DD HH:MM:SS.ffffff`` are parsed), only NULLs None. BLOBs,
texts mixed with numbers, text that is not valid UTF-8, other ``DATETIME`` forms in a column with a
numeric affinity, or a database that is not a file all go to the ``sqlite3`` module.

The driver carries its own copy of the SQLite library, and two copies in one process must not use
the same file at the same time: SQLite's locks are POSIX locks, held per process, and each copy
keeps its own books of them, so one copy's reader does not see the other copy's writer and closing
its file releases the other's locks (https://www.sqlite.org/howtocorrupt.html, 2.2.1: a "disk I/O
error" at best). So the two copies take turns on each file through its :class:`FileGate`: any number
of users of one copy at a time (SQLite coordinates the connections of one copy), never both copies.
Columnar reads here and the rescore's commits (:mod:`serving.score_store`) use the ADBC copy under
:meth:`FileGate.adbc`; whatever uses the file through the ``sqlite3`` module while those may run on
other threads (source reads that fall back to it, reflection, closing an engine's connections) holds
:meth:`FileGate.sqlite3_module` (:func:`sqlite3_module_use`).
"""

from __future__ import annotations

import contextlib
import os
import threading
import urllib.parse
from collections.abc import Callable, Collection, Iterator, Sequence
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


DECLARED_TYPE = "sqlite_declared_type"  # key of a reflected column's ``info``: its declared type as written


def type_affinity(declared: str | None) -> str | None:
    """SQLite's type affinity of a declared column type (https://www.sqlite.org/datatype3.html, 3.1), in
    its order: INT -> INTEGER; CHAR, CLOB, TEXT -> TEXT; BLOB or no type -> BLOB; REAL, FLOA, DOUB ->
    REAL; anything else NUMERIC. None for None (unknown)."""
    if declared is None:
        return None
    kind = declared.upper()
    if "INT" in kind:
        return "INTEGER"
    if any(word in kind for word in ("CHAR", "CLOB", "TEXT")):
        return "TEXT"
    if "BLOB" in kind or not kind.strip():
        return "BLOB"
    if any(word in kind for word in ("REAL", "FLOA", "DOUB")):
        return "REAL"
    return "NUMERIC"


class FileGate:
    """Which SQLite copy may use one database file in this process: the ADBC driver's or the ``sqlite3``
    module's (see the module doc). Users of one copy share the gate; the two copies take turns, and a
    copy that waits gets the next turn (neither starves). A thread may nest uses of the copy it holds;
    asking for the other copy meanwhile is a bug that would deadlock, so it raises RuntimeError."""

    ADBC, SQLITE3_MODULE = 0, 1

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._active = [0, 0]
        self._waiting = [0, 0]
        self._turn = self.ADBC
        self._held = threading.local()
        self.wal: bool | None = None  # the file is in WAL mode (None: not asked yet; see adbc_file)

    def adbc(self) -> contextlib.AbstractContextManager[None]:
        """Use of the file through the ADBC driver's SQLite."""
        return self._use(self.ADBC)

    def sqlite3_module(self) -> contextlib.AbstractContextManager[None]:
        """Use of the file through Python's ``sqlite3`` module."""
        return self._use(self.SQLITE3_MODULE)

    def waiting(self) -> tuple[int, int]:
        """Threads waiting for the file: (ADBC users, sqlite3-module users)."""
        with self._cond:
            return self._waiting[self.ADBC], self._waiting[self.SQLITE3_MODULE]

    @contextlib.contextmanager
    def _use(self, side: int) -> Iterator[None]:
        other = 1 - side
        held = getattr(self._held, "counts", None)
        if held is None:
            held = self._held.counts = [0, 0]
        if held[other]:
            raise RuntimeError("a thread using a SQLite file through one SQLite copy asked for the other copy")
        if not held[side]:
            with self._cond:
                self._waiting[side] += 1
                try:
                    if self._active[other]:
                        self._turn = side  # the next turn is ours once the other copy's users are done
                    self._cond.wait_for(lambda: not self._active[other]
                                        and (not self._waiting[other] or self._turn == side))
                finally:
                    self._waiting[side] -= 1
                self._active[side] += 1
        held[side] += 1
        try:
            yield
        finally:
            held[side] -= 1
            if not held[side]:
                with self._cond:
                    self._active[side] -= 1
                    if not self._active[side]:
                        self._turn = other
                    self._cond.notify_all()


_FILE_GATES: dict[str, FileGate] = {}
_FILE_GATES_GUARD = threading.Lock()


def file_gate(path: str) -> FileGate:
    """The process-wide gate of one SQLite database file (by its real path; see the module doc)."""
    key = os.path.realpath(path)
    with _FILE_GATES_GUARD:
        return _FILE_GATES.setdefault(key, FileGate())


def database_file(engine: sa.Engine) -> str | None:
    """The SQLite database file behind ``engine``; None for any other database (or in-memory SQLite)."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:" or database.startswith("file:"):
        return None
    return database


def adbc_file(engine: sa.Engine) -> str | None:
    """The SQLite file behind ``engine`` when the ADBC driver may use it beside this engine, else None:
    not a file, no driver, or a database in WAL mode. In WAL mode the ``sqlite3`` module's idle pooled
    connections keep the ``-wal`` and ``-shm`` files open, and a driver connection closing as the last
    one its copy knows of would checkpoint and delete them under those connections (the journal mode is
    asked once per file, through the ``sqlite3`` module)."""
    path = database_file(engine)
    if path is None or not available():
        return None
    gate = file_gate(path)
    if gate.wal is None:
        with gate.sqlite3_module(), engine.connect() as conn:
            mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
        gate.wal = str(mode).lower() == "wal"
    return None if gate.wal else path


def sqlite3_module_use(engine: sa.Engine) -> contextlib.AbstractContextManager[Any]:
    """:meth:`FileGate.sqlite3_module` of the SQLite file behind ``engine`` (a no-op for any other database):
    held around the ``sqlite3`` module's use of a file that the ADBC copy may use on other threads."""
    path = database_file(engine)
    return contextlib.nullcontext() if path is None else file_gate(path).sqlite3_module()


def dispose(engine: sa.Engine) -> None:
    """``engine.dispose()`` under :func:`sqlite3_module_use`: closing a file releases the POSIX locks the
    process holds on it, the other copy's included."""
    with sqlite3_module_use(engine):
        engine.dispose()


class _Unsupported(Exception):
    """The result holds something this reader does not convert exactly (the caller reads it another way)."""


def available() -> bool:
    """True when the ADBC SQLite driver is installed."""
    try:
        import adbc_driver_sqlite.dbapi  # noqa: F401
    except ImportError:
        return False
    return True


def with_storage_classes(statement: sa.Select, checked: Collection[str] | None = None) -> sa.Select:
    """``statement`` with int64 columns appended that pack the SQLite storage class of each value of the
    ``checked`` columns (default: all; one byte per column, :data:`CLASSES_PER_COLUMN` per int64: the
    code of typeof()'s first letter)."""
    selected = [c for c in statement.selected_columns if checked is None or c.name in checked]
    packed = []
    for first in range(0, len(selected), CLASSES_PER_COLUMN):
        terms = [
            sa.func.unicode(sa.func.typeof(column)) * (256 ** k)
            for k, column in enumerate(selected[first:first + CLASSES_PER_COLUMN])
        ]
        packed.append(sum(terms[1:], start=terms[0]).label(STORAGE_CLASS_COLUMN.format(len(packed))))
    return statement.add_columns(*packed) if packed else statement


def read_frames(
    path: str,
    sql: str,
    params: Sequence[Any],
    columns: Sequence[str],
    datetime_columns: set[str],
    processors: dict[str, Callable[[Any], Any]],
    chunksize: int,
    checked: Collection[str] | None = None,
    text_columns: Collection[str] = (),
) -> list[pd.DataFrame] | None:
    """Frames of at most ``chunksize`` rows of ``sql`` on the database file ``path`` (see module doc).

    ``sql`` selects ``columns`` followed by the storage-class columns of :func:`with_storage_classes`
    for the ``checked`` columns (default: all). An unchecked column is trusted to its declared type
    affinity: ``text_columns`` have TEXT affinity (SQLite stores any number there as text), the others
    hold numbers, or texts only in ``datetime_columns`` and in SQLAlchemy's storage form (any other
    text there may be a number the driver turned into text: declined).
    ``datetime_columns``: columns whose texts SQLAlchemy turns into ``datetime`` (parsed here when in
    its storage form); ``processors``: the other columns' SQLAlchemy result processors.
    """
    if not os.path.isfile(path) or not available():
        return None
    import adbc_driver_sqlite.dbapi as dbapi

    uri = f"file:{urllib.parse.quote(os.path.abspath(path))}?mode=ro"
    checked = list(columns) if checked is None else [c for c in columns if c in checked]
    try:
        with file_gate(path).adbc(), dbapi.connect(uri, autocommit=True) as conn, conn.cursor() as cursor:
            cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            cursor.fetchall()
            cursor.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": str(chunksize)})
            cursor.execute(sql, tuple(params))
            batches = list(cursor.fetch_record_batch())  # the file is released before the conversion
        return [_frame(batch, columns, datetime_columns, processors, checked, set(text_columns))
                for batch in batches if batch.num_rows]
    except (_Unsupported, dbapi.Error, OSError, pa.ArrowException, UnicodeDecodeError):
        return None  # e.g. a value whose storage class differs from the driver's type of its column


def _frame(batch: pa.RecordBatch, columns: Sequence[str], datetime_columns: set[str],
           processors: dict[str, Callable[[Any], Any]], checked: Sequence[str], text_columns: set[str]) -> pd.DataFrame:
    """One batch as pandas builds it from the ``sqlite3`` module's rows (raises _Unsupported otherwise)."""
    n = batch.num_rows
    if batch.num_columns != len(columns) + -(-len(checked) // CLASSES_PER_COLUMN):
        raise _Unsupported("unexpected result columns")
    packed_values = [_int64(batch.column(i)) for i in range(len(columns), batch.num_columns)]
    position = {name: k for k, name in enumerate(checked)}
    out: dict[str, Any] = {}
    for j, name in enumerate(columns):
        values = batch.column(j)
        if name not in position:
            out[name] = _typed_column(name, values, name in text_columns, datetime_columns, processors)
            continue
        k = position[name]
        classes = (packed_values[k // CLASSES_PER_COLUMN] >> (8 * (k % CLASSES_PER_COLUMN))) & 255
        null = classes == _NULL
        kinds = set(np.flatnonzero(np.bincount(classes, minlength=256)).tolist()) - {_NULL}
        if not kinds:  # all NULL: an object column of None
            out[name] = np.full(n, None, dtype=object)
        elif kinds <= {_INTEGER, _REAL}:
            out[name] = _numbers(name, values, integers_only=kinds == {_INTEGER} and not null.any(),
                                 datetime_columns=datetime_columns, processors=processors)
        elif kinds == {_TEXT}:
            out[name] = _texts(name, values, datetime_columns, processors, parse_only=False)
        else:  # BLOBs, or texts mixed with numbers: left to the sqlite3 module
            raise _Unsupported(f"{name}: storage classes {sorted(kinds)}")
    return pd.DataFrame(out, columns=list(columns))


def _typed_column(name: str, values: pa.Array, text_affinity: bool, datetime_columns: set[str],
                  processors: dict[str, Callable[[Any], Any]]) -> Any:
    """A column read without storage classes, by the type the driver gave it (see :func:`read_frames`)."""
    if values.null_count == len(values):
        return np.full(len(values), None, dtype=object)
    if pa.types.is_integer(values.type) or pa.types.is_floating(values.type):
        return _numbers(name, values, integers_only=pa.types.is_integer(values.type) and not values.null_count,
                        datetime_columns=datetime_columns, processors=processors)
    text = pa.types.is_string(values.type) or pa.types.is_large_string(values.type)
    if text and (text_affinity or name in datetime_columns):
        return _texts(name, values, datetime_columns, processors, parse_only=not text_affinity)
    raise _Unsupported(f"{name}: {values.type} in a column without TEXT affinity")


def _numbers(name: str, values: pa.Array, integers_only: bool, datetime_columns: set[str],
             processors: dict[str, Callable[[Any], Any]]) -> np.ndarray:
    """Integers without NULL as int64; otherwise float64 with NaN for NULL (what pandas makes of them)."""
    if name in processors or name in datetime_columns:
        raise _Unsupported(f"{name}: numbers in a column with a result processor")
    if not (pa.types.is_integer(values.type) or pa.types.is_floating(values.type)):
        raise _Unsupported(f"{name}: numbers read as {values.type}")
    if integers_only:
        return _int64(values)
    return values.cast(pa.float64()).to_numpy(zero_copy_only=False)


def _texts(name: str, values: pa.Array, datetime_columns: set[str], processors: dict[str, Callable[[Any], Any]],
           parse_only: bool) -> np.ndarray:
    """Texts as strings (their processor applied), or DATETIME texts parsed; ``parse_only``: texts that are
    not all DATETIME texts in SQLAlchemy's storage form are declined."""
    if not pa.types.is_string(values.type) and not pa.types.is_large_string(values.type):
        raise _Unsupported(f"{name}: texts read as {values.type}")
    values.validate(full=True)  # invalid UTF-8: the sqlite3 module raises; let it
    if name in datetime_columns:
        parsed = _datetimes(values)
        if parsed is not None:
            return parsed
    if parse_only:
        raise _Unsupported(f"{name}: texts other than DATETIME texts in a column without TEXT affinity")
    strings = values.to_pandas(deduplicate_objects=True).to_numpy(dtype=object)
    processor = processors.get(name)
    if processor is None:
        return strings
    converted = pd.DataFrame.from_records(((processor(v),) for v in strings), columns=[name], coerce_float=True)
    return converted[name].to_numpy() if len(converted) else strings


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
