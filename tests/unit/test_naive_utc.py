"""The one time convention of the canonical frames: naive UTC (features.schema)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from features.schema import naive_utc, naive_utc_datetime, utc_now

PLUS_TWO = timezone(timedelta(hours=2))


@pytest.mark.parametrize("instant", [
    pd.Timestamp("2026-06-01 08:00", tz="Europe/Berlin"),
    datetime(2026, 6, 1, 8, 0, tzinfo=PLUS_TWO),
    "2026-06-01T08:00:00+02:00",
    "2026-06-01T06:00:00Z",
])
def test_an_aware_instant_is_converted_to_utc_and_loses_its_zone(instant: object) -> None:
    at = naive_utc(instant)
    assert isinstance(at, pd.Timestamp) and at.tzinfo is None
    assert at == pd.Timestamp(instant).tz_convert("UTC").tz_localize(None)
    assert at == pd.Timestamp(2026, 6, 1, 6, 0)


@pytest.mark.parametrize("instant", [
    pd.Timestamp("2026-06-01 08:00:00.000000001"),
    datetime(2026, 6, 1, 8, 0, 0, 123456),
    np.datetime64("2026-06-01T08:00:00.000000001"),
    "2026-06-01T08:00:00",
])
def test_a_naive_instant_is_taken_as_utc_unchanged(instant: object) -> None:
    at = naive_utc(instant)
    assert isinstance(at, pd.Timestamp) and at.tzinfo is None
    assert at == pd.Timestamp(instant)


@pytest.mark.parametrize("missing", [None, pd.NaT, "NaT", np.datetime64("NaT")])
def test_a_missing_instant_is_refused(missing: object) -> None:
    with pytest.raises(ValueError, match="missing timestamp"):
        naive_utc(missing)


def test_the_datetime_variant_agrees_with_the_timestamp_one() -> None:
    aware = datetime(2026, 6, 1, 1, 30, tzinfo=PLUS_TWO)
    naive = datetime(2026, 6, 1, 1, 30, 0, 999999)
    for value in (aware, naive):
        out = naive_utc_datetime(value)
        assert type(out) is datetime and out.tzinfo is None
        assert out == naive_utc(value).to_pydatetime()
    assert naive_utc_datetime(naive) is naive


def test_the_datetime_variant_overflows_past_datetimes_range() -> None:
    with pytest.raises(OverflowError):
        naive_utc_datetime(datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))))


def test_now_is_naive_utc() -> None:
    before = datetime.now(UTC).replace(tzinfo=None)
    now = utc_now()
    after = datetime.now(UTC).replace(tzinfo=None)
    assert type(now) is datetime and now.tzinfo is None
    assert before <= now <= after
