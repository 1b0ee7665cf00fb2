"""An ``http(s)://`` tracking URI with nothing behind it fails at once with a clear error.

MLflow's own client retries an unreachable server for minutes (then the registry commands reported a
missing alias, and ``models list`` a long traceback); :func:`training.tracking.connect` probes the
server once, with a short timeout, before any MLflow call. The CLI runs in-process (typer's runner).
"""

from __future__ import annotations

import http.server
import pickle
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

import training.tracking as tracking
from leadscore.cli import app
from tests.integration.mlflow_support import (
    cli_message,
    count_connections,
    local_http_server,
    sqlite_project_file,
)
from training.tracking import TrackingServerUnreachable, connect, probe_tracking_server, tracking_target


def _free_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def dead_uri() -> str:
    return f"http://127.0.0.1:{_free_port()}"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A project file (the data is never read: the tracking server is contacted first)."""
    return sqlite_project_file(tmp_path)



@pytest.mark.timeout(300)  # a regression (MLflow retrying for minutes) fails instead of hanging the suite
@pytest.mark.parametrize("command", [["models", "promote"], ["models", "list"], ["models", "rollback"],
                                     ["models", "export"], ["evaluate"], ["train"], ["forecast"]],
                         ids=lambda c: " ".join(c))
def test_unreachable_server_fails_fast_and_clearly(command: list[str], config: Path, dead_uri: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    tries = count_connections(monkeypatch, int(dead_uri.rsplit(":", 1)[1]))
    result = CliRunner().invoke(app, [*command, "-c", str(config), "--tracking-uri", dead_uri],
                                env={"COLUMNS": "200", "NO_COLOR": "1"})
    message = cli_message(result)
    assert result.exit_code != 0, message
    assert f"cannot reach the MLflow tracking server at {dead_uri}" in message
    assert "Connection refused" in message
    assert "has no alias" not in message and "no champion" not in message
    assert len(tries) == 1, tries  # the probe's one try: no MLflow call and its retries (counted, not timed)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), message  # an error line, no traceback


def test_clean_message_where_the_cli_catches_it(config: Path, dead_uri: str) -> None:
    """``models promote`` turns it into a one-line error (no traceback, no exception left over)."""
    result = CliRunner().invoke(app, ["models", "promote", "-c", str(config), "--tracking-uri", dead_uri],
                                env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert result.output.strip() == f"error: cannot reach the MLflow tracking server at {dead_uri}: Connection refused"


@pytest.mark.parametrize("command", [["models", "list"], ["models", "promote"], ["evaluate"]], ids=" ".join)
def test_a_database_store_that_cannot_be_opened_is_one_line(command: list[str], config: Path,
                                                           postgres_server_url: str) -> None:
    """A PostgreSQL tracking store whose database does not exist ended ``models list`` in a 665-line
    traceback of SQLAlchemy's OperationalError; now the command's one-line error, naming the store (password
    masked) and the driver's reason (the machine's real PostgreSQL)."""
    import sqlalchemy as sa

    uri = sa.engine.make_url(postgres_server_url).set(database="leadscore_no_such_database", password="pw")
    uri = uri.render_as_string(hide_password=False)
    result = CliRunner().invoke(app, [*command, "-c", str(config), "--tracking-uri", uri],
                                env={"COLUMNS": "200", "NO_COLOR": "1"})
    message = cli_message(result)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), message
    assert "cannot open the MLflow tracking store postgresql+psycopg://postgres:***@" in message, message
    assert 'database "leadscore_no_such_database" does not exist' in message and ":pw@" not in message


def test_connect_does_not_probe_sqlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    probed: list[str] = []
    monkeypatch.setattr(tracking, "probe_tracking_server", probed.append)
    target = tracking_target(None, tmp_path)
    assert target.uri.startswith("sqlite:///")
    assert connect(target).tracking_uri == target.uri
    assert probed == []
    server = tracking_target("http://127.0.0.1:5000", tmp_path)
    with pytest.raises(AssertionError, match="stop"):  # probed once, before MLflow is pointed anywhere
        monkeypatch.setattr(tracking, "probe_tracking_server", lambda uri: probed.append(uri) or _stop())
        connect(server)
    assert probed == [server.uri]


def _stop() -> None:
    raise AssertionError("stop")


def test_error_type() -> None:
    error = TrackingServerUnreachable("http://host:5000", "Connection refused")
    assert isinstance(error, ConnectionError) and isinstance(error, ValueError)
    assert str(error) == "cannot reach the MLflow tracking server at http://host:5000: Connection refused"
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.uri, copy.reason, str(copy)) == (error.uri, error.reason, str(error))


def test_probe_times_out_on_a_silent_server() -> None:
    """A server that accepts the connection but never answers: one request, bounded by the timeout."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(4)
        uri = f"http://127.0.0.1:{sock.getsockname()[1]}"
        with pytest.raises(TrackingServerUnreachable, match="no answer within 1 s"):
            probe_tracking_server(uri, timeout=1.0)
        sock.setblocking(False)  # the connections the probe opened wait in the backlog: count them
        opened = []
        while True:
            try:
                opened.append(sock.accept()[0])
            except BlockingIOError:
                break
        for conn in opened:
            conn.close()
        assert len(opened) == 1  # one request, no retry (counted, not timed)


@pytest.fixture
def stub_server() -> Iterator[tuple[str, list[int], list[str]]]:
    """An HTTP server answering every GET with the status in ``statuses[0]``; records the paths asked."""
    statuses, paths = [200], []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            paths.append(self.path)
            self.send_response(statuses[0])
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"OK")

        def log_message(self, *args) -> None:
            pass

    with local_http_server(Handler) as uri:
        yield uri, statuses, paths


def test_probe_status_answers(stub_server: tuple[str, list[int], list[str]]) -> None:
    """Any answer but a 5xx counts as reachable (401 behind auth, 404 behind a path prefix); a 5xx from
    /health (a gateway whose upstream is down) does not, and is not retried."""
    uri, statuses, paths = stub_server
    for status in (200, 401, 404):
        statuses[0] = status
        probe_tracking_server(uri + "/")
    statuses[0] = 503
    with pytest.raises(TrackingServerUnreachable, match=r"/health answered HTTP 503"):
        probe_tracking_server(uri)
    assert paths == ["/health"] * 4
