"""The scoring core: calibrated scores, additive impacts, grades, MQL, reasons, payload == batch."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from features.build import build_flat_training_set, build_training_set, features_from_payloads, scoring_matrix
from features.contract import AttributesConfig, DataConfig, FlatConfig, validate_crm
from features.flat import validate_flat
from features.readers import RawTables
from features.schema import ENGAGEMENT, FIT, LEAD_ID, LIFECYCLE
from features.spec import FeatureSpec, FeatureSpecError
from serving.core import (
    GRADES,
    ModelInfo,
    ScoringConfig,
    ScoringCore,
    grade_of,
    probability_impacts,
    top_k_indices,
)
from serving.schemas import LeadError, LeadIn, ModelIdentity, check_leads, default_as_of
from tests.serving_fixtures import AS_OF, payloads_from_crm, train_small_champion


@pytest.fixture(scope="module")
def champion():
    return train_small_champion(n_leads=800, seed=3)


@pytest.fixture(scope="module")
def core(champion) -> ScoringCore:
    return ScoringCore(champion.model, ModelInfo("lead-conversion", "7", mql_cutoff=5))


@pytest.fixture(scope="module")
def batch_rows(champion, core):
    ids, matrix = scoring_matrix(champion.crm, core.spec, AS_OF, eligible_only=False)
    return ids[:300], matrix[:300]


def test_probability_matches_the_model(champion, core, batch_rows) -> None:
    ids, matrix = batch_rows
    batch = core.score_matrix(ids, matrix)
    expected = champion.model.predict_proba(core.spec.to_frame(matrix))
    np.testing.assert_allclose(batch.probability, expected, atol=1e-12)
    np.testing.assert_array_equal(batch.score, np.rint(100 * expected).astype(int))
    assert batch.horizon_days == 90


def test_impacts_add_up_to_the_score(core, batch_rows) -> None:
    ids, matrix = batch_rows
    every = core.score_matrix(ids, matrix, top_k=len(core.columns))
    total = every.base_score + every.fit_score + every.engagement_score + every.lifecycle_score
    np.testing.assert_allclose(total, 100 * every.probability, atol=1e-9)
    np.testing.assert_allclose(every.reason_impact.sum(axis=1) + every.base_score, 100 * every.probability, atol=1e-9)
    assert np.abs(every.fit_score).max() > 0 and np.abs(every.engagement_score).max() > 0
    # each family's score is the sum of the impacts of that family's features (every feature is a reason here)
    family = np.array([core.spec.families_[core.columns[j]] for j in every.reason_feature.ravel()])
    family = family.reshape(every.reason_feature.shape)
    for name, score in ((FIT, every.fit_score), (ENGAGEMENT, every.engagement_score),
                        (LIFECYCLE, every.lifecycle_score)):
        np.testing.assert_allclose(score, np.where(family == name, every.reason_impact, 0.0).sum(axis=1), atol=1e-9,
                                   err_msg=name)


def test_impacts_keep_the_sign_of_the_log_odds_contributions() -> None:
    rng = np.random.default_rng(1)
    phi = rng.normal(size=(50, 6))
    margin = -1.0 + phi.sum(axis=1)
    p, p0 = 1 / (1 + np.exp(-margin)), np.full(50, 1 / (1 + np.exp(1.0)))
    impacts = probability_impacts(phi, p, p0)
    np.testing.assert_allclose(impacts.sum(axis=1), p - p0, atol=1e-12)
    assert (np.sign(impacts) == np.sign(phi)).all()
    assert (probability_impacts(np.zeros((2, 3)), np.ones(2) * 0.3, np.ones(2) * 0.3) == 0).all()


def test_a_platt_calibration_slice_ranked_in_reverse_never_flips_the_reasons(champion, batch_rows) -> None:
    """Held-out margins that rank the leads in reverse fit a negative Platt slope, which made every impact
    the opposite sign of its log-odds contribution; the slope is held at 0: every lead gets the slice's
    rate, no reason has an impact, and the calibrator says why."""
    import copy

    ids, matrix = batch_rows
    model = copy.copy(champion.model)
    model.calibration = "platt"
    margin = model.predict_raw(ScoringCore(champion.model, ModelInfo("m", "1")).spec.to_frame(matrix))
    reversed_labels = (margin < np.quantile(margin, 0.2)).astype(float)  # the lowest margins convert
    model.calibrate(margin, reversed_labels)
    assert model.calibrator_.slope_ == 0 and "slope held at 0" in model.calibrator_.warning_
    batch = ScoringCore(model, ModelInfo("m", "1")).score_matrix(ids, matrix, top_k=len(champion.model.feature_columns_))
    np.testing.assert_allclose(batch.probability, reversed_labels.mean(), atol=1e-12)
    assert (batch.reason_impact == 0).all() and (batch.fit_score == 0).all() and (batch.engagement_score == 0).all()


def test_top_k_indices_orders_by_magnitude() -> None:
    values = np.array([[0.1, -3.0, 2.0, 0.0], [5.0, 1.0, -1.0, 0.5]])
    np.testing.assert_array_equal(top_k_indices(values, 2), [[1, 2], [0, 1]])
    reference = np.argsort(-np.abs(values), axis=1, kind="stable")
    np.testing.assert_array_equal(top_k_indices(values, 4), reference)
    assert top_k_indices(values, 0).shape == (2, 0)


def test_reasons_name_the_feature_and_decode_the_value(core, batch_rows) -> None:
    ids, matrix = batch_rows
    records = core.score_matrix(ids, matrix, top_k=3).to_records()
    assert len(records) == len(ids) and all(len(r["reasons"]) == 3 for r in records)
    vocab = core.spec.categorical_vocab_
    columns = list(core.columns)
    seen_category = seen_number = False
    for row, record in zip(matrix, records, strict=True):
        impacts = [abs(r["impact"]) for r in record["reasons"]]
        assert impacts == sorted(impacts, reverse=True)
        for reason in record["reasons"]:
            feature = reason["feature"]
            assert reason["label"] == core.spec.labels_[feature]
            assert reason["family"] == core.spec.families_[feature]
            sent = row[columns.index(feature)]  # the lead's own value of that feature, decoded independently
            if np.isnan(sent):
                assert reason["value"] is None, (record["lead_id"], reason)
            elif feature in vocab:
                assert reason["value"] == list(vocab[feature])[int(sent)], (record["lead_id"], reason)
                seen_category = True
            else:
                assert reason["value"] == float(sent), (record["lead_id"], reason)
                seen_number = True
    assert seen_category and seen_number


def test_top_k_zero_skips_explanations_but_not_scores(core, batch_rows) -> None:
    ids, matrix = batch_rows
    full, bare = core.score_matrix(ids, matrix, 3), core.score_matrix(ids, matrix, 0)
    np.testing.assert_allclose(bare.probability, full.probability, atol=1e-12)
    assert bare.top_k == 0 and np.isnan(bare.fit_score).all()
    assert all(r["reasons"] == [] for r in bare.to_records())


def test_grades_and_mql(core, batch_rows) -> None:
    ids, matrix = batch_rows
    batch = core.score_matrix(ids, matrix)
    a, b, c = core.grade_cutoffs
    assert a >= b >= c >= 1
    expected = np.where(batch.score >= a, "A", np.where(batch.score >= b, "B", np.where(batch.score >= c, "C", "D")))
    np.testing.assert_array_equal(batch.grade, expected)
    assert set(batch.grade) <= set(GRADES)
    np.testing.assert_array_equal(batch.mql, batch.score >= 5)
    fallback = ScoringCore(core.model, ModelInfo("m", "1"), ScoringConfig(mql_cutoff=2, grade_cutoffs=(9, 6, 3)))
    assert fallback.mql_cutoff == 2 and fallback.grade_cutoffs == (9, 6, 3)
    with pytest.raises(ValidationError, match="descending"):
        ScoringConfig(grade_cutoffs=(10, 20, 5))


def test_columnar_output_equals_records(core, batch_rows) -> None:
    ids, matrix = batch_rows
    batch = core.score_matrix(ids, matrix, 2)
    frame, records = batch.to_frame(), batch.to_records()
    assert list(frame[LEAD_ID]) == [r[LEAD_ID] for r in records]
    assert list(frame["reason_2_feature"]) == [r["reasons"][1]["feature"] for r in records]
    np.testing.assert_allclose(frame["fit_score"], [r["fit_score"] for r in records])
    assert set(frame["model_version"]) == {"7"}


def test_payload_path_equals_batch_path(champion, core, batch_rows) -> None:
    ids, matrix = batch_rows
    chosen = [int(i) for i in ids[:40]]
    payloads = payloads_from_crm(champion.crm, chosen, AS_OF)
    from_payloads = features_from_payloads(payloads, core.spec, AS_OF)
    np.testing.assert_allclose(from_payloads, matrix[:40], atol=1e-9, equal_nan=True)
    a, b = core.score_matrix(chosen, from_payloads).to_records(), core.score_matrix(ids[:40], matrix[:40]).to_records()
    assert a == b


def test_bad_shapes_are_named(core) -> None:
    with pytest.raises(ValueError, match=rf"^feature matrix has shape \(1, 3\), expected \(n, {len(core.columns)}\)$"):
        core.score_matrix([1], np.zeros((1, 3)))
    with pytest.raises(ValueError, match="^2 lead ids for 1 feature rows$"):
        core.score_matrix([1, 2], np.zeros((1, len(core.columns))))


def test_check_leads_names_lead_and_field(core) -> None:
    as_of = datetime(2026, 3, 1)
    good = LeadIn(lead_id="x1", created_at=datetime(2026, 1, 1), attributes={"industry": "no-such-industry"},
                  events=[{"occurred_at": datetime(2026, 2, 1), "event_type": "teleport"}])
    warnings = check_leads([good], as_of, core.spec)
    assert any("unseen category 'no-such-industry'" in w for w in warnings[0])
    assert any("teleport" in w for w in warnings[0])
    late = LeadIn(lead_id=42, created_at=datetime(2026, 1, 1),
                  events=[{"occurred_at": datetime(2026, 1, 2), "event_type": "email_open"},
                          {"occurred_at": datetime(2026, 4, 1), "event_type": "email_open"}])
    with pytest.raises(LeadError, match=r"lead 1 \(lead_id 42\): events\[1\].occurred_at"):
        check_leads([good, late], as_of, core.spec)
    negative = LeadIn(lead_id=5, created_at=datetime(2026, 1, 1), attributes={"employees": -3})
    with pytest.raises(LeadError, match="attributes.employees"):
        check_leads([negative], as_of, core.spec, non_negative=("employees",))
    text = LeadIn(lead_id=6, created_at=datetime(2026, 1, 1), attributes={"employees": "many"})
    with pytest.raises(LeadError, match="must be a number"):
        check_leads([text], as_of, core.spec)
    # every bad lead of a request is listed, a repeated lead id included
    with pytest.raises(LeadError) as caught:
        check_leads([late, good, negative, text, good], as_of, core.spec, non_negative=("employees",))
    listed = caught.value.as_response()["errors"]
    assert [e.split(":")[0] for e in listed] == [
        "lead 0 (lead_id 42)", "lead 2 (lead_id 5)", "lead 3 (lead_id 6)", "lead 4 (lead_id 'x1')"]
    assert "also given as lead 1" in listed[-1]
    at_as_of = LeadIn(lead_id=7, created_at=datetime(2026, 1, 1),
                      events=[{"occurred_at": as_of, "event_type": "demo_request"}])
    assert any("at as_of exactly not counted" in w for w in check_leads([at_as_of], as_of, core.spec)[0])
    assert FIT in core.families and ENGAGEMENT in core.families


def test_check_leads_reads_numeric_text_as_the_table_path_reads_it(core) -> None:
    """A number sent as text ("250", as HubSpot sends every property) is read as the contract reads a
    text column: the number; "" is missing (the contract's missing marker); a boolean is 1 / 0 (as a
    boolean column); text that is no finite number is an error naming the lead and the field."""
    as_of = datetime(2026, 3, 1)
    numeric = list(core.spec.numeric_columns_)
    assert "employees" in numeric and "annual_revenue" in numeric

    def lead(lead_id: int, **attributes: object) -> LeadIn:
        return LeadIn(lead_id=lead_id, created_at=datetime(2026, 1, 1), attributes=attributes)

    read = [lead(1, employees="250", annual_revenue=" 1.5e6 "), lead(2, employees="", annual_revenue="00042"),
            lead(3, employees=True, annual_revenue=False), lead(4, employees="-0", annual_revenue="12.50"),
            lead(5, industry=5, employees=250)]
    warnings = check_leads(read, as_of, core.spec, non_negative=("employees",))
    assert [dict(r.attributes) for r in read] == [
        {"employees": 250.0, "annual_revenue": 1.5e6}, {"employees": None, "annual_revenue": 42.0},
        {"employees": 1.0, "annual_revenue": 0.0}, {"employees": 0.0, "annual_revenue": 12.5},
        {"industry": 5, "employees": 250}]
    assert all(isinstance(v, float) for r in read[:4] for v in r.attributes.values() if v is not None)
    assert warnings[4] == ["attribute 'industry': unseen category '5' scored as unknown"]
    np.testing.assert_array_equal(features_from_payloads([read[0].payload()], core.spec, as_of),
                                  features_from_payloads([lead(1, employees=250, annual_revenue=1.5e6).payload()],
                                                         core.spec, as_of))
    for text in ("abc", " ", "NaN", "nan", "inf", "-Infinity", "1,000", "1_000", "0x10", "1e400", "250 abc",
                 "\u0662\u0665", "true"):
        with pytest.raises(LeadError) as caught:
            check_leads([lead(7, employees=text)], as_of, core.spec)
        assert caught.value.field == "attributes.employees" and caught.value.lead_id == 7
        assert str(caught.value) == f"lead 0 (lead_id 7): attributes.employees: must be a number, got {text!r}"
    with pytest.raises(LeadError, match=r"attributes.employees: must be >= 0, got '-5'"):
        check_leads([lead(8, employees="-5")], as_of, core.spec, non_negative=("employees",))
    long_text = "9" * 1000  # a number too large for a float: quoted cut to 60 characters, not whole
    with pytest.raises(LeadError) as caught:
        check_leads([lead(9, employees=long_text)], as_of, core.spec)
    assert str(caught.value) == f"lead 0 (lead_id 9): attributes.employees: must be a number, got '{'9' * 56}..."


MARKERS = ["", "Select"]  # X Education's export writes "Select" for an unanswered dropdown


def _marked_specs() -> dict[str, FeatureSpec]:
    """Specs fitted from data read through a contract that declares ``missing_values: ["", "Select"]``
    (event mode and flat mode), each also after a JSON round trip (as it travels with the model)."""
    leads = pd.DataFrame({"lead_id": range(1, 9), "created_at": [f"2025-01-0{d}" for d in range(1, 9)],
                          "industry": ["saas", "retail", "Select", "saas", "bank", None, "retail", "saas"],
                          "employees": ["10", "250", "Select", "", "5", "7", "40", "12"]})
    events = pd.DataFrame({"lead_id": [1, 2, 4, 5], "occurred_at": ["2025-01-10"] * 4,
                           "event_type": ["email_open", "page_view", "form_fill", "email_open"]})
    outcomes = pd.DataFrame({"lead_id": [1, 4], "converted_at": ["2025-02-01", "2025-02-03"]})
    attributes = AttributesConfig(categorical=["industry"], numeric=["employees"])
    crm, _ = validate_crm(RawTables(leads, events, outcomes),
                          DataConfig(reference_time="2025-06-01", missing_values=MARKERS, attributes=attributes))
    flat, _ = validate_flat(leads.rename(columns={"created_at": "signup"}).assign(won=[1, 0] * 4),
                            FlatConfig(source={"path": "unused.csv"}, id_column="lead_id", label_column="won",
                                       timestamp_column="signup", categorical=["industry"], numeric=["employees"],
                                       missing_values=MARKERS, reference_time="2025-06-01"))
    assert build_training_set(crm, set_aside=["employees"]).spec.missing_values_ == MARKERS
    out = {}
    for mode, spec in (("event", build_training_set(crm).spec), ("flat", build_flat_training_set(flat).spec)):
        out[mode] = spec
        out[f"{mode}, from JSON"] = FeatureSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    return out


@pytest.mark.parametrize("mode", ["event", "event, from JSON", "flat", "flat, from JSON"])
def test_a_missing_marker_of_the_contract_is_a_missing_value_at_the_endpoint(mode: str) -> None:
    """"Select" sent for a numeric and a categorical attribute (a CRM that sends the export's text) reads as
    the data contract of the model's project reads it in a table: missing. Same feature row as a lead
    without the values, no error, no unseen-category warning; through the endpoint's checks and the
    payload path, and through the payload path alone (the Python API)."""
    spec = _marked_specs()[mode]
    assert spec.missing_values_ == MARKERS
    assert "Select" not in spec.categorical_vocab_["industry"] and spec.numeric_columns_ == ["employees"]
    as_of = datetime(2025, 3, 1)
    events = [{"occurred_at": datetime(2025, 2, 1), "event_type": "email_open"}]

    def lead(lead_id: int, **attributes: object) -> LeadIn:
        return LeadIn(lead_id=lead_id, created_at=datetime(2025, 1, 5), attributes=attributes, events=events)

    absent, marked, empty = lead(1), lead(2, industry="Select", employees="Select"), lead(3, industry="", employees="")
    raw = {**marked.payload(), "attributes": dict(marked.attributes)}  # as a Python caller gives it
    assert spec.unseen_in_payload(marked.payload()) == {}
    assert check_leads([absent, marked, empty], as_of, spec) == [[], [], []]
    rows = features_from_payloads([absent.payload(), marked.payload(), empty.payload(), raw], spec, as_of)
    for row in rows[1:]:
        np.testing.assert_array_equal(row, rows[0])
    assert np.isnan(rows[0, : len(spec.fit_columns)]).all()
    known = lead(4, industry="saas", employees="Select")
    check_leads([known], as_of, spec)
    assert not np.isnan(features_from_payloads([known.payload()], spec, as_of)[0, 0])  # a known value still counts
    # a marker is a missing value only when sent as text: the number 0 is a number
    assert features_from_payloads([lead(5, employees=0).payload()], spec, as_of)[0, 1] == 0.0


def test_an_event_type_equal_to_a_missing_marker_is_refused_as_a_missing_type() -> None:
    """The contract reads an event type "Select" as a missing one (null_value: refused, or the event
    quarantined); the endpoint refuses it as it refuses "" (400 naming the event), the payload path
    as an event without a type."""
    spec = _marked_specs()["event, from JSON"]
    as_of = datetime(2025, 3, 1)
    marked = LeadIn(lead_id=9, created_at=datetime(2025, 1, 5),
                    events=[{"occurred_at": datetime(2025, 2, 1), "event_type": "email_open"},
                            {"occurred_at": datetime(2025, 2, 2), "event_type": "Select"}])
    with pytest.raises(LeadError) as caught:
        check_leads([marked], as_of, spec)
    assert (caught.value.field, caught.value.lead_id) == ("events[1].event_type", 9)
    assert "missing" in str(caught.value) and "'Select'" in str(caught.value)
    with pytest.raises(FeatureSpecError, match=r"payload 0 \(lead_id 9\): event 1 needs occurred_at and event_type"):
        features_from_payloads([marked.payload()], spec, as_of)


def test_an_event_value_equal_to_a_missing_marker_is_a_missing_value() -> None:
    """The contract reads an events table's ``value`` column as numbers, a marker ("Select", "") as missing
    and text that is no number as a wrong_type. The endpoint's checks do the same (a marker was a 400: the
    request model took only numbers): the value becomes None, a number sent as text its number, other text
    an error naming the event; the lead's features do not change (no feature reads an event's value)."""
    spec = _marked_specs()["event, from JSON"]
    as_of = datetime(2025, 3, 1)

    def lead(lead_id: int, *values: object) -> LeadIn:
        return LeadIn(lead_id=lead_id, created_at=datetime(2025, 1, 5),
                      events=[{"occurred_at": datetime(2025, 2, 1), "event_type": "email_open", "value": v}
                              for v in values])

    plain, marked, texts = lead(1, None, 3.5), lead(2, "Select", ""), lead(3, "250", " 1e3 ")
    assert check_leads([plain, marked, texts], as_of, spec) == [[], [], []]
    assert [e.value for e in marked.events] == [None, None] and [e.value for e in texts.events] == [250.0, 1000.0]
    rows = features_from_payloads([plain.payload(), marked.payload(), texts.payload()], spec, as_of)
    np.testing.assert_array_equal(rows[1], rows[0])
    np.testing.assert_array_equal(rows[2], rows[0])
    for bad in ("abc", "NaN", "1,000"):
        with pytest.raises(LeadError) as caught:
            check_leads([plain, lead(4, 1.0, bad)], as_of, spec)
        assert (caught.value.index, caught.value.lead_id, caught.value.field) == (1, 4, "events[1].value")
        assert "must be a number" in str(caught.value)


def test_a_lead_id_equal_to_a_missing_marker_is_a_missing_id() -> None:
    """The contract reads a lead id "Select" (a marker of the project) as a missing id: null_value on
    leads.lead_id (refused, or the lead quarantined). The endpoint scored it as an ordinary id; now it
    refuses it naming the lead's position and ``lead_id`` (the id itself, a missing one, is not echoed), and
    two such leads are two missing ids, not one id given twice."""
    spec = _marked_specs()["event, from JSON"]
    as_of = datetime(2025, 3, 1)
    leads = [LeadIn(lead_id=lead_id, created_at=datetime(2025, 1, 5)) for lead_id in (7, "Select", 8, "Select")]
    with pytest.raises(LeadError) as caught:
        check_leads(leads, as_of, spec)
    error = caught.value
    assert (error.index, error.lead_id, error.field) == (1, None, "lead_id")
    assert str(error).startswith("lead 1: lead_id: 'Select' is a missing value"), str(error)
    assert [(e.index, e.field) for e in error.others] == [(3, "lead_id")]
    assert error.as_response()["lead_id"] is None and len(error.as_response()["errors"]) == 2
    unmarked = FeatureSpec.from_dict({**spec.to_dict(), "missing_values": [""]})
    assert check_leads([LeadIn(lead_id="Select", created_at=datetime(2025, 1, 5))], as_of, unmarked) == [[]]


@pytest.mark.parametrize("mode", ["event", "flat", "flat, from JSON"])
def test_only_a_flat_models_leads_may_leave_created_at_out(mode: str) -> None:
    """The request shape lets a lead leave ``created_at`` out (a flat model reads none of it); a CRM model's
    features count from it, so its check refuses such a lead naming it (the feature build would fail: a 500)."""
    spec = _marked_specs()[mode]
    as_of = datetime(2025, 3, 1)
    bare = LeadIn(lead_id="L1", attributes={"industry": "saas", "employees": 12})
    dated = bare.model_copy(update={"lead_id": "L2", "created_at": datetime(2025, 1, 5)})
    assert bare.created_at is None and default_as_of([bare], as_of) == as_of
    if mode == "event":
        with pytest.raises(LeadError) as caught:
            check_leads([dated, bare], as_of, spec)
        assert (caught.value.index, caught.value.lead_id, caught.value.field) == (1, "L1", "created_at")
        assert "missing" in str(caught.value) and not caught.value.others
        return
    assert check_leads([bare, dated], as_of, spec) == [[], []]
    rows = features_from_payloads([bare.payload(), dated.payload()], spec, as_of)
    np.testing.assert_array_equal(rows[0], rows[1])
    late = bare.model_copy(update={"created_at": datetime(2025, 3, 2)})  # given, it is checked as for a CRM
    with pytest.raises(LeadError, match=r"lead 0 \(lead_id 'L1'\): created_at: .* is after as_of"):
        check_leads([late], as_of, spec)


def test_a_rescore_without_a_project_file_reads_the_models_markers_as_missing(tmp_path) -> None:
    """``leadscore rescore --db URL`` (no project file: the embedded data config, whose markers are only
    ``""``) reads the lead database with the markers of the model's contract, as the endpoint reads a lead:
    "Select" in a numeric and a categorical attribute is missing, not a wrong_type that fails the run nor an
    unseen category."""
    import sqlalchemy as sa

    from features.loading import load_crm
    from serving.rescore import data_config_for, sql_data_config

    spec = _marked_specs()["event, from JSON"]
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        pd.DataFrame({"lead_id": [1, 2, 3], "created_at": ["2025-01-02", "2025-01-03", "2025-01-04"],
                      "industry": ["saas", "Select", "retail"], "employees": ["10", "Select", "40"]}).to_sql(
            "leads", connection, index=False)
        pd.DataFrame({"lead_id": [1], "occurred_at": ["2025-01-10"], "event_type": ["email_open"]}).to_sql(
            "events", connection, index=False)
        pd.DataFrame({"lead_id": [1], "converted_at": ["2025-02-01"]}).to_sql("outcomes", connection, index=False)
    engine.dispose()
    crm, _ = load_crm(data_config_for(sql_data_config(url), spec))
    leads = crm.leads.set_index(LEAD_ID)
    assert leads.loc[[1, 3], "employees"].tolist() == [10.0, 40.0]
    assert pd.isna(leads.at[2, "employees"]) and pd.isna(leads.at[2, "industry"])


def test_a_spec_written_before_the_markers_were_kept_reads_only_blank_as_missing() -> None:
    """Specs (and models exported) before the field existed load with the contract's default, ``[""]``."""
    spec = _marked_specs()["event"]
    old = {k: v for k, v in spec.to_dict().items() if k != "missing_values"}
    restored = FeatureSpec.from_dict(json.loads(json.dumps(old)))
    assert restored.missing_values_ == [""]
    as_of = datetime(2025, 3, 1)
    with pytest.raises(LeadError, match=r"attributes.employees: must be a number, got 'Select'"):
        check_leads([LeadIn(lead_id=1, created_at=datetime(2025, 1, 5), attributes={"employees": "Select"})],
                    as_of, restored)
    with pytest.raises(FeatureSpecError, match="missing_values"):
        FeatureSpec.from_dict({**spec.to_dict(), "missing_values": "Select"})


