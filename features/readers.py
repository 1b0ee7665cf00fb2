"""Readers for CSV, Parquet and SQL: raw frames as stored, no validation, no renaming.

Every reader can read a subset of leads: ``lead_ids`` (a list of ids) or ``lead_id_range``
(``(start, stop)``, half-open: ``start <= id < stop``), filtered on ``lead_id_column`` (the
source name of the lead id). SQL filters in the database and streams the result by chunks
(server-side cursor on PostgreSQL), or takes the fast path of :mod:`features.fast_sql` (same frame,
far less per-row Python work) on SQLite and PostgreSQL; Parquet filters while reading (pyarrow); CSV reads by chunks
and filters each chunk. Rows come back with a fresh ``RangeIndex``, in stored order for files (as
the database returns them for SQL; id lists are queried in batches).
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import sqlalchemy as sa

from features import sqlite_arrow
from features.contract import DataConfig, FlatConfig, FlatSourceConfig, SourceConfig, did_you_mean
from features.fast_sql import fast_read, range_clause
from features.schema import (
    EVENTS,
    EXACT_FLOAT_INTS,
    LEAD_ID,
    LEADS,
    OUTCOMES,
    REQUIRED_COLUMNS,
    TABLES,
    to_numbers,
)
from features.spec import LINEAGE_METADATA_KEY, SPEC_METADATA_KEY, FeatureSpec
from features.urls import masked_url

SQL_ID_BATCH = 5_000  # ids per IN (...) clause: below SQLite's and PostgreSQL's parameter limits


@dataclass
class RawTables:
    """The three CRM tables as read (source column names, raw values)."""

    leads: pd.DataFrame
    events: pd.DataFrame
    outcomes: pd.DataFrame


@dataclass(frozen=True)
class LeadSubset:
    """Which leads to read: explicit ids, or a half-open id range ``[start, stop)``."""

    lead_ids: Sequence[Any] | None = None
    lead_id_range: tuple[Any, Any] | None = None

    def __post_init__(self) -> None:
        if self.lead_ids is not None and self.lead_id_range is not None:
            raise ValueError("give lead_ids or lead_id_range, not both")
        # plain Python values: database drivers cannot bind numpy scalars (sqlite3 binds them as BLOBs)
        if self.lead_ids is not None:
            object.__setattr__(self, "lead_ids", pd.Series(list(self.lead_ids)).tolist())
        if self.lead_id_range is not None:
            start, stop = pd.Series(list(self.lead_id_range)).tolist()
            object.__setattr__(self, "lead_id_range", (start, stop))

    @property
    def is_all(self) -> bool:
        return self.lead_ids is None and self.lead_id_range is None

    def mask(self, ids: pd.Series) -> pd.Series:
        """Rows of ``ids`` inside the subset."""
        if self.lead_ids is not None:
            if pd.api.types.is_integer_dtype(ids.dtype) and all(isinstance(i, int) for i in self.lead_ids):
                return ids.isin(list(self.lead_ids))
            # ids as written or parsed, against ids as given: one key per id ("0011" is not 11, "3" is 3)
            return id_keys(ids).isin(set(id_keys(pd.Series(list(self.lead_ids), dtype=object)).dropna()))
        if self.lead_id_range is not None:
            start, stop = self.lead_id_range
            if isinstance(start, str):  # text ids: their bytewise order (Python's str order), stop None: no end
                keys = ids.where(ids.isna() | ids.map(lambda v: isinstance(v, str)), id_keys(ids))
                inside = keys.notna() & keys.map(lambda v: isinstance(v, str) and v >= start
                                                 and (stop is None or v < stop))
                return inside.astype(bool)
            if not pd.api.types.is_integer_dtype(ids.dtype) and isinstance(start, int | float):
                # exact integers (nullable), not floats: a 19-digit id must stay in its range; text that is
                # no number counts as 0 (as the SQL readers compare it): one partition reads it, and reports it
                numbers = to_numbers(ids, errors="coerce", dtype_backend="numpy_nullable")
                ids = numbers.mask(numbers.isna() & ids.notna(), 0)
            return ((ids >= start) & (ids < stop)).fillna(False).astype(bool)
        return pd.Series(True, index=ids.index)


ALL_LEADS = LeadSubset()


def id_keys(values: pd.Series) -> pd.Series:
    """One text key per lead id, whether written or parsed: integers written plainly ("12", "12.0",
    12, 12.0) share the key "12"; other text, zero-padded ids included, is its stripped self."""
    text = values.astype(str).str.strip()
    plain = text.str.fullmatch(r"[+-]?(?:0|[1-9]\d*)(?:\.0*)?")
    text = text.where(~plain, text.str.replace(r"\.0*$", "", regex=True))
    return text.where(values.notna())


def _select_existing(available: Sequence[str], columns: Sequence[str] | None) -> list[str] | None:
    """Requested columns that exist (missing ones are reported by validation, not here)."""
    if columns is None:
        return None
    return [c for c in available if c in set(columns)]


# only empty fields are missing in a CSV file; the project's ``missing_values`` name any other marker
# (pandas' own list would make Namibia's "NA", a "None" seniority or an event type "null" missing)
CSV_MISSING: dict[str, Any] = {"keep_default_na": False, "na_values": [""]}


def read_csv_table(
    path: Path | str,
    *,
    columns: Sequence[str] | None = None,
    lead_id_column: str = LEAD_ID,
    subset: LeadSubset = ALL_LEADS,
    separator: str = ",",
    encoding: str = "utf-8",
    chunksize: int = 500_000,
    ids_as_text: bool | None = None,
) -> pd.DataFrame:
    """Read a CSV file (only ``columns`` that exist, when given), optionally a subset of leads.

    A row with more fields than the header is refused (:func:`check_csv_field_counts`; pandas would
    silently cut it when reading some columns only). Lead ids: ``None`` reads them as text and types
    them with :func:`csv_lead_ids` (zero-padded ids stay text); ``True`` keeps them text (the leads
    table's ids are text); ``False`` lets pandas parse them (the leads table's ids are numbers).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CSV file not found: {path}")
    try:
        header = pd.read_csv(path, sep=separator, encoding=encoding, nrows=0).columns
    except pd.errors.EmptyDataError as exc:  # a 0-byte file (or blank lines only): pandas names no file
        raise DataSourceError(f"{path}: empty CSV file (not even a header line)") from exc
    check_csv_header_names(path, separator, encoding)
    check_csv_field_counts(path, separator, encoding, len(header))
    unnamed = {header[i] for i in unnamed_csv_columns(path, separator, encoding)}  # empty everywhere: not read
    named = [c for c in header if c not in unnamed]
    usecols = _select_existing(named, columns) if columns is not None or not unnamed else named
    reads_ids = lead_id_column in header and (usecols is None or lead_id_column in usecols)
    if not subset.is_all and not reads_ids:
        raise ValueError(f"{path}: lead id column {lead_id_column!r} not found; cannot read a subset")
    # index_col=False: never take a column as the index (pandas does when rows are longer than the header)
    options: dict[str, Any] = {"sep": separator, "encoding": encoding, "usecols": usecols, "index_col": False,
                               "low_memory": False, **CSV_MISSING}
    # every value as written: the contract types them (pandas would type each chunk of a subset read on its
    # own, and a chunk of whole-number codes without a text value would become floats, "1.0" text "1")
    options["dtype"] = {c: str for c in (usecols if usecols is not None else header)
                        if c != lead_id_column or ids_as_text is not False}
    frame = _read_csv_rows(path, subset, chunksize, options, lead_id_column)
    if reads_ids and ids_as_text is False and pd.api.types.is_float_dtype(frame[lead_id_column].dtype) \
            and bool((frame[lead_id_column].abs() >= EXACT_FLOAT_INTS).any()):
        # a missing id made pandas parse every id as a float, and ids above 2**53 lost their last digits:
        # read again as exact nullable integers (4x slower, so only then)
        # (when not all ids are integers, the floats stay: the contract reports the ids it cannot match)
        with contextlib.suppress(ValueError, TypeError, OverflowError):
            frame = _read_csv_rows(path, subset, chunksize, {**options, "dtype": {lead_id_column: "Int64"}},
                                   lead_id_column)
    if reads_ids and ids_as_text is None:
        frame[lead_id_column] = csv_lead_ids(frame[lead_id_column])
    return frame


