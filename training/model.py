"""The sales-readiness model: a compact LightGBM booster plus a calibrator.

``SalesReadinessModel.predict_proba`` returns calibrated P(convert within H days). Inputs are
matched to the training columns BY NAME (LightGBM itself predicts by position) and categorical
columns are re-coded with the training vocabulary (unseen values become missing), so column order
and unseen categories never change or break a score. Saved as plain files: ``booster.txt``
(LightGBM model text) + ``model.json`` (columns, vocabularies, calibrator, metadata).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from features.schema import to_numbers, vocabulary_codes
from training.calibration import Calibrator, calibrator_from_dict, fit_calibrator
from training.config import BoosterConfig, SearchConfig

if TYPE_CHECKING:
    from features.spec import FeatureSpec

BOOSTER_FILE = "booster.txt"
META_FILE = "model.json"
FORMAT_VERSION = 1
# rows of a frame encoded at once to be scored: 62 MB of float64 at 77 features, where a 556,078-row test slice
# took 342 MB at once
PREDICT_BLOCK_ROWS = 100_000
KIND = "sales_readiness"
# what ``load`` reads from model.json (``spec`` may be absent: the model then carries no FeatureSpec)
_META_KEYS = ("feature_columns", "categories", "calibrator", "calibration", "horizon_days", "best_iteration",
              "booster_config", "params", "seed", "n_train", "train_positive_rate")


def scaled_min_data_in_leaf(n_rows: int, positive_rate: float = 0.5) -> int:
    """Leaf size that grows with the data and with rarity of conversions.

    clip(max(n / 500, 3 / positive_rate), 20, 1000): 20 for 10k balanced rows, ~150 at a 2% rate
    (so a leaf expects a few conversions), 1000 from 500k rows.
    """
    rate = min(max(positive_rate, 1e-4), 1.0)
    return int(np.clip(max(n_rows / 500, 3.0 / rate), 20, 1000))


def is_categorical(series: pd.Series) -> bool:
    """Columns modelled as LightGBM native categoricals."""
    return isinstance(series.dtype, pd.CategoricalDtype) or series.dtype == object or pd.api.types.is_string_dtype(
        series.dtype
    )


def _plain(values: Sequence[Any]) -> list[Any]:
    """Category values as JSON-friendly Python scalars."""
    return [v.item() if isinstance(v, np.generic) else v for v in values]


def infer_categories(frame: pd.DataFrame, spec: Any = None) -> dict[str, list[Any]]:
    """Training vocabulary per categorical column: from the FeatureSpec when it has one, else the frame."""
    from_spec = spec_categories(spec)
    out: dict[str, list[Any]] = {}
    for col in frame.columns:
        if col in from_spec:
            out[col] = list(from_spec[col])
        elif is_categorical(frame[col]):
            s = frame[col]
            values = s.cat.categories if isinstance(s.dtype, pd.CategoricalDtype) else pd.unique(s.dropna())
            out[col] = _plain(sorted(values, key=str))
    return out


def spec_categories(spec: Any) -> dict[str, list[Any]]:
    """Categorical vocabularies carried by a FeatureSpec (duck-typed: ``categories`` / ``vocabularies``)."""
    if spec is None:
        return {}
    for name in ("categorical_vocab_", "categories", "vocabularies"):
        value = getattr(spec, name, None)
        if isinstance(value, Mapping):
            return {str(k): _plain(list(v)) for k, v in value.items()}
    return {}


def spec_columns(spec: Any) -> list[str] | None:
    """Feature column order carried by a FeatureSpec (duck-typed), if any."""
    if spec is None:
        return None
    for name in ("columns_", "columns", "feature_columns"):
        value = getattr(spec, name, None)
        if isinstance(value, list | tuple) and value and all(isinstance(v, str) for v in value):
            return list(value)
    return None


def take_rows(frame: pd.DataFrame, rows: np.ndarray, columns: Sequence[str]) -> pd.DataFrame:
    """``frame[columns].iloc[rows]`` with one copy of the rows taken: every column of them is copied, the
    others are then deleted (pandas deletes a column from a block without copying the block), where
    selecting the columns first or after would copy them a second time."""
    out = frame.take(rows)
    wanted = set(columns)
    for col in [c for c in out.columns if c not in wanted]:
        del out[col]
    return out if list(out.columns) == list(columns) else out[list(columns)]


def rows_of(frame: pd.DataFrame, rows: np.ndarray) -> pd.DataFrame:
    """``frame.take(rows).reset_index(drop=True)`` with one copy of the rows: the index is set on the copy
    (``reset_index`` copied the rows again, consolidating their blocks: +891 MiB for 556,078 rows of a
    200k-lead CRM, where the rows are 289 MiB)."""
    out = frame.take(rows)
    out.index = pd.RangeIndex(len(out))
    return out


def encode_features(
    frame: pd.DataFrame, columns: Sequence[str], categories: Mapping[str, Sequence[Any]]
) -> np.ndarray:
    """Float matrix in training column order; categoricals as training-vocabulary codes (NaN = unseen/missing)."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise KeyError(f"scoring frame lacks training feature column(s) {missing}")
    out = np.empty((len(frame), len(columns)), dtype=np.float64)
    for j, col in enumerate(columns):
        s = frame[col]
        if col in categories:
            vocab = list(categories[col])
            if all(isinstance(v, str) for v in vocab):  # compare as text, like the FeatureSpec does
                out[:, j] = vocabulary_codes(s, vocab)
                continue
            codes = pd.Categorical(s, categories=vocab).codes.astype(np.float64)
            codes[codes < 0] = np.nan
            out[:, j] = codes
        else:
            try:
                out[:, j] = to_numbers(s, errors="raise").astype(np.float64)
            except (ValueError, TypeError) as exc:
                bad = s[to_numbers(s, errors="coerce").isna() & s.notna()]
                raise ValueError(
                    f"feature column {col!r} must be numeric; non-numeric rows {bad.index[:10].tolist()} "
                    f"(values {bad.head(5).tolist()})"
                ) from exc
    return out


