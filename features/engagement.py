"""Array kernels: all event-derived features for many (lead, as_of) pairs at once.

Events are plain arrays sorted by (lead, time, type code): ``lead`` int64 local lead index,
``time`` int64 nanoseconds (UTC), ``code`` int64 type code (0..T-1 engagement vocabulary, T =
recycled). A query pair is (lead index, as_of ns). The same kernels serve one lead with 200 events
(the real-time path) and a block of 50k leads with millions of events (training / batch): no
per-lead Python loops, no pandas, no snapshot x event cross product.

Point in time: a pair only ever reads events with ``time < as_of`` (strictly). Windows are
half-open ``[as_of - w days, as_of)``. Definitions (documented for explanations):

- ``{type}_count_{w}d``: events of the type in the window.
- ``days_since_last_{type}``: (as_of - last such event) in days, NaN when none before as_of.
- ``engagement_trend_{r}d_vs_{p}d``: ``(a + 1) / (b * r / p + 1)`` with ``a`` the activity count in
  the last ``r`` days and ``b`` the count in the ``p`` days before them (1 = steady, > 1 rising).
- ``active_days_{W}d``: distinct UTC calendar days with activity in the longest window.
- ``engagement_intensity``: sum over events before as_of of ``weight * 2**(-age / half_life)``,
  computed by an exact linear-recurrence scan (no overflow, bit-identical per lead).
- ``ever_unsubscribed`` / ``ever_email_bounced``: 1.0 if such an event exists before as_of.
- lifecycle: ``lead_age_days`` = (as_of - created_at) in days, ``times_recycled`` (recycled events
  before as_of), ``days_since_last_recycle`` (NaN when never).

"Activity" means events whose type has a positive weight (by default every engagement type except
unsubscribe and email_bounce).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from features.spec import DAY_NS, KernelParams


@dataclass(frozen=True)
class EventArrays:
    """Events of a block of ``n_leads`` leads, sorted by (lead, time, code)."""

    lead: np.ndarray
    time: np.ndarray
    code: np.ndarray
    n_leads: int

    @classmethod
    def from_unsorted(
        cls, lead: np.ndarray, time: np.ndarray, code: np.ndarray, n_leads: int
    ) -> EventArrays:
        """Sort by (lead, time, code); events with a negative code (unknown type) are left out."""
        lead = np.asarray(lead, dtype=np.int64)
        time = np.asarray(time, dtype=np.int64)
        code = np.asarray(code, dtype=np.int64)
        known = code >= 0
        if not known.all():
            lead, time, code = lead[known], time[known], code[known]
        order = np.lexsort((code, time, lead))
        return cls(lead[order], time[order], code[order], n_leads)

    @property
    def offsets(self) -> np.ndarray:
        """CSR offsets: events of lead ``i`` are ``[offsets[i], offsets[i + 1])``."""
        return np.searchsorted(self.lead, np.arange(self.n_leads + 1), side="left")


def count_before(
    lead: np.ndarray, time: np.ndarray, query_lead: np.ndarray, query_time: np.ndarray, inclusive: bool = False
) -> np.ndarray:
    """Global insertion index of each query in arrays sorted by (lead, time).

    Returns, per query, the index of the first row of ``query_lead`` whose time is ``>= query_time``
    (``> query_time`` when ``inclusive``): rows before it in the same lead are exactly the rows
    strictly before (at or before) the query instant. Exact on int64 nanoseconds: each time is
    replaced by its rank (number of smaller times, ties included) so that (lead, rank) packs into
    one int64 key; a row time is before the query instant iff its rank is below the query's rank.
    """
    query_lead = np.asarray(query_lead, dtype=np.int64)
    query_time = np.asarray(query_time, dtype=np.int64)
    if lead.size == 0:
        return np.zeros(query_lead.shape, dtype=np.int64)
    ordered = np.sort(time)
    stride = ordered.size + 1
    n_leads = int(max(lead[-1], query_lead.max(initial=0))) + 1
    if n_leads >= np.iinfo(np.int64).max // stride:
        raise OverflowError("too many leads x events in one block: lower block_leads")
    row_key = lead * stride + np.searchsorted(ordered, time)
    query_rank = np.searchsorted(ordered, query_time, side="right" if inclusive else "left")
    return np.searchsorted(row_key, query_lead * stride + query_rank, side="left")


def _decayed_running_sum(events: EventArrays, weights: np.ndarray, half_life_ns: float) -> np.ndarray:
    """D[i] = w[i] + D[i-1] * 2**(-(t[i] - t[i-1]) / half_life) within each lead (D = 0 before).

    Hillis-Steele scan of the linear recurrence: log2(longest lead) vectorised steps. Each D[i]
    is combined from offsets relative to i only, and contributions of other leads are multiplied by
    an exact 0 (the factor at each lead's first event), so D[i] is bit-identical whether the lead
    is alone (real-time path) or inside a block, and never depends on later events.
    """
    n = events.time.size
    value = weights[events.code].astype(np.float64)
    if n == 0:
        return value
    factor = np.zeros(n, dtype=np.float64)
    same_lead = events.lead[1:] == events.lead[:-1]
    gap = (events.time[1:] - events.time[:-1]) / half_life_ns
    factor[1:] = np.where(same_lead, np.exp2(-gap), 0.0)
    longest = int(np.diff(events.offsets).max(initial=0))
    shift = 1
    while shift < longest:
        value[shift:] = value[shift:] + factor[shift:] * value[:-shift]
        factor[shift:] = factor[shift:] * factor[:-shift]
        shift *= 2
    return value


def event_features(
    events: EventArrays,
    pair_lead: np.ndarray,
    pair_as_of: np.ndarray,
    pair_created: np.ndarray,
    params: KernelParams,
) -> np.ndarray:
    """Engagement + lifecycle features (float64, one row per pair) in spec order.

    ``pair_lead`` indexes leads of ``events`` (0..n_leads-1); ``pair_as_of`` and ``pair_created``
    are int64 ns (``created`` may be the int64 NaT sentinel, giving a NaN lead age).
    """
    pair_lead = np.asarray(pair_lead, dtype=np.int64)
    as_of = np.asarray(pair_as_of, dtype=np.int64)
    created = np.asarray(pair_created, dtype=np.int64)
    n_pairs = pair_lead.size
    n_types = params.n_types
    n_codes = n_types + 1
    n_events = events.time.size
    time = events.time

    offsets = events.offsets
    start = offsets[pair_lead]

    # Boundaries: as_of, as_of - each window, trend split points (one searchsorted for all).
    recent, prior = params.trend_recent_ns, params.trend_prior_ns
    lags = sorted({0, *params.windows_ns, recent, recent + prior})
    lag_col = {lag: k for k, lag in enumerate(lags)}
    bounds = as_of[:, None] - np.asarray(lags, dtype=np.int64)[None, :]
    idx = count_before(
        events.lead, time, np.repeat(pair_lead, len(lags)), bounds.ravel()
    ).reshape(n_pairs, len(lags))
    hi = idx[:, 0]

    index_dtype = np.int32 if n_events < np.iinfo(np.int32).max else np.int64
    rows = np.arange(1, n_events + 1)
    cum = np.zeros((n_events + 1, n_codes), dtype=index_dtype)
    cum[rows, events.code] = 1
    np.cumsum(cum, axis=0, out=cum)
    last = np.full((n_events + 1, n_codes), -1, dtype=index_dtype)
    last[rows, events.code] = np.arange(n_events, dtype=index_dtype)
    np.maximum.accumulate(last, axis=0, out=last)

    cum_hi = cum[hi]
    cum_start = cum[start]
    blocks: list[np.ndarray] = []

    # Counts per engagement type and window: (pairs, types, windows) -> type-major columns.
    counts = np.stack(
        [cum_hi[:, :n_types] - cum[idx[:, lag_col[w]], :n_types] for w in params.windows_ns], axis=2
    )
    blocks.append(counts.reshape(n_pairs, n_types * len(params.windows_ns)).astype(np.float64))

    # Days since the last event of each code (engagement types and recycled).
    last_hi = last[hi].astype(np.int64)
    seen = last_hi >= start[:, None]
    if n_events:
        last_time = time[np.where(seen, last_hi, 0)]
        days_since = np.where(seen, (as_of[:, None] - last_time) / DAY_NS, np.nan)
    else:
        days_since = np.full((n_pairs, n_codes), np.nan)
    blocks.append(days_since[:, :n_types])

    # Activity: trend and distinct active days.
    active = params.active[events.code]
    cum_active = np.zeros(n_events + 1, dtype=np.int64)
    np.cumsum(active, out=cum_active[1:])
    i_recent = idx[:, lag_col[recent]]
    i_prior = idx[:, lag_col[recent + prior]]
    count_recent = cum_active[hi] - cum_active[i_recent]
    count_prior = cum_active[i_recent] - cum_active[i_prior]
    trend = (count_recent + 1.0) / (count_prior * (recent / prior) + 1.0)

    lo_longest = idx[:, lag_col[max(params.windows_ns)]]
    active_pos = np.flatnonzero(active)
    day = time[active_pos] // DAY_NS
    lead_of = events.lead[active_pos]
    first_of_day = np.ones(active_pos.size, dtype=bool)
    first_of_day[1:] = (lead_of[1:] != lead_of[:-1]) | (day[1:] != day[:-1])
    new_day = np.zeros(n_events + 1, dtype=bool)
    new_day[active_pos] = first_of_day
    cum_new_day = np.zeros(n_events + 1, dtype=np.int64)
    np.cumsum(new_day[:-1], out=cum_new_day[1:])
    next_active = np.full(n_events + 1, n_events, dtype=np.int64)
    next_active[active_pos] = active_pos
    next_active = np.minimum.accumulate(next_active[::-1])[::-1]
    first_in_window = next_active[lo_longest]
    straddles = (first_in_window < hi) & ~new_day[first_in_window]
    active_days = cum_new_day[hi] - cum_new_day[lo_longest] + straddles

    # Decayed intensity at as_of from the running sum at the last event before as_of.
    running = _decayed_running_sum(events, params.weights, params.half_life_ns)
    has_before = hi > start
    if n_events:
        prev = np.where(has_before, hi - 1, 0)
        age = (as_of - time[prev]) / params.half_life_ns
        intensity = np.where(has_before, running[prev] * np.exp2(-age), 0.0)
    else:
        intensity = np.zeros(n_pairs)
    blocks.append(np.column_stack([trend, active_days.astype(np.float64), intensity]))

    ever = cum_hi - cum_start
    if params.flag_codes:
        blocks.append((ever[:, list(params.flag_codes)] > 0).astype(np.float64))

    created_ok = created != np.iinfo(np.int64).min
    lead_age = np.where(created_ok, (as_of - created) / DAY_NS, np.nan)
    blocks.append(
        np.column_stack([lead_age, ever[:, n_types].astype(np.float64), days_since[:, n_types]])
    )
    return np.hstack(blocks)
