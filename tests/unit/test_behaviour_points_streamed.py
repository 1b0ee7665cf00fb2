"""Behaviour points without a copy of the events table: the same points, bit for bit, as one pandas join
of every snapshot with its lead's events (summed in time order), for any join chunk size and any row order of
the events table, with far less memory."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import training.baselines as baselines
from tests.allocation import allocation_peak
from training.baselines import PointsRules, behaviour_points, event_points

RULES = PointsRules(name="b", behaviour={"email_open": 1.0, "demo_request": 20.0, "unsubscribe": -7.5})


def joined_points(snapshots: pd.DataFrame, events: pd.DataFrame, rules: PointsRules) -> np.ndarray:
    """The reference: every snapshot joined with all its lead's scored events (one pandas merge)."""
    points = events["event_type"].astype(str).map(rules.behaviour)
    scored = points.notna().to_numpy()
    ev = events.loc[scored, ["lead_id", "occurred_at"]].assign(_points=points.to_numpy(dtype=float)[scored])
    ev = ev.sort_values(["lead_id", "occurred_at", "_points"], kind="stable")  # each lead's events in time order
    snap = pd.DataFrame({"lead_id": snapshots["lead_id"].to_numpy(), "as_of": snapshots["as_of"].to_numpy(),
                         "_row": np.arange(len(snapshots))})
    joined = snap.merge(ev, on="lead_id", how="inner")
    joined = joined[joined["occurred_at"] < joined["as_of"]]
    value = joined["_points"].to_numpy(dtype=float)
    if rules.half_life_days is not None:
        age_days = (joined["as_of"] - joined["occurred_at"]).dt.total_seconds().to_numpy() / 86400.0
        value = value * np.exp2(-age_days / rules.half_life_days)
    return np.bincount(joined["_row"].to_numpy(), weights=value, minlength=len(snapshots))


def crm(n_leads: int, events_per_lead: int, seed: int, categorical: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Snapshots (shuffled, some leads without events) and events in no particular order, fractional seconds."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2025-01-01")
    n_events = n_leads * events_per_lead
    events = pd.DataFrame({
        "lead_id": rng.integers(0, n_leads - 3, n_events),  # the last 3 leads have no event
        "occurred_at": start + pd.to_timedelta(rng.uniform(0, 200, n_events), unit="D"),
        "event_type": rng.choice(["email_open", "demo_request", "page_view", "unsubscribe"], n_events),
    })
    if categorical:
        events["event_type"] = events["event_type"].astype("category")
    lead = np.repeat(np.arange(n_leads), 4)
    snapshots = pd.DataFrame({"lead_id": lead, "as_of": start + pd.to_timedelta(
        np.tile([0, 45, 90, 200], n_leads), unit="D")}).sample(frac=1, random_state=seed).reset_index(drop=True)
    return snapshots, events


@pytest.mark.parametrize("categorical", [True, False])
@pytest.mark.parametrize("half_life", [30.0, None])
def test_points_are_those_of_one_join_bit_for_bit(categorical: bool, half_life: float | None) -> None:
    snapshots, events = crm(300, 40, seed=3, categorical=categorical)
    rules = RULES.model_copy(update={"half_life_days": half_life})
    expected = joined_points(snapshots, events, rules)
    assert (expected != 0).sum() > len(snapshots) // 2
    assert behaviour_points(snapshots, events, rules).tobytes() == expected.tobytes()


def test_chunked_join_is_the_unchunked_one_bit_for_bit(monkeypatch) -> None:
    snapshots, events = crm(200, 30, seed=5)
    whole = behaviour_points(snapshots, events, RULES)
    for pairs in (1, 7, 500):
        monkeypatch.setattr(baselines, "BEHAVIOUR_JOIN_PAIRS", pairs)
        assert behaviour_points(snapshots, events, RULES).tobytes() == whole.tobytes()


