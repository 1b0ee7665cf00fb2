"""The hand-tuned points baseline: packaged default rules, project override, skipping what the data lacks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.schema import FlatData
from leadscore.project import ProjectConfigError, parse_project
from training.baselines import (
    PointsRules,
    default_points_rules,
    load_points_rules,
    points_score,
    resolve_points_rules,
)
from training.config import BoosterConfig, TrainingConfig
from training.sales_readiness import train_and_evaluate_flat

FLAT_DATA = {"mode": "flat", "source": {"kind": "csv", "path": "leads.csv"}, "id_column": "id",
             "label_column": "won"}


def test_packaged_default_rules_load_and_skip_what_the_data_lacks() -> None:
    rules = default_points_rules()
    assert rules.name == "default_b2b_points" and rules.missing_columns == "skip"
    assert rules.behaviour["demo_request"] > 0 > rules.behaviour["unsubscribe"]
    assert resolve_points_rules(None) == rules

    kept, dropped = rules.applicable_to(["seniority", "industry"], has_events=False)
    assert {r.column for r in kept.fit} == {"seniority", "industry"} and kept.behaviour == {}
    assert any("employees" in d for d in dropped) and any("no events table" in d for d in dropped)
    assert rules.applicable_to([], has_events=False)[0].is_empty

    frame = pd.DataFrame({"seniority": ["VP", "IC", None], "industry": ["software", "retail", "software"]})
    np.testing.assert_array_equal(points_score(frame, kept), [20.0, -5.0, 5.0])


def test_strict_rules_name_the_missing_column() -> None:
    rules = PointsRules(name="strict", fit=[{"column": "employees", "gt": 10, "points": 5}])
    assert rules.applicable_to(["other"], has_events=True) == (rules, [])
    with pytest.raises(KeyError, match="employees"):
        points_score(pd.DataFrame({"other": [1]}), rules)


def test_rules_files_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_points_rules(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nfit:\n  - {column: a, points: 3}\n")
    with pytest.raises(ValueError, match=r"(?s)bad\.yaml.*fit\.0.*exactly one condition"):
        load_points_rules(bad)


def test_project_rules_path_resolves_against_the_project_folder(tmp_path: Path) -> None:
    project = parse_project({"data": FLAT_DATA, "training": {"points_rules": "rules/mine.yaml"}}, tmp_path)
    assert project.training.points_rules == tmp_path / "rules" / "mine.yaml"
    assert parse_project({"data": FLAT_DATA}, tmp_path).training.points_rules is None
    with pytest.raises(ProjectConfigError, match="points_rule"):
        parse_project({"data": FLAT_DATA, "training": {"points_rule": "x.yaml"}}, tmp_path)


def _flat(n: int = 600, seed: int = 0) -> FlatData:
    rng = np.random.default_rng(seed)
    source = rng.choice(["web", "referral", "event"], n)
    visits = rng.poisson(3, n).astype(float)
    logit = -1.0 + 1.2 * (source == "referral") + 0.4 * visits - 0.4 * 3
    frame = pd.DataFrame({"lead_id": np.arange(n), "label": (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int),
                          "source": source, "visits": visits})
    return FlatData(frame=frame, categorical_features=["source"], numeric_features=["visits"],
                    families={"source": "fit", "visits": "engagement"})


FAST = TrainingConfig(booster=BoosterConfig(max_rounds=40, learning_rate=0.2, early_stopping_rounds=10),
                      cv_folds=3, bootstrap_samples=0, make_plots=False)


def test_every_run_compares_with_points_rules_from_the_config(tmp_path: Path) -> None:
    flat = _flat()
    result = train_and_evaluate_flat(flat, FAST)  # packaged default: no rule fits these columns
    assert not any(name.startswith("points:") for name in result.comparison.index)
    assert any("no rule of 'default_b2b_points' applies" in note for note in result.notes)

    rules = tmp_path / "flat_rules.yaml"
    rules.write_text("name: flat_points\nmql_threshold: 10\nhalf_life_days: null\n"
                     "fit:\n  - {column: source, in: [referral], points: 10}\n"
                     "columns:\n  - {column: visits, per_unit: 2, cap: 10}\n")
    result = train_and_evaluate_flat(flat, FAST.model_copy(update={"points_rules": rules}))
    row = result.comparison.loc["points: flat_points"]
    assert 0.55 < row["roc_auc"] < 1.0 and 0 < row["mql_share"] < 1
    assert "baseline_points_flat_points_roc_auc" in result.metrics
    assert any("points baseline: rules 'flat_points'" in note for note in result.notes)


def test_behaviour_types_that_no_event_has_and_no_convention_knows_are_reported() -> None:
    from training.baselines import unknown_behaviour_types

    rules = PointsRules(behaviour={"demo_requets": 10, "webinar": 3, "trade_show": 5})
    events = pd.DataFrame({"event_type": ["trade_show", "email_open"]})
    assert unknown_behaviour_types(rules, events) == ["demo_requets"]
    assert unknown_behaviour_types(rules, None) == []


def test_rules_named_in_the_config_are_checked_before_any_fit(tmp_path: Path) -> None:
    """``fit_training_set`` without rules (the notebook's call) reads the config's file and checks it as
    the CLI does: a rule on a column the data lacks fails before training (it failed after the fit)."""
    from features.build import build_flat_training_set
    from training.workflow import fit_training_set

    flat = _flat()
    rules = tmp_path / "strict.yaml"
    rules.write_text("name: strict-rules\nmissing_columns: error\nfit: [{column: favourite_colour, in: [red], "
                     "points: 15}]\n", encoding="utf-8")
    config = FAST.model_copy(update={"points_rules": rules})
    with pytest.raises(ValueError, match=r"points rules 'strict-rules': column\(s\) \['favourite_colour'\] not in"):
        fit_training_set(build_flat_training_set(flat), flat, config)


def _snapshots_and_events(n_leads: int, snaps_per_lead: int, events_per_lead: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(4)
    start = pd.Timestamp("2025-01-01")
    lead = np.repeat(np.arange(n_leads), snaps_per_lead)
    snapshots = pd.DataFrame({"lead_id": lead, "as_of": start + pd.to_timedelta(
        np.tile(np.arange(snaps_per_lead) * 30 + 30, n_leads), unit="D")}).sample(frac=1, random_state=1)
    events = pd.DataFrame({"lead_id": np.repeat(np.arange(n_leads), events_per_lead),
                           "occurred_at": start + pd.to_timedelta(rng.uniform(0, 30 * snaps_per_lead + 30,
                                                                             n_leads * events_per_lead), unit="D"),
                           "event_type": rng.choice(["email_open", "demo_request", "page_view"],
                                                    n_leads * events_per_lead)})
    return snapshots.reset_index(drop=True), events


def test_behaviour_points_join_a_bounded_number_of_snapshot_event_pairs_at_once(monkeypatch) -> None:
    """Every snapshot meets every event of its lead: the join is cut into chunks (memory bounded), the
    points are those of one join."""
    import tracemalloc

    import training.baselines as baselines

    rules = PointsRules(name="b", mql_threshold=10, behaviour={"email_open": 1, "demo_request": 20})
    snapshots, events = _snapshots_and_events(2000, 6, 250)  # 3M (snapshot, event) pairs
    small = snapshots.iloc[:50].reset_index(drop=True)
    whole = baselines.behaviour_points(small, events, rules)
    monkeypatch.setattr(baselines, "BEHAVIOUR_JOIN_PAIRS", 1000)
    assert np.allclose(baselines.behaviour_points(small, events, rules), whole)
    events_small = events[events["lead_id"].isin(small["lead_id"])]
    age = (small["as_of"].to_numpy()[:, None] - events_small["occurred_at"].to_numpy()[None, :]) / np.timedelta64(1, "D")
    mine = small["lead_id"].to_numpy()[:, None] == events_small["lead_id"].to_numpy()[None, :]
    value = events_small["event_type"].map(rules.behaviour).fillna(0).to_numpy()[None, :]
    assert np.allclose(whole, np.where(mine & (age > 0), value * np.exp2(-age / 30), 0).sum(axis=1))

    monkeypatch.setattr(baselines, "BEHAVIOUR_JOIN_PAIRS", 50_000)
    tracemalloc.start()
    baselines.behaviour_points(snapshots, events, rules)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 60e6  # one join of the 3M pairs takes ~200 MB


def test_fit_rules_that_match_no_row_are_noted_with_why(tmp_path: Path) -> None:
    """A typo in a rule's value (`referal`) or a number comparison on a text column (`source gt 10`) made the
    rule score nothing, without a word: the baseline to beat was silently weaker than the team's rules."""
    rules = tmp_path / "typos.yaml"
    rules.write_text("name: typos\nfit:\n  - {column: source, in: [referal], points: 10}\n"
                     "  - {column: source, gt: 10, points: 5}\n  - {column: visits, ge: 1000, points: 5}\n"
                     "  - {column: source, eq: web, points: 1}\n", encoding="utf-8")
    result = train_and_evaluate_flat(_flat(), FAST.model_copy(update={"points_rules": rules}))
    notes = [n for n in result.notes if "match no evaluation row" in n]
    assert len(notes) == 1, result.notes
    assert "fit[0] source in ['referal'] (did you mean 'referral'?)" in notes[0]
    assert "fit[1] source gt 10 (source holds text; gt, ge, lt and le compare numbers)" in notes[0]
    assert "fit[2] visits ge 1000" in notes[0] and "fit[3]" not in notes[0]
