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

Small trees (every tree with at most :data:`MAX_TABLE_NODES` splits, e.g. the default depth-2 /
3-leaf shape) skip LightGBM's TreeSHAP altogether (:class:`ShapTables`). Path-dependent TreeSHAP
of one leaf is the Shapley value of the game ``v * prod_{f in S} o_f * prod_{f not in S} z_f``
over the features ``f`` split on along its path (``z_f``: product of the cover ratios of the path's
edges on ``f``, ``o_f``: 1 when the row takes all of them, else 0), so a tree's whole SHAP vector
depends only on which way the row goes at each of its splits: one of ``2**splits`` vectors,
computed exactly once per booster. Scoring a row is then its split decisions (LightGBM's own rules
for missing values and categories), one table look-up per tree and a sum per feature; one row and
many rows go through the same arithmetic, so a lead's values do not depend on its batch. The values
equal LightGBM's ``pred_contrib`` (and so ``shap.TreeExplainer``) to rounding (tested at 1e-9).
"""

from __future__ import annotations

import contextlib
import ctypes
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import combinations
from math import factorial
from typing import Any

import lightgbm as lgb
import numpy as np

DEFAULT_CHUNK_ROWS = 4096
MAX_TABLE_NODES = 6  # splits per tree up to which SHAP goes through per-tree tables (2**6 vectors per tree)
_TABLE_CELLS = 1 << 22  # rows x splits handled at once by ShapTables (bounds its temporary arrays)
_FEW_ROWS = 32  # up to this many rows, ShapTables sums with one bincount instead of a loop over trees
_ZERO_THRESHOLD = 1e-35  # LightGBM's kZeroThreshold: smaller magnitudes are read as 0
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


def leaf_shapley(value: float, zero: list[float], one: list[int]) -> np.ndarray:
    """Shapley values of ``v * prod_{f in S} one_f * prod_{f not in S} zero_f`` over the path's features."""
    m = len(zero)
    out = np.zeros(m)
    for i in range(m):
        others = [k for k in range(m) if k != i]
        total = 0.0
        for size in range(m):
            weight = factorial(size) * factorial(m - 1 - size) / factorial(m)
            for chosen in combinations(others, size):
                term = weight
                for k in others:
                    term *= one[k] if k in chosen else zero[k]
                total += term
        out[i] = value * (one[i] - zero[i]) * total
    return out


@dataclass(frozen=True)
class _Split:
    feature: int
    threshold: float  # numerical splits
    categories: frozenset[int] | None  # categorical splits: the codes that go left
    default_left: bool
    missing: str  # "None", "Zero" or "NaN"


@dataclass(frozen=True)
class _Tree:
    splits: list[_Split]
    tables: np.ndarray  # (2**splits, features) SHAP vector per decision pattern (bit k: left at split k)
    features: list[int]
    expected: float


def _parse_tree(structure: dict[str, Any]) -> _Tree | None:
    """One tree of ``Booster.dump_model`` as SHAP tables (None: too many splits or a linear tree)."""
    splits: list[_Split] = []
    leaves: list[tuple[float, list[tuple[int, bool, float]]]] = []  # value, path of (split, left, cover ratio)

    def walk(node: dict[str, Any], path: list[tuple[int, bool, float]]) -> bool:
        if "leaf_value" in node:
            if "leaf_coeff" in node:
                return False
            leaves.append((float(node["leaf_value"]), path))
            return True
        if len(splits) >= MAX_TABLE_NODES:
            return False
        if node["decision_type"] == "==":
            categories = frozenset(int(c) for c in str(node["threshold"]).split("||"))
            split = _Split(int(node["split_feature"]), np.nan, categories, bool(node["default_left"]),
                           str(node["missing_type"]))
        elif node["decision_type"] == "<=":
            split = _Split(int(node["split_feature"]), float(node["threshold"]), None, bool(node["default_left"]),
                           str(node["missing_type"]))
        else:
            return False
        k = len(splits)
        splits.append(split)
        total = float(node["internal_count"])
        ok = True
        for child, left in ((node["left_child"], True), (node["right_child"], False)):
            count = float(child.get("leaf_count", child.get("internal_count", 0)))
            ok = ok and walk(child, [*path, (k, left, count / total if total > 0 else 0.0)])
        return ok

    if not walk(structure, []):
        return None
    features = sorted({split.feature for split in splits})
    column = {f: j for j, f in enumerate(features)}
    tables = np.zeros((1 << len(splits), len(features)))
    expected = 0.0
    for value, path in leaves:
        on_path = sorted({splits[k].feature for k, _, _ in path})
        zero = [float(np.prod([r for k, _, r in path if splits[k].feature == f])) for f in on_path]
        expected += value * float(np.prod(zero))
        by_pattern: dict[tuple[int, ...], np.ndarray] = {}
        for code in range(1 << len(splits)):
            one = tuple(int(all(bool(code >> k & 1) == left for k, left, _ in path if splits[k].feature == f))
                        for f in on_path)
            if one not in by_pattern:
                by_pattern[one] = leaf_shapley(value, zero, list(one))
            for f, phi in zip(on_path, by_pattern[one], strict=True):
                tables[code, column[f]] += phi
    return _Tree(splits, tables, features, expected)


