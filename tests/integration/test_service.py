"""A real `bentoml serve` process: scores, reasons, parity with batch, auth, validation, reload."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import bentoml
import httpx
import jsonschema
import pandas as pd
import pytest
import sqlalchemy as sa

from features.build import scoring_matrix
from features.contract import ContractError, DataConfig, SourceConfig
from features.loading import load_crm
from features.schema import LEAD_ID
from serving.core import ModelInfo, ScoringCore
from serving.rescore import data_config_for, unseen_values_of
from serving.schemas import MAX_TOP_K
from tests.serving_fixtures import (
    AS_OF,
    ROOT,
    category_levels_that_differ,
    export_champion,
    export_time_to_close,
    payloads_from_crm,
    score_schema,
    start_server,
    train_small_champion,
    train_small_time_to_close,
)

KEY = "test-key-123"
AUTH = {"Authorization": f"Bearer {KEY}"}
MAX_BATCH = 50


MARKERS = ("", "Select")  # the served model's project reads "Select" as missing (X Education's export)
CATEGORY = "industry"  # a categorical attribute the served champion's score depends on (checked in its fixture)


@pytest.fixture(scope="module")
def champion():
    """The fixture's default champion (1,500 leads): its score depends on the lead's industry, so the tests
    that send category variants of a lead can see the endpoint get a category wrong (800 leads of seed 4, the
    champion before, split on no categorical attribute: every category scored alike)."""
    trained = train_small_champion(missing_values=MARKERS)
    category_levels_that_differ(trained, CATEGORY)
    return trained


@pytest.fixture(scope="module")
def closing_model():
    return train_small_time_to_close()


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory, champion, closing_model) -> Path:
    """Both champions exported, as `leadscore models export` (+ `--model-name lead-time-to-close`) leave them."""
    models = tmp_path_factory.mktemp("models")
    export_champion(champion.model, models, version="1", mql_cutoff=4)
    export_time_to_close(closing_model, models, version="5")
    return models


@pytest.fixture(scope="module")
def served_core(champion, closing_model) -> ScoringCore:
    """The scoring core of the models the server serves (versions 1 and 5, MQL cut-off 4), in process."""
    return ScoringCore(champion.model, ModelInfo("lead-conversion", "1", mql_cutoff=4),
                       closing=(closing_model, ModelInfo("lead-time-to-close", "5")))


@pytest.fixture(scope="module")
def server(tmp_path_factory, models_dir):
    log = tmp_path_factory.mktemp("server") / "bentoml.log"
    env = {"LEADSCORE_MODEL_DIR": str(models_dir), "LEADSCORE_API_KEYS": f"other-key,{KEY}",
           "LEADSCORE_MAX_BATCH": str(MAX_BATCH), "LEADSCORE_RELOAD_SECONDS": "0"}
    running = start_server(env, log)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def payloads(champion):
    ids = [int(i) for i in champion.crm.leads["lead_id"].iloc[:30]]
    return ids, payloads_from_crm(champion.crm, ids, AS_OF)


def post(server, body, headers=AUTH, **params):
    return httpx.post(f"{server.url}/score", json=body, headers=headers, params=params, timeout=30)


def _scores_alike(server, leads: list[dict], same_as: list[dict]) -> list[dict]:
    """The scores of ``leads`` (top 3 reasons, at AS_OF), asserted equal to those of ``same_as``."""
    body = {"as_of": AS_OF.isoformat(), "top_k": 3}
    answers = [post(server, {**body, "leads": sent}) for sent in (leads, same_as)]
    for answer in answers:
        assert answer.status_code == 200, answer.text
    assert answers[0].json()["scores"] == answers[1].json()["scores"]
    return answers[0].json()["scores"]


def _assert_the_table_paths(scores: list[dict], core: ScoringCore, crm, ids: list, unseen: bool = False) -> None:
    """``scores`` equal what the batch path gives the leads ``ids`` of ``crm`` (probability to 1e-12, the
    reasons' features and values); ``unseen``: with the unseen-category warnings of the table."""
    all_ids, matrix = scoring_matrix(crm, core.spec, AS_OF, eligible_only=False)
    rows = [list(all_ids).index(i) for i in ids]
    warnings = (unseen_values_of(crm, core.spec, all_ids[rows]),) if unseen else ()
    expected = core.score_matrix(all_ids[rows], matrix[rows], 3, *warnings).to_records()
    for got, want in zip(scores, expected, strict=True):
        assert got["probability"] == pytest.approx(want["probability"], abs=1e-12)
        assert [r["feature"] for r in got["reasons"]] == [r["feature"] for r in want["reasons"]]
        assert [r["value"] for r in got["reasons"]] == [r["value"] for r in want["reasons"]]


def test_health_and_metrics(server) -> None:
    assert httpx.get(f"{server.url}/livez").status_code == 200
    assert httpx.get(f"{server.url}/readyz").status_code == 200
    metrics = httpx.get(f"{server.url}/metrics")
    assert metrics.status_code == 200 and "bentoml" in metrics.text


def test_model_endpoint(server) -> None:
    info, closing = httpx.get(f"{server.url}/model", headers=AUTH).json()["models"]
    assert info["name"] == "lead-conversion" and info["version"] == "1"
    assert info["horizon_days"] == 90 and info["mql_cutoff"] == 4 and info["training_date"] == "2026-06-30"
    assert (closing["name"], closing["version"], closing["horizon_days"]) == ("lead-time-to-close", "5", 182)


def test_auth_is_required(server, payloads) -> None:
    body = {"leads": payloads[1][:1], "as_of": AS_OF.isoformat()}
    assert post(server, body, headers={}).status_code == 401
    assert post(server, body, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert post(server, body, headers={"Authorization": f"Basic {KEY}"}).status_code == 401
    assert post(server, body, headers={"Authorization": f"Bearer {KEY}x"}).status_code == 401
    assert post(server, body, headers={"Authorization": f"bearer {KEY}"}).status_code == 200  # scheme is case-blind
    assert httpx.get(f"{server.url}/model").status_code == 401
    assert httpx.post(f"{server.url}/reload").status_code == 401
    assert post(server, body).status_code == 200


@pytest.mark.parametrize("body", [
    b'{"leads": [{"lead_id": 1, "created_at": "not a date"}]}',  # the request model refuses it
    b'{"leads": [',  # not JSON
    b'{"leads": [{"lead_id": 1, "created_at": "2026-01-01"}], "top_k": 99}',
])
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}])
def test_the_api_key_is_checked_before_the_body(server, body, headers) -> None:
    """A caller without a valid key learns nothing about its request and costs no parsing: 401, not 400."""
    response = httpx.post(f"{server.url}/score", content=body, timeout=30,
                          headers={**headers, "content-type": "application/json"})
    assert response.status_code == 401, response.text
    assert response.json() == {"error": "missing or invalid API key (Authorization: Bearer <key>)"}
    assert response.headers["www-authenticate"] == "Bearer"


