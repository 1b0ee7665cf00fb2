"""The gate that keeps the ADBC driver's SQLite and the sqlite3 module's SQLite off one file at the same time."""

from __future__ import annotations

import threading
import time

import pytest

from features.sqlite_arrow import FileGate, file_gate

WAIT = 5.0


def _hold(use, entered: threading.Event, release: threading.Event) -> threading.Thread:
    def run() -> None:
        with use():
            entered.set()
            release.wait(WAIT)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _wait_until(condition) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, "the gate never reached the expected state"
        time.sleep(0.01)


def test_users_of_one_copy_share_the_file_and_the_other_copy_waits() -> None:
    gate = FileGate()
    first, second, release = threading.Event(), threading.Event(), threading.Event()
    holders = [_hold(gate.adbc, first, release), _hold(gate.adbc, second, release)]
    assert first.wait(WAIT) and second.wait(WAIT)  # two ADBC users at once
    module_in, module_done = threading.Event(), threading.Event()
    waiter = _hold(gate.sqlite3_module, module_in, module_done)
    _wait_until(lambda: gate.waiting() == (0, 1))  # the sqlite3 module waits while the ADBC copy is in use
    assert not module_in.is_set()
    release.set()
    assert module_in.wait(WAIT)
    module_done.set()
    for thread in (*holders, waiter):
        thread.join(WAIT)


def test_a_waiting_copy_gets_the_next_turn() -> None:
    """A stream of overlapping ADBC users does not starve a sqlite3-module user that is waiting."""
    gate = FileGate()
    order: list[str] = []
    first_in, release_first = threading.Event(), threading.Event()
    first = _hold(gate.adbc, first_in, release_first)
    assert first_in.wait(WAIT)

    def module_user() -> None:
        with gate.sqlite3_module():
            order.append("module")

    def late_adbc_user() -> None:
        with gate.adbc():
            order.append("adbc")

    module = threading.Thread(target=module_user, daemon=True)
    module.start()
    _wait_until(lambda: gate.waiting() == (0, 1))  # the module user is waiting now
    late = threading.Thread(target=late_adbc_user, daemon=True)
    late.start()
    _wait_until(lambda: gate.waiting() == (1, 1))
    assert order == []  # the late ADBC user queues behind the waiting module user
    release_first.set()
    for thread in (first, module, late):
        thread.join(WAIT)
    assert order == ["module", "adbc"]


def test_nesting_the_same_copy_is_allowed_and_the_other_copy_raises() -> None:
    gate = FileGate()
    with gate.sqlite3_module(), gate.sqlite3_module(), pytest.raises(RuntimeError, match="other copy"), gate.adbc():
        pass
    with gate.adbc():  # everything released
        pass


def test_one_gate_per_real_path(tmp_path) -> None:
    path = tmp_path / "crm.db"
    path.touch()
    link = tmp_path / "link.db"
    link.symlink_to(path)
    assert file_gate(str(path)) is file_gate(str(link))
    assert file_gate(str(path)) is not file_gate(str(tmp_path / "other.db"))
