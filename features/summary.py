"""Descriptive summaries of validated CRM data or flat exports (what a data scientist checks first)."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from features.schema import CONVERTED_AT, CREATED_AT, EVENT_TYPE, LEAD_ID, OCCURRED_AT, CRMData, FlatData

SECONDS_PER_DAY = 86_400.0
TEXT_WIDTH = 100  # characters per line of :func:`rows_text`


def rows_text(rows: list[tuple[str, str]], width: int = TEXT_WIDTH) -> str:
    """(label, value) rows as aligned lines, long values wrapped under their value (never cut short, as a
    table cell is in a notebook)."""
    pad = max((len(label) for label, _ in rows), default=0) + 2
    return "\n".join(textwrap.fill(value, width=max(width, pad + 20), initial_indent=f"{label}:".ljust(pad),
                                    subsequent_indent=" " * pad, break_long_words=False, break_on_hyphens=False)
                      for label, value in rows)


@dataclass(frozen=True)
class CRMSummary:
    """Headline figures of a CRM history."""

    leads: int
    events: int
    outcomes: int
    conversions: int
    conversion_rate: float
    median_days_to_close: float | None
    first_created: pd.Timestamp | None
    last_activity: pd.Timestamp | None
    events_per_lead: float
    event_type_counts: dict[str, int]
    attributes: dict[str, str]

    def as_rows(self) -> list[tuple[str, str]]:
        """(label, value) pairs for printing."""
        median = "n/a" if self.median_days_to_close is None else f"{self.median_days_to_close:.1f} days"
        return [
            ("leads", f"{self.leads:,}"),
            ("events", f"{self.events:,} ({self.events_per_lead:.1f} per lead)"),
            ("outcomes rows", f"{self.outcomes:,}"),
            ("converted leads", f"{self.conversions:,}"),
            ("conversion rate", f"{self.conversion_rate:.2%}"),
            ("median time to close", median),
            ("history", f"{_day(self.first_created)} .. {_day(self.last_activity)}"),
            ("attributes", ", ".join(f"{k} ({v})" for k, v in self.attributes.items()) or "none"),
        ]

    def to_text(self) -> str:
        """The rows as text (:func:`rows_text`)."""
        return rows_text(self.as_rows())


def _day(value: pd.Timestamp | None) -> str:
    return "n/a" if value is None or pd.isna(value) else str(pd.Timestamp(value).date())


def summarize_crm(crm: CRMData) -> CRMSummary:
    """Counts, conversion rate and median creation-to-close time of validated CRM tables."""
    leads, events, outcomes = crm.leads, crm.events, crm.outcomes
    # a lead that converted again (recycled, then won) counts once, from its first conversion
    converted = (outcomes.loc[outcomes[CONVERTED_AT].notna(), [LEAD_ID, CONVERTED_AT]]
                 .sort_values(CONVERTED_AT, kind="stable").drop_duplicates(LEAD_ID))
    created = leads.set_index(LEAD_ID)[CREATED_AT]
    days = (converted[CONVERTED_AT].to_numpy() - created.reindex(converted[LEAD_ID]).to_numpy())
    days = days.astype("timedelta64[s]").astype(np.float64) / SECONDS_PER_DAY
    stamps = [s for s in (events[OCCURRED_AT].max() if len(events) else None,
                          converted[CONVERTED_AT].max() if len(converted) else None,
                          leads[CREATED_AT].max() if len(leads) else None) if s is not None and pd.notna(s)]
    kinds = {c: "categorical" for c in crm.categorical_attributes}
    kinds.update({c: "numeric" for c in crm.numeric_attributes})
    counts = events[EVENT_TYPE].astype(str).value_counts() if len(events) else pd.Series(dtype=int)
    return CRMSummary(
        leads=len(leads),
        events=len(events),
        outcomes=len(outcomes),
        conversions=len(converted),
        conversion_rate=len(converted) / len(leads) if len(leads) else 0.0,
        median_days_to_close=float(np.nanmedian(days)) if len(days) else None,
        first_created=leads[CREATED_AT].min() if len(leads) else None,
        last_activity=max(stamps) if stamps else None,
        events_per_lead=len(events) / len(leads) if len(leads) else 0.0,
        event_type_counts={str(k): int(v) for k, v in counts.items()},
        attributes=kinds,
    )


@dataclass(frozen=True)
class FlatSummary:
    """Headline figures of a flat (one row per lead) export."""

    leads: int
    positives: int
    positive_rate: float
    features_by_family: dict[str, int]
    score_columns: list[str]
    numeric_features: list[str] = field(default_factory=list)
    categorical_features: list[str] = field(default_factory=list)

    def as_rows(self) -> list[tuple[str, str]]:
        families = ", ".join(f"{k}: {v}" for k, v in sorted(self.features_by_family.items()))
        return [
            ("leads", f"{self.leads:,}"),
            ("positives", f"{self.positives:,} ({self.positive_rate:.2%})"),
            ("features by family", families),
            ("numeric features", ", ".join(self.numeric_features) or "none"),
            ("categorical features", ", ".join(self.categorical_features) or "none"),
            ("existing score columns", ", ".join(self.score_columns) or "none"),
        ]

    def to_text(self) -> str:
        """The rows as text (:func:`rows_text`)."""
        return rows_text(self.as_rows())


def summarize_flat(flat: FlatData) -> FlatSummary:
    """Counts, label rate and feature families of a flat export."""
    labels = flat.frame[flat.label]
    by_family: dict[str, int] = {}
    for column in flat.features:
        family = flat.families.get(column, "fit")
        by_family[family] = by_family.get(family, 0) + 1
    return FlatSummary(
        leads=len(flat.frame),
        positives=int(labels.sum()),
        positive_rate=float(labels.mean()) if len(labels) else 0.0,
        features_by_family=by_family,
        score_columns=list(flat.score_columns),
        numeric_features=list(flat.numeric_features),
        categorical_features=list(flat.categorical_features),
    )


def summarize_data(data: CRMData | FlatData) -> CRMSummary | FlatSummary:
    """:func:`summarize_flat` of a flat export, :func:`summarize_crm` of CRM tables."""
    return summarize_flat(data) if isinstance(data, FlatData) else summarize_crm(data)
