"""A real `bentoml serve` process given hostile or odd requests: deep nesting, form-encoded bodies,
huge keys, boolean and mixed-type lead ids, request-level errors; and `leadscore serve` on a busy port."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import httpx
import pytest

from tests.serving_fixtures import ROOT, export_champion, free_port, start_server, train_small_champion

KEY = "hardening-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
MAX_BATCH = 5
SHAPE = {"error", "lead_index", "lead_id", "field", "errors"}
AS_OF = "2026-03-01T00:00:00"


def lead(lead_id: object) -> dict[str, object]:
    return {"lead_id": lead_id, "created_at": "2026-01-05T10:00:00"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    models = tmp_path_factory.mktemp("models")
    export_champion(train_small_champion(n_leads=800, seed=4).model, models, version="1")
    env = {"LEADSCORE_MODEL_DIR": str(models), "LEADSCORE_API_KEYS": KEY, "LEADSCORE_RELOAD_SECONDS": "0",
           "LEADSCORE_MAX_BATCH": str(MAX_BATCH)}
    running = start_server(env, tmp_path_factory.mktemp("server") / "bentoml.log")
    yield running
    running.stop()


def post(server, body: object, headers: dict[str, str] = AUTH, **params: str) -> httpx.Response:
    return httpx.post(f"{server.url}/score", json=body, headers=headers, params=params, timeout=10)


def logged(server, needle: str, seconds: float = 5.0) -> str:
    """The server log once it holds ``needle`` (the log is written by another process)."""
    deadline = time.monotonic() + seconds
    while needle not in (text := server.log.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return text


@pytest.mark.parametrize("depth", [900, 1100, 3000])
@pytest.mark.parametrize("headers", [AUTH, {}], ids=["key", "no-key"])
def test_deeply_nested_json_gets_an_immediate_400(server, depth, headers) -> None:
    body = '{"leads":' + "[" * depth + "]" * depth + "}"
    # "immediate": an answer not read within 5 s is a failure (httpx.ReadTimeout), not a figure asserted on;
    # the server process gives nothing to count (one request, one answer, whatever the parser did)
    response = httpx.post(f"{server.url}/score", content=body, timeout=5,
                          headers={**headers, "content-type": "application/json"})
    if not headers:  # without a key the body is never read
        assert response.status_code == 401, response.text[:300]
    else:
        assert response.status_code == 400, response.text[:300]
        assert set(response.json()) == SHAPE and response.json()["field"] == "body"


def test_request_keys_are_cut_short_in_the_answer_and_the_log(server) -> None:
    # `curl -d` sends a JSON body form-encoded: refused before a parser makes the whole body one key
    form = '{"leads":[{"lead_id":"SECRET-1","created_at":"2026-05-02T10:00:00","attributes":{"email":"jane@acme.com"}}]}'
    response = httpx.post(f"{server.url}/score", content=form, timeout=10,
                          headers={**AUTH, "content-type": "application/x-www-form-urlencoded"})
    assert response.status_code == 415 and set(response.json()) == SHAPE
    assert "jane@acme.com" not in response.text and len(response.text) < 1000
    huge = post(server, {"k" * 210_000: 1, "leads": [lead(1)]})
    assert huge.status_code == 400 and set(huge.json()) == SHAPE and len(huge.text) < 1000
    assert len(huge.json()["field"]) <= 60
    log = logged(server, "k" * 50)
    assert "jane@acme.com" not in log  # beyond the first 60 characters of the key
    assert "k" * 50 in log and max(len(line) for line in log.splitlines()) < 2000


@pytest.mark.parametrize(
    ("body", "params", "field"),
    [({"leads": [lead(1)], "as_of": "2150-01-01T00:00:00"}, {}, "as_of"),
     ({"leads": [lead(i) for i in range(MAX_BATCH + 1)], "as_of": AS_OF}, {}, "leads"),
     ({"leads": [lead(1)], "as_of": AS_OF}, {"top_k": "x"}, "top_k"),
     ({"leads": [lead(1)], "as_of": AS_OF}, {"top_k": "99"}, "top_k"),
     ({"leads": [lead(1)], "asOf": AS_OF}, {}, "asOf")],
)
def test_request_level_400s_have_the_documented_shape(server, body, params, field) -> None:
    response = post(server, body, **params)
    assert response.status_code == 400, response.text[:300]
    answer = response.json()
    assert set(answer) == SHAPE, answer
    assert (answer["lead_index"], answer["lead_id"], answer["field"]) == (None, None, field)
    assert answer["errors"] == [answer["error"]] and answer["error"].startswith(f"{field}: ")


@pytest.mark.parametrize("flag", [True, False])
def test_a_boolean_lead_id_is_refused(server, flag) -> None:
    response = post(server, {"leads": [lead(7), lead(flag)], "as_of": AS_OF})
    assert response.status_code == 400, response.text[:300]
    answer = response.json()
    assert set(answer) == SHAPE and (answer["lead_index"], answer["field"]) == (1, "lead_id")


def test_an_integer_and_its_decimal_text_are_one_lead_id(server) -> None:
    response = post(server, {"leads": [lead(4988), lead("4988")], "as_of": AS_OF})
    assert response.status_code == 400, response.text[:300]
    answer = response.json()
    assert (answer["lead_index"], answer["lead_id"], answer["field"]) == (1, "4988", "lead_id")
    assert "also given as lead 0" in answer["error"]
    other = post(server, {"leads": [lead(4988), lead("04988"), lead("L4988")], "as_of": AS_OF, "top_k": 0})
    assert other.status_code == 200, other.text[:300]  # other texts are other ids
    assert [s["lead_id"] for s in other.json()["scores"]] == [4988, "04988", "L4988"]


def test_serve_on_a_busy_port_is_a_one_line_error(tmp_path) -> None:
    port = free_port()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        done = subprocess.run([sys.executable, "-m", "leadscore.cli", "serve", "--port", str(port),
                               "--model-dir", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert done.stderr.strip() == f"error: port {port} on 127.0.0.1 is in use (another server? choose another with --port)"
    assert "Traceback" not in done.stdout + done.stderr


@pytest.mark.parametrize("content_type", ["multipart/form-data", "multipart/form-data; boundary=x",
                                          "Multipart/Mixed"])
def test_multipart_bodies_get_a_415_not_a_500(server, content_type) -> None:
    response = httpx.post(f"{server.url}/score", content=b"--x\r\nnot a form\r\n", timeout=10,
                          headers={**AUTH, "content-type": content_type})
    assert response.status_code == 415, response.text[:300]
    assert set(response.json()) == SHAPE and response.json()["field"] == "content-type"


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded",
                                          "Application/X-WWW-Form-Urlencoded; charset=utf-8"])
def test_a_json_body_sent_as_a_form_gets_a_415_saying_so(server, content_type) -> None:
    """``curl -d '{...}'`` without ``-H 'content-type: application/json'`` sends the JSON as a form (the first
    content type): the answer said the leads were missing and quoted the body as an unknown field."""
    body = b'{"leads": [{"lead_id": 1, "created_at": "2026-01-01"}]}'
    response = httpx.post(f"{server.url}/score", content=body, timeout=10,
                          headers={**AUTH, "content-type": content_type})
    assert response.status_code == 415, response.text[:300]
    answer = response.json()
    assert set(answer) == SHAPE and answer["field"] == "content-type"
    assert "application/json" in answer["error"] and "form" in answer["error"]


@pytest.mark.parametrize("encoding", ["gzip", "br", "deflate, gzip"])
def test_a_compressed_body_gets_a_415_naming_the_encoding(server, encoding) -> None:
    """A client that compresses its request body got "body: Invalid JSON: expected value at line 1 column 1"."""
    import gzip

    body = gzip.compress(b'{"leads": [{"lead_id": 1, "created_at": "2026-01-01"}]}')
    response = httpx.post(f"{server.url}/score", content=body, timeout=10,
                          headers={**AUTH, "content-type": "application/json", "content-encoding": encoding})
    assert response.status_code == 415, response.text[:300]
    answer = response.json()
    assert set(answer) == SHAPE and answer["field"] == "content-encoding" and encoding in answer["error"]
    plain = httpx.post(f"{server.url}/score", timeout=10, content=b'{"leads": [{"lead_id": 1, "created_at": '
                       b'"2026-01-01"}]}', headers={**AUTH, "content-type": "application/json",
                                                  "content-encoding": "identity"})
    assert plain.status_code == 200, plain.text[:300]


@pytest.mark.parametrize("instant", ["0001-01-01T00:00:00+01:00", "0001-01-01T00:30:00+14:00",
                                     "9999-12-31T23:59:59-01:00", "9999-12-31T23:59:59.999999-23:59"])
@pytest.mark.parametrize("where", ["created_at", "events[0].occurred_at", "as_of"])
def test_an_offset_beyond_the_calendar_gets_a_400_naming_the_field(server, instant, where) -> None:
    """A timestamp whose offset moves it before year 1 or after 9999 in UTC answered 500 (OverflowError
    in the request model's UTC conversion)."""
    one = {**lead(7), "events": [{"occurred_at": "2026-02-01T00:00:00", "event_type": "demo_request"}]}
    body: dict[str, object] = {"leads": [one], "as_of": AS_OF}
    if where == "as_of":
        body["as_of"] = instant
    elif where == "created_at":
        one["created_at"] = instant
    else:
        one["events"][0]["occurred_at"] = instant
    response = post(server, body)
    assert response.status_code == 400, response.text[:300]
    answer = response.json()
    assert set(answer) == SHAPE and answer["field"] == where, answer
    assert (answer["lead_index"], answer["lead_id"]) == ((None, None) if where == "as_of" else (0, 7))
    assert "outside [1970-01-01, 2200-01-01)" in answer["error"], answer


@pytest.mark.parametrize("value", ["1" + "0" * 4300, "9" * 5000, "0" * 5000 + "21"],
                         ids=["4301-digits", "5000-nines", "zeros-then-21"])
def test_a_top_k_query_value_of_thousands_of_digits_gets_a_400(server, value) -> None:
    """int() refuses texts of more than 4,300 digits: such a ``?top_k=`` answered 500."""
    response = post(server, {"leads": [lead(1)], "as_of": AS_OF}, top_k=value)
    assert response.status_code == 400, response.text[:300]
    answer = response.json()
    assert set(answer) == SHAPE and (answer["lead_index"], answer["field"]) == (None, "top_k"), answer
    assert len(response.text) < 1000  # the value is quoted cut short


def test_a_top_k_query_value_with_leading_zeros_is_its_number(server) -> None:
    response = post(server, {"leads": [lead(1)], "as_of": AS_OF}, top_k="0" * 5000 + "2")
    assert response.status_code == 200, response.text[:300]
    assert len(response.json()["scores"][0]["reasons"]) == 2


@pytest.mark.parametrize("absent", ["left out", "null"])
def test_a_crm_lead_without_created_at_gets_a_400_naming_the_field(server, absent) -> None:
    """A CRM (event) model's features count from each lead's creation: only a flat model's leads may leave
    ``created_at`` out (the request shape allows it); here every such lead is named, never a 500."""
    bare = {"lead_id": "L-9", "attributes": {"industry": "software"}}
    if absent == "null":
        bare["created_at"] = None
    body = {"leads": [lead(1), bare, {**bare, "lead_id": 10}], "as_of": AS_OF}
    response = post(server, body)
    assert response.status_code == 400, response.text[:300]
    answer = response.json()
    assert set(answer) == SHAPE and (answer["lead_index"], answer["lead_id"], answer["field"]) == (1, "L-9", "created_at")
    assert answer["errors"] == [f"lead {i} (lead_id {lead_id!r}): created_at: missing: this model reads each lead's "
                                "creation instant (a CRM model; only a flat model's leads may leave it out)"
                                for i, lead_id in ((1, "L-9"), (2, 10))], answer
    assert post(server, {"leads": [lead(1)], "as_of": AS_OF}).status_code == 200  # with it: scored
