"""The CRM data contract: typed config, vectorised validation rules and the strict/quarantine policies.

Config (YAML -> pydantic) comes in two modes, told apart by ``mode``:

- ``crm`` (:class:`DataConfig`): three tables ``leads`` / ``events`` / ``outcomes`` whose column
  names are mapped onto the canonical names of :mod:`features.schema`.
- ``flat`` (:class:`FlatConfig`): one exported table, one row per lead, with declared column roles
  (validated by :mod:`features.flat`).

Relative paths (files, quarantine folder, SQLite database files) resolve against the directory of
the YAML file they are written in (:func:`parse_data_config` with its ``base_dir``, as
:func:`leadscore.project.load_project` reads the ``data:`` section or a bare data config), or against
``base_dir`` given to :meth:`DataConfig.resolve_paths`.

Type inference for attribute columns that are not declared: after missing-value markers are
replaced by missing, numeric dtypes (not bool) are numeric; object columns whose non-missing values
all parse as numbers are numeric; everything else (object, bool, category) is categorical.
Categorical values become ``str`` (missing stays missing); numeric values become float64.

Validation: each rule is a function returning the offending-row mask. Every rule that fires yields a
:class:`ContractViolation` (table, column, rule, count, examples). ``strict`` raises
:class:`ContractError` listing them all; ``quarantine`` moves the offending rows, with the reason per
row, to one file per table in ``quarantine_dir`` and keeps the rest. Cascade: a quarantined lead
takes its events and outcomes along (reason ``lead_quarantined``); a quarantined outcome takes its
lead along (reason ``outcome_quarantined``), because keeping the lead without its outcome would
silently turn a conversion into a non-conversion. Missing required columns are always fatal.
"""

from __future__ import annotations

import codecs
import difflib
import errno
import math
import os
import re
import tempfile
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from features.schema import (
    AMOUNT,
    CAMPAIGN,
    CHANNEL,
    CONVERTED_AT,
    CREATED_AT,
    DEFAULT_MISSING_VALUES,
    EVENT_TYPE,
    EVENTS,
    FAMILIES,
    FIT,
    LEAD_ID,
    LEADS,
    OCCURRED_AT,
    OPTIONAL_COLUMNS,
    OUTCOMES,
    REQUIRED_COLUMNS,
    TABLES,
    VALUE,
    CRMData,
    distinct_strings,
    naive_utc,
    to_numbers,
    utc_now,
    values_as_text,
)
from features.snapshots import AS_OF, LABEL_COLUMNS
from features.urls import masked_url

TRAINING_SET_COLUMNS = (AS_OF, *LABEL_COLUMNS)  # what the snapshots add beside the leads' attributes

# ---------------------------------------------------------------------------------------------
# Rule names (the ``rule`` of a violation and the reason written per quarantined row)
# ---------------------------------------------------------------------------------------------
MISSING_COLUMN = "missing_column"
WRONG_TYPE = "wrong_type"
NULL_VALUE = "null_value"
DUPLICATE_LEAD_ID = "duplicate_lead_id"
DUPLICATE_OUTCOME = "duplicate_outcome"
UNKNOWN_LEAD = "unknown_lead"
FUTURE_TIMESTAMP = "future_timestamp"
CONVERTED_BEFORE_CREATED = "converted_before_created"
NEGATIVE_AMOUNT = "negative_amount"
NEGATIVE_VALUE = "negative_value"
EMPTY_TABLE = "empty_table"
NON_BINARY_LABEL = "non_binary_label"
RESERVED_NAME = "reserved_name"  # a column named as one the pipeline adds: no policy can keep it
LEAD_QUARANTINED = "lead_quarantined"
OUTCOME_QUARANTINED = "outcome_quarantined"
# what a cascaded rule means, in the validation summary
CASCADE_WORDS = {LEAD_QUARANTINED: "quarantined lead", OUTCOME_QUARANTINED: "quarantined outcome"}

STRICT = "strict"
QUARANTINE = "quarantine"

ROW_COLUMN = "_row"
REASON_COLUMN = "_reason"
N_EXAMPLES = 5

# The flat table's name in violations and reports.
FLAT = "flat"



# ---------------------------------------------------------------------------------------------
# Config models
# ---------------------------------------------------------------------------------------------
class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _StorageOptions(_Model):
    """How a source is read: file format or database, and reader options shared by both modes."""

    kind: Literal["csv", "parquet", "sql"] = "csv"
    url: str | None = None
    # kind sql: the schema holding the tables (PostgreSQL: e.g. crm; rescore's score tables go there too);
    # None: the database's default one. SQLite has no schemas: only "main", the file itself
    db_schema: str | None = Field(default=None, min_length=1)
    chunksize: int = Field(default=500_000, gt=0)
    csv_separator: str = ","
    csv_encoding: str = "utf-8"

    @field_validator("csv_separator")
    @classmethod
    def _one_character(cls, value: str) -> str:
        # pandas' fast reader takes one character; longer ones are regexes its other reader refuses with our options
        if len(value) != 1:
            raise ValueError(f"must be one character, got {value!r} (e.g. ',', ';', '\\t')")
        return value

    @field_validator("csv_encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown encoding {value!r} (e.g. utf-8, utf-8-sig, latin-1, cp1252, utf-16)") from None
        return value

    @model_validator(mode="after")
    def _schema_of_sqlite(self) -> _StorageOptions:
        if (self.kind == "sql" and self.url and self.db_schema not in (None, "main")
                and self.url.lower().startswith("sqlite")):
            raise ValueError(f"source.db_schema {self.db_schema!r}: a SQLite database has no schemas (leadscore "
                             "attaches no other database file); leave it unset (or 'main': the file itself)")
        return self


class SourceConfig(_StorageOptions):
    """Where the CRM tables live.

    ``kind`` csv/parquet: ``leads``/``events``/``outcomes`` are file paths.
    ``kind`` sql: they are table names in the database at ``url`` (SQLAlchemy URL; SQLite default).
    ``events: null``: the source has no events table (an empty one with the canonical columns is
    used: no engagement history, e.g. a funnel export of leads and won deals only).
    """

    leads: str = LEADS
    events: str | None = EVENTS
    outcomes: str = OUTCOMES

    @model_validator(mode="after")
    def _url_for_sql(self) -> SourceConfig:
        if self.kind == "sql" and not self.url:
            raise ValueError("source.url is required when source.kind is 'sql'")
        return self

    def location(self, table: str) -> str | None:
        """File path or table name of one canonical table (None: the table is absent)."""
        value = getattr(self, table)
        return None if value is None else str(value)


def _check_mapping_keys(table: str, mapping: dict[str, str]) -> dict[str, str]:
    allowed = {*REQUIRED_COLUMNS[table], *OPTIONAL_COLUMNS[table]}
    unknown = sorted(set(mapping) - allowed)
    if unknown:
        raise ValueError(
            f"unknown canonical column(s) {unknown}; allowed: {sorted(allowed)}"  # pydantic names columns.<table>
        )
    return mapping


def _check_one_source_each(table: str, mapping: dict[str, str]) -> None:
    """Two canonical columns of a table read from one source column: refused, naming both (either would
    otherwise be reported missing although its column is there). Unmapped canonical columns keep their name."""
    sources: dict[str, str] = {}
    for canonical in (*REQUIRED_COLUMNS[table], *OPTIONAL_COLUMNS[table]):
        source = mapping.get(canonical, canonical)
        if source in sources and (canonical in mapping or sources[source] in mapping):
            first, second = sorted((sources[source], canonical))
            raise ValueError(f"{first!r} and {second!r} are both mapped onto source column {source!r}")
        sources.setdefault(source, canonical)


class ColumnMapping(_Model):
    """Canonical name -> the company's column name, per table (unmapped columns keep their name).

    Optional canonical columns (``channel``, ``campaign``, ``value``, ``amount``) are used when the
    (mapped) column exists in the source and left out otherwise.
    """

    leads: dict[str, str] = Field(default_factory=dict)
    events: dict[str, str] = Field(default_factory=dict)
    outcomes: dict[str, str] = Field(default_factory=dict)

    @field_validator("leads", "events", "outcomes")
    @classmethod
    def _known_keys(cls, mapping: dict[str, str], info: Any) -> dict[str, str]:
        _check_mapping_keys(info.field_name, mapping)
        _check_one_source_each(info.field_name, mapping)
        return mapping

    def source_name(self, table: str, canonical: str) -> str:
        return getattr(self, table).get(canonical, canonical)

    def canonical_by_source(self, table: str) -> dict[str, str]:
        """Rename map (source -> canonical) for every canonical column of ``table``."""
        return {
            self.source_name(table, c): c for c in (*REQUIRED_COLUMNS[table], *OPTIONAL_COLUMNS[table])
        }


