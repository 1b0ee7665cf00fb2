"""Time-to-close fields of a scored lead, computed from the sales-readiness feature matrix.

The endpoint and the batch job build one feature matrix per request or partition, in the order and
with the category codes of the sales-readiness model's :class:`~features.spec.FeatureSpec`. The
time-to-close champion was trained with the same feature pipeline but may know other category
vocabularies (another training window), so :class:`ClosingCore` maps that matrix onto the hazard
model's inputs once per call: columns by name, categories by their text. No pandas per call.

The answer's curve is the one the revenue forecast uses (:func:`training.close_curves.combine_close_curves`):
the sales-readiness model's calibrated probability fixes P(close within its horizon H) and the
hazard model's hazards, all multiplied by one factor per lead, give the shape. So ``p_close_90d`` equals
``probability`` when H is 90 days, and the two numbers a salesperson sees never disagree;
``median_days`` is the median of that curve (null when it lies beyond the hazard model's horizon).

The hazard of period k is ``expit(booster(x, k) + linear(x) + gamma_k)``, as
:meth:`training.time_to_close.TimeToCloseModel.predict_hazard` computes it from a frame. The
booster's margins at every period are the ones ``Booster.predict`` gives on the (lead, period)
rows, bit for bit, by either of two routes: a call of :data:`TREE_ARRAY_ROWS` leads or more walks
each lead's trees once for all periods (:class:`training.period_margins.PeriodTrees`, the arrays
built once per model), a smaller one (a request's few leads) hands LightGBM one row per lead and
period bin. The linear base (log1p numerics, missing flags, one-hot levels, standardised) is
compiled to one dot product per lead, plus its period shape (that of the lead's age band, when the base
has bands). The unit tests check both paths agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import lightgbm as lgb
import numpy as np
from scipy.special import expit

from features.spec import FeatureSpec, feature_setting_differences
from serving.explain import TreeShapExplainer
from training.close_curves import combine_close_curves, cumulative_close, days_to_reach, hazard_factor
from training.survival_linear import LinearHazard, band_of
from training.time_to_close import TimeToCloseModel

TREE_ARRAY_ROWS = 512
"""Calls of this many leads or more take the booster's margins from its tree arrays; below, from LightGBM,
whose per-call cost is lower for a request's few leads (the 200k-lead CRM's champion, 360 trees, 20 period bins:
LightGBM 0.4 ms of CPU against the arrays' 81 ms for 1 lead, 57 against 75 for 256, 229 against 112 for 1,024).
Both give the same margins, bit for bit."""

SERVED_HORIZONS = (30, 60, 90)
"""``p_close_<d>d`` fields of every answer (NaN when d is beyond the model's horizon)."""


def p_close_field(days: int) -> str:
    """The answer field of P(close within ``days`` days): ``p_close_<days>d``."""
    return f"p_close_{days}d"


@dataclass(frozen=True)
class CompiledLinear:
    """The linear hazard base as arrays over the hazard model's encoded inputs."""

    numeric: np.ndarray  # input column of each numeric design column
    log: np.ndarray  # bool: log1p(max(x, 0)) instead of x
    fill: np.ndarray  # median used for a missing value
    missing: np.ndarray  # input column of each "<col>__missing" design column
    level_column: np.ndarray  # input column of each "<col>=<level>" design column
    level_code: np.ndarray  # its category code in the hazard model's vocabulary (-1: never present)
    weight: np.ndarray  # coef / scale, in the order numeric | missing | levels
    offset: float  # intercept - sum(coef * mean / scale)
    period: np.ndarray  # per-period offsets gamma_k
    band_input: int = -1  # input column of the lead-age bands of the period shape (-1: none)
    band_edges: np.ndarray = field(default_factory=lambda: np.empty(0))
    band_period: np.ndarray = field(default_factory=lambda: np.zeros((1, 0)))  # each band's addition to gamma_k

    @classmethod
    def of(cls, linear: LinearHazard, columns: list[str], categories: dict[str, list]) -> CompiledLinear:
        design = linear.design
        position = {c: j for j, c in enumerate(columns)}
        kept = {c: i for i, c in enumerate(design.columns_)}
        coef = np.asarray(linear.coef, dtype=np.float64)
        mean = np.asarray(design.mean_, dtype=np.float64)
        scale = np.asarray(design.scale_, dtype=np.float64)
        numeric, log, fill, numeric_design = [], [], [], []
        missing, missing_design = [], []
        level_column, level_code, level_design = [], [], []

        def column_of(name: str) -> int:
            if name not in position:
                raise ValueError(f"time-to-close model: linear base uses column {name!r}, which is not an input")
            return position[name]

        for col, info in design.numeric_.items():
            if col in kept:
                numeric.append(column_of(col))
                log.append(bool(info["log"]))
                fill.append(float(info["median"]))
                numeric_design.append(kept[col])
            if info["missing_flag"] and f"{col}__missing" in kept:
                missing.append(column_of(col))
                missing_design.append(kept[f"{col}__missing"])
        for col, levels in design.levels_.items():
            vocab = [str(v) for v in categories.get(col, [])]
            for level in levels:
                name = f"{col}={level}"
                if name in kept:
                    level_column.append(column_of(col))
                    level_code.append(vocab.index(str(level)) if str(level) in vocab else -1)
                    level_design.append(kept[name])
        order = np.array([*numeric_design, *missing_design, *level_design], dtype=np.int64)
        if len(order) != len(design.columns_):
            raise ValueError("time-to-close model: linear base has design columns this path cannot compute")
        weight = coef[order] / scale[order]
        offset = float(linear.intercept - np.sum(coef[order] * mean[order] / scale[order]))
        as_int = lambda values: np.asarray(values, dtype=np.int64)  # noqa: E731
        band_input = -1 if linear.band_column is None else column_of(linear.band_column)
        return cls(as_int(numeric), np.asarray(log, dtype=bool), np.asarray(fill, dtype=np.float64), as_int(missing),
                   as_int(level_column), as_int(level_code), weight, offset,
                   np.asarray(linear.period, dtype=np.float64), band_input,
                   np.asarray(linear.band_edges, dtype=np.float64), linear.band_period())

    def snapshot_margin(self, base: np.ndarray) -> np.ndarray:
        """``b + z(x) . beta`` per row of the encoded inputs."""
        values = base[:, self.numeric].astype(np.float64)
        absent = np.isnan(values)
        values = np.where(absent, self.fill, values)
        values = np.where(self.log, np.log1p(np.maximum(values, 0.0)), values)
        flags = np.isnan(base[:, self.missing]).astype(np.float64)
        levels = (base[:, self.level_column] == self.level_code).astype(np.float64)
        design = np.concatenate([values, flags, levels], axis=1)
        return design @ self.weight + self.offset

    def period_margins(self, base: np.ndarray) -> np.ndarray:
        """``gamma_k`` plus the lead-age band's shape, (n, K), per row of the encoded inputs."""
        if self.band_input < 0:
            return np.broadcast_to(self.period, (len(base), self.period.size))
        return self.period[None, :] + self.band_period[band_of(base[:, self.band_input], self.band_edges)]


def period_thresholds(booster: lgb.Booster, feature: int, num_iteration: int | None) -> np.ndarray:
    """Split thresholds on column ``feature`` (the period index) in the trees ``predict`` uses."""
    found: set[float] = set()
    trees = booster.dump_model(num_iteration=num_iteration or -1)["tree_info"]
    stack = [tree["tree_structure"] for tree in trees]
    while stack:
        node = stack.pop()
        if "split_feature" not in node:
            continue
        if node["split_feature"] == feature:
            if node.get("decision_type", "<=") != "<=":
                raise ValueError(f"time-to-close booster: unexpected split {node.get('decision_type')!r} on the period")
            found.add(float(node["threshold"]))
        stack.extend((node["left_child"], node["right_child"]))
    return np.array(sorted(found))


def period_bins(periods: int, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first period of each bin, bin of each period): periods between two consecutive split thresholds
    reach the same leaves in every tree, so one booster row per bin gives every period's margin."""
    k = np.arange(periods, dtype=np.float64)
    # period 0 alone: with zero_as_missing LightGBM would route it as a missing value, not by threshold
    thresholds = np.union1d(thresholds, [0.5])
    bin_of = np.searchsorted(thresholds, k, side="left")  # number of thresholds < k (left when k <= t)
    _, first = np.unique(bin_of, return_index=True)
    _, bin_of = np.unique(bin_of, return_inverse=True)
    return k[first], bin_of


class ClosingCore:
    """A time-to-close model ready to answer from sales-readiness feature matrices."""

    def __init__(self, model: TimeToCloseModel, spec: FeatureSpec, threads: int = 1, chunk_rows: int = 4096) -> None:
        self.model = model
        # one LightGBM thread per call, large batches in parallel chunks (as the SHAP path): LightGBM's own
        # thread pool costs milliseconds of p99 on a busy 2-core machine for a single lead's 26 rows
        self.predictor = TreeShapExplainer(model.booster_, model.best_iteration_, threads, chunk_rows)
        period_column = len(model.feature_columns_)  # the booster's last input
        self.period_values, self.period_bin = period_bins(
            int(model.config.max_periods), period_thresholds(model.booster_, period_column, model.best_iteration_))
        self.trees = model.period_trees()  # None: a booster the arrays cannot represent (LightGBM then)
        if (own := getattr(model, "spec_", None)) is not None and (
                differ := feature_setting_differences(spec.config, own.config)):
            raise ValueError(  # the hazard model would get features computed unlike its training ones
                f"the sales-readiness and time-to-close models were trained with different feature settings "
                f"({'; '.join(differ)}); train both models with the same project configuration (features: section)")
        columns = list(spec.columns_)
        position = {c: j for j, c in enumerate(columns)}
        missing = [c for c in model.feature_columns_ if c not in position]
        if missing:
            raise ValueError(
                f"time-to-close model needs feature columns {missing} that the sales-readiness model's feature "
                f"specification does not build; train both models with the same project configuration"
            )
        self.positions = np.array([position[c] for c in model.feature_columns_], dtype=np.int64)
        # category codes: readiness vocabulary -> hazard model vocabulary (NaN when unknown to it); columns
        # whose vocabularies agree (the usual case: one training window) need nothing
        recode: dict[int, np.ndarray] = {}
        for j, col in enumerate(model.feature_columns_):
            if col not in model.categories_:
                continue
            target = {str(v): code for code, v in enumerate(model.categories_[col])}
            source = [str(v) for v in spec.categorical_vocab_.get(col, [])]
            table = np.array([target.get(v, np.nan) for v in source], dtype=np.float64)
            if not np.array_equal(table, np.arange(len(table))):
                recode[j] = table
        self.recode_columns = np.array(sorted(recode), dtype=np.int64)
        tables = [np.append(recode[j], np.nan) for j in self.recode_columns]  # last entry: unknown / missing
        self.recode_offsets = np.cumsum([0, *(len(t) for t in tables[:-1])]).astype(np.int64)
        self.recode_last = np.array([len(t) - 1 for t in tables], dtype=np.int64)
        self.recode_flat = np.concatenate(tables) if tables else np.empty(0)
        self.periods = int(model.config.max_periods)
        self.period_days = float(model.config.period_days)
        self.horizon_days = self.periods * self.period_days
        linear = getattr(model, "linear_", None)
        self.linear = None if linear is None else CompiledLinear.of(linear, list(model.feature_columns_),
                                                                    model.categories_)

    def encode(self, matrix: np.ndarray) -> np.ndarray:
        """The hazard model's inputs (its column order and category codes) from a readiness matrix."""
        base = matrix[:, self.positions].astype(np.float64)
        if self.recode_columns.size:
            codes = base[:, self.recode_columns]
            slot = np.where(np.isnan(codes), self.recode_last, np.minimum(np.nan_to_num(codes), self.recode_last))
            base[:, self.recode_columns] = self.recode_flat[slot.astype(np.int64) + self.recode_offsets]
        return base

    def hazards(self, matrix: np.ndarray) -> np.ndarray:
        """Per-period close hazards, (n, max_periods)."""
        base = self.encode(np.asarray(matrix, dtype=np.float64))
        raw = self.booster_margins(base)
        if self.linear is not None:
            raw += self.linear.snapshot_margin(base)[:, None] + self.linear.period_margins(base)
        return expit(raw)

    def booster_margins(self, base: np.ndarray) -> np.ndarray:
        """The booster's raw margin (n, max_periods) of the encoded inputs ``base`` (float32 as it was fit on)
        at every period, as ``Booster.predict`` gives it on the (lead, period) rows."""
        n, p = base.shape
        if self.trees is not None and n >= TREE_ARRAY_ROWS:
            return self.trees.margins(base.astype(np.float32))
        bins = len(self.period_values)
        stacked = np.empty((n * bins, p + 1), dtype=np.float64)
        stacked[:, :p] = np.repeat(base.astype(np.float32), bins, axis=0)  # the booster was fit on float32
        stacked[:, p] = np.tile(self.period_values, n)
        return self.predictor.margin(stacked).reshape(n, bins)[:, self.period_bin]

    def close_curve(
        self, matrix: np.ndarray, days: np.ndarray, probability: np.ndarray | None = None,
        horizon_days: float | None = None,
    ) -> np.ndarray:
        """P(closed by day t) (n, len(days)), days within the hazard model's horizon: the curve whose points
        :meth:`summary` serves (rescaled to the sales-readiness ``probability`` at ``horizon_days`` when given)."""
        hazards = self.hazards(matrix)
        days = np.asarray(days, dtype=np.float64)
        closes = cumulative_close(hazards, self.period_days, days)
        if probability is None or not horizon_days:
            return closes
        p = np.clip(np.asarray(probability, dtype=np.float64), 0.0, 1.0)
        at_h = cumulative_close(hazards, self.period_days, np.array([float(horizon_days)]))[:, 0]
        return combine_close_curves(closes, at_h, p, days, float(horizon_days))

    def summary(
        self, matrix: np.ndarray, probability: np.ndarray | None = None, horizon_days: float | None = None
    ) -> dict[str, np.ndarray]:
        """``p_close_30d/60d/90d`` (NaN beyond the hazard model's horizon) and ``median_days`` (NaN: beyond).

        With the sales-readiness ``probability`` of closing within ``horizon_days``, the curve is rescaled
        to agree with it (see the module doc); without, it is the hazard model's own.
        """
        n = len(matrix)
        if n == 0:
            return {**{p_close_field(d): np.empty(0) for d in SERVED_HORIZONS}, "median_days": np.empty(0)}
        hazards = self.hazards(matrix)
        days = np.asarray(SERVED_HORIZONS, dtype=np.float64)
        closes = cumulative_close(hazards, self.period_days, days)
        if probability is None or not horizon_days:
            target = np.full(n, 0.5)
        else:
            p = np.clip(np.asarray(probability, dtype=np.float64), 0.0, 1.0)
            at_h = cumulative_close(hazards, self.period_days, np.array([float(horizon_days)]))[:, 0]
            closes = combine_close_curves(closes, at_h, p, days, float(horizon_days))
            closes[:, days == float(horizon_days)] = p[:, None]  # the probability itself, not a rounding of it
            c = hazard_factor(at_h, p)
            with np.errstate(divide="ignore", invalid="ignore"):
                # S_ttc(t) ** c = 1/2 where the hazards are scaled; the degenerate rows' piecewise curve
                # reaches 1/2 inside H when p >= 1/2, else in the conditional tail after H
                piecewise = np.where(p >= 0.5, 0.5 * at_h / p, at_h + (1.0 - at_h) * (0.5 - p) / (1.0 - p))
                target = np.where(np.isnan(c), piecewise, -np.expm1(np.log(0.5) / c))
        out = {p_close_field(d): np.where(d <= self.horizon_days, closes[:, j], np.nan)
               for j, d in enumerate(SERVED_HORIZONS)}
        median = days_to_reach(hazards, self.period_days, target)
        if probability is not None and horizon_days:
            # no timing information inside H (the hazard model gives ~0 there): p spread uniformly over [0, H]
            flat = (p >= 0.5) & (at_h <= 1e-12)
            median = np.where(flat, 0.5 / np.maximum(p, 1e-12) * float(horizon_days), median)
        out["median_days"] = median
        return out

    def close(self) -> None:
        self.predictor.close()
