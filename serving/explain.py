"""Exact TreeSHAP contributions of the raw booster margin, fast enough for per-lead reasons.

The engine is LightGBM's own exact, path-dependent TreeSHAP (``pred_contrib``): the values
``shap.TreeExplainer(booster, model_output="raw")`` returns for a LightGBM model (shap delegates to
the same routine), last column = bias (expected margin). It is cheap because the trained boosters
are compact (depth <= 4, <= 15 leaves, early stopped; see ``benchmarks/tree_shape.py``) and
because large batches are split into chunks explained in parallel threads (LightGBM releases the
GIL), each with one LightGBM thread: on 2 cores that beats LightGBM's own ``num_threads`` for
contributions (see ``benchmarks/serving.py``).

One lead (the real-time path) skips ``Booster.predict``'s per-call set-up (parameter parsing,
predictor construction, input conversion: most of the time of a one-row margin and about half of
one-row contributions on the benchmark champion): it goes through LightGBM's single-row C API
(``LGBM_BoosterPredictForMatSingleRowFast``), whose predictor is prepared once per booster at
load. That predictor reads iteration settings that LightGBM keeps per booster and that every
``Booster.predict`` call rewrites, so it runs on the explainer's PRIVATE copy of the booster
(trimmed to ``num_iteration``; nothing else ever predicts with it). It runs the same predictor code
on the same trees, so the values are bit-identical to ``Booster.predict`` (tested); when the C API
is not reachable the explainer falls back to ``Booster.predict``.
"""

from __future__ import annotations

import contextlib
import ctypes
from concurrent.futures import ThreadPoolExecutor

import lightgbm as lgb
import numpy as np

DEFAULT_CHUNK_ROWS = 4096
_PREDICT_RAW_SCORE = 1  # C_API_PREDICT_RAW_SCORE
_PREDICT_CONTRIB = 3  # C_API_PREDICT_CONTRIB
_DTYPE_FLOAT64 = 1  # C_API_DTYPE_FLOAT64


class SingleRowPredictor:
    """One-row raw margin or SHAP contributions (all trees) through LightGBM's single-row C API.

    The predictor is set up once (``LGBM_BoosterPredictForMatSingleRowFastInit``); each call is one
    C call on the caller's row, under LightGBM's own lock (thread-safe). No parameters are passed,
    so the process-wide OpenMP thread count is left untouched (one row is predicted sequentially).
    The booster must not be used by ``Booster.predict`` with another iteration range (LightGBM keeps
    the range per booster): give it a private copy. Raises ``RuntimeError`` at construction when
    the installed LightGBM does not expose the API.
    """

    def __init__(self, booster: lgb.Booster, predict_type: int) -> None:
        try:
            from lightgbm.basic import _LIB, _safe_call  # the loaded lib_lightgbm and its error check
        except ImportError as exc:  # pragma: no cover - other LightGBM builds
            raise RuntimeError(f"LightGBM single-row API unavailable: {exc}") from exc
        handle = getattr(booster, "_handle", None)
        if handle is None or not hasattr(_LIB, "LGBM_BoosterPredictForMatSingleRowFastInit"):
            raise RuntimeError("LightGBM single-row API unavailable")
        self._lib, self._check = _LIB, _safe_call
        self.booster = booster  # keeps the booster (and its C handle) alive as long as this predictor
        self.n_features = booster.num_feature()
        self.n_out = self.n_features + 1 if predict_type == _PREDICT_CONTRIB else 1
        config = ctypes.c_void_p()
        try:
            self._check(self._lib.LGBM_BoosterPredictForMatSingleRowFastInit(
                handle, ctypes.c_int(predict_type), ctypes.c_int(0), ctypes.c_int(-1),
                ctypes.c_int(_DTYPE_FLOAT64), ctypes.c_int32(self.n_features), ctypes.c_char_p(b""),
                ctypes.byref(config)))
        except lgb.basic.LightGBMError as exc:
            raise RuntimeError(f"LightGBM single-row set-up failed: {exc}") from exc
        self._config: ctypes.c_void_p | None = config

    def __call__(self, row: np.ndarray) -> np.ndarray:
        """Prediction of one C-contiguous float64 row of ``n_features`` values."""
        if self._config is None:
            raise RuntimeError("SingleRowPredictor is closed")
        out = np.empty(self.n_out)
        out_len = ctypes.c_int64()
        self._check(self._lib.LGBM_BoosterPredictForMatSingleRowFast(
            self._config, row.ctypes.data_as(ctypes.c_void_p), ctypes.byref(out_len),
            out.ctypes.data_as(ctypes.POINTER(ctypes.c_double))))
        if out_len.value != self.n_out:
            raise RuntimeError(f"LightGBM returned {out_len.value} values for one row, expected {self.n_out}")
        return out

    def close(self) -> None:
        if self._config is not None:
            self._check(self._lib.LGBM_FastConfigFree(self._config))
            self._config = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown: the library may be gone
            self.close()