class ShapTables:
    """Exact path-dependent TreeSHAP of a booster of small trees, by per-tree look-up tables (see module doc)."""

    def __init__(self, trees: list[_Tree], n_features: int) -> None:
        self.n_features = n_features
        self.expected = float(sum(t.expected for t in trees))
        splits = [s for t in trees for s in t.splits]
        width = max((len(t.splits) for t in trees), default=0)
        columns = max((len(t.features) for t in trees), default=0)
        n_trees = len(trees)
        self.n_splits = len(splits)
        self.width = width
        self.split_feature = np.array([s.feature for s in splits], dtype=np.int64)
        self.threshold = np.array([s.threshold if s.categories is None else 0.0 for s in splits])
        self.default_left = np.array([s.default_left for s in splits], dtype=bool)
        self.missing_nan = np.array([s.missing == "NaN" for s in splits], dtype=bool)
        self.missing_zero = np.array([s.missing == "Zero" for s in splits], dtype=bool)
        self.categorical = np.array([s.categories is not None for s in splits], dtype=bool)
        self.numerical = ~self.categorical
        num = self.numerical
        self.num_rows, self.cat_rows = np.flatnonzero(num), np.flatnonzero(self.categorical)
        self.num_feature, self.cat_feature = self.split_feature[num], self.split_feature[~num]
        self.num_threshold = self.threshold[num][:, None]
        zero_left = np.where(self.missing_zero, self.default_left, self.threshold >= 0.0)  # 0 (or NaN read as 0)
        self.num_zero_left = zero_left[num][:, None]
        self.num_nan_left = np.where(self.missing_nan, self.default_left, zero_left)[num][:, None]
        self.cat_index = np.arange(self.cat_rows.size)[:, None]
        cat_splits = [s for s in splits if s.categories is not None]
        span = max((max(s.categories, default=-1) + 1 for s in cat_splits if s.categories), default=1)
        self.category_left = np.zeros((len(cat_splits), max(span, 1)), dtype=bool)
        for j, s in enumerate(cat_splits):
            self.category_left[j, [c for c in s.categories or () if c >= 0]] = True
        # split index of bit k of each tree (padding: a column that is always "right")
        self.tree_splits = np.full((n_trees, max(width, 1)), self.n_splits, dtype=np.int64)
        first = 0
        for t, tree in enumerate(trees):
            self.tree_splits[t, : len(tree.splits)] = np.arange(first, first + len(tree.splits))
            first += len(tree.splits)
        patterns = 1 << width
        self.values = np.zeros((n_trees * patterns, max(columns, 1)))  # row: tree * patterns + decision code
        self.columns = np.full((n_trees, max(columns, 1)), n_features, dtype=np.int64)  # padding: bias column
        for t, tree in enumerate(trees):
            n_codes = 1 << len(tree.splits)
            # codes beyond this tree's splits never occur (padding bits are 0)
            self.values[t * patterns : t * patterns + n_codes, : len(tree.features)] = tree.tables
            self.columns[t, : len(tree.features)] = tree.features
        self.tree_offset = np.arange(n_trees, dtype=np.int64) * patterns

    @classmethod
    def from_booster(cls, booster: lgb.Booster, num_iteration: int | None = None) -> ShapTables | None:
        """Tables of ``booster`` (the trees ``Booster.predict(num_iteration=...)`` uses), or None when a tree
        has more than :data:`MAX_TABLE_NODES` splits, the model has several outputs or linear leaves."""
        if booster.num_model_per_iteration() != 1:
            return None
        dump = booster.dump_model(num_iteration=num_iteration)
        trees = []
        for info in dump["tree_info"]:
            tree = _parse_tree(info["tree_structure"])
            if tree is None:
                return None
            trees.append(tree)
        return cls(trees, booster.num_feature())

    def go_left(self, columns: np.ndarray) -> np.ndarray:
        """(splits + 1, rows) decisions by LightGBM's rules from the (features, rows) transposed matrix.

        LightGBM reads |x| <= 1e-35 as 0; NaN goes right on categorical splits and, on numerical
        ones, to the default side when the missing type is NaN or Zero, else it reads as 0 (so does 0
        with missing type Zero). Last row: padding, always False.
        """
        out = np.zeros((self.n_splits + 1, columns.shape[1]), dtype=bool)
        if self.num_rows.size:
            values = columns[self.num_feature]
            left = values <= self.num_threshold
            nan = np.isnan(values)
            if nan.any():
                left = np.where(nan, self.num_nan_left, left)
            zero = np.abs(values) <= _ZERO_THRESHOLD
            if zero.any():
                left = np.where(zero, self.num_zero_left, left)
            out[self.num_rows] = left
        if self.cat_rows.size:
            values = columns[self.cat_feature]
            values = np.trunc(np.where(np.abs(values) <= _ZERO_THRESHOLD, 0.0, values))  # C++ int cast
            inside = (values >= 0) & (values < self.category_left.shape[1])  # NaN, negative, unknown: right
            code = np.where(inside, values, 0).astype(np.int64)
            out[self.cat_rows] = inside & self.category_left[self.cat_index, code]
        return out

    def contributions(self, matrix: np.ndarray) -> np.ndarray:
        """(n, n_features + 1) SHAP values; last column = expected margin."""
        n = len(matrix)
        out = np.empty((n, self.n_features + 1))
        step = max(1, _TABLE_CELLS // max(self.n_splits + len(self.tree_offset), 1))
        for s in range(0, n, step):
            out[s : s + step] = self._contributions(matrix[s : s + step]).T
        return out

    def _contributions(self, matrix: np.ndarray) -> np.ndarray:
        """(n_features + 1, n): contributions of each row (column), features summed tree by tree in order."""
        n = len(matrix)
        left = self.go_left(np.ascontiguousarray(matrix.T))
        code = np.zeros((len(self.tree_offset), n), dtype=np.int64)
        for k in range(self.width):
            code |= left[self.tree_splits[:, k]].astype(np.int64) << k
        rows = code + self.tree_offset[:, None]
        if n <= _FEW_ROWS:  # one gather + one bincount: less per-call overhead, the same sums in the same order
            width = self.n_features + 1
            values = self.values[rows.T]  # (n, trees, columns)
            bins = (np.arange(n, dtype=np.int64) * width)[:, None, None] + self.columns[None, :, :]
            out = np.bincount(bins.ravel(), weights=values.ravel(), minlength=n * width).reshape(n, width).T
            out[-1] = self.expected
            return out
        out = np.zeros((self.n_features + 1, n))
        for t in range(len(self.tree_offset)):
            for u, column in enumerate(self.columns[t]):
                if column < self.n_features:
                    out[column] += self.values[rows[t], u]
        out[-1] = self.expected
        return out


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
        self.tables = ShapTables.from_booster(booster, num_iteration)  # None: LightGBM's TreeSHAP
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
        def predict(rows: np.ndarray) -> np.ndarray:
            return self.booster.predict(rows, num_iteration=self.num_iteration, num_threads=1, **kwargs)

        return self._chunked(predict, matrix)

    def _chunked(self, function: Callable[[np.ndarray], np.ndarray], matrix: np.ndarray) -> np.ndarray:
        n = len(matrix)
        if self._pool is None or n <= self.chunk_rows:
            return function(matrix)
        parts = self._pool.map(lambda s: function(matrix[s : s + self.chunk_rows]), range(0, n, self.chunk_rows))
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
        if self.tables is not None:  # one row too: a lead's values do not depend on its batch
            return self._chunked(self.tables.contributions, matrix)
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
