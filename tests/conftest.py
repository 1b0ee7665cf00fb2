"""Shared fixtures: real databases (SQLite files, the machine's PostgreSQL) and paths."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"
POSTGRES_ADMIN_URL = os.environ.get(
    "LEADSCORE_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


MLFLOW_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID",
                    "MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
                    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT")


@pytest.fixture(autouse=True)
def _mlflow_settings_do_not_leak() -> Iterator[None]:
    """MLflow's ``set_tracking_uri`` / ``set_registry_uri`` (called by ``training.tracking.connect``, which
    also bounds MLflow's HTTP retries for a server) write ``MLFLOW_*`` into ``os.environ``: each test starts from the session's values, not from the
    store the test before it connected to (subprocesses, ``ServingSettings.from_env`` read them)."""
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
