"""The hazard booster's raw margin at every period of every snapshot, as ``Booster.predict`` computes it.

``Booster.predict`` on the (snapshot, period) rows walks every tree once per period: 26 periods x
362 trees per snapshot on a 200k-lead CRM's 556,078 test snapshots (most of the evaluation's time,
and twice more per ``models promote``). Yet a tree that never splits on the period gives the same
leaf at every period, and one that does (at one to a few thresholds) at most a handful of distinct
leaves. :class:`PeriodTrees` holds the trees as arrays (from ``Booster.dump_model``), decides each
split once per snapshot, the period splits once per period bin of the tree, and sums the leaf
values tree by tree in LightGBM's order, starting from 0: the margins are bit-identical to
``Booster.predict(rows, raw_score=True)`` (tested on random, missing and categorical inputs).

Decisions follow LightGBM's own rules (``Tree::NumericalDecision`` / ``CategoricalDecision``): an
input of magnitude <= 1e-35 reads as 0 (dense rows drop it); on a numerical split NaN goes to the
default side when the missing type is NaN, else reads as 0, and 0 goes to the default side when the
missing type is Zero; on a categorical split NaN and negative values go right, others are truncated
to an integer and go left when the split's category set holds it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np

ZERO_THRESHOLD = 1e-35  # LightGBM's kZeroThreshold
MAX_TABLE_SPLITS = 16  # trees up to this many splits find their leaf in a table of decision patterns
BLOCK_ROWS = 16_384  # snapshots scored at a time (their margins stay in cache while every tree adds to them)


@dataclass(frozen=True)
class _Tree:
    """One tree as arrays: internal nodes 0..S-1; a child >= 0 is a node, < 0 the leaf ``~child``."""

    feature: np.ndarray  # int64 (S,)
    threshold: np.ndarray  # float64 (S,): numerical splits
    default_left: np.ndarray  # bool (S,)
    missing: np.ndarray  # (S,) "None", "Zero" or "NaN"
    categories: list[np.ndarray | None]  # per split: the category codes that go left (None: numerical)
    left: np.ndarray  # int64 (S,)
    right: np.ndarray  # int64 (S,)
    leaf_value: np.ndarray  # float64 (leaves,)
    depth: int


def _parse(structure: dict[str, Any]) -> _Tree | None:
    """A tree of ``Booster.dump_model`` as arrays (None: linear leaves or an unknown split kind)."""
    rows: list[dict[str, Any]] = []
    leaves: dict[int, float] = {}

    def walk(node: dict[str, Any], depth: int) -> tuple[int, int] | None:
        if "leaf_value" in node:
            if "leaf_coeff" in node:
                return None
            leaf = int(node.get("leaf_index", 0))
            leaves[leaf] = float(node["leaf_value"])
            return ~leaf, depth
        if node.get("decision_type") not in ("<=", "=="):
            return None
        k = len(rows)
        rows.append({"feature": int(node["split_feature"]), "default_left": bool(node["default_left"]),
                     "missing": str(node["missing_type"]),
                     "threshold": float(node["threshold"]) if node["decision_type"] == "<=" else np.nan,
                     "categories": None if node["decision_type"] == "<=" else
                     np.array([int(c) for c in str(node["threshold"]).split("||")], dtype=np.int64)})
        left, right = walk(node["left_child"], depth + 1), walk(node["right_child"], depth + 1)
        if left is None or right is None:
            return None
        rows[k]["left"], rows[k]["right"] = left[0], right[0]
        return k, max(left[1], right[1])

    top = walk(structure, 0)
    if top is None:
        return None
    values = np.zeros(max(leaves) + 1)
    values[list(leaves)] = list(leaves.values())
    return _Tree(np.array([r["feature"] for r in rows], dtype=np.int64),
                 np.array([r["threshold"] for r in rows], dtype=np.float64),
                 np.array([r["default_left"] for r in rows], dtype=bool),
                 np.array([r["missing"] for r in rows], dtype=object),
                 [r["categories"] for r in rows],
                 np.array([r["left"] for r in rows], dtype=np.int64),
                 np.array([r["right"] for r in rows], dtype=np.int64), values, top[1])


def _go_left(values: np.ndarray, threshold: float, categories: np.ndarray | None, default_left: bool,
             missing: str) -> np.ndarray:
    """LightGBM's decision at one split for the (already zero-snapped) float64 ``values``."""
    nan = np.isnan(values)
    if categories is not None:
        whole = np.trunc(np.where(nan, -1.0, values))  # C++ int cast; NaN and negatives go right
        return ~nan & (whole >= 0) & np.isin(whole, categories)
    if missing == "NaN":
        return np.where(nan, default_left, values <= threshold)
    read = np.where(nan, 0.0, values)
    if missing == "Zero":
        return np.where(read == 0.0, default_left, read <= threshold)
    return read <= threshold


