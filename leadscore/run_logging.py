"""What an MLproject entry point leaves in its run.

`mlflow run . -e <entry>` creates a run and hands its id to the command (``MLFLOW_RUN_ID``, the CLI's
hidden ``--run-id``); `features build`, `evaluate` and `forecast` log their results into it with
:func:`log_into_run` (`train` logs its whole training run there itself).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def log_into_run(
    run_id: str | None,
    *,
    params: Mapping[str, Any] | None = None,
    metrics: Mapping[str, float] | None = None,
    tags: Mapping[str, str] | None = None,
    files: Sequence[Path] = (),
    artifact_path: str | None = None,
) -> bool:
    """Log into the existing run ``run_id`` of the current tracking URI; nothing without a run id.

    Non-finite metrics are left out (MLflow refuses NaN in some stores); params are strings cut at
    6,000 characters. Returns whether anything was logged."""
    if not run_id:
        return False
    from mlflow import MlflowClient

    client = MlflowClient()
    for key, value in (params or {}).items():
        client.log_param(run_id, key, str(value)[:6000])
    for key, value in (metrics or {}).items():
        if value is not None and math.isfinite(float(value)):
            client.log_metric(run_id, key, float(value))
    for key, value in (tags or {}).items():
        client.set_tag(run_id, key, str(value))
    for path in files:
        client.log_artifact(run_id, str(path), artifact_path)
    return True
