"""Columnar reads of large SQLite results through the SQLite C library, without a Python object per value.

Python's ``sqlite3`` module builds a Python object for every value of every row; for a partition of
a million events that is most of the cost of a rescoring run on SQLite. Here the same SELECT runs on
its own read-only connection opened with the system's ``libsqlite3`` (``ctypes``), and a numba loop
steps through the rows copying each value into typed arrays: int64 and float64 values as they are
stored, texts into one byte buffer with offsets (turned into Python strings by pyarrow in C), and
``DATETIME`` texts in SQLAlchemy's storage form parsed to nanoseconds in the same pass.

:func:`read_frames` builds, chunk by chunk, the frame pandas builds from the rows the ``sqlite3``
module would return (``DataFrame.from_records(coerce_float=True)``, then SQLAlchemy's result
processors); it returns None when it cannot promise that (no ``libsqlite3`` or numba, a database
that is not a file, a BLOB, a column mixing texts and numbers, a text that is not valid UTF-8, a
``DATETIME`` text in another form...), and the caller then reads with the ``sqlite3`` module.
Compiling the loop costs about two seconds once per process, so :mod:`features.fast_sql` takes this
path for results of at least :data:`MIN_ROWS` rows, and for any result once compiled.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

MIN_ROWS = 100_000  # below this the sqlite3 module is fast enough and the one-off compilation is not worth it

_SQLITE_OPEN_READONLY = 0x1
_SQLITE_OPEN_NOMUTEX = 0x8000  # one thread uses the connection: no per-call mutex
_SQLITE_ROW, _SQLITE_DONE = 100, 101
_INTEGER, _FLOAT, _TEXT, _BLOB, _NULL = 1, 2, 3, 4, 5
_NEEDS_SPACE = -1  # the current row's texts do not fit the buffer: grow it and resume on the same row
TEXT_BUFFER_BYTES = 1 << 26  # initial text buffer of a read (grown when a row does not fit)
_DATETIME_WIDTH = 26  # "YYYY-MM-DD HH:MM:SS.ffffff": how SQLAlchemy stores DATETIME on SQLite


class _Library:
    """The SQLite C functions used here, with their C signatures (handles passed as size_t)."""

    def __init__(self, path: str) -> None:
        lib = ctypes.CDLL(path)
        handle, pointer = ctypes.c_size_t, ctypes.POINTER(ctypes.c_void_p)

        def declare(name: str, restype: Any, *argtypes: Any) -> Any:
            function = getattr(lib, name)
            function.restype, function.argtypes = restype, list(argtypes)
            return function

        self.open = declare("sqlite3_open_v2", ctypes.c_int, ctypes.c_char_p, pointer, ctypes.c_int, ctypes.c_char_p)
        self.close = declare("sqlite3_close_v2", ctypes.c_int, handle)
        self.busy_timeout = declare("sqlite3_busy_timeout", ctypes.c_int, handle, ctypes.c_int)
        self.errmsg = declare("sqlite3_errmsg", ctypes.c_char_p, handle)
        self.prepare = declare("sqlite3_prepare_v2", ctypes.c_int, handle, ctypes.c_char_p, ctypes.c_int, pointer,
                               pointer)
        self.finalize = declare("sqlite3_finalize", ctypes.c_int, handle)
        self.bind_int64 = declare("sqlite3_bind_int64", ctypes.c_int, handle, ctypes.c_int, ctypes.c_int64)
        self.bind_double = declare("sqlite3_bind_double", ctypes.c_int, handle, ctypes.c_int, ctypes.c_double)
        self.bind_text = declare("sqlite3_bind_text", ctypes.c_int, handle, ctypes.c_int, ctypes.c_char_p,
                                 ctypes.c_int, ctypes.c_void_p)
        self.bind_null = declare("sqlite3_bind_null", ctypes.c_int, handle, ctypes.c_int)
        self.column_count = declare("sqlite3_column_count", ctypes.c_int, handle)
        self.step = declare("sqlite3_step", ctypes.c_int, handle)
        self.column_type = declare("sqlite3_column_type", ctypes.c_int, handle, ctypes.c_int)
        self.column_int64 = declare("sqlite3_column_int64", ctypes.c_int64, handle, ctypes.c_int)
        self.column_double = declare("sqlite3_column_double", ctypes.c_double, handle, ctypes.c_int)
        self.column_text = declare("sqlite3_column_text", ctypes.POINTER(ctypes.c_uint8), handle, ctypes.c_int)
        self.column_bytes = declare("sqlite3_column_bytes", ctypes.c_int, handle, ctypes.c_int)


@functools.cache
def _library() -> _Library | None:
    path = ctypes.util.find_library("sqlite3")
    if path is None:
        return None
    try:
        return _Library(path)
    except (OSError, AttributeError):
        return None


@functools.cache
def _compiled() -> tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any]] | None:
    """The numba kernels (compiled on first use in each process), or None without numba / libsqlite3."""
    lib = _library()
    if lib is None:
        return None
    try:
        from numba import njit
    except ImportError:
        return None
    step, column_type, column_int64 = lib.step, lib.column_type, lib.column_int64
    column_double, column_text, column_bytes = lib.column_double, lib.column_text, lib.column_bytes

    @njit(nogil=True)
    def fetch(stmt, n_columns, max_rows, resume, types, ints, floats, text, ends):  # pragma: no cover - numba
        """Step up to ``max_rows`` rows into the arrays; ``resume``: the statement is already on a row.

        One pass per row (type, then value: each C call once); a row whose texts do not fit is
        abandoned whole (``used`` back to its start) and the caller resumes on it.
        """
        used = 0
        n = 0
        while n < max_rows:
            if not resume:
                rc = step(stmt)
                if rc != _SQLITE_ROW:
                    return n, used, rc
            resume = False
            row_start = used
            for j in range(n_columns):
                kind = column_type(stmt, j)  # before any conversion, as the SQLite docs require
                types[n, j] = kind
                if kind == _INTEGER:
                    ints[n, j] = column_int64(stmt, j)
                elif kind == _FLOAT:
                    floats[n, j] = column_double(stmt, j)
                elif kind == _TEXT:
                    pointer = column_text(stmt, j)  # then the byte count of that UTF-8 text is exact
                    size = column_bytes(stmt, j)
                    if used + size > text.size:
                        return n, row_start, _NEEDS_SPACE
                    for k in range(size):
                        text[used + k] = pointer[k]
                    used += size
                ends[n, j] = used
            n += 1
        return n, used, _SQLITE_ROW

    @njit(nogil=True)
    def parse_datetimes(text, starts, ends, present):  # pragma: no cover - numba
        """ns since the epoch of "YYYY-MM-DD HH:MM:SS.ffffff" texts; ok False if any other form / date."""
        n = starts.size
        out = np.empty(n, dtype=np.int64)
        # "YYYY-MM-DD HH:MM:SS.ffffff": 0 = a digit, else the separator expected at that position
        layout = np.array([0, 0, 0, 0, 45, 0, 0, 45, 0, 0, 32, 0, 0, 58, 0, 0, 58, 0, 0, 46, 0, 0, 0, 0, 0, 0])
        digits = np.empty(_DATETIME_WIDTH, dtype=np.int64)
        for i in range(n):
            if not present[i]:
                out[i] = 0
                continue
            a = starts[i]
            if ends[i] - a != _DATETIME_WIDTH:
                return out, False
            for k in range(_DATETIME_WIDTH):
                c = text[a + k]
                if layout[k] == 0:
                    if c < 48 or c > 57:
                        return out, False
                    digits[k] = c - 48
                elif c != layout[k]:
                    return out, False
            year = digits[0] * 1000 + digits[1] * 100 + digits[2] * 10 + digits[3]
            month = digits[5] * 10 + digits[6]
            day = digits[8] * 10 + digits[9]
            hour = digits[11] * 10 + digits[12]
            minute = digits[14] * 10 + digits[15]
            second = digits[17] * 10 + digits[18]
            micro = 0
            for k in range(20, 26):
                micro = micro * 10 + digits[k]
            leap = (year % 4 == 0 and year % 100 != 0) or year % 400 == 0
            month_days = (31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
            # datetime64[ns] holds 1677-09-21 .. 2262-04-11: stay well inside, leave the rest to the processor
            if not (1678 <= year <= 2261 and 1 <= month <= 12) or not (1 <= day <= month_days[month - 1]):
                return out, False
            if hour > 23 or minute > 59 or second > 59:
                return out, False
            y = year - (1 if month <= 2 else 0)
            era = y // 400
            yoe = y - era * 400
            doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
            doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
            days = era * 146097 + doe - 719468
            out[i] = ((days * 86400 + hour * 3600 + minute * 60 + second) * 1_000_000 + micro) * 1000
        return out, True

    @njit(nogil=True)
    def gather(text, starts, stops, null):  # pragma: no cover - numba
        """One column's texts (interleaved with the others' in ``text``) as contiguous bytes + offsets."""
        n = starts.size
        offsets = np.zeros(n + 1, dtype=np.int64)
        for i in range(n):
            offsets[i + 1] = offsets[i] + (0 if null[i] else stops[i] - starts[i])
        pieces = np.empty(offsets[n], dtype=np.uint8)
        for i in range(n):
            a = starts[i]
            for k in range(offsets[i + 1] - offsets[i]):
                pieces[offsets[i] + k] = text[a + k]
        return pieces, offsets

    return fetch, parse_datetimes, gather


class _Unsupported(Exception):
    """The result holds something this reader does not convert exactly (the caller reads it another way)."""


def available() -> bool:
    """True when libsqlite3 and numba are there (the kernels are compiled on first use)."""
    return _compiled() is not None


def compiled() -> bool:
    """True once the kernels have been compiled in this process (from then on, small reads are cheap too)."""
    if _compiled.cache_info().currsize == 0:  # numba not even imported yet
        return False
    kernels = _compiled()
    return kernels is not None and bool(kernels[0].signatures)


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

    ``datetime_columns``: columns whose texts SQLAlchemy turns into ``datetime`` (parsed here when in
    its storage form); ``processors``: the other columns' SQLAlchemy result processors.
    """
    kernels = _compiled()
    lib = _library()
    if kernels is None or lib is None or not os.path.isfile(path):
        return None
    fetch, parse_datetimes, gather = kernels
    db = ctypes.c_void_p()
    if lib.open(os.fsencode(path), ctypes.byref(db), _SQLITE_OPEN_READONLY | _SQLITE_OPEN_NOMUTEX, None) != 0:
        lib.close(db.value or 0)
        return None
    stmt = ctypes.c_void_p()
    try:
        lib.busy_timeout(db.value, 120_000)
        if lib.prepare(db.value, sql.encode(), -1, ctypes.byref(stmt), None) != 0:
            return None
        if lib.column_count(stmt.value) != len(columns):
            return None
        for i, value in enumerate(params, start=1):
            _bind(lib, stmt.value, i, value)
        n_columns = len(columns)
        frames = []
        text = np.empty(TEXT_BUFFER_BYTES, dtype=np.uint8)
        resume = False
        while True:
            types = np.full((chunksize, n_columns), _NULL, dtype=np.int8)
            ints = np.zeros((chunksize, n_columns), dtype=np.int64)
            floats = np.zeros((chunksize, n_columns), dtype=np.float64)
            ends = np.zeros((chunksize, n_columns), dtype=np.int64)
            n = used = 0
            while True:
                got, used_now, rc = fetch(stmt.value, n_columns, chunksize - n, resume, types[n:], ints[n:],
                                          floats[n:], text[used:], ends[n:])
                ends[n : n + got] += used
                n, used, resume = n + got, used + used_now, False
                if rc == _NEEDS_SPACE:  # grow the text buffer, keep what is in it, resume on the same row
                    text = np.concatenate([text, np.empty(max(text.size, 1 << 24), dtype=np.uint8)])
                    resume = True
                    continue
                break
            if rc not in (_SQLITE_ROW, _SQLITE_DONE):
                raise _Unsupported(lib.errmsg(db.value).decode(errors="replace"))
            if n:
                frames.append(_frame(columns, types[:n], ints[:n], floats[:n], text[:used], ends[:n],
                                     datetime_columns, processors, parse_datetimes, gather))
            if rc == _SQLITE_DONE or n < chunksize:
                break
        return frames
    except _Unsupported:
        return None
    finally:
        if stmt.value:
            lib.finalize(stmt.value)
        lib.close(db.value)


