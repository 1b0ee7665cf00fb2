"""The request model's refusals, reshaped like the scoring rules' (one error shape for clients)."""

from __future__ import annotations

from serving.schemas import validation_error_response


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
                                  "lead 1 (lead_id 7): foo: Extra inputs are not permitted",
                                  "asOf: Extra inputs are not permitted"]
    assert body["error"].startswith("4 invalid fields; first: lead 1 (lead_id 7): attributes.industry: not valid")


def test_a_top_level_field_and_other_bodies() -> None:
    body = validation_error_response([{"loc": ["as_of"], "msg": "Input should be a valid datetime"}], "not json")
    assert body == {"error": "as_of: Input should be a valid datetime", "lead_index": None, "lead_id": None,
                    "field": "as_of", "errors": ["as_of: Input should be a valid datetime"]}
    assert validation_error_response([], {}) is None
    assert validation_error_response([{"msg": "no location"}], {}) is None