def test_the_pyfunc_reads_the_markers_of_the_models_contract_as_missing(champion, core, batch_rows) -> None:
    """The MLflow pyfunc takes raw feature columns: "Select" there is missing when the model's project
    declared it a marker (its spec keeps them), as in the tables; for a model without it, an error."""
    import copy

    from mlflow.exceptions import MlflowException

    from training.pyfunc import from_signature_frame, to_signature_frame

    model = copy.copy(champion.model)
    model.spec_ = FeatureSpec.from_dict({**champion.model.spec_.to_dict(), "missing_values": MARKERS})
    typed = to_signature_frame(core.spec.to_frame(batch_rows[1][:6]), model)
    marked, blank = typed.astype({"employees": object}), typed.copy()
    marked.loc[:, ["employees", "industry"]] = "Select"
    blank["employees"], blank["industry"] = np.nan, None
    read = from_signature_frame(marked, model)
    pd.testing.assert_frame_equal(read, from_signature_frame(blank, model))
    assert read["employees"].isna().all() and read["industry"].isna().all()
    with pytest.raises(MlflowException, match=r"'employees': not a finite number in rows \[0, 1, 2, 3, 4, 5\]"):
        from_signature_frame(marked, champion.model)


def test_validated_payloads_equal_iso_payloads(champion, core, batch_rows) -> None:
    """The endpoint hands datetime objects (validated, naive UTC) to the feature code: same matrix."""
    ids, matrix = batch_rows
    payloads = payloads_from_crm(champion.crm, [int(i) for i in ids[:25]], AS_OF)
    validated = [LeadIn.model_validate(p).payload() for p in payloads]
    assert isinstance(validated[0]["created_at"], datetime)
    at = AS_OF.to_pydatetime()
    np.testing.assert_array_equal(features_from_payloads(validated, core.spec, at),
                                  features_from_payloads(payloads, core.spec, AS_OF))
    np.testing.assert_allclose(features_from_payloads(validated, core.spec, at), matrix[:25], atol=1e-9,
                               equal_nan=True)


