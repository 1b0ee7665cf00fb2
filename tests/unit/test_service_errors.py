"""The request model's refusals, reshaped like the scoring rules' (one error shape for clients)."""

from __future__ import annotations

from serving.schemas import MAX_ECHOED, validation_error_response


def test_union_member_errors_are_one_field_and_leads_are_named() -> None:
    detail = [
        {"loc": ["leads", 1, "attributes", "industry", "float"], "msg": "Input should be a valid number"},
        {"loc": ["leads", 1, "attributes", "industry", "str"], "msg": "String should have at most 200 characters"},
        {"loc": ["leads", 1, "created_at"], "msg": "Field required"},
        {"loc": ["leads", 1, "foo"], "msg": "Extra inputs are not permitted"},
        {"loc": ["asOf"], "msg": "Extra inputs are not permitted"},
    ]
    body = validation_error_response(detail, {"leads": [{"lead_id": 1}, {"lead_id": 7}]})
    assert (body["lead_index"], body["lead_id"], body["field"]) == (1, 7, "attributes.industry")
    assert body["errors"][1:] == ["lead 1 (lead_id 7): created_at: Field required",
                                  "lead 1 (lead_id 7): foo: Extra inputs are not permitted; a lead's attributes go "
                                  "under \"attributes\" ({\"attributes\": {'foo': ...}})",
                                  "asOf: Extra inputs are not permitted; did you mean 'as_of'?"]
    assert body["error"].startswith("4 errors; first: lead 1 (lead_id 7): attributes.industry: not valid")


def test_an_unknown_field_names_the_field_it_may_have_meant() -> None:
    """A misspelt field was refused with pydantic's "Extra inputs are not permitted" alone: the answer now names the
    accepted field it is closest to, at the body, a lead or an event; an attribute put beside lead_id is told
    where attributes go; an event field unlike any is answered with the accepted ones."""
    extra = "Extra inputs are not permitted"
    detail = [{"loc": ["topK"], "msg": extra, "type": "extra_forbidden"},
              {"loc": ["leads", 0, "createdAt"], "msg": extra, "type": "extra_forbidden"},
              {"loc": ["leads", 0, "EVENTS"], "msg": extra, "type": "extra_forbidden"},
              {"loc": ["leads", 0, "industry"], "msg": extra, "type": "extra_forbidden"},
              {"loc": ["leads", 0, "events", 2, "occured_at"], "msg": extra, "type": "extra_forbidden"},
              {"loc": ["leads", 0, "events", 2, "kind"], "msg": extra, "type": "extra_forbidden"}]
    body = validation_error_response(detail, {"leads": [{"lead_id": "L-1"}]})
    assert body["errors"] == [
        f"topK: {extra}; did you mean 'top_k'?",
        f"lead 0 (lead_id 'L-1'): createdAt: {extra}; did you mean 'created_at'?",
        f"lead 0 (lead_id 'L-1'): EVENTS: {extra}; did you mean 'events'?",
        f"lead 0 (lead_id 'L-1'): industry: {extra}; a lead's attributes go under \"attributes\" "
        "({\"attributes\": {'industry': ...}})",
        f"lead 0 (lead_id 'L-1'): events[2].occured_at: {extra}; did you mean 'occurred_at'?",
        f"lead 0 (lead_id 'L-1'): events[2].kind: {extra}; accepted: occurred_at, event_type, channel, campaign, value"]


def test_a_top_level_field_and_other_bodies() -> None:
    body = validation_error_response([{"loc": ["as_of"], "msg": "Input should be a valid datetime"}], "not json")
    assert body == {"error": "as_of: Input should be a valid datetime", "lead_index": None, "lead_id": None,
                    "field": "as_of", "errors": ["as_of: Input should be a valid datetime"]}
    assert validation_error_response([], {}) is None
    assert validation_error_response([{"msg": "no location"}], {}) is None


def test_fields_read_like_the_scoring_rules_and_odd_ids_are_not_echoed() -> None:
    detail = [{"loc": ["leads", 0, "events", 3, "occurred_at"], "msg": "Input should be a valid datetime"},
              {"loc": ["leads", 1], "msg": "Input should be a valid dictionary"}]
    body = validation_error_response(detail, {"leads": [{"lead_id": "x" * 100_000}, "not a lead"]})
    assert body["field"] == "events[3].occurred_at"  # as check_leads names it
    assert body["lead_id"] is None and "x" * 300 not in str(body)  # a 100,000-character id is not sent back
    assert body["errors"][1] == "lead 1: lead: Input should be a valid dictionary"  # no "(lead_id None)"
    assert body["errors"][0] == "lead 0: events[3].occurred_at: Input should be a valid datetime"
    listed = validation_error_response([{"loc": ["leads", 0, "lead_id"], "msg": "bad"}], {"leads": [{"lead_id": [1]}]})
    assert listed["lead_id"] is None
    huge = validation_error_response([{"loc": ["leads", 0, "lead_id"], "msg": "bad"}], {"leads": [{"lead_id": 10**4000}]})
    assert huge["lead_id"] is None and len(str(huge)) < 500


