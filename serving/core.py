"""The scoring core: feature matrix of validated leads -> calibrated scores, grades, MQL flags,
fit/engagement split and top-k reasons. Shared by the HTTP endpoint and batch rescoring.

Explanation in probability points
---------------------------------
TreeSHAP explains the RAW booster margin ``m = b + sum_j phi_j`` (``b`` = bias, the expected
margin). The calibrated probability is a non-decreasing map ``p = cal(m)``: isotonic is strictly
increasing between its end knots (centered isotonic regression: no step gives a lead the average's
probability, which would shrink all its impacts to 0), and a Platt slope is held >= 0 when fitted and refused when negative at load
(``training.calibration``). The core spreads the probability change ``p - p_base`` (``p_base =
cal(b)``) over the features in proportion to their log-odds contributions, i.e. each ``phi_j`` is
multiplied by the calibrator's secant slope ``s = (cal(m) - cal(b)) / (m - b)`` (>= 0 because ``cal``
does not decrease, so signs are kept; ``s = 0`` when ``m == b``, and for every lead when the Platt
slope was held at 0: no reason then has an impact). In points (x100): ``base_score + sum_j impact_j
= 100 * p`` exactly, and the family sums ``fit_score``, ``engagement_score``, ``lifecycle_score``
split the explained part.

Grades
------
A-D are cut on the score, so that a grade always agrees with the score a person sees. Default
cut-offs are relative to the odds of the model's training base rate (``grade_lifts`` = (4, 2, 1)): A =
a score whose odds p / (1 - p) are at least 4x the base rate's, B 2x, C 1x (above average), D below.
At a low base rate that is 4x / 2x / 1x the rate: with 2%, A >= 8, B >= 4, C >= 2. The rounding is
coarse there: at 1.9% (cut-offs 8 / 4 / 2) a C lead's probability can be 0.015, below the base rate;
below 0.5% the cut-offs are kept apart (3 / 2 / 1: A > B > C, :func:`default_grade_cutoffs`). At a high
rate the odds keep A reachable: at 38.5% (X Education's) 71 / 56 / 38, where 4x the rate itself would
be 154%. Fixed score cut-offs can be given instead (``grade_cutoffs``).

Time to close
-------------
When a time-to-close champion is loaded beside it (:class:`serving.closing.ClosingCore`), every
answer also carries ``p_close_30d/60d/90d`` and ``median_days`` (NaN/None: beyond the model's
horizon), computed from the same feature matrix; the curve is rescaled to agree with the
calibrated ``probability`` at the horizon (``p_close_90d == probability`` for a 90-day horizon).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from features.schema import ENGAGEMENT, FIT, LEAD_ID, LIFECYCLE
from features.spec import FLAT_KIND, FeatureSpec
from serving.closing import SERVED_HORIZONS, ClosingCore, p_close_field
from serving.explain import TreeShapExplainer
from serving.settings import DEFAULT_GRADE_LIFTS, ScoringConfig  # noqa: F401  (also imported from here)
from training.model import SalesReadinessModel
from training.time_to_close import TimeToCloseModel

CLOSING_FIELDS = (*(p_close_field(d) for d in SERVED_HORIZONS), "median_days")

GRADES = ("A", "B", "C", "D")
_GRADE_ARRAY = np.array(GRADES, dtype=object)
SMALL_BATCH = 256  # rows up to which per-call numpy overhead, not arithmetic, dominates


@dataclass(frozen=True)
class ModelInfo:
    """Identity of a loaded model (shown by ``GET /model`` and in every answer)."""

    name: str
    version: str
    run_id: str | None = None
    training_date: str | None = None
    horizon_days: int | None = None
    mql_cutoff: int | None = None
    source: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The fields by name, in order (``dataclasses.asdict`` without its deep copy: this runs per request)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


@dataclass
class ScoreBatch:
    """Columnar scores of n leads (arrays) plus top-k reasons as (n, k) arrays."""

    lead_id: np.ndarray
    probability: np.ndarray
    score: np.ndarray
    grade: np.ndarray
    mql: np.ndarray
    base_score: np.ndarray
    fit_score: np.ndarray
    engagement_score: np.ndarray
    lifecycle_score: np.ndarray
    reason_feature: np.ndarray  # (n, k) column index in spec order
    reason_impact: np.ndarray  # (n, k) points, signed
    reason_value: np.ndarray  # (n, k) raw matrix value (category code or number)
    horizon_days: int | None
    model: ModelInfo
    columns: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    families: list[str] = field(default_factory=list)
    vocab: dict[int, list[str]] = field(default_factory=dict)
    closing: dict[str, np.ndarray] | None = None  # CLOSING_FIELDS -> (n,) when a time-to-close model scored
    closing_model: ModelInfo | None = None
    # column index -> each row's unseen category as text (None elsewhere): the model read it as missing
    unseen: dict[int, np.ndarray] = field(default_factory=dict)

    def closing_columns(self) -> dict[str, np.ndarray]:
        """The time-to-close fields (all NaN when no time-to-close model is served)."""
        if self.closing is None:
            return {name: np.full(len(self), np.nan) for name in CLOSING_FIELDS}
        return {name: self.closing[name] for name in CLOSING_FIELDS}

    def __len__(self) -> int:
        return len(self.probability)

    @property
    def top_k(self) -> int:
        return self.reason_feature.shape[1]

    def decoded_value(self, column: int, value: float, row: int | None = None) -> str | float | None:
        """A matrix value as the lead's value: category string, number, or None when missing; a category
        the model never saw (scored as missing) as ``"<value> (unseen)"`` when ``row`` is given."""
        if value != value:  # NaN
            texts = self.unseen.get(column)
            if texts is not None and row is not None and texts[row] is not None:
                return unseen_text(texts[row])
            return None
        vocab = self.vocab.get(column)
        if vocab is not None:
            return vocab[int(value)]
        return float(value)

    def reasons_of(self, i: int) -> list[dict[str, Any]]:
        out = []
        for slot in range(self.top_k):
            j = int(self.reason_feature[i, slot])
            out.append(
                {
                    "feature": self.columns[j],
                    "label": self.labels[j],
                    "family": self.families[j],
                    "value": self.decoded_value(j, float(self.reason_value[i, slot]), i),
                    "impact": float(self.reason_impact[i, slot]),
                }
            )
        return out

    def to_records(self) -> list[dict[str, Any]]:
        """One plain dict per lead (what the endpoint returns)."""
        lead_ids = self.lead_id.tolist()
        probability = self.probability.tolist()
        score = self.score.tolist()
        grade = self.grade.tolist()
        mql = self.mql.tolist()
        base, fit = self.base_score.tolist(), self.fit_score.tolist()
        engagement, lifecycle = self.engagement_score.tolist(), self.lifecycle_score.tolist()
        closing = [] if self.closing is None else [
            {name: [None if v != v else v for v in values.tolist()] for name, values in self.closing.items()}
        ]
        records = [
            {
                LEAD_ID: lead_ids[i],
                "probability": probability[i],
                "horizon_days": self.horizon_days,
                "score": score[i],
                "grade": grade[i],
                "mql": mql[i],
                "base_score": base[i],
                "fit_score": fit[i],
                "engagement_score": engagement[i],
                "lifecycle_score": lifecycle[i],
                "reasons": self.reasons_of(i),
            }
            for i in range(len(lead_ids))
        ]
        for fields in closing:  # p_close_<d>d and median_days (None: beyond the model's horizon)
            for i, record in enumerate(records):
                record.update({name: values[i] for name, values in fields.items()})
        return records

    def to_frame(self) -> pd.DataFrame:
        """Columnar output for batch jobs: one row per lead, reasons as reason_<r>_* columns."""
        data: dict[str, Any] = {
            LEAD_ID: self.lead_id,
            "probability": self.probability,
            "horizon_days": np.full(len(self), self.horizon_days if self.horizon_days is not None else np.nan),
            "score": self.score,
            "grade": self.grade,
            "mql": self.mql,
            "base_score": self.base_score,
            "fit_score": self.fit_score,
            "engagement_score": self.engagement_score,
            "lifecycle_score": self.lifecycle_score,
            **self.closing_columns(),
        }
        columns = np.array(self.columns, dtype=object)
        labels = np.array(self.labels, dtype=object)
        for slot in range(self.top_k):
            idx = self.reason_feature[:, slot]
            raw = self.reason_value[:, slot]
            values = np.array([self.decoded_value(int(j), float(v), i)
                               for i, (j, v) in enumerate(zip(idx, raw, strict=True))], dtype=object)
            data[f"reason_{slot + 1}_feature"] = columns[idx] if len(idx) else np.array([], dtype=object)
            data[f"reason_{slot + 1}_label"] = labels[idx] if len(idx) else np.array([], dtype=object)
            data[f"reason_{slot + 1}_value"] = values
            data[f"reason_{slot + 1}_impact"] = self.reason_impact[:, slot]
        frame = pd.DataFrame(data)
        frame["model_name"] = self.model.name
        frame["model_version"] = self.model.version
        frame["time_to_close_version"] = None if self.closing_model is None else self.closing_model.version
        return frame


UNSEEN_SUFFIX = " (unseen)"


def unseen_text(value: str) -> str:
    """How a reason shows a category the model never saw (it scored the lead as if the value were missing)."""
    return f"{value}{UNSEEN_SUFFIX}"


def top_k_indices(values: np.ndarray, k: int) -> np.ndarray:
    """(n, k) column indices of the k largest |values| per row, largest first (ties: lower index)."""
    n, m = values.shape
    k = min(k, m)
    if k == 0 or n == 0:
        return np.empty((n, k), dtype=np.int64)
    magnitude = -np.abs(values)
    if n <= SMALL_BATCH:  # few rows (real time): one stable sort beats partition + lexsort
        return np.argsort(magnitude, axis=1, kind="stable")[:, :k]
    if k < m:
        # the k-th smallest -|value| per row; ties at it go to the lowest indices (argpartition alone
        # picks an arbitrary one, so a batch could name another zero-impact feature than one lead)
        kth = np.take_along_axis(magnitude, np.argpartition(magnitude, k - 1, axis=1)[:, :k], axis=1).max(axis=1)
        better = magnitude < kth[:, None]
        tied = magnitude == kth[:, None]
        room = k - better.sum(axis=1)
        chosen = better | (tied & (np.cumsum(tied, axis=1) <= room[:, None]))
        part = np.nonzero(chosen)[1].reshape(n, k)
    else:
        part = np.broadcast_to(np.arange(m), (n, m)).copy()
    order = np.lexsort((part, np.take_along_axis(magnitude, part, axis=1)), axis=1)
    return np.take_along_axis(part, order, axis=1)


def default_grade_cutoffs(base_rate: float, lifts: tuple[float, float, float]) -> tuple[int, int, int]:
    """A/B/C score cut-offs where a lead's odds of converting are ``lifts`` x the base rate's odds (rounded, 1 to
    100), kept apart (A > B > C): at a base rate below 0.5% all three would round to 1 and every lead scoring 1
    would be an A. Odds, not the rate: at a low rate they are the same multiples, and at a high one 4 x the
    rate lies beyond 100% (X Education's 38.5% made A a probability of 0.995)."""
    rate = min(max(float(base_rate), 0.0), 1.0)

    def cutoff(lift: float) -> int:
        # odds lift * r / (1 - r) as a probability: lift * r / (1 - r + lift * r), defined at r = 1 too
        scaled = lift * rate
        probability = scaled / (1.0 - rate + scaled) if scaled > 0 else 0.0
        return int(min(100, max(1, round(100 * probability))))

    a, b, c = (cutoff(lift) for lift in lifts)
    b = max(b, c + 1)
    a = min(100, max(a, b + 1))
    b = min(b, a - 1)
    return a, b, min(c, b - 1)


def grade_of(score: np.ndarray, cutoffs: tuple[int, int, int]) -> np.ndarray:
    """A/B/C/D from the score and the three descending cut-offs."""
    a, b, c = cutoffs
    index = (score < a).astype(np.int64) + (score < b) + (score < c)  # cut-offs not reached (descending)
    return _GRADE_ARRAY[index]


def probability_impacts(
    contributions: np.ndarray, probability: np.ndarray, base_probability: np.ndarray
) -> np.ndarray:
    """Per-feature impacts in probability (0-1) units that add up to ``probability - base_probability``.

    ``contributions`` are SHAP values of the margin WITHOUT the bias column.
    """
    total = contributions.sum(axis=1)
    delta = probability - base_probability
    slope = np.divide(delta, total, out=np.zeros_like(total), where=total != 0)
    return contributions * slope[:, None]


class ScoringCore:
    """A loaded model + spec, ready to score float matrices from the feature builders."""

    def __init__(
        self,
        model: SalesReadinessModel,
        info: ModelInfo,
        config: ScoringConfig | None = None,
        closing: tuple[TimeToCloseModel, ModelInfo] | None = None,
    ) -> None:
        self.config = config or ScoringConfig()
        if not hasattr(model, "calibrator_"):
            raise ValueError(f"model {info.name} v{info.version} has no calibrator")
        spec = model.spec_
        if not isinstance(spec, FeatureSpec):
            raise ValueError(f"model {info.name} v{info.version} carries no FeatureSpec; cannot build features")
        self.model = model
        self.spec: FeatureSpec = spec
        self.columns = list(spec.columns_)
        position = {c: j for j, c in enumerate(self.columns)}
        missing = [c for c in model.feature_columns_ if c not in position]
        if missing:
            raise ValueError(f"model {info.name}: feature columns {missing} not in its FeatureSpec")
        # matrix columns (spec order) -> booster columns (training order)
        self.booster_order = np.array([position[c] for c in model.feature_columns_], dtype=np.int64)
        for col, vocab in model.categories_.items():
            if [str(v) for v in vocab] != list(spec.categorical_vocab_.get(col, [])):
                raise ValueError(f"model {info.name}: vocabulary of {col!r} differs from its FeatureSpec")
        # a flat model's label has no horizon ("converted"): its spec's default horizon is not one
        self.horizon_days = int(model.horizon_days) if model.horizon_days else (
            int(spec.config.horizon_days) if spec.config.horizon_days and spec.kind_ != FLAT_KIND else None
        )
        self.info = ModelInfo(**{**info.as_dict(), "horizon_days": info.horizon_days or self.horizon_days})
        self.explainer = TreeShapExplainer(
            model.booster_, model.best_iteration_, self.config.explain_threads, self.config.chunk_rows
        )
        self.base_rate = float(model.train_positive_rate_)
        if self.config.grade_cutoffs is not None:
            self.grade_cutoffs = tuple(int(c) for c in self.config.grade_cutoffs)
        else:
            self.grade_cutoffs = default_grade_cutoffs(self.base_rate, self.config.grade_lifts)
        self.mql_cutoff = int(info.mql_cutoff) if info.mql_cutoff is not None else self.config.mql_cutoff
        self.labels = [spec.labels_.get(c, c) for c in self.columns]
        self.families = [spec.families_[c] for c in self.columns]
        family = np.array(self.families)
        self._family_masks = {f: family == f for f in (FIT, ENGAGEMENT, LIFECYCLE)}
        self._vocab = {j: list(spec.categorical_vocab_[c]) for j, c in enumerate(self.columns)
                       if c in spec.categorical_vocab_}
        self.closing_parts = closing
        self.closing: ClosingCore | None = None if closing is None else ClosingCore(
            closing[0], spec, self.config.explain_threads, self.config.chunk_rows)
        self.closing_info: ModelInfo | None = None if closing is None else closing[1]

    def parts(self) -> dict[str, Any]:
        """Constructor arguments of an equal core (what worker processes rebuild it from)."""
        return {"model": self.model, "info": self.info, "config": self.config, "closing": self.closing_parts}

    def calibrate(self, margin: np.ndarray) -> np.ndarray:
        return self.model.calibrator_.transform(margin)

    def score_matrix(self, lead_ids: Any, matrix: np.ndarray, top_k: int | None = None,
                     unseen: Mapping[str, np.ndarray] | None = None) -> ScoreBatch:
        """Score feature rows (spec order, from ``features_from_payloads`` / ``scoring_matrix``).

        ``unseen`` (``FeatureSpec.unseen_values`` of the same rows) lets reasons show a lead's unseen
        category instead of a missing value."""
        matrix = np.asarray(matrix, dtype=np.float64)
        if matrix.ndim != 2 or matrix.shape[1] != len(self.columns):
            raise ValueError(f"feature matrix has shape {matrix.shape}, expected (n, {len(self.columns)})")
        lead_ids = np.asarray(lead_ids)
        if len(lead_ids) != len(matrix):
            raise ValueError(f"{len(lead_ids)} lead ids for {len(matrix)} feature rows")
        for column, texts in (unseen or {}).items():
            if len(texts) != len(lead_ids):
                raise ValueError(f"unseen values of {column!r}: {len(texts)} for {len(lead_ids)} feature rows")
        k = self.config.top_k if top_k is None else int(top_k)
        if k < 0:
            raise ValueError(f"top_k must be >= 0, got {k}")
        booster_matrix = matrix[:, self.booster_order]
        n, n_features = matrix.shape
        if k == 0:  # no SHAP: scores only, family split and reasons left out (NaN / empty)
            probability = self.calibrate(self.explainer.margin(booster_matrix))
            nan = np.full(n, np.nan)
            impacts = None
            split = {FIT: nan, ENGAGEMENT: nan, LIFECYCLE: nan}
            base = nan
        else:
            contrib = self.explainer.contributions(booster_matrix)
            phi = np.empty((n, n_features))
            phi[:, self.booster_order] = contrib[:, :-1]
            bias = contrib[:, -1]
            margin = contrib.sum(axis=1)
            calibrated = self.calibrate(np.concatenate([margin, bias]))  # one call for both
            probability, base_probability = calibrated[:n], calibrated[n:]
            impacts = 100.0 * probability_impacts(phi, probability, base_probability)
            split = {f: impacts[:, mask].sum(axis=1) for f, mask in self._family_masks.items()}
            base = 100.0 * base_probability
        score = np.rint(100.0 * probability).astype(np.int64)
        rows = np.arange(n)[:, None]
        if impacts is None:
            reason_feature = np.empty((n, 0), dtype=np.int64)
            reason_impact = np.empty((n, 0))
        else:
            reason_feature = top_k_indices(impacts, k)
            reason_impact = impacts[rows, reason_feature]
        return ScoreBatch(
            lead_id=lead_ids,
            probability=probability,
            score=score,
            grade=grade_of(score, self.grade_cutoffs),
            mql=score >= self.mql_cutoff,
            base_score=base,
            fit_score=split[FIT],
            engagement_score=split[ENGAGEMENT],
            lifecycle_score=split[LIFECYCLE],
            reason_feature=reason_feature,
            reason_impact=reason_impact,
            reason_value=matrix[rows, reason_feature],
            horizon_days=self.horizon_days,
            model=self.info,
            columns=self.columns,
            labels=self.labels,
            families=self.families,
            vocab=self._vocab,
            closing=None if self.closing is None else self.closing.summary(matrix, probability, self.horizon_days),
            closing_model=self.closing_info,
            unseen={self.columns.index(c): np.asarray(texts, dtype=object) for c, texts in (unseen or {}).items()
                    if c in self.columns},
        )

    def describe_closing(self) -> dict[str, Any] | None:
        """Identity and horizon of the time-to-close model (None when there is none)."""
        if self.closing is None or self.closing_info is None:
            return None
        return {**self.closing_info.as_dict(), "horizon_days": int(self.closing.horizon_days),
                "period_days": self.closing.period_days, "n_trees": self.closing.model.booster_.num_trees()}

    def describe(self) -> dict[str, Any]:
        """Model identity plus the scoring settings in force."""
        return {
            **self.info.as_dict(),
            "mql_cutoff": self.mql_cutoff,
            "grade_cutoffs": dict(zip(GRADES[:3], self.grade_cutoffs, strict=True)),
            "base_rate": self.base_rate,
            "n_features": len(self.columns),
            "n_trees": self.model.booster_.num_trees(),
        }

    def close(self) -> None:
        self.explainer.close()
        if self.closing is not None:
            self.closing.close()
