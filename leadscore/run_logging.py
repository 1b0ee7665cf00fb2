"""What an MLproject entry point leaves in its run.

`mlflow run . -e <entry>` creates a run and hands its id to the command (``MLFLOW_RUN_ID``, the CLI's
hidden ``--run-id``); `features build`, `evaluate` and `forecast` log their results into it with
:func:`log_into_run` (`train` logs its whole training run there itself).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

PARAMS_PER_BATCH = 100  # MLflow's limit of params in one log_batch


def log_into_run(
    run_id: str | None,
    tracking_uri: str,
    *,
    params: Mapping[str, Any] | None = None,
    metrics: Mapping[str, float] | None = None,
    tags: Mapping[str, str] | None = None,
    files: Sequence[Path] = (),
    artifact_path: str | None = None,
    say: Callable[[str], None] = print,
) -> bool:
    """Log into the run ``run_id`` of the store ``tracking_uri`` (the command's: ``MLFLOW_TRACKING_URI``
    or ``--tracking-uri``, else the project's ``mlflow.db``; never MLflow's default ``./mlflow.db`` of the
    working folder) while it is running; nothing without a run id. A run that is not found or not running (an ``MLFLOW_RUN_ID`` left in a shell) is not
    written to: ``say`` tells why, and the command's own results stand.

    Non-finite metrics are left out (MLflow refuses NaN in some stores); params are strings cut at
    6,000 characters. Returns whether the results were logged."""
    if not run_id:
        return False
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from features.urls import masked_url

    client = MlflowClient(tracking_uri=tracking_uri)
    try:
        status = client.get_run(run_id).info.status
        if status != "RUNNING":
            say(f"not logged into MLflow run {run_id}: it is {status.lower()}, not running (MLFLOW_RUN_ID is set)")
            return False
        from mlflow.entities import Param

        listed = [Param(key, str(value)[:6000]) for key, value in (params or {}).items()]
        for first in range(0, len(listed), PARAMS_PER_BATCH):  # a lineage is ~100 params: batches, not one a call
            client.log_batch(run_id, params=listed[first:first + PARAMS_PER_BATCH])
        for key, value in (metrics or {}).items():
            if value is not None and math.isfinite(float(value)):
                client.log_metric(run_id, key, float(value))
        for key, value in (tags or {}).items():
            client.set_tag(run_id, key, str(value))
        for path in files:
            client.log_artifact(run_id, str(path), artifact_path)
    except MlflowException as exc:
        say(f"not logged into MLflow run {run_id} at {masked_url(client.tracking_uri)}: {exc.message}")
        return False
    except OSError as exc:  # the artifact store (a folder, a bucket) refused a file
        say(f"not all logged into MLflow run {run_id}: artifact store: {exc}")
        return False
    return True


def running_run_id(run_id: str | None, client: Any, say: Callable[[str], None] = print) -> str | None:
    """``run_id`` when that run exists and is running (the run `mlflow run` created), else None: an
    ``MLFLOW_RUN_ID`` left in a shell names an ended or unknown run, which must not be written to
    (``say`` tells why, and ``MLFLOW_RUN_ID`` is dropped from this process, since MLflow would pick it
    up again when a run starts)."""
    import os

    from mlflow.exceptions import MlflowException

    if not run_id:
        return None
    from training.tracking import server_failure

    try:
        status = client.get_run(run_id).info.status
    except MlflowException as exc:
        if server_failure(exc) is not None:  # the server went away: the run may well be running
            raise
        status = "not found"
    if status == "RUNNING":
        return run_id
    say(f"MLflow run {run_id} is {status.lower()}, not running (MLFLOW_RUN_ID is set): logging into a new run")
    if os.environ.get("MLFLOW_RUN_ID") == run_id:
        del os.environ["MLFLOW_RUN_ID"]
    return None