def test_keys_are_cut_short_in_the_answer() -> None:
    key = '{"leads":[{"lead_id":"SECRET-1","attributes":{"email":"jane@acme.com"}}]}' * 3000  # a form-encoded body
    body = validation_error_response([{"loc": [key], "msg": "Extra inputs are not permitted"},
                                      {"loc": ["leads", 0, "attributes", "x" * 5000, "float"], "msg": "bad"},
                                      {"loc": ["leads", 0, "attributes", "x" * 5000, "str"], "msg": "bad"}],
                                     {"leads": [{"lead_id": 3}]})
    assert len(body["field"]) == MAX_ECHOED and body["field"].endswith("...")
    assert "jane@acme.com" not in str(body) and len(str(body)) < 1000
    assert body["errors"][1].startswith("lead 0 (lead_id 3): attributes." + "x" * 20)


def test_the_log_keeps_a_few_short_locations_and_no_values() -> None:
    import logging

    from pydantic import ValidationError

    from serving.schemas import ScoreRequest
    from serving.service import RedactValidationErrors

    sent = {**{f"{'k' * 10_000}{i}": "jane@acme.com" for i in range(30)},
            "leads": [{"lead_id": 1, "created_at": "2026-01-01", "attributes": {"email": ["jane@acme.com"]}}]}
    try:
        ScoreRequest.model_validate(sent)
    except ValidationError as exc:
        error = exc
    record = logging.LogRecord("bentoml", logging.ERROR, __file__, 1, "Exception on %s [%s]", ("/score", "POST"),
                               (type(error), error, error.__traceback__))
    assert RedactValidationErrors().filter(record)
    line = record.getMessage()
    assert record.levelname == "WARNING" and record.exc_info is None
    assert "jane@acme.com" not in line and len(line) < 1000
    assert "validation error(s) at ['leads.0.attributes.email" in line


def test_default_as_of_takes_a_little_clock_skew_of_the_caller() -> None:
    from datetime import datetime, timedelta

    from serving.schemas import DEFAULT_AS_OF_SKEW, LeadIn, default_as_of

    now = datetime(2026, 3, 1, 12)
    lead = LeadIn(lead_id=1, created_at=now - timedelta(days=3),
                  events=[{"occurred_at": now + timedelta(seconds=30), "event_type": "email_open"}])
    assert default_as_of([lead], now) == now + timedelta(seconds=30, microseconds=1)
    assert default_as_of([], now) == now
    old = LeadIn(lead_id=2, created_at=now - timedelta(days=3))
    assert default_as_of([old], now) == now
    far = LeadIn(lead_id=3, created_at=now + DEFAULT_AS_OF_SKEW + timedelta(seconds=1))
    assert default_as_of([old, far], now) == now  # refused later, naming the lead


def test_an_offset_beyond_the_calendar_is_a_validation_error() -> None:
    """Year 1 at +01:00 or year 9999 at -01:00 lie outside datetime's range in UTC: the conversion's
    OverflowError escaped the request model (a 500), where a timestamp out of range is a 400."""
    import json

    import pytest
    from pydantic import ValidationError

    from serving.schemas import ScoreRequest

    for instant in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"):
        lead = {"lead_id": 1, "created_at": instant, "events": [{"occurred_at": instant, "event_type": "x"}]}
        with pytest.raises(ValidationError) as refused:
            ScoreRequest.model_validate_json(json.dumps({"leads": [lead], "as_of": instant}))
        locations = {tuple(e["loc"]) for e in refused.value.errors()}
        assert locations == {("leads", 0, "created_at"), ("leads", 0, "events", 0, "occurred_at"), ("as_of",)}
        assert all("outside [1970-01-01, 2200-01-01)" in e["msg"] for e in refused.value.errors())


def test_a_date_in_another_format_is_answered_with_the_format_expected() -> None:
    """Olist's first_contact_date is written 01-02-2018 (day first): sent as created_at it got "Input should be a
    valid datetime or date, invalid character in year", which says nothing of the format to send."""
    import pytest
    from pydantic import ValidationError

    from serving.schemas import ScoreRequest

    request = {"leads": [{"lead_id": "a", "created_at": "01-02-2018",
                          "events": [{"occurred_at": "2018-02-30", "event_type": "email_open"}]}],
               "as_of": "2018-13-01"}
    with pytest.raises(ValidationError) as error:
        ScoreRequest.model_validate(request)
    body = validation_error_response(error.value.errors(include_url=False), request)
    assert body is not None
    hint = "expected ISO 8601, such as 2026-01-31 or 2026-01-31T09:00:00Z"
    assert len(body["errors"]) == 3 and all(hint in message for message in body["errors"]), body["errors"]
    assert body["errors"][0].startswith("lead 0 (lead_id 'a'): created_at: Input should be a valid datetime")