def _bind(lib: _Library, stmt: int, index: int, value: Any) -> None:
    if value is None:
        rc = lib.bind_null(stmt, index)
    elif isinstance(value, bool | int | np.integer):
        rc = lib.bind_int64(stmt, index, int(value))
    elif isinstance(value, float | np.floating):
        rc = lib.bind_double(stmt, index, float(value))
    elif isinstance(value, str):
        encoded = value.encode()
        rc = lib.bind_text(stmt, index, encoded, len(encoded), ctypes.c_void_p(-1))  # SQLITE_TRANSIENT: copied
    else:
        raise _Unsupported(f"parameter of type {type(value).__name__}")
    if rc != 0:
        raise _Unsupported(f"bind parameter {index}")


def _frame(columns: Sequence[str], types: np.ndarray, ints: np.ndarray, floats: np.ndarray, text: np.ndarray,
           ends: np.ndarray, datetime_columns: set[str], processors: dict[str, Callable[[Any], Any]],
           parse_datetimes: Callable[..., Any], gather: Callable[..., Any]) -> pd.DataFrame:
    """One chunk as pandas builds it from the ``sqlite3`` module's rows (raises _Unsupported otherwise)."""
    n = len(types)
    flat_ends = ends.ravel()
    flat_starts = np.concatenate([[0], flat_ends[:-1]]).reshape(ends.shape)
    out: dict[str, Any] = {}
    for j, name in enumerate(columns):
        kind = types[:, j]
        null = kind == _NULL
        kinds = set(np.unique(kind[~null]).tolist())
        if not kinds:  # all NULL: an object column of None
            out[name] = np.full(n, None, dtype=object)
        elif kinds <= {_INTEGER, _FLOAT}:
            if name in processors or name in datetime_columns:
                raise _Unsupported(f"{name}: numbers in a column with a result processor")
            if kinds == {_INTEGER} and not null.any():
                out[name] = ints[:, j].copy()
            else:  # pandas: ints with floats or None -> float64, None -> NaN
                values = np.where(kind == _INTEGER, ints[:, j].astype(np.float64), floats[:, j])
                out[name] = np.where(null, np.nan, values)
        elif kinds == {_TEXT}:
            starts, stops = flat_starts[:, j], ends[:, j]
            if name in datetime_columns:
                nanoseconds, ok = parse_datetimes(text, starts, stops, ~null)
                if ok:
                    out[name] = np.where(null, np.datetime64("NaT", "ns"), nanoseconds.view("datetime64[ns]"))
                    continue
            strings = _strings(*gather(text, starts, stops, null), null)
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


def _strings(pieces: np.ndarray, offsets: np.ndarray, null: np.ndarray) -> np.ndarray:
    """Python strings (None for NULL) of UTF-8 bytes + offsets (pyarrow builds them in C)."""
    validity = pa.array(~null).buffers()[1]
    array = pa.LargeStringArray.from_buffers(len(null), pa.py_buffer(offsets), pa.py_buffer(pieces), validity,
                                             int(null.sum()))
    try:
        array.validate(full=True)  # invalid UTF-8: the sqlite3 module raises; let it
    except pa.ArrowInvalid as exc:
        raise _Unsupported(str(exc)) from exc
    return array.to_numpy(zero_copy_only=False)
