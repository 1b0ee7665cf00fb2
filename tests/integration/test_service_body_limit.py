"""A real `bentoml serve` with a 1 MiB body limit (LEADSCORE_MAX_BODY_MB=1): a body over it gets a 413
in the service's error shape before it is read in full (its Content-Length alone, or the bytes of a
chunked body as they come), a body of the limit exactly is scored, and the server answers the next
request. With a receive timeout of 1 s (LEADSCORE_RECEIVE_TIMEOUT_SECONDS=1), a body that stops coming
gets a 408 in the same shape, and so does a body still incomplete after half the request timeout
(LEADSCORE_REQUEST_TIMEOUT_SECONDS=16). Raw sockets: the test decides what is sent and when."""

from __future__ import annotations

import json
import socket

import pytest

from tests.serving_fixtures import export_champion, start_server, train_small_champion

LIMIT = 1 << 20  # LEADSCORE_MAX_BODY_MB=1
SHAPE = {"error", "lead_index", "lead_id", "field", "errors"}
PIECE = 64 << 10


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    models = tmp_path_factory.mktemp("models")
    export_champion(train_small_champion(n_leads=800, seed=4).model, models, version="1")
    env = {"LEADSCORE_MODEL_DIR": str(models), "LEADSCORE_RELOAD_SECONDS": "0", "LEADSCORE_MAX_BODY_MB": "1",
           "LEADSCORE_RECEIVE_TIMEOUT_SECONDS": "1", "LEADSCORE_REQUEST_TIMEOUT_SECONDS": "16"}
    running = start_server(env, tmp_path_factory.mktemp("server") / "bentoml.log")
    yield running
    running.stop()


def connect(server) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=30)


def answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """The status, headers and body of the next answer on ``sock`` (its Content-Length bytes)."""
    return answer_from(sock, b"")