class AttributesConfig(_Model):
    """Lead attribute columns (by their name in the source; they keep that name)."""

    categorical: list[str] = Field(default_factory=list)
    numeric: list[str] = Field(default_factory=list)
    ignore: list[str] = Field(default_factory=list)
    infer_undeclared: bool = True
    non_negative: list[str] = Field(default_factory=list, description="numeric attributes whose values below 0 "
                                    "are violations (rule negative_value), e.g. employees, annual_revenue")

    @model_validator(mode="after")
    def _disjoint(self) -> AttributesConfig:
        _check_disjoint("attributes", categorical=self.categorical, numeric=self.numeric, ignore=self.ignore)
        clash = [c for c in self.non_negative if c in self.categorical or c in self.ignore]
        if clash:
            raise ValueError(f"attributes.non_negative: {clash} are categorical or ignored, not numbers")
        return self


def _check_disjoint(section: str, **lists: list[str]) -> None:
    seen: dict[str, str] = {}
    for name, columns in lists.items():
        for column in columns:
            if column in seen and seen[column] != name:
                raise ValueError(f"{section}: column {column!r} is in both {seen[column]!r} and {name!r}")
            seen[column] = name


class _CommonConfig(_Model):
    missing_values: list[str] = Field(default_factory=lambda: list(DEFAULT_MISSING_VALUES))
    policy: Literal["strict", "quarantine"] = STRICT
    quarantine_dir: Path | None = None
    quarantine_format: Literal["csv", "parquet"] = "csv"
    reference_time: datetime | None = None
    timestamp_format: str | None = None

    @field_validator("timestamp_format", check_fields=False)
    @classmethod
    def _known_directives(cls, value: str | dict[str, str] | None) -> str | dict[str, str] | None:
        formats = value if isinstance(value, dict) else {"": value} if value is not None else {}
        for table, fmt in formats.items():
            problem = timestamp_format_problem(fmt)
            if problem:
                raise ValueError(f"{table}: {problem}" if table else problem)
        return value

    @model_validator(mode="after")
    def _quarantine_needs_dir(self) -> _CommonConfig:
        if self.policy == QUARANTINE and self.quarantine_dir is None:
            raise ValueError("policy 'quarantine' needs quarantine_dir")
        return self

    def reference_timestamp(self) -> pd.Timestamp:
        """``reference_time`` as tz-naive UTC (now when not set)."""
        return naive_utc(self.reference_time or utc_now())


class DataConfig(_CommonConfig):
    """Config of the three-table CRM contract (``mode: crm``)."""

    mode: Literal["crm"] = "crm"
    source: SourceConfig = Field(default_factory=SourceConfig)
    columns: ColumnMapping = Field(default_factory=ColumnMapping)
    attributes: AttributesConfig = Field(default_factory=AttributesConfig)
    # one format for every table, or one per table ({leads: "%d-%m-%Y", outcomes: "%d-%m-%Y %H:%M"})
    timestamp_format: str | dict[str, str] | None = None

    @field_validator("timestamp_format")
    @classmethod
    def _known_format_tables(cls, value: str | dict[str, str] | None) -> str | dict[str, str] | None:
        if isinstance(value, dict):
            unknown = sorted(set(value) - set(TABLES))
            if unknown:
                raise ValueError(f"unknown table(s) {unknown}; allowed: {list(TABLES)}")
        return value

    def timestamp_format_of(self, table: str) -> str | None:
        """The timestamp format of one table (None: ISO 8601)."""
        if isinstance(self.timestamp_format, dict):
            return self.timestamp_format.get(table)
        return self.timestamp_format

    def resolve_paths(self, base_dir: Path | str) -> DataConfig:
        """Copy with relative file paths, SQLite files and quarantine_dir made absolute under base_dir."""
        base = Path(base_dir)
        source = self.source
        if source.kind == "sql":
            source = source.model_copy(update={"url": resolve_sqlite_url(source.url or "", base)})
        else:
            source = source.model_copy(
                update={t: str(_resolve_path(loc, base)) for t in TABLES if (loc := source.location(t)) is not None}
            )
        return self.model_copy(
            update={"source": source, "quarantine_dir": _resolve_optional(self.quarantine_dir, base)}
        )


class FlatSourceConfig(_StorageOptions):
    """Where the flat table lives: a CSV/Parquet file, or a table in the database at ``url``."""

    path: str | None = None
    table: str | None = None

    @model_validator(mode="after")
    def _location(self) -> FlatSourceConfig:
        if self.kind == "sql" and not (self.url and self.table):
            raise ValueError("source.url and source.table are required when source.kind is 'sql'")
        if self.kind != "sql" and not self.path:
            raise ValueError(f"source.path is required when source.kind is {self.kind!r}")
        return self


def _labels_read_alike(a: str | int | bool, b: str | int | bool) -> bool:
    """Whether one label value would match the other as the flat label reader matches them
    (:func:`features.flat.parse_label`): as trimmed text, as numbers, and a boolean in any case (or, in a
    numeric column, as its number: true is 1)."""
    first, second = str(a).strip(), str(b).strip()
    if first == second:
        return True
    if (isinstance(a, bool) or isinstance(b, bool)) and first.casefold() == second.casefold():
        return True
    numbers = to_numbers(pd.Series([int(v) if isinstance(v, bool) else str(v).strip() for v in (a, b)],
                                      dtype=object), errors="coerce")
    return bool(numbers.notna().all() and numbers.iat[0] == numbers.iat[1])


class FlatConfig(_CommonConfig):
    """Config of a flat export (``mode: flat``): one row per lead, aggregated engagement, a label.

    ``families`` maps a family (``engagement`` / ``lifecycle`` / ``fit``) to its columns; feature
    columns not listed are ``fit``. ``masked_values`` maps a column to values recorded after the
    outcome (leakage); they are replaced by missing.
    """

    mode: Literal["flat"] = "flat"
    source: FlatSourceConfig
    id_column: str
    label_column: str
    positive_label: str | int | bool = 1
    negative_label: str | int | bool = 0
    timestamp_column: str | None = None
    ignore: list[str] = Field(default_factory=list)
    score_columns: list[str] = Field(default_factory=list)
    categorical: list[str] = Field(default_factory=list)
    numeric: list[str] = Field(default_factory=list)
    families: dict[str, list[str]] = Field(default_factory=dict)
    masked_values: dict[str, list[str]] = Field(default_factory=dict)

    @field_validator("families")
    @classmethod
    def _known_families(cls, families: dict[str, list[str]]) -> dict[str, list[str]]:
        unknown = sorted(set(families) - set(FAMILIES))
        if unknown:
            raise ValueError(f"families: unknown family {unknown}; allowed: {list(FAMILIES)}")
        return families

    @model_validator(mode="after")
    def _labels_differ(self) -> FlatConfig:
        if _labels_read_alike(self.positive_label, self.negative_label):
            shown = (f"both are {self.positive_label!r}" if str(self.positive_label) == str(self.negative_label)
                     else f"{self.positive_label!r} and {self.negative_label!r} read as one value")
            raise ValueError(f"positive_label and negative_label must differ, {shown}")
        return self

    @model_validator(mode="after")
    def _roles_disjoint(self) -> FlatConfig:
        roles = {
            "id_column": self.id_column,
            "label_column": self.label_column,
            **({"timestamp_column": self.timestamp_column} if self.timestamp_column else {}),
        }
        role_columns = list(roles.values())
        if len(set(role_columns)) != len(role_columns):
            raise ValueError(f"id_column, label_column and timestamp_column must differ: {roles}")
        _check_disjoint(
            "flat config",
            roles=role_columns,
            ignore=self.ignore,
            score_columns=self.score_columns,
            categorical=self.categorical,
            numeric=self.numeric,
        )
        _check_disjoint("families", **self.families)
        for family, columns in self.families.items():
            clash = sorted(set(columns) & {*role_columns, *self.ignore, *self.score_columns})
            if clash:
                raise ValueError(f"families.{family}: {clash} are not feature columns")
        return self

    def family_of(self, column: str) -> str:
        for family, columns in self.families.items():
            if column in columns:
                return family
        return FIT

    def declared_columns(self) -> list[str]:
        """Every column the config names (all must exist in the source)."""
        names = [self.id_column, self.label_column, *([self.timestamp_column] if self.timestamp_column else [])]
        names += [*self.ignore, *self.score_columns, *self.categorical, *self.numeric, *self.masked_values]
        names += [c for columns in self.families.values() for c in columns]
        return list(dict.fromkeys(names))

    def unignore(self, *columns: str) -> FlatConfig:
        """Copy with ``columns`` taken off the ignore list (e.g. to put leaky fields back in a test)."""
        missing = sorted(set(columns) - set(self.ignore))
        if missing:
            raise ValueError(f"unignore: {missing} are not in the ignore list")
        return self.model_copy(update={"ignore": [c for c in self.ignore if c not in columns]})

    def resolve_paths(self, base_dir: Path | str) -> FlatConfig:
        """Copy with a relative source path, SQLite file and quarantine_dir made absolute under base_dir."""
        base = Path(base_dir)
        update: dict[str, Any] = {}
        if self.source.path:
            update["path"] = str(_resolve_path(self.source.path, base))
        if self.source.url:
            update["url"] = resolve_sqlite_url(self.source.url, base)
        return self.model_copy(
            update={
                "source": self.source.model_copy(update=update),
                "quarantine_dir": _resolve_optional(self.quarantine_dir, base),
            }
        )