def test_one_lead_equals_its_row_in_a_batch(core, batch_rows) -> None:
    """The real-time path (one row: single-row LightGBM call, small-batch top-k) == the batch path."""
    ids, matrix = batch_rows
    big = np.tile(matrix, (2, 1))  # > SMALL_BATCH rows: partition-based top-k, chunked predict
    assert len(big) > 256
    batch = core.score_matrix(np.tile(ids, 2), big, top_k=5)
    for i in (0, 7, 123):
        one = core.score_matrix(ids[i : i + 1], matrix[i : i + 1], top_k=5)
        assert one.probability[0] == batch.probability[i]
        np.testing.assert_array_equal(one.reason_feature[0], batch.reason_feature[i])
        np.testing.assert_allclose(one.reason_impact[0], batch.reason_impact[i], rtol=0, atol=1e-12)
        bare = core.score_matrix(ids[i : i + 1], matrix[i : i + 1], top_k=0)
        assert bare.probability[0] == pytest.approx(batch.probability[i], abs=1e-12)


def test_top_k_small_and_large_batches_agree() -> None:
    rng = np.random.default_rng(3)
    values = np.round(rng.normal(size=(600, 40)), 1)  # many ties
    expected = np.argsort(-np.abs(values), axis=1, kind="stable")[:, :4]
    np.testing.assert_array_equal(top_k_indices(values, 4), expected)  # > SMALL_BATCH rows
    np.testing.assert_array_equal(top_k_indices(values[:5], 4), expected[:5])  # few rows


