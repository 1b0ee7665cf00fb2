"""The time-to-close model as an MLflow pyfunc: raw feature columns in, per-lead timing out.

``predict`` returns one row per lead: ``p_close_<h>d`` for each configured horizon (30/60/90 by
default), ``median_days`` (None when the curve stays above 1/2 over the model horizon) and
``median_beyond_horizon``. The optional parameter ``survival_days`` (a list of days within the
model horizon) adds the survival curve at those days as ``survival_<d>d`` columns (the registry
uses it to re-score versions on the same evaluation rows); days that are no number or outside
``[0, horizon]`` are refused naming the parameter (``INVALID_PARAMETER_VALUE``: a 400 when served).

Input typing is the sales-readiness pyfunc's (:mod:`training.pyfunc`): categoricals travel as
strings and are mapped back onto the FeatureSpec's vocabularies inside ``predict``. The saved
:class:`training.time_to_close.TimeToCloseModel` directory (booster, config, FeatureSpec) is the
only artifact. Loading it needs the leadscore package (``training``, ``features``) importable.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature, infer_signature
from mlflow.models.model import ModelInfo
from mlflow.types import ParamSchema, ParamSpec

from training.pyfunc import (
    _requirements,
    from_signature_frame,
    input_schema,
    invalid_input,
    to_signature_frame,
)
from training.time_to_close import TimeToCloseModel, survival_at_days

MODEL_ARTIFACT = "time_to_close_model"
SURVIVAL_DAYS_PARAM = "survival_days"


def survival_column(days: float) -> str:
    """Name of the S(days) output column."""
    return f"survival_{days:g}d"


def predict_frame(model: TimeToCloseModel, features: pd.DataFrame, survival_days: list[float] | None = None
                  ) -> pd.DataFrame:
    """The pyfunc's output for a typed feature frame (summary + optional survival columns)."""
    hazards = model.predict_hazard(features)
    out = model.summary_from_hazards(hazards, features.index)
    if survival_days:
        days = np.asarray([float(d) for d in survival_days])
        curve = survival_at_days(hazards, model.config.period_days, days)
        for j, d in enumerate(days):
            out[survival_column(d)] = curve[:, j]
    return out


def survival_days_param(values: Any, horizon_days: float) -> list[float]:
    """The ``survival_days`` parameter as floats, or :func:`training.pyfunc.invalid_input` naming it and
    the values that are no number or lie outside ``[0, horizon_days]``."""
    values = [] if values is None else list(values)
    bad = [v for v in values if isinstance(v, bool) or not isinstance(v, int | float)
           or not 0 <= float(v) <= horizon_days]  # NaN fails the range test too
    if bad:
        shown = ", ".join(repr(v) for v in bad[:10]) + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
        raise invalid_input(f"parameter {SURVIVAL_DAYS_PARAM!r}: days must be numbers in [0, {horizon_days:g}] "
                            f"(the model horizon); got {shown}")
    return [float(v) for v in values]


class TimeToClosePyfunc(mlflow.pyfunc.PythonModel):
    """Pyfunc wrapper of :class:`TimeToCloseModel` (see the module docstring)."""

    def load_context(self, context: Any) -> None:
        self.model_ = TimeToCloseModel.load(context.artifacts[MODEL_ARTIFACT])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        if not isinstance(model_input, pd.DataFrame):
            model_input = pd.DataFrame(model_input)
        days = survival_days_param((params or {}).get(SURVIVAL_DAYS_PARAM), self.model_.config.horizon_days)
        out = predict_frame(self.model_, from_signature_frame(model_input, self.model_), days)
        # a median beyond the horizon is null, not NaN: NaN is no JSON value (`mlflow models predict`)
        out["median_days"] = out["median_days"].astype(object).where(out["median_days"].notna(), None)
        return out


def log_time_to_close_pyfunc(
    model: TimeToCloseModel, example_features: pd.DataFrame, name: str = "model", n_example: int = 5
) -> ModelInfo:
    """Log ``model`` as a pyfunc into the active MLflow run (signature with string categoricals)."""
    example = to_signature_frame(example_features.head(n_example), model).reset_index(drop=True)
    inputs = input_schema(model)
    outputs = infer_signature(example, predict_frame(model, from_signature_frame(example, model))).outputs
    params = ParamSchema([ParamSpec(SURVIVAL_DAYS_PARAM, "double", [], (-1,))])
    signature = ModelSignature(inputs=inputs, outputs=outputs, params=params)
    with tempfile.TemporaryDirectory() as tmp:
        saved = model.save(Path(tmp) / MODEL_ARTIFACT)
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=TimeToClosePyfunc(),
            artifacts={MODEL_ARTIFACT: str(saved)},
            signature=signature,
            input_example=example,
            pip_requirements=_requirements(),
        )


def load_time_to_close(model_dir: str | Path) -> TimeToCloseModel:
    """The :class:`TimeToCloseModel` inside a downloaded/exported pyfunc model directory."""
    directory = Path(model_dir) / "artifacts" / MODEL_ARTIFACT
    if not directory.is_dir():
        raise FileNotFoundError(f"{model_dir} is not a leadscore time-to-close model (no artifacts/{MODEL_ARTIFACT})")
    return TimeToCloseModel.load(directory)
