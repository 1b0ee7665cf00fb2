"""The retry policy MLflow's HTTP client gets against a tracking server (training.tracking.RetryUnlessTimedOut):
urllib3's retries, except after a timeout. The requests themselves: tests/integration/test_tracking_silent.py."""

from __future__ import annotations

import pytest
from urllib3.exceptions import (
    ConnectTimeoutError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)

from training.tracking import RetryUnlessTimedOut


def _policy() -> RetryUnlessTimedOut:
    return RetryUnlessTimedOut(total=3, connect=3, read=3, status=3, allowed_methods=None)


@pytest.mark.parametrize("error", [ReadTimeoutError(None, "/api", "Read timed out."),
                                   ConnectTimeoutError(None, "Connection to host timed out.")],
                         ids=["read timeout", "connect timeout"])
def test_a_timeout_is_the_last_try(error: Exception) -> None:
    with pytest.raises(MaxRetryError) as raised:
        _policy().increment("POST", "/api", error=error)
    assert raised.value.reason is error  # requests turns it into the same error as used-up retries


@pytest.mark.parametrize("error", [NewConnectionError(None, "Connection refused"),  # a ConnectTimeoutError subclass
                                   ProtocolError("Connection aborted.")], ids=["refused", "dropped"])
def test_refused_and_dropped_connections_are_retried(error: Exception) -> None:
    retry = _policy().increment("POST", "/api", error=error)
    assert isinstance(retry, RetryUnlessTimedOut) and retry.total == 2
    assert retry.increment("POST", "/api", error=error).total == 1
