"""The service's OpenAPI document (``/docs.json``) as ``/score`` really answers.

BentoML generates the document from the pydantic IO models but describes every error as its own
``{"error", "detail"}``, leaves out the 401 (API keys), 408 (body that stopped coming), 413 (body over
the limit), 415 (multipart body)
and 503 (no model yet) answers and the ``?top_k=`` query value, and flattens each top-level field's ``anyOf`` to its first
member: ``as_of`` and ``top_k`` of the request and ``time_to_close_model`` of the answer lose their
``null``. :func:`documented` puts these back, in the style of the nested models (``anyOf`` with
``{"type": "null"}``, as pydantic writes them).
"""

from __future__ import annotations

import copy
from typing import Any

from serving.schemas import MAX_TOP_K, ErrorResponse, ScoreRequest, ScoreResponse

COMPONENT = "#/components/schemas/"
ERROR = "ErrorResponse"
SECURITY_SCHEME = "apiKey"


def _error_answer(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": f"{COMPONENT}{ERROR}"}}}}


def _nullable(schema: dict[str, Any], field: str) -> None:
    """``field`` of the flattened ``schema`` back to ``anyOf: [<type>, null]`` (title, description,
    default kept beside)."""
    properties = schema.get("properties", {})
    if field not in properties or "anyOf" in properties[field]:
        return
    flat = properties[field]
    outer = {k: flat.pop(k) for k in ("title", "description", "default") if k in flat}
    properties[field] = {"anyOf": [flat, {"type": "null"}], **outer}


def documented(spec: dict[str, Any], keys_required: bool, max_body_mb: int | None = None,
               receive_timeout_seconds: float | None = None) -> dict[str, Any]:
    """A copy of BentoML's OpenAPI document (as JSON: string status codes) describing ``POST /score``
    as it answers; ``keys_required``: API keys are configured (401s, bearer security); ``max_body_mb``:
    the service's body limit (named in the 413); ``receive_timeout_seconds``: its receive timeout (the 408)."""
    out = copy.deepcopy(spec)
    operation = out.get("paths", {}).get("/score", {}).get("post")
    if operation is None:
        return out
    schemas = out.setdefault("components", {}).setdefault("schemas", {})
    schemas[ERROR] = ErrorResponse.model_json_schema(ref_template=COMPONENT + "{model}")
    request = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
    for field, info in ScoreRequest.model_fields.items():
        if not info.is_required():
            _nullable(request, field)
    answer = operation.get("responses", {}).get("200", {}).get("content", {}).get("application/json", {})
    for field, info in ScoreResponse.model_fields.items():
        if not info.is_required():
            _nullable(answer.get("schema", {}), field)
    responses = operation.setdefault("responses", {})
    responses.pop("404", None)  # never answered by /score (BentoML's generic list)
    responses["400"] = _error_answer("Bad request: the lead (lead_index, lead_id) and field of the first error, "
                                     "every error under errors")
    limit = "LEADSCORE_MAX_BODY_MB" if max_body_mb is None else f"{max_body_mb} MiB (LEADSCORE_MAX_BODY_MB)"
    wait = ("LEADSCORE_RECEIVE_TIMEOUT_SECONDS" if receive_timeout_seconds is None
            else f"{receive_timeout_seconds:g} s (LEADSCORE_RECEIVE_TIMEOUT_SECONDS)")
    responses["408"] = _error_answer(f"Request body incomplete: no byte of it came for {wait}, or it was not "
                                     "complete after half of LEADSCORE_REQUEST_TIMEOUT_SECONDS; the connection is "
                                     "closed")
    responses["413"] = _error_answer(f"Request body over {limit}, refused before it is read: split the leads "
                                     "over several requests")
    responses["415"] = _error_answer("A multipart, form-encoded or compressed body: send plain JSON")
    responses["500"] = _error_answer("Scoring failed inside the model: error_id is also in the server log")
    responses["503"] = _error_answer("No model loaded yet")
    operation["parameters"] = [{
        "name": "top_k", "in": "query", "required": False,
        "description": "reasons per lead; overrides the body's top_k",
        "schema": {"type": "integer", "minimum": 0, "maximum": MAX_TOP_K},
    }]
    if keys_required:
        responses["401"] = _error_answer("Missing or invalid API key (Authorization: Bearer <key>)")
        out["components"].setdefault("securitySchemes", {})[SECURITY_SCHEME] = {"type": "http", "scheme": "bearer"}
        for path in ("/score", "/model", "/reload"):
            for method in out["paths"].get(path, {}).values():
                method["security"] = [{SECURITY_SCHEME: []}]
    return out
