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
- ``{type}_decayed_{h}d``: per activity type, sum over its events before as_of of
  ``2**(-age / h)`` for each half-life ``h`` of ``type_half_lives_days`` (exact scan per type).
- ``days_since_burst_start``: (as_of - start of the latest burst) in days, NaN when no activity;
  a burst starts at an activity event with no activity in the ``burst_gap_days`` before it (or at
  the lead's first activity). ``activity_since_burst_start``: activity events from that start
  (included) to as_of (0 when none).
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
    strictly before (at or before) the query instant. Exact on int64 nanoseconds: each query's
    lead rows are found by a search on ``lead``, then all queries are bisected together inside
    their own lead's rows (as many vectorised steps as the longest lead has rows, in log2), so the
    cost follows the queries, not the events.
    """
    query_lead = np.asarray(query_lead, dtype=np.int64)
    query_time = np.asarray(query_time, dtype=np.int64)
    lo = np.searchsorted(lead, query_lead, side="left").astype(np.int64)
    hi = np.searchsorted(lead, query_lead, side="right").astype(np.int64)
    if lo.size == 0:
        return lo
    longest = int((hi - lo).max())
    for _ in range(longest.bit_length()):  # invariant: the answer is in [lo, hi]
        open_ = lo < hi
        mid = (lo + hi) >> 1
        probe = time[np.where(open_, mid, 0)] if time.size else np.zeros_like(mid)
        before = (probe <= query_time) if inclusive else (probe < query_time)
        go_right = open_ & before
        lo = np.where(go_right, mid + 1, lo)
        hi = np.where(open_ & ~before, mid, hi)
    return lo


def _decay_scan(time: np.ndarray, value: np.ndarray, new_group: np.ndarray, half_life_ns: np.ndarray) -> np.ndarray:
    """D[k, i] = v[k, i] + D[k, i-1] * 2**(-(t[i] - t[i-1]) / h[k]) within each group (0 before).

    Rows of ``value`` (k, n) are scanned along the events, sorted by (group, time);
    ``new_group[i]`` marks the first event of a group; ``half_life_ns`` has one entry per row.
    Hillis-Steele scan of the linear recurrence: log2(longest group) vectorised steps. Each D[i]
    is combined from offsets relative to i only, and contributions of other groups are multiplied
    by an exact 0 (the factor at each group's first event), so D[i] is bit-identical whether the
    lead is alone (real-time path) or inside a block, and never depends on later events.
    """
    n = time.size
    value = np.array(value, dtype=np.float64)
    if n == 0:
        return value
    factor = np.zeros(value.shape, dtype=np.float64)
    factor[:, 1:] = np.exp2(-(time[1:] - time[:-1])[None, :] / half_life_ns[:, None])
    factor[:, new_group] = 0.0
    starts = np.flatnonzero(new_group)
    longest = max(int(np.diff(starts).max(initial=0)), n - int(starts[-1]))
    shift = 1
    while shift < longest:
        value[:, shift:] += factor[:, shift:] * value[:, :-shift]
        factor[:, shift:] *= factor[:, :-shift]
        shift *= 2
    return value


def _decayed_running_sum(events: EventArrays, weights: np.ndarray, half_life_ns: float) -> np.ndarray:
    """Running decayed sum of event weights per lead (see :func:`_decay_scan`)."""
    new_lead = np.ones(events.lead.size, dtype=bool)
    new_lead[1:] = events.lead[1:] != events.lead[:-1]
    return _decay_scan(events.time, weights[events.code][None, :], new_lead, np.array([half_life_ns]))[0]


def _decayed_running_count_by_type(
    events: EventArrays, codes: tuple[int, ...], half_lives_ns: tuple[float, ...]
) -> np.ndarray:
    """(half-lives, events) running decayed count over the earlier events of the same lead and type.

    Columns of event types outside ``codes`` are NaN (never read). Events are regrouped by (type,
    lead, time) with a stable sort, so each (lead, type) run is scanned on its own.
    """
    n = events.time.size
    out = np.full((len(half_lives_ns), n), np.nan)
    selected = np.zeros(max(events.code.max(initial=-1), *codes) + 1, dtype=bool)
    selected[list(codes)] = True
    rows = np.flatnonzero(selected[events.code])
    if rows.size == 0:
        return out
    # stable by type (a radix sort on small ints), keeping (lead, time) order within a type
    rows = rows[np.argsort(events.code[rows].astype(np.int16 if len(selected) < 2**15 else np.int64), kind="stable")]
    lead, code = events.lead[rows], events.code[rows]
    new_group = np.ones(rows.size, dtype=bool)
    new_group[1:] = (lead[1:] != lead[:-1]) | (code[1:] != code[:-1])
    ones = np.ones((len(half_lives_ns), rows.size))
    out[:, rows] = _decay_scan(events.time[rows], ones, new_group, np.asarray(half_lives_ns, dtype=np.float64))
    return out


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

    # Events of each code before each event index: one running count per code (code-major, so each
    # count runs over contiguous memory); read at the pairs' boundaries only.
    index_dtype = np.int32 if n_events < np.iinfo(np.int32).max else np.int64
    cum = np.zeros((n_codes, n_events + 1), dtype=index_dtype)
    cum[events.code, np.arange(1, n_events + 1)] = 1
    np.cumsum(cum, axis=1, out=cum)

    def cum_at(index: np.ndarray) -> np.ndarray:
        return cum[:, index].T  # (pairs, codes)

    cum_hi = cum_at(hi)
    cum_start = cum_at(start)
    blocks: list[np.ndarray] = []

    # Counts per engagement type and window: (pairs, types, windows) -> type-major columns.
    counts = np.stack(
        [cum_hi[:, :n_types] - cum_at(idx[:, lag_col[w]])[:, :n_types] for w in params.windows_ns], axis=2
    )
    blocks.append(counts.reshape(n_pairs, n_types * len(params.windows_ns)).astype(np.float64))

    # Days since the last event of each code (engagement types and recycled).
    # the last event of each code before hi: the cum_hi-th of that code's events (-1: none in the block)
    by_code = np.argsort(events.code.astype(np.int16 if n_codes < 2**15 else np.int64), kind="stable")
    code_start = np.concatenate([[0], np.cumsum(np.bincount(events.code, minlength=n_codes))])[:n_codes]
    nth = cum_hi.astype(np.int64) - 1
    last_hi = np.where(nth >= 0, by_code[np.maximum(code_start[None, :] + nth, 0)] if n_events else 0, -1)
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
        # 0 half-lives where no event precedes as_of: prev is then any lead's first event, maybe a century later
        age = np.where(has_before, (as_of - time[prev]) / params.half_life_ns, 0.0)
        intensity = np.where(has_before, running[prev] * np.exp2(-age), 0.0)
    else:
        intensity = np.zeros(n_pairs)
    blocks.append(np.column_stack([trend, active_days.astype(np.float64), intensity]))

    # Decayed count per activity type and half-life, from its running sum at the type's last event.
    if params.decayed_codes and params.type_half_lives_ns:
        codes = list(params.decayed_codes)
        half_lives = np.asarray(params.type_half_lives_ns, dtype=np.float64)
        by_type = _decayed_running_count_by_type(events, params.decayed_codes, params.type_half_lives_ns)
        if n_events:
            last_of = np.where(seen[:, codes], last_hi[:, codes], 0)  # (pairs, types)
            age = np.where(seen[:, codes], as_of[:, None] - time[last_of], 0)[:, :, None] / half_lives[None, None, :]
            decayed = np.where(seen[:, codes, None], np.moveaxis(by_type[:, last_of], 0, -1) * np.exp2(-age), 0.0)
        else:
            decayed = np.zeros((n_pairs, len(codes), half_lives.size))
        blocks.append(decayed.reshape(n_pairs, len(codes) * half_lives.size))

    # Latest burst: the last activity event before as_of that follows >= gap quiet days (or is the
    # lead's first activity); its age in days and the activity count since (itself included).
    if params.burst_gap_ns is not None:
        burst = np.ones(active_pos.size, dtype=bool)
        burst[1:] = (lead_of[1:] != lead_of[:-1]) | (
            time[active_pos[1:]] - time[active_pos[:-1]] >= params.burst_gap_ns
        )
        last_burst = np.full(n_events + 1, -1, dtype=np.int64)
        last_burst[active_pos[burst] + 1] = active_pos[burst]
        np.maximum.accumulate(last_burst, out=last_burst)
        burst_at = last_burst[hi]
        in_burst = burst_at >= start
        burst_at = np.where(in_burst, burst_at, 0)
        if n_events:
            days_since_burst = np.where(in_burst, (as_of - time[burst_at]) / DAY_NS, np.nan)
        else:
            days_since_burst = np.full(n_pairs, np.nan)
        since_burst = np.where(in_burst, cum_active[hi] - cum_active[burst_at], 0)
        blocks.append(np.column_stack([days_since_burst, since_burst.astype(np.float64)]))

    ever = cum_hi - cum_start
    if params.flag_codes:
        blocks.append((ever[:, list(params.flag_codes)] > 0).astype(np.float64))

    created_ok = created != np.iinfo(np.int64).min
    lead_age = np.where(created_ok, (as_of - created) / DAY_NS, np.nan)
    blocks.append(
        np.column_stack([lead_age, ever[:, n_types].astype(np.float64), days_since[:, n_types]])
    )
    return np.hstack(blocks)
