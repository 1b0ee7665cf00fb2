"""Canonical names and containers shared by every room.

Whatever a company's export calls its columns, the contract maps them onto these names on load;
everything downstream (features, training, serving) only ever sees the canonical frames below.

Canonical frames (timestamps are tz-naive ``datetime64[ns]`` in UTC; ``lead_id`` is int64 or str):

- ``leads``:    ``lead_id``, ``created_at``, then attribute columns (categorical -> ``category``
  or ``object``; numeric -> float64).
- ``events``:   ``lead_id``, ``occurred_at``, ``event_type`` (str or ``category``), optional
  ``channel``, ``campaign`` (str) and ``value`` (float64).
- ``outcomes``: ``lead_id``, ``converted_at`` (``NaT`` when not converted), optional ``amount``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

LEAD_ID = "lead_id"
CREATED_AT = "created_at"
OCCURRED_AT = "occurred_at"
EVENT_TYPE = "event_type"
CHANNEL = "channel"
CAMPAIGN = "campaign"
VALUE = "value"
CONVERTED_AT = "converted_at"
AMOUNT = "amount"

LEADS = "leads"
EVENTS = "events"
OUTCOMES = "outcomes"
TABLES = (LEADS, EVENTS, OUTCOMES)

REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    LEADS: (LEAD_ID, CREATED_AT),
    EVENTS: (LEAD_ID, OCCURRED_AT, EVENT_TYPE),
    OUTCOMES: (LEAD_ID, CONVERTED_AT),
}
OPTIONAL_COLUMNS: dict[str, tuple[str, ...]] = {
    LEADS: (),
    EVENTS: (CHANNEL, CAMPAIGN, VALUE),
    OUTCOMES: (AMOUNT,),
}

# Engagement event types the synthetic CRM emits and the default points rules know.
# The contract accepts any event type string; these are the conventional ones.
EMAIL_OPEN = "email_open"
EMAIL_CLICK = "email_click"
PAGE_VIEW = "page_view"
PRICING_PAGE_VIEW = "pricing_page_view"
FORM_FILL = "form_fill"
WEBINAR = "webinar"
CONTENT_DOWNLOAD = "content_download"
DEMO_REQUEST = "demo_request"
UNSUBSCRIBE = "unsubscribe"
EMAIL_BOUNCE = "email_bounce"
# Lifecycle event: sales handed the lead back to nurturing (a "recycled" lead).
RECYCLED = "recycled"

ENGAGEMENT_EVENT_TYPES = (
    EMAIL_OPEN,
    EMAIL_CLICK,
    PAGE_VIEW,
    PRICING_PAGE_VIEW,
    FORM_FILL,
    WEBINAR,
    CONTENT_DOWNLOAD,
    DEMO_REQUEST,
    UNSUBSCRIBE,
    EMAIL_BOUNCE,
)
LIFECYCLE_EVENT_TYPES = (RECYCLED,)

# Feature families: explanations split a score into a fit part and an engagement part.
FIT = "fit"
ENGAGEMENT = "engagement"
LIFECYCLE = "lifecycle"
FAMILIES = (FIT, ENGAGEMENT, LIFECYCLE)

# Texts read as missing values when a project declares no ``missing_values`` (an empty field)
DEFAULT_MISSING_VALUES = ("",)


def naive_utc(instant: Any) -> pd.Timestamp:
    """``instant`` (a Timestamp, datetime, numpy datetime64 or ISO text) as a timezone-naive UTC Timestamp,
    the convention of every canonical frame: an aware instant is converted to UTC, a naive one is taken as
    UTC already. Raises ValueError for a missing one (None, NaT)."""
    at = pd.Timestamp(instant)
    if at is pd.NaT:
        raise ValueError(f"missing timestamp: {instant!r}")
    return at.tz_convert("UTC").tz_localize(None) if at.tzinfo is not None else at


def naive_utc_datetime(value: datetime) -> datetime:
    """:func:`naive_utc` of a datetime, as a datetime and without pandas (request validation runs it on every
    timestamp of a request). Raises OverflowError when UTC moves it past datetime's range (year 1 at +01:00)."""
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo is not None else value