def _read_csv_rows(path: Path, subset: LeadSubset, chunksize: int, options: dict[str, Any],
                   lead_id_column: str) -> pd.DataFrame:
    """All rows, or the subset's (matched on the ids as written or parsed, chunk by chunk)."""
    if subset.is_all:
        return pd.read_csv(path, **options)
    parts = [chunk[subset.mask(chunk[lead_id_column])] for chunk in pd.read_csv(path, chunksize=chunksize, **options)]
    frame = pd.concat(parts, ignore_index=True) if parts else pd.read_csv(path, nrows=0, **options)
    return frame.reset_index(drop=True)


@functools.lru_cache(maxsize=64)
def _longer_rows(path: str, mtime_ns: int, size: int, separator: str, encoding: str,
                 n_columns: int) -> tuple[tuple[Any, str], ...]:
    """(record number, text) of the first rows with more than ``n_columns`` fields (the header's width as
    pandas reads it; the header itself is record 1), cached per file version."""
    longer: list[tuple[Any, str]] = []

    def on_invalid(row: Any) -> str:
        if row.actual_columns > n_columns and len(longer) < 3:
            longer.append((row.number, row.text[:120]))
        return "skip"  # shorter rows (blank lines too): pandas reads them as missing values, as it always did

    try:
        reader = pa_csv.open_csv(
            path, read_options=pa_csv.ReadOptions(use_threads=False, encoding=encoding, block_size=1 << 24,
                                                  column_names=[f"c{i}" for i in range(n_columns)]),
            parse_options=pa_csv.ParseOptions(delimiter=separator, newlines_in_values=True,
                                              invalid_row_handler=on_invalid),
            convert_options=pa_csv.ConvertOptions(include_columns=[], include_missing_columns=False),
        )
        for _ in reader:
            if len(longer) >= 3:
                break
    except (pa.ArrowException, ValueError):
        return tuple(longer)  # a file pyarrow cannot parse: pandas reports its own error
    return tuple(longer)


class CsvShapeError(pd.errors.ParserError):
    """A CSV file with rows longer than its header (the message names the file)."""


def check_csv_field_counts(path: Path | str, separator: str = ",", encoding: str = "utf-8",
                           n_columns: int | None = None) -> None:
    """Refuse a CSV file with a row that has more fields than its header (a stray separator or a shifted
    row: reading some columns only, pandas would cut it silently); shorter rows are read as missing
    values. One fast pass (pyarrow, no values converted), cached per file version."""
    path = Path(path)
    if len(separator) != 1:
        return  # a regex separator: pandas' own parser is the only judge
    if n_columns is None:
        n_columns = len(pd.read_csv(path, sep=separator, encoding=encoding, nrows=0).columns)
    stat = path.stat()
    longer = _longer_rows(str(path), stat.st_mtime_ns, stat.st_size, separator, encoding, n_columns)
    if longer:
        shown = "; ".join(f"record {n}: {text!r}" if n else repr(text) for n, text in longer)
        raise CsvShapeError(f"{path}: rows with more fields than the header's {n_columns}, e.g. {shown} "
                            "(records counted from the header as 1; a blank line or a quoted line break "
                            "makes a record number differ from the line number)")


def _csv_header_names(path: Path | str, separator: str, encoding: str) -> list[str]:
    """The header's names as written (pandas names an empty one ``Unnamed: N``)."""
    return pd.read_csv(path, sep=separator, encoding=encoding, header=None, nrows=1, dtype=str,
                       keep_default_na=False, index_col=False).iloc[0].tolist()


_OTHER_SEPARATORS = (";", "\t", "|", ",")  # what a one-column header holding one of them was separated by


def check_csv_header_names(path: Path | str, separator: str = ",", encoding: str = "utf-8") -> None:
    """Refuse a CSV header that names a column twice: pandas renames the second copy (``industry.1``), which
    would silently become an attribute of its own (a second ``lead_id``, a feature holding every lead's id).
    Columns without a name are judged by :func:`unnamed_csv_columns`. A header of one column holding another
    separator (``;``, tab, ``|``, ``,``) is refused naming it: no table of the contract has a single column."""
    names = _csv_header_names(path, separator, encoding)
    other = [c for c in _OTHER_SEPARATORS if c != separator and len(names) == 1 and c in str(names[0])]
    if other:  # no table of the contract has one column: the file is separated by another character
        raise DataSourceError(f"{path}: the header is one column {str(names[0])[:80]!r}, which holds {other[0]!r}: "
                              f"set source.csv_separator: {other[0]!r} if the file is separated by it")
    seen: dict[str, int] = {}
    for position, name in enumerate(names, start=1):
        if not name.strip():
            continue
        if name in seen:
            raise DataSourceError(f"{path}: the header names column {name!r} twice (columns {seen[name]} and "
                                  f"{position}); rename one of them")
        seen[name] = position


def blank_positions(names: Sequence[Any]) -> list[int]:
    """Positions (from 0) of the column names that are empty or blanks only."""
    return [i for i, name in enumerate(names) if isinstance(name, str) and not name.strip()]