def test_the_openapi_document_names_the_api_key(server) -> None:
    spec = httpx.get(f"{server.url}/docs.json").json()  # public, as /livez and /readyz
    assert spec["components"]["securitySchemes"]["apiKey"] == {"type": "http", "scheme": "bearer"}
    assert spec["paths"]["/score"]["post"]["security"] == [{"apiKey": []}]
    refused = httpx.post(f"{server.url}/score", json={"leads": []}, timeout=30)
    jsonschema.validate(refused.json(), score_schema(spec, "401"))


def test_http_answer_equals_batch_core(server, champion, served_core, payloads) -> None:
    ids, leads = payloads
    response = post(server, {"leads": leads, "as_of": AS_OF.isoformat(), "top_k": 3})
    assert response.status_code == 200, response.text
    answer = response.json()
    core = served_core
    all_ids, matrix = scoring_matrix(champion.crm, core.spec, AS_OF, eligible_only=False)
    rows = [list(all_ids).index(i) for i in ids]
    expected = core.score_matrix(all_ids[rows], matrix[rows], 3).to_records()
    assert [s["lead_id"] for s in answer["scores"]] == ids
    for got, want in zip(answer["scores"], expected, strict=True):
        assert got["probability"] == pytest.approx(want["probability"], abs=1e-12)
        assert (got["score"], got["grade"], got["mql"]) == (want["score"], want["grade"], want["mql"])
        assert got["fit_score"] == pytest.approx(want["fit_score"], abs=1e-9)
        assert [r["feature"] for r in got["reasons"]] == [r["feature"] for r in want["reasons"]]
        assert [r["value"] for r in got["reasons"]] == [r["value"] for r in want["reasons"]]
        for field in ("p_close_30d", "p_close_60d", "p_close_90d"):
            assert got[field] == pytest.approx(want[field], abs=1e-12)
        assert got["median_days"] == (None if want["median_days"] is None else pytest.approx(want["median_days"]))
    assert answer["model"]["version"] == "1"
    assert answer["time_to_close_model"]["name"] == "lead-time-to-close"
    assert answer["time_to_close_model"]["version"] == "5"
    assert len({s["p_close_90d"] for s in answer["scores"]}) > 1


def _as_text(value: float, form: int) -> str:
    """A number written as a CRM writes it as text: plainly ("250"), with blanks, or signed with an exponent."""
    return [str(int(value)) if value == int(value) else repr(value), f" {value!r} ", f"+{value!r}e0"][form % 3]


def _crm_database(champion, ids: list[int], path: Path, numeric_as: dict[int, dict[str, str]],
                 categorical_as: dict[int, dict[str, str]] | None = None,
                 event_values: dict[int, str | None] | None = None) -> str:
    """A SQLite CRM of the leads ``ids`` whose numeric attributes are TEXT columns holding ``numeric_as``,
    and whose categorical attributes hold the values of ``categorical_as`` where it gives one; with
    ``event_values``, the events' ``value`` is a TEXT column holding, for every event of a lead, its text."""
    crm = champion.crm
    leads = crm.leads[crm.leads[LEAD_ID].isin(ids)].copy()
    for name in crm.numeric_attributes:
        leads[name] = [numeric_as.get(i, {}).get(name) for i in leads[LEAD_ID]]
    for lead_id, values in (categorical_as or {}).items():
        for name, value in values.items():
            leads[name] = leads[name].astype(object)
            leads.loc[leads[LEAD_ID] == lead_id, name] = value
    url = f"sqlite:///{path}"
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        leads.to_sql("leads", connection, index=False, dtype={n: sa.Text() for n in crm.numeric_attributes})
        events = crm.events[crm.events[LEAD_ID].isin(ids)].astype({"event_type": str})
        if event_values is not None:
            events = events.assign(value=events[LEAD_ID].map(event_values).astype(object))
        events.to_sql("events", connection, index=False, dtype={"value": sa.Text()} if event_values is not None else None)
        crm.outcomes[crm.outcomes[LEAD_ID].isin(ids)].to_sql("outcomes", connection, index=False)
    engine.dispose()
    return url