def _leaf_table(tree: _Tree) -> np.ndarray | None:
    """Leaf of every decision pattern (bit ``s``: left at split ``s``), or None for a tree with many splits."""
    if tree.left.size > MAX_TABLE_SPLITS:
        return None
    code = np.arange(1 << tree.left.size, dtype=np.int64)
    node = np.zeros(code.size, dtype=np.int64)
    for _ in range(tree.depth):
        inside = node >= 0
        at = np.where(inside, node, 0)
        node = np.where(inside, np.where(code >> at & 1 == 1, tree.left[at], tree.right[at]), node)
    return (~node).astype(np.int16)


def _leaves(tree: _Tree, table: np.ndarray | None, decisions: np.ndarray) -> np.ndarray:
    """Leaf index of each row from the (splits, rows) decisions."""
    n = decisions.shape[1]
    if tree.left.size == 0:
        return np.zeros(n, dtype=np.int64)
    if table is not None:
        code = np.zeros(n, dtype=np.int64)
        for s in range(tree.left.size):
            code |= decisions[s].astype(np.int64) << s
        return table[code]
    node = np.zeros(n, dtype=np.int64)
    columns = np.arange(n)
    for _ in range(tree.depth):
        inside = node >= 0
        at = np.where(inside, node, 0)
        node = np.where(inside, np.where(decisions[at, columns], tree.left[at], tree.right[at]), node)
    return ~node


class PeriodTrees:
    """A hazard booster's trees as arrays, scoring every period of a snapshot at once (see the module doc)."""

    def __init__(self, trees: list[_Tree], period_feature: int, periods: int) -> None:
        self.trees = trees
        self.period_feature = period_feature
        self.periods = periods
        k = np.arange(periods, dtype=np.float64)
        self.period_left: list[np.ndarray] = []  # per tree: (period splits, periods) decisions
        self.period_splits: list[np.ndarray] = []
        self.bin_first: list[np.ndarray] = []  # per tree: one period of each of its period bins
        self.bin_of: list[np.ndarray] = []  # per tree: the bin of each period
        self.tables = [_leaf_table(tree) for tree in trees]
        self.other_splits: list[np.ndarray] = []  # per tree: its splits on the snapshot's features
        for tree in trees:
            splits = np.flatnonzero(tree.feature == period_feature)
            left = np.array([_go_left(k, tree.threshold[s], tree.categories[s], bool(tree.default_left[s]),
                                      str(tree.missing[s])) for s in splits], dtype=bool).reshape(len(splits), periods)
            # periods with the same decisions at every period split reach the same leaf
            _, first, bin_of = np.unique(left.T, axis=0, return_index=True, return_inverse=True)
            self.period_splits.append(splits)
            self.other_splits.append(np.flatnonzero(tree.feature != period_feature))
            self.period_left.append(left)
            self.bin_first.append(first)
            self.bin_of.append(bin_of.ravel())

    @classmethod
    def from_booster(cls, booster: lgb.Booster, num_iteration: int, periods: int) -> PeriodTrees | None:
        """The first ``num_iteration`` trees of ``booster``, whose last input is the period index (None:
        a booster these arrays cannot represent: several outputs, linear leaves)."""
        if booster.num_model_per_iteration() != 1:
            return None
        trees = [_parse(info["tree_structure"]) for info in booster.dump_model(num_iteration=num_iteration)["tree_info"]]
        if any(tree is None for tree in trees):
            return None
        return cls(trees, booster.num_feature() - 1, periods)  # type: ignore[arg-type]

    def margins(self, base: np.ndarray) -> np.ndarray:
        """Raw margin (n, periods) of the snapshots ``base`` (n, features), the period appended as LightGBM's
        last input: ``Booster.predict`` of the stacked rows, bit for bit."""
        out = np.empty((base.shape[0], self.periods))
        for first in range(0, base.shape[0], BLOCK_ROWS):
            out[first : first + BLOCK_ROWS] = self._block(base[first : first + BLOCK_ROWS])
        return out

    def _block(self, base: np.ndarray) -> np.ndarray:
        n = base.shape[0]
        columns = np.ascontiguousarray(base.T, dtype=np.float64)  # float32 inputs are read as doubles
        columns[np.abs(columns) <= ZERO_THRESHOLD] = 0.0  # as dense rows drop them
        out = np.zeros((n, self.periods))  # LightGBM sums the trees in order from 0
        for tree, table, splits, others, left, first, bin_of in zip(
                self.trees, self.tables, self.period_splits, self.other_splits, self.period_left, self.bin_first,
                self.bin_of, strict=True):
            decisions = np.empty((tree.feature.size, n), dtype=bool)
            for s in others:
                decisions[s] = _go_left(columns[tree.feature[s]], tree.threshold[s], tree.categories[s],
                                            bool(tree.default_left[s]), str(tree.missing[s]))
            if first.size == 1:  # no period split, or none that separates two periods
                decisions[splits] = left[:, :1]
                out += tree.leaf_value[_leaves(tree, table, decisions)][:, None]
                continue
            values = np.empty((n, first.size))
            for b, period in enumerate(first):
                decisions[splits] = left[:, period : period + 1]
                values[:, b] = tree.leaf_value[_leaves(tree, table, decisions)]
            out += values[:, bin_of]
        return out


__all__ = ["PeriodTrees", "ZERO_THRESHOLD"]
