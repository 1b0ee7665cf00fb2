"""Read + validate in one call, for either data mode (the entry points the CLI and jobs use)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from features.contract import (
    EMPTY_TABLE,
    NULL_VALUE,
    STRICT,
    WRONG_TYPE,
    ContractError,
    ContractViolation,
    DataConfig,
    FlatConfig,
    ValidationReport,
    validate_crm,
    write_quarantine,
)
from features.flat import load_flat
from features.readers import (
    SqlDatabase,
    count_null_lead_ids,
    read_crm,
    read_rows_without_lead_id,
    text_lead_ids_in_numeric_columns,
    unnamed_column_notes,
)
from features.schema import LEAD_ID, LEADS, TABLES, CRMData, FlatData


def load_crm(
    config: DataConfig,
    *,
    lead_ids: Sequence[Any] | None = None,
    lead_id_range: tuple[Any, Any] | None = None,
    database: SqlDatabase | None = None,
) -> tuple[CRMData, ValidationReport]:
    """Read the three CRM tables (all leads or a subset) and validate them.

    ``database``: an open :class:`~features.readers.SqlDatabase` on the source to reuse (SQL sources).
    """
    raw = read_crm(config, lead_ids=lead_ids, lead_id_range=lead_id_range, database=database)
    if lead_ids is None and lead_id_range is None and len(raw.leads) == 0:  # a subset may be empty; all leads not
        raise ContractError([ContractViolation(LEADS, LEAD_ID, EMPTY_TABLE, 0, [], "the leads table has no rows")])
    data, report = validate_crm(raw, config)
    report.notes[:0] = [note for table in TABLES
                        for note in unnamed_column_notes(config.source, config.source.location(table), table)]
    return data, report


def load_data(
    config: DataConfig | FlatConfig,
    *,
    lead_ids: Sequence[Any] | None = None,
    lead_id_range: tuple[Any, Any] | None = None,
) -> tuple[CRMData | FlatData, ValidationReport]:
    """Dispatch on ``config.mode``: ``crm`` -> :func:`load_crm`, ``flat`` -> :func:`load_flat`."""
    if isinstance(config, FlatConfig):
        return load_flat(config, lead_ids=lead_ids, lead_id_range=lead_id_range)
    return load_crm(config, lead_ids=lead_ids, lead_id_range=lead_id_range)


NO_LEAD_ID_FOLDER = "no-lead-id"  # quarantine_dir's folder of the rows without a lead id
TEXT_LEAD_ID_FOLDER = "text-lead-id"  # of SQLite rows whose lead id is text in a numeric column


def set_aside_rows_without_lead_id(data: DataConfig) -> dict[str, int]:
    """For jobs that read by lead-id ranges (the distributed build, rescore): rows without a lead id
    belong to no range, so no partition would read them; nor would one read a SQLite row whose lead id
    is text in a numeric column (it compares above every number). Count them up front; under ``strict``
    they are refused (table, count and, for text ids, examples named); under ``quarantine`` they are
    written, whole, to ``quarantine_dir/no-lead-id/`` (as a whole-table load quarantines them). Returns
    the counts per table."""
    nulls = {t: n for t, n in count_null_lead_ids(data).items() if n}
    texts = text_lead_ids_in_numeric_columns(data)
    if not nulls and not texts:
        return {}
    if data.policy == STRICT:
        raise ContractError(
            [ContractViolation(t, LEAD_ID, NULL_VALUE, n, [], "rows without a lead id") for t, n in nulls.items()]
            + [ContractViolation(t, LEAD_ID, WRONG_TYPE, n, [{"value": v} for v in values],
                                 "text lead ids in a numeric column: no lead-id range holds them")
               for t, (n, values) in texts.items()])
    assert data.quarantine_dir is not None  # guaranteed by the config validator
    counts: dict[str, int] = {}
    for tables, rule, folder in ((nulls, NULL_VALUE, NO_LEAD_ID_FOLDER), (texts, WRONG_TYPE, TEXT_LEAD_ID_FOLDER)):
        for table in tables:
            rows = read_rows_without_lead_id(data, table, text_in_numeric=rule == WRONG_TYPE)
            counts[table] = counts.get(table, 0) + len(rows)
            reasons = np.full(len(rows), f"{rule}:{LEAD_ID}", dtype=object)
            write_quarantine(rows, reasons, Path(data.quarantine_dir) / folder, table, data.quarantine_format)
    return counts