def test_numbers_sent_as_text_score_as_the_numbers_and_as_the_table_path_reads_them(
        server, champion, served_core, payloads, tmp_path) -> None:
    """A CRM that sends every property as text (HubSpot's API does): "250", " 250.0 ", "+250.0e0" score as
    250 (same probability, reasons, warnings), "" as missing, and as the data contract reads the same texts
    from a table's TEXT column (batch rescoring): endpoint == batch for them."""
    ids, leads = payloads
    numeric = champion.crm.numeric_attributes
    leads = json.loads(json.dumps(leads))
    for lead in leads[2:4]:
        lead["attributes"].pop(numeric[0], None)
    as_text = json.loads(json.dumps(leads))
    texts: dict[int, dict[str, str]] = {}
    for i, lead in enumerate(as_text):
        for j, name in enumerate(numeric):
            if name in lead["attributes"]:
                lead["attributes"][name] = _as_text(lead["attributes"][name], i + j)
            elif i % 2:
                lead["attributes"][name] = ""  # missing, as an empty field of the table is
            if name in lead["attributes"]:
                texts.setdefault(lead["lead_id"], {})[name] = lead["attributes"][name]
    assert sum(v == "" for t in texts.values() for v in t.values()) >= 2 and any(
        " " in v for t in texts.values() for v in t.values())
    scores = _scores_alike(server, as_text, leads)
    body = {"as_of": AS_OF.isoformat(), "top_k": 3}

    # the table path: the same texts in a SQLite TEXT column, read and validated as a rescore does
    core = served_core
    source = DataConfig(source=SourceConfig(kind="sql", url=_crm_database(champion, ids, tmp_path / "crm.db", texts)),
                        reference_time="2030-01-01")
    crm, _ = load_crm(data_config_for(source, core.spec))
    by_id = crm.leads.set_index(LEAD_ID)
    sent = pd.DataFrame([{n: lead["attributes"].get(n) for n in numeric} for lead in leads], index=ids, dtype=float)
    pd.testing.assert_frame_equal(by_id.loc[ids, numeric], sent, check_names=False)  # the numbers, "" missing
    _assert_the_table_paths(scores, core, crm, ids)

    # text that is no number: the table path refuses the row (strict), the endpoint answers 400 naming it
    for bad in ("abc", "1,000", "NaN", "inf"):
        url = _crm_database(champion, ids[:3], tmp_path / f"bad-{bad}.db", {ids[1]: {numeric[0]: bad}})
        with pytest.raises(ContractError, match=rf"leads.{numeric[0]}: wrong_type: 1 row"):
            load_crm(data_config_for(DataConfig(source=SourceConfig(kind="sql", url=url),
                                                reference_time="2030-01-01"), core.spec))
        refused = json.loads(json.dumps(as_text[:3]))
        refused[1]["attributes"][numeric[0]] = bad
        response = post(server, {**body, "leads": refused})
        assert response.status_code == 400, response.text
        assert (response.json()["lead_index"], response.json()["lead_id"], response.json()["field"]) == (
            1, ids[1], f"attributes.{numeric[0]}")