def answer_from(sock: socket.socket, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """:func:`answer`, its first ``data`` already received."""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(65536)
        assert piece, f"connection closed before an answer: {data[:300]!r}"
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    while len(body) < int(headers.get("content-length", 0)):
        piece = sock.recv(65536)
        assert piece, "connection closed within the answer's body"
        body += piece
    return int(lines[0].split()[1]), headers, body


def request(body_size: int | None = None, chunked: bool = False, extra: str = "") -> bytes:
    length = "Transfer-Encoding: chunked\r\n" if chunked else f"Content-Length: {body_size}\r\n"
    return f"POST /score HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n{length}{extra}\r\n".encode()


def leads_body(size: int) -> bytes:
    """A valid request of 5 leads with events, padded with JSON whitespace to ``size`` bytes exactly."""
    events = [{"occurred_at": f"2026-02-{1 + i % 27:02d}T{i % 24:02d}:00:00",
               "event_type": ("page_view", "email_open", "pricing_page_view")[i % 3]} for i in range(2000)]
    leads = [{"lead_id": i, "created_at": "2026-01-05T10:00:00", "events": events} for i in range(5)]
    body = json.dumps({"leads": leads, "as_of": "2026-03-01T00:00:00"}).encode()
    assert len(body) <= size, len(body)
    return body + b" " * (size - len(body))


def score_one(server) -> int:
    """A small valid request on a new connection: its status."""
    body = json.dumps({"leads": [{"lead_id": 1, "created_at": "2026-01-05T10:00:00"}],
                       "as_of": "2026-03-01T00:00:00"}).encode()
    with connect(server) as sock:
        sock.sendall(request(len(body)) + body)
        return answer(sock)[0]


def assert_refused(status: int, body: bytes) -> None:
    assert status == 413, body[:300]
    refusal = json.loads(body)
    assert set(refusal) == SHAPE and refusal["field"] == "body", refusal
    assert "LEADSCORE_MAX_BODY_MB" in refusal["error"] and "1 MiB" in refusal["error"], refusal


@pytest.mark.parametrize("extra", ["", "Expect: 100-continue\r\n"], ids=["plain", "expect-100-continue"])
def test_a_content_length_over_the_limit_gets_its_413_before_any_body_is_sent(server, extra) -> None:
    """The answer comes to the headers alone: the server neither waits for nor reads a body it would refuse
    (before, it read a Content-Length's bytes in full, or waited for them: a 504 after 30 s)."""
    with connect(server) as sock:
        sock.sendall(request(4 << 30, extra=extra))  # 4 GiB announced, none sent
        sock.settimeout(20)  # no body will come: an answer can only be the refusal
        status, headers, body = answer(sock)
    assert status != 100, "the server asked for the body (100 Continue)"
    assert_refused(status, body)
    assert "4,294,967,296 bytes" in json.loads(body)["error"]
    assert score_one(server) == 200


def test_a_chunked_body_over_the_limit_gets_a_413_once_the_limit_is_passed(server) -> None:
    """Without a Content-Length the bytes are counted as they come: the answer comes once the limit is
    passed, the body unfinished (before, the server waited for the rest: all of it was read and parsed)."""
    body = leads_body(3 * LIMIT)
    with connect(server) as sock:
        sock.sendall(request(chunked=True))
        for start in range(0, LIMIT + 2 * PIECE, PIECE):  # the limit and two pieces more, then nothing
            piece = body[start:start + PIECE]
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        sock.settimeout(20)  # the body never ends: an answer can only be the refusal
        status, _, refusal = answer(sock)
    assert_refused(status, refusal)
    assert "without a Content-Length" in json.loads(refusal)["error"]
    assert score_one(server) == 200


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_of_the_limit_exactly_is_scored_and_one_byte_more_is_refused(server, chunked) -> None:
    for size, status_wanted in ((LIMIT, 200), (LIMIT + 1, 413)):
        body = leads_body(size)
        with connect(server) as sock:
            if chunked:
                sock.sendall(request(chunked=True) + b"".join(
                    b"%x\r\n%s\r\n" % (len(body[i:i + PIECE]), body[i:i + PIECE]) for i in range(0, len(body), PIECE))
                    + b"0\r\n\r\n")
            else:
                sock.sendall(request(len(body)) + body)
            status, _, answer_body = answer(sock)
        if status_wanted == 200:
            assert status == 200, answer_body[:300]
            assert [s["lead_id"] for s in json.loads(answer_body)["scores"]] == [0, 1, 2, 3, 4]
        else:
            assert_refused(status, answer_body)
    assert score_one(server) == 200


def test_a_refused_body_ends_its_connection_and_the_next_request_is_scored(server) -> None:
    """The 413 says ``Connection: close`` and the server stops reading: the rest of a body it refused is not
    received and discarded for as long as the client sends it (the client still reads the 413)."""
    body = leads_body(64 * LIMIT)
    sent = 0
    with connect(server) as sock:
        try:
            sock.sendall(request(len(body)))
            for start in range(0, len(body), PIECE):  # bounded: at most the whole body
                sock.sendall(body[start:start + PIECE])
                sent += PIECE
        except OSError:  # the server closed the connection: the rest is not read
            pass
        status, headers, refusal = answer(sock)
        assert_refused(status, refusal)
        assert headers.get("connection") == "close"
        try:
            closed = sock.recv(1) == b""
        except ConnectionResetError:  # closed with bytes of the body unread
            closed = True
    assert closed and sent < len(body), f"{sent} of {len(body)} bytes were sent"
    assert score_one(server) == 200


def test_the_documented_413_names_the_limit(server) -> None:
    import httpx

    spec = httpx.get(f"{server.url}/docs.json", timeout=10).json()
    refusal = spec["paths"]["/score"]["post"]["responses"]["413"]
    assert "1 MiB (LEADSCORE_MAX_BODY_MB)" in refusal["description"]
    assert refusal["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}


@pytest.mark.parametrize(("head", "sent"), [
    (request(1000), b'{"leads":'),  # 9 of the 1,000 bytes announced, then nothing
    (request(1000), b""),  # the headers, then nothing
    (request(chunked=True), b'9\r\n{"leads":\r\n'),  # one chunk, then neither a chunk nor the end
], ids=["content-length", "content-length-no-byte", "chunked"])
def test_a_body_that_stops_coming_gets_a_408_and_the_next_request_is_scored(server, head, sent) -> None:
    """A client that stops sending its body is answered 408 in the service's error shape once no byte has
    come for LEADSCORE_RECEIVE_TIMEOUT_SECONDS, and its connection is closed (before, it held the request
    until BentoML's 30 s timeout answered 504: a server error for a bad request)."""
    with connect(server) as sock:
        sock.sendall(head + sent)
        sock.settimeout(60)  # nothing more is sent: an answer can only be the server's
        status, headers, body = answer(sock)
        assert status == 408, body[:300]
        refusal = json.loads(body)
        assert set(refusal) == SHAPE and refusal["field"] == "body", refusal
        assert "LEADSCORE_RECEIVE_TIMEOUT_SECONDS" in refusal["error"] and "1 s" in refusal["error"], refusal
        assert headers.get("connection") == "close"
        try:
            closed = sock.recv(1) == b""
        except ConnectionResetError:
            closed = True
        assert closed, "the connection stayed open after the 408"
    assert score_one(server) == 200


def test_a_body_trickled_slower_than_half_the_request_timeout_gets_a_408(server) -> None:
    """A byte every 0.3 s never waits out the receive timeout (1 s): the body is cut off, 408, once half the
    request timeout (8 s of 16) has passed without it complete (before, BentoML's 504 answered at 16 s)."""
    with connect(server) as sock:
        sock.sendall(request(1000))
        sock.settimeout(0.3)
        data = b""
        for _ in range(200):  # bounded: at most 200 of the 1,000 bytes announced, one per 0.3 s (60 s)
            try:
                sock.sendall(b" ")
                data = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:  # the server answered and closed: the answer waits in the receive buffer
                break
            break
        sock.settimeout(30)
        rest = answer_from(sock, data)
        status, headers, body = rest
        assert status == 408, body[:300]
        refusal = json.loads(body)
        assert set(refusal) == SHAPE and refusal["field"] == "body", refusal
        assert "LEADSCORE_REQUEST_TIMEOUT_SECONDS" in refusal["error"] and "8 s" in refusal["error"], refusal
        assert headers.get("connection") == "close"
    assert score_one(server) == 200


def test_the_documented_408_names_the_receive_timeout(server) -> None:
    import httpx

    spec = httpx.get(f"{server.url}/docs.json", timeout=10).json()
    refusal = spec["paths"]["/score"]["post"]["responses"]["408"]
    assert "1 s (LEADSCORE_RECEIVE_TIMEOUT_SECONDS)" in refusal["description"]
    assert refusal["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}