def test_grade_cut_offs_are_inclusive() -> None:
    score = np.array([0, 2, 3, 5, 6, 9, 10, 100])
    np.testing.assert_array_equal(grade_of(score, (10, 6, 3)), ["D", "D", "C", "C", "B", "B", "A", "A"])
    np.testing.assert_array_equal(grade_of(score, (6, 6, 3)), ["D", "D", "C", "C", "A", "A", "A", "A"])


def test_reasons_show_an_unseen_category_as_the_leads_value(champion, core) -> None:
    """A category the model never saw is scored as missing; its reason shows the lead's value, marked, in
    the endpoint's records, the batch frame and the stored reasons JSON alike (it showed as null)."""
    import json

    from serving.rescore import reasons_json, unseen_values_of

    ids = [int(i) for i in champion.crm.leads[LEAD_ID].iloc[:3]]
    payloads = payloads_from_crm(champion.crm, ids, AS_OF)
    for payload in payloads:
        payload["attributes"]["industry"] = "asteroid mining"
    payloads[2]["attributes"]["industry"] = ""  # missing, as "" is in a table: no unseen value to show
    matrix = features_from_payloads(payloads, core.spec, AS_OF)
    every = len(core.columns)  # every feature among the reasons
    unseen = core.spec.unseen_values_of_payloads([core.spec.unseen_in_payload(p) for p in payloads])
    assert list(unseen["industry"]) == ["asteroid mining", "asteroid mining", None]
    batch = core.score_matrix(ids, matrix, every, unseen)
    plain = core.score_matrix(ids, matrix, every)
    np.testing.assert_array_equal(batch.probability, plain.probability)  # scored exactly as missing

    def industry(reasons: list[dict]) -> object:
        return next(r["value"] for r in reasons if r["feature"] == "industry")

    records = batch.to_records()
    assert [industry(r["reasons"]) for r in records] == ["asteroid mining (unseen)"] * 2 + [None]
    assert [industry(r["reasons"]) for r in plain.to_records()] == [None] * 3
    stored = [json.loads(text) for text in reasons_json(batch)]
    assert [industry(r) for r in stored] == [industry(r["reasons"]) for r in records]
    frame = batch.to_frame()
    slot = [next(k for k in range(1, every + 1) if row[f"reason_{k}_feature"] == "industry")
            for _, row in frame.iterrows()]
    assert [frame.loc[i, f"reason_{k}_value"] for i, k in enumerate(slot)] == ["asteroid mining (unseen)"] * 2 + [None]
    # batch rescoring reads the same texts from the leads table, in the scored leads' order
    crm = champion.crm
    leads = crm.leads.copy()
    leads["industry"] = leads["industry"].astype(object)
    leads.loc[leads[LEAD_ID] == ids[1], "industry"] = "asteroid mining"
    texts = unseen_values_of(type(crm)(leads, crm.events, crm.outcomes), core.spec, np.array(ids[::-1]))
    assert list(texts["industry"]) == [None, "asteroid mining", None]
    with pytest.raises(ValueError, match="unseen values of 'industry'"):
        core.score_matrix(ids, matrix, every, {"industry": texts["industry"][:2]})