def test_utc_timestamps_and_text_lead_ids_score_alike() -> None:
    snapshots, events = crm(100, 20, seed=8)
    expected = joined_points(snapshots, events, RULES)
    utc_snapshots = snapshots.assign(as_of=snapshots["as_of"].dt.tz_localize("UTC"))
    utc_events = events.assign(occurred_at=events["occurred_at"].dt.tz_localize("UTC"))
    assert behaviour_points(utc_snapshots, utc_events, RULES).tobytes() == expected.tobytes()
    text_snapshots = snapshots.assign(lead_id=snapshots["lead_id"].map("L{:05d}".format))
    text_events = events.assign(lead_id=events["lead_id"].map("L{:05d}".format))
    assert behaviour_points(text_snapshots, text_events, RULES).tobytes() == expected.tobytes()


def test_event_points_look_up_each_type_as_text() -> None:
    types = pd.Series(["demo_request", "page_view", None, "email_open"], dtype="category")
    points = event_points(types, {"demo_request": 20.0, "email_open": 1.0, "nan": 3.0})
    np.testing.assert_array_equal(points, [20.0, np.nan, 3.0, 1.0])  # a missing type reads as "nan", as astype(str)
    objects = pd.Series([7, "email_open", "x"], dtype=object)
    np.testing.assert_array_equal(event_points(objects, {"7": 2.0, "email_open": 1.0}), [2.0, 1.0, np.nan])


def test_scoring_holds_no_copy_of_the_events_table(monkeypatch) -> None:
    """200k events, 8 bytes a value: the join of the whole table (a copy of its scored rows, sorted, then the
    pairs) took about 30 MB at its peak; the streamed join holds a few 8-byte arrays of the events."""
    snapshots, events = crm(4000, 50, seed=2)
    monkeypatch.setattr(baselines, "BEHAVIOUR_JOIN_PAIRS", 20_000)
    _, peak = allocation_peak(behaviour_points, snapshots, events, RULES)
    assert peak < 6 * 8 * len(events)


@pytest.mark.parametrize("categorical", [True, False])
def test_unknown_types_are_found_without_a_text_copy_per_event(categorical: bool) -> None:
    """The check for typos among the rules' event types read every event as a new text (over 100 bytes an
    event: 1.4 GB for 10.5M events, the training run's peak); the distinct types are read once."""
    from training.baselines import unknown_behaviour_types

    types = pd.Series(np.random.default_rng(0).choice(["email_open", "page_view", "trade_show"], 400_000))
    if categorical:
        types = types.astype(pd.CategoricalDtype(["email_open", "page_view", "trade_show", "unused_type"]))
    events = pd.DataFrame({"event_type": types})
    rules = PointsRules(behaviour={"trade_show": 1, "unused_type": 2, "demo_requets": 3, "webinar": 4})
    unknown, peak = allocation_peak(unknown_behaviour_types, rules, events)
    assert unknown == ["demo_requets", "unused_type"]  # a category no event has is not present
    if categorical:  # the contract's event types are categories (a text column was already text: 37 bytes)
        assert peak < 30 * len(events)
    missing = pd.DataFrame({"event_type": pd.Series(["trade_show", None], dtype="category" if categorical else object)})
    name = "nan" if categorical else "None"  # a missing type reads as astype(str) reads it
    assert unknown_behaviour_types(PointsRules(behaviour={name: 1, "x": 2}), missing) == ["x"]


@pytest.mark.parametrize("half_life", [30.0, None])
def test_points_do_not_depend_on_the_order_of_the_events_table(half_life: float | None) -> None:
    """The same events in another row order (another export, a shuffled table) give the same points bit for
    bit: each lead's points are summed in (time, points) order, not in the table's order."""
    snapshots, events = crm(300, 40, seed=5)
    rules = RULES.model_copy(update={"half_life_days": half_life})
    in_time_order = events.sort_values(["lead_id", "occurred_at"], kind="stable").reset_index(drop=True)
    shuffled = events.sample(frac=1, random_state=11).reset_index(drop=True)
    reversed_rows = in_time_order.iloc[::-1].reset_index(drop=True)
    expected = behaviour_points(snapshots, in_time_order, rules)
    assert (expected != 0).sum() > len(snapshots) // 2
    for table in (events, shuffled, reversed_rows):
        assert behaviour_points(snapshots, table, rules).tobytes() == expected.tobytes()