def test_missing_markers_of_the_project_score_as_missing_and_as_the_table_path_reads_them(
        server, champion, served_core, payloads, tmp_path) -> None:
    """The served model's project declares ``missing_values: ["", "Select"]``: "Select" sent for a numeric
    and a categorical attribute scores as the lead without them (no 400, no unseen-category warning), and
    exactly as a batch rescore of a table holding "Select" (read through the same contract) scores it."""
    ids, leads = payloads
    numeric, categorical = champion.crm.numeric_attributes, CATEGORY
    marked = json.loads(json.dumps(leads))
    absent = json.loads(json.dumps(leads))
    texts: dict[int, dict[str, str | None]] = {}
    for i, (lead, bare) in enumerate(zip(marked, absent, strict=True)):
        names = [numeric[i % 2], categorical] if i % 3 == 0 else [numeric[i % 2]] if i % 3 == 1 else []
        for name in names:
            lead["attributes"][name] = "Select"
            bare["attributes"].pop(name, None)
        texts[lead["lead_id"]] = {n: None if n not in lead["attributes"] else
                                  "Select" if lead["attributes"][n] == "Select" else repr(lead["attributes"][n])
                                  for n in numeric}
    assert sum(v == "Select" for t in texts.values() for v in t.values()) >= 10
    scores = _scores_alike(server, marked, absent)
    assert not any("unseen" in w for s in scores for w in s["warnings"])
    body = {"as_of": AS_OF.isoformat(), "top_k": 3}

    # the table path: the same "Select" texts in a SQLite CRM, read and validated as a rescore does
    core = served_core
    assert core.spec.missing_values_ == list(MARKERS)
    selected = [lead["lead_id"] for lead in marked if lead["attributes"].get(categorical) == "Select"]
    url = _crm_database(champion, ids, tmp_path / "crm.db", texts, {i: {categorical: "Select"} for i in selected})
    source = DataConfig(source=SourceConfig(kind="sql", url=url), reference_time="2030-01-01",
                        missing_values=list(MARKERS))
    crm, _ = load_crm(data_config_for(source, core.spec))
    by_id = crm.leads.set_index(LEAD_ID)
    assert len(selected) >= 5 and by_id.loc[selected, categorical].isna().all()
    assert by_id.loc[ids, numeric].isna().sum().sum() >= 10
    _assert_the_table_paths(scores, core, crm, ids, unseen=True)

    # an event type "Select" is a missing type (the contract's null_value): refused as "" is, naming the event
    refused = json.loads(json.dumps(marked[:2]))
    refused[1]["events"] = [*refused[1]["events"], {"occurred_at": refused[1]["created_at"], "event_type": "Select"}]
    response = post(server, {**body, "leads": refused})
    assert response.status_code == 400, response.text
    assert (response.json()["lead_index"], response.json()["lead_id"], response.json()["field"]) == (
        1, ids[1], f"events[{len(refused[1]['events']) - 1}].event_type")


def test_an_event_value_given_as_a_missing_marker_scores_as_the_table_path_reads_it(
        server, champion, served_core, payloads, tmp_path) -> None:
    """An event's ``value`` "Select" (a marker of the served model's project) or "" was a 400 (the request
    model took only numbers), though the contract reads an events table's ``value`` column holding them as
    missing. Now: missing (no feature reads an event's value: the score of the lead without values), a
    number as text its number, and the same scores as the table path reading the same texts; text that is no
    number is refused by both (the contract's wrong_type, a 400 naming the event)."""
    ids, leads = payloads
    texts = {lead_id: ["Select", "", "12.5", None][i % 4] for i, lead_id in enumerate(ids)}
    valued = json.loads(json.dumps(leads))
    for lead in valued:
        for event in lead["events"]:
            event["value"] = texts[lead["lead_id"]]
    assert sum(len(lead["events"]) for lead in valued if texts[lead["lead_id"]] == "Select") >= 5
    scores = _scores_alike(server, valued, leads)
    body = {"as_of": AS_OF.isoformat(), "top_k": 3}

    # the table path: the same texts in the events' TEXT column, read through the project's contract
    core = served_core
    numeric = {lead["lead_id"]: {n: repr(v) for n, v in lead["attributes"].items()
                                 if n in champion.crm.numeric_attributes} for lead in leads}
    url = _crm_database(champion, ids, tmp_path / "crm.db", numeric, event_values=texts)
    crm, _ = load_crm(data_config_for(DataConfig(source=SourceConfig(kind="sql", url=url),
                                                 reference_time="2030-01-01", missing_values=list(MARKERS)), core.spec))
    read = crm.events.groupby(LEAD_ID)["value"].agg(lambda v: sorted(set(v.fillna(-1.0))))
    assert {tuple(read[i]) for i in ids if texts[i] in ("Select", "", None)} == {(-1.0,)}  # missing
    assert {tuple(read[i]) for i in ids if texts[i] == "12.5"} == {(12.5,)}
    _assert_the_table_paths(scores, core, crm, ids)

    # text that is no number: the table path refuses the row (strict), the endpoint answers 400 naming it
    with_events = next(i for i, lead in enumerate(leads) if lead["events"] and i > 0)
    bad_url = _crm_database(champion, ids, tmp_path / "bad.db", numeric, event_values={ids[with_events]: "abc"})
    with pytest.raises(ContractError, match=r"events.value: wrong_type"):
        load_crm(DataConfig(source=SourceConfig(kind="sql", url=bad_url), reference_time="2030-01-01",
                            missing_values=list(MARKERS)))
    refused = json.loads(json.dumps(leads[: with_events + 1]))
    refused[with_events]["events"][0]["value"] = "abc"
    response = post(server, {**body, "leads": refused})
    assert response.status_code == 400, response.text
    assert (response.json()["lead_index"], response.json()["lead_id"], response.json()["field"]) == (
        with_events, ids[with_events], "events[0].value")