AnyDataConfig = Annotated[DataConfig | FlatConfig, Field(discriminator="mode")]
_ANY_CONFIG = TypeAdapter(AnyDataConfig)


def config_error_text(section: str, exc: ValueError) -> str:
    """One line per invalid field, ``section.field.path: message`` (pydantic's own text is a multi-line
    block naming internal validators); other errors as ``section: message``."""
    if not isinstance(exc, ValidationError):
        return f"{section}: {exc}" if section else str(exc)
    lines = []
    for error in exc.errors():
        loc = [str(p) for p in error["loc"]]
        if section in ("data", "") and loc[:1] in (["crm"], ["flat"]):
            loc = loc[1:]  # the data mode's union tag
        message = error["msg"].removeprefix("Value error, ")
        lines.append(f"{'.'.join([section, *loc] if section else loc) or 'data'}: {message}")
    return "; ".join(lines)


def yaml_error_text(exc: yaml.YAMLError) -> str:
    """A YAML parser error in one line: where (line, column, from 1) and what, without the file's text."""
    if not isinstance(exc, yaml.MarkedYAMLError) or exc.problem_mark is None:
        return " ".join(str(exc).split())
    mark = exc.problem_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}: "
    if not exc.context:
        return where + str(exc.problem)
    start = exc.context_mark
    started = f" started at line {start.line + 1}, column {start.column + 1}" if start else ""
    if str(exc.problem).startswith("but "):  # the composer's "expected a single document ...", "but found ..."
        return f"{where}{exc.context}{started}, {exc.problem}"
    return f"{where}{exc.problem} ({exc.context}{started})"


def parse_data_config(section: dict[str, Any], base_dir: Path | str | None = None) -> DataConfig | FlatConfig:
    """Build the config from a ``data:`` mapping (``mode`` defaults to ``crm``), resolving paths."""
    if not isinstance(section, dict):
        raise ValueError(f"data config must be a mapping, got {type(section).__name__}")
    config = _ANY_CONFIG.validate_python({"mode": "crm", **section})
    return config.resolve_paths(base_dir) if base_dir is not None else config


