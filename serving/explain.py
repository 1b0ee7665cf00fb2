"""Exact TreeSHAP contributions of the raw booster margin, fast enough for per-lead reasons.

The engine is LightGBM's own exact, path-dependent TreeSHAP (``pred_contrib``): the values
``shap.TreeExplainer(booster, model_output="raw")`` returns for a LightGBM model (shap delegates to
the same routine), last column = bias (expected margin). It is cheap because the trained boosters
are compact (depth <= 4, <= 15 leaves, early stopped; see ``benchmarks/tree_shape.py``) and
because large batches are split into chunks explained in parallel threads (LightGBM releases the
GIL), each with one LightGBM thread: on 2 cores that beats LightGBM's own ``num_threads`` for
contributions (see ``benchmarks/serving.py``). One lead takes a single call, no thread hand-off.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import lightgbm as lgb
import numpy as np

DEFAULT_CHUNK_ROWS = 4096


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
        return self._map(matrix, raw_score=True)

    def contributions(self, matrix: np.ndarray) -> np.ndarray:
        """(n, n_features + 1) SHAP values of the margin; last column = bias; rows sum to the margin."""
        matrix = self._check(matrix)
        if len(matrix) == 0:
            return np.empty((0, self.n_features + 1))
        return self._map(matrix, pred_contrib=True)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None
