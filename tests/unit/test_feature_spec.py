"""FeatureSpec: JSON round trip, unseen categories, stable column order, families, flat data."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from pit_reference import payload_of, random_crm

from features.build import (
    build_flat_training_set,
    build_scoring_frame,
    build_training_set,
    features_from_payload,
    flat_feature_frame,
)
from features.schema import ENGAGEMENT, FIT, LIFECYCLE, CRMData, FlatData
from features.spec import FeatureConfig, FeatureSpec, FeatureSpecError


def test_json_round_trip_reproduces_spec_and_features() -> None:
    crm = random_crm(1)
    config = FeatureConfig(windows=(3, 14), half_life_days=5, event_weights={"page_view": 2.0},
                           type_half_lives_days=(2.5, 20), burst_gap_days=3.5)
    training = build_training_set(crm, config)
    spec = training.spec
    restored = FeatureSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert restored == spec
    assert restored.config == config
    assert restored.columns_ == spec.columns_
    as_of = training.as_of_dates[-1]
    pd.testing.assert_frame_equal(
        build_scoring_frame(crm, restored, as_of=as_of), build_scoring_frame(crm, spec, as_of=as_of), check_exact=True
    )
    with pytest.raises(FeatureSpecError, match="columns do not match"):
        FeatureSpec.from_dict({**spec.to_dict(), "columns": spec.columns_[:-1]})
    with pytest.raises(FeatureSpecError, match="missing fields"):
        FeatureSpec.from_dict({k: v for k, v in spec.to_dict().items() if k != "families"})


def test_existing_score_columns_are_kept_beside_the_features_not_among_them() -> None:
    crm = random_crm(3)
    legacy = np.arange(len(crm.leads), dtype=float) * 10
    leads = crm.leads.assign(legacy_score=legacy)
    crm = CRMData(leads, crm.events, crm.outcomes, crm.categorical_attributes, [*crm.numeric_attributes, "legacy_score"])
    assert "legacy_score" in build_training_set(crm).spec.columns_  # an attribute like any other...
    with pytest.raises(ValueError, match=r"training.score_columns: 'legacy_scor' not among the validated lead attributes"):
        build_training_set(crm, set_aside=["legacy_scor"])  # a typo would leave the score among the features
    training = build_training_set(crm, set_aside=["legacy_score"])
    assert "legacy_score" not in training.spec.columns_  # ...unless set aside as a score
    assert training.spec.columns_of(FIT) == ["industry", "employees"]
    frame = training.frame
    expected = leads.set_index("lead_id").loc[frame["lead_id"], "legacy_score"].to_numpy()
    np.testing.assert_array_equal(frame["legacy_score"].to_numpy(), expected)


def test_families_and_labels_cover_every_column() -> None:
    spec = FeatureSpec().fit(random_crm(2))
    assert spec.columns_of(FIT) == ["industry", "employees"]
    assert "pricing_page_view_count_30d" in spec.columns_of(ENGAGEMENT)
    assert spec.columns_of(LIFECYCLE) == ["lead_age_days", "times_recycled", "days_since_last_recycle"]
    assert len(spec.columns_of(FIT)) + len(spec.columns_of(ENGAGEMENT)) + len(spec.columns_of(LIFECYCLE)) == len(
        spec.columns_
    )
    assert spec.labels_["pricing_page_view_count_30d"] == "pricing page views, last 30 days"
    assert set(spec.labels_) == set(spec.columns_)


def test_decayed_and_burst_columns_have_family_and_labels() -> None:
    spec = FeatureSpec(FeatureConfig(type_half_lives_days=(30, 7), burst_gap_days=10)).fit(random_crm(2))
    engagement = spec.columns_of(ENGAGEMENT)
    decayed = [c for c in engagement if "_decayed_" in c]
    # Activity types only (unsubscribe / bounce weigh 0), half-lives sorted, type-major.
    assert decayed == ["email_open_decayed_7d", "email_open_decayed_30d", "page_view_decayed_7d",
                       "page_view_decayed_30d", "pricing_page_view_decayed_7d", "pricing_page_view_decayed_30d"]
    assert spec.labels_["pricing_page_view_decayed_7d"] == "pricing page views, decayed count (half-life 7 days)"
    assert {"days_since_burst_start", "activity_since_burst_start"} <= set(engagement)
    assert "10+ quiet days" in spec.labels_["days_since_burst_start"]
    off = FeatureSpec(FeatureConfig(type_half_lives_days=(), burst_gap_days=None)).fit(random_crm(2))
    assert not [c for c in off.columns_ if "_decayed_" in c or "burst" in c]
    assert len(spec.columns_) - len(off.columns_) == len(decayed) + 2


def test_spec_written_before_decayed_and_burst_columns_still_loads() -> None:
    crm = random_crm(6)
    old = FeatureSpec(FeatureConfig(type_half_lives_days=(), burst_gap_days=None)).fit(crm)
    data = old.to_dict()
    for key in ("type_half_lives_days", "burst_gap_days"):
        del data["config"][key]  # an older spec never wrote these fields
    restored = FeatureSpec.from_dict(json.loads(json.dumps(data)))
    assert restored == old
    as_of = pd.Timestamp("2024-05-01")
    pd.testing.assert_frame_equal(
        build_scoring_frame(crm, restored, as_of=as_of), build_scoring_frame(crm, old, as_of=as_of), check_exact=True
    )


def test_unseen_categories_become_missing_and_are_reported() -> None:
    crm = random_crm(3)
    spec = FeatureSpec().fit(crm)
    assert spec.categorical_vocab_["industry"] == ["bank", "retail", "saas"]
    scoring = CRMData(crm.leads.copy(), crm.events, crm.outcomes, ["industry"], ["employees"])
    scoring.leads.loc[0, "industry"] = "mining"
    assert spec.unseen_categories(scoring.leads) == {"industry": ["mining"]}
    frame = build_scoring_frame(scoring, spec, as_of=pd.Timestamp("2024-06-01"), eligible_only=False)
    assert frame.attrs["unseen"] == {"industry": ["mining"]}
    assert pd.isna(frame.loc[0, "industry"])
    assert list(frame["industry"].cat.categories) == ["bank", "retail", "saas"]
    assert frame.loc[1:, "industry"].notna().sum() == scoring.leads.loc[1:, "industry"].notna().sum()
    payload = payload_of(scoring, scoring.leads.loc[0, "lead_id"])
    assert spec.unseen_in_payload(payload) == {"industry": ["mining"]}
    row = features_from_payload(payload, spec, as_of="2024-06-01")
    assert np.isnan(row[0, spec.columns_.index("industry")])


def test_a_lead_attribute_of_the_spec_missing_from_the_data_is_named() -> None:
    """Leads without an attribute the spec was fitted on (a column dropped or renamed since): a FeatureSpecError
    naming each missing column, which `evaluate` and `forecast` print as one line (it was the KeyError of the
    first one, printed as "error: industry")."""
    crm = random_crm(3)
    spec = FeatureSpec().fit(crm)
    leads = crm.leads.drop(columns=["industry", "employees"])
    scoring = CRMData(leads, crm.events, crm.outcomes, [], [])
    with pytest.raises(FeatureSpecError, match=r"leads\.industry, leads\.employees: missing_column: lead "
                                               r"attribute\(s\) the model was trained on"):
        build_scoring_frame(scoring, spec, as_of=pd.Timestamp("2024-06-01"), eligible_only=False)


def test_column_order_does_not_depend_on_input_order() -> None:
    crm = random_crm(4)
    shuffled = CRMData(
        crm.leads.sample(frac=1, random_state=0)[["employees", "industry", "created_at", "lead_id"]],
        crm.events.sample(frac=1, random_state=1)[["event_type", "occurred_at", "lead_id"]],
        crm.outcomes.sample(frac=1, random_state=2),
        ["industry"],
        ["employees"],
    )
    shuffled.numeric_attributes, shuffled.categorical_attributes = ["employees"], ["industry"]
    a = build_training_set(crm)
    b = build_training_set(shuffled)
    assert a.spec == b.spec
    assert list(a.frame.columns) == list(b.frame.columns)
    pd.testing.assert_frame_equal(a.frame, b.frame, check_exact=True)


def test_vocabulary_from_schema_fixes_columns_regardless_of_batch_events() -> None:
    crm = random_crm(5)
    fitted = FeatureSpec().fit(crm)
    schema = FeatureSpec(FeatureConfig(vocabulary="schema")).fit(crm)
    assert "webinar_count_7d" in schema.columns_ and "webinar_count_7d" not in fitted.columns_
    no_events = CRMData(crm.leads, crm.events.iloc[0:0], crm.outcomes, ["industry"], ["employees"])
    frame = build_scoring_frame(no_events, fitted, as_of=pd.Timestamp("2024-05-01"))
    assert list(frame.columns[2:]) == fitted.columns_
    assert (frame["email_open_count_90d"] == 0).all()


def test_config_validation_names_the_field() -> None:
    with pytest.raises(ValueError, match="windows"):
        FeatureConfig(windows=(0, 7))
    with pytest.raises(ValueError, match="half_life_days"):
        FeatureConfig(half_life_days=-1)
    with pytest.raises(ValueError, match="recycled"):
        FeatureConfig(event_types=("email_open", "recycled"))
    with pytest.raises(ValueError, match="type_half_lives_days"):
        FeatureConfig(type_half_lives_days=(7, 0))
    with pytest.raises(ValueError, match="burst_gap_days"):
        FeatureConfig(burst_gap_days=0)
    with pytest.raises(ValueError, match="event_weights"):
        FeatureConfig(event_weights={"email_open": -2})


def flat_data() -> FlatData:
    frame = pd.DataFrame(
        {
            "lead_id": [1, 2, 3, 4],
            "label": [0, 1, 0, 1],
            "source": ["ads", "seo", "ads", None],
            "visits_30d": [3, 10, 0, 7],
            "company_size": [10.0, 200.0, None, 50.0],
            "hubspot_score": [12, 80, 5, 60],
        }
    )
    families = {"source": FIT, "company_size": FIT, "visits_30d": ENGAGEMENT}
    return FlatData(frame, ["source"], ["visits_30d", "company_size"], families, ["hubspot_score"])


def test_flat_data_passes_through_with_families() -> None:
    flat = flat_data()
    training = build_flat_training_set(flat)
    spec = training.spec
    assert spec.kind_ == "flat"
    assert spec.columns_ == ["source", "company_size", "visits_30d"]
    assert spec.families_ == {"source": FIT, "company_size": FIT, "visits_30d": ENGAGEMENT}
    frame = training.frame
    assert list(frame["converted_within_h"]) == [0.0, 1.0, 0.0, 1.0]
    assert list(frame["hubspot_score"]) == [12, 80, 5, 60]
    assert list(frame["visits_30d"]) == [3.0, 10.0, 0.0, 7.0]
    assert frame["source"].isna().sum() == 1
    restored = FeatureSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    payload = {"lead_id": 9, "attributes": {"source": "seo", "visits_30d": 4, "company_size": None}}
    row = features_from_payload(payload, restored)
    np.testing.assert_array_equal(row, [[1.0, np.nan, 4.0]])
    scoring = flat.frame.assign(source=["tv", "seo", "ads", "ads"])
    assert spec.unseen_categories(scoring) == {"source": ["tv"]}
    assert flat_feature_frame(scoring, spec)["source"].isna().tolist() == [True, False, False, False]


def test_flat_data_errors_name_the_problem() -> None:
    flat = flat_data()
    bad_family = FlatData(flat.frame, ["source"], ["visits_30d", "company_size"], {"source": FIT})
    with pytest.raises(FeatureSpecError, match=r"missing: \['company_size', 'visits_30d'\]"):
        FeatureSpec().fit(bad_family)
    bad_label = FlatData(flat.frame.assign(label=[0, 1, 2, 1]), ["source"], ["visits_30d", "company_size"],
                         flat.families)
    with pytest.raises(FeatureSpecError, match=r"label column 'label' must be 0/1, bad rows \[2\]"):
        build_flat_training_set(bad_label)
    bad_numeric = flat.frame.astype({"visits_30d": object})
    bad_numeric.loc[1, "visits_30d"] = "many"
    spec = FeatureSpec().fit(flat)
    with pytest.raises(FeatureSpecError, match=r"'visits_30d': non-numeric values in rows \[1\]"):
        flat_feature_frame(bad_numeric, spec)


def test_a_misspelt_event_weight_is_refused_a_conventional_absent_type_is_not() -> None:
    crm = random_crm(4)
    with pytest.raises(FeatureSpecError, match=r"features\.event_weights: \['demo_requets'\] not among"):
        FeatureSpec(FeatureConfig(event_weights={"demo_requets": 5.0})).fit(crm)
    assert "webinar" not in set(crm.events["event_type"])  # conventional but absent here: accepted
    FeatureSpec(FeatureConfig(event_weights={"webinar": 3.0, "demo_request": 5.0})).fit(crm)


def test_a_misspelt_fixed_event_type_is_refused_a_conventional_absent_type_is_not() -> None:
    """``features.event_types: [emial_open]`` built a training set with no column of any event type the data
    has (63 engagement features became 11), without a word."""
    crm = random_crm(4)
    with pytest.raises(FeatureSpecError, match=r"features\.event_types: \['emial_open'\] not among the event types "
                                               r"of the data .* nor the conventional ones; did you mean 'email_open'\?"):
        FeatureSpec(FeatureConfig(event_types=("emial_open", "page_view"))).fit(crm)
    assert "webinar" not in set(crm.events["event_type"])  # conventional but absent here: accepted
    assert FeatureSpec(FeatureConfig(event_types=("webinar", "page_view"))).fit(crm).event_types_ == ["webinar",
                                                                                                     "page_view"]


def test_flat_training_set_summary_has_no_snapshot_lines(capsys: pytest.CaptureFixture[str]) -> None:
    """`features build` on a flat export printed "snapshots (as-of dates) 0", "censored 0" and "as-of range
    n/a .. n/a": lines about snapshots a flat export does not have."""
    from leadscore.cli import _print_training_set_summary

    summary = build_flat_training_set(flat_data()).summary()
    assert "snapshots" not in summary and "censored" not in summary and summary["rows"] == 4
    _print_training_set_summary(summary)
    printed = capsys.readouterr().out
    assert "rows" in printed and "one per lead" in printed
    assert "snapshot" not in printed and "as-of" not in printed and "censored" not in printed
    crm = build_training_set(random_crm(0, n_leads=30)).summary()
    assert crm["snapshots"] > 0 and "censored" in crm and "first_as_of" in crm
