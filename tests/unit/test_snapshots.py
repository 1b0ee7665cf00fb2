"""As-of dates, eligibility, labels and censoring at the edges."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from features.build import build_training_set
from features.schema import CRMData
from features.snapshots import (
    AS_OF,
    CENSORED,
    DAYS_OBSERVED,
    DAYS_TO_CONVERT,
    EVENT_OBSERVED,
    LABEL,
    as_of_dates,
    resolve_data_end,
)
from features.spec import FeatureConfig

T = pd.Timestamp
DAY = pd.Timedelta(days=1)
AS_OF_1 = T("2024-02-01")
DATA_END = T("2024-12-31")


def crm_of(created: dict[int, str], conversions: list[tuple[int, str]], events: list[tuple[int, str, str]] = ()) -> CRMData:
    leads = pd.DataFrame({"lead_id": list(created), "created_at": pd.to_datetime(list(created.values()), format="ISO8601")})
    outcomes = pd.DataFrame(
        {
            "lead_id": [i for i, _ in conversions] or pd.Series([], dtype=np.int64),
            "converted_at": pd.to_datetime([t for _, t in conversions], format="ISO8601"),
        }
    )
    frame = pd.DataFrame(
        {
            "lead_id": pd.Series([i for i, _, _ in events], dtype=np.int64),
            "occurred_at": pd.to_datetime([t for _, t, _ in events], format="ISO8601"),
            "event_type": pd.Series([k for _, _, k in events], dtype=object),
        }
    )
    return CRMData(leads, frame, outcomes)


def rows_at(crm: CRMData, config: FeatureConfig, as_of: pd.Timestamp = AS_OF_1) -> pd.DataFrame:
    frame = build_training_set(crm, config).frame
    return frame[frame[AS_OF] == as_of].set_index("lead_id")


def test_monthly_as_of_dates_are_month_starts_after_first_lead_up_to_data_end() -> None:
    crm = crm_of({1: "2024-01-15", 2: "2024-03-02"}, [(1, "2024-05-20 10:00")])
    config = FeatureConfig()
    assert resolve_data_end(crm, config) == T("2024-05-20 10:00")
    dates = as_of_dates(crm, config)
    assert list(dates) == [T("2024-02-01"), T("2024-03-01"), T("2024-04-01"), T("2024-05-01")]
    weekly = as_of_dates(crm, FeatureConfig(cadence="W-MON", data_end=T("2024-02-06")))
    assert list(weekly) == [T("2024-01-22"), T("2024-01-29"), T("2024-02-05")]
    with pytest.raises(ValueError, match="cadence 'not-a-freq' is not a pandas frequency"):
        FeatureConfig(cadence="not-a-freq")  # refused where the config is read
    for hourly in ("1h", "12h", "30min"):  # '1h' built 7,065,211 snapshots of 1,000 leads without a word
        with pytest.raises(ValueError, match=f"cadence '{hourly}' is shorter than a day"):
            FeatureConfig(cadence=hourly)
    assert FeatureConfig(cadence="D").cadence == "D" and FeatureConfig(cadence="24h").cadence == "24h"


def test_eligibility_edges_created_and_converted_at_as_of() -> None:
    crm = crm_of(
        {
            1: "2024-02-01",  # created exactly at as_of: not yet a lead
            2: "2024-01-31 23:59:59",  # created just before: in
            3: "2024-01-10",  # converted exactly at as_of: out (converted_at <= as_of)
            4: "2024-01-10",  # converted just after as_of: in, positive
            5: "2024-01-10",  # converted before as_of: out
        },
        [(3, "2024-02-01"), (4, "2024-02-01 00:00:01"), (5, "2024-01-20")],
    )
    rows = rows_at(crm, FeatureConfig(data_end=DATA_END))
    assert sorted(rows.index) == [2, 4]
    assert rows.loc[4, LABEL] == 1.0
    assert rows.loc[2, LABEL] == 0.0


def test_label_horizon_edges() -> None:
    h = 90
    crm = crm_of(
        {1: "2024-01-01", 2: "2024-01-01", 3: "2024-01-01"},
        [
            (1, str(AS_OF_1 + h * DAY)),  # exactly at as_of + H: positive
            (2, str(AS_OF_1 + h * DAY + pd.Timedelta(1, "ns"))),  # just after: negative
        ],
    )
    rows = rows_at(crm, FeatureConfig(horizon_days=h, data_end=DATA_END))
    assert rows.loc[1, LABEL] == 1.0
    assert rows.loc[1, DAYS_TO_CONVERT] == h
    assert rows.loc[2, LABEL] == 0.0
    assert rows.loc[2, EVENT_OBSERVED] == 1
    assert rows.loc[2, DAYS_TO_CONVERT] == pytest.approx(h, abs=1e-9)
    assert rows.loc[3, LABEL] == 0.0
    assert math.isnan(rows.loc[3, DAYS_TO_CONVERT])
    assert rows.loc[3, DAYS_OBSERVED] == (DATA_END - AS_OF_1) / DAY
    assert not rows[CENSORED].any()


def test_censoring_at_data_end() -> None:
    h = 30
    crm = crm_of({1: "2024-01-01", 2: "2024-01-01"}, [(1, "2024-02-10")])
    exact_end = AS_OF_1 + h * DAY
    # as_of + H == data_end: fully observed, not censored.
    rows = rows_at(crm, FeatureConfig(horizon_days=h, data_end=exact_end))
    assert not rows[CENSORED].any()
    assert rows.loc[1, LABEL] == 1.0 and rows.loc[2, LABEL] == 0.0
    # data_end one second earlier: censored, label NaN, survival columns kept.
    early_end = exact_end - pd.Timedelta(seconds=1)
    rows = rows_at(crm, FeatureConfig(horizon_days=h, data_end=early_end))
    assert rows[CENSORED].all()
    assert rows[LABEL].isna().all()
    assert rows.loc[1, EVENT_OBSERVED] == 1 and rows.loc[1, DAYS_OBSERVED] == 9.0
    assert rows.loc[2, EVENT_OBSERVED] == 0
    assert rows.loc[2, DAYS_OBSERVED] == (early_end - AS_OF_1) / DAY
    # A conversion after data_end is not seen at all.
    late_end = T("2024-02-05")
    rows = rows_at(crm, FeatureConfig(horizon_days=h, data_end=late_end))
    assert rows.loc[1, EVENT_OBSERVED] == 0 and math.isnan(rows.loc[1, DAYS_TO_CONVERT])


def test_recycled_lead_reenters_after_recycling() -> None:
    crm = crm_of(
        {1: "2024-01-10", 2: "2024-01-10"},
        [(1, "2024-01-20"), (1, "2024-04-15"), (2, "2024-01-20")],
        [(1, "2024-02-01", "recycled"), (2, "2024-01-15", "recycled"), (1, "2024-01-25", "email_open")],
    )
    frame = build_training_set(crm, FeatureConfig(data_end=DATA_END)).frame
    lead1 = frame[frame["lead_id"] == 1].set_index(AS_OF)
    # Converted 01-20, recycled exactly at 02-01: still converted at as_of 02-01 (recycle not
    # strictly before), back in from 03-01 until the second conversion on 04-15.
    assert list(lead1.index) == [T("2024-03-01"), T("2024-04-01")]
    assert lead1.loc[T("2024-03-01"), LABEL] == 1.0
    assert lead1.loc[T("2024-03-01"), DAYS_TO_CONVERT] == 45.0
    assert lead1.loc[T("2024-03-01"), "times_recycled"] == 1.0
    assert lead1.loc[T("2024-03-01"), "days_since_last_recycle"] == 29.0
    # Lead 2 was recycled BEFORE its conversion: the conversion closes it for good.
    assert (frame["lead_id"] == 2).sum() == 0


def test_never_converted_recycled_lead_stays_eligible() -> None:
    crm = crm_of({1: "2024-01-10"}, [], [(1, "2024-02-10", "recycled")])
    frame = build_training_set(crm, FeatureConfig(data_end=T("2024-06-30"))).frame
    assert list(frame[AS_OF]) == [T(f"2024-0{m}-01") for m in range(2, 7)]
    assert list(frame["times_recycled"]) == [0.0, 1.0, 1.0, 1.0, 1.0]


def test_outcomes_for_unknown_leads_are_an_error() -> None:
    crm = crm_of({1: "2024-01-10"}, [(7, "2024-02-10")])
    with pytest.raises(ValueError, match=r"outcomes: lead_id not in leads \(ids \[7\]"):
        build_training_set(crm, FeatureConfig(data_end=DATA_END))


def test_explicit_as_of_dates_after_the_data_end_are_refused_naming_them() -> None:
    """``features.as_of_dates: ['2030-01-01']`` on data ending in 2024 built 2030 snapshots (every lead censored,
    its recency counted across years with no data) without a word."""
    crm = crm_of({1: "2024-01-15", 2: "2024-03-02"}, [(1, "2024-05-20 10:00")])
    config = FeatureConfig(as_of_dates=("2024-04-01", "2030-01-01"))
    with pytest.raises(ValueError, match=r"features\.as_of_dates: \['2030-01-01'\] after the data end 2024-05-20 10:00"):
        as_of_dates(crm, config)
    assert list(as_of_dates(crm, FeatureConfig(as_of_dates=("2024-04-01", "2024-05-20 10:00")))) == [
        T("2024-04-01"), T("2024-05-20 10:00")]  # up to the data end itself