def test_a_lead_id_given_as_a_missing_marker_is_refused_as_the_table_path_refuses_it(
        server, champion, payloads, tmp_path) -> None:
    """A lead whose id is "Select" (a marker of the served model's project) was scored as an ordinary id,
    though the contract reads such a row of a leads table as one without its id (null_value: refused, or
    quarantined). Now a 400 naming the lead's position and ``lead_id``, the missing id not echoed (as the
    empty id, which the request model refuses); two such leads are two errors, not one id given twice."""
    ids, leads = payloads
    url = _crm_database(champion, ids[:4], tmp_path / "crm.db", {})
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE leads SET lead_id = 'Select' WHERE lead_id = :id"), {"id": ids[1]})
    engine.dispose()
    with pytest.raises(ContractError, match=r"leads.lead_id: null_value: 1 row"):
        load_crm(DataConfig(source=SourceConfig(kind="sql", url=url), reference_time="2030-01-01",
                            missing_values=list(MARKERS)))
    body = {"as_of": AS_OF.isoformat()}
    for given in ("Select", ""):
        refused = json.loads(json.dumps(leads[:4]))
        refused[1]["lead_id"] = refused[3]["lead_id"] = given
        response = post(server, {**body, "leads": refused})
        assert response.status_code == 400, response.text
        answer = response.json()
        assert (answer["lead_index"], answer["lead_id"], answer["field"]) == (1, None, "lead_id"), answer
        assert answer["error"].startswith("2 errors; first: lead 1: lead_id: "), answer["error"]
        assert [e.split(":")[0] for e in answer["errors"]] == ["lead 1", "lead 3"], answer["errors"]


def test_numbers_for_categorical_attributes_are_their_text(server, payloads) -> None:
    """``"industry": 5`` is the category "5", as a table's number in a categorical column is: scored as
    the text "5" (unseen here: as unknown, with the warning)."""
    lead = json.loads(json.dumps(payloads[1][0]))
    answers = []
    for value in (5, "5", 5.0):
        lead["attributes"]["industry"] = value
        response = post(server, {"leads": [lead], "as_of": AS_OF.isoformat()})
        assert response.status_code == 200, response.text
        answers.append(response.json()["scores"])
    assert answers[0] == answers[1] == answers[2]
    assert "attribute 'industry': unseen category '5' scored as unknown" in answers[0][0]["warnings"]


def test_sync_client_and_top_k(server, payloads) -> None:
    with bentoml.SyncHTTPClient(server.url, token=KEY) as client:
        result = client.score(leads=payloads[1][:2], as_of=AS_OF.isoformat(), top_k=0)
    scores = result["scores"] if isinstance(result, dict) else result.scores
    first = scores[0] if isinstance(scores[0], dict) else scores[0].model_dump()
    assert first["reasons"] == [] and first["fit_score"] is None and 0 <= first["score"] <= 100
    five = post(server, {"leads": payloads[1][:1], "as_of": AS_OF.isoformat()}, top_k=5).json()
    assert len(five["scores"][0]["reasons"]) == 5


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda lead: lead.pop("created_at"), "created_at"),
        (lambda lead: lead.update(created_at="yesterday-ish"), "created_at"),
        (lambda lead: lead.update(created_at="1900-01-01T00:00:00"), "created_at"),
        (lambda lead: lead.update(created_at="3000-01-01T00:00:00"), "created_at"),
        (lambda lead: lead["attributes"].update(employees=-5), "employees"),
        (lambda lead: lead["attributes"].update(employees="lots"), "employees"),
        (lambda lead: lead["attributes"].update(industry="x" * 5000), "industry"),
        (lambda lead: lead["events"].append({"occurred_at": "2026-05-01T00:00:00", "event_type": "email_open"}),
         "occurred_at"),
        (lambda lead: lead["events"].append({"occurred_at": "2026-01-01T00:00:00"}), "event_type"),
        (lambda lead: lead.update(lead_id=[1, 2]), "lead_id"),
    ],
)
def test_bad_leads_get_400_naming_the_field(server, payloads, mutate, needle) -> None:
    leads = json.loads(json.dumps(payloads[1][:2]))
    mutate(leads[1])
    response = post(server, {"leads": leads, "as_of": AS_OF.isoformat()})
    assert response.status_code == 400, response.text
    body = response.json()  # one shape, whether the request model or the scoring rules refused it
    assert set(body) == {"error", "lead_index", "lead_id", "field", "errors"}, body
    sent = leads[1].get("lead_id")
    assert body["lead_index"] == 1 and needle in body["field"]
    assert body["lead_id"] == (sent if isinstance(sent, int | str) else None)  # an invalid id is not echoed
    shown = "lead 1: " if body["lead_id"] is None else f"lead 1 (lead_id {body['lead_id']!r}): "
    assert body["error"].startswith(shown) and "Descriptor" not in response.text
    assert "Traceback" not in response.text


