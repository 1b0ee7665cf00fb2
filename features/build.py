"""The three feature paths, all through the same kernels and the same FeatureSpec.

(a) :func:`build_training_set`: every eligible (lead, as_of) snapshot with labels;
(b) :func:`build_scoring_frame` / :func:`scoring_matrix`: the whole lead base at one as_of;
(c) :func:`features_from_payload` / :func:`features_from_payloads`: leads given as JSON-like
    payloads, encoded to arrays without pandas (the real-time path).

Matrices are float64 in ``spec.columns_`` order; categorical columns hold vocabulary codes with NaN
for missing or unseen values (what LightGBM sees for a pandas ``category`` column). Frames hold the
same values with categoricals as pandas ``category`` over the fitted vocabulary
(``spec.to_frame`` / ``spec.to_matrix`` convert between the two).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import repeat
from typing import Any

import numpy as np
import pandas as pd

from features.engagement import EventArrays, event_features
from features.schema import (
    CREATED_AT,
    EVENT_TYPE,
    FAMILIES,
    LEAD_ID,
    OCCURRED_AT,
    CRMData,
    FlatData,
    naive_utc_datetime,
    to_numbers,
    utc_now,
    vocabulary_key,
)
from features.snapshots import (
    AS_OF,
    CENSORED,
    DAYS_OBSERVED,
    DAYS_TO_CONVERT,
    EVENT_OBSERVED,
    LABEL,
    NAT_NS,
    LeadHistory,
    as_of_dates,
    labels,
    lead_positions,
    resolve_data_end,
    snapshot_pairs,
    to_ns,
)
from features.spec import CRM_KIND, FLAT_KIND, FeatureConfig, FeatureSpec, FeatureSpecError

Progress = Callable[[int, int], None]
BLOCK_PAIRS = 100_000  # (lead, as_of) pairs per call of the event kernels (bounds their temporaries)
BLOCK_EVENTS = 500_000  # and events per call
Payload = Mapping[str, Any]


@dataclass
class TrainingSet:
    """Snapshot rows (``lead_id``, ``as_of``, label columns, features in spec order) + fitted spec."""

    frame: pd.DataFrame
    spec: FeatureSpec
    data_end: pd.Timestamp | None = None
    as_of_dates: pd.DatetimeIndex | None = None
    unseen: dict[str, list[str]] = field(default_factory=dict)
    # what it was built from (:func:`features.fingerprint.data_fingerprint`); empty when not recorded
    source_fingerprint: dict[str, str] = field(default_factory=dict)

    @property
    def features(self) -> pd.DataFrame:
        return self.frame[self.spec.columns_]

    def summary(self) -> dict[str, Any]:
        """Counts for the CLI: snapshots (as-of dates and censored rows: CRM mode only; a flat export has
        neither), rows, positives, features per family."""
        label = self.frame[LABEL]
        out: dict[str, Any] = {
            "rows": len(self.frame),
            "leads": int(self.frame[LEAD_ID].nunique()),
            "positives": int((label == 1).sum()),
            "negatives": int((label == 0).sum()),
            "features": len(self.spec.columns_),
            "features_by_family": {f: len(self.spec.columns_of(f)) for f in FAMILIES},
        }
        if self.as_of_dates is not None:
            out["snapshots"] = len(self.as_of_dates)
            out["censored"] = int(self.frame[CENSORED].sum()) if CENSORED in self.frame else 0
        if self.data_end is not None:
            out["data_end"] = self.data_end.isoformat()
        if self.as_of_dates is not None and len(self.as_of_dates):
            out["first_as_of"] = self.as_of_dates[0].isoformat()
            out["last_as_of"] = self.as_of_dates[-1].isoformat()
        return out


# ----- shared encoding --------------------------------------------------------------------------
def encode_event_codes(event_types: pd.Series, spec: FeatureSpec) -> np.ndarray:
    """Event type -> kernel code (-1 for types the spec does not know)."""
    vocabulary = list(spec.event_codes)
    if not isinstance(event_types.dtype, pd.CategoricalDtype) and event_types.dtype != object:
        event_types = event_types.astype(str)
    return pd.Categorical(event_types, categories=vocabulary).codes.astype(np.int64)


def event_order(lead: np.ndarray, time: np.ndarray, code: np.ndarray) -> np.ndarray | None:
    """The stable (lead, time, code) sort order of events, or None when they are in that order already.

    SQL reads by lead-id range usually come back almost in (lead, time) order (a table's physical
    order), so the events are first grouped by lead with a stable sort that is fast on nearly sorted
    keys, then only the leads with events out of (time, code) order are sorted: exactly the full
    stable three-key sort, for a fraction of its cost.
    """
    if lead.size < 2:
        return None
    if not (np.diff(lead) < 0).any():
        return _order_within_leads(lead, time, code)
    by_lead = np.argsort(lead, kind="stable")
    within = _order_within_leads(lead[by_lead], time[by_lead], code[by_lead])
    return by_lead if within is None else by_lead[within]


def _order_within_leads(lead: np.ndarray, time: np.ndarray, code: np.ndarray) -> np.ndarray | None:
    """:func:`event_order` of events grouped by lead (each lead's rows contiguous, leads ascending)."""
    same_lead = np.diff(lead) == 0
    step_time = np.diff(time)
    unordered = same_lead & ((step_time < 0) | ((step_time == 0) & (np.diff(code) < 0)))
    if not unordered.any():
        return None
    order = np.arange(lead.size)
    rows = np.flatnonzero(np.isin(lead, lead[1:][unordered]))  # every row of the leads out of order
    order[rows] = rows[np.lexsort((code[rows], time[rows], lead[rows]))]
    return order


def fit_matrix(leads: pd.DataFrame, spec: FeatureSpec) -> np.ndarray:
    """Fit-family columns (categorical codes, numerics) for each lead row; leads without an attribute the spec
    was fitted on are a :class:`FeatureSpecError` naming every such column (it was the KeyError of the first)."""
    missing = [column for column in spec.fit_columns if column not in leads.columns]
    if missing:
        raise FeatureSpecError(f"{', '.join(f'leads.{c}' for c in missing)}: missing_column: lead attribute(s) the "
                               "model was trained on, not in the leads table as read (dropped or renamed since, or "
                               "under attributes.ignore); restore them, or train a model on the data as it is")
    return np.hstack([spec.categorical_codes(leads), spec.numeric_values(leads)])


def lead_feature_matrix(
    crm: CRMData,
    spec: FeatureSpec,
    lead_pos: np.ndarray,
    as_of_ns: np.ndarray,
    progress: Progress | None = None,
    layout: str = "C",
) -> np.ndarray:
    """Feature matrix for (lead position in ``crm.leads``, as_of ns) pairs, in spec order.

    Leads are processed in blocks of ``spec.config.block_leads`` (bounded memory); each block calls
    the array kernels once for all of its pairs. ``layout="F"``: the same values column-major (what
    a frame's columns can be views of).
    """
    if spec.kind_ != CRM_KIND:
        raise FeatureSpecError(f"spec kind is {spec.kind_!r}: CRM features need a spec fitted on CRMData")
    lead_pos = np.asarray(lead_pos, dtype=np.int64)
    as_of_ns = np.asarray(as_of_ns, dtype=np.int64)
    n_leads = len(crm.leads)
    events = crm.events
    ev_lead = lead_positions(crm, "events", events[LEAD_ID])
    ev_time = to_ns(events[OCCURRED_AT])
    if (ev_time == NAT_NS).any():
        rows = events.index[ev_time == NAT_NS][:10].tolist()
        raise FeatureSpecError(f"events: occurred_at missing in rows {rows}")
    ev_code = encode_event_codes(events[EVENT_TYPE], spec)
    known = ev_code >= 0
    if not known.all():  # events of types the spec does not know are left out (no copies when there are none)
        ev_lead, ev_time, ev_code = ev_lead[known], ev_time[known], ev_code[known]
    order = event_order(ev_lead, ev_time, ev_code)
    if order is not None:
        ev_lead, ev_time, ev_code = ev_lead[order], ev_time[order], ev_code[order]

    fit_by_lead = fit_matrix(crm.leads, spec)
    created = to_ns(crm.leads[CREATED_AT])
    params = spec.kernel_params
    out = np.empty((lead_pos.size, len(spec.columns_)), order=layout)
    n_fit = fit_by_lead.shape[1]
    for j in range(n_fit):  # a column at a time: no second (pairs x fit columns) matrix
        out[:, j] = fit_by_lead[lead_pos, j]

    pair_order = np.argsort(lead_pos, kind="stable")
    sorted_leads = lead_pos[pair_order]
    block = spec.config.block_leads
    starts = list(range(0, max(n_leads, 1), block))
    for done, first in enumerate(starts, start=1):
        last = min(first + block, n_leads)
        p0, p1 = np.searchsorted(sorted_leads, [first, last])
        b0, b1 = np.searchsorted(ev_lead, [first, last])
        # the kernels' temporaries grow with the pairs and the events they get (about 300 bytes an event: a
        # 50k-lead block of 2.6M events took 0.8 GB for one snapshot per lead): a block goes in slices of
        # leads holding about BLOCK_PAIRS pairs and BLOCK_EVENTS events each (a lead's values do not
        # depend on the other leads of its call)
        pieces = max(-(-int(p1 - p0) // BLOCK_PAIRS), -(-int(b1 - b0) // BLOCK_EVENTS), 1)
        bounds = np.unique(np.linspace(first, last, pieces + 1).astype(np.int64))
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
            e0, e1 = np.searchsorted(ev_lead, [lo, hi])
            q0, q1 = np.searchsorted(sorted_leads, [lo, hi])
            if q1 > q0:
                pairs = np.sort(pair_order[q0:q1])  # in row order: the writes below run forward
                arrays = EventArrays(ev_lead[e0:e1] - lo, ev_time[e0:e1], ev_code[e0:e1], int(hi - lo))
                out[pairs, n_fit:] = event_features(
                    arrays, lead_pos[pairs] - lo, as_of_ns[pairs], created[lead_pos[pairs]], params
                )
        if progress is not None:
            progress(done, len(starts))
    return out


# ----- (a) training set -------------------------------------------------------------------------
def set_aside_attributes(crm: CRMData, columns: Sequence[str]) -> tuple[CRMData, pd.DataFrame]:
    """(``crm`` without the lead attributes ``columns``, their values per ``lead_id``): existing score
    columns kept for the baselines, never features. A column the leads table lacks is an error (a
    misspelt name would leave the score it means among the features)."""
    absent = [c for c in dict.fromkeys(columns) if c not in crm.leads.columns]
    if absent:
        attributes = [*crm.categorical_attributes, *crm.numeric_attributes]
        raise ValueError(f"training.score_columns: {', '.join(map(repr, absent))} not among the validated lead "
                         f"attributes ({', '.join(attributes) or 'none'}); a score column must not be under "
                         "data.attributes.ignore, and with infer_undeclared: false it must be declared")
    present = [c for c in dict.fromkeys(columns) if c != LEAD_ID]
    aside = crm.leads[[LEAD_ID, *present]].drop_duplicates(LEAD_ID)
    if not present:
        return crm, aside
    kept = CRMData(crm.leads.drop(columns=present), crm.events, crm.outcomes,
                   [c for c in crm.categorical_attributes if c not in present],
                   [c for c in crm.numeric_attributes if c not in present], crm.missing_values)
    return kept, aside


def build_training_set(
    crm: CRMData,
    config: FeatureConfig | None = None,
    progress: Progress | None = None,
    spec: FeatureSpec | None = None,
    set_aside: Sequence[str] = (),
) -> TrainingSet:
    """All eligible snapshots with labels and features; fits the spec unless one is given. The lead
    attributes ``set_aside`` (existing scores) are no features: their raw values follow the features."""
    config = config or (spec.config if spec is not None else FeatureConfig())
    crm, aside = set_aside_attributes(crm, set_aside)
    spec = spec if spec is not None else FeatureSpec(config).fit(crm)
    data_end = resolve_data_end(crm, config)
    dates = as_of_dates(crm, config, data_end)
    frame = training_frame(crm, spec, dates, data_end, progress)
    # appended as columns of their own, each snapshot its lead's value (a merge copied the whole frame);
    # every snapshot's lead is among them: ``aside`` holds each lead of ``crm.leads`` once
    lead_rows = pd.Index(aside[LEAD_ID]).get_indexer(frame[LEAD_ID])
    if (lead_rows < 0).any():
        raise ValueError(f"snapshots of leads {frame.loc[lead_rows < 0, LEAD_ID].unique()[:10].tolist()} "
                         "not in the leads table")
    for col in [c for c in aside.columns if c != LEAD_ID and c not in frame.columns]:
        frame[col] = aside[col].take(lead_rows).set_axis(frame.index)  # the column's dtype kept
    return TrainingSet(frame, spec, data_end, dates, unseen=_unseen(crm, spec))


def snapshot_rows(crm: CRMData, history: LeadHistory, dates: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray]:
    """The (lead position, as_of ns) pairs of the leads open at ``dates`` (``history``: ``LeadHistory(crm)``), in
    the order of :func:`training_frame`'s rows: by as_of, then lead id."""
    lead, as_of = snapshot_pairs(history, dates)
    lead_ids = crm.leads[LEAD_ID].to_numpy()
    id_rank = np.empty(len(lead_ids), dtype=np.int64)
    id_rank[np.argsort(lead_ids, kind="stable")] = np.arange(len(lead_ids))
    order = np.lexsort((id_rank[lead], as_of))
    return lead[order], as_of[order]


def training_frame(
    crm: CRMData,
    spec: FeatureSpec,
    dates: pd.DatetimeIndex,
    data_end: pd.Timestamp,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """Snapshot rows for the given as-of dates, sorted by (as_of, lead_id)."""
    history = LeadHistory(crm)
    lead, as_of = snapshot_rows(crm, history, dates)
    lead_ids = crm.leads[LEAD_ID].to_numpy()
    label_values = labels(history, lead, as_of, spec.config.horizon_days, data_end)
    # column-major, so that the frame's numeric columns are views of it, and the head's columns are
    # inserted before them (a concat would merge the float label columns with the features: a copy):
    # the features are in memory once, not three times (matrix, frame over it, concatenation)
    matrix = lead_feature_matrix(crm, spec, lead, as_of, progress, layout="F")
    frame = spec.to_frame(matrix, share=True)
    del matrix
    head = {LEAD_ID: lead_ids[lead], AS_OF: as_of.view("datetime64[ns]"), **label_values}
    for position, (name, values) in enumerate(head.items()):
        frame.insert(position, name, values)
    return frame


@dataclass
class SnapshotHeads:
    """The rows :func:`build_training_set` makes with a fitted spec, without their features (:func:`snapshot_heads`):
    ``frame`` holds ``lead_id``, ``as_of`` and the label columns in the training frame's order; ``lead`` and
    ``as_of_ns`` are each row's lead position and instant, for :func:`snapshot_features` of the rows wanted."""

    frame: pd.DataFrame
    lead: np.ndarray
    as_of_ns: np.ndarray
    data_end: pd.Timestamp


def snapshot_heads(crm: CRMData, spec: FeatureSpec) -> SnapshotHeads:
    """Every snapshot's keys and labels (a few arrays), so that a caller needing some rows only computes their
    features (:func:`snapshot_features`): `evaluate` reads the latest test slice, 556,078 of the 1,852,499 rows
    (1.04 GB of features) of a 200k-lead CRM."""
    data_end = resolve_data_end(crm, spec.config)
    dates = as_of_dates(crm, spec.config, data_end)
    history = LeadHistory(crm)
    lead, as_of = snapshot_rows(crm, history, dates)
    head = {LEAD_ID: crm.leads[LEAD_ID].to_numpy()[lead], AS_OF: as_of.view("datetime64[ns]"),
            **labels(history, lead, as_of, spec.config.horizon_days, data_end)}
    return SnapshotHeads(pd.DataFrame(head), lead, as_of, data_end)


def snapshot_features(crm: CRMData, spec: FeatureSpec, heads: SnapshotHeads, rows: np.ndarray) -> pd.DataFrame:
    """The features (spec order) of the snapshot ``rows`` (positions in ``heads``), as the training frame has
    them (a lead's values do not depend on the other rows built with it)."""
    rows = np.asarray(rows, dtype=np.int64)
    matrix = lead_feature_matrix(crm, spec, heads.lead[rows], heads.as_of_ns[rows], layout="F")
    return spec.to_frame(matrix, share=True)


def _unseen(crm: CRMData, spec: FeatureSpec) -> dict[str, list[str]]:
    unseen = spec.unseen_categories(crm.leads)
    types = spec.unseen_event_types(crm.events)
    if types:
        unseen[EVENT_TYPE] = types
    return unseen


# ----- (b) batch scoring ------------------------------------------------------------------------
def _as_of_ns(as_of: Any) -> int:
    if as_of is None:
        return int(pd.Timestamp(utc_now()).value)
    return instant_ns(as_of)


def scoring_matrix(
    crm: CRMData,
    spec: FeatureSpec,
    as_of: Any = None,
    eligible_only: bool = True,
    progress: Progress | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(lead_ids, float matrix) of the lead base at as_of (default: now, UTC).

    With ``eligible_only`` the leads are those a snapshot at as_of would hold (created before it,
    not in a converted state); otherwise every lead, in ``crm.leads`` order.
    """
    at = _as_of_ns(as_of)
    n = len(crm.leads)
    lead = np.arange(n, dtype=np.int64)
    as_of_arr = np.full(n, at, dtype=np.int64)
    if eligible_only:
        keep = LeadHistory(crm).eligible(lead, as_of_arr)
        lead, as_of_arr = lead[keep], as_of_arr[keep]
    matrix = lead_feature_matrix(crm, spec, lead, as_of_arr, progress)
    return crm.leads[LEAD_ID].to_numpy()[lead], matrix


def build_scoring_frame(
    crm: CRMData,
    spec: FeatureSpec,
    as_of: Any = None,
    eligible_only: bool = True,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """``lead_id``, ``as_of`` and features (pandas categories) of the lead base at as_of.

    Unseen categorical values and unknown event types are listed in ``frame.attrs["unseen"]``.
    """
    at = _as_of_ns(as_of)
    lead_ids, matrix = scoring_matrix(crm, spec, at, eligible_only, progress)
    head = pd.DataFrame({LEAD_ID: lead_ids, AS_OF: np.full(len(lead_ids), at).view("datetime64[ns]")})
    frame = pd.concat([head, spec.to_frame(matrix)], axis=1)
    frame.attrs["unseen"] = _unseen(crm, spec)
    return frame


# ----- (c) payloads (real time) -----------------------------------------------------------------
def instant_ns(value: Any) -> int:
    """A timestamp (ISO string, datetime, pandas/numpy datetime) -> int64 ns, tz-naive UTC."""
    if isinstance(value, pd.Timestamp):
        if value is pd.NaT:
            raise FeatureSpecError("timestamp is NaT")
        return int(value.value)
    if isinstance(value, datetime):
        return int(np.datetime64(naive_utc_datetime(value), "ns").view(np.int64))
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, np.datetime64):
        return int(value.astype("datetime64[ns]").view(np.int64))
    if isinstance(value, str):
        return int(_parse_iso([value])[0])
    raise FeatureSpecError(f"not a timestamp: {value!r}")


def _parse_iso(values: Sequence[str]) -> np.ndarray:
    """ISO strings -> int64 ns; offsets / 'Z' are converted to naive UTC."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            return np.array(values, dtype="datetime64[ns]").view(np.int64)
    except (ValueError, TypeError, DeprecationWarning, UserWarning):
        pass
    out = np.empty(len(values), dtype=np.int64)
    for i, text in enumerate(values):
        try:
            out[i] = instant_ns(datetime.fromisoformat(text))
        except (TypeError, ValueError) as exc:
            raise FeatureSpecError(f"not an ISO timestamp: {text!r}") from exc
    return out


_EPOCH = datetime(1970, 1, 1)
_MICROSECOND = timedelta(microseconds=1)


def _times_ns(values: Sequence[Any]) -> np.ndarray:
    if values and isinstance(values[0], str):
        try:
            return _parse_iso(values)
        except FeatureSpecError:
            pass
    if all(type(v) is datetime and v.tzinfo is None for v in values):  # validated payloads: exact, fast
        return np.array([(v - _EPOCH) // _MICROSECOND * 1000 for v in values], dtype=np.int64)
    return np.array([instant_ns(v) for v in values], dtype=np.int64)


def _payload_fit_row(attributes: Mapping[str, Any], spec: FeatureSpec, where: str,
                     markers: frozenset[str]) -> list[float]:
    """A payload's fit columns; a text among ``markers`` (``spec.missing_markers``: what the spec's contract
    read as missing) is missing."""
    row: list[float] = []
    for col, index in spec.category_lookup.items():
        value = attributes.get(col)
        key = (None if value is None or _is_nan(value) or (isinstance(value, str) and value in markers)
               else vocabulary_key(value, index))
        row.append(math.nan if key is None else index[key])
    for col in spec.numeric_columns_:
        value = attributes.get(col)
        if value is None or (isinstance(value, str) and value in markers):
            row.append(math.nan)
            continue
        try:
            row.append(float(value))
        except (TypeError, ValueError) as exc:
            raise FeatureSpecError(f"{where}: attribute {col!r} is not numeric: {value!r}") from exc
    return row


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def features_from_payloads(payloads: Sequence[Payload], spec: FeatureSpec, as_of: Any = None) -> np.ndarray:
    """Float matrix (one row per payload) in spec order, without pandas.

    A payload is ``{"lead_id", "created_at", "attributes": {...}, "events": [{"occurred_at",
    "event_type", ...}]}`` (flat specs read only ``attributes``). ``as_of`` is one instant for all
    payloads or a sequence with one per payload (default: now, UTC). Events at or after as_of and
    events of unknown types are ignored (see ``spec.unseen_in_payload``). An attribute given as one of
    the spec's ``missing_values_`` (e.g. ``"Select"``) is missing, as the data contract reads it in a
    table; an event type given as one is a missing type: an error, as an event without a type is.
    """
    spec._require_fitted()
    n = len(payloads)
    if isinstance(as_of, Sequence) and not isinstance(as_of, str):
        if len(as_of) != n:
            raise FeatureSpecError(f"as_of has {len(as_of)} values for {n} payloads")
        as_of_ns = np.array([_as_of_ns(a) for a in as_of], dtype=np.int64)
    else:
        as_of_ns = np.full(n, _as_of_ns(as_of), dtype=np.int64)
    markers = spec.missing_markers
    fit_rows = [
        _payload_fit_row(p.get("attributes") or {}, spec, f"payload {i} (lead_id {p.get(LEAD_ID)!r})", markers)
        for i, p in enumerate(payloads)
    ]
    fit = np.array(fit_rows, dtype=np.float64).reshape(n, len(spec.fit_columns))
    if spec.kind_ == FLAT_KIND:
        return fit
    codes = spec.event_codes
    leads: list[int] = []
    types: list[int] = []
    stamps: list[Any] = []
    created = np.empty(n, dtype=np.int64)
    for i, payload in enumerate(payloads):
        if payload.get(CREATED_AT) is None:
            raise FeatureSpecError(f"payload {i} (lead_id {payload.get(LEAD_ID)!r}): created_at missing")
        created[i] = instant_ns(payload[CREATED_AT])
        events = payload.get("events") or []
        event_stamps = [e.get(OCCURRED_AT) for e in events]
        kinds = [e.get(EVENT_TYPE) for e in events]
        if None in event_stamps or None in kinds or not markers.isdisjoint(kinds):
            j = next(j for j, (t, k) in enumerate(zip(event_stamps, kinds, strict=True))
                     if t is None or k is None or k in markers)
            raise FeatureSpecError(
                f"payload {i} (lead_id {payload.get(LEAD_ID)!r}): event {j} needs occurred_at and event_type"
            )
        leads.extend(repeat(i, len(events)))
        types.extend(map(codes.get, kinds, repeat(-1)))
        stamps.extend(event_stamps)
    arrays = EventArrays.from_unsorted(np.array(leads, dtype=np.int64), _times_ns(stamps), np.array(types), n)
    values = event_features(arrays, np.arange(n), as_of_ns, created, spec.kernel_params)
    return np.hstack([fit, values])


def features_from_payload(payload: Payload, spec: FeatureSpec, as_of: Any = None) -> np.ndarray:
    """Features of one lead as a (1, n_features) float matrix (see :func:`features_from_payloads`)."""
    return features_from_payloads([payload], spec, as_of)


def payload_frame(payloads: Sequence[Payload], spec: FeatureSpec, as_of: Any = None) -> pd.DataFrame:
    """Same as :func:`features_from_payloads` but as a frame with pandas categories."""
    return spec.to_frame(features_from_payloads(payloads, spec, as_of))


# ----- flat exports -----------------------------------------------------------------------------
def flat_feature_frame(frame: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """Features of a flat export (one row per lead) in spec order, with pandas categories."""
    if spec.kind_ != FLAT_KIND:
        raise FeatureSpecError(f"spec kind is {spec.kind_!r}: flat features need a spec fitted on FlatData")
    matrix = np.hstack([spec.categorical_codes(frame), spec.numeric_values(frame)])
    return spec.to_frame(matrix, index=frame.index)


def build_flat_training_set(flat: FlatData, spec: FeatureSpec | None = None) -> TrainingSet:
    """Flat export -> TrainingSet (label as ``converted_within_h``; score columns kept aside)."""
    spec = spec if spec is not None else FeatureSpec().fit(flat)
    frame = flat.frame
    if flat.label not in frame.columns:
        raise FeatureSpecError(f"flat: label column {flat.label!r} missing")
    label = to_numbers(frame[flat.label], errors="coerce")
    bad = ~label.isin([0, 1])
    if bad.any():
        raise FeatureSpecError(
            f"flat: label column {flat.label!r} must be 0/1, bad rows {frame.index[bad][:10].tolist()}"
        )
    head = {LEAD_ID: frame[LEAD_ID].to_numpy()}
    if CREATED_AT in frame.columns:
        head[CREATED_AT] = frame[CREATED_AT].to_numpy()
    head[LABEL] = label.to_numpy(dtype=np.float64)
    head[CENSORED] = np.zeros(len(frame), dtype=bool)
    for col in flat.score_columns:
        head[col] = frame[col].to_numpy()
    features = flat_feature_frame(frame, spec).reset_index(drop=True)
    out = pd.concat([pd.DataFrame(head), features], axis=1)
    return TrainingSet(out, spec, unseen=spec.unseen_categories(frame))


NO_SNAPSHOT = ("no snapshot: no lead is open at any as-of date (check features.start / end / as_of_dates against "
               "the data's dates)")


def build_data_training_set(
    data: CRMData | FlatData,
    config: FeatureConfig | None = None,
    *,
    set_aside: Sequence[str] = (),
    progress: Progress | None = None,
) -> TrainingSet:
    """The training set of validated data, as `features build` and `train` build it: the snapshots of CRM
    tables (:func:`build_training_set`; ``set_aside``: existing score attributes) or the rows of a flat export
    (:func:`build_flat_training_set`). One without rows (no lead open at any as-of date) is refused."""
    if isinstance(data, FlatData):
        training_set = build_flat_training_set(data)
    else:
        training_set = build_training_set(data, config, progress=progress, set_aside=set_aside)
    if training_set.frame.empty:
        raise ValueError(NO_SNAPSHOT)
    return training_set


__all__ = [
    "AS_OF",
    "CENSORED",
    "DAYS_OBSERVED",
    "DAYS_TO_CONVERT",
    "EVENT_OBSERVED",
    "LABEL",
    "SnapshotHeads",
    "TrainingSet",
    "build_data_training_set",
    "build_flat_training_set",
    "build_scoring_frame",
    "build_training_set",
    "features_from_payload",
    "features_from_payloads",
    "flat_feature_frame",
    "lead_feature_matrix",
    "payload_frame",
    "scoring_matrix",
    "snapshot_features",
    "snapshot_heads",
    "snapshot_rows",
    "training_frame",
]