def _unnamed_with_values(where: str, position: int, values: pd.Series, *, header: bool) -> DataSourceError:
    """The error for a column without a name that holds values (``values``: the rows that do, by row number)."""
    examples = "; ".join(f"row {row}: {value!r}" for row, value in values.head(3).items())
    rows = "row" if len(values) == 1 else "rows"
    return DataSourceError(f"{where}: column {position + 1}{' of the header' if header else ''} has no name "
                           f"but holds values in {len(values)} {rows}, e.g. {examples} (rows counted from 0); name it, "
                           "or remove the column (pandas' to_csv writes its row index so: index=False)")


@functools.lru_cache(maxsize=64)
def _unnamed_csv_columns(path: str, mtime_ns: int, size: int, separator: str, encoding: str) -> tuple[int, ...]:
    names = _csv_header_names(path, separator, encoding)
    positions = blank_positions(names)
    if not positions:
        return ()
    labels = pd.read_csv(path, sep=separator, encoding=encoding, nrows=0, index_col=False).columns
    for position in positions:
        label = labels[position]
        values = pd.concat([chunk[label].dropna() for chunk in pd.read_csv(
            path, sep=separator, encoding=encoding, usecols=[label], dtype=str, index_col=False,
            chunksize=1_000_000, **CSV_MISSING)])
        if len(values):
            raise _unnamed_with_values(str(path), position, values, header=True)
    return tuple(positions)


def unnamed_csv_columns(path: Path | str, separator: str = ",", encoding: str = "utf-8") -> tuple[int, ...]:
    """Positions (from 0) of the CSV header's columns without a name (an empty or blank header field), each
    empty in every row (a separator at the end of every line): they are not read. One without a name that
    holds a value is refused (:class:`DataSourceError` naming the file, the column and rows): as
    ``Unnamed: 3`` it would silently become an attribute, a feature. Cached per file version."""
    path = Path(path)
    if len(separator) != 1:
        return ()
    stat = path.stat()
    return _unnamed_csv_columns(str(path), stat.st_mtime_ns, stat.st_size, separator, encoding)


@functools.lru_cache(maxsize=64)
def _unnamed_parquet_columns(path: str, mtime_ns: int, size: int) -> tuple[int, ...]:
    names = pq.read_schema(path).names
    positions = blank_positions(names)
    if not positions:
        return ()
    file = pq.ParquetFile(path)  # not pq.read_table: Arrow's datasets refuse a name given twice ('' and '')
    for name in dict.fromkeys(names[p] for p in positions):  # only the columns without a name are read
        table = file.read(columns=[name])  # every column of that name, in the file's order
        for i, position in enumerate(p for p in positions if names[p] == name):
            values = table.column(i).to_pandas().dropna()
            if len(values):
                raise _unnamed_with_values(str(path), position, values, header=False)
    return tuple(positions)


def unnamed_parquet_columns(path: Path | str) -> tuple[int, ...]:
    """As :func:`unnamed_csv_columns`, for the columns of a Parquet file named ``''`` (or blanks)."""
    path = Path(path)
    stat = path.stat()
    return _unnamed_parquet_columns(str(path), stat.st_mtime_ns, stat.st_size)


def unnamed_column_notes(source: SourceConfig | FlatSourceConfig, location: str | None, table: str) -> list[str]:
    """Report notes of the columns without a name, empty in every row, that a file's reader left out."""
    if location is None or source.kind == "sql":
        return []  # a SQL column without a name is refused by SqlDatabase.table
    try:
        positions = (unnamed_csv_columns(location, source.csv_separator, source.csv_encoding) if source.kind == "csv"
                     else unnamed_parquet_columns(location))
    except OSError:
        return []
    why = " (a separator at the end of every line?)" if source.kind == "csv" else ""
    return [f"{table}: column {p + 1} of {location} has no name and no value in any row{why}: not read"
            for p in positions]


_ZERO_PADDED = r"\s*[+-]?0\d"


def csv_lead_ids(ids: pd.Series) -> pd.Series:
    """Lead ids read as text, typed as pandas would type them, except that zero-padded ids
    (``000123``) and integers too large for exact numbers stay text: the id the CRM will look the
    score up by must come back as written."""
    present = ids.dropna()
    if present.str.match(_ZERO_PADDED).any():
        return ids
    # nullable: integer ids stay exact integers beside a missing one (a plain parse makes them floats)
    numbers = to_numbers(ids, errors="coerce", dtype_backend="numpy_nullable")
    if numbers[ids.notna()].isna().any():  # not all numbers: text ids
        return ids
    if pd.api.types.is_float_dtype(numbers.dtype):  # decimals among them: floats, as pandas types them
        if (numbers.abs() >= EXACT_FLOAT_INTS).any():
            return ids
        return numbers.astype("float64")
    return numbers if numbers.hasnans else numbers.astype("int64")


