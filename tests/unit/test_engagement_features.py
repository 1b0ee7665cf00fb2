"""Event-derived features: kernels vs the definitions, window edges, and path parity."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from pit_reference import ORIGIN, payload_of, random_crm, reference_features

from features.build import (
    build_scoring_frame,
    build_training_set,
    features_from_payload,
    features_from_payloads,
    payload_frame,
)
from features.schema import CRMData
from features.snapshots import AS_OF
from features.spec import FeatureConfig, FeatureSpec

DAY = pd.Timedelta(days=1)


def one_lead(events: list[tuple[str, str]], created: str = "2024-01-01") -> CRMData:
    leads = pd.DataFrame({"lead_id": [1], "created_at": [pd.Timestamp(created)]})
    frame = pd.DataFrame(
        {
            "lead_id": [1] * len(events),
            "occurred_at": pd.to_datetime([t for t, _ in events], format="ISO8601"),
            "event_type": [k for _, k in events],
        }
    )
    outcomes = pd.DataFrame({"lead_id": [1], "converted_at": [pd.NaT]})
    return CRMData(leads, frame, outcomes)


def features_at(crm: CRMData, spec: FeatureSpec, as_of: str) -> pd.Series:
    frame = build_scoring_frame(crm, spec, as_of=pd.Timestamp(as_of), eligible_only=False)
    return frame.iloc[0]


@pytest.mark.parametrize(
    ("seed", "options"),
    [
        (0, {}),
        (1, {}),
        (2, {}),
        (3, {"type_half_lives_days": (3.0, 45.5), "burst_gap_days": 5.0}),
        (4, {"type_half_lives_days": (), "burst_gap_days": 30.0, "event_weights": {"page_view": 0.0}}),
    ],
)
def test_kernel_matches_reference_definitions(seed: int, options: dict) -> None:
    crm = random_crm(seed)
    training = build_training_set(crm, FeatureConfig(cadence="14D", **options))
    frame = training.frame
    assert len(frame) > 20
    rows = frame.sample(n=20, random_state=seed)
    for _, row in rows.iterrows():
        expected = reference_features(crm, training.spec, row["lead_id"], row[AS_OF])
        for name, value in expected.items():
            got = row[name]
            if name == "engagement_intensity" or "_decayed_" in name:
                assert got == pytest.approx(value, rel=1e-9, abs=1e-12), name
            elif math.isnan(value):
                assert math.isnan(got), (name, got)
            else:
                assert got == value, (name, row["lead_id"], row[AS_OF], got, value)


def test_window_edges_are_half_open() -> None:
    crm = one_lead(
        [
            ("2024-03-01", "page_view"),  # exactly at as_of: excluded
            ("2024-02-23", "page_view"),  # exactly as_of - 7 days: inside the 7-day window
            ("2024-02-22 23:59:59", "page_view"),  # just outside the 7-day window
            ("2024-01-31", "page_view"),  # exactly as_of - 30 days: inside the 30-day window
        ]
    )
    spec = FeatureSpec().fit(crm)
    row = features_at(crm, spec, "2024-03-01")
    assert row["page_view_count_7d"] == 1
    assert row["page_view_count_30d"] == 3
    assert row["days_since_last_page_view"] == 7.0
    assert row["lead_age_days"] == 60.0


def test_trend_active_days_and_flags() -> None:
    crm = one_lead(
        [
            ("2024-02-28 10:00", "email_open"),
            ("2024-02-28 18:00", "page_view"),  # same day: one active day
            ("2024-02-10", "email_open"),  # in the 28 days before the last 7
            ("2024-02-11", "email_open"),
            ("2024-02-12", "unsubscribe"),  # not activity (weight 0)
            ("2024-03-02", "email_bounce"),  # after as_of: invisible
        ]
    )
    spec = FeatureSpec().fit(crm)
    row = features_at(crm, spec, "2024-03-01")
    assert row["engagement_trend_7d_vs_28d"] == (2 + 1) / (2 * 7 / 28 + 1)
    assert row["active_days_90d"] == 3
    assert row["ever_unsubscribed"] == 1.0
    assert row["ever_email_bounced"] == 0.0
    expected_intensity = sum(
        2 ** (-(pd.Timestamp("2024-03-01") - pd.Timestamp(t)).total_seconds() / 86_400 / 14)
        for t in ["2024-02-28 10:00", "2024-02-28 18:00", "2024-02-10", "2024-02-11"]
    )
    assert row["engagement_intensity"] == pytest.approx(expected_intensity, rel=1e-12)


def test_decayed_counts_per_type_and_bursts() -> None:
    crm = one_lead(
        [
            ("2024-01-05", "page_view"),  # first burst
            ("2024-01-10", "pricing_page_view"),
            ("2024-02-10", "email_open"),  # 31 quiet days: a new burst starts here
            ("2024-02-20", "pricing_page_view"),  # 10 days later: same burst
            ("2024-02-21", "unsubscribe"),  # not activity: neither counted nor a burst start
            ("2024-02-24", "pricing_page_view"),
        ]
    )
    spec = FeatureSpec(FeatureConfig(type_half_lives_days=(7, 30), burst_gap_days=14)).fit(crm)
    assert "unsubscribe_decayed_7d" not in spec.columns_
    row = features_at(crm, spec, "2024-03-01")
    assert row["pricing_page_view_decayed_7d"] == pytest.approx(2 ** (-10 / 7) + 2 ** (-6 / 7) + 2 ** (-51 / 7))
    assert row["pricing_page_view_decayed_30d"] == pytest.approx(2 ** (-10 / 30) + 2 ** (-6 / 30) + 2 ** (-51 / 30))
    assert row["page_view_decayed_30d"] == pytest.approx(2 ** (-56 / 30))
    assert row["days_since_burst_start"] == 20.0
    assert row["activity_since_burst_start"] == 3.0
    # Before the second burst began, the first one is the latest (and the gap is not reached yet).
    early = features_at(crm, spec, "2024-01-20")
    assert early["days_since_burst_start"] == 15.0
    assert early["activity_since_burst_start"] == 2.0
    assert early["email_open_decayed_7d"] == 0.0
    # A gap of 40 days never splits this history: one burst since the first page view.
    wide = FeatureSpec(FeatureConfig(burst_gap_days=40)).fit(crm)
    assert features_at(crm, wide, "2024-03-01")["days_since_burst_start"] == 56.0
    none_yet = features_at(crm, spec, "2024-01-05")  # the first event is exactly at as_of
    assert math.isnan(none_yet["days_since_burst_start"])
    assert none_yet["activity_since_burst_start"] == 0.0


def test_active_days_count_a_day_straddling_the_window_start() -> None:
    # as_of at noon: the longest window starts at noon of a day that also has an earlier event.
    # 2024-03-01 12:00 - 90 days = 2023-12-02 12:00.
    crm = one_lead([("2023-12-02 08:00", "email_open"), ("2023-12-02 15:00", "email_open")], "2023-11-01")
    spec = FeatureSpec().fit(crm)
    row = features_at(crm, spec, "2024-03-01 12:00")
    assert row["email_open_count_90d"] == 1
    assert row["active_days_90d"] == 1


def test_never_seen_event_types_give_nan_days_since() -> None:
    crm = one_lead([("2024-02-01", "email_open"), ("2024-02-02", "webinar")])
    spec = FeatureSpec().fit(crm)
    row = features_at(crm, spec, "2024-02-02")  # the webinar is exactly at as_of
    assert row["days_since_last_email_open"] == 1.0
    assert math.isnan(row["days_since_last_webinar"])
    assert row["webinar_count_90d"] == 0
    assert math.isnan(row["days_since_last_recycle"])


def test_block_size_does_not_change_results() -> None:
    crm = random_crm(5, n_leads=30, n_events=800)
    calls: list[tuple[int, int]] = []
    small = build_training_set(crm, FeatureConfig(block_leads=4), progress=lambda done, total: calls.append((done, total)))
    large = build_training_set(crm, FeatureConfig(block_leads=1000))
    assert calls == [(i, 8) for i in range(1, 9)]  # 30 leads in blocks of 4
    pd.testing.assert_frame_equal(small.frame, large.frame, check_exact=True)


@pytest.mark.parametrize("seed", [0, 3])
def test_payload_path_equals_batch_exactly(seed: int) -> None:
    crm = random_crm(seed)
    training = build_training_set(crm, FeatureConfig(cadence="21D"))
    spec = training.spec
    rows = training.frame.sample(n=12, random_state=seed)
    for _, row in rows.iterrows():
        payload = payload_of(crm, row["lead_id"])
        online = features_from_payload(payload, spec, as_of=row[AS_OF].isoformat())
        batch = spec.to_matrix(pd.DataFrame([row]))
        np.testing.assert_array_equal(online, batch)
    # Many payloads with their own as_of in one call give the same rows.
    payloads = [payload_of(crm, lead_id) for lead_id in rows["lead_id"]]
    many = features_from_payloads(payloads, spec, as_of=list(rows[AS_OF]))
    np.testing.assert_array_equal(many, spec.to_matrix(rows))
    frame = payload_frame(payloads, spec, as_of=list(rows[AS_OF]))
    pd.testing.assert_frame_equal(frame, rows[spec.columns_].reset_index(drop=True), check_exact=True)


def test_scoring_frame_equals_training_rows_at_same_as_of() -> None:
    crm = random_crm(7)
    training = build_training_set(crm, FeatureConfig(cadence="MS"))
    as_of = training.as_of_dates[2]
    expected = training.frame[training.frame[AS_OF] == as_of].reset_index(drop=True)
    scored = build_scoring_frame(crm, training.spec, as_of=as_of)
    scored = scored.sort_values("lead_id").reset_index(drop=True)
    assert list(scored["lead_id"]) == list(expected["lead_id"])
    pd.testing.assert_frame_equal(scored[training.spec.columns_], expected[training.spec.columns_], check_exact=True)


def test_payload_timestamps_with_offsets_are_converted_to_utc() -> None:
    crm = one_lead([("2024-02-28 10:00", "email_open")])
    spec = FeatureSpec().fit(crm)
    naive = {"lead_id": 1, "created_at": "2024-01-01T00:00:00", "attributes": {},
             "events": [{"occurred_at": "2024-02-28T10:00:00", "event_type": "email_open"}]}
    aware = {**naive, "created_at": "2024-01-01T01:00:00+01:00",
             "events": [{"occurred_at": "2024-02-28T10:00:00Z", "event_type": "email_open"}]}
    as_of = pd.Timestamp("2024-03-01")
    np.testing.assert_array_equal(features_from_payload(naive, spec, as_of), features_from_payload(aware, spec, as_of))


def test_unknown_event_types_are_ignored_and_reported() -> None:
    crm = one_lead([("2024-02-01", "email_open")])
    spec = FeatureSpec().fit(crm)
    base = payload_of(crm, 1)
    extra = {**base, "events": [*base["events"], {"occurred_at": "2024-02-02", "event_type": "tradeshow"}]}
    as_of = pd.Timestamp("2024-03-01")
    np.testing.assert_array_equal(features_from_payload(base, spec, as_of), features_from_payload(extra, spec, as_of))
    assert spec.unseen_in_payload(extra) == {"event_type": ["tradeshow"]}
    scoring_crm = one_lead([("2024-02-01", "email_open"), ("2024-02-02", "tradeshow")])
    frame = build_scoring_frame(scoring_crm, spec, as_of=as_of, eligible_only=False)
    assert frame.attrs["unseen"] == {"event_type": ["tradeshow"]}


def test_events_of_unknown_leads_are_an_error() -> None:
    crm = one_lead([("2024-02-01", "email_open")])
    crm.events.loc[len(crm.events)] = [99, pd.Timestamp("2024-02-01"), "email_open"]
    spec = FeatureSpec().fit(crm)
    with pytest.raises(ValueError, match=r"events: lead_id not in leads \(ids \[99\]"):
        build_scoring_frame(crm, spec, as_of=ORIGIN + 60 * DAY)


@pytest.mark.parametrize("presorted", ["no", "lead and time", "lead only"])
def test_event_order_is_the_stable_lead_time_code_sort(presorted: str) -> None:
    """Events grouped by lead (what SQL reads by lead-id range give), in time order or not, get only their
    out-of-order leads sorted; any order gets the full stable sort."""
    from features.build import event_order

    rng = np.random.default_rng(11)
    for _ in range(300):
        n = int(rng.integers(0, 60))
        lead, time, code = rng.integers(0, 5, n), rng.integers(0, 4, n), rng.integers(0, 6, n)
        if presorted != "no":
            # "lead only": grouped by lead, events of a lead in any time order
            by = np.lexsort((time, lead)) if presorted == "lead and time" else np.argsort(lead, kind="stable")
            lead, time, code = lead[by], time[by], code[by]
        order = event_order(lead, time, code)
        got = np.arange(n) if order is None else order
        np.testing.assert_array_equal(got, np.lexsort((code, time, lead)))


def test_count_before_equals_counting_rows() -> None:
    """Per query: index of the first row of its lead at/after (after, inclusive) its instant, by brute force."""
    from features.engagement import count_before

    rng = np.random.default_rng(12)
    for _ in range(200):
        n = int(rng.integers(0, 80))
        lead = np.sort(rng.integers(0, 6, n))
        time = rng.integers(-4, 4, n) * 10**9
        order = np.lexsort((time, lead))
        lead, time = lead[order], time[order]
        query_lead, query_time = rng.integers(0, 8, 30), rng.integers(-5, 5, 30) * 10**9
        for inclusive in (False, True):
            expected = [
                int(np.searchsorted(lead, q, side="left"))
                + int(((lead == q) & ((time <= t) if inclusive else (time < t))).sum())
                for q, t in zip(query_lead, query_time, strict=True)
            ]
            np.testing.assert_array_equal(count_before(lead, time, query_lead, query_time, inclusive), expected)


def test_a_lead_created_a_century_before_the_events_builds_without_overflow_warnings() -> None:
    """A placeholder ``created_at`` of 1900 makes as-of dates a century before every event: the decayed
    features of a snapshot with no event before it are 0, computed without ``exp2`` of a century of
    half-lives (its overflow warnings were printed by `leadscore train`)."""
    import warnings

    leads = pd.DataFrame({"lead_id": [1, 2], "created_at": pd.to_datetime(["1900-01-01", "2024-01-01"])})
    events = pd.DataFrame({"lead_id": [2, 2], "occurred_at": pd.to_datetime(["2024-01-03", "2024-02-10"]),
                           "event_type": ["page_view", "email_open"]})
    outcomes = pd.DataFrame({"lead_id": [1, 2], "converted_at": [pd.NaT, pd.NaT]})
    crm = CRMData(leads, events, outcomes)
    config = FeatureConfig(as_of_dates=("1900-06-01", "2024-03-01"), horizon_days=30, data_end="2024-03-01")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        frame = build_training_set(crm, config).frame
    early = frame[frame[AS_OF] == pd.Timestamp("1900-06-01")]
    assert len(early) == 1 and early["engagement_intensity"].eq(0).all()
    decayed = [c for c in frame.columns if "_decayed_" in c]
    assert decayed and early[decayed].eq(0).all(axis=None)
    late = frame[(frame[AS_OF] == pd.Timestamp("2024-03-01")) & (frame["lead_id"] == 2)]
    assert late["engagement_intensity"].gt(0).all()
