"""MLflow tracking and registration of the time-to-close model (``lead-time-to-close``).

One run holds: params (the ``time_to_close`` and ``features`` config sections, the LightGBM
parameters used), metrics (the model's C-indices, integrated Brier score, Brier and calibration
per horizon, the peers' figures as ``baseline_<peer>_<metric>``), the comparison table, the
calibration table, the Brier curves, the evaluation settings (tau, days), the model card, the
plots (survival curves of sample leads, calibration at 30/60/90 days, C-index vs peers, Brier over
time), the evaluation rows (so promotion can re-score any version on them) and the pyfunc model.

Registration reuses :func:`training.registry.register_challenger` (alias ``challenger``; the
version tag ``kind=time_to_close`` selects :data:`PROMOTION_RULES` in ``promote``).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion

from features.schema import LEAD_ID
from training.config import AS_OF
from training.pyfunc import to_pyfunc_input
from training.registry import (
    BacktestMissing,
    PromotionRules,
    _bind,
    backtest_graded,
    backtest_missing_note,
    grade_refit_apart,
    register_challenger,
)
from training.registry import load_backtest_model as load_refit_backtest
from training.survival_evaluation import (
    DURATION,
    EVENT,
    EvaluationSettings,
    TimeToCloseResult,
    score_survival,
)
from training.survival_evaluation import (
    MODEL_NAME as MODEL_ROW,
)
from training.survival_pyfunc import (
    SURVIVAL_DAYS_PARAM,
    TimeToClosePyfunc,
    log_time_to_close_pyfunc,
    survival_column,
)
from training.time_to_close import KIND, PREDICT_CHUNK, TimeToCloseModel
from training.tracking import (
    BACKTEST_MODEL_ARTIFACT,
    MODEL_NAME_IN_RUN,
    LoggedRun,
    TrackingTarget,
    connect,
    data_hash,
    ensure_experiment,
    log_backtest_model,
    log_run_evidence,
    log_run_summary,
    quiet_mlflow_noise,
    run_params,
)

MODEL_NAME = "lead-time-to-close"
SETTINGS_ARTIFACT = "evaluation/settings.json"
CALIBRATION_ARTIFACT = "evaluation/calibration.csv"
# evaluation rows re-scored at a time by promote: the blocks of TimeToCloseModel.predict_hazard, so every row
# is scored exactly as in the one call of the training run
SCORE_ROWS = PREDICT_CHUNK
SIDE_BY_SIDE = ("harrell_c", "uno_c", "ibs", "brier_30d", "brier_90d", "calibration_max_gap_90d")


def evaluation_identity(rows: pd.DataFrame) -> dict[str, str]:
    """What identifies the evaluation rows: size, closes, as_of range, content hash (registry tags)."""
    identity = {"eval_rows": str(len(rows)), "eval_events": str(int(rows[EVENT].sum())),
                "eval_data_hash": data_hash(rows)}
    if AS_OF in rows.columns and len(rows):
        identity["eval_as_of_min"] = pd.Timestamp(rows[AS_OF].min()).isoformat()
        identity["eval_as_of_max"] = pd.Timestamp(rows[AS_OF].max()).isoformat()
    return identity


def log_time_to_close_run(
    target: TrackingTarget,
    experiment_name: str,
    result: TimeToCloseResult,
    params: Mapping[str, Any],
    tags: Mapping[str, str] | None = None,
    run_name: str | None = None,
    run_id: str | None = None,
) -> LoggedRun:
    """One MLflow run with everything ``result`` holds; ``run_id`` continues an existing run."""
    client = connect(target)
    if run_id is not None:
        experiment_id = client.get_run(run_id).info.experiment_id
    else:
        experiment_id = ensure_experiment(client, experiment_name, target.artifact_location)
    rows = result.evaluation_rows
    identity = evaluation_identity(rows)
    run_tags = {"leadscore.kind": KIND,
                "leadscore.trained_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
                **{f"leadscore.{k}": v for k, v in identity.items()}, **dict(tags or {})}
    model = result.model
    flat_params = run_params(params, {
        "best_iteration": model.best_iteration_, "horizon_days": model.horizon_days,
        "n_features": len(model.feature_columns_), "lightgbm": model.params_,
        "n_period_rows": model.n_period_rows_, "sampling_rate": model.sampling_rate_,
    })
    start = {"run_id": run_id} if run_id else {"experiment_id": experiment_id, "run_name": run_name}
    with mlflow.start_run(**start) as run:
        run_id = run.info.run_id
        log_run_summary(client, run_id, result, flat_params, run_tags)
        mlflow.log_text(result.calibration.to_csv(index=False), CALIBRATION_ARTIFACT)
        mlflow.log_text(result.brier_curves.to_csv(), "evaluation/brier_over_time.csv")
        mlflow.log_dict(result.settings.to_dict(), SETTINGS_ARTIFACT)
        log_run_evidence(client, run_id, result, rows)
        if result.backtest_model is not None:
            log_backtest_model(result.backtest_model)
        with quiet_mlflow_noise():
            info = log_time_to_close_pyfunc(model, rows[list(model.feature_columns_)], name=MODEL_NAME_IN_RUN)
    return LoggedRun(run_id, experiment_id, info.model_uri, identity, run_tags)


def register_time_to_close(
    client: MlflowClient, logged: LoggedRun, metrics: Mapping[str, float],
    extra_tags: Mapping[str, str] | None = None, name: str = MODEL_NAME, description: str | None = None,
) -> ModelVersion:
    """A new version of ``name`` with alias ``challenger`` and the tag ``kind=time_to_close``."""
    return register_challenger(client, logged, metrics, {"kind": KIND, **dict(extra_tags or {})}, name=name,
                               description=description)


def load_backtest_model(client: MlflowClient, version: ModelVersion) -> TimeToCloseModel:
    """The backtest model a refit version's run logged (:data:`BACKTEST_MODEL_ARTIFACT`)."""
    return load_refit_backtest(client, version, TimeToCloseModel.load)


