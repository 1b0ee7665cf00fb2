"""Shared fixtures: real databases (SQLite files, the machine's PostgreSQL) and paths."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

# One BLAS / OpenMP thread per test process (and the commands, kernels and servers it starts, which inherit it)
# unless the environment says otherwise: `make test` runs two workers on a 2-core machine, and OpenBLAS's two
# threads per process, spinning while they wait for a core, made the numeric tests several times slower
# (tests/model/test_time_to_close.py and test_forecast_backtest.py side by side: 90 s without, 24 s with). Set
# before NumPy, LightGBM or SciPy load (nothing has imported them when pytest reads this file); the figures the
# tests compare with are those of OMP_NUM_THREADS=1 runs (README: BLAS threads move some decimals).
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPOSITORY = Path(__file__).resolve().parents[1]
REAL_DATA = REPOSITORY.parent / "shared" / "data" / "real"
POSTGRES_ADMIN_URL = os.environ.get(
    "LEADSCORE_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


# What tools legitimately leave in the repository while tests run (interpreter, pytest, Hypothesis, ruff, venvs).
TOOL_LEFTOVERS = frozenset({"__pycache__", ".pytest_cache", ".hypothesis", ".ruff_cache", ".venv", ".uv-bootstrap"})


def files_outside_git() -> frozenset[str]:
    """The repository's untracked and ignored files (each one, also inside an ignored folder) and the
    entries of its root (``name/`` for a folder), apart from :data:`TOOL_LEFTOVERS`; only the root's
    entries when the repository is not a git work tree."""
    root = {f"{e.name}/" if e.is_dir() else e.name for e in os.scandir(REPOSITORY) if e.name != ".git"}
    excluded = [f"--exclude={name}/" for name in TOOL_LEFTOVERS] + ["--exclude=*.pyc"]
    try:
        listed = subprocess.run(["git", "ls-files", "--others", "-z", *excluded], cwd=REPOSITORY,
                                capture_output=True, text=True, check=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        listed = ""
    paths = root | {p for p in listed.split("\0") if p}
    return frozenset(p for p in paths if TOOL_LEFTOVERS.isdisjoint(Path(p).parts) and not p.endswith(".pyc"))


def _stray_message(new: frozenset[str], when: str) -> str:
    shown = sorted(new)
    more = f" and {len(shown) - 5} more" if len(shown) > 5 else ""
    return (f"{when} left {', '.join(shown[:5])}{more} in the repository {REPOSITORY} (a default store such "
            "as MLflow's ./mlruns, or an output written to the working folder instead of tmp_path)")


_SESSION_START: frozenset[str] | None = None


def pytest_sessionstart(session: pytest.Session) -> None:
    global _SESSION_START
    _SESSION_START = files_outside_git()


def pytest_collection_finish(session: pytest.Session) -> None:
    """What is alive once the tests are collected (the imported libraries, the test items) lives to the end: it is
    moved out of the garbage collector's reach, which walked it again in every full collection of a worker
    (about 40 of them, 22 s per worker in a profile of the suite). Objects made by the tests are collected
    as before, and ``gc.get_objects`` (the memory tests' counts) still lists every one of them."""
    gc.collect()
    gc.freeze()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The whole run (with pytest-xdist: the controller, after every worker) fails when anything new is left
    in the repository, also what no single test was caught writing (a session fixture, a late subprocess)."""
    if _SESSION_START is None or hasattr(session.config, "workerinput"):
        return
    new = files_outside_git() - _SESSION_START
    if new:
        writer = session.config.get_terminal_writer()
        writer.line()
        writer.line(f"ERROR: {_stray_message(new, 'the test session')}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(autouse=True)
def _repository_stays_clean() -> Iterator[None]:
    """A test that leaves a new file or folder in the repository (its root or an ignored folder) fails.
    With pytest-xdist, a test running at the same time on the other worker is named too: run the named
    files alone to tell which one wrote it."""
    before = files_outside_git()
    yield
    new = files_outside_git() - before
    if new:
        pytest.fail(_stray_message(new, "this test"), pytrace=False)


MLFLOW_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID",
                    "MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
                    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT")


@contextmanager
def _restored_mlflow_settings() -> Iterator[None]:
    """MLflow's ``set_tracking_uri`` / ``set_registry_uri`` (called by ``training.tracking.connect``, which
    also bounds MLflow's HTTP retries for a server) write ``MLFLOW_*`` into ``os.environ``: put back the values
    from before (subprocesses and ``ServingSettings.from_env`` read them)."""
    saved = {name: os.environ.get(name) for name in MLFLOW_VARIABLES}
    yield
    if "mlflow" in sys.modules:
        import mlflow

        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]  # None unsets it (MLflow's own reset)
        mlflow.set_registry_uri(None)  # type: ignore[arg-type]
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(autouse=True)
def _mlflow_settings_do_not_leak() -> Iterator[None]:
    """Each test starts from its module's values, not from the store the test before it connected to."""
    with _restored_mlflow_settings():
        yield


@pytest.fixture(autouse=True, scope="module")
def _mlflow_settings_do_not_leak_out_of_a_module() -> Iterator[None]:
    """A module-scoped fixture that connects (a shared trained project, say) set ``MLFLOW_TRACKING_URI`` for the
    rest of its worker: the next module's tests ran with it (`models promote -c missing.yaml` then reached that
    store instead of refusing the project file). Each module starts from the session's values."""
    with _restored_mlflow_settings():
        yield


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """`../shared/data/real` next to the repository (never copied into it)."""
    if not REAL_DATA.is_dir():
        pytest.fail(f"real data folder missing: {REAL_DATA}")
    return REAL_DATA


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite database file."""
    return f"sqlite:///{tmp_path / 'crm.db'}"


@pytest.fixture(scope="session")
def postgres_server_url() -> str:
    return POSTGRES_ADMIN_URL


@pytest.fixture
def postgres_url(postgres_server_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database on the machine's real server, dropped afterwards."""
    name = f"leadscore_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(postgres_server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.engine.make_url(postgres_server_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": name},
            )
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


@pytest.fixture
def postgres_locale_url(postgres_server_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database whose default collation is a locale's (ICU en-US: '_x' 'a10' 'b1' 'B2' 'Z'),
    as production databases often have, dropped afterwards."""
    name = f"leadscore_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(postgres_server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE \"{name}\" TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' "
                             "LOCALE 'C.UTF-8'"))
    try:
        yield sa.engine.make_url(postgres_server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                 "WHERE datname = :name AND pid <> pg_backend_pid()"), {"name": name})
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()