def test_nan_empty_and_oversized_batches(server, payloads) -> None:
    raw = json.dumps({"leads": payloads[1][:1], "as_of": AS_OF.isoformat()}).replace(
        '"attributes": {', '"attributes": {"annual_revenue": NaN, ', 1)
    nan = httpx.post(f"{server.url}/score", content=raw, headers={**AUTH, "content-type": "application/json"})
    assert nan.status_code == 400 and "annual_revenue" in nan.text
    empty = post(server, {"leads": []})
    assert empty.status_code == 400 and empty.json()["field"] == "leads", empty.text
    big = post(server, {"leads": payloads[1][:1] * (MAX_BATCH + 1), "as_of": AS_OF.isoformat()})
    assert big.status_code == 400 and str(MAX_BATCH) in big.text
    for top_k in ("x", "\u00b2"):  # "\u00b2": a digit int() refuses
        refused = post(server, {"leads": payloads[1][:1]}, top_k=top_k)
        assert refused.status_code == 400, refused.text
        assert refused.json()["field"] == "top_k" and f"query value {top_k!r}" in refused.json()["error"], refused.text
    misspelt = post(server, {"leads": payloads[1][:1], "asOf": AS_OF.isoformat()})  # would score at "now"
    assert misspelt.status_code == 400 and "asOf: Extra inputs are not permitted; did you mean 'as_of'?" in misspelt.text
    event = {"occurred_at": "2026-01-01T00:00:00", "event_type": "email_open"}
    crowded = [{**payloads[1][0], "events": [event] * 9_000}] * 60  # each lead within its limit, too many in all
    too_many = post(server, {"leads": crowded, "as_of": AS_OF.isoformat()})
    assert too_many.status_code == 400 and "events in total" in too_many.text


@pytest.mark.parametrize(
    ("as_of", "needle"),
    [("3000-01-01T00:00:00", "as_of"), ("1900-01-01T00:00:00", "as_of"), ("soon", "as_of"),
     ("2150-01-01T00:00:00", "in the future"),
     ("2020-01-01T00:00:00", "created_at")],  # before the lead was created
)
def test_bad_as_of_gets_400_naming_the_field(server, payloads, as_of, needle) -> None:
    response = post(server, {"leads": payloads[1][:2], "as_of": as_of})
    assert response.status_code == 400, response.text
    assert needle in response.text and "Traceback" not in response.text


def test_query_top_k_is_bounded_like_the_body(server, payloads) -> None:
    body = {"leads": payloads[1][:1], "as_of": AS_OF.isoformat()}
    at_limit = post(server, body, top_k=str(MAX_TOP_K))
    assert at_limit.status_code == 200 and len(at_limit.json()["scores"][0]["reasons"]) == MAX_TOP_K
    for value in (str(MAX_TOP_K + 1), "100000", "-1"):
        over = post(server, body, top_k=value)
        assert over.status_code == 400 and "top_k" in over.text, (value, over.status_code, over.text[:200])


def test_an_as_of_is_allowed_a_day_of_clock_skew_only(server, payloads) -> None:
    now = datetime.now(UTC)
    leads = payloads[1][:1]
    skewed = post(server, {"leads": leads, "as_of": (now + timedelta(hours=12)).isoformat()})
    assert skewed.status_code == 200, skewed.text[:300]
    for ahead in (timedelta(days=2), timedelta(days=400)):
        late = post(server, {"leads": leads, "as_of": (now + ahead).isoformat()})
        assert late.status_code == 400 and "in the future" in late.text, (ahead, late.text[:300])


def test_timezone_aware_as_of_is_the_same_instant(server, payloads) -> None:
    naive = post(server, {"leads": payloads[1][:1], "as_of": "2026-03-01T00:00:00"}).json()
    aware = post(server, {"leads": payloads[1][:1], "as_of": "2026-03-01T02:00:00+02:00"}).json()
    assert naive["as_of"] == aware["as_of"] and naive["scores"] == aware["scores"]
    assert naive["as_of"] == "2026-03-01T00:00:00Z"  # UTC, saying so (a client may read no offset as local time)


def _with_category(leads: list[dict], values: list[str | None]) -> list[dict]:
    """Copies of ``leads`` whose CATEGORY is ``values[i]`` (None: left out), attributes in reverse order."""
    out = []
    for lead, value in zip(leads, values, strict=True):
        attributes = {k: v for k, v in reversed(lead["attributes"].items()) if k != CATEGORY}
        out.append({**lead, "attributes": attributes if value is None else {CATEGORY: value, **attributes}})
    return out


def test_category_variants_of_a_lead_score_as_the_table_path_and_an_unseen_one_as_missing(
        server, champion, served_core, payloads, tmp_path) -> None:
    """Through the real endpoint: a lead's score depends on its industry (two training categories, two
    probabilities); every training category (and an unseen one) scores as a batch rescore of a table holding
    it does (the training codes are carried to the serving edge); an unseen category scores exactly as the
    lead without one (as missing, with the warning) and the order of the attributes changes nothing."""
    ids, leads = payloads
    body = {"as_of": AS_OF.isoformat(), "top_k": 3}

    def scores(values: list[str | None]) -> list[dict]:
        response = post(server, {**body, "leads": _with_category(leads, values)})
        assert response.status_code == 200, response.text
        return response.json()["scores"]

    low, high = category_levels_that_differ(champion, CATEGORY)
    by_level = [scores([level] * len(leads)) for level in (low, high)]
    assert any(a["probability"] != b["probability"] for a, b in zip(*by_level, strict=True)), (low, high)

    unseen, absent = scores(["asteroid mining"] * len(leads)), scores([None] * len(leads))
    for got, want in zip(unseen, absent, strict=True):
        assert [got[f] for f in ("probability", "score", "grade", "fit_score")] == [
            want[f] for f in ("probability", "score", "grade", "fit_score")]
        assert [r["feature"] for r in got["reasons"]] == [r["feature"] for r in want["reasons"]]
        assert "attribute 'industry': unseen category 'asteroid mining' scored as unknown" in got["warnings"]

    # every training category, and the unseen one, as the table path reads it from a leads table
    vocab = [str(v) for v in champion.model.categories_[CATEGORY]]
    values = [vocab[i % len(vocab)] if i % 7 else "asteroid mining" for i in range(len(leads))]
    assert set(vocab) <= set(values)
    mixed = scores(values)
    numeric = {lead["lead_id"]: {n: repr(v) for n, v in lead["attributes"].items()
                                 if n in champion.crm.numeric_attributes} for lead in leads}
    url = _crm_database(champion, ids, tmp_path / "crm.db", numeric,
                        {i: {CATEGORY: v} for i, v in zip(ids, values, strict=True)})
    crm, _ = load_crm(data_config_for(DataConfig(source=SourceConfig(kind="sql", url=url),
                                                 reference_time="2030-01-01", missing_values=list(MARKERS)),
                                      served_core.spec))
    assert crm.leads.set_index(LEAD_ID).loc[ids, CATEGORY].astype(str).tolist() == values
    _assert_the_table_paths(mixed, served_core, crm, ids, unseen=True)