def out_of_sample_survival(client: MlflowClient, version: ModelVersion, rows: pd.DataFrame,
                           score: Callable[[pd.DataFrame, TimeToCloseModel | None], np.ndarray],
                           progress: Callable[[str], None] | None = None,
                           notes: list[str] | None = None) -> np.ndarray:
    """Survival curves of ``version`` on ``rows`` that never come from rows it was fitted on: ``score(part,
    None)`` scores ``part`` with the version itself, ``score(part, model)`` with ``model``. A refit version's
    rows dated up to its data end (:func:`training.registry.backtest_graded`) go to its run's backtest model, loaded
    once. A run without it: refused, or with ``notes`` (a champion's side of a promotion) scored by the version
    itself with a note (:func:`training.registry.backtest_missing_note`)."""
    loaded: list[TimeToCloseModel] = []

    def score_backtest(part: pd.DataFrame) -> np.ndarray:
        if not loaded:
            try:
                loaded.append(load_backtest_model(client, version))
            except BacktestMissing:
                if notes is None:
                    raise
                notes.append(backtest_missing_note(version, len(part)))
                return score(part, None)
        return score(part, loaded[0])

    return grade_refit_apart(version, rows, lambda part: score(part, None), score_backtest, progress)


def load_settings(client: MlflowClient, run_id: str) -> EvaluationSettings:
    """The evaluation settings a run was measured with."""
    with tempfile.TemporaryDirectory() as tmp:
        local = client.download_artifacts(run_id, SETTINGS_ARTIFACT, tmp)
        return EvaluationSettings.from_dict(json.loads(Path(local).read_text()))


def rows_metrics_time_to_close(
    client: MlflowClient, name: str, version: str, rows: pd.DataFrame, run_id: str, notes: list[str] | None = None
) -> dict[str, float]:
    """Metrics of a registered version on evaluation rows, re-scored through its pyfunc, measured
    with the settings of the run ``run_id`` (the candidate's); ``notes``: the champion's side of a promotion
    (:func:`out_of_sample_survival`).

    The rows go to the pyfunc's own ``predict`` (which checks the columns and values and names the bad
    ones), not through ``PyFuncModel.predict``: MLflow's schema check calls Python once per value of an
    ``AnyType`` column (556,078 rows x 68 columns per version on a 200k-lead CRM, most of a 12-minute
    promote) on rows :func:`training.pyfunc.to_pyfunc_input` typed as the signature wants. They go
    :data:`SCORE_ROWS` at a time (the typed copy holds every categorical value as a Python string)."""
    settings = load_settings(client, run_id)
    _bind(client)
    registered = mlflow.pyfunc.load_model(f"models:/{name}/{version}").unwrap_python_model()
    columns = [survival_column(d) for d in settings.days]

    def score(part: pd.DataFrame, backtest: TimeToCloseModel | None) -> np.ndarray:
        model = registered
        if backtest is not None:  # the backtest model through the same pyfunc path
            model = TimeToClosePyfunc()
            model.model_ = backtest
        features = part.drop(columns=[c for c in (LEAD_ID, AS_OF, DURATION, EVENT) if c in part.columns])
        blocks = []
        for first in range(0, len(features), SCORE_ROWS):
            output = model.predict(None, to_pyfunc_input(features.iloc[first : first + SCORE_ROWS]),
                                   params={SURVIVAL_DAYS_PARAM: list(settings.days)})
            missing = [c for c in columns if c not in output.columns]
            if missing:
                raise ValueError(f"version {version} of {name!r} did not return survival columns {missing[:3]}...")
            blocks.append(output[columns].to_numpy(dtype=float))
        return np.concatenate(blocks) if blocks else np.empty((0, len(columns)))

    survival = out_of_sample_survival(client, client.get_model_version(name, version), rows, score, notes=notes)
    evaluation = score_survival(rows[DURATION].to_numpy(dtype=float), rows[EVENT].to_numpy(), survival, settings)
    return evaluation.metrics


def load_calibration(client: MlflowClient, run_id: str) -> pd.DataFrame:
    """The calibration table of a run."""
    with tempfile.TemporaryDirectory() as tmp:
        return pd.read_csv(client.download_artifacts(run_id, CALIBRATION_ARTIFACT, tmp))


PROMOTION_RULES = PromotionRules(KIND, MODEL_ROW, "uno_c", SIDE_BY_SIDE, rows_metrics_time_to_close,
                                 ("uno_c", "harrell_c", "ibs"), EVENT)

__all__ = [
    "BACKTEST_MODEL_ARTIFACT",
    "MODEL_NAME",
    "PROMOTION_RULES",
    "backtest_graded",
    "load_backtest_model",
    "out_of_sample_survival",
    "evaluation_identity",
    "load_calibration",
    "load_settings",
    "log_time_to_close_run",
    "register_time_to_close",
    "rows_metrics_time_to_close",
]