def read_parquet_table(
    path: Path | str,
    *,
    columns: Sequence[str] | None = None,
    lead_id_column: str = LEAD_ID,
    subset: LeadSubset = ALL_LEADS,
) -> pd.DataFrame:
    """Read a Parquet file (only ``columns`` that exist, when given), optionally a subset of leads."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Parquet file not found: {path}")
    schema = pq.read_schema(path)
    names = schema.names
    unnamed = unnamed_parquet_columns(path)  # empty everywhere: not read (one with values is refused)
    if unnamed:
        names = [n for i, n in enumerate(names) if i not in unnamed]
        columns = names if columns is None else columns
    usecols = _select_existing(names, columns)
    filters = None
    masked = False  # the subset is applied to the frame, not by the Parquet reader
    if not subset.is_all:
        if lead_id_column not in names:
            raise ValueError(f"{path}: lead id column {lead_id_column!r} not found; cannot read a subset")
        id_type = schema.field(lead_id_column).type
        numeric_ids = pa.types.is_integer(id_type) or pa.types.is_floating(id_type)
        if subset.lead_ids is not None and all(isinstance(i, int) for i in subset.lead_ids) == numeric_ids:
            filters = [(lead_id_column, "in", list(subset.lead_ids))]
        elif subset.lead_id_range is not None and numeric_ids == isinstance(subset.lead_id_range[0], int | float):
            start, stop = subset.lead_id_range  # text: Arrow compares bytewise, stop None: no end
            filters = [(lead_id_column, ">=", start), *([] if stop is None else [(lead_id_column, "<", stop)])]
        else:  # ids stored as text, wanted as numbers (or the reverse): matched as the other readers do
            masked = True
    table = pq.read_table(path, columns=usecols, filters=filters)
    frame = table.to_pandas().reset_index(drop=True)
    if lead_id_column in table.column_names:
        ids = table.column(lead_id_column)
        if pa.types.is_integer(ids.type) and ids.null_count:  # exact integers, not floats, beside a missing id
            frame[lead_id_column] = ids.to_pandas(types_mapper=_NULLABLE_INTEGERS.get).array
    if masked:
        frame = frame[subset.mask(frame[lead_id_column]).to_numpy()].reset_index(drop=True)
    return frame


_NULLABLE_INTEGERS = {pa.int8(): pd.Int8Dtype(), pa.int16(): pd.Int16Dtype(), pa.int32(): pd.Int32Dtype(),
                      pa.int64(): pd.Int64Dtype(), pa.uint8(): pd.UInt8Dtype(), pa.uint16(): pd.UInt16Dtype(),
                      pa.uint32(): pd.UInt32Dtype(), pa.uint64(): pd.UInt64Dtype()}


def _plain_name(name: str) -> str:
    """A column name as a plain ``str`` (SQLAlchemy reflects ``quoted_name``, a str subclass that
    scikit-learn refuses as a feature name)."""
    return name.encode().decode()


def check_sqlite_file(url: str) -> None:
    """A SQLite URL naming a file that does not exist is an error (SQLite would create it empty)."""
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise DataSourceError(f"database URL {masked_url(url)!r}: not a SQLAlchemy URL (e.g. sqlite:///crm.db for a "
                              "SQLite file, postgresql+psycopg://user@host:5432/db)") from exc
    database = parsed.database
    if parsed.get_backend_name() == "sqlite" and database and database != ":memory:" \
            and not database.startswith("file:") and not Path(database).is_file():
        raise DataSourceError(f"SQLite database file not found: {Path(database).resolve()} (from {masked_url(url)!r})")


class SqlDatabase:
    """One database holding tables to read: one engine, each table reflected once.

    ``read`` gives the frame of the generic path (SQLAlchemy + ``pd.read_sql`` by chunks), through
    the fast path of :mod:`features.fast_sql` when the database and the column types allow it
    (``fast=False``: always the generic path). Close it (or use it as a context manager) when it
    created its engine from a URL.
    """

    def __init__(self, url: str | sa.Engine, schema: str | None = None, chunksize: int = 500_000,
                 fast: bool = True) -> None:
        self._owns_engine = isinstance(url, str)
        if isinstance(url, str):
            check_sqlite_file(url)
            try:
                self.engine = sa.create_engine(url)
            except (sa.exc.ArgumentError, ImportError) as exc:
                raise DataSourceError(f"database URL {_safe_url(url)!r}: {exc}") from exc
        else:
            self.engine = url
        self.schema = schema
        self.chunksize = chunksize
        self.fast = fast
        self._tables: dict[str, sa.Table] = {}

    def __enter__(self) -> SqlDatabase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_engine:
            sqlite_arrow.dispose(self.engine)

    def table(self, name: str) -> sa.Table:
        """The reflected table (ValueError naming it when it does not exist)."""
        if name not in self._tables:
            try:
                with sqlite_arrow.sqlite3_module_use(self.engine):
                    table = sa.Table(name, sa.MetaData(), autoload_with=self.engine, schema=self.schema)
                    if self.engine.dialect.name == "sqlite":
                        self._note_declared_types(table)
            except sa.exc.NoSuchTableError:
                raise ValueError(self._missing_table_text(name)) from None
            except sa.exc.ArgumentError as exc:  # SQLAlchemy refuses a column without a name (SQLite has them)
                positions = self._unnamed_columns(name)
                if not positions:
                    raise
                raise DataSourceError(
                    f"table {name!r} in {self.engine.url.render_as_string(hide_password=True)}: column "
                    f"{positions[0] + 1} has no name; rename it (a column without a name cannot be read)") from exc
            self._tables[name] = table
        return self._tables[name]

    def _missing_table_text(self, name: str) -> str:
        """Why ``name`` is not found: the schema that does not exist, or the table of another case (PostgreSQL
        folds only unquoted names), or another schema holding it."""
        database = f"database {self.engine.url!r}"
        where = "" if self.schema is None else f" schema {self.schema!r} of"
        text = f"table {name!r} not found in{where} {database}"
        try:
            return self._missing_table_hint(name, text, database)
        except sa.exc.SQLAlchemyError:  # a role that may not list the catalog: the plain text
            return text

    def _missing_table_hint(self, name: str, text: str, database: str) -> str:
        inspector = sa.inspect(self.engine)
        schemas = inspector.get_schema_names()
        if self.schema is not None and self.schema not in schemas:
            return (f"schema {self.schema!r} (source.db_schema) does not exist in {database}"
                    f"{did_you_mean(self.schema, schemas)}")
        tables = [*inspector.get_table_names(schema=self.schema), *inspector.get_view_names(schema=self.schema)]
        if hint := did_you_mean(name, tables):
            case = [t for t in tables if t.casefold() == name.casefold()]
            return text + hint + (" (PostgreSQL table names are case-sensitive when created quoted: write the "
                                  "name as the database holds it)" if case and self.engine.dialect.name == "postgresql"
                                  else "")
        elsewhere = [other for other in schemas if other != (self.schema or inspector.default_schema_name)
                     and name in inspector.get_table_names(schema=other)]
        if elsewhere:
            return f"{text}; it is in schema {elsewhere[0]!r} (set source.db_schema)"
        return text

    def _unnamed_columns(self, name: str) -> list[int]:
        """SQLite: positions (from 0) of the table's columns named '' or blanks (PostgreSQL has none)."""
        if self.engine.dialect.name != "sqlite":
            return []
        quote = self.engine.dialect.identifier_preparer.quote
        pragma = f"PRAGMA {quote(self.schema)}.table_info" if self.schema else "PRAGMA table_info"
        with self.engine.connect() as conn:
            return blank_positions([row[1] for row in conn.exec_driver_sql(f"{pragma}({quote(name)})")])

    def _note_declared_types(self, table: sa.Table) -> None:
        """SQLite: each column's declared type as written (``column.info["sqlite_declared_type"]``), which
        gives its type affinity exactly (SQLAlchemy's reflected type does not always)."""
        quote = self.engine.dialect.identifier_preparer.quote
        pragma = f"PRAGMA {quote(self.schema)}.table_info" if self.schema else "PRAGMA table_info"
        with self.engine.connect() as conn:
            declared = {row[1]: row[2] for row in conn.exec_driver_sql(f"{pragma}({quote(table.name)})")}
        for column in table.columns:
            if column.name in declared:
                column.info[sqlite_arrow.DECLARED_TYPE] = declared[column.name] or ""

    def plan(self, name: str, columns: Sequence[str] | None, lead_id_column: str,
             subset: LeadSubset, ids_as_text: bool = False) -> tuple[sa.Table, list[str], list[sa.Select]]:
        """The reflected table, the selected columns and the statements (one per id batch) of a read
        (``ids_as_text``: with the lead id also cast to text, as column :data:`EXACT_ID_COLUMN`)."""
        reflected = self.table(name)
        available = [_plain_name(c.name) for c in reflected.columns]
        selected = _select_existing(available, columns) or available
        base = sa.select(*(reflected.c[c] for c in selected))
        if ids_as_text:
            base = base.add_columns(sa.cast(reflected.c[lead_id_column], sa.String(40)).label(EXACT_ID_COLUMN))
        statements = [base]
        if not subset.is_all:
            if lead_id_column not in available:
                raise ValueError(f"table {name!r}: lead id column {lead_id_column!r} not found; cannot read a subset")
            id_col = reflected.c[lead_id_column]
            if subset.lead_ids is not None:
                ids = list(subset.lead_ids)
                statements = [
                    base.where(id_col.in_(ids[i : i + SQL_ID_BATCH])) for i in range(0, len(ids), SQL_ID_BATCH)
                ]
            else:
                start, stop = subset.lead_id_range  # type: ignore[misc]
                statements = [base.where(*range_clause(id_col, self.engine.dialect.name, start, stop))]
        return reflected, selected, statements

    def iter_chunks(self, name: str, *, columns: Sequence[str] | None = None, lead_id_column: str = LEAD_ID,
                    subset: LeadSubset = ALL_LEADS, ids_as_text: bool = False,
                    lenient_times: bool = False) -> Iterator[pd.DataFrame]:
        """The generic path: frames of at most ``chunksize`` rows (server-side cursor on PostgreSQL).
        ``lenient_times``: see :func:`lenient_postgres_times`.

        On a SQLite file the open cursor holds the file's ``sqlite3``-module side of its
        :class:`~features.sqlite_arrow.FileGate` until the generator ends: columnar reads and commits of
        that file wait (in this thread: RuntimeError) until then."""
        _, _, statements = self.plan(name, columns, lead_id_column, subset, ids_as_text)
        with sqlite_arrow.sqlite3_module_use(self.engine), self.engine.connect() as conn, \
                (lenient_postgres_times(conn) if lenient_times else contextlib.nullcontext()):
            streaming = conn.execution_options(stream_results=True, max_row_buffer=self.chunksize)
            for statement in statements:
                for frame in pd.read_sql(statement, streaming, chunksize=self.chunksize):
                    frame.columns = [_plain_name(c) for c in frame.columns]
                    yield frame

    def read(self, name: str, *, columns: Sequence[str] | None = None, lead_id_column: str = LEAD_ID,
             subset: LeadSubset = ALL_LEADS) -> pd.DataFrame:
        """A table (only ``columns`` that exist, when given), or a subset of its leads, as one frame."""
        reflected, selected, statements = self.plan(name, columns, lead_id_column, subset)
        if self.fast:
            frame = fast_read(self.engine, reflected, selected, statements, subset.lead_id_range, lead_id_column,
                              self.chunksize)
            if frame is not None:
                return self._exact_ids(frame, name, columns, lead_id_column, subset)
        frame = self._generic_read(name, columns, lead_id_column, subset, selected)
        return self._exact_ids(frame, name, columns, lead_id_column, subset)

    def _generic_read(self, name: str, columns: Sequence[str] | None, lead_id_column: str, subset: LeadSubset,
                      selected: list[str], ids_as_text: bool = False) -> pd.DataFrame:
        def read(lenient: bool) -> list[pd.DataFrame]:
            return list(self.iter_chunks(name, columns=columns, lead_id_column=lead_id_column, subset=subset,
                                         ids_as_text=ids_as_text, lenient_times=lenient))

        try:
            parts = read(False)
        except sa.exc.DataError:  # a time psycopg cannot load (infinity): read again, those values as text
            if self.engine.dialect.name != "postgresql":
                raise
            parts = read(True)
        if parts:
            return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0].reset_index(drop=True)
        return pd.DataFrame(columns=[*selected, *([EXACT_ID_COLUMN] if ids_as_text else [])])

    def _exact_ids(self, frame: pd.DataFrame, name: str, columns: Sequence[str] | None, lead_id_column: str,
                   subset: LeadSubset) -> pd.DataFrame:
        """``frame``, or when a missing id made its integer ids floats and some are beyond 2**53 (their last
        digits lost), the same read again with the ids cast to text in the query, parsed exactly."""
        ids = frame.get(lead_id_column)
        if ids is None or not pd.api.types.is_float_dtype(ids.dtype) or not bool((ids.abs() >= EXACT_FLOAT_INTS).any()):
            return frame
        try:
            again = self._generic_read(name, columns, lead_id_column, subset, list(frame.columns), ids_as_text=True)
        except (ValueError, sa.exc.SQLAlchemyError) as exc:  # e.g. a DATE value SQLAlchemy's own reader refuses
            raise DataSourceError(f"table {name!r}: lead ids above 2**53 beside a missing id could not be read again "
                                  f"exactly ({str(exc).splitlines()[0][:200]}); fill or remove the rows without a "
                                  "lead id") from exc
        exact = to_numbers(again.pop(EXACT_ID_COLUMN), errors="coerce", dtype_backend="numpy_nullable")
        if pd.api.types.is_integer_dtype(exact.dtype):
            again[lead_id_column] = exact.array
        return again