def _resolve_path(value: str, base: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def _resolve_optional(value: Path | None, base: Path) -> Path | None:
    return None if value is None else _resolve_path(str(value), base)


def resolve_sqlite_url(url: str, base: Path) -> str:
    """A SQLite URL whose relative file path is made absolute against ``base`` (other URLs unchanged)."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ValueError(f"source.url {masked_url(url)!r} is not a database URL (e.g. sqlite:///crm.db, "
                         "postgresql+psycopg://user@host/db)") from exc
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return url
    return parsed.set(database=str(_resolve_path(parsed.database, base))).render_as_string(
        hide_password=False
    )


# ---------------------------------------------------------------------------------------------
# Violations, errors, report
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ContractViolation:
    """One rule broken by ``n_rows`` rows of one column of one table, with a few examples.

    Each example is a dict with ``row`` (0-based position in the table as read), ``lead_id`` and
    ``value`` (the offending raw value).
    """

    table: str
    column: str
    rule: str
    n_rows: int
    examples: list[dict[str, Any]] = field(default_factory=list)
    detail: str = ""

    @property
    def message(self) -> str:
        shown = "; ".join(
            ", ".join(f"{k}={v!r}" if k == "value" else f"{k}={v}" for k, v in ex.items())
            for ex in self.examples
        )
        rows = "row" if self.n_rows == 1 else "rows"
        text = f"{self.table}.{self.column}: {self.rule}: {self.n_rows} {rows}"
        if self.detail:
            text += f" ({self.detail})"
        return f"{text}; e.g. {shown}" if shown else text

    def __str__(self) -> str:
        return self.message


class ContractError(ValueError):
    """Input breaks the data contract; ``violations`` lists every problem found."""

    def __init__(self, violations: list[ContractViolation], source_kind: str | None = None, part: str = "",
                 then: str = "") -> None:
        """``part``: the part of the data read (such as a partition of a batch job: its rows are counted within
        it); ``then``: what the job that read it left, one line after the violations."""
        self.violations = list(violations)
        self.source_kind = source_kind
        self.part, self.then = part, then
        lines = "\n".join(f"  - {v.message}" for v in self.violations)
        where = ""
        if any("row" in example for v in self.violations for example in v.examples):
            where = f"\n  (row = position among the rows read{f' for {part}' if part else ''}, from 0" + (
                ": in a whole CSV file with a header and no blank line or quoted line break, its line is row + 2)"
                if source_kind == "csv" and not part else ")")
        head = f"data contract violated{f' in {part}' if part else ''} ({len(self.violations)} problem(s))"
        super().__init__(f"{head}:\n{lines}{where}" + (f"\n{then}" if then else ""))

    def located(self, part: str) -> ContractError:
        """The same violations, found in ``part`` of the data."""
        return ContractError(self.violations, self.source_kind, part, self.then)

    def followed_by(self, then: str) -> ContractError:
        """The same violations, with what the job that read them left."""
        return ContractError(self.violations, self.source_kind, self.part, then)

    def __reduce__(self) -> tuple[type[ContractError], tuple[list[ContractViolation], str | None, str, str]]:
        """Pickled with its violations (a worker process or Dask task hands it back to the driver)."""
        return type(self), (self.violations, self.source_kind, self.part, self.then)


@dataclass
class ValidationReport:
    """What validation found and did: rows in/kept/quarantined per table, counts per rule."""

    policy: str
    rows_in: dict[str, int] = field(default_factory=dict)
    rows_kept: dict[str, int] = field(default_factory=dict)
    rows_quarantined: dict[str, int] = field(default_factory=dict)
    quarantined_lead_ids: list[Any] = field(default_factory=list)  # ids of the quarantined lead rows
    violations: list[ContractViolation] = field(default_factory=list)
    cascaded: dict[str, dict[str, int]] = field(default_factory=dict)
    quarantine_files: dict[str, Path] = field(default_factory=dict)
    ignored_columns: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # doubtful but accepted input (no violation)

    @property
    def counts(self) -> dict[tuple[str, str, str], int]:
        """Offending rows per (table, rule, column), cascades included (column ``lead_id``)."""
        out = {(v.table, v.rule, v.column): v.n_rows for v in self.violations}
        for table, by_rule in self.cascaded.items():
            for rule, n in by_rule.items():
                out[(table, rule, LEAD_ID)] = n
        return out

    @property
    def ok(self) -> bool:
        return not self.violations

    def as_dict(self) -> dict[str, Any]:
        """Plain, JSON-friendly form (e.g. to log with a run)."""
        return {
            "policy": self.policy,
            "rows_in": dict(self.rows_in),
            "rows_kept": dict(self.rows_kept),
            "rows_quarantined": dict(self.rows_quarantined),
            "counts": [{"table": t, "rule": r, "column": c, "n_rows": n} for (t, r, c), n in self.counts.items()],
            "violations": [v.message for v in self.violations],
            "quarantine_files": {t: str(p) for t, p in self.quarantine_files.items()},
            "ignored_columns": {t: list(c) for t, c in self.ignored_columns.items()},
        }

    def summary(self) -> str:
        lines = [f"validation ({self.policy}): {'ok' if self.ok else f'{len(self.violations)} violation(s)'}"]
        for table in self.rows_in:
            line = (
                f"  {table}: {self.rows_in[table]} in, {self.rows_kept.get(table, 0)} kept, "
                f"{self.rows_quarantined.get(table, 0)} quarantined"
            )
            if table in self.quarantine_files:
                line += f" -> {self.quarantine_files[table]}"
            lines.append(line)
        lines += [f"  - {v.message}" for v in self.violations]
        for table, by_rule in self.cascaded.items():
            lines += [f"  - {table}: {n:,} {'row' if n == 1 else 'rows'} set aside with {'its' if n == 1 else 'their'} "
                      f"{CASCADE_WORDS.get(rule, rule)} ({rule})" for rule, n in by_rule.items() if n]
        lines += [f"  {table}: ignored columns: {', '.join(columns)}"
                  for table, columns in self.ignored_columns.items() if columns]
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


class ViolationCollector:
    """Accumulates rule masks per table and turns them into violations."""

    def __init__(self) -> None:
        self.violations: list[ContractViolation] = []
        self.masks: dict[str, list[tuple[str, np.ndarray]]] = {}

    def add(
        self,
        table: str,
        column: str,
        rule: str,
        mask: np.ndarray | pd.Series,
        frame: pd.DataFrame,
        *,
        id_column: str | None = LEAD_ID,
        detail: str = "",
    ) -> None:
        """Record ``rule`` on ``table.column`` if any row of ``frame`` (raw values) is flagged."""
        mask = np.asarray(mask, dtype=bool)
        n_rows = int(mask.sum())
        if n_rows == 0:
            return
        positions = np.flatnonzero(mask)[:N_EXAMPLES]
        examples: list[dict[str, Any]] = []
        for pos in positions:
            example: dict[str, Any] = {"row": int(frame.index[pos])}
            if id_column is not None and id_column in frame.columns:
                example[id_column] = _plain(frame[id_column].iat[pos])
            if column in frame.columns and column != id_column:
                example["value"] = _plain(frame[column].iat[pos])
            examples.append(example)
        self.violations.append(ContractViolation(table, column, rule, n_rows, examples, detail))
        self.masks.setdefault(table, []).append((f"{rule}:{column}", mask))

    def missing_columns(self, table: str, missing: list[str], source_names: dict[str, str],
                        available: Any = ()) -> None:
        for column in missing:
            source = source_names.get(column, column)
            detail = f"source column {source!r} not found" if source != column else "column not found"
            detail += did_you_mean(source, available)
            self.violations.append(ContractViolation(table, column, MISSING_COLUMN, 0, [], detail))

    def fatal(self) -> list[ContractViolation]:
        return [v for v in self.violations if v.rule in (MISSING_COLUMN, RESERVED_NAME)]

    def table_mask(self, table: str, n_rows: int) -> np.ndarray:
        mask = np.zeros(n_rows, dtype=bool)
        for _, rule_mask in self.masks.get(table, []):
            mask |= rule_mask
        return mask

    def reasons(self, table: str, positions: np.ndarray, extra: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """Reason text (``rule:column; ...``) of the rows at ``positions``, built rule by rule."""
        reasons = np.full(len(positions), "", dtype=object)
        items = [*self.masks.get(table, []), *(extra or {}).items()]
        for reason, mask in items:
            hit = mask[positions]
            sep = np.where(reasons[hit] == "", "", "; ")
            reasons[hit] = reasons[hit] + sep + reason
        return reasons


def _plain(value: Any) -> Any:
    """Numpy/pandas scalar -> plain Python for messages; missing -> None."""
    if value is None or (not isinstance(value, str | bytes) and pd.api.types.is_scalar(value) and pd.isna(value)):
        return None
    if isinstance(value, pd.Timestamp):
        return str(value)
    return value.item() if isinstance(value, np.generic) else value


# ---------------------------------------------------------------------------------------------
# Parsing helpers (pure, vectorised)
# ---------------------------------------------------------------------------------------------
def replace_missing_markers(frame: pd.DataFrame, markers: list[str]) -> pd.DataFrame:
    """``frame`` with the marker strings (e.g. ``Select``) in text/category columns set to missing.

    Returns ``frame`` itself when no marker occurs, else a shallow copy with the touched columns new.
    """
    if not markers:
        return frame
    out = frame
    for column in frame.columns:
        values = frame[column]
        if isinstance(values.dtype, pd.CategoricalDtype):
            present = [m for m in markers if m in values.cat.categories]
            replaced = values.cat.remove_categories(present) if present else None
        elif values.dtype == object or isinstance(values.dtype, pd.StringDtype):
            hit = values.isin(markers).to_numpy()
            replaced = values.mask(hit) if hit.any() else None
        else:
            replaced = None
        if replaced is not None:
            out = out.copy(deep=False) if out is frame else out
            out[column] = replaced
    return out


def parse_timestamps(values: pd.Series, fmt: str | None = None) -> tuple[pd.Series, np.ndarray]:
    """Parse to tz-naive UTC ``datetime64[ns]``; returns (parsed, mask of unparseable non-null values).

    Naive inputs are taken as UTC; tz-aware inputs are converted to UTC first. Strings are parsed
    with ``fmt`` (default ISO 8601).
    """
    if pd.api.types.is_datetime64_any_dtype(values.dtype):  # typed (Parquet, SQL): in seconds to microseconds too
        naive = values.dt.tz_convert("UTC").dt.tz_localize(None) if isinstance(values.dtype, pd.DatetimeTZDtype) \
            else values
        outside = ((naive < pd.Timestamp.min) | (naive > pd.Timestamp.max)).to_numpy()  # year 1, 9999: no ns value
        naive = naive.mask(outside) if outside.any() else naive
        return naive.astype("datetime64[ns]", copy=False), outside
    parsed = _parse_text_timestamps(values, fmt).astype("datetime64[ns]", copy=False)
    bad = (parsed.isna() & values.notna()).to_numpy()
    return parsed, bad


TIMESTAMP_RANGE = "1677..2262"  # the years a nanosecond timestamp holds (1677-09-21 .. 2262-04-11)


def timestamp_detail(values: pd.Series, bad: np.ndarray, fmt: str | None = None) -> str:
    """The ``wrong_type`` detail of the timestamps :func:`parse_timestamps` refused: unparseable, or, when some are
    real dates outside the years a timestamp holds (``0001-01-01``, ``9999-12-31``: placeholders), saying so."""
    refused = values[bad].drop_duplicates().head(1000)
    outside = [v for v in refused if _is_out_of_range_date(v, fmt)]
    if not outside:
        formats = [] if fmt else _formats_reading(refused)
        if formats:
            return (f"unparseable timestamp: not ISO 8601; they read with timestamp_format "
                    f"{' or '.join(map(repr, formats))} (set it, or one per table)")
        return "unparseable timestamp"
    text = f"unparseable timestamp, or a date outside the years {TIMESTAMP_RANGE} such as {str(outside[0])!r}"
    if isinstance(outside[0], str):  # markers apply to text; a typed column's placeholder needs a NULL
        text += "; list a placeholder date under missing_values to read it as missing"
    return text


# day-first and month-first dates of spreadsheets and European or US exports, with the times they come with
_COMMON_FORMATS = tuple(f"{date}{time}" for date in ("%d/%m/%Y", "%m/%d/%Y", "%d.%m.%Y", "%d-%m-%Y", "%m-%d-%Y")
                        for time in ("", " %H:%M", " %H:%M:%S"))


def _formats_reading(refused: pd.Series) -> list[str]:
    """The common formats (:data:`_COMMON_FORMATS`) that read every refused value (all text), for the hint."""
    texts = [v.strip() for v in refused if isinstance(v, str)]
    if not texts or len(texts) < len(refused):
        return []

    def reads(fmt: str) -> bool:
        try:
            for text in texts:
                datetime.strptime(text, fmt)
        except ValueError:
            return False
        return True

    return [fmt for fmt in _COMMON_FORMATS if reads(fmt)]


_BEYOND_DATETIME = re.compile(r"[+-]?infinity|\d{5,}-\d\d-\d\d(?:[ T].*)?", re.IGNORECASE)


def _is_out_of_range_date(value: Any, fmt: str | None) -> bool:
    """Whether one refused value is a date or time (an object, or text in ``fmt`` / ISO 8601) after all, one
    outside the years a nanosecond timestamp holds (a date Python reads that pandas refuses inside them, such
    as the ISO week date ``2024-W01-1``, is unparseable); PostgreSQL's infinity and years past 9999 are."""
    if isinstance(value, pd.Timestamp | np.datetime64):
        return True  # a typed value refused by parse_timestamps: outside the range by construction
    if isinstance(value, str):
        if _BEYOND_DATETIME.fullmatch(value.strip()):  # no datetime holds them
            return True
        try:
            value = datetime.strptime(value.strip(), fmt) if fmt else datetime.fromisoformat(value.strip())
        except ValueError:
            return False
    if not isinstance(value, date):
        return False
    day = value.date() if isinstance(value, datetime) else value
    return not pd.Timestamp.min.date() < day < pd.Timestamp.max.date()


def timestamp_format_problem(fmt: str) -> str | None:
    """Why pandas cannot parse with the strptime format ``fmt`` (a bad directive such as ``%Q``), or None."""
    try:
        pd.to_datetime(pd.Series(["2024-01-01"]), format=fmt, errors="coerce")
    except ValueError as exc:
        return str(exc).splitlines()[0] if str(exc) else f"invalid timestamp format {fmt!r}"
    return None


# an ISO 8601 UTC offset after a time of day: "...10:08:29+02:00", "...T1008-0500", "...10:08Z"
_OFFSET_AFTER_TIME = (r"\d\d(?::?\d\d){0,2}(?:[.,]\d+)?\s*(?:[zZ]|[+-]\d\d(?::?\d\d){0,2})\s*$"
                      r"|\+|\]\s*$|UTC|GMT")  # also a "+", a trailing "[Zone]", "UTC", "GMT": never naive


def _parse_text_timestamps(values: pd.Series, fmt: str | None) -> pd.Series:
    """Text to naive UTC. Values with and without a UTC offset are parsed apart: pandas 2.3 applies the
    offset of one value to the naive values after it when a column mixes both."""
    def parse(part: pd.Series) -> pd.Series:
        out = pd.to_datetime(part, format=fmt or "ISO8601", utc=True, errors="coerce")
        return out.dt.tz_localize(None) if isinstance(out.dtype, pd.DatetimeTZDtype) else out

    if fmt is not None or values.empty:
        return parse(values)
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        text = pa.array(values, type=pa.string(), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):  # not all text (e.g. datetime objects): one parse
        return parse(values)
    with_offset = pc.match_substring_regex(text, _OFFSET_AFTER_TIME).fill_null(False).to_numpy(zero_copy_only=False)
    if with_offset.all() or not with_offset.any():
        return parse(values)
    parsed = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns]")
    parsed[with_offset] = parse(values[with_offset]).astype("datetime64[ns]")
    parsed[~with_offset] = parse(values[~with_offset]).astype("datetime64[ns]")
    return parsed


