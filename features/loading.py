"""Read + validate in one call, for either data mode (the entry points the CLI and jobs use)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from features.contract import (
    EMPTY_TABLE,
    ContractError,
    ContractViolation,
    DataConfig,
    FlatConfig,
    ValidationReport,
    validate_crm,
)
from features.flat import load_flat
from features.readers import SqlDatabase, read_crm
from features.schema import LEAD_ID, LEADS, CRMData, FlatData


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
    return validate_crm(raw, config)


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