class TreeShapExplainer:
    """Margins and exact SHAP contributions (log-odds) of a LightGBM booster on float matrices.

    ``threads``: parallel chunks for large batches (1 = in the caller's thread only);
    ``chunk_rows``: rows per chunk (also bounds the memory of one call).
    """

    def __init__(
        self,
        booster: lgb.Booster,
        num_iteration: int | None = None,
        threads: int = 1,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
    ) -> None:
        if threads < 1 or chunk_rows < 1:
            raise ValueError(f"TreeShapExplainer: threads ({threads}) and chunk_rows ({chunk_rows}) must be >= 1")
        self.booster = booster
        self.num_iteration = num_iteration
        self.threads = threads
        self.chunk_rows = chunk_rows
        self.n_features = booster.num_feature()
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="treeshap") if threads > 1 else None
        try:  # a private copy with exactly the trees Booster.predict(num_iteration=...) uses
            private = lgb.Booster(model_str=booster.model_to_string(num_iteration=num_iteration))
            self._row_margin: SingleRowPredictor | None = SingleRowPredictor(private, _PREDICT_RAW_SCORE)
            self._row_contrib: SingleRowPredictor | None = SingleRowPredictor(private, _PREDICT_CONTRIB)
        except RuntimeError:  # falls back to Booster.predict
            self._row_margin = self._row_contrib = None

    def _check(self, matrix: np.ndarray) -> np.ndarray:
        matrix = np.ascontiguousarray(matrix, dtype=np.float64)
        if matrix.ndim != 2 or matrix.shape[1] != self.n_features:
            raise ValueError(f"feature matrix has shape {matrix.shape}, the booster expects (n, {self.n_features})")
        return matrix

    def _map(self, matrix: np.ndarray, **kwargs: object) -> np.ndarray:
        n = len(matrix)
        if self._pool is None or n <= self.chunk_rows:
            return self.booster.predict(matrix, num_iteration=self.num_iteration, num_threads=1, **kwargs)
        bounds = range(0, n, self.chunk_rows)
        parts = self._pool.map(
            lambda s: self.booster.predict(
                matrix[s : s + self.chunk_rows], num_iteration=self.num_iteration, num_threads=1, **kwargs
            ),
            bounds,
        )
        return np.concatenate(list(parts))

    def margin(self, matrix: np.ndarray) -> np.ndarray:
        """Raw log-odds margin, one value per row."""
        matrix = self._check(matrix)
        if len(matrix) == 0:
            return np.empty(0)
        if len(matrix) == 1 and self._row_margin is not None:
            return self._row_margin(matrix[0])
        return self._map(matrix, raw_score=True)

    def contributions(self, matrix: np.ndarray) -> np.ndarray:
        """(n, n_features + 1) SHAP values of the margin; last column = bias; rows sum to the margin."""
        matrix = self._check(matrix)
        if len(matrix) == 0:
            return np.empty((0, self.n_features + 1))
        if len(matrix) == 1 and self._row_contrib is not None:
            return self._row_contrib(matrix[0])[None, :]
        return self._map(matrix, pred_contrib=True)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None
        for predictor in (self._row_margin, self._row_contrib):
            if predictor is not None:
                predictor.close()
        self._row_margin = self._row_contrib = None
