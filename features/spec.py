"""FeatureConfig (typed parameters) and FeatureSpec (the fitted, serialisable feature contract).

The spec travels with the model: it fixes the event-type vocabulary, the categorical vocabularies,
the column order, the family of each column (fit / engagement / lifecycle) and a readable label per
column, so that serving rebuilds exactly the training features.

Column order: fit columns (categorical attributes sorted by name, then numeric attributes sorted by
name), then engagement columns, then lifecycle columns (see :func:`engagement_feature_names`).
It never depends on the order of rows or columns in the input.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from features.schema import (
    CONTENT_DOWNLOAD,
    DEFAULT_MISSING_VALUES,
    DEMO_REQUEST,
    EMAIL_BOUNCE,
    EMAIL_CLICK,
    EMAIL_OPEN,
    ENGAGEMENT,
    ENGAGEMENT_EVENT_TYPES,
    EVENT_TYPE,
    FAMILIES,
    FIT,
    FORM_FILL,
    LIFECYCLE,
    PAGE_VIEW,
    PRICING_PAGE_VIEW,
    RECYCLED,
    UNSUBSCRIBE,
    WEBINAR,
    CRMData,
    FlatData,
    category_text,
    distinct_strings,
    naive_utc,
    to_numbers,
    vocabulary_codes,
    vocabulary_key,
)

SPEC_FORMAT_VERSION = 1
# Config fields added after format 1 was first written, and the value that turns each off.
SPEC_FEATURES_OFF: dict[str, Any] = {"type_half_lives_days": (), "burst_gap_days": None}
CRM_KIND = "crm"
FLAT_KIND = "flat"
SPEC_METADATA_KEY = b"leadscore.feature_spec"  # a training set's spec (JSON) in its Parquet file's metadata
LINEAGE_METADATA_KEY = b"leadscore.lineage"  # and what it was built from (JSON: data fingerprint, config hash, code)

# Event types that signal disengagement: weight 0 in the decayed intensity and not "activity" by
# default (they still get counts, days-since-last and an "ever" flag).
NEGATIVE_SIGNAL_TYPES = (UNSUBSCRIBE, EMAIL_BOUNCE)
FLAG_COLUMNS = {UNSUBSCRIBE: "ever_unsubscribed", EMAIL_BOUNCE: "ever_email_bounced"}

LEAD_AGE = "lead_age_days"
TIMES_RECYCLED = "times_recycled"
DAYS_SINCE_LAST_RECYCLE = "days_since_last_recycle"
ENGAGEMENT_INTENSITY = "engagement_intensity"
DAYS_SINCE_BURST_START = "days_since_burst_start"
ACTIVITY_SINCE_BURST_START = "activity_since_burst_start"

_READABLE_TYPES: dict[str, tuple[str, str]] = {  # type -> (plural, singular)
    EMAIL_OPEN: ("email opens", "email open"),
    EMAIL_CLICK: ("email clicks", "email click"),
    PAGE_VIEW: ("page views", "page view"),
    PRICING_PAGE_VIEW: ("pricing page views", "pricing page view"),
    FORM_FILL: ("form fills", "form fill"),
    WEBINAR: ("webinars attended", "webinar"),
    CONTENT_DOWNLOAD: ("content downloads", "content download"),
    DEMO_REQUEST: ("demo requests", "demo request"),
    UNSUBSCRIBE: ("unsubscribes", "unsubscribe"),
    EMAIL_BOUNCE: ("email bounces", "email bounce"),
}


class FeatureSpecError(ValueError):
    """A spec cannot be fitted, loaded or applied to the given data."""


class FeatureConfig(BaseModel):
    """Parameters of snapshots, labels and features (loaded once at the edge).

    - ``cadence``: pandas offset alias of the as-of dates (``"MS"`` = month starts).
    - ``start`` / ``end``: first / last candidate as-of instant (defaults: earliest ``created_at``,
      ``data_end``); ``as_of_dates`` overrides the cadence with explicit instants.
    - ``data_end``: end of observation (default: the latest timestamp in the data).
    - ``horizon_days``: label horizon H; ``windows``: count windows in days;
      ``trend_windows`` = (recent, prior) days; ``half_life_days`` of the decayed intensity.
    - ``type_half_lives_days``: half-lives of the decayed count kept per activity type (one column
      per activity type and half-life; ``()`` turns them off).
    - ``burst_gap_days``: a burst of activity starts at an activity event preceded by at least this
      many quiet days (or at the lead's first activity); ``None`` turns the burst columns off.
    - ``event_types``: fixed engagement vocabulary; ``None`` -> fitted from the training events
      (``vocabulary="observed"``) or the schema's known types (``vocabulary="schema"``).
    - ``event_weights``: weight per event type in the decayed intensity; types not listed weigh 1,
      except unsubscribe / email_bounce which weigh 0. Events of positive weight are "activity"
      (trend, distinct active days).
    - ``block_leads``: leads processed per block (bounds memory; progress is reported per block).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    cadence: str = "MS"
    horizon_days: float = 90.0
    windows: tuple[int, ...] = (7, 30, 90)
    trend_windows: tuple[int, int] = (7, 28)
    half_life_days: float = 14.0
    type_half_lives_days: tuple[float, ...] = (7.0, 30.0)
    burst_gap_days: float | None = 14.0
    data_end: datetime | None = None
    start: datetime | None = None
    end: datetime | None = None
    as_of_dates: tuple[datetime, ...] | None = None
    event_types: tuple[str, ...] | None = None
    vocabulary: Literal["observed", "schema"] = "observed"
    event_weights: dict[str, float] = {}
    block_leads: int = 50_000

    @field_validator("cadence")
    @classmethod
    def _cadence_is_a_frequency(cls, value: str) -> str:
        try:
            offset = pd.tseries.frequencies.to_offset(value)
        except ValueError as exc:
            raise ValueError(f"cadence {value!r} is not a pandas frequency (e.g. 'MS', 'W-MON', '14D')") from exc
        if isinstance(offset, pd.tseries.offsets.Tick) and offset < pd.Timedelta(days=1):
            # '1h' built 7,065,211 snapshots of 1,000 leads over two years, without a word
            raise ValueError(f"cadence {value!r} is shorter than a day: snapshots hours apart repeat nearly the same "
                             "features (windows count whole days) and multiply the rows by 24 or more; use 'D' or "
                             "longer (e.g. 'W-MON', 'MS')")
        return value

    @field_validator("windows")
    @classmethod
    def _windows_positive_sorted(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(w <= 0 for w in value):
            raise ValueError(f"windows must be positive day counts, got {value}")
        return tuple(sorted(set(value)))

    @field_validator("trend_windows")
    @classmethod
    def _trend_positive(cls, value: tuple[int, int]) -> tuple[int, int]:
        if any(w <= 0 for w in value):
            raise ValueError(f"trend_windows must be positive day counts, got {value}")
        return value

    @field_validator("horizon_days", "half_life_days")
    @classmethod
    def _positive(cls, value: float) -> float:
        if not (value > 0 and math.isfinite(value)):
            raise ValueError(f"must be a positive number of days, got {value}")
        return value

    @field_validator("type_half_lives_days")
    @classmethod
    def _half_lives_positive_sorted(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(not (h > 0 and math.isfinite(h)) for h in value):
            raise ValueError(f"type_half_lives_days must be positive numbers of days, got {value}")
        return tuple(sorted(set(value)))

    @field_validator("burst_gap_days")
    @classmethod
    def _gap_positive(cls, value: float | None) -> float | None:
        if value is not None and not (value > 0 and math.isfinite(value)):
            raise ValueError(f"burst_gap_days must be a positive number of days or None, got {value}")
        return value

    @field_validator("block_leads")
    @classmethod
    def _block_positive(cls, value: int) -> int:
        if value <= 0:
            raise ValueError(f"block_leads must be positive, got {value}")
        return value

    @field_validator("event_weights")
    @classmethod
    def _weights_non_negative(cls, value: dict[str, float]) -> dict[str, float]:
        bad = {k: v for k, v in value.items() if not (v >= 0 and math.isfinite(v))}
        if bad:
            raise ValueError(f"event_weights must be finite and >= 0, got {bad}")
        return value

    @field_validator("data_end", "start", "end")
    @classmethod
    def _naive_utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else naive_utc(value).to_pydatetime()

    @field_validator("as_of_dates")
    @classmethod
    def _naive_utc_all(cls, value: tuple[datetime, ...] | None) -> tuple[datetime, ...] | None:
        return None if value is None else tuple(sorted({naive_utc(v).to_pydatetime() for v in value}))

    @model_validator(mode="after")
    def _no_recycled_in_vocabulary(self) -> FeatureConfig:
        if self.event_types is not None and RECYCLED in self.event_types:
            raise ValueError(f"event_types: {RECYCLED!r} is a lifecycle event, not an engagement type")
        return self

    def weight_of(self, event_type: str) -> float:
        """Weight of one engagement event type in the decayed intensity."""
        if event_type in self.event_weights:
            return float(self.event_weights[event_type])
        return 0.0 if event_type in NEGATIVE_SIGNAL_TYPES else 1.0


# FeatureConfig fields that choose the snapshots or their labels, not how a feature's value is computed
SNAPSHOT_ONLY_FIELDS = frozenset({"cadence", "horizon_days", "data_end", "start", "end", "as_of_dates", "block_leads"})


def feature_setting_differences(a: FeatureConfig, b: FeatureConfig) -> list[str]:
    """``"field a vs b"`` per setting of a feature's value that differs between two configs (models built
    with such configs cannot share one feature matrix: one would get features unlike its training ones)."""
    first, second = a.model_dump(), b.model_dump()
    return [f"{k} {first[k]!r} vs {second.get(k)!r}" for k in first
            if k not in SNAPSHOT_ONLY_FIELDS and first[k] != second.get(k)]


@dataclass(frozen=True)
class KernelParams:
    """What the array kernels need, derived from a fitted spec (not serialised)."""

    n_types: int  # engagement types 0..n_types-1; code n_types = recycled
    windows_ns: tuple[int, ...]
    trend_recent_ns: int
    trend_prior_ns: int
    half_life_ns: float
    weights: np.ndarray  # float64, length n_types + 1 (recycled weighs 0)
    active: np.ndarray  # bool, length n_types + 1
    flag_codes: tuple[int, ...]  # codes of unsubscribe / bounce present in the vocabulary
    decayed_codes: tuple[int, ...] = ()  # activity codes with a decayed count per type
    type_half_lives_ns: tuple[float, ...] = ()  # half-lives of those per-type decayed counts
    burst_gap_ns: int | None = None  # quiet gap that starts a burst (None: no burst columns)


DAY_NS = 86_400 * 10**9


def _readable_type(event_type: str) -> tuple[str, str]:
    if event_type in _READABLE_TYPES:
        return _READABLE_TYPES[event_type]
    words = event_type.replace("_", " ")
    return f"{words} events", f"{words} event"


def decayed_column(event_type: str, half_life_days: float) -> str:
    """Column name of the decayed count of one event type."""
    return f"{event_type}_decayed_{half_life_days:g}d"


def check_event_types(event_types: Iterable[str], observed: set[str]) -> None:
    """Refuse a fixed vocabulary (``features.event_types``) naming a type that is neither among the ``observed``
    ones nor conventional: a misspelt type gets columns no event fills, and its events none."""
    seen = sorted(observed - {RECYCLED})
    absent = [t for t in event_types if t not in seen and t not in ENGAGEMENT_EVENT_TYPES]
    if absent:
        close = [m for t in absent for m in difflib.get_close_matches(t, seen, 1, 0.8)]
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise FeatureSpecError(f"features.event_types: {absent} not among the event types of the data ({seen}) "
                               f"nor the conventional ones{hint}")


def decayed_types(event_types: Iterable[str], config: FeatureConfig) -> list[str]:
    """Activity types (positive weight) that get per-type decayed counts, in vocabulary order."""
    if not config.type_half_lives_days:
        return []
    return [t for t in event_types if config.weight_of(t) > 0]


def engagement_feature_names(event_types: Iterable[str], config: FeatureConfig) -> list[tuple[str, str, str]]:
    """(column, family, readable label) of the event-derived columns, in kernel output order."""
    types = list(event_types)
    out: list[tuple[str, str, str]] = []
    for event_type in types:
        plural, _ = _readable_type(event_type)
        for window in config.windows:
            out.append((f"{event_type}_count_{window}d", ENGAGEMENT, f"{plural}, last {window} days"))
    for event_type in types:
        _, singular = _readable_type(event_type)
        out.append((f"days_since_last_{event_type}", ENGAGEMENT, f"days since last {singular}"))
    recent, prior = config.trend_windows
    out.append(
        (
            f"engagement_trend_{recent}d_vs_{prior}d",
            ENGAGEMENT,
            f"engagement trend, last {recent} days vs the {prior} days before",
        )
    )
    longest = max(config.windows)
    out.append((f"active_days_{longest}d", ENGAGEMENT, f"distinct active days, last {longest} days"))
    out.append(
        (
            ENGAGEMENT_INTENSITY,
            ENGAGEMENT,
            f"decayed engagement intensity (half-life {config.half_life_days:g} days)",
        )
    )
    for event_type in decayed_types(types, config):
        plural, _ = _readable_type(event_type)
        for half_life in config.type_half_lives_days:
            out.append(
                (
                    decayed_column(event_type, half_life),
                    ENGAGEMENT,
                    f"{plural}, decayed count (half-life {half_life:g} days)",
                )
            )
    if config.burst_gap_days is not None:
        gap = f"{config.burst_gap_days:g}"
        out.append(
            (
                DAYS_SINCE_BURST_START,
                ENGAGEMENT,
                f"days since the latest burst of activity began (after {gap}+ quiet days)",
            )
        )
        out.append(
            (
                ACTIVITY_SINCE_BURST_START,
                ENGAGEMENT,
                f"activity events since the latest burst began (after {gap}+ quiet days)",
            )
        )
    for event_type in types:
        if event_type in FLAG_COLUMNS:
            _, singular = _readable_type(event_type)
            out.append((FLAG_COLUMNS[event_type], ENGAGEMENT, f"ever had an {singular}"))
    out.append((LEAD_AGE, LIFECYCLE, "lead age (days)"))
    out.append((TIMES_RECYCLED, LIFECYCLE, "times recycled by sales"))
    out.append((DAYS_SINCE_LAST_RECYCLE, LIFECYCLE, "days since last recycle"))
    return out


class FeatureSpec:
    """The fitted feature contract. ``fit`` returns self; learned state ends in ``_``.

    Fitted attributes: ``kind_`` ("crm" or "flat"), ``event_types_`` (engagement vocabulary),
    ``categorical_vocab_`` ({column: [values]}), ``numeric_columns_``, ``columns_`` (order of
    the feature matrix), ``families_`` ({column: family}), ``labels_`` ({column: readable label}),
    ``missing_values_`` (the texts the training data's contract read as missing, e.g. ``["", "Select"]``:
    a lead sent to serving with one of them has a missing value there, as in a table).
    """

    def __init__(self, config: FeatureConfig | None = None) -> None:
        self.config = config or FeatureConfig()

    # ----- fitting ---------------------------------------------------------------------------
    def fit(self, data: CRMData | FlatData) -> FeatureSpec:
        """Fit vocabularies and column order on training data (CRM tables or a flat export)."""
        self._kernel_params = None
        self._category_lookup = None
        self._markers = None
        self.missing_values_ = list(getattr(data, "missing_values", DEFAULT_MISSING_VALUES))
        if isinstance(data, FlatData):
            return self._fit_flat(data)
        if isinstance(data, CRMData):
            return self._fit_crm(data)
        raise FeatureSpecError(f"FeatureSpec.fit expects CRMData or FlatData, got {type(data).__name__}")

    def _fit_crm(self, crm: CRMData) -> FeatureSpec:
        config = self.config
        if config.event_types is not None:
            event_types = list(config.event_types)
        elif config.vocabulary == "schema":
            event_types = list(ENGAGEMENT_EVENT_TYPES)
        else:
            event_types = sorted(set(distinct_strings(crm.events[EVENT_TYPE])) - {RECYCLED})
        if len(set(event_types)) != len(event_types):
            raise FeatureSpecError(f"event_types has duplicates: {event_types}")
        if config.event_types is not None and len(crm.events):  # (no events: the distributed build checks)
            check_event_types(event_types, set(distinct_strings(crm.events[EVENT_TYPE])))
        unknown = sorted(set(config.event_weights) - set(event_types) - set(ENGAGEMENT_EVENT_TYPES))
        if unknown:  # a misspelt type would leave its events at weight 1 without a word
            raise FeatureSpecError(f"features.event_weights: {unknown} not among the event types of the data "
                                   f"({event_types}) nor the conventional ones")
        categorical = sorted(crm.categorical_attributes)
        numeric = sorted(crm.numeric_attributes)
        _check_columns("leads", crm.leads, [*categorical, *numeric])
        self.kind_ = CRM_KIND
        self.event_types_ = event_types
        self.categorical_vocab_ = {
            col: sorted(set(distinct_strings(crm.leads[col]))) for col in categorical
        }
        self.numeric_columns_ = numeric
        columns = [*categorical, *numeric]
        families = dict.fromkeys(columns, FIT)
        labels = {col: col.replace("_", " ") for col in columns}
        for name, family, label in engagement_feature_names(event_types, config):
            columns.append(name)
            families[name] = family
            labels[name] = label
        self.columns_ = columns
        self.families_ = families
        self.labels_ = labels
        self._check_unique_columns()
        return self

    def _fit_flat(self, flat: FlatData) -> FeatureSpec:
        categorical = sorted(flat.categorical_features)
        numeric = sorted(flat.numeric_features)
        _check_columns("flat", flat.frame, [*categorical, *numeric])
        missing = [c for c in [*categorical, *numeric] if c not in flat.families]
        bad = {c: f for c, f in flat.families.items() if f not in FAMILIES}
        if missing or bad:
            raise FeatureSpecError(
                f"flat: every feature needs a family in {FAMILIES}; missing: {missing}, invalid: {bad}"
            )
        self.kind_ = FLAT_KIND
        self.event_types_ = []
        self.categorical_vocab_ = {
            col: sorted(set(distinct_strings(flat.frame[col]))) for col in categorical
        }
        self.numeric_columns_ = numeric
        self.columns_ = [*categorical, *numeric]
        self.families_ = {c: flat.families[c] for c in self.columns_}
        self.labels_ = {c: c.replace("_", " ") for c in self.columns_}
        self._check_unique_columns()
        return self

    def _check_unique_columns(self) -> None:
        seen: set[str] = set()
        dupes = [c for c in self.columns_ if c in seen or seen.add(c)]
        if dupes:
            raise FeatureSpecError(f"feature columns collide (rename the attribute): {dupes}")

    # ----- fitted views ----------------------------------------------------------------------
    def _require_fitted(self) -> None:
        if not hasattr(self, "columns_"):
            raise FeatureSpecError("FeatureSpec is not fitted: call fit(...) or from_dict(...)")

    @property
    def categorical_columns(self) -> list[str]:
        self._require_fitted()
        return list(self.categorical_vocab_)

    @property
    def fit_columns(self) -> list[str]:
        return [*self.categorical_columns, *self.numeric_columns_]

    def columns_of(self, family: str) -> list[str]:
        """Feature columns of one family (``fit``, ``engagement`` or ``lifecycle``)."""
        self._require_fitted()
        return [c for c in self.columns_ if self.families_[c] == family]

    @property
    def missing_markers(self) -> frozenset[str]:
        """``missing_values_`` as a set (``[""]`` for a spec fitted before it was kept)."""
        cached = getattr(self, "_markers", None)
        if cached is None:
            cached = frozenset(getattr(self, "missing_values_", DEFAULT_MISSING_VALUES))
            self._markers = cached
        return cached

    @property
    def event_codes(self) -> dict[str, int]:
        """Event type -> integer code used by the kernels (recycled is last)."""
        self._require_fitted()
        codes = {t: i for i, t in enumerate(self.event_types_)}
        codes[RECYCLED] = len(self.event_types_)
        return codes

    @property
    def category_lookup(self) -> dict[str, dict[str, float]]:
        """{column: {value: code}} for encoding payload attributes without pandas."""
        self._require_fitted()
        cached = getattr(self, "_category_lookup", None)
        if cached is None:
            cached = {c: {v: float(i) for i, v in enumerate(vocab)} for c, vocab in self.categorical_vocab_.items()}
            self._category_lookup = cached
        return cached

    @property
    def kernel_params(self) -> KernelParams:
        self._require_fitted()
        cached = getattr(self, "_kernel_params", None)
        if cached is not None:
            return cached
        config = self.config
        weights = np.array([config.weight_of(t) for t in self.event_types_] + [0.0], dtype=np.float64)
        recent, prior = config.trend_windows
        params = KernelParams(
            n_types=len(self.event_types_),
            windows_ns=tuple(int(w) * DAY_NS for w in config.windows),
            trend_recent_ns=int(recent) * DAY_NS,
            trend_prior_ns=int(prior) * DAY_NS,
            half_life_ns=float(config.half_life_days) * DAY_NS,
            weights=weights,
            active=weights > 0,
            flag_codes=tuple(i for i, t in enumerate(self.event_types_) if t in FLAG_COLUMNS),
            decayed_codes=tuple(self.event_types_.index(t) for t in decayed_types(self.event_types_, config)),
            type_half_lives_ns=tuple(float(h) * DAY_NS for h in config.type_half_lives_days),
            burst_gap_ns=None if config.burst_gap_days is None else round(config.burst_gap_days * DAY_NS),
        )
        self._kernel_params = params
        return params

    # ----- unseen values ---------------------------------------------------------------------
    def unseen_categories(self, frame: pd.DataFrame) -> dict[str, list[str]]:
        """Values of each categorical column absent from the fitted vocabulary (they become NaN)."""
        self._require_fitted()
        out: dict[str, list[str]] = {}
        for col, vocab in self.categorical_vocab_.items():
            if col not in frame.columns:
                continue
            unseen = sorted(set(distinct_strings(frame[col])) - set(vocab))
            if unseen:
                out[col] = unseen
        return out

    def unseen_values(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        """Per categorical column holding unseen values: each row's unseen value as text (None where the
        value is known or missing), so a reason can show what the lead had, not a missing value."""
        self._require_fitted()
        out: dict[str, np.ndarray] = {}
        for col, vocab in self.categorical_vocab_.items():
            if col not in frame.columns:
                continue
            series = frame[col]
            unseen = np.isnan(_codes_of(series, vocab)) & series.notna().to_numpy()
            if unseen.any():
                texts = np.full(len(series), None, dtype=object)
                texts[unseen] = [category_text(v) for v in series.to_numpy()[unseen]]
                out[col] = texts
        return out

    def unseen_event_types(self, events: pd.DataFrame) -> list[str]:
        """Event types the spec does not know (their events are ignored by the features)."""
        self._require_fitted()
        if self.kind_ != CRM_KIND or len(events) == 0:
            return []
        known = set(self.event_codes)
        return sorted(set(distinct_strings(events[EVENT_TYPE])) - known)

    def unseen_in_payload(self, payload: Mapping[str, Any]) -> dict[str, list[str]]:
        """Unseen categorical values (per column) and unknown event types (key ``event_type``)."""
        self._require_fitted()
        attributes = payload.get("attributes") or {}
        out: dict[str, list[str]] = {}
        for col, index in self.category_lookup.items():
            value = attributes.get(col)
            if value is None or _is_nan(value) or (isinstance(value, str) and (
                    value in index or not value.strip() or value in self.missing_markers)):
                continue  # missing (a marker such as "" too, as in a table), or a known value as written
            if vocabulary_key(value, index) is None:
                out[col] = [category_text(value)]
        if self.kind_ == CRM_KIND:
            known = self.event_codes
            unknown = sorted({str(e.get(EVENT_TYPE)) for e in payload.get("events") or []} - set(known))
            if unknown:
                out[EVENT_TYPE] = unknown
        return out

    def unseen_values_of_payloads(self, found: Sequence[Mapping[str, list[str]]]) -> dict[str, np.ndarray]:
        """``unseen_values`` of request payloads from their :meth:`unseen_in_payload` (``found``, one per
        payload, as the request's checks computed them), one row per payload."""
        out: dict[str, np.ndarray] = {}
        for i, unseen in enumerate(found):
            for col, values in unseen.items():
                if col in self.categorical_vocab_:  # not the unknown event types
                    out.setdefault(col, np.full(len(found), None, dtype=object))[i] = values[0]
        return out

    # ----- matrix <-> frame ------------------------------------------------------------------
    def categorical_codes(self, frame: pd.DataFrame) -> np.ndarray:
        """Float matrix (rows x categorical columns) of vocabulary codes, NaN when missing/unseen."""
        self._require_fitted()
        out = np.full((len(frame), len(self.categorical_vocab_)), np.nan)
        for j, (col, vocab) in enumerate(self.categorical_vocab_.items()):
            out[:, j] = _codes_of(frame[col], vocab)
        return out

    def numeric_values(self, frame: pd.DataFrame) -> np.ndarray:
        """Float matrix (rows x numeric columns); a non-numeric value is an error naming the rows."""
        self._require_fitted()
        out = np.empty((len(frame), len(self.numeric_columns_)))
        for j, col in enumerate(self.numeric_columns_):
            converted = to_numbers(frame[col], errors="coerce")
            bad = converted.isna() & frame[col].notna()
            if bad.any():
                rows = list(frame.index[bad][:10])
                raise FeatureSpecError(f"column {col!r}: non-numeric values in rows {rows}")
            out[:, j] = converted.to_numpy(dtype=np.float64, na_value=np.nan)
        return out

    def to_frame(self, matrix: np.ndarray, index: pd.Index | None = None, *, share: bool = False) -> pd.DataFrame:
        """Feature frame in spec order: categoricals as pandas ``category`` (fixed vocabulary).

        ``share``: the numeric columns of a column-major (``order="F"``) float64 matrix become views
        of it instead of a copy (the same frame, one matrix less in memory; the caller hands the
        matrix over and must not write to it afterwards). Otherwise the values are copied.
        """
        self._require_fitted()
        matrix = np.asarray(matrix, dtype=np.float64)
        if matrix.ndim != 2 or matrix.shape[1] != len(self.columns_):
            raise FeatureSpecError(
                f"feature matrix has shape {matrix.shape}, expected (n, {len(self.columns_)})"
            )
        if share and matrix.flags.f_contiguous and (frame := self._frame_over(matrix, index)) is not None:
            return frame
        data: dict[str, Any] = {}
        for j, col in enumerate(self.columns_):
            if col in self.categorical_vocab_:
                data[col] = self._categorical(col, matrix[:, j])
            else:
                data[col] = matrix[:, j]
        return pd.DataFrame(data, index=index, columns=self.columns_)

    def _categorical(self, col: str, codes: np.ndarray) -> pd.Categorical:
        codes = np.where(np.isnan(codes), -1, codes).astype(np.int64)
        return pd.Categorical.from_codes(codes, categories=self.categorical_vocab_[col])

    def _frame_over(self, matrix: np.ndarray, index: pd.Index | None) -> pd.DataFrame | None:
        """:meth:`to_frame` of a column-major matrix whose numeric columns are one run, that run a view
        of it (categoricals inserted beside it: pandas merges no block, so nothing is copied); None
        when the numeric columns are not contiguous."""
        numeric = [j for j, col in enumerate(self.columns_) if col not in self.categorical_vocab_]
        if not numeric or numeric[-1] - numeric[0] + 1 != len(numeric):
            return None
        first, end = numeric[0], numeric[-1] + 1
        frame = pd.DataFrame(matrix[:, first:end], index=index, columns=self.columns_[first:end], copy=False)
        for j, col in enumerate(self.columns_):
            if col in self.categorical_vocab_:
                frame.insert(j, col, self._categorical(col, matrix[:, j]))
        return frame

    def to_matrix(self, frame: pd.DataFrame) -> np.ndarray:
        """Inverse of :meth:`to_frame`: float matrix in spec order (category codes, NaN missing)."""
        self._require_fitted()
        _check_columns("features", frame, self.columns_)
        out = np.empty((len(frame), len(self.columns_)))
        for j, col in enumerate(self.columns_):
            if col in self.categorical_vocab_:
                series = frame[col]
                if isinstance(series.dtype, pd.CategoricalDtype):
                    series = series.astype(object)
                out[:, j] = _codes_of(series, self.categorical_vocab_[col])
            else:
                out[:, j] = frame[col].to_numpy(dtype=np.float64, na_value=np.nan)
        return out

    # ----- serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (config used, vocabularies, columns, families, labels)."""
        self._require_fitted()
        return {
            "format_version": SPEC_FORMAT_VERSION,
            "kind": self.kind_,
            "config": self.config.model_dump(mode="json"),
            "event_types": list(self.event_types_),
            "categorical_vocab": {k: list(v) for k, v in self.categorical_vocab_.items()},
            "numeric_columns": list(self.numeric_columns_),
            "columns": list(self.columns_),
            "families": dict(self.families_),
            "labels": dict(self.labels_),
            "missing_values": list(getattr(self, "missing_values_", DEFAULT_MISSING_VALUES)),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureSpec:
        """Rebuild a fitted spec from :meth:`to_dict` output; inconsistent content is an error."""
        required = ("format_version", "kind", "config", "event_types", "categorical_vocab",
                    "numeric_columns", "columns", "families", "labels")
        missing = [k for k in required if k not in data]
        if missing:
            raise FeatureSpecError(f"feature spec: missing fields {missing}")
        if data["format_version"] != SPEC_FORMAT_VERSION:
            raise FeatureSpecError(
                f"feature spec: format_version {data['format_version']} unsupported "
                f"(expected {SPEC_FORMAT_VERSION})"
            )
        if data["kind"] not in (CRM_KIND, FLAT_KIND):
            raise FeatureSpecError(f"feature spec: kind {data['kind']!r} unknown")
        # Specs written before the per-type decayed counts and burst columns existed lack those
        # config fields: they are read with the features off, so their columns still match.
        config = {**SPEC_FEATURES_OFF, **data["config"]}
        spec = cls(FeatureConfig.model_validate(config))
        spec.kind_ = data["kind"]
        spec.event_types_ = list(data["event_types"])
        spec.categorical_vocab_ = {k: list(v) for k, v in data["categorical_vocab"].items()}
        spec.numeric_columns_ = list(data["numeric_columns"])
        spec.columns_ = list(data["columns"])
        spec.families_ = dict(data["families"])
        spec.labels_ = dict(data["labels"])
        # specs written before the markers were kept: the contract's default (only "" is missing)
        markers = data.get("missing_values", list(DEFAULT_MISSING_VALUES))
        if not isinstance(markers, list) or not all(isinstance(m, str) for m in markers):
            raise FeatureSpecError(f"feature spec: missing_values must be a list of texts, got {markers!r}")
        spec.missing_values_ = list(markers)
        expected = [*spec.categorical_vocab_, *spec.numeric_columns_]
        if spec.kind_ == CRM_KIND:
            expected += [n for n, _, _ in engagement_feature_names(spec.event_types_, spec.config)]
        if sorted(expected) != sorted(spec.columns_) or len(expected) != len(spec.columns_):
            raise FeatureSpecError("feature spec: columns do not match vocabularies and config")
        bad = {c: spec.families_.get(c) for c in spec.columns_ if spec.families_.get(c) not in FAMILIES}
        if bad:
            raise FeatureSpecError(f"feature spec: invalid families {bad}")
        return spec

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FeatureSpec):
            return NotImplemented
        try:
            return self.to_dict() == other.to_dict()
        except FeatureSpecError:
            return False

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        if not hasattr(self, "columns_"):
            return "FeatureSpec(unfitted)"
        counts = {f: len(self.columns_of(f)) for f in FAMILIES}
        return f"FeatureSpec(kind={self.kind_!r}, columns={len(self.columns_)}, families={counts})"


def _codes_of(series: pd.Series, vocab: list[str]) -> np.ndarray:
    """Vocabulary code of each value as float64 (NaN when missing or not in the vocabulary)."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        index = {v: i for i, v in enumerate(vocab)}
        mapping = np.array([index.get(vocabulary_key(c, index), -1) for c in series.cat.categories], dtype=np.int64)
        codes = series.cat.codes.to_numpy()
        out = np.where(codes >= 0, mapping[codes] if mapping.size else -1, -1).astype(np.float64)
    else:
        out = vocabulary_codes(series, vocab)
    out[out < 0] = np.nan
    return out


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _check_columns(table: str, frame: pd.DataFrame, columns: Iterable[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise FeatureSpecError(f"{table}: missing columns {missing}")