def test_reload_swaps_champion_while_requests_succeed(server, champion, models_dir, payloads) -> None:
    body = {"leads": payloads[1][:3], "as_of": AS_OF.isoformat()}
    statuses: list[int] = []
    versions: set[str] = set()

    def hammer() -> None:
        with httpx.Client(timeout=30) as client:
            for _ in range(150):
                r = client.post(f"{server.url}/score", json=body, headers=AUTH)
                statuses.append(r.status_code)
                if r.status_code == 200:
                    versions.add(r.json()["model"]["version"])

    def swap_in(version: str, mql_cutoff: int) -> httpx.Response:
        staging = models_dir.parent / f"staging-{version}"
        export_champion(champion.model, staging, version=version, mql_cutoff=mql_cutoff)
        shutil.rmtree(models_dir / "lead-conversion" / "model")
        shutil.copytree(staging / "lead-conversion" / "model", models_dir / "lead-conversion" / "model")
        shutil.copy(staging / "lead-conversion" / "champion.json", models_dir / "lead-conversion" / "champion.json")
        return httpx.post(f"{server.url}/reload", headers=AUTH, timeout=30)

    worker = threading.Thread(target=hammer)
    worker.start()
    try:
        reload = swap_in("2", 7)
        worker.join(120)
        assert reload.status_code == 200 and reload.json()["reloaded"] is True
        assert statuses and set(statuses) == {200}, sorted(set(statuses))
        info = httpx.get(f"{server.url}/model", headers=AUTH).json()["models"][0]
        assert info["version"] == "2" and info["mql_cutoff"] == 7
        assert "2" in versions
        log = server.log.read_text()
        assert "asteroid" not in log and "Traceback" not in log
    finally:  # the other tests of this module expect version 1, in whatever order they run
        worker.join(120)
        assert swap_in("1", 4).status_code == 200


def test_broken_time_to_close_export_keeps_the_current_pair(server, models_dir, payloads) -> None:
    folder = models_dir / "lead-time-to-close"
    backup = models_dir.parent / "ttc-backup"
    shutil.copytree(folder, backup)
    try:
        shutil.rmtree(folder / "model")
        (folder / "champion.json").write_text(json.dumps({"name": "lead-time-to-close", "version": "6"}))
        reload = httpx.post(f"{server.url}/reload", headers=AUTH, timeout=30)
        assert reload.status_code == 500 and set(reload.json()) == {"error", "error_id"}
        info = httpx.get(f"{server.url}/model", headers=AUTH).json()
        assert "FileNotFoundError" in info["reload_error"]
        assert [m["name"] for m in info["models"]] == ["lead-conversion", "lead-time-to-close"]
        answer = post(server, {"leads": payloads[1][:2], "as_of": AS_OF.isoformat()})
        assert answer.status_code == 200 and answer.json()["time_to_close_model"]["version"] == "5"
    finally:
        shutil.rmtree(folder)
        shutil.copytree(backup, folder)
    assert httpx.post(f"{server.url}/reload", headers=AUTH, timeout=30).status_code == 200
    assert "reload_error" not in httpx.get(f"{server.url}/model", headers=AUTH).json()


