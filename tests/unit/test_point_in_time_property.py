"""Property: a snapshot's features never see rows at or after its as_of, and do see rows before."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pit_reference import EVENT_TYPES, ORIGIN, random_crm

from features.build import build_training_set, scoring_matrix
from features.schema import CRMData
from features.snapshots import AS_OF
from features.spec import FeatureConfig, FeatureSpec

BASE = random_crm(11, n_leads=10, n_events=250, span_days=150)
SPEC = FeatureSpec(FeatureConfig(vocabulary="schema")).fit(BASE)
DATA_END = ORIGIN + pd.Timedelta(days=400)
CONFIG = FeatureConfig(cadence="MS", data_end=DATA_END)
LEAD_IDS = BASE.leads["lead_id"].to_numpy()
SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])

as_of_strategy = st.integers(min_value=1, max_value=200 * 86_400).map(lambda s: ORIGIN + pd.Timedelta(seconds=s))
late_offsets = st.integers(min_value=0, max_value=300 * 86_400 * 10**9)  # ns at or after as_of


def appended(crm: CRMData, as_of: pd.Timestamp, events: list, outcomes: list) -> CRMData:
    new_events = pd.DataFrame(
        {
            "lead_id": [LEAD_IDS[i] for i, _, _ in events],
            "occurred_at": [as_of + pd.Timedelta(o, "ns") for _, o, _ in events],
            "event_type": [t for _, _, t in events],
        }
    )
    new_outcomes = pd.DataFrame(
        {
            "lead_id": [LEAD_IDS[i] for i, _ in outcomes],
            "converted_at": [as_of + pd.Timedelta(o, "ns") for _, o in outcomes],
        }
    )
    return CRMData(
        crm.leads,
        pd.concat([crm.events, new_events.astype(crm.events.dtypes.to_dict())], ignore_index=True),
        pd.concat([crm.outcomes, new_outcomes.astype(crm.outcomes.dtypes.to_dict())], ignore_index=True),
        crm.categorical_attributes,
        crm.numeric_attributes,
    )


@SETTINGS
@given(
    as_of=as_of_strategy,
    events=st.lists(
        st.tuples(st.integers(0, len(LEAD_IDS) - 1), late_offsets, st.sampled_from([*EVENT_TYPES, "tradeshow"])),
        max_size=15,
    ),
    outcomes=st.lists(st.tuples(st.integers(0, len(LEAD_IDS) - 1), late_offsets), max_size=4),
)
def test_rows_at_or_after_as_of_never_change_features(as_of: pd.Timestamp, events: list, outcomes: list) -> None:
    changed = appended(BASE, as_of, events, outcomes)
    ids_before, before = scoring_matrix(BASE, SPEC, as_of, eligible_only=False)
    ids_after, after = scoring_matrix(changed, SPEC, as_of, eligible_only=False)
    np.testing.assert_array_equal(ids_before, ids_after)
    np.testing.assert_array_equal(before, after)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=st.lists(
        st.tuples(st.integers(0, len(LEAD_IDS) - 1), late_offsets, st.sampled_from(EVENT_TYPES)), min_size=1, max_size=10
    ),
    outcomes=st.lists(st.tuples(st.integers(0, len(LEAD_IDS) - 1), late_offsets), max_size=3),
)
def test_training_snapshots_up_to_as_of_unchanged_by_later_rows(events: list, outcomes: list) -> None:
    cut = pd.Timestamp("2024-04-01")
    base = build_training_set(BASE, CONFIG, spec=SPEC).frame
    after = build_training_set(appended(BASE, cut, events, outcomes), CONFIG, spec=SPEC).frame
    keys = ["lead_id", AS_OF]
    old = base[base[AS_OF] <= cut].set_index(keys)
    new = after[after[AS_OF] <= cut].set_index(keys)
    common = old.index.intersection(new.index)
    assert len(common) >= len(old) - len(outcomes)
    pd.testing.assert_frame_equal(new.loc[common, SPEC.columns_], old.loc[common, SPEC.columns_], check_exact=True)


@SETTINGS
@given(as_of=as_of_strategy, pick=st.integers(min_value=0, max_value=10**6))
def test_deleting_an_event_inside_a_window_changes_its_count(as_of: pd.Timestamp, pick: int) -> None:
    events = BASE.events
    in_window = events[(events["occurred_at"] < as_of) & (events["occurred_at"] >= as_of - pd.Timedelta(days=30))]
    in_window = in_window[in_window["event_type"] != "recycled"]
    if in_window.empty:
        return
    victim = in_window.index[pick % len(in_window)]
    lead_id, event_type = events.loc[victim, "lead_id"], events.loc[victim, "event_type"]
    smaller = CRMData(BASE.leads, events.drop(index=victim), BASE.outcomes, ["industry"], ["employees"])
    ids, before = scoring_matrix(BASE, SPEC, as_of, eligible_only=False)
    _, after = scoring_matrix(smaller, SPEC, as_of, eligible_only=False)
    row = int(np.flatnonzero(ids == lead_id)[0])
    col = SPEC.columns_.index(f"{event_type}_count_30d")
    assert after[row, col] == before[row, col] - 1
    others = np.ones(len(ids), dtype=bool)
    others[row] = False
    np.testing.assert_array_equal(after[others], before[others])
