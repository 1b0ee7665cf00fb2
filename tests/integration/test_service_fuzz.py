"""Fuzz the running service: >= 500 generated requests to POST /score, zero 5xx.

schemathesis 3.39 cannot generate objects with the installed hypothesis 6.170
(hypothesis_jsonschema calls the removed ``many.more()``), so the cases are generated with
hypothesis directly: valid leads with fields replaced by arbitrary JSON, arbitrary bodies and
raw bytes. The OpenAPI schema is still checked to describe the request and response models.
"""

from __future__ import annotations

import json

import httpx
import jsonschema
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.serving_fixtures import (
    export_champion,
    export_time_to_close,
    score_schema,
    start_server,
    train_small_champion,
    train_small_time_to_close,
)

N_CASES = 500
VALID = {"lead_id": 1, "created_at": "2026-01-05T10:00:00",
         "attributes": {"industry": "software", "employees": 40, "job_title": "CTO"},
         "events": [{"occurred_at": "2026-02-01T00:00:00", "event_type": "demo_request"}]}
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30)
    | st.sampled_from(["NaN", "1969-12-31", "2026-02-30", "9999-01-01T00:00:00Z", "", "x" * 2000, -1e308]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=8,
)
paths = st.sampled_from([("lead_id",), ("created_at",), ("attributes",), ("attributes", "employees"),
                         ("attributes", "industry"), ("attributes", "annual_revenue"), ("events",),
                         ("events", 0), ("events", 0, "occurred_at"), ("events", 0, "event_type"),
                         ("events", 0, "value")])


@st.composite
def bodies(draw) -> bytes:
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.binary(max_size=200))
    if kind == 1:
        return json.dumps(draw(json_values)).encode()
    lead = json.loads(json.dumps(VALID))
    path = draw(paths)
    target = lead
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = draw(json_values)
    body = {"leads": [lead] * draw(st.integers(1, 3)), "top_k": draw(st.integers(-2, 25) | json_values)}
    if draw(st.booleans()):
        body["as_of"] = draw(st.sampled_from(["2026-03-01T00:00:00", "2025-01-01", None, 5, "soon"]))
    return json.dumps(body).encode()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    champion = train_small_champion(n_leads=600, seed=6, max_rounds=40)
    models = tmp_path_factory.mktemp("models")
    export_champion(champion.model, models, version="1")
    export_time_to_close(train_small_time_to_close(n_leads=600, seed=6, max_rounds=40), models, version="1")
    running = start_server({"LEADSCORE_MODEL_DIR": str(models), "LEADSCORE_RELOAD_SECONDS": "0",
                            "LEADSCORE_MAX_BATCH": "20"}, tmp_path_factory.mktemp("fuzz") / "bentoml.log")
    yield running
    running.stop()


def test_openapi_schema_describes_the_models(server) -> None:
    schema = httpx.get(f"{server.url}/docs.json").json()
    assert "/score" in schema["paths"]
    text = json.dumps(schema)
    for name in ("LeadIn", "EventIn", "ScoreResponse", "LeadScore", "Reason"):
        assert name in text


def test_real_answers_match_the_openapi_document(server) -> None:
    """A client generated from /docs.json reads the service's real answers: 200, 400 and 415."""
    spec = httpx.get(f"{server.url}/docs.json").json()
    body = {"leads": [VALID], "as_of": None, "top_k": None}
    jsonschema.validate(body, score_schema(spec))
    ok = httpx.post(f"{server.url}/score", json=body, timeout=30)
    assert ok.status_code == 200, ok.text
    jsonschema.validate(ok.json(), score_schema(spec, "200"))
    jsonschema.validate({**ok.json(), "time_to_close_model": None}, score_schema(spec, "200"))  # no such model
    for bad in ({"leads": [{**VALID, "created_at": "soon"}]}, {"leads": []}, {"leads": [VALID], "asof": 1}):
        refused = httpx.post(f"{server.url}/score", json=bad, timeout=30)
        assert refused.status_code == 400
        jsonschema.validate(refused.json(), score_schema(spec, "400"))
    multipart = httpx.post(f"{server.url}/score", files={"leads": b"[]"}, timeout=30)
    assert multipart.status_code == 415
    jsonschema.validate(multipart.json(), score_schema(spec, "415"))
    assert "401" not in spec["paths"]["/score"]["post"]["responses"]  # no API keys on this server


@pytest.mark.timeout(600)  # every generated case is sent; a hung server fails the test
def test_fuzzed_requests_never_get_a_5xx(server) -> None:
    failures: list[str] = []
    statuses: dict[int, int] = {}
    client = httpx.Client(base_url=server.url, timeout=10, headers={"content-type": "application/json"})

    @settings(max_examples=N_CASES, deadline=None, phases=[Phase.generate], database=None,
              suppress_health_check=list(HealthCheck))
    @given(body=bodies())
    def run(body: bytes) -> None:
        response = client.post("/score", content=body)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        if response.status_code >= 500:
            failures.append(f"{response.status_code}: {body[:300]!r} -> {response.text[:300]}")

    try:
        run()
    finally:
        client.close()
    assert not failures, failures[:5]
    assert sum(statuses.values()) >= N_CASES, statuses
    assert statuses.get(200, 0) > 0 and statuses.get(400, 0) > 0, statuses