EXACT_ID_COLUMN = "__leadscore_lead_id_text"

_POSTGRES_TIME_TYPES = ("timestamp", "timestamptz", "date")


@contextlib.contextmanager
def lenient_postgres_times(conn: sa.Connection) -> Iterator[None]:
    """Within it, on a psycopg connection, timestamps and dates no Python ``datetime`` holds (PostgreSQL's
    ``infinity`` and ``-infinity``, years past 9999) come back as their text instead of failing the whole read:
    the contract then reports them as ``wrong_type`` naming table, column and rows (a value listed under
    ``missing_values`` reads as missing). Each value loads through one more Python call, so reads use it only
    after a plain read failed. Other drivers: nothing to do."""
    if conn.dialect.name != "postgresql" or conn.dialect.driver != "psycopg":
        yield
        return
    from psycopg.pq import Format

    adapters = conn.connection.dbapi_connection.adapters  # type: ignore[union-attr]
    replaced: dict[int, type] = {}
    for name in _POSTGRES_TIME_TYPES:
        info = adapters.types.get(name)
        loader = None if info is None else adapters.get_loader(info.oid, Format.TEXT)
        if info is not None and loader is not None and not getattr(loader, "leadscore_lenient", False):
            replaced[info.oid] = loader
            adapters.register_loader(info.oid, _lenient_loader(loader))
    try:
        yield
    finally:  # the pooled connection goes back as it came
        for oid, loader in replaced.items():
            adapters.register_loader(oid, loader)