LIGHTGBM_REFUSED = str.maketrans({ch: "_" for ch in '",:[]{}'})  # LightGBM: "special JSON characters"


def lightgbm_feature_names(columns: Sequence[str]) -> list[str]:
    """The names LightGBM is given for ``columns``: its refused characters (``" , : [ ] { }``, which CRM
    names such as ``Email: Opened`` hold) as ``_``, a name made equal to another one suffixed by its
    position. Only the booster file sees them: the model's columns, importances and reasons keep
    ``columns``, and LightGBM predicts by position."""
    names = [str(c).translate(LIGHTGBM_REFUSED) for c in columns]
    taken: set[str] = set()
    out = []
    for j, (name, column) in enumerate(zip(names, columns, strict=True)):
        if name in taken or (name != column and names.count(name) > 1):
            name = f"{name}__{j}"
        taken.add(name)
        out.append(name)
    return out


def resolve_scale_pos_weight(setting: float | str | None, y: np.ndarray) -> float:
    """Class-imbalance weight for positives."""
    if setting is None:
        return 1.0
    if isinstance(setting, int | float):
        return float(setting)
    pos = float(np.sum(y == 1))
    neg = float(np.sum(y == 0))
    if pos == 0:
        return 1.0
    ratio = neg / pos
    return ratio if setting == "balanced" else math.sqrt(ratio)