def utc_now() -> datetime:
    """Now as a naive UTC datetime (the convention of every timestamp here)."""
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass
class CRMData:
    """The three validated, canonical CRM tables plus which lead columns are attributes.

    ``missing_values``: the texts the contract read as missing (the project's markers, e.g. "Select");
    a spec fitted on the data keeps them, so that serving reads a lead's values as the tables were read.
    """

    leads: pd.DataFrame
    events: pd.DataFrame
    outcomes: pd.DataFrame
    categorical_attributes: list[str] = field(default_factory=list)
    numeric_attributes: list[str] = field(default_factory=list)
    missing_values: tuple[str, ...] = DEFAULT_MISSING_VALUES

    @property
    def attributes(self) -> list[str]:
        return [*self.categorical_attributes, *self.numeric_attributes]


@dataclass
class FlatData:
    """A flat export: one row per lead, engagement already aggregated, a label column.

    ``frame`` holds ``lead_id``, the label column ``label`` (0/1), optional ``created_at``, and the
    feature columns; ``families`` maps each feature column to ``fit`` / ``engagement`` /
    ``lifecycle``; ``score_columns`` are existing scores kept aside for baselines (not features);
    ``missing_values`` as in :class:`CRMData`.
    """

    frame: pd.DataFrame
    categorical_features: list[str]
    numeric_features: list[str]
    families: dict[str, str]
    score_columns: list[str] = field(default_factory=list)
    label: str = "label"
    missing_values: tuple[str, ...] = DEFAULT_MISSING_VALUES

    @property
    def features(self) -> list[str]:
        return [*self.categorical_features, *self.numeric_features]


EXACT_FLOAT_INTS = 2**53  # from here on float64 merges distinct integers

# pandas' text-to-number parser (2.3) adds up a decimal exponent in a C int: one of 10 or more significant digits
# overflows it ("1e2147483648" crashes the process, "1e4294967296" reads as 1.0). Hex ids such as
# "401013266745e5661589292315434968" are such text. No finite number of a table is written so.
OVERFLOWING_EXPONENT = r"[eE][+-]?0*[1-9][0-9]{9,}"
_OVERFLOWING_EXPONENT = re.compile(OVERFLOWING_EXPONENT)


def overflowing_exponents(values: pd.Series) -> np.ndarray:
    """Mask of text values holding a decimal exponent of 10 or more significant digits (see above)."""
    if not len(values) or not (values.dtype == object or pd.api.types.is_string_dtype(values.dtype)):
        return np.zeros(len(values), dtype=bool)
    try:
        text = pa.array(values, type=pa.string(), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):  # text mixed with numbers (SQLite): one by one
        return values.map(lambda v: isinstance(v, str) and _OVERFLOWING_EXPONENT.search(v) is not None) \
            .to_numpy(dtype=bool)
    return pc.match_substring_regex(text, OVERFLOWING_EXPONENT).fill_null(False).to_numpy(zero_copy_only=False)


def to_numbers(values: pd.Series, *, errors: str = "coerce", **options: Any) -> pd.Series:
    """``pd.to_numeric(values, errors=errors, **options)`` where text of an overflowing exponent is no
    number (missing with ``coerce``, a ``ValueError`` naming it with ``raise``) instead of a crash."""
    bad = overflowing_exponents(values)
    if bad.any():
        if errors == "raise":
            raise ValueError(f"Unable to parse string {values[bad].iloc[0]!r}: exponent too large for a number")
        values = values.mask(bad)
    return pd.to_numeric(values, errors=errors, **options)  # type: ignore[call-overload]



def category_text(value: Any) -> str:
    """A categorical value as text: whole floats as integers (a code column read with a blank is
    float, ``75.0``; the same code read without one, or sent by a CRM, is ``75``: both are ``"75"``)."""
    if isinstance(value, float | np.floating) and np.isfinite(value) and float(value).is_integer() \
            and abs(value) < EXACT_FLOAT_INTS:
        return str(int(value))
    return str(value)


