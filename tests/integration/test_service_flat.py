"""A real `bentoml serve` process whose champion was trained on a flat export (one row per lead, no dates):
its leads are scored from their ``attributes`` alone, without the ``created_at`` a CRM model needs (which
the request shape used to require of every lead, so callers had to invent one)."""

from __future__ import annotations

import httpx
import jsonschema
import numpy as np
import pytest

from features.build import features_from_payloads
from serving.core import ModelInfo, ScoringCore
from tests.serving_fixtures import export_champion, score_schema, start_server, train_small_flat_champion

AS_OF = "2026-03-01T00:00:00"
LEADS = [{"lead_id": "L-1", "attributes": {"Visits": 6, "Source": "organic"}},
         {"lead_id": "L-2", "attributes": {"Visits": "0", "Source": "ads"}},
         {"lead_id": 3, "attributes": {"Visits": 3}}]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    models = tmp_path_factory.mktemp("models")
    export_champion(train_small_flat_champion(), models, version="1")
    running = start_server({"LEADSCORE_MODEL_DIR": str(models), "LEADSCORE_RELOAD_SECONDS": "0"},
                           tmp_path_factory.mktemp("server") / "bentoml.log")
    yield running
    running.stop()


def post(server, body: object) -> httpx.Response:
    return httpx.post(f"{server.url}/score", json=body, timeout=30)


def test_flat_leads_without_created_at_are_scored_from_their_attributes(server) -> None:
    response = post(server, {"leads": LEADS, "as_of": AS_OF, "top_k": 2})
    assert response.status_code == 200, response.text
    scores = response.json()["scores"]
    assert [s["lead_id"] for s in scores] == ["L-1", "L-2", 3]
    model = train_small_flat_champion()
    core = ScoringCore(model, ModelInfo("lead-conversion", "1"))
    rows = features_from_payloads([{**lead, "attributes": {**lead["attributes"], "Visits": float(
        lead["attributes"]["Visits"])}} for lead in LEADS], core.spec, AS_OF)
    expected = core.score_matrix([lead["lead_id"] for lead in LEADS], rows, top_k=2).probability
    np.testing.assert_allclose([s["probability"] for s in scores], expected, rtol=1e-9)
    assert all(0 < s["probability"] < 1 and s["score"] == round(100 * s["probability"]) for s in scores)
    assert all(s["warnings"] == [] for s in scores)
    # without as_of too (scored at the server's now), and a null created_at is one left out
    again = post(server, {"leads": [{**lead, "created_at": None} for lead in LEADS], "top_k": 2})
    assert again.status_code == 200, again.text
    assert [s["probability"] for s in again.json()["scores"]] == [s["probability"] for s in scores]


def test_a_flat_lead_given_a_created_at_is_scored_the_same(server) -> None:
    """The flat model reads none of it: the answer does not change with it."""
    without = post(server, {"leads": LEADS, "as_of": AS_OF})
    given = post(server, {"leads": [{**lead, "created_at": "2025-06-30T12:00:00+02:00"} for lead in LEADS],
                          "as_of": AS_OF})
    assert without.status_code == given.status_code == 200, (without.text, given.text)
    assert given.json()["scores"] == without.json()["scores"]


@pytest.mark.parametrize(("created_at", "message"), [
    ("2026-03-02T00:00:00", "is after as_of"),  # a given created_at is still checked
    ("soon", "expected ISO 8601"),
    ("1900-01-01", "outside [1970-01-01, 2200-01-01)"),
])
def test_a_flat_lead_with_a_nonsense_created_at_gets_a_400_naming_it(server, created_at, message) -> None:
    body = {"leads": [LEADS[0], {**LEADS[1], "created_at": created_at}], "as_of": AS_OF}
    response = post(server, body)
    assert response.status_code == 400, response.text
    answer = response.json()
    assert (answer["lead_index"], answer["lead_id"], answer["field"]) == (1, "L-2", "created_at"), answer
    assert answer["error"].startswith("lead 1 (lead_id 'L-2'): created_at: ") and message in answer["error"], answer


def test_the_documented_request_lets_a_lead_leave_created_at_out(server) -> None:
    spec = httpx.get(f"{server.url}/docs.json", timeout=10).json()
    jsonschema.validate({"leads": LEADS, "as_of": AS_OF}, score_schema(spec))
    lead = spec["components"]["schemas"]["LeadIn"]
    assert lead["required"] == ["lead_id"]
    described = lead["properties"]["created_at"]["description"]
    assert "required by a CRM (event) model" in described and "flat model reads none of it" in described