def parse_numbers(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Parse to float64; returns (parsed, mask of non-null values that are no finite number). Infinite
    values (``inf``, ``1e400``, PostgreSQL's ``Infinity``) are refused as the endpoint refuses them: no
    feature, score or reason can be computed from them."""
    if pd.api.types.is_bool_dtype(values.dtype):
        return values.astype("float64"), np.zeros(len(values), dtype=bool)
    if pd.api.types.is_numeric_dtype(values.dtype):
        parsed = values.astype("float64", copy=False)
        bad = np.isinf(parsed.to_numpy(dtype=np.float64, na_value=np.nan))
    else:
        parsed = to_numbers(values, errors="coerce").astype("float64", copy=False)
        bad = (parsed.isna() & values.notna()).to_numpy() | np.isinf(parsed.to_numpy())
    if bad.any():
        parsed = parsed.mask(bad)
    return parsed, bad


# a number as text, in the grammar of pandas' parser (:func:`parse_numbers`): ASCII blanks around, a sign,
# digits with a decimal point, an exponent of at most 17 digits
_NUMBER_TEXT = re.compile(r"[ \t\n\v\f\r]*[+-]?([0-9]*)(?:\.([0-9]*))?(?:[eE]([+-]?[0-9]{1,17}))?[ \t\n\v\f\r]*")
_PARSER_DIGITS = 17  # pandas' parser keeps this many digits of the mantissa, and counts the others in the exponent


def number_from_text(text: str) -> float | None:
    """One text value as :func:`parse_numbers` reads it in a text column: its finite number, or None
    where the table path reports ``wrong_type`` (``"abc"``, ``"1,000"``, ``"NaN"``, ``"inf"``, ``""``).
    Without pandas, for one value at a time (the endpoint). The texts accepted are the same; the value
    is the correctly rounded one (pandas' parser may differ in the last bit beyond 15 significant digits
    or for large exponents)."""
    match = _NUMBER_TEXT.fullmatch(text)
    if match is None:
        return None
    whole, fraction, exponent = match.group(1), match.group(2) or "", match.group(3)
    if not whole and not fraction:
        return None
    # pandas refuses an exponent beyond 308 after moving the decimal point into it ("0e309" too)
    kept_decimals = 0 if len(whole) >= _PARSER_DIGITS else min(len(fraction), _PARSER_DIGITS - len(whole))
    if int(exponent or 0) + max(0, len(whole) - _PARSER_DIGITS) - kept_decimals > 308:
        return None
    if abs(int(exponent or 0)) >= 10**9:  # an exponent pandas' parser cannot hold (schema.OVERFLOWING_EXPONENT)
        return None
    number = float(text)
    return number if math.isfinite(number) else None


def to_text(values: pd.Series) -> pd.Series:
    """Categorical values as ``str`` in an object column; missing stays missing."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        return to_text_category(values).astype(object)
    if values.dtype == object and pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty"):
        return values
    return values_as_text(values)  # whole floats as integers: 75.0 (a blank made the column float) is "75"


BINARY_DETAIL = "binary data (a BLOB), not text"


def binary_values(values: pd.Series) -> np.ndarray:
    """Mask of raw bytes (a BLOB in a SQLite text column): no text a category could be made of."""
    # bytes make pandas infer "bytes" or a mixture; numbers and text alone never hold any
    if values.dtype != object or pd.api.types.infer_dtype(values, skipna=True) not in ("bytes", "mixed",
                                                                                        "mixed-integer"):
        return np.zeros(len(values), dtype=bool)
    return values.map(lambda v: isinstance(v, bytes | bytearray | memoryview)).to_numpy(dtype=bool)


def to_text_category(values: pd.Series) -> pd.Series:
    """Values as a ``category`` column with ``str`` categories (cheap for many repeated values)."""
    if not isinstance(values.dtype, pd.CategoricalDtype):
        return to_text(values).astype("category")
    categories = values.cat.categories
    if pd.api.types.infer_dtype(categories, skipna=True) in ("string", "empty"):
        return values
    text = values_as_text(pd.Series(categories, dtype=categories.dtype))
    if text.duplicated().any():  # 75 and 75.0 both among the categories: one text category
        return to_text(values.astype(object)).astype("category")
    return values.cat.rename_categories(text.tolist())


def is_numeric_like(values: pd.Series) -> bool:
    """Inference rule: numeric dtype (not bool), or text whose non-missing values all parse as numbers."""
    if pd.api.types.is_bool_dtype(values.dtype):
        return False
    if pd.api.types.is_numeric_dtype(values.dtype):
        return True
    if values.dtype != object:
        return False
    present = values.dropna()
    if present.empty or pd.api.types.infer_dtype(present.iloc[:1000], skipna=True) == "boolean":
        return False
    head = to_numbers(present.iloc[:1000], errors="coerce")  # cheap rejection of text columns
    if head.isna().any():
        return False
    return bool(to_numbers(present, errors="coerce").notna().all())


def infer_kinds(
    frame: pd.DataFrame, columns: list[str], categorical: list[str], numeric: list[str]
) -> tuple[list[str], list[str]]:
    """Split ``columns`` into (categorical, numeric): declared first, inferred for the rest."""
    cats, nums = [], []
    for column in columns:
        if column in categorical:
            cats.append(column)
        elif column in numeric or is_numeric_like(frame[column]):
            nums.append(column)
        else:
            cats.append(column)
    return cats, nums


def mostly_numeric_note(table: str, column: str, values: pd.Series, share: float = 0.9,
                        numeric_key: str = "attributes.numeric") -> str | None:
    """A note when an inferred text column is nearly all numbers (a few stray values turned a number
    column into categories); None otherwise."""
    present = values.dropna()
    if present.empty or values.dtype != object or pd.api.types.infer_dtype(present, skipna=True) == "boolean":
        return None  # True/False with blanks: a yes/no column, not numbers
    if to_numbers(present.iloc[:1000], errors="coerce").notna().mean() < share:
        return None  # cheap rejection of real text columns
    numbers = to_numbers(present, errors="coerce")
    if numbers.notna().mean() < share:
        return None
    stray = present[numbers.isna()]
    return (f"{table}.{column}: inferred categorical although {numbers.notna().mean():.1%} of its values are "
            f"numbers ({len(stray):,} are not, e.g. {stray.drop_duplicates().head(3).tolist()}); declare it under "
            f"{numeric_key} to have those reported as wrong_type")


def identifier_note(table: str, column: str, values: pd.Series, min_distinct: int = 50,
                    share: float = 0.9, key_prefix: str = "attributes.") -> str | None:
    """A note when an inferred categorical column has nearly one value per row (an e-mail, a phone, a
    name: no category a model can learn from); None otherwise."""
    present = values.dropna()
    if len(present) < min_distinct:
        return None
    distinct = present.nunique()
    if distinct < min_distinct or distinct < share * len(present):
        return None
    return (f"{table}.{column}: inferred categorical with {distinct:,} distinct values in {len(present):,} rows "
            f"(an identifier such as an e-mail, phone or name?); list it under {key_prefix}ignore, or under "
            f"{key_prefix}categorical to keep it")


def all_null_note(table: str, column: str, values: pd.Series, ignore_key: str) -> str | None:
    """A note when an attribute is null (or a missing marker) in every row read: a feature no model can learn
    from, kept as declared or inferred; None otherwise (and for a table without rows)."""
    if not len(values) or values.notna().any():
        return None
    return (f"{table}.{column}: null in every row ({len(values):,} rows): a feature no model can learn from; "
            f"list it under {ignore_key} if it is always empty")


EARLIEST_PLAUSIBLE_CREATED = pd.Timestamp("1970-01-01")  # the endpoint refuses an earlier created_at too


def early_created_note(created_at: pd.Series, lead_ids: pd.Series, raw: pd.Series) -> str | None:
    """A note when leads were created before 1970 (a placeholder such as 1900-01-01?): the as-of dates start at
    the earliest ``created_at``, so one such lead stretches the snapshots over decades; None otherwise."""
    early = np.flatnonzero((created_at < EARLIEST_PLAUSIBLE_CREATED).to_numpy())
    if not early.size:
        return None
    shown = "; ".join(f"row={i}, lead_id={lead_ids.iloc[i]}, value={raw.iloc[i]!r}" for i in early[:3])
    leads = "lead" if early.size == 1 else "leads"
    return (f"leads.created_at: {early.size:,} {leads} created before 1970 (a placeholder date?); e.g. {shown}. "
            "The as-of dates start at the earliest created_at, so the snapshots then span the decades since, "
            "and the endpoint refuses such a created_at: fix it, or set features.start")


def event_type_notes(event_types: pd.Series) -> list[str]:
    """A note when event types differ only in case or surrounding spaces (each is its own type)."""
    types = pd.Series(distinct_strings(event_types), dtype=object)
    if not len(types):
        return []
    folded = types.str.strip().str.casefold()
    clashes = [sorted(group) for _, group in types.groupby(folded.to_numpy()) if len(group) > 1]
    if not clashes:
        return []
    shown = "; ".join(" / ".join(repr(t) for t in group) for group in clashes[:5])
    return [f"events.event_type: types that differ only in case or spaces are separate types: {shown}"]


def lead_id_kind(values: pd.Series) -> Literal["int", "str"]:
    """``int`` when the ids are integers (int dtype, or floats that are all whole), else ``str``."""
    if pd.api.types.is_integer_dtype(values.dtype):
        return "int"
    if pd.api.types.is_float_dtype(values.dtype):
        present = values.dropna()
        return "int" if bool((present == np.floor(present)).all()) else "str"
    return "str"


def coerce_lead_ids(values: pd.Series, kind: Literal["int", "str"]) -> tuple[pd.Series, np.ndarray]:
    """Coerce ids to the leads table's kind; returns (ids, mask of ids that cannot be coerced)."""
    if kind == "int":
        # nullable integers: text ids above 2**53 stay exact beside a missing or unparseable one
        parsed = (values if pd.api.types.is_numeric_dtype(values.dtype)
                  else to_numbers(values, errors="coerce", dtype_backend="numpy_nullable"))
        parsed = parsed.astype("float64") if not pd.api.types.is_integer_dtype(parsed.dtype) else parsed
        bad = (values.notna() & parsed.isna()).to_numpy()
        if pd.api.types.is_float_dtype(parsed.dtype):
            fractional = parsed.notna().to_numpy() & (parsed.to_numpy() != np.floor(parsed.to_numpy()))
            bad |= fractional
            parsed = parsed.mask(fractional)
            parsed = parsed.astype("Int64")
        return parsed, bad
    if pd.api.types.is_float_dtype(values.dtype) and lead_id_kind(values) == "int":
        values = values.astype("Int64")
    return to_text(values), np.zeros(len(values), dtype=bool)


def finalize_lead_ids(values: pd.Series, kind: Literal["int", "str"]) -> pd.Series:
    """Ids of kept rows (no missing) to int64 or str."""
    return values.astype("int64" if kind == "int" else object, copy=False)


# ---------------------------------------------------------------------------------------------
# Rules: each returns the offending-row mask
# ---------------------------------------------------------------------------------------------
def _name_key(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", name).casefold()


def did_you_mean(name: str, columns: Any) -> str:
    """``"; did you mean 'X'?"`` naming the column of ``columns`` closest to ``name``, a name not found (the same
    but for case, blanks, ``_`` or ``-``, else a close spelling); ``""`` when none is close."""
    names = [str(c) for c in columns]
    close = [c for c in names if _name_key(c) == _name_key(name)] or difflib.get_close_matches(name, names, 1, 0.8)
    return f"; did you mean {close[0]!r}?" if close else ""


def rule_missing_columns(frame: pd.DataFrame, required: list[str] | tuple[str, ...]) -> list[str]:
    """Required columns absent from ``frame`` (fatal: a column cannot be quarantined)."""
    return [c for c in required if c not in frame.columns]


def rule_null(values: pd.Series, unparseable: np.ndarray | None = None) -> np.ndarray:
    """Missing required values (values that failed to parse are reported as wrong_type instead)."""
    mask = values.isna().to_numpy()
    return mask & ~unparseable if unparseable is not None else mask


def rule_duplicated(values: pd.Series) -> np.ndarray:
    """Every row whose (non-missing) value occurs more than once: all copies, none is trusted."""
    return (values.duplicated(keep=False) & values.notna()).to_numpy()


def rule_duplicate_outcome(lead_ids: pd.Series, converted_at: pd.Series) -> np.ndarray:
    """Every copy of an outcome row whose lead and conversion instant (or missing instant) both repeat.

    A lead may convert more than once at different instants (a recycled lead that closes again);
    the same conversion twice would count one deal twice. Rows without a conversion instant (lost
    opportunities) count no deal: several of one lead are fine.
    """
    pairs = pd.DataFrame({"lead": lead_ids.to_numpy(), "at": converted_at.to_numpy()})
    return (pairs.duplicated(keep=False) & lead_ids.notna().to_numpy() & converted_at.notna().to_numpy())


def rule_unknown_lead(lead_ids: pd.Series, known_ids: pd.Series) -> np.ndarray:
    """Rows referring to a lead id absent from the leads table."""
    return (~lead_ids.isin(known_ids) & lead_ids.notna()).to_numpy()


def id_types_detail(table: str, lead_ids: pd.Series, unknown_ids: pd.Series) -> str:
    """The ``unknown_lead`` detail when the leads table holds text ids and the unknown ids of ``table`` were
    stored as numbers, or are texts of numbers equal to a lead id read as a number (``'1'`` beside ``'1.0'``):
    the ids are matched as text, where ``'1.0'`` is not ``'1'``; else ``''`` (an unknown ``'7'`` among text ids
    of the same type is only unknown)."""
    present = unknown_ids.dropna()
    if present.empty:
        return ""
    if not pd.api.types.is_numeric_dtype(present.dtype):
        numbers = to_numbers(present, errors="coerce")
        if numbers.isna().any():
            return ""
        known = to_numbers(lead_ids.dropna().astype(str).str.strip(), errors="coerce").dropna()
        if not numbers.isin(known).any():
            return ""
    example = lead_ids.dropna()
    shown = f" (e.g. {str(example.iat[0])!r})" if len(example) else ""
    return (f"the id types differ: {LEADS}.lead_id holds text ids{shown}, {table}.lead_id numbers; they are "
            "matched as text, where '1.0' is not '1': store the ids alike in every table")


def rule_future(timestamps: pd.Series, reference: pd.Timestamp) -> np.ndarray:
    """Timestamps after the reference time."""
    return (timestamps > reference).to_numpy()


def rule_converted_before_created(
    outcome_lead_ids: pd.Series, converted_at: pd.Series, lead_ids: pd.Series, created_at: pd.Series
) -> np.ndarray:
    """Conversions dated before their lead's creation."""
    created_by_id = pd.Series(created_at.to_numpy(), index=lead_ids.to_numpy())
    created_by_id = created_by_id[~created_by_id.index.duplicated() & created_by_id.index.notna()]
    created = outcome_lead_ids.map(created_by_id)
    return (converted_at < created).to_numpy()


# ---------------------------------------------------------------------------------------------
# Policy
# ---------------------------------------------------------------------------------------------
class QuarantineWriteError(OSError):
    """The quarantine files cannot be written (the message names ``quarantine_dir`` and the file)."""


def write_quarantine(
    rows: pd.DataFrame, reasons: np.ndarray, directory: Path, table: str, fmt: str
) -> Path:
    """Write offending raw rows with ``_row`` and ``_reason`` atomically; returns the file path."""
    return write_quarantine_files({table: (rows, reasons)}, directory, fmt)[table]


def write_quarantine_files(
    tables: dict[str, tuple[pd.DataFrame, np.ndarray]], directory: Path, fmt: str
) -> dict[str, Path]:
    """Write each table's offending raw rows with ``_row`` and ``_reason`` to ``directory/<table>.<fmt>``: all
    files or none (each is written aside first, then all are moved in place). Failures raise
    :class:`QuarantineWriteError` naming the folder and the file."""
    targets = {table: directory / f"{table}.{fmt}" for table in tables}
    written: dict[str, Path] = {}
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for target in targets.values():
            if target.is_dir():
                raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), target.name)
        for table, (rows, reasons) in tables.items():
            out = rows.copy()
            out.insert(0, REASON_COLUMN, reasons)
            out.insert(0, ROW_COLUMN, rows.index.to_numpy())
            fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{table}.", suffix=f".{fmt}")
            os.close(fd)
            written[table] = Path(tmp_name)
            if fmt == "parquet":
                text = [c for c in out.columns if out[c].dtype == object]
                out[text] = out[text].apply(to_text)
                out.to_parquet(written[table], index=False)
            else:
                out.to_csv(written[table], index=False)
        for table, tmp in written.items():
            tmp.replace(targets[table])
    except OSError as exc:
        for tmp in written.values():
            tmp.unlink(missing_ok=True)
        where = f"{exc.filename}: " if exc.filename and Path(exc.filename).name in {t.name for t in targets.values()} \
            else ""
        error = QuarantineWriteError(f"quarantine_dir {directory}: {where}{exc.strerror or exc}")
        error.errno = exc.errno
        raise error from exc
    except BaseException:
        for tmp in written.values():
            tmp.unlink(missing_ok=True)
        raise
    return targets


def apply_policy(
    collector: ViolationCollector,
    raw: dict[str, pd.DataFrame],
    config: _CommonConfig,
    *,
    cascade_from_leads: dict[str, pd.Series] | None = None,
    cascade_to_leads: dict[str, pd.Series] | None = None,
    lead_table: str = LEADS,
) -> tuple[dict[str, np.ndarray], ValidationReport]:
    """Apply the policy to per-table masks; returns the keep-mask per table and the report.

    ``raw`` holds the frames as read (quarantine files show these rows). ``cascade_from_leads`` maps
    dependent tables to their lead-id series: rows of quarantined leads are quarantined too.
    ``cascade_to_leads`` maps tables whose quarantined rows take their lead along. ``lead_ids`` of
    the lead table must be given under ``cascade_from_leads[lead_table]``.
    """
    report = ValidationReport(policy=config.policy, violations=list(collector.violations))
    report.rows_in = {t: len(f) for t, f in raw.items()}
    if config.policy == STRICT:
        if collector.violations:
            raise ContractError(collector.violations, config.source.kind)
        report.rows_kept = dict(report.rows_in)
        report.rows_quarantined = dict.fromkeys(raw, 0)
        return {t: np.ones(len(f), dtype=bool) for t, f in raw.items()}, report

    cascade_from_leads = cascade_from_leads or {}
    cascade_to_leads = cascade_to_leads or {}
    bad = {t: collector.table_mask(t, len(f)) for t, f in raw.items()}
    extra: dict[str, dict[str, np.ndarray]] = {t: {} for t in raw}
    lead_ids = cascade_from_leads.get(lead_table)
    if lead_ids is not None:
        # Upward cascade: a quarantined outcome takes its lead (else a conversion silently vanishes).
        up_ids = [ids[bad[t]] for t, ids in cascade_to_leads.items()]
        if up_ids:
            up = (lead_ids.isin(pd.concat(up_ids).dropna()).to_numpy()) & ~bad[lead_table]
            if up.any():
                extra[lead_table][OUTCOME_QUARANTINED] = up
                bad[lead_table] |= up
        # Downward cascade: a quarantined lead takes its events and outcomes.
        gone = lead_ids[bad[lead_table]].dropna()
        report.quarantined_lead_ids = gone.tolist()
        for table, ids in cascade_from_leads.items():
            if table == lead_table:
                continue
            down = ids.isin(gone).to_numpy() & ~bad[table]
            if down.any():
                extra[table][LEAD_QUARANTINED] = down
                bad[table] |= down

    files: dict[str, tuple[pd.DataFrame, np.ndarray]] = {}
    for table, frame in raw.items():
        n_bad = int(bad[table].sum())
        report.rows_quarantined[table] = n_bad
        report.rows_kept[table] = len(frame) - n_bad
        report.cascaded[table] = {rule: int(mask.sum()) for rule, mask in extra[table].items()}
        files[table] = (frame[bad[table]], collector.reasons(table, np.flatnonzero(bad[table]), extra[table]))
    assert config.quarantine_dir is not None  # guaranteed by the config validator
    report.quarantine_files = write_quarantine_files(files, Path(config.quarantine_dir), config.quarantine_format)
    report.cascaded = {t: c for t, c in report.cascaded.items() if c}
    return {t: ~m for t, m in bad.items()}, report


# ---------------------------------------------------------------------------------------------
# CRM validation
# ---------------------------------------------------------------------------------------------
def _canonical(frame: pd.DataFrame, table: str, config: DataConfig) -> pd.DataFrame:
    """Rename mapped source columns to canonical names (raw values, index = row number)."""
    rename = {s: c for s, c in config.columns.canonical_by_source(table).items() if s in frame.columns}
    clashes = [c for s, c in rename.items() if s != c and c in frame.columns]
    if clashes:
        raise ContractError(
            [
                ContractViolation(
                    table, c, "ambiguous_column", 0, [],
                    f"source has both {c!r} and the column mapped onto it",
                )
                for c in clashes
            ]
        )
    return frame.rename(columns=rename, copy=False) if rename else frame


def _assemble(
    columns: dict[str, pd.Series], order: list[str], keep: np.ndarray, kind: Literal["int", "str"]
) -> pd.DataFrame:
    """Canonical output frame from typed columns: kept rows only, fresh RangeIndex, ids finalised."""
    everything = bool(keep.all())
    arrays = {}
    for column in order:
        values = columns[column] if everything else columns[column][keep]
        values = finalize_lead_ids(values, kind) if column == LEAD_ID else values
        arrays[column] = values.reset_index(drop=True) if not everything else values
    return pd.DataFrame(arrays, copy=False)


def _positional(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` indexed 0..n-1 (row numbers in messages), without copying when it already is."""
    index = frame.index
    if isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1:
        return frame
    return frame.reset_index(drop=True)


def validate_crm(raw: Any, config: DataConfig, passthrough: tuple[str, ...] = ()) -> tuple[CRMData, ValidationReport]:
    """Validate raw tables (``RawTables`` or any object with leads/events/outcomes frames).

    Returns canonical, typed :class:`CRMData` and the :class:`ValidationReport`; raises
    :class:`ContractError` on missing required columns, and on any violation under ``strict``.
    ``passthrough``: lead columns that are no attribute but stay in ``leads`` (kept rows, raw values,
    after the last attribute) when the source has them, such as rescoring's ``updated_at``.
    """
    source_frames = {t: _positional(getattr(raw, t)) for t in TABLES}
    frames = {t: _canonical(source_frames[t], t, config) for t in TABLES}
    collector = ViolationCollector()
    for table in TABLES:
        names = {c: config.columns.source_name(table, c) for c in REQUIRED_COLUMNS[table]}
        # a mapped name the source lacks is missing even when a column of the canonical name exists
        misspelt = [c for c, source in names.items() if source != c and source not in source_frames[table].columns]
        missing = rule_missing_columns(frames[table], REQUIRED_COLUMNS[table])
        collector.missing_columns(table, [c for c in REQUIRED_COLUMNS[table] if c in missing or c in misspelt], names,
                                  source_frames[table].columns)
    leads_frame = frames[LEADS]
    declared = [*config.attributes.categorical, *config.attributes.numeric]
    for column in declared:
        if column not in leads_frame.columns:
            collector.violations.append(
                ContractViolation(LEADS, column, MISSING_COLUMN, 0, [],
                                  "declared attribute not found" + did_you_mean(column, leads_frame.columns)))
    for column in config.attributes.ignore:
        if column not in leads_frame.columns:  # a misspelt ignore would keep the column it means as a feature
            collector.violations.append(
                ContractViolation(LEADS, column, MISSING_COLUMN, 0, [],
                                  "ignored attribute not found" + did_you_mean(column, leads_frame.columns)))
    for column in config.attributes.non_negative:
        if column not in leads_frame.columns:
            collector.violations.append(
                ContractViolation(LEADS, column, MISSING_COLUMN, 0, [],
                                  "non-negative attribute not found" + did_you_mean(column, leads_frame.columns)))
    reserved = [c for c in leads_frame.columns if c in TRAINING_SET_COLUMNS and c not in config.attributes.ignore]
    for column in reserved:  # the training set's own columns: an attribute of that name cannot sit beside them
        collector.violations.append(
            ContractViolation(LEADS, column, RESERVED_NAME, 0, [], "name of a training-set column "
                              f"({', '.join(TRAINING_SET_COLUMNS)}); list it under attributes.ignore or rename it"))
    for table in (EVENTS, OUTCOMES):
        for column in OPTIONAL_COLUMNS[table]:
            source = getattr(config.columns, table).get(column)
            if source is not None and (column not in frames[table].columns or source not in source_frames[table]):
                collector.violations.append(
                    ContractViolation(table, column, MISSING_COLUMN, 0, [], f"mapped source column {source!r} not found"
                                      + did_you_mean(source, source_frames[table].columns))
                )
    if collector.fatal():
        raise ContractError(collector.fatal())

    markers = config.missing_values
    frames = {t: replace_missing_markers(f, markers) for t, f in frames.items()}
    reference = config.reference_timestamp()
    typed: dict[str, dict[str, pd.Series]] = {t: {} for t in TABLES}

    # lead ids: the leads table decides int vs str; the other tables follow it.
    kind = lead_id_kind(frames[LEADS][LEAD_ID])
    for table in TABLES:
        ids, bad = coerce_lead_ids(frames[table][LEAD_ID], kind)
        typed[table][LEAD_ID] = ids
        collector.add(table, LEAD_ID, WRONG_TYPE, bad, frames[table])
        collector.add(table, LEAD_ID, NULL_VALUE, rule_null(ids, bad), frames[table])

    time_columns = {LEADS: CREATED_AT, EVENTS: OCCURRED_AT, OUTCOMES: CONVERTED_AT}
    for table, column in time_columns.items():
        parsed, bad = parse_timestamps(frames[table][column], config.timestamp_format_of(table))
        typed[table][column] = parsed
        collector.add(table, column, WRONG_TYPE, bad, frames[table],
                      detail=timestamp_detail(frames[table][column], bad, config.timestamp_format_of(table)))
        if table != OUTCOMES:  # converted_at is null for leads that did not convert
            collector.add(table, column, NULL_VALUE, rule_null(parsed, bad), frames[table])
        collector.add(table, column, FUTURE_TIMESTAMP, rule_future(parsed, reference), frames[table],
                      detail=f"after reference time {reference}")

    events = frames[EVENTS]
    binary = binary_values(events[EVENT_TYPE])
    collector.add(EVENTS, EVENT_TYPE, WRONG_TYPE, binary, events, detail=BINARY_DETAIL)
    typed[EVENTS][EVENT_TYPE] = to_text_category(events[EVENT_TYPE].mask(binary) if binary.any() else events[EVENT_TYPE])
    collector.add(EVENTS, EVENT_TYPE, NULL_VALUE, rule_null(typed[EVENTS][EVENT_TYPE]), events)
    for table, column in ((EVENTS, CHANNEL), (EVENTS, CAMPAIGN)):
        if column in frames[table].columns:
            binary = binary_values(frames[table][column])
            collector.add(table, column, WRONG_TYPE, binary, frames[table], detail=BINARY_DETAIL)
            typed[table][column] = to_text(frames[table][column].mask(binary))
    for table, column in ((EVENTS, VALUE), (OUTCOMES, AMOUNT)):
        if column in frames[table].columns:
            parsed, bad = parse_numbers(frames[table][column])
            typed[table][column] = parsed
            collector.add(table, column, WRONG_TYPE, bad, frames[table], detail="not a finite number")
            if column == AMOUNT:
                collector.add(table, column, NEGATIVE_AMOUNT, (parsed < 0).to_numpy(), frames[table],
                              detail="a deal value below 0")

    # attributes
    attrs = config.attributes
    canonical_lead_columns = {*REQUIRED_COLUMNS[LEADS], *OPTIONAL_COLUMNS[LEADS]}
    candidates = [c for c in leads_frame.columns if c not in canonical_lead_columns and c not in attrs.ignore]
    attribute_columns = candidates if attrs.infer_undeclared else [c for c in candidates if c in declared]
    categorical, numeric = infer_kinds(frames[LEADS], attribute_columns, attrs.categorical,
                                       [*attrs.numeric, *attrs.non_negative])  # non-negative: numbers, declared
    for column in categorical:
        binary = binary_values(frames[LEADS][column])
        collector.add(LEADS, column, WRONG_TYPE, binary, frames[LEADS], detail=BINARY_DETAIL)
        typed[LEADS][column] = values_as_text(frames[LEADS][column].mask(binary))  # "75.0" as "75"
    for column in numeric:
        parsed, bad = parse_numbers(frames[LEADS][column])
        typed[LEADS][column] = parsed
        collector.add(LEADS, column, WRONG_TYPE, bad, frames[LEADS], detail="not a finite number")
        if column in attrs.non_negative:
            collector.add(LEADS, column, NEGATIVE_VALUE, (parsed < 0).to_numpy(), frames[LEADS],
                          detail="must be >= 0")

    # relations
    lead_ids = typed[LEADS][LEAD_ID]
    collector.add(LEADS, LEAD_ID, DUPLICATE_LEAD_ID, rule_duplicated(lead_ids), frames[LEADS])
    for table in (EVENTS, OUTCOMES):
        unknown = rule_unknown_lead(typed[table][LEAD_ID], lead_ids)
        detail = id_types_detail(table, frames[LEADS][LEAD_ID], frames[table][LEAD_ID][unknown]) if (
            kind == "str" and unknown.any()) else ""
        collector.add(table, LEAD_ID, UNKNOWN_LEAD, unknown, frames[table], detail=detail)
    collector.add(OUTCOMES, LEAD_ID, DUPLICATE_OUTCOME,
                  rule_duplicate_outcome(typed[OUTCOMES][LEAD_ID], typed[OUTCOMES][CONVERTED_AT]),
                  frames[OUTCOMES], detail="the same conversion (lead and converted_at) more than once")
    collector.add(
        OUTCOMES, CONVERTED_AT, CONVERTED_BEFORE_CREATED,
        rule_converted_before_created(typed[OUTCOMES][LEAD_ID], typed[OUTCOMES][CONVERTED_AT],
                                      lead_ids, typed[LEADS][CREATED_AT]),
        frames[OUTCOMES],
    )

    keep, report = apply_policy(
        collector,
        source_frames,
        config,
        cascade_from_leads={t: typed[t][LEAD_ID] for t in TABLES},
        cascade_to_leads={OUTCOMES: typed[OUTCOMES][LEAD_ID]},
    )
    ignored = [c for c in candidates if c not in attribute_columns] + [c for c in attrs.ignore if c in leads_frame]
    if ignored:
        report.ignored_columns[LEADS] = ignored
    for column in categorical:
        if column not in attrs.categorical and (note := mostly_numeric_note(LEADS, column, frames[LEADS][column])
                                                or identifier_note(LEADS, column, typed[LEADS][column][keep[LEADS]])):
            report.notes.append(note)
    report.notes += [note for column in [*categorical, *numeric]
                     if (note := all_null_note(LEADS, column, typed[LEADS][column], "attributes.ignore"))]
    if note := early_created_note(typed[LEADS][CREATED_AT], typed[LEADS][LEAD_ID], frames[LEADS][CREATED_AT]):
        report.notes.append(note)
    if len(typed[LEADS][LEAD_ID]) and typed[OUTCOMES][CONVERTED_AT].isna().all():
        source = config.columns.source_name(OUTCOMES, CONVERTED_AT)
        report.notes.append(f"outcomes.converted_at: no conversion in its {len(typed[OUTCOMES][CONVERTED_AT]):,} rows "
                            f"(source column {source!r}): no lead converted, so no model can be trained; is the "
                            "outcomes table or its converted_at mapping the right one?")
    report.notes += event_type_notes(typed[EVENTS][EVENT_TYPE][keep[EVENTS]])
    out = {}
    for table in TABLES:
        columns = typed[table]
        order = [*REQUIRED_COLUMNS[table], *(c for c in OPTIONAL_COLUMNS[table] if c in columns)]
        if table == LEADS:
            order += [*categorical, *numeric]
            extra = [c for c in passthrough if c in frames[LEADS].columns and c not in order]
            columns = {**columns, **{c: frames[LEADS][c] for c in extra}}
            order += extra
        out[table] = _assemble(columns, order, keep[table], kind)
    data = CRMData(
        leads=out[LEADS], events=out[EVENTS], outcomes=out[OUTCOMES],
        categorical_attributes=categorical, numeric_attributes=numeric, missing_values=tuple(markers),
    )
    return data, report
