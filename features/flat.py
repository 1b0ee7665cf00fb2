"""Flat mode: one exported table, one row per lead, engagement already aggregated, a label column.

Column roles come from :class:`features.contract.FlatConfig`. The output :class:`FlatData` frame
holds ``lead_id``, ``label`` (0/1, int64), optional ``created_at``, the feature
columns (source names) and the score columns (kept aside for baselines; not features).
Ignored columns are dropped and listed in the report's ``ignored_columns``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from features.contract import (
    DUPLICATE_LEAD_ID,
    EMPTY_TABLE,
    FLAT,
    FUTURE_TIMESTAMP,
    MISSING_COLUMN,
    NON_BINARY_LABEL,
    NULL_VALUE,
    RESERVED_NAME,
    TRAINING_SET_COLUMNS,
    WRONG_TYPE,
    ContractError,
    ContractViolation,
    FlatConfig,
    ValidationReport,
    ViolationCollector,
    all_null_note,
    apply_policy,
    coerce_lead_ids,
    did_you_mean,
    finalize_lead_ids,
    identifier_note,
    infer_kinds,
    lead_id_kind,
    mostly_numeric_note,
    parse_numbers,
    parse_timestamps,
    replace_missing_markers,
    rule_duplicated,
    rule_future,
    rule_missing_columns,
    rule_null,
    timestamp_detail,
    to_text,
)
from features.readers import read_flat, unnamed_column_notes
from features.schema import CREATED_AT, LEAD_ID, FlatData, to_numbers, values_as_text

LABEL = "label"


def _label_matches(values: pd.Series, label: str | int | bool) -> np.ndarray:
    """Rows equal to ``label``: numerically when both sides are numbers (text ``1.0`` is ``1``), a boolean label
    as text of any case (``true``, ``TRUE``), else as trimmed text."""
    numeric_label = to_numbers(pd.Series([label]), errors="coerce").iat[0]
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.isna(numeric_label):
        return (values.astype("float64") == float(numeric_label)).to_numpy()
    text = to_text(values).str.strip()
    match = text == str(label).strip()
    if isinstance(label, bool):
        match |= text.str.casefold() == str(label).casefold()
    elif not pd.isna(numeric_label):
        match |= to_numbers(text, errors="coerce") == float(numeric_label)
    return match.fillna(False).to_numpy(dtype=bool)


def parse_label(values: pd.Series, positive: Any, negative: Any) -> tuple[pd.Series, np.ndarray]:
    """Label to 0/1 (int64 where valid); returns (labels as float with NaN, mask of non-binary values)."""
    is_pos = _label_matches(values, positive)
    is_neg = _label_matches(values, negative)
    labels = pd.Series(np.where(is_pos, 1.0, np.where(is_neg, 0.0, np.nan)), index=values.index)
    non_binary = values.notna().to_numpy() & ~is_pos & ~is_neg
    return labels, non_binary


def validate_flat(raw: pd.DataFrame, config: FlatConfig) -> tuple[FlatData, ValidationReport]:
    """Validate a raw flat table against ``config``; returns :class:`FlatData` and the report.

    Raises :class:`ContractError` when a declared column is missing, and on any violation under
    ``strict``.
    """
    source = raw if isinstance(raw.index, pd.RangeIndex) and raw.index.start == 0 and raw.index.step == 1 else raw.reset_index(drop=True)
    collector = ViolationCollector()
    for column in rule_missing_columns(source, config.declared_columns()):
        collector.violations.append(ContractViolation(FLAT, column, MISSING_COLUMN, 0, [],
                                                      "declared column not found" + did_you_mean(column, source.columns)))
    reserved = (LEAD_ID, LABEL, CREATED_AT, *TRAINING_SET_COLUMNS)
    clash = [c for c in reserved if c in source.columns and c not in config.declared_columns()]
    for column in clash:
        collector.violations.append(
            ContractViolation(FLAT, column, RESERVED_NAME, 0, [], "name is reserved for the canonical and training-set "
                              f"columns ({', '.join(reserved)}); ignore it")
        )
    if collector.violations:
        raise ContractError(collector.violations)

    frame = replace_missing_markers(source, config.missing_values)
    for column, values in config.masked_values.items():
        hit = frame[column].isin(values).to_numpy()
        if hit.any():
            frame[column] = frame[column].mask(hit)
    id_col = config.id_column

    def add(column: str, rule: str, mask: np.ndarray, detail: str = "") -> None:
        collector.add(FLAT, column, rule, mask, frame, id_column=id_col, detail=detail)

    kind = lead_id_kind(frame[id_col])
    ids, bad_ids = coerce_lead_ids(frame[id_col], kind)
    add(id_col, WRONG_TYPE, bad_ids)
    add(id_col, NULL_VALUE, rule_null(ids, bad_ids))
    add(id_col, DUPLICATE_LEAD_ID, rule_duplicated(ids))

    labels, non_binary = parse_label(frame[config.label_column], config.positive_label, config.negative_label)
    add(config.label_column, NULL_VALUE, rule_null(frame[config.label_column]))
    add(config.label_column, NON_BINARY_LABEL, non_binary,
        f"expected {config.positive_label!r} (positive) or {config.negative_label!r} (negative)"
        + label_values_hint(frame[config.label_column], non_binary))

    columns: dict[str, pd.Series] = {LEAD_ID: ids, LABEL: labels}
    if config.timestamp_column:
        parsed, bad = parse_timestamps(frame[config.timestamp_column], config.timestamp_format)
        add(config.timestamp_column, WRONG_TYPE, bad,
            timestamp_detail(frame[config.timestamp_column], bad, config.timestamp_format))
        add(config.timestamp_column, NULL_VALUE, rule_null(parsed, bad))
        reference = config.reference_timestamp()
        add(config.timestamp_column, FUTURE_TIMESTAMP, rule_future(parsed, reference),
            f"after reference time {reference}")
        columns[CREATED_AT] = parsed

    roles = {id_col, config.label_column, config.timestamp_column, *config.ignore, *config.score_columns}
    feature_columns = [c for c in frame.columns if c not in roles]
    categorical, numeric = infer_kinds(frame, feature_columns, config.categorical, config.numeric)
    for column in categorical:
        columns[column] = values_as_text(frame[column])  # "75.0" as "75", as the CRM mode writes it
    for column in [*numeric, *config.score_columns]:
        parsed, bad = parse_numbers(frame[column])
        add(column, WRONG_TYPE, bad, "not a finite number")
        columns[column] = parsed

    keep, report = apply_policy(collector, {FLAT: source}, config)
    ignored = [c for c in config.ignore if c in source.columns]
    if ignored:
        report.ignored_columns[FLAT] = ignored
    for column in categorical:  # as the CRM mode notes its inferred attributes, with the flat config's keys
        if column not in config.categorical and (
                note := mostly_numeric_note(FLAT, column, frame[column], numeric_key="numeric")
                or identifier_note(FLAT, column, columns[column][keep[FLAT]], key_prefix="")):
            report.notes.append(note)
    report.notes += [note for column in [*categorical, *numeric]
                     if (note := all_null_note(FLAT, column, columns[column], "ignore"))]
    out = pd.DataFrame(columns)[keep[FLAT]].reset_index(drop=True)
    out[LEAD_ID] = finalize_lead_ids(out[LEAD_ID], kind)
    out[LABEL] = out[LABEL].astype("int64")
    families = {c: config.family_of(c) for c in [*categorical, *numeric]}
    data = FlatData(
        frame=out, categorical_features=categorical, numeric_features=numeric, families=families,
        score_columns=list(config.score_columns), label=LABEL, missing_values=tuple(config.missing_values),
    )
    return data, report


def load_flat(
    config: FlatConfig,
    *,
    lead_ids: Sequence[Any] | None = None,
    lead_id_range: tuple[Any, Any] | None = None,
) -> tuple[FlatData, ValidationReport]:
    """Read the flat table and validate it (a table without rows is refused; a subset may be empty)."""
    raw = read_flat(config, lead_ids=lead_ids, lead_id_range=lead_id_range)
    if lead_ids is None and lead_id_range is None and len(raw) == 0:
        raise ContractError([ContractViolation(FLAT, config.id_column, EMPTY_TABLE, 0, [], "the flat table has no rows")])
    data, report = validate_flat(raw, config)
    location = config.source.table if config.source.kind == "sql" else config.source.path
    report.notes[:0] = unnamed_column_notes(config.source, None if location is None else str(location), FLAT)
    return data, report


_POSITIVE_WORDS = {"yes", "y", "true", "t", "won", "converted", "1"}


def label_values_hint(label: pd.Series, non_binary: np.ndarray) -> str:
    """When the label column holds two values the configured labels do not name (``Yes`` / ``No`` read with the
    default 1 / 0), the keys to set to them; ``""`` otherwise."""
    if not np.asarray(non_binary).any():
        return ""
    values = sorted({str(v).strip() for v in label.dropna()} - {""})
    if len(values) != 2:
        return ""
    positive = next((v for v in values if v.lower() in _POSITIVE_WORDS), None)
    if positive is None:
        return f"; the column holds {values[0]!r} and {values[1]!r}: set positive_label and negative_label to them"
    negative = values[1] if positive == values[0] else values[0]
    return (f"; the column holds {values[0]!r} and {values[1]!r}: set positive_label: {positive!r} and "
            f"negative_label: {negative!r}")