def values_as_text(values: pd.Series) -> pd.Series:
    """:func:`category_text` of every value, in an ``object`` column; missing stays missing."""
    present = values.notna()
    if isinstance(values.dtype, pd.CategoricalDtype):  # its categories as text, then each value's
        categories = values_as_text(pd.Series(values.cat.categories)).to_numpy(dtype=object)
        codes = values.cat.codes.to_numpy()
        return pd.Series(np.where(codes >= 0, categories[np.maximum(codes, 0)] if len(categories) else None, None),
                         index=values.index, dtype=object).where(present)
    if pd.api.types.is_float_dtype(values.dtype):
        numbers = values.to_numpy(dtype=np.float64, na_value=np.nan)
        whole = present.to_numpy() & (np.abs(numbers) < EXACT_FLOAT_INTS)
        whole[whole] = numbers[whole] == np.floor(numbers[whole])
        text = values.astype(str).astype(object)
        text[whole] = pd.Series(numbers[whole].astype(np.int64), index=values.index[whole]).astype(str)
        return text.where(present)
    if values.dtype == object:
        kind = pd.api.types.infer_dtype(values, skipna=True)
        if kind in ("string", "empty"):
            return _whole_numbers_as_integers(values)
        if kind in ("floating", "mixed-integer-float", "mixed-integer", "mixed", "decimal"):  # floats among them
            return _whole_numbers_as_integers(values.map(category_text, na_action="ignore").astype(object))
    return values.astype(object).where(~present, values.astype(str))


def _whole_numbers_as_integers(text: pd.Series) -> pd.Series:
    """Text values as a typed value would be written: a whole number written with decimals ("75.0", as a
    CSV export of a float column with blanks writes it) as the integer's text ("75"), as
    :func:`category_text` writes the float; ``true`` / ``TRUE`` / ``false`` ... as ``True`` / ``False``,
    as a boolean column (Parquet, SQL, a JSON payload) is written. Value by value, so every chunk of a
    file reads alike."""
    strings = text.to_numpy(dtype=object)
    present = text.notna().to_numpy()
    try:
        array = pa.array(strings[present], type=pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return text
    whole = pc.match_substring_regex(array, _WHOLE_NUMBER_TEXT).to_numpy(zero_copy_only=False)
    lower = pc.utf8_lower(array)
    truth = pc.is_in(lower, value_set=pa.array(["true", "false"])).to_numpy(zero_copy_only=False)
    if not whole.any() and not truth.any():
        return text
    fixed = pc.replace_substring_regex(array, _WHOLE_NUMBER_TEXT, r"\1").to_numpy(zero_copy_only=False)
    fixed = np.where(truth, np.where(lower.to_numpy(zero_copy_only=False) == "true", "True", "False"), fixed)
    out = strings.copy()
    changed = whole | truth
    out[np.flatnonzero(present)[changed]] = fixed[changed]
    return pd.Series(out, index=text.index, dtype=object)


_WHOLE_NUMBER_TEXT = r"^([+-]?\d+)\.0+$"


def vocabulary_codes(values: pd.Series, vocabulary: list[str]) -> np.ndarray:
    """Position of each value in ``vocabulary`` as float64 (NaN: missing or unseen), by its
    :func:`category_text`, else by the other texts it may have had (:func:`vocabulary_key`)."""
    codes = pd.Categorical(values_as_text(values), categories=vocabulary).codes.astype(np.float64)
    missed = np.flatnonzero((codes < 0) & values.notna().to_numpy())
    if missed.size:
        index = {v: i for i, v in enumerate(vocabulary)}
        left = values.iloc[missed]
        found = {}
        for value in pd.unique(left.to_numpy(dtype=object)):
            key = vocabulary_key(value, index)
            found[value] = -1 if key is None else index[key]
        codes[missed] = left.map(found).to_numpy(dtype=np.float64)
    codes[codes < 0] = np.nan
    return codes


def vocabulary_key(value: Any, index: Mapping[str, Any]) -> str | None:
    """The key of ``index`` (a vocabulary) that ``value`` stands for: its :func:`category_text`, or the
    text it had in vocabularies written before values were read as written and whole floats became
    integers ("2.0" for 2, "501" for "00501", "2.5" for "2.50", "True" for "true")."""
    text = str(value)
    keys = [category_text(value), text, re.sub(_WHOLE_NUMBER_TEXT, r"\1", text), re.sub(r"^([+-]?\d+)$", r"\1.0", text)]
    if text.strip().lower() in ("true", "false"):
        keys.append("True" if text.strip().lower() == "true" else "False")
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    if math.isfinite(number):
        keys += [category_text(number), str(number)]
    for key in keys:
        if key in index:
            return key
    return None


def distinct_strings(series: pd.Series) -> list[str]:
    """Distinct non-null values of a column as strings (the vocabulary's value space)."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        codes = series.cat.codes.to_numpy()
        present = np.unique(codes[codes >= 0])
        return list(dict.fromkeys(category_text(v) for v in series.cat.categories[present]))
    return list(dict.fromkeys(category_text(v) for v in pd.unique(series[series.notna()])))