@functools.cache
def _lenient_loader(base: type) -> type:
    """``base`` (a psycopg text loader), giving a value it refuses as its text."""
    import psycopg

    class Lenient(psycopg.adapt.Loader):  # psycopg's C loaders cannot be subclassed: one is wrapped
        leadscore_lenient = True

        def __init__(self, oid: int, context: Any = None) -> None:
            super().__init__(oid, context)
            self._load = base(oid, context).load

        def load(self, data: Any) -> Any:
            try:
                return self._load(data)
            except psycopg.DataError:
                return bytes(data).decode("utf-8", "replace")

    return Lenient


def read_sql_table(
    url: str | sa.Engine,
    table: str,
    *,
    columns: Sequence[str] | None = None,
    lead_id_column: str = LEAD_ID,
    subset: LeadSubset = ALL_LEADS,
    chunksize: int = 500_000,
    schema: str | None = None,
    fast: bool = True,
) -> pd.DataFrame:
    """Read a database table (or a subset of its leads) into one frame (see :class:`SqlDatabase`)."""
    with SqlDatabase(url, schema, chunksize, fast) as database:
        return database.read(table, columns=columns, lead_id_column=lead_id_column, subset=subset)


class DataSourceError(ValueError):
    """A source that cannot be read as configured (the message names the file, table or database)."""


def sql_error_text(exc: BaseException) -> str:
    """The driver's own first line (SQLAlchemy adds the statement and a help link)."""
    return (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [type(exc).__name__])[0]


def _read_one(
    source: SourceConfig | FlatSourceConfig,
    location: str,
    *,
    columns: Sequence[str] | None,
    lead_id_column: str,
    subset: LeadSubset,
    database: SqlDatabase | None = None,
    ids_as_text: bool | None = None,
    key: str | None = None,
) -> pd.DataFrame:
    """One table or file; read errors become :class:`DataSourceError` naming it (and, for a file, the
    config ``key`` it was given under, such as ``data.source.events``)."""
    try:
        return _read_located(source, location, columns=columns, lead_id_column=lead_id_column, subset=subset,
                             database=database, ids_as_text=ids_as_text)
    except (FileNotFoundError, DataSourceError) as exc:
        if key is None or source.kind == "sql":  # SQL errors name the table and the database already
            raise
        raise type(exc)(f"{key}: {exc}") from exc


def _read_located(
    source: SourceConfig | FlatSourceConfig,
    location: str,
    *,
    columns: Sequence[str] | None,
    lead_id_column: str,
    subset: LeadSubset,
    database: SqlDatabase | None,
    ids_as_text: bool | None,
) -> pd.DataFrame:
    try:
        if source.kind == "csv":
            return read_csv_table(location, columns=columns, lead_id_column=lead_id_column, subset=subset,
                                  separator=source.csv_separator, encoding=source.csv_encoding,
                                  chunksize=source.chunksize, ids_as_text=ids_as_text)
        if source.kind == "parquet":
            return read_parquet_table(location, columns=columns, lead_id_column=lead_id_column, subset=subset)
        if database is not None:
            return database.read(location, columns=columns, lead_id_column=lead_id_column, subset=subset)
        assert source.url is not None  # checked by the config model
        return read_sql_table(source.url, location, columns=columns, lead_id_column=lead_id_column,
                              subset=subset, chunksize=source.chunksize, schema=source.db_schema)
    except UnicodeDecodeError as exc:
        raise DataSourceError(f"{location}: not {source.csv_encoding} text ({exc.reason}); "
                              "set source.csv_encoding") from exc
    except CsvShapeError as exc:
        raise DataSourceError(f"malformed CSV: {exc}") from exc
    except pd.errors.ParserError as exc:
        raise DataSourceError(f"{location}: malformed CSV: {exc}".strip()) from exc
    except pa.ArrowException as exc:
        raise DataSourceError(f"{location}: not a readable Parquet file: {exc}") from exc
    except sa.exc.SQLAlchemyError as exc:
        url = source.url if isinstance(getattr(source, "url", None), str) else "the database"
        raise DataSourceError(f"table {location!r} in {_safe_url(url)}: {sql_error_text(exc)}") from exc


