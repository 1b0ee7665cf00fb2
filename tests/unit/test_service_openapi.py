"""The /docs.json document describes what POST /score accepts and answers (validated with jsonschema)."""

from __future__ import annotations

import json

import jsonschema
import pytest

from serving.openapi import documented
from serving.service import LeadScoringService
from tests.serving_fixtures import score_schema

ANSWER = {"model": {"name": "lead-conversion", "version": "1"}, "time_to_close_model": None,
          "as_of": "2026-03-01T00:00:00", "scores": []}


@pytest.fixture(scope="module")
def bentoml_spec() -> dict:
    return json.loads(json.dumps(LeadScoringService.openapi_spec.asdict()))  # as served: string status codes


def test_bentoml_alone_drops_the_nulls_and_the_error_shape(bentoml_spec) -> None:
    """Why documented() exists: these hold for BentoML's own document (if one fails, BentoML changed)."""
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(ANSWER, score_schema(bentoml_spec, "200"))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"leads": [{"lead_id": 1, "created_at": "2026-01-01"}], "as_of": None},
                            score_schema(bentoml_spec))


def test_optional_fields_may_be_null(bentoml_spec) -> None:
    spec = documented(bentoml_spec, keys_required=False)
    jsonschema.validate(ANSWER, score_schema(spec, "200"))
    lead = {"lead_id": 1, "created_at": "2026-01-01"}
    jsonschema.validate({"leads": [lead], "as_of": None, "top_k": None}, score_schema(spec))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"leads": [lead], "as_of": 5}, score_schema(spec))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"leads": [lead], "top_k": 21}, score_schema(spec))
    as_of = score_schema(spec)["properties"]["as_of"]
    assert as_of["description"].startswith("scoring instant") and as_of["anyOf"][0]["format"] == "date-time"


def test_a_lead_may_leave_created_at_out_as_documented(bentoml_spec) -> None:
    """Only a CRM model needs ``created_at`` (a flat model reads none of it): the document says so, and
    accepts a lead without it or with null, but not with another type."""
    spec = documented(bentoml_spec, keys_required=False)
    for lead in ({"lead_id": "L1", "attributes": {"Visits": 3}}, {"lead_id": "L1", "created_at": None}):
        jsonschema.validate({"leads": [lead]}, score_schema(spec))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"leads": [{"lead_id": 1, "created_at": 5}]}, score_schema(spec))
    lead_in = spec["components"]["schemas"]["LeadIn"]
    assert lead_in["required"] == ["lead_id"]
    assert "required by a CRM (event) model" in lead_in["properties"]["created_at"]["description"]
    assert "flat model reads none of it" in lead_in["properties"]["created_at"]["description"]


def test_error_answers_have_the_service_shape(bentoml_spec) -> None:
    spec = documented(bentoml_spec, keys_required=False)
    error = {"error": "lead 0 (lead_id 7): created_at: bad", "lead_index": 0, "lead_id": 7, "field": "created_at",
             "errors": ["lead 0 (lead_id 7): created_at: bad"]}
    for status in ("400", "413", "415", "500", "503"):
        jsonschema.validate(error, score_schema(spec, status))
    assert "errors" in spec["components"]["schemas"]["ErrorResponse"]["properties"]
    assert "404" not in spec["paths"]["/score"]["post"]["responses"]
    assert "401" not in spec["paths"]["/score"]["post"]["responses"] and "securitySchemes" not in spec["components"]
    assert [p["name"] for p in spec["paths"]["/score"]["post"]["parameters"]] == ["top_k"]


def test_api_keys_are_documented_when_configured(bentoml_spec) -> None:
    spec = documented(bentoml_spec, keys_required=True)
    assert "401" in spec["paths"]["/score"]["post"]["responses"]
    assert spec["components"]["securitySchemes"]["apiKey"] == {"type": "http", "scheme": "bearer"}
    for path, method in (("/score", "post"), ("/model", "get"), ("/reload", "post")):
        assert spec["paths"][path][method]["security"] == [{"apiKey": []}]
    assert "security" not in spec["paths"]["/livez"]["get"]
    assert "8 MiB (LEADSCORE_MAX_BODY_MB)" in documented(bentoml_spec, False, max_body_mb=8)["paths"]["/score"][
        "post"]["responses"]["413"]["description"]
    assert "2.5 s (LEADSCORE_RECEIVE_TIMEOUT_SECONDS)" in documented(bentoml_spec, False, receive_timeout_seconds=2.5)[
        "paths"]["/score"]["post"]["responses"]["408"]["description"]
    assert bentoml_spec["paths"]["/score"]["post"]["responses"].get("401") is None  # the input is not changed
