"""The sales-readiness model as an MLflow pyfunc: raw feature columns in, calibrated probabilities out.

MLflow signatures have no pandas ``category`` type, so categorical feature columns travel as
strings (``to_signature_frame``) and are turned back into categories over the FeatureSpec's
vocabularies inside ``predict`` (``from_signature_frame``; unseen values become missing, exactly
as ``SalesReadinessModel.predict_proba`` treats them). A text equal to one of the missing markers the
model's data contract declared (``FeatureSpec.missing_values_``, e.g. ``"Select"``) is a missing value
in any column, as in the tables the model was trained on. Numeric columns are read as the data contract
reads them (:func:`features.contract.parse_numbers`: numbers as text, booleans as 1 / 0); a value that is
no finite number (``"abc"``, ``inf``, ``"NaN"``), or a list or object in any column, is refused with an
``MlflowException`` (``INVALID_PARAMETER_VALUE``, a 400 from ``mlflow models serve``) naming every such
column and its rows. The saved ``SalesReadinessModel`` directory (booster, calibrator, FeatureSpec) is the
pyfunc's only artifact.

Loading the pyfunc needs the leadscore package (``training``, ``features``) importable.
"""

from __future__ import annotations

import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature, infer_signature
from mlflow.models.model import ModelInfo
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.types import ColSpec, Schema
from mlflow.types.schema import AnyType

from features.contract import parse_numbers
from features.schema import to_numbers
from training.model import PREDICT_BLOCK_ROWS, SalesReadinessModel

MODEL_ARTIFACT = "sales_readiness_model"
PROBABILITY = "probability"
# rows of a frame handed at a time to the pyfunc's own predict by :func:`pyfunc_probabilities` (the typed copy of
# a block holds every categorical value as a Python string)
SCORE_ROWS = PREDICT_BLOCK_ROWS
_REQUIREMENTS = ("mlflow", "lightgbm", "pandas", "numpy", "scikit-learn", "pydantic", "pyarrow", "pyyaml")


def to_signature_frame(frame: pd.DataFrame, model: SalesReadinessModel) -> pd.DataFrame:
    """The model's feature columns in training order, typed as the pyfunc signature wants them."""
    missing = [c for c in model.feature_columns_ if c not in frame.columns]
    if missing:
        raise KeyError(f"feature frame lacks model feature column(s) {missing}")
    typed = to_pyfunc_input(frame[model.feature_columns_])
    for col in model.categories_:  # categoricals stored as numbers still travel as text
        if col in typed.columns and typed[col].dtype != object:
            typed[col] = typed[col].astype(object).where(typed[col].notna(), None).map(
                lambda v: v if v is None else str(v))
    return typed


def invalid_input(message: str) -> MlflowException:
    """The error for a bad model input: ``mlflow models serve`` answers it with a 400 carrying ``message``."""
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


def _where(index: pd.Index, bad: np.ndarray, values: pd.Series, shown: int = 10) -> str:
    """``rows [1, 7] (e.g. 'abc')``: the first offending row labels (with their count beyond ``shown``) and one value."""
    rows = index[bad].tolist()
    more = f" and {len(rows) - shown} more" if len(rows) > shown else ""
    value = values[bad].iloc[0]
    example = repr(value.item() if isinstance(value, np.generic) else value)  # inf, not np.float64(inf)
    example = example if len(example) <= 40 else example[:37] + "..."
    return f"rows {rows[:shown]}{more} (e.g. {example})"


# what pandas.api.types.infer_dtype calls an object column holding only single values (no list, dict ...)
_SINGLE_VALUES = frozenset({"empty", "string", "integer", "floating", "mixed-integer-float", "boolean", "decimal"})


def _nested(series: pd.Series) -> np.ndarray:
    """Mask of values that are containers (lists, objects), not single values."""
    if series.dtype != object or pd.api.types.infer_dtype(series, skipna=True) in _SINGLE_VALUES:
        return np.zeros(len(series), dtype=bool)  # one pass in C: a column of texts or numbers has no container
    return series.map(lambda v: isinstance(v, list | tuple | dict | set | np.ndarray)).to_numpy(dtype=bool)


def from_signature_frame(frame: pd.DataFrame, model: SalesReadinessModel) -> pd.DataFrame:
    """Inverse of :func:`to_signature_frame`: categoricals over the training vocabularies (unseen -> NaN),
    the missing markers of the model's spec missing, numeric columns parsed as the data contract does.
    Raises :func:`invalid_input` naming the missing, repeated or badly valued columns and their rows."""
    missing = [c for c in model.feature_columns_ if c not in frame.columns]
    if missing:
        raise invalid_input(f"model input lacks feature column(s) {missing}")
    repeated = sorted({c for c in frame.columns[frame.columns.duplicated()] if c in model.feature_columns_})
    if repeated:
        raise invalid_input(f"model input has feature column(s) {repeated} more than once")
    spec = getattr(model, "spec_", None)
    markers = sorted(spec.missing_markers) if hasattr(spec, "missing_markers") else [""]
    out: dict[str, Any] = {}
    errors: list[str] = []
    for col in model.feature_columns_:
        series = frame[col]
        if (nested := _nested(series)).any():
            errors.append(f"column {col!r}: lists or objects instead of single values in "
                          f"{_where(frame.index, nested, series)}")
            continue
        if series.dtype == object and (marked := series.isin(markers)).any():
            series = series.mask(marked)
        if col in model.categories_:
            vocab = list(model.categories_[col])
            if all(isinstance(v, str) for v in vocab):
                series = as_text(series)
            out[col] = pd.Categorical(series, categories=vocab)
        else:
            parsed, bad = parse_numbers(series)
            if bad.any():
                errors.append(f"column {col!r}: not a finite number in {_where(frame.index, bad, series)}")
            out[col] = parsed.astype(np.float64)
    if errors:
        raise invalid_input("model input refused: " + "; ".join(errors))
    return pd.DataFrame(out, index=frame.index)


