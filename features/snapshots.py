"""As-of dates, snapshot eligibility, labels and censoring (point in time).

Rules (all instants are tz-naive UTC, compared exactly in nanoseconds):

- As-of dates: ``pd.date_range(midnight of start, end, freq=cadence)`` keeping instants strictly after
  ``start`` (default: earliest ``created_at``) and at or before ``end`` (default: ``data_end``),
  unless ``config.as_of_dates`` lists them explicitly.
- ``data_end`` (end of observation) defaults to the latest timestamp in the data (``created_at``,
  ``occurred_at``, ``converted_at``).
- Eligibility: a lead enters the snapshot at ``as_of`` if ``created_at < as_of`` and it is not in a
  converted state at ``as_of``. A lead is in a converted state if it has a conversion with
  ``converted_at <= as_of`` (so a lead converted exactly at as_of is *excluded*) and no ``recycled``
  event strictly after that conversion and strictly before ``as_of``. Recycling therefore puts a
  converted lead back into later snapshots; a lead that was never converted is always eligible
  (recycling never removes a lead). The outcomes table may hold several conversions per lead.
- Labels refer to the next conversion strictly after as_of, seen no later than ``data_end``:
  ``converted_within_h`` = 1 if it falls in ``(as_of, as_of + H]`` (exactly at ``as_of + H`` is
  positive), else 0; NaN when the snapshot is ``censored`` (``as_of + H > data_end``), even if a
  conversion was already seen (keeps positives and negatives equally observed).
  ``days_observed`` = days from as_of to that conversion, or to ``data_end`` when none was seen;
  ``event`` = 1 if it was seen (right-censored survival data for time-to-close, on every row);
  ``days_to_convert`` = days to it when seen, NaN otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from features.engagement import count_before
from features.schema import (
    CONVERTED_AT,
    CREATED_AT,
    EVENT_TYPE,
    LEAD_ID,
    OCCURRED_AT,
    RECYCLED,
    CRMData,
)
from features.spec import DAY_NS, FeatureConfig

AS_OF = "as_of"
LABEL = "converted_within_h"
CENSORED = "censored"
DAYS_OBSERVED = "days_observed"
EVENT_OBSERVED = "event"
DAYS_TO_CONVERT = "days_to_convert"
LABEL_COLUMNS = (LABEL, CENSORED, DAYS_OBSERVED, EVENT_OBSERVED, DAYS_TO_CONVERT)

NAT_NS = np.iinfo(np.int64).min


class SnapshotError(ValueError):
    """Snapshots or labels cannot be built from the given tables or config."""


def to_ns(values: pd.Series | pd.Index | np.ndarray) -> np.ndarray:
    """datetime64 values -> int64 ns (NaT -> int64 min)."""
    if isinstance(values.dtype, np.dtype) and values.dtype.kind == "M":  # tz-naive: no pd.to_datetime pass
        return np.asarray(values).astype("datetime64[ns]", copy=False).view(np.int64)
    return np.asarray(pd.to_datetime(values), dtype="datetime64[ns]").view(np.int64)


def resolve_data_end(crm: CRMData, config: FeatureConfig) -> pd.Timestamp:
    """``config.data_end`` or the latest timestamp present in the three tables."""
    if config.data_end is not None:
        return pd.Timestamp(config.data_end)
    candidates = [
        crm.leads[CREATED_AT].max(),
        crm.events[OCCURRED_AT].max() if len(crm.events) else pd.NaT,
        crm.outcomes[CONVERTED_AT].max() if len(crm.outcomes) else pd.NaT,
    ]
    present = [pd.Timestamp(c) for c in candidates if pd.notna(c)]
    if not present:
        raise SnapshotError("leads: no timestamps to derive data_end from (empty tables?)")
    return max(present)


def crm_known_at(crm: CRMData, instant: pd.Timestamp | str, event_columns: Sequence[str] | None = None) -> CRMData:
    """The CRM as it was known at ``instant``: leads created before it, their events before it, and
    conversions at or before it (later conversions and amounts are dropped; NaT outcome rows kept).
    ``event_columns``: only these columns of the events are copied (all by default; the snapshots read
    ``lead_id``, ``occurred_at`` and ``event_type``, a fraction of a 10M-event table's bytes).

    Lead attributes are taken as they are now: a CRM export holds no attribute history.
    """
    at = pd.Timestamp(instant)
    leads = crm.leads[crm.leads[CREATED_AT] < at]
    ids = leads[LEAD_ID]
    kept = (crm.events[OCCURRED_AT] < at) & crm.events[LEAD_ID].isin(ids)
    events = crm.events[kept] if event_columns is None else crm.events.loc[kept, list(event_columns)]
    converted = crm.outcomes[CONVERTED_AT]
    outcomes = crm.outcomes[crm.outcomes[LEAD_ID].isin(ids) & (converted.isna() | (converted <= at))]
    return CRMData(leads.reset_index(drop=True), events.reset_index(drop=True), outcomes.reset_index(drop=True),
                   list(crm.categorical_attributes), list(crm.numeric_attributes), crm.missing_values)


def as_of_dates(crm: CRMData, config: FeatureConfig, data_end: pd.Timestamp | None = None) -> pd.DatetimeIndex:
    """The snapshot instants (see module docstring)."""
    if config.as_of_dates is not None:
        dates = pd.DatetimeIndex(config.as_of_dates)
        end = data_end if data_end is not None else resolve_data_end(crm, config)
        if end is not None and (late := dates[dates > end]).size:
            shown = [f"{d:%Y-%m-%d %H:%M}".removesuffix(" 00:00") for d in late[:5]]
            raise SnapshotError(f"features.as_of_dates: {shown} after the data end {end:%Y-%m-%d %H:%M} (the latest "
                                "timestamp of leads, events and outcomes, or features.data_end): a snapshot there "
                                "counts no activity since the data end and can have no label; leave them out or "
                                "load newer data")
        return dates
    end = pd.Timestamp(config.end) if config.end is not None else (data_end or resolve_data_end(crm, config))
    if config.start is not None:
        start = pd.Timestamp(config.start)
    else:
        if len(crm.leads) == 0 or crm.leads[CREATED_AT].isna().all():
            raise SnapshotError("leads: no created_at values to derive the first as-of date from")
        start = pd.Timestamp(crm.leads[CREATED_AT].min())
    try:
        dates = pd.date_range(start.normalize(), end, freq=config.cadence)
    except ValueError as exc:
        raise SnapshotError(f"config.cadence {config.cadence!r} is not a pandas frequency: {exc}") from exc
    return dates[(dates > start) & (dates <= end)]


def lead_timeline(lead_pos: np.ndarray, time_ns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort (lead position, time) pairs by lead then time."""
    order = np.lexsort((time_ns, lead_pos))
    return lead_pos[order], time_ns[order]


def lead_positions(crm: CRMData, table: str, lead_ids: pd.Series) -> np.ndarray:
    """Position of each ``lead_id`` in ``crm.leads``; unknown ids are an error naming the rows."""
    index = pd.Index(crm.leads[LEAD_ID])
    if not index.is_unique:
        dupes = index[index.duplicated()].unique()[:10].tolist()
        raise SnapshotError(f"leads: lead_id is not unique, e.g. {dupes}")
    pos = index.get_indexer(lead_ids)
    if (pos < 0).any():
        bad = lead_ids.index[pos < 0][:10].tolist()
        ids = lead_ids[pos < 0].unique()[:10].tolist()
        raise SnapshotError(f"{table}: lead_id not in leads (ids {ids}, rows {bad})")
    return pos.astype(np.int64)


class LeadHistory:
    """Per-lead conversion and recycle instants, sorted, for exact point-in-time look-ups."""

    def __init__(self, crm: CRMData) -> None:
        self.n_leads = len(crm.leads)
        self.created = to_ns(crm.leads[CREATED_AT])
        outcomes = crm.outcomes[crm.outcomes[CONVERTED_AT].notna()]
        self.conv_lead, self.conv_time = lead_timeline(
            lead_positions(crm, "outcomes", outcomes[LEAD_ID]), to_ns(outcomes[CONVERTED_AT])
        )
        recycled = crm.events[(crm.events[EVENT_TYPE] == RECYCLED).to_numpy(dtype=bool)]
        self.rec_lead, self.rec_time = lead_timeline(
            lead_positions(crm, "events", recycled[LEAD_ID]), to_ns(recycled[OCCURRED_AT])
        )
        self.conv_offsets = np.searchsorted(self.conv_lead, np.arange(self.n_leads + 1))
        self.rec_offsets = np.searchsorted(self.rec_lead, np.arange(self.n_leads + 1))

    def eligible(self, lead: np.ndarray, as_of: np.ndarray) -> np.ndarray:
        """Created strictly before as_of and not in a converted state at as_of."""
        i_conv = count_before(self.conv_lead, self.conv_time, lead, as_of, inclusive=True)
        has_conv = i_conv > self.conv_offsets[lead]
        last_conv = self.conv_time[np.maximum(i_conv - 1, 0)] if self.conv_time.size else np.zeros_like(as_of)
        i_rec = count_before(self.rec_lead, self.rec_time, lead, as_of, inclusive=False)
        has_rec = i_rec > self.rec_offsets[lead]
        last_rec = self.rec_time[np.maximum(i_rec - 1, 0)] if self.rec_time.size else np.zeros_like(as_of)
        converted = has_conv & ~(has_rec & (last_rec > last_conv))
        created = self.created[lead]
        return (created != NAT_NS) & (created < as_of) & ~converted

    def next_conversion(self, lead: np.ndarray, as_of: np.ndarray) -> np.ndarray:
        """First conversion strictly after as_of (int64 ns, NaT sentinel when none)."""
        i_conv = count_before(self.conv_lead, self.conv_time, lead, as_of, inclusive=True)
        has_next = i_conv < self.conv_offsets[lead + 1]
        if not self.conv_time.size:
            return np.full(lead.shape, NAT_NS, dtype=np.int64)
        return np.where(has_next, self.conv_time[np.minimum(i_conv, self.conv_time.size - 1)], NAT_NS)


def snapshot_pairs(history: LeadHistory, dates: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray]:
    """Eligible (lead position, as_of ns) pairs, ordered by as_of then lead position."""
    as_of_ns = to_ns(dates)
    lead = np.tile(np.arange(history.n_leads, dtype=np.int64), as_of_ns.size)
    as_of = np.repeat(as_of_ns, history.n_leads)
    keep = history.eligible(lead, as_of)
    return lead[keep], as_of[keep]


def labels(
    history: LeadHistory, lead: np.ndarray, as_of: np.ndarray, horizon_days: float, data_end: pd.Timestamp
) -> dict[str, np.ndarray]:
    """Label columns for (lead position, as_of ns) pairs (see module docstring)."""
    end_ns = int(pd.Timestamp(data_end).value)
    horizon_ns = int(round(horizon_days * DAY_NS))
    next_conv = history.next_conversion(lead, as_of)
    seen = (next_conv != NAT_NS) & (next_conv <= end_ns)
    censored = as_of + horizon_ns > end_ns
    within = seen & (next_conv <= as_of + horizon_ns)
    observed_until = np.where(seen, next_conv, end_ns)
    return {
        LABEL: np.where(censored, np.nan, within.astype(np.float64)),
        CENSORED: censored,
        DAYS_OBSERVED: (observed_until - as_of) / DAY_NS,
        EVENT_OBSERVED: seen.astype(np.int64),
        DAYS_TO_CONVERT: np.where(seen, (next_conv - as_of) / DAY_NS, np.nan),
    }