def test_the_answers_model_identity_is_the_cores_model_info_without_its_source() -> None:
    """Two definitions of one identity (the core's dataclass, the answer's schema): a field added to one
    and not the other would be dropped from every answer, or fail it."""
    info = ModelInfo("lead-conversion", "3", run_id="r", training_date="2026-06-30", horizon_days=90,
                     mql_cutoff=40, source="models:/lead-conversion@champion")
    shown = info.as_dict()
    assert list(shown) == [f.name for f in dataclasses.fields(ModelInfo)]
    assert shown == {f.name: getattr(info, f.name) for f in dataclasses.fields(ModelInfo)}
    assert set(ModelIdentity.model_fields) == set(shown) - {"source"}
    assert ModelIdentity.model_validate(shown).model_dump() == {k: v for k, v in shown.items() if k != "source"}


def test_default_grade_cutoffs_stay_apart_at_a_low_base_rate(core) -> None:
    """Olist's model (training base rate 0.11%) had the cut-offs A = B = C = 1: every lead scoring 1 (p 0.0066)
    was an A, the grades said nothing. The default cut-offs now keep A > B > C (C at least 1)."""
    import copy

    def cutoffs(rate: float) -> tuple[int, ...]:
        model = copy.copy(core.model)
        model.train_positive_rate_ = rate
        return ScoringCore(model, ModelInfo("m", "1"), ScoringConfig()).grade_cutoffs

    assert cutoffs(0.0011) == (3, 2, 1)
    assert cutoffs(0.004) == (3, 2, 1)  # rounded: 2, 1, 0
    assert cutoffs(0.02) == (8, 4, 2)  # apart already: unchanged
    assert cutoffs(0.6) == (86, 75, 60)  # odds 1.5: 6 and 3 are probabilities 0.857 and 0.75