def lgb_params(config: BoosterConfig, n_train: int, y: np.ndarray, seed: int) -> dict[str, Any]:
    """LightGBM parameter dict from the typed config (min_data_in_leaf scaled with data size)."""
    min_leaf = config.min_data_in_leaf or scaled_min_data_in_leaf(n_train, float(np.mean(y)) if len(y) else 0.5)
    pos_weight = resolve_scale_pos_weight(config.scale_pos_weight, y)
    return {
        "objective": "binary",
        # early stopping metric: log loss is distorted by class weights, so weighted fits stop on AUC
        "metric": "binary_logloss" if pos_weight == 1.0 else "auc",
        "num_leaves": config.num_leaves,
        "max_depth": config.max_depth,
        "learning_rate": config.learning_rate,
        "min_data_in_leaf": min_leaf,
        "min_data_per_group": config.min_data_per_group or int(np.clip(n_train // 50, 50, 500)),
        "cat_smooth": config.cat_smooth,
        "cat_l2": config.cat_l2,
        "max_cat_threshold": config.max_cat_threshold,
        "max_cat_to_onehot": config.max_cat_to_onehot,
        "feature_fraction": config.feature_fraction,
        "bagging_fraction": config.bagging_fraction,
        "bagging_freq": config.bagging_freq if config.bagging_fraction < 1 else 0,
        "lambda_l2": config.lambda_l2,
        "scale_pos_weight": pos_weight,
        "num_threads": config.num_threads or (1 if n_train < 100_000 else 0),
        "seed": seed,
        "deterministic": True,
        "force_row_wise": True,
        "verbosity": -1,
    }


def _check_label(y: Any, what: str) -> np.ndarray:
    arr = np.asarray(y, dtype=float)
    bad = ~np.isin(arr, (0.0, 1.0))
    if bad.any():
        raise ValueError(
            f"{what}: label must be 0/1 (censored rows removed first); bad rows {np.flatnonzero(bad)[:10].tolist()}"
        )
    if arr.size and arr.min() == arr.max():
        raise ValueError(f"{what}: label holds a single class ({arr[0]:.0f}); cannot train")
    return arr


def training_columns(X: pd.DataFrame, spec: Any = None) -> tuple[list[str], dict[str, list[Any]]]:
    """The feature columns a model fitted on ``X`` uses (the spec's order) and their vocabularies."""
    order = spec_columns(spec)
    columns = [c for c in order if c in X.columns] if order else list(X.columns)
    extra = [c for c in X.columns if c not in columns]
    if extra:
        raise ValueError(f"training frame has columns not in the FeatureSpec: {extra}")
    # X's columns are the feature columns, maybe in another order: selected only then (a copy)
    in_order = X if list(X.columns) == columns else X[columns]
    return columns, infer_categories(in_order, spec)


@dataclass(frozen=True)
class EncodedSlices:
    """A training and a validation slice encoded once, as ``SalesReadinessModel.fit`` encodes them: what
    every trial of a search fits on."""

    feature_columns: list[str]
    categories: dict[str, list[Any]]
    spec: Any
    train: np.ndarray
    y_train: np.ndarray
    valid: np.ndarray
    y_valid: np.ndarray


def encode_slices(X: pd.DataFrame, y: Any, X_valid: pd.DataFrame, y_valid: Any, spec: Any = None) -> EncodedSlices:
    """Both slices encoded with the columns and vocabularies a model fitted on ``X`` would use."""
    columns, categories = training_columns(X, spec)
    return EncodedSlices(columns, categories, spec, encode_features(X, columns, categories),
                         _check_label(y, "training slice"), encode_features(X_valid, columns, categories),
                         _check_label(y_valid, "validation slice"))


class SalesReadinessModel:
    """Calibrated LightGBM classifier of conversion within ``horizon_days``."""

    def __init__(
        self,
        booster: BoosterConfig | None = None,
        calibration: str = "auto",
        horizon_days: int | None = None,
        seed: int = 42,
    ) -> None:
        self.booster_config = booster or BoosterConfig()
        self.calibration = calibration
        self.horizon_days = horizon_days
        self.seed = seed

    # ------------------------------------------------------------------ fitting
    def fit(
        self,
        X: pd.DataFrame,
        y: Any,
        X_valid: pd.DataFrame | None = None,
        y_valid: Any = None,
        *,
        num_boost_round: int | None = None,
        spec: Any = None,
        callbacks: Sequence[Any] = (),
    ) -> SalesReadinessModel:
        """Fit on ``X`` (feature columns only); early-stop and calibrate on the later ``X_valid``.

        Without a validation slice, ``num_boost_round`` is required and the caller sets the
        calibrator with ``calibrate(margin, y)`` (flat mode: out-of-fold margins). ``callbacks``: more
        LightGBM callbacks for the early-stopped fit (the search's deadline).
        """
        started = time.perf_counter()
        y_arr = _check_label(y, "training slice")
        self.feature_columns_, self.categories_ = training_columns(X, spec)
        self.spec_ = spec
        valid = None if X_valid is None else (X_valid, _check_label(y_valid, "validation slice"))
        # encoded where the training set is made, so that the training set alone holds the matrix and lets it
        # go once LightGBM has binned it (a name here, or an argument of the call, would hold it through the fit)
        return self._fit_dataset(lambda: encode_features(X, self.feature_columns_, self.categories_), len(X), y_arr,
                                 valid, num_boost_round, callbacks, started)

    def fit_encoded(self, slices: EncodedSlices, *, callbacks: Sequence[Any] = ()) -> SalesReadinessModel:
        """``fit`` on slices encoded once (:func:`encode_slices`): the same model as ``fit`` on their frames."""
        started = time.perf_counter()
        self.feature_columns_, self.categories_ = list(slices.feature_columns), dict(slices.categories)
        self.spec_ = slices.spec
        return self._fit_dataset(lambda: slices.train, len(slices.train), slices.y_train,
                                 (slices.valid, slices.y_valid), None, callbacks, started)

    def _dataset(self, X_enc: np.ndarray, y_arr: np.ndarray) -> lgb.Dataset:
        """The LightGBM training set of an encoded matrix, binned with the fit's parameters (as ``lgb.train``
        bins it); it lets the matrix go once binned."""
        cat_idx = [j for j, c in enumerate(self.feature_columns_) if c in self.categories_]
        return lgb.Dataset(X_enc, label=y_arr, feature_name=lightgbm_feature_names(self.feature_columns_),
                           categorical_feature=cat_idx,
                           params=self.params_, free_raw_data=True).construct()

    def _fit_dataset(self, encoded: Callable[[], np.ndarray], n_train: int, y_arr: np.ndarray,
                     valid: tuple[Any, np.ndarray] | None, num_boost_round: int | None, callbacks: Sequence[Any],
                     started: float) -> SalesReadinessModel:
        """The booster on the training matrix ``encoded()`` (``n_train`` rows); ``valid``: the validation slice
        (a frame, or its encoded matrix) and its labels, for early stopping and calibration."""
        self.params_ = lgb_params(self.booster_config, n_train, y_arr, self.seed)
        train_set = self._dataset(encoded(), y_arr)  # binned (its matrix gone) before the validation slice is encoded
        if valid is not None:
            X_valid, yv = valid
            # binned with the training set's bins; its matrix, held by the dataset alone, goes once binned
            valid_set = lgb.Dataset(self._matrix(X_valid), label=yv, reference=train_set)
            self.booster_ = lgb.train(
                self.params_, train_set, num_boost_round=num_boost_round or self.booster_config.max_rounds,
                valid_sets=[valid_set], valid_names=["valid"],
                callbacks=[
                    lgb.early_stopping(self.booster_config.early_stopping_rounds, verbose=False),
                    lgb.log_evaluation(0),
                    *callbacks,
                ],
            )
            del train_set, valid_set  # the binned data, before the validation slice is scored
            self.best_iteration_ = int(self.booster_.best_iteration or self.booster_.current_iteration())
            self.calibrate(self.predict_raw(X_valid), yv)
        else:
            if num_boost_round is None:
                raise ValueError("fit without a validation slice needs num_boost_round")
            self.booster_ = lgb.train(self.params_, train_set, num_boost_round=num_boost_round)
            del train_set
            self.best_iteration_ = int(num_boost_round)
        self.n_train_ = n_train
        self.train_positive_rate_ = float(y_arr.mean())
        self.fit_seconds_ = time.perf_counter() - started
        return self

    def calibrate(self, margin: np.ndarray, y: Any) -> SalesReadinessModel:
        """(Re)fit the calibrator on held-out margins."""
        self.calibrator_: Calibrator = fit_calibrator(self.calibration, margin, _check_label(y, "calibration"))
        return self

    # --------------------------------------------------------------- prediction
    def _check_fitted(self) -> None:
        if not hasattr(self, "booster_"):
            raise RuntimeError("SalesReadinessModel is not fitted")

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        """Feature matrix exactly as the booster sees it (training order, training vocabularies)."""
        self._check_fitted()
        return encode_features(frame, self.feature_columns_, self.categories_)

    def _matrix(self, frame: pd.DataFrame | np.ndarray) -> np.ndarray:
        """``frame`` encoded, or a matrix already encoded with this model's columns and vocabularies."""
        if isinstance(frame, np.ndarray):
            return frame
        return encode_features(frame, self.feature_columns_, self.categories_)

    def predict_raw(self, frame: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Uncalibrated log-odds margin (of a frame, or of a matrix encoded as :meth:`encode` does). A frame is
        encoded ``PREDICT_BLOCK_ROWS`` rows at a time (LightGBM scores each row on its own: the same margins)."""
        self._check_fitted()
        if isinstance(frame, np.ndarray) or len(frame) <= PREDICT_BLOCK_ROWS:
            return self.booster_.predict(self._matrix(frame), raw_score=True, num_iteration=self.best_iteration_)
        out = np.empty(len(frame), dtype=np.float64)
        for start in range(0, len(frame), PREDICT_BLOCK_ROWS):
            block = frame.iloc[start:start + PREDICT_BLOCK_ROWS]
            out[start:start + len(block)] = self.booster_.predict(self._matrix(block), raw_score=True,
                                                                  num_iteration=self.best_iteration_)
        return out

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Calibrated P(convert within H days), one value per row."""
        if not hasattr(self, "calibrator_"):
            raise RuntimeError("SalesReadinessModel has no calibrator; call calibrate(margin, y)")
        return self.calibrator_.transform(self.predict_raw(frame))

    def predict_contributions(self, frame: pd.DataFrame) -> np.ndarray:
        """Exact TreeSHAP contributions to the margin: (n, n_features + 1), last column = bias."""
        return self.booster_.predict(self.encode(frame), pred_contrib=True, num_iteration=self.best_iteration_)

    def feature_importance(self, kind: str = "gain") -> pd.Series:
        """Importance per feature (``gain`` or ``split``), in training column order."""
        self._check_fitted()
        values = self.booster_.feature_importance(importance_type=kind, iteration=self.best_iteration_)
        return pd.Series(values, index=self.feature_columns_, dtype=float)

    # ------------------------------------------------------------------ storage
    def save(self, directory: str | Path) -> Path:
        """Write ``booster.txt`` + ``model.json`` into ``directory`` (created) and return it."""
        self._check_fitted()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.booster_.save_model(str(directory / BOOSTER_FILE), num_iteration=self.best_iteration_)
        spec_dict = None
        if self.spec_ is not None and hasattr(self.spec_, "to_dict"):
            spec_dict = self.spec_.to_dict()
        meta = {
            "format_version": FORMAT_VERSION,
            "kind": KIND,
            "feature_columns": self.feature_columns_,
            "categories": self.categories_,
            "calibrator": self.calibrator_.to_dict() if hasattr(self, "calibrator_") else None,
            "calibration": self.calibration,
            "horizon_days": self.horizon_days,
            "best_iteration": self.best_iteration_,
            "booster_config": self.booster_config.model_dump(),
            "params": {k: v for k, v in self.params_.items()},
            "seed": self.seed,
            "n_train": self.n_train_,
            "train_positive_rate": self.train_positive_rate_,
            "spec": spec_dict,
        }
        (directory / META_FILE).write_text(json.dumps(meta, indent=1, default=str))
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> SalesReadinessModel:
        """Read a model written by ``save``."""
        directory = Path(directory)
        meta = read_saved_meta(directory, KIND, FORMAT_VERSION, _META_KEYS)
        model = cls(
            booster=BoosterConfig.model_validate(meta["booster_config"]),
            calibration=meta["calibration"],
            horizon_days=meta["horizon_days"],
            seed=meta["seed"],
        )
        model.booster_ = lgb.Booster(model_file=str(directory / BOOSTER_FILE))
        model.feature_columns_ = list(meta["feature_columns"])
        model.categories_ = {k: list(v) for k, v in meta["categories"].items()}
        model.best_iteration_ = int(meta["best_iteration"])
        model.params_ = meta["params"]
        model.n_train_ = meta["n_train"]
        model.train_positive_rate_ = meta["train_positive_rate"]
        model.spec_ = _load_spec(meta.get("spec"))
        if meta["calibrator"] is not None:
            try:
                model.calibrator_ = calibrator_from_dict(meta["calibrator"])
            except ValueError as exc:
                raise ValueError(f"saved model {directory}: {META_FILE}: {exc}") from exc
        return model


def read_saved_meta(directory: Path, kind: str, format_version: int, required: Sequence[str]) -> dict[str, Any]:
    """The ``model.json`` of a model saved in ``directory`` (beside its ``booster.txt``), checked to be a
    ``kind`` model of ``format_version`` holding the ``required`` keys; errors name the folder and file."""
    for name in (BOOSTER_FILE, META_FILE):
        if not (directory / name).is_file():
            raise FileNotFoundError(f"saved model {directory} lacks {name}")
    try:
        meta = json.loads((directory / META_FILE).read_text())
    except ValueError as exc:
        raise ValueError(f"saved model {directory}: {META_FILE} is not JSON ({exc})") from exc
    if not isinstance(meta, dict):
        raise ValueError(f"saved model {directory}: {META_FILE} is not a JSON object")
    if meta.get("kind") != kind or meta.get("format_version") != format_version:
        raise ValueError(f"saved model {directory}: not a {kind} model of format {format_version} "
                         f"(kind {meta.get('kind')!r}, format {meta.get('format_version')!r})")
    missing = [k for k in required if k not in meta]
    if missing:
        raise ValueError(f"saved model {directory}: {META_FILE} lacks {missing}")
    return meta


def _load_spec(data: dict[str, Any] | None) -> FeatureSpec | None:
    """The saved FeatureSpec (None: the model was saved without one)."""
    from features.spec import FeatureSpec

    return None if data is None else FeatureSpec.from_dict(data)


def probability_to_score(p: np.ndarray) -> np.ndarray:
    """0-100 integer score = round(100 * probability)."""
    return np.rint(100.0 * np.asarray(p, dtype=float)).astype(int)


SEARCH_REPORT_SECONDS = 10.0  # how often a running search reports its progress


def _stop_at(deadline: float, budget: float, *, keep: bool = False) -> Any:
    """A LightGBM callback that ends a search trial still fitting at ``deadline`` (``time.monotonic``).

    ``keep=False``: the trial is pruned (an earlier trial has completed). ``keep=True`` (no trial has
    completed yet): the fit stops at its best round so far, as early stopping would, and the trial
    completes with that model, so even the first trial keeps to the budget.
    """
    import lightgbm as lgb
    import optuna

    best: dict[str, Any] = {}

    def callback(env: Any) -> None:
        if keep and env.evaluation_result_list:
            _, _, value, higher_better = env.evaluation_result_list[0]
            if not best or (value > best["value"] if higher_better else value < best["value"]):
                best.update(value=value, iteration=env.iteration, scores=env.evaluation_result_list)
        if time.monotonic() > deadline:
            if keep:
                best["stopped"] = True
                raise lgb.callback.EarlyStopException(best.get("iteration", env.iteration),
                                                      best.get("scores", env.evaluation_result_list))
            raise optuna.TrialPruned(f"stopped at round {env.iteration + 1}: the search's {budget:g}s are spent")

    callback.order = 40  # after early stopping (30), so its own stop comes first  # type: ignore[attr-defined]
    callback.stopped = best  # type: ignore[attr-defined]
    return callback


def _trial_state(trial: Any) -> str:
    """A search trial's state as reported: ``complete``, ``pruned`` (stopped at the budget after another
    trial completed), ``stopped at budget`` (the first trial, cut at its best round when the seconds ran out)."""
    if trial.user_attrs.get("stopped_at_budget"):
        return "stopped at budget"
    return str(trial.state.name.lower())


def search_booster(
    X: pd.DataFrame,
    y: Any,
    X_valid: pd.DataFrame,
    y_valid: Any,
    base: BoosterConfig,
    search: SearchConfig,
    seed: int = 42,
    spec: Any = None,
    progress: Any = None,
) -> tuple[BoosterConfig, dict[str, Any]]:
    """Small Optuna search (TPE) maximising validation AUC, bounded by trials and seconds (a trial still
    fitting when the seconds run out is stopped and counted in ``n_stopped_at_budget``: pruned, or the
    first trial cut at its best round so far and kept); ``progress``
    (a ``say(text)`` callable) hears the trials run and the best AUC so far every ``SEARCH_REPORT_SECONDS``.

    Every trial fits on ``X`` and early-stops and is scored on ``X_valid`` (both encoded once, before the
    first trial: :func:`encode_slices`): the caller passes the training and validation slices only,
    never the rows the model is evaluated on. The search space keeps trees small (``search.max_num_leaves``, ``search.max_depth``) so the explanation
    cost stays low. Returns the best config and a summary dict (trials run, best validation AUC,
    the best trial's early-stopped round count and its parameters).
    """
    import optuna
    from sklearn.metrics import roc_auc_score

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    yv = np.asarray(y_valid, dtype=float)
    # encoded once: every trial fits on the same matrices; let go when the search ends (the objective's
    # closure can outlive it: a 200k-lead search kept its 420 MiB through the rest of the run)
    encoded = [encode_slices(X, y, X_valid, y_valid, spec)]

    def objective(trial: optuna.Trial) -> float:
        cfg = base.model_copy(
            update={
                "num_leaves": trial.suggest_int("num_leaves", 4, max(4, search.max_num_leaves)),
                "max_depth": trial.suggest_int("max_depth", 2, search.max_depth),
                "learning_rate": trial.suggest_float("learning_rate", 0.03, 0.3, log=True),
                "min_data_in_leaf": trial.suggest_int("min_data_in_leaf", 10, 1000, log=True),
                "feature_fraction": trial.suggest_float("feature_fraction", 0.5, 1.0),
                "lambda_l2": trial.suggest_float("lambda_l2", 1e-3, 30.0, log=True),
            }
        )
        # a trial still fitting when the seconds run out is stopped: pruned once a trial has completed, else
        # (the first one) cut at its best round so far and kept, so that the search has a result
        completed = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        stop = _stop_at(deadline, search.timeout_seconds, keep=not completed)
        slices = encoded[0]
        model = SalesReadinessModel(cfg, calibration="platt", seed=seed).fit_encoded(slices, callbacks=[stop])
        trial.set_user_attr("best_iteration", model.best_iteration_)
        trial.set_user_attr("stopped_at_budget", bool(stop.stopped.get("stopped")))
        return float(roc_auc_score(yv, model.predict_raw(slices.valid)))

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    began = last = time.monotonic()
    deadline = began + search.timeout_seconds

    def report(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        nonlocal last
        now = time.monotonic()
        if progress is not None and now - last >= SEARCH_REPORT_SECONDS:
            last = now
            progress(f"  search: {len(study.trials)} of {search.n_trials} trials, {now - began:.0f}s of "
                     f"{search.timeout_seconds:g}s, best validation AUC {study.best_value:.4f}")

    try:
        study.optimize(objective, n_trials=search.n_trials, timeout=search.timeout_seconds, callbacks=[report])
    finally:
        encoded.clear()
    best = base.model_copy(update=study.best_params)
    stopped = sum(t.state == optuna.trial.TrialState.PRUNED or bool(t.user_attrs.get("stopped_at_budget"))
                  for t in study.trials)
    trials = [{"trial": t.number, "state": _trial_state(t), "valid_auc": t.value,
               "best_iteration": t.user_attrs.get("best_iteration"), **t.params} for t in study.trials]
    summary = {"n_trials": len(study.trials), "n_stopped_at_budget": stopped, "best_valid_auc": study.best_value,
               "best_iteration": study.best_trial.user_attrs["best_iteration"], **study.best_params,
               "trials": trials}  # every trial: what was tried, not only the best
    return best, summary