def test_bentoml_build_succeeds(tmp_path) -> None:
    # BentoML 1.4 always runs uv while freezing the image: use the one `make env` bootstraps when
    # uv is not installed system-wide (bentofile.yaml turns package re-locking off: no index needed)
    path = os.environ.get("PATH", "")
    if shutil.which("uv") is None and (ROOT / ".uv-bootstrap" / "bin" / "uv").is_file():
        path = f"{ROOT / '.uv-bootstrap' / 'bin'}{os.pathsep}{path}"
    env = {**os.environ, "PATH": path, "BENTOML_HOME": str(tmp_path / "bentoml_home"), "BENTOML_DO_NOT_TRACK": "true"}
    bentoml_cli = Path(sys.executable).parent / "bentoml"
    done = subprocess.run([str(bentoml_cli), "build", "--output", "tag"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    tag = done.stdout.strip().rsplit(":", 1)[-1]  # "__tag__:lead_scoring:<version>"
    bento = tmp_path / "bentoml_home" / "bentos" / "lead_scoring" / tag
    assert (bento / "bento.yaml").is_file(), done.stdout
    pinned = {line.strip() for line in (ROOT / "requirements.lock").read_text().splitlines() if "==" in line}
    packed = set((bento / "env" / "python" / "requirements.txt").read_text().splitlines())
    assert pinned <= packed, sorted(pinned - packed)[:10]  # the bento runs the tested versions
    # the packed sources alone import the service (nothing is missing from the include list)
    probe = subprocess.run([sys.executable, "-c", "import serving.service as s; print(s.__file__)"],
                           cwd=bento / "src", env={**env, "PYTHONPATH": str(bento / "src")},
                           capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr[-3000:]
    assert Path(probe.stdout.strip()).is_relative_to(bento / "src")


def test_without_an_as_of_a_caller_clock_a_little_ahead_still_scores(server, payloads) -> None:
    """With no as_of the server's now was used with no tolerance: a lead created 2 s ahead of the server's
    clock got a 400 "after as_of". A few minutes of skew are read as the caller's now; more is refused."""
    lead = json.loads(json.dumps(payloads[1][0]))
    lead["events"] = []
    ahead = datetime.now(UTC).replace(tzinfo=None) + timedelta(seconds=2)
    lead["created_at"] = ahead.isoformat()
    answer = post(server, {"leads": [lead]})
    assert answer.status_code == 200, answer.text
    assert datetime.fromisoformat(answer.json()["as_of"]) == (ahead + timedelta(microseconds=1)).replace(tzinfo=UTC)
    lead["created_at"] = (ahead + timedelta(hours=1)).isoformat()
    refused = post(server, {"leads": [lead]})
    assert refused.status_code == 400 and refused.json()["field"] == "created_at"


@pytest.mark.parametrize("top_k", [True, "3", 2.5])
def test_top_k_must_be_a_json_integer(server, payloads, top_k) -> None:
    """`"top_k": true` was read as 1 and `"3"` as 3, while a `lead_id` of true is refused."""
    answer = post(server, {"leads": payloads[1][:1], "as_of": AS_OF.isoformat(), "top_k": top_k})
    assert answer.status_code == 400 and answer.json()["field"] == "top_k", answer.text
    assert post(server, {"leads": payloads[1][:1], "as_of": AS_OF.isoformat(), "top_k": 2}).status_code == 200


def test_large_bodies_sent_at_once_are_each_answered_as_alone(server, payloads) -> None:
    """Bodies over INLINE_BODY_BYTES are parsed on worker threads, at most PARSE_THREADS at a time:
    six sent together get the answers they get one by one, and a bad one among them its 400."""
    from concurrent.futures import ThreadPoolExecutor

    from serving.service import INLINE_BODY_BYTES, PARSE_THREADS

    _, leads = payloads
    body = {"leads": leads, "as_of": AS_OF.isoformat(), "top_k": 2}
    assert len(json.dumps(body)) > INLINE_BODY_BYTES and PARSE_THREADS < 6
    bad = {**body, "leads": [*leads[:-1], {**leads[-1], "created_at": "not a date"}]}
    alone = post(server, body).json()["scores"]
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda b: post(server, b), [body] * 5 + [bad]))
    for response in answers[:5]:
        assert response.status_code == 200, response.text
        assert response.json()["scores"] == alone
    assert answers[5].status_code == 400
    assert answers[5].json()["lead_index"] == len(leads) - 1 and answers[5].json()["field"] == "created_at"


def test_a_large_answer_is_written_as_the_inline_path_writes_it(server, payloads) -> None:
    """A request over INLINE_LEADS is scored on the batch pool and its answer written to JSON there (not on the
    event loop): the bytes are those BentoML writes for a small request's answer (pydantic's
    ``model_dump_json``), here the answers of the same leads sent in small requests, joined."""
    from serving.schemas import ScoreResponse
    from serving.service import INLINE_EVENTS, INLINE_LEADS

    _, leads = payloads
    body = {"as_of": AS_OF.isoformat(), "top_k": MAX_TOP_K}
    parts = [leads[i: i + INLINE_LEADS // 2] for i in range(0, len(leads), INLINE_LEADS // 2)]
    assert len(leads) > INLINE_LEADS and all(sum(len(lead["events"]) for lead in part) <= INLINE_EVENTS
                                             for part in parts)
    large = post(server, {**body, "leads": leads})
    assert large.status_code == 200, large.text
    small = [post(server, {**body, "leads": part}) for part in parts]
    assert all(answer.status_code == 200 for answer in small)
    assert {large.headers["content-type"]} == {answer.headers["content-type"] for answer in small}
    first, *others = [ScoreResponse.model_validate_json(answer.content) for answer in small]
    assert first.model_dump_json().encode() == small[0].content  # parsing and writing again changes no byte
    joined = first.model_copy(update={"scores": [s for answer in (first, *others) for s in answer.scores]})
    assert large.content == joined.model_dump_json().encode()