def test_default_grade_a_is_reachable_at_a_high_base_rate(core) -> None:
    """The cut-offs were 4x / 2x / 1x the base RATE: at X Education's 38.5% that made A 100 (a probability of
    0.995 and more; 4x the rate is 154%) and B 77. They are now multiples of the base rate's odds."""
    import copy

    def cutoffs(rate: float) -> tuple[int, ...]:
        model = copy.copy(core.model)
        model.train_positive_rate_ = rate
        return ScoringCore(model, ModelInfo("m", "1"), ScoringConfig()).grade_cutoffs

    assert cutoffs(0.385) == (71, 56, 38)
    assert cutoffs(0.3) == (63, 46, 30)
    for rate in (0.01, 0.05, 0.2, 0.385, 0.5, 0.7):
        a, b, c = cutoffs(rate)
        odds = rate / (1 - rate)
        for cut, lift in ((a, 4), (b, 2), (c, 1)):  # the cut-off's odds are the lift x the base odds, to rounding
            low, high = (cut - 0.5) / 100, (cut + 0.5) / 100
            assert low / (1 - low) <= lift * odds <= high / (1 - high)
        assert a < 100
    lead = ScoringCore(copy.copy(core.model), ModelInfo("m", "1"), ScoringConfig(grade_cutoffs=(5, 5, 5)))
    assert lead.grade_cutoffs == (5, 5, 5)  # fixed cut-offs are the caller's: as given


def test_a_misspelt_attribute_warning_names_the_feature_it_may_mean(core) -> None:
    """X Education's row sent with 'Lead Sorce' scored with the source missing and only said the attribute was
    ignored: the warning now names the model's feature left out that is closest to it."""
    as_of = datetime(2026, 6, 30)
    lead = LeadIn(lead_id=1, created_at=datetime(2026, 5, 1),
                  attributes={"industri": "software", "Employees": 12, "favourite colour": "red"})
    warnings = check_leads([lead], as_of, core.spec)[0]
    assert "attribute 'industri' is not a model feature; ignored; did you mean 'industry'?" in warnings
    assert "attribute 'Employees' is not a model feature; ignored; did you mean 'employees'?" in warnings
    assert "attribute 'favourite colour' is not a model feature; ignored" in warnings
    given = LeadIn(lead_id=2, created_at=datetime(2026, 5, 1), attributes={"industri": "x", "industry": "software"})
    assert "attribute 'industri' is not a model feature; ignored" in check_leads([given], as_of, core.spec)[0]