class SalesReadinessPyfunc(mlflow.pyfunc.PythonModel):
    """Pyfunc wrapper: ``predict`` returns calibrated P(convert within H days), one float per row."""

    def load_context(self, context: Any) -> None:
        self.model_ = SalesReadinessModel.load(context.artifacts[MODEL_ARTIFACT])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> np.ndarray:
        if not isinstance(model_input, pd.DataFrame):
            model_input = pd.DataFrame(model_input)
        return self.model_.predict_proba(from_signature_frame(model_input, self.model_))


def pyfunc_probabilities(model: mlflow.pyfunc.PyFuncModel | SalesReadinessPyfunc, features: pd.DataFrame) -> np.ndarray:
    """Calibrated probabilities of a loaded sales-readiness pyfunc (or its python model, e.g. a run's backtest model
    wrapped as one) on a feature frame (any column order, extra columns ignored), one per row.

    The rows go to the pyfunc's own ``predict`` (which checks the columns and values and names the bad ones),
    not through ``PyFuncModel.predict``: MLflow's schema check calls Python once per value of every ``AnyType``
    column (556,078 rows x 68 columns on a 200k-lead CRM, most of a ``models promote``) on rows
    :func:`to_pyfunc_input` has already typed as the signature wants. They go :data:`SCORE_ROWS` at a time;
    LightGBM and the calibrator score each row on its own, so the probabilities are those of one call."""
    python_model = model if isinstance(model, SalesReadinessPyfunc) else model.unwrap_python_model()
    out = np.empty(len(features), dtype=np.float64)
    for first in range(0, len(features), SCORE_ROWS):
        block = features.iloc[first : first + SCORE_ROWS]
        scored = np.asarray(python_model.predict(None, to_pyfunc_input(block)), dtype=np.float64).ravel()
        if len(scored) != len(block):
            raise ValueError(f"the model returned {len(scored)} probabilities for {len(block)} rows")
        out[first : first + len(block)] = scored
    return out


def _requirements() -> list[str]:
    out = []
    for name in _REQUIREMENTS:
        try:
            out.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            out.append(name)
    return out


def input_schema(model: Any) -> Schema:
    """The pyfunc's input signature: categoricals ``string``; numeric columns of any type (MLflow refuses
    to cast int64 to ``double``, so a CSV of whole numbers would be rejected); ``predict`` parses them
    and names the rows that are not numbers."""
    return Schema([
        ColSpec("string", col) if col in model.categories_ else ColSpec(AnyType(), col)
        for col in model.feature_columns_
    ])


def log_pyfunc_model(
    model: SalesReadinessModel, example_features: pd.DataFrame, name: str = "model", n_example: int = 5
) -> ModelInfo:
    """Log ``model`` as a pyfunc into the active MLflow run (signature + input example with string categoricals)."""
    example = to_signature_frame(example_features.head(n_example), model).reset_index(drop=True)
    inputs = input_schema(model)
    outputs = infer_signature(example, model.predict_proba(from_signature_frame(example, model))).outputs
    signature = ModelSignature(inputs=inputs, outputs=outputs)
    with tempfile.TemporaryDirectory() as tmp:
        saved = model.save(Path(tmp) / MODEL_ARTIFACT)
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=SalesReadinessPyfunc(),
            artifacts={MODEL_ARTIFACT: str(saved)},
            signature=signature,
            input_example=example,
            pip_requirements=_requirements(),
        )


def load_sales_readiness(model_dir: str | Path) -> SalesReadinessModel:
    """The ``SalesReadinessModel`` inside a downloaded/exported pyfunc model directory."""
    directory = Path(model_dir) / "artifacts" / MODEL_ARTIFACT
    if not directory.is_dir():
        raise FileNotFoundError(f"{model_dir} is not a leadscore pyfunc model (no artifacts/{MODEL_ARTIFACT})")
    return SalesReadinessModel.load(directory)


def as_text(series: pd.Series) -> pd.Series:
    """``series`` as ``str`` values, missing ones ``None`` (object dtype): ``str(v)`` of each value, called once
    per category of a categorical and not at all on values that are already text (a Python call per value was
    about 30% of re-scoring 556,078 rows' 7 categorical columns); other values (numbers) one call each."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        texts = np.array([*(str(c) for c in series.cat.categories), None], dtype=object)
        return pd.Series(texts[series.cat.codes.to_numpy()], index=series.index, name=series.name)  # -1: None
    text = series.astype(object).where(series.notna(), None)
    if pd.api.types.infer_dtype(text, skipna=True) in ("string", "empty"):
        return text
    return text.map(lambda v: v if v is None else str(v))


def to_pyfunc_input(frame: pd.DataFrame) -> pd.DataFrame:
    """Any feature frame -> the pyfunc's input types: categorical/text columns as ``str``/``None``, the rest float64."""
    out: dict[str, Any] = {}
    for col in frame.columns:
        series = frame[col]
        if isinstance(series.dtype, pd.CategoricalDtype) or series.dtype == object or pd.api.types.is_string_dtype(
            series.dtype
        ):
            out[col] = as_text(series)
        else:
            out[col] = to_numbers(series, errors="raise").astype(np.float64)
    return pd.DataFrame(out, index=frame.index)