def _safe_url(url: str) -> str:
    """The URL with any password masked."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return masked_url(url)


def read_crm(
    config: DataConfig,
    *,
    lead_ids: Sequence[Any] | None = None,
    lead_id_range: tuple[Any, Any] | None = None,
    database: SqlDatabase | None = None,
    used_columns: Mapping[str, Collection[str]] | None = None,
) -> RawTables:
    """Read the three tables named in ``config.source`` (all leads, or a subset on every table).

    Leads are read whole (all attribute columns); events and outcomes only their mapped columns.
    ``database``: an open :class:`SqlDatabase` on ``config.source.url`` to reuse (SQL sources: a job
    reading many partitions keeps one engine and reflects each table once). ``used_columns``: for
    each table named in it, read only its required columns and these (canonical names; lead
    attributes by their source name): a job that uses few columns (rescoring) neither reads nor
    validates the others.
    """
    subset = LeadSubset(lead_ids=lead_ids, lead_id_range=lead_id_range)
    frames = {}
    for table in TABLES:
        mapping = config.columns.canonical_by_source(table)
        columns = None if table == LEADS else list(mapping)
        if used_columns is not None and table in used_columns:
            wanted = {*REQUIRED_COLUMNS[table], *used_columns[table]}
            columns = [source for source, canonical in mapping.items() if canonical in wanted]
            if table == LEADS:
                columns += [c for c in used_columns[table] if c not in mapping.values() and c not in columns]
        if config.source.location(table) is None:  # absent table (``events: null``): empty, mapped columns
            frames[table] = pd.DataFrame({c: pd.Series(dtype=object) for c in mapping if columns is None or c in columns})
            continue
        id_column = config.columns.source_name(table, LEAD_ID)
        # CSV: the leads table decides whether ids are text (zero-padded ones too); the other tables follow
        ids_as_text = None
        leads_ids = frames[LEADS].get(config.columns.source_name(LEADS, LEAD_ID)) if LEADS in frames else None
        if table != LEADS and leads_ids is not None and len(leads_ids):
            ids_as_text = not pd.api.types.is_numeric_dtype(leads_ids.dtype)
        frame = _read_one(
            config.source, config.source.location(table), columns=columns,
            lead_id_column=id_column, subset=subset, database=database, ids_as_text=ids_as_text,
            key=f"data.source.{table}",
        )
        if lead_id_range is not None and id_column in frame.columns:
            # a marker id ('NA', '') sorts inside a text range: a range job set its rows aside up front
            # (set_aside_rows_without_lead_id), its partition must not report them again
            frame = frame[~_missing_id_mask(frame[id_column], config.missing_values).to_numpy()].reset_index(drop=True)
        frames[table] = frame
    return RawTables(leads=frames[LEADS], events=frames[EVENTS], outcomes=frames[OUTCOMES])


def read_flat(
    config: FlatConfig,
    *,
    lead_ids: Sequence[Any] | None = None,
    lead_id_range: tuple[Any, Any] | None = None,
) -> pd.DataFrame:
    """Read the flat table named in ``config.source`` (all rows, or a subset of ids)."""
    subset = LeadSubset(lead_ids=lead_ids, lead_id_range=lead_id_range)
    source = config.source
    location = source.table if source.kind == "sql" else source.path
    assert location is not None  # checked by the config model
    return _read_one(source, location, columns=None, lead_id_column=config.id_column, subset=subset,
                     key="data.source.path")


def read_lead_ids(data: DataConfig, text_ids: bool = False) -> np.ndarray:
    """Sorted distinct lead ids of the leads table (int64); string ids are refused with a clear error, or
    (``text_ids``) returned as a sorted object array of ``str`` (Python's order of str: the bytewise order of
    their UTF-8, the order :func:`features.fast_sql.range_clause` compares text ranges in)."""
    source = data.source
    column = data.columns.source_name(LEADS, LEAD_ID)
    location = source.location(LEADS)
    if source.kind == "sql":
        assert source.url is not None
        frame = read_sql_table(source.url, location, columns=[column], lead_id_column=column,
                               chunksize=source.chunksize, schema=source.db_schema)
    elif source.kind == "parquet":
        frame = read_parquet_table(location, columns=[column], lead_id_column=column)
    else:
        frame = read_csv_table(location, columns=[column], lead_id_column=column, ids_as_text=True,
                               separator=source.csv_separator, encoding=source.csv_encoding)
    if column not in frame.columns:
        raise ValueError(f"table {LEADS!r}: lead id column {column!r} not found")
    values = frame[column]
    values = values[~(_missing_id_mask(values, data.missing_values).to_numpy())]  # counted, refused or quarantined apart
    if source.kind == "sql" and values.dtype == object and _numeric_sqlite_id(source, location, column):
        text = values.map(lambda v: isinstance(v, str | bytes)).to_numpy(dtype=bool)
        values = to_numbers(values[~text])  # so are text ids in a numeric column (no id range holds them)
    if source.kind == "csv" and len(values):
        values = csv_lead_ids(values)  # typed once, without the markers
    if text_ids and not pd.api.types.is_numeric_dtype(values.dtype) and len(values):
        return np.array(sorted(set(map(str, values.tolist()))), dtype=object)
    if not pd.api.types.is_numeric_dtype(values.dtype) and len(values):
        numbers = to_numbers(values, errors="coerce")
        padded = values.astype(str).str.match(_ZERO_PADDED)
        examples = values[numbers.isna().to_numpy() | padded.to_numpy()].head(5).tolist() or values.head(5).tolist()
        raise ValueError(
            f"table {LEADS!r}, column {column!r}: partitioning by integer lead-id ranges; the ids are text "
            f"(zero-padded or not numbers), e.g. {examples}; map an integer key column as the lead id "
            "(columns.leads.lead_id) in the leads, events and outcomes tables"
        )
    ids = to_numbers(values, errors="coerce")
    bad = ids.isna() | (ids != np.floor(ids))
    if bad.any():
        examples = values[bad.to_numpy()].head(5).tolist()
        raise ValueError(
            f"table {LEADS!r}, column {column!r}: partitioning by integer lead-id ranges; "
            f"non-integer ids such as {examples}"
        )
    return np.unique(ids.to_numpy(dtype=np.int64))


def _missing_id_clause(id_col: sa.Column, markers: Sequence[str], dialect: str) -> Any:
    """SQL: the lead id is null, or one of the missing markers (text columns, and text kept by SQLite in a
    numeric column: a whole load reads ``''`` there as missing too)."""
    missing = id_col.is_(None)
    if markers and isinstance(id_col.type, sa.String):  # markers live in text columns
        missing = sa.or_(missing, id_col.in_(list(markers)))
    elif markers and (text := _text_in_numeric_id_clause(id_col, dialect)) is not None:
        missing = sa.or_(missing, sa.and_(text, id_col.in_(list(markers))))
    return missing


def _missing_id_mask(ids: pd.Series, markers: Sequence[str]) -> pd.Series:
    """Files: the lead id is missing, or one of the missing markers (text columns only)."""
    marked = ids.isin(list(markers)) if ids.dtype == object else False
    return ids.isna() | marked


def _text_in_numeric_id_clause(id_col: sa.Column, dialect: str, markers: Sequence[str] = ()) -> Any:
    """SQLite: the lead id is text or bytes in a column of numeric affinity (INTEGER, REAL, NUMERIC), where
    a numeric id range compares it as greater than every number: no range holds it; ``markers`` (missing
    values: counted as missing ids) left out. None elsewhere."""
    if dialect != "sqlite":
        return None
    affinity = sqlite_arrow.type_affinity(id_col.info.get(sqlite_arrow.DECLARED_TYPE))
    if affinity not in ("INTEGER", "REAL", "NUMERIC"):
        return None  # text columns: range_clause compares their value as a number
    text = sa.func.typeof(id_col).in_(["text", "blob"])
    return sa.and_(text, id_col.not_in(list(markers))) if markers else text


def _is_sqlite(source: SourceConfig) -> bool:
    return source.kind == "sql" and source.url is not None and source.url.startswith("sqlite")


def _numeric_sqlite_id(source: SourceConfig, location: str | None, column: str) -> bool:
    """Whether the lead id ``column`` of a table is a SQLite column of numeric affinity (where text ids are
    set apart up front by :func:`text_lead_ids_in_numeric_columns`)."""
    if location is None or not _is_sqlite(source):
        return False
    with SqlDatabase(source.url, source.db_schema) as database:
        reflected = database.table(location)
        return column in reflected.c and _text_in_numeric_id_clause(reflected.c[column], "sqlite") is not None


def text_lead_ids_in_numeric_columns(data: DataConfig) -> dict[str, tuple[int, list[Any]]]:
    """SQLite sources: per table, rows whose lead id is text in a numeric column (see
    :func:`_text_in_numeric_id_clause`) and up to 5 of those ids. Jobs that read by lead-id ranges
    must refuse or quarantine them up front: no partition would read them."""
    source = data.source
    found: dict[str, tuple[int, list[Any]]] = {}
    if not _is_sqlite(source):
        return found
    with SqlDatabase(source.url, source.db_schema) as database:
        for table in TABLES:
            location = source.location(table)
            column = data.columns.source_name(table, LEAD_ID)
            if location is None:
                continue
            reflected = database.table(location)
            if column not in reflected.c:
                continue
            clause = _text_in_numeric_id_clause(reflected.c[column], "sqlite", data.missing_values)
            if clause is None:
                continue
            with database.engine.connect() as conn:
                n = int(conn.execute(sa.select(sa.func.count()).select_from(reflected).where(clause)).scalar_one())
                if n:
                    examples = conn.execute(sa.select(reflected.c[column]).where(clause).limit(5)).scalars().all()
                    found[table] = (n, list(examples))
    return found


def read_rows_without_lead_id(data: DataConfig, table: str, *, text_in_numeric: bool = False) -> pd.DataFrame:
    """The whole rows of ``table`` whose lead id is missing (null or a missing marker), as stored
    (index: their row number in files; their order in the result for SQL); with ``text_in_numeric``, the
    SQLite rows whose lead id is text in a numeric column instead (:func:`text_lead_ids_in_numeric_columns`)."""
    source = data.source
    location = source.location(table)
    column = data.columns.source_name(table, LEAD_ID)
    if location is None or (text_in_numeric and source.kind != "sql"):
        return pd.DataFrame()
    if source.kind == "sql":
        assert source.url is not None
        with SqlDatabase(source.url, source.db_schema) as database:
            reflected = database.table(location)
            dialect = database.engine.dialect.name
            clause = (_text_in_numeric_id_clause(reflected.c[column], dialect, data.missing_values) if text_in_numeric
                      else _missing_id_clause(reflected.c[column], data.missing_values, dialect))
            if clause is None:
                return pd.DataFrame()
            query = sa.select(reflected).where(clause)
            with database.engine.connect() as conn, lenient_postgres_times(conn):
                return pd.read_sql(query, conn)
    if source.kind == "parquet":
        frame = read_parquet_table(location)
        return frame[_missing_id_mask(frame[column], data.missing_values).to_numpy()]
    check_csv_field_counts(location, source.csv_separator, source.csv_encoding)
    options: dict[str, Any] = {"sep": source.csv_separator, "encoding": source.csv_encoding, "index_col": False,
                               "low_memory": False, "dtype": {column: str}, "chunksize": source.chunksize,
                               **CSV_MISSING}
    parts = [chunk[_missing_id_mask(chunk[column], data.missing_values).to_numpy()]
             for chunk in pd.read_csv(location, **options)]  # chunk by chunk: only these rows are kept
    return pd.concat(parts) if parts else pd.DataFrame()


def count_null_lead_ids(data: DataConfig) -> dict[str, int]:
    """Rows without a lead id (null, or one of ``missing_values``), per table (reads only the lead-id
    column; SQL counts in the database)."""
    source = data.source
    counts: dict[str, int] = {}
    for table in TABLES:
        location = source.location(table)
        if location is None:
            continue
        column = data.columns.source_name(table, LEAD_ID)
        if source.kind == "sql":
            assert source.url is not None
            with SqlDatabase(source.url, source.db_schema) as database:
                reflected = database.table(location)
                if column not in reflected.c:
                    continue  # reported by validation as a missing column
                missing = _missing_id_clause(reflected.c[column], data.missing_values, database.engine.dialect.name)
                query = sa.select(sa.func.count()).select_from(reflected).where(missing)
                with database.engine.connect() as conn:
                    counts[table] = int(conn.execute(query).scalar_one())
            continue
        if source.kind == "parquet":
            frame = read_parquet_table(location, columns=[column])
        else:
            frame = read_csv_table(location, columns=[column], lead_id_column=column, ids_as_text=True,
                                   separator=source.csv_separator,
                                   encoding=source.csv_encoding)
        if column in frame.columns:
            counts[table] = int(_missing_id_mask(frame[column], data.missing_values).sum())
        else:
            counts[table] = 0
    return counts


def lead_id_range_text(start: Any, stop: Any) -> str:
    """A half-open lead-id range ``[start, stop)`` of :func:`lead_id_ranges` in words (``lead ids 301 to 600``);
    an open end (``None``, or the int64 bound a range reader uses for one) is said so."""
    if isinstance(start, str):
        return f"lead ids from {start!r}" + ("" if stop is None else f" up to {stop!r}")
    bounds = np.iinfo(np.int64)
    if start is None or start == bounds.min:
        return f"lead ids up to {stop - 1}"
    return f"lead ids from {start}" if stop is None or stop == bounds.max else f"lead ids {start} to {stop - 1}"


def lead_id_ranges(lead_ids: np.ndarray, per_partition: int) -> list[tuple[Any, Any]]:
    """Half-open ``[start, stop)`` id ranges of ``per_partition`` consecutive existing ids each, covering all.
    Text ids (an object array of str, :func:`read_lead_ids` with ``text_ids``): ranges of the bytewise order,
    the last one open-ended (``stop`` None: no text sorts after every other)."""
    if lead_ids.dtype == object and len(lead_ids) and isinstance(lead_ids[0], str):
        texts = sorted(set(lead_ids.tolist()))
        starts = texts[::per_partition]
        return list(zip(starts, [*starts[1:], None], strict=True))
    ids = np.unique(np.asarray(lead_ids, dtype=np.int64))
    if ids.size == 0:
        return []
    if ids[-1] == np.iinfo(np.int64).max:  # its range would have to end past the largest 64-bit integer
        raise ValueError(f"lead id {ids[-1]} is the largest 64-bit integer: a half-open id range cannot hold it, so "
                         "jobs that read by lead-id ranges (rescore, the distributed build) cannot take it; "
                         "give that lead another id")
    starts = ids[::per_partition]
    stops = np.append(starts[1:], ids[-1] + 1)
    return [(int(a), int(b)) for a, b in zip(starts, stops, strict=True)]


def read_training_set_spec(path: Path | str) -> FeatureSpec:
    """The feature spec a training set file was built with (from its Parquet metadata)."""
    metadata = pq.read_schema(path).metadata or {}
    if SPEC_METADATA_KEY not in metadata:
        raise ValueError(f"{path}: no feature spec in this Parquet file (not written by `leadscore features build`)")
    return FeatureSpec.from_dict(json.loads(metadata[SPEC_METADATA_KEY]))


def read_training_set_lineage(path: Path | str) -> dict[str, Any]:
    """What a training set file was built from (its Parquet metadata, written by `leadscore features build`):
    ``project``, ``config_hash``, ``seed``, ``code``, ``versions`` and ``data_fingerprint`` per table."""
    metadata = pq.read_schema(path).metadata or {}
    if LINEAGE_METADATA_KEY not in metadata:
        raise ValueError(f"{path}: no lineage in this Parquet file (written before `leadscore features build` "
                         "recorded it, or not by it)")
    return json.loads(metadata[LINEAGE_METADATA_KEY])
