"""Chunked, all-or-nothing writers of canonical tables to CSV, Parquet or a SQL database.

Layout: ``csv`` and ``parquet`` write one file per table into the directory ``dest``
(``<dest>/<table>.csv`` / ``<dest>/<table>.parquet``); ``sql`` writes one table per table name into
the database at the SQLAlchemy URL ``dest`` (a SQLite file or PostgreSQL; in-memory SQLite is refused).

Chunks go to staging files/tables first; :meth:`TableWriter.close` swaps them in at once (files
renamed, tables renamed in one transaction, then an index on ``lead_id``). An exception inside the
``with`` block, or a failing close, removes everything this writer created (a SQLite file it
created included) and leaves the destination as it was.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import uuid
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import sqlalchemy as sa

from features.schema import LEAD_ID
from features.spec import LINEAGE_METADATA_KEY, SPEC_METADATA_KEY

if TYPE_CHECKING:
    from features.build import TrainingSet

Format = Literal["csv", "parquet", "sql"]
FORMATS = ("csv", "parquet", "sql")
SQLITE_BATCH_ROWS = 50_000


class DestinationExistsError(FileExistsError):
    """The destination already holds a table and ``overwrite`` is False (or one appeared while writing)."""

    def __init__(self, table: str, where: str, while_writing: bool = False) -> None:
        self.table = table
        self.where = where  # the file, or "database <url>"
        self.while_writing = while_writing
        super().__init__(f"table {table!r} appeared in {where} while writing" if while_writing else
                         f"table {table!r} already exists in {where}; pass overwrite=True to replace it")

    def __reduce__(self):  # pickles by its fields, not by the formatted message
        return type(self), (self.table, self.where, self.while_writing)


def is_url(dest: str | os.PathLike[str]) -> bool:
    """Whether ``dest`` reads as a URL (``scheme://...``) rather than a folder path."""
    return re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*://", str(dest)) is not None


def _to_arrow(table: str, frame: pd.DataFrame) -> pa.Table:
    """Frame -> Arrow table; timezone-aware timestamps become naive UTC."""
    frame = frame.reset_index(drop=True)
    for column in frame.columns:
        if isinstance(frame[column].dtype, pd.DatetimeTZDtype):
            frame[column] = frame[column].dt.tz_convert("UTC").dt.tz_localize(None)
    try:
        return pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise ValueError(f"table {table!r}: cannot convert to a columnar table: {exc}") from exc


def _plain(arrow: pa.Table, timestamp_unit: str | None = None) -> pa.Table:
    """Dictionary columns decoded to their values; timestamps optionally cast to ``timestamp_unit``."""
    columns = []
    for col in arrow.columns:
        if pa.types.is_dictionary(col.type):
            col = col.cast(col.type.value_type)
        if timestamp_unit and pa.types.is_timestamp(col.type):
            col = col.cast(pa.timestamp(timestamp_unit), safe=False)
        columns.append(col)
    return pa.table(columns, names=arrow.column_names)


def _conform(table: str, arrow: pa.Table, schema: pa.Schema) -> pa.Table:
    """Cast a later chunk to the first chunk's schema; clear error naming the column otherwise."""
    if arrow.column_names != schema.names:
        raise ValueError(f"table {table!r}: columns {arrow.column_names} differ from the first chunk's {schema.names}")
    if arrow.schema.equals(schema):
        return arrow
    columns = []
    for name, field in zip(schema.names, schema, strict=True):
        col = arrow.column(name)
        if not col.type.equals(field.type):
            try:
                if pa.types.is_dictionary(col.type):
                    col = col.cast(col.type.value_type)
                col = col.cast(field.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
                raise ValueError(
                    f"table {table!r}, column {name!r}: type {arrow.column(name).type} does not match "
                    f"the first chunk's {field.type}") from exc
        columns.append(col)
    return pa.table(columns, schema=schema)


def _sql_type(name: str, dtype: Any) -> sa.types.TypeEngine:
    if pd.api.types.is_bool_dtype(dtype):
        return sa.Boolean()
    if pd.api.types.is_integer_dtype(dtype):
        return sa.BigInteger()
    if pd.api.types.is_float_dtype(dtype):
        return sa.Float(precision=53)
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return sa.DateTime(timezone=False)
    return sa.Text()


class TableWriter:
    """Append chunks of tables to ``dest`` (a directory for csv/parquet, a SQLAlchemy URL for sql).

    Use as a context manager; every chunk of one table must have the same columns. Refuses tables
    that already exist at the destination unless ``overwrite`` (they are then replaced at close).
    """

    def __init__(self, dest: str | os.PathLike[str], fmt: Format, overwrite: bool = False) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"fmt must be one of {FORMATS}, got {fmt!r}")
        self.dest = str(dest)
        self.fmt = fmt
        self.overwrite = overwrite
        self._token = uuid.uuid4().hex[:8]
        self._schemas: dict[str, pa.Schema] = {}
        self._staged: dict[str, Any] = {}  # table -> staging path or staging table name
        self._parquet: dict[str, pq.ParquetWriter] = {}
        self._csv: dict[str, tuple[Any, pa_csv.CSVWriter]] = {}
        self._created_dir = False
        self._new_sqlite_file: Path | None = None  # a SQLite file this writer creates: removed on abort
        self._engine: sa.Engine | None = None
        self._closed = False
        if fmt == "sql":
            if not is_url(self.dest):
                raise ValueError(f"sql destination {self.dest!r} is not a SQLAlchemy URL (e.g. sqlite:///crm.db); "
                                 "csv or parquet write into a folder")
            self._new_sqlite_file = _new_sqlite_file(self.dest)
            self._engine = sa.create_engine(self.dest)
        else:
            if is_url(self.dest):
                raise ValueError(f"{fmt} destination {self.dest!r} is a URL; {fmt} writes files into a folder "
                                 "(a database URL takes fmt='sql')")
            path = Path(self.dest)
            if path.exists() and not path.is_dir():
                raise NotADirectoryError(f"destination {self.dest!r} exists and is not a directory")
            if not path.exists():
                path.mkdir(parents=True)
                self._created_dir = True

    # -- context manager --------------------------------------------------------------------------

    def __enter__(self) -> TableWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    # -- public -----------------------------------------------------------------------------------

    @property
    def tables(self) -> list[str]:
        """Tables written so far."""
        return list(self._staged)

    def write(self, table: str, frame: pd.DataFrame) -> None:
        """Append one chunk of ``table``."""
        if self._closed:
            raise RuntimeError("TableWriter is closed")
        if not table.isidentifier():
            raise ValueError(f"table name {table!r} must be a plain identifier")
        try:
            self._write(table, frame)
        except BaseException:
            self.abort()
            raise

    def close(self) -> None:
        """Swap every staged table into place (all or nothing)."""
        if self._closed:
            return
        try:
            self._finish_files() if self.fmt != "sql" else self._finish_sql()
        except BaseException:
            self.abort()
            raise
        self._closed = True
        if self._engine is not None:
            self._engine.dispose()

    def abort(self) -> None:
        """Remove everything this writer created; the destination is left as it was."""
        if self._closed:
            return
        self._closed = True
        for writer in self._parquet.values():
            _quietly(writer.close)
        for handle, writer in self._csv.values():
            _quietly(writer.close)
            _quietly(handle.close)
        if self.fmt == "sql":
            assert self._engine is not None
            with self._engine.begin() as conn:
                for staging in self._staged.values():
                    conn.execute(sa.text(f"DROP TABLE IF EXISTS {_quote(conn, staging)}"))
                kept = sa.inspect(conn).get_table_names() if self._new_sqlite_file is not None else []
            self._engine.dispose()
            if self._new_sqlite_file is not None and not kept:  # none but ours was ever in it
                for suffix in ("", "-journal", "-wal", "-shm"):
                    _quietly(Path(f"{self._new_sqlite_file}{suffix}").unlink)
        else:
            for staging in self._staged.values():
                Path(staging).unlink(missing_ok=True)
            if self._created_dir:
                _quietly(Path(self.dest).rmdir)  # only if empty

    # -- internals --------------------------------------------------------------------------------

    def _final_path(self, table: str) -> Path:
        return Path(self.dest) / f"{table}.{self.fmt}"

    def _exists(self, table: str) -> bool:
        if self.fmt == "sql":
            assert self._engine is not None
            return sa.inspect(self._engine).has_table(table)
        return self._final_path(table).exists()

    def _write(self, table: str, frame: pd.DataFrame) -> None:
        arrow = _to_arrow(table, frame)
        if table not in self._schemas:
            if self._exists(table) and not self.overwrite:
                where = str(self._final_path(table)) if self.fmt != "sql" else f"database {self._safe_url()}"
                raise DestinationExistsError(table, where)
            self._schemas[table] = arrow.schema
            self._start(table, frame)
        else:
            arrow = _conform(table, arrow, self._schemas[table])
        if self.fmt == "parquet":
            self._parquet[table].write_table(arrow)
        elif self.fmt == "csv":
            self._csv[table][1].write_table(_plain(arrow))
        else:
            self._write_sql(table, arrow)

    def _start(self, table: str, frame: pd.DataFrame) -> None:
        schema = self._schemas[table]
        if self.fmt in ("csv", "parquet"):
            staging = Path(self.dest) / f".{table}.{self.fmt}.partial-{self._token}"
            self._staged[table] = str(staging)
            if self.fmt == "parquet":
                self._parquet[table] = pq.ParquetWriter(staging, schema)
            else:
                handle = staging.open("wb")
                plain = _plain(schema.empty_table()).schema
                self._csv[table] = (handle, pa_csv.CSVWriter(handle, plain))
            return
        assert self._engine is not None
        staging = f"{table}__staging_{self._token}"
        self._staged[table] = staging
        metadata = sa.MetaData()
        sa.Table(staging, metadata, *(sa.Column(str(c), _sql_type(str(c), frame[c].dtype)) for c in frame.columns))
        metadata.create_all(self._engine)

    def _write_sql(self, table: str, arrow: pa.Table) -> None:
        assert self._engine is not None
        staging = self._staged[table]
        if arrow.num_rows == 0:
            return
        if self._engine.dialect.name == "postgresql":
            self._copy_postgres(staging, arrow)
        else:
            self._insert_sqlite(staging, arrow)

    def _copy_postgres(self, staging: str, arrow: pa.Table) -> None:
        buffer = io.BytesIO()
        pa_csv.write_csv(_plain(arrow, timestamp_unit="us"), buffer, pa_csv.WriteOptions(include_header=False))
        columns = ", ".join(f'"{c}"' for c in arrow.column_names)
        raw = self._engine.raw_connection()  # type: ignore[union-attr]
        try:
            statement = f'COPY "{staging}" ({columns}) FROM STDIN (FORMAT csv)'
            with raw.driver_connection.cursor() as cursor, cursor.copy(statement) as copy:
                copy.write(buffer.getbuffer())
            raw.commit()
        finally:
            raw.close()

    def _insert_sqlite(self, staging: str, arrow: pa.Table) -> None:
        plain = _plain(arrow, timestamp_unit="us")
        columns = []
        for col in plain.columns:
            if pa.types.is_timestamp(col.type):
                col = col.cast(pa.string())  # 'YYYY-MM-DD HH:MM:SS.ffffff', SQLAlchemy's SQLite format
            columns.append(col.to_pylist())
        rows = list(zip(*columns, strict=True))
        placeholders = ", ".join("?" for _ in plain.column_names)
        names = ", ".join(f'"{c}"' for c in plain.column_names)
        raw = self._engine.raw_connection()  # type: ignore[union-attr]
        try:
            cursor = raw.cursor()
            cursor.execute("PRAGMA synchronous = OFF")
            cursor.execute("PRAGMA temp_store = MEMORY")
            cursor.execute("PRAGMA cache_size = -200000")
            for begin in range(0, len(rows), SQLITE_BATCH_ROWS):
                cursor.executemany(f'INSERT INTO "{staging}" ({names}) VALUES ({placeholders})',
                                   rows[begin: begin + SQLITE_BATCH_ROWS])
            raw.commit()
        except BaseException:
            raw.rollback()
            raise
        finally:
            raw.close()

    def _finish_files(self) -> None:
        for writer in self._parquet.values():
            writer.close()
        for handle, writer in self._csv.values():
            writer.close()
            handle.close()
        self._parquet.clear()
        self._csv.clear()
        for table in self._staged:
            if self._final_path(table).exists() and not self.overwrite:
                raise DestinationExistsError(table, str(self._final_path(table)), while_writing=True)
        for table, staging in self._staged.items():
            os.replace(staging, self._final_path(table))

    def _finish_sql(self) -> None:
        assert self._engine is not None
        engine = self._engine
        if engine.dialect.name == "sqlite":
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
                try:
                    self._swap_tables(conn)
                    conn.exec_driver_sql("COMMIT")
                except BaseException:
                    conn.exec_driver_sql("ROLLBACK")
                    raise
        else:
            with engine.begin() as conn:
                self._swap_tables(conn)

    def _swap_tables(self, conn: sa.Connection) -> None:
        inspector = sa.inspect(conn)
        existing = set(inspector.get_table_names())
        for table, staging in self._staged.items():
            if table in existing:
                if not self.overwrite:
                    raise DestinationExistsError(table, f"database {self._safe_url()}", while_writing=True)
                conn.execute(sa.text(f"DROP TABLE {_quote(conn, table)}"))
            conn.execute(sa.text(f"ALTER TABLE {_quote(conn, staging)} RENAME TO {_quote(conn, table)}"))
            if LEAD_ID in self._schemas[table].names:
                index = f"ix_{table}_{LEAD_ID}"
                conn.execute(sa.text(f"DROP INDEX IF EXISTS {_quote(conn, index)}"))
                conn.execute(sa.text(f"CREATE INDEX {_quote(conn, index)} ON {_quote(conn, table)} ({LEAD_ID})"))

    def _safe_url(self) -> str:
        assert self._engine is not None
        return self._engine.url.render_as_string(hide_password=True)


def _new_sqlite_file(dest: str) -> Path | None:
    """Check a sql destination before any driver loads; the SQLite file it would create, if any.

    Refuses databases other than SQLite and PostgreSQL, and in-memory SQLite, where every table
    written vanishes when the writer closes.
    """
    try:
        url = sa.engine.make_url(dest)
    except sa.exc.ArgumentError as exc:
        raise ValueError(f"sql destination {dest!r} is not a valid SQLAlchemy URL: {exc}") from exc
    backend = url.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise ValueError(f"sql destination must be SQLite or PostgreSQL, got {backend!r}")
    if backend != "sqlite":
        return None
    if (not url.database or url.database == ":memory:" or url.database.startswith("file::memory:")
            or url.query.get("mode") == "memory" or "mode=memory" in url.database):  # URI filenames too
        raise ValueError(f"sql destination {dest!r} is an in-memory SQLite database: the tables would vanish "
                         "when the writer closes; name a file (e.g. sqlite:///crm.db)")
    if url.database.startswith("file:"):
        return None  # a URI filename: left alone
    path = Path(url.database)
    return None if path.exists() else path


def _quote(conn: sa.Connection, name: str) -> str:
    return conn.dialect.identifier_preparer.quote(name)


def _quietly(action: Any) -> None:
    """Run a cleanup step; its own failure must not mask the original error."""
    with contextlib.suppress(Exception):
        action()


def write_tables(tables: dict[str, pd.DataFrame], dest: str | os.PathLike[str], fmt: Format,
                 overwrite: bool = False) -> None:
    """Write whole frames (one chunk each) to ``dest``, all or nothing."""
    with TableWriter(dest, fmt, overwrite=overwrite) as writer:
        for table, frame in tables.items():
            writer.write(table, frame)


def write_training_set(frame: pd.DataFrame, spec_json: str, path: Path | str,
                       lineage: Mapping[str, Any] | None = None) -> None:
    """Write snapshot rows to Parquet with their feature spec (JSON) and, when given, their lineage (JSON:
    :func:`training.lineage.lineage_record`) in the file's metadata."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    metadata = {**(table.schema.metadata or {}), SPEC_METADATA_KEY: spec_json.encode()}
    if lineage is not None:
        metadata[LINEAGE_METADATA_KEY] = json.dumps(lineage, sort_keys=True).encode()
    table = table.replace_schema_metadata(metadata)
    pq.write_table(table, path)


def write_training_set_files(training_set: TrainingSet, out: Path, spec_path: Path,
                             lineage: Mapping[str, Any] | None = None) -> None:
    """The training set (Parquet, its spec and ``lineage`` in the file's metadata) at ``out`` and its spec (JSON)
    at ``spec_path``,
    all or nothing: both are written under temporary names first and renamed at the end, so a failure leaves
    neither half-written (the OSError then names the files asked for and which was replaced, if any)."""
    tmp_out = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp_spec = spec_path.with_name(f".{spec_path.name}.{os.getpid()}.tmp")
    spec_text = json.dumps(training_set.spec.to_dict(), indent=2)
    replaced = False
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        spec_path.parent.mkdir(parents=True, exist_ok=True)
        write_training_set(training_set.frame, spec_text, tmp_out, lineage)
        tmp_spec.write_text(spec_text, encoding="utf-8")
        os.replace(tmp_out, out)
        replaced = True
        os.replace(tmp_spec, spec_path)
    except OSError as exc:  # disk full, permissions: named by the files asked for, not the temporary ones
        state = f"{out} was replaced, {spec_path} was not" if replaced else "no file was replaced"
        named = type(exc)(f"the training set {out} and its spec {spec_path} could not be written "
                          f"({exc.strerror or exc}); {state}")
        named.errno = exc.errno
        raise named from exc
    finally:
        tmp_out.unlink(missing_ok=True)
        tmp_spec.unlink(missing_ok=True)
