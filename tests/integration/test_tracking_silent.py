"""A tracking server that takes requests in and never answers them (its process hung, its database locked:
``/health`` touches no database and still answers, so the start-up probe passes) fails a command after one
``MLFLOW_HTTP_REQUEST_TIMEOUT``, with the one-line error; a slow server that answers within the timeout still
works.

MLflow's client sent a request that timed out again, as it does a refused one (3 more times under
:func:`training.tracking.bound_http_retries`): every command waited 4 timeouts for its first call, 8 minutes at
the default 120 s. The stub server counts the requests it was sent; the CLI runs in-process (typer's runner).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner

from leadscore.cli import app
from tests.integration.mlflow_support import cli_message, sqlite_project_file
from training.tracking import HTTP_RETRY_DEFAULTS

TIMEOUT_SECONDS = 1  # MLFLOW_HTTP_REQUEST_TIMEOUT of the silent server's tests (MLflow reads a whole number)
pytestmark = pytest.mark.timeout(300)  # the old 4 tries per call fail the count, they do not hang


@dataclass
class StubServer:
    """A stub tracking server's base URL and the request line of every call it was sent but ``GET /health``."""

    uri: str
    requests: list[str] = field(default_factory=list)


def _request_line(conn: socket.socket) -> str | None:
    """The request line of the request on ``conn`` (None when the client closed it first)."""
    data = b""
    while b"\r\n\r\n" not in data:
        try:
            chunk = conn.recv(65536)
        except OSError:
            return None
        if not chunk:
            return None
        data += chunk
    return data.split(b"\r\n", 1)[0].decode("latin-1")


def _response(status: str, body: bytes) -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n").encode() + body


@contextmanager
def stub_tracking_server(answer: Callable[[str], bytes | None]) -> Iterator[StubServer]:
    """A server on 127.0.0.1 that answers ``GET /health`` with 200 OK and every other request with
    ``answer(request line)``: closes the connection without a word when that is empty, holds it open without
    one when it is None (until the block ends: then every connection is closed and every thread joined)."""
    listener = socket.create_server(("127.0.0.1", 0))
    stub = StubServer(f"http://127.0.0.1:{listener.getsockname()[1]}")
    held: list[socket.socket] = []
    threads: list[threading.Thread] = []
    stop = threading.Event()

    def handle(conn: socket.socket) -> None:
        line = _request_line(conn)
        if line is None:
            conn.close()
            return
        reply = _response("200 OK", b"OK") if line.split(" ")[1] == "/health" else None
        if reply is None:
            stub.requests.append(line)
            reply = answer(line)
        if reply is None:
            held.append(conn)  # taken in, never answered
            return
        conn.sendall(reply)
        conn.close()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            worker = threading.Thread(target=handle, args=(conn,), daemon=True)
            threads.append(worker)
            worker.start()

    acceptor = threading.Thread(target=serve, daemon=True)
    acceptor.start()
    try:
        yield stub
    finally:
        stop.set()
        acceptor.join(timeout=10)
        listener.close()
        for conn in held:
            conn.close()
        for worker in threads:
            worker.join(timeout=10)


@pytest.fixture
def silent_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[StubServer]:
    """Answers ``/health`` only; a timeout of :data:`TIMEOUT_SECONDS` and no backoff sleeps (the user's
    settings, which :func:`training.tracking.bound_http_retries` keeps)."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", str(TIMEOUT_SECONDS))
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", "0")
    with stub_tracking_server(lambda line: None) as stub:
        yield stub


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A project file (the data is never read: the registry is asked first)."""
    return sqlite_project_file(tmp_path)


def _invoke(command: list[str], config: Path, uri: str):
    return CliRunner().invoke(app, [*command, "-c", str(config), "--tracking-uri", uri],
                              env={"COLUMNS": "200", "NO_COLOR": "1"})


@pytest.mark.parametrize("command", [["train"], ["models", "promote"], ["evaluate"], ["models", "list"],
                                     ["models", "rollback"], ["models", "export"], ["forecast"]], ids=" ".join)
def test_a_silent_server_is_asked_once(command: list[str], config: Path, silent_server: StubServer) -> None:
    result = _invoke(command, config, silent_server.uri)
    text = cli_message(result)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), text  # an error line, no traceback
    assert (f"error: lost the MLflow tracking server at {silent_server.uri} during the command: no answer within "
            f"{TIMEOUT_SECONDS} s") in text, text
    assert "Traceback" not in text and "HTTPConnectionPool" not in text, text
    assert len(silent_server.requests) == 1, silent_server.requests  # was the first call, 4 times


def test_the_services_registry_calls_ask_a_silent_server_once(silent_server: StubServer) -> None:
    """`serve` from a registry URI: its start-up load and its champion check (POST /reload and the periodic one)."""
    from serving.core import ScoringConfig
    from serving.loader import load_registered, registry_fingerprint
    from training.tracking import TrackingServerLost

    with pytest.raises(TrackingServerLost, match=f"no answer within {TIMEOUT_SECONDS} s"):
        registry_fingerprint(silent_server.uri, "lead-conversion", "champion")
    assert len(silent_server.requests) == 1, silent_server.requests
    with pytest.raises(TrackingServerLost, match=f"no answer within {TIMEOUT_SECONDS} s"):
        load_registered(silent_server.uri, "lead-conversion", "champion", ScoringConfig())
    assert len(silent_server.requests) == 2, silent_server.requests


SLOW_SECONDS = 1.0  # how long the slow server takes over each answer
SLOW_TIMEOUT_SECONDS = 10  # well above it


def test_a_slow_server_that_answers_within_the_timeout_is_waited_for(config: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The timeout is not shortened: each answer comes after a second and is the one the command reports (this
    registry has no such model), asked once."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", str(SLOW_TIMEOUT_SECONDS))
    missing = json.dumps({"error_code": "RESOURCE_DOES_NOT_EXIST",
                          "message": "Registered model alias challenger not found."}).encode()

    def slowly(line: str) -> bytes:
        time.sleep(SLOW_SECONDS)
        return _response("404 Not Found", missing)

    with stub_tracking_server(slowly) as slow:
        result = _invoke(["models", "promote"], config, slow.uri)
    text = cli_message(result)
    assert result.exit_code != 0 and isinstance(result.exception, SystemExit), text
    assert "lost the MLflow tracking server" not in text and "cannot reach" not in text, text
    assert "challenger" in text, text
    assert slow.requests and all("alias=challenger" in line for line in slow.requests), slow.requests
    assert len(slow.requests) == len(set(slow.requests)), slow.requests  # each call sent once


@pytest.mark.parametrize("answer", [b"", _response("503 Service Unavailable", b"{}")], ids=["dropped", "503"])
def test_dropped_connections_and_5xx_answers_are_still_retried(answer: bytes, config: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Only a timeout ends the retries: a server that drops the connection or answers 503 (restarting, behind a
    gateway) is asked 1 + MLFLOW_HTTP_REQUEST_MAX_RETRIES times, as before."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", "0")
    with stub_tracking_server(lambda line: answer) as stub:
        result = _invoke(["models", "list"], config, stub.uri)
    text = cli_message(result)
    assert result.exit_code == 1 and f"lost the MLflow tracking server at {stub.uri}" in text, text
    retries = int(HTTP_RETRY_DEFAULTS["MLFLOW_HTTP_REQUEST_MAX_RETRIES"])
    assert len(stub.requests) == 1 + retries and len(set(stub.requests)) == 1, stub.requests
