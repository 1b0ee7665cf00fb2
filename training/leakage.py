"""Leakage alarm: features (or a model) that predict the label too well to be true.

Per feature: single-variable AUC on held-out rows, ``max(auc, 1 - auc)``; numeric columns by
their value (missing ranked lowest), categorical columns by target-rate encoding fitted on the
training rows only (smoothed towards the base rate; missing is a level of its own; unseen levels
get the base rate). The same AUC on the rows where the feature is filled in ("covered AUC")
catches fields sales fill in after contact for part of the leads only (X Education's
``Lead Quality``: AUC 0.79 overall, 0.85 where filled). Plus LightGBM gain importance share.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from features.schema import to_numbers
from training.config import LeakageThresholds
from training.model import is_categorical

_MISSING = "(missing)"


class LeakageError(RuntimeError):
    """Raised in strict mode when the leakage alarm flags anything."""


def target_rate_encode(train: pd.Series, y_train: np.ndarray, other: pd.Series, smoothing: float = 20.0) -> np.ndarray:
    """Smoothed conversion rate of each level, learned on ``train``, applied to ``other``."""
    y_train = np.asarray(y_train, dtype=float)
    prior = float(y_train.mean())
    keys = train.astype(object).where(train.notna(), _MISSING).astype(str)
    stats = pd.DataFrame({"k": keys.to_numpy(), "y": y_train}).groupby("k")["y"].agg(["sum", "count"])
    rate = (stats["sum"] + smoothing * prior) / (stats["count"] + smoothing)
    other_keys = other.astype(object).where(other.notna(), _MISSING).astype(str)
    return other_keys.map(rate).fillna(prior).to_numpy(dtype=float)


MIN_CLASS_ROWS = 10  # fewer positives (or negatives) than this: a single-feature AUC is noise, not evidence


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    positives = int(np.sum(y))
    if len(y) < 20 or min(positives, len(y) - positives) < MIN_CLASS_ROWS:
        return float("nan")
    auc = roc_auc_score(y, score)
    return float(max(auc, 1.0 - auc))


def feature_score(X_train: pd.DataFrame, y_train: np.ndarray, values: pd.Series) -> np.ndarray:
    """One score per evaluation row of the feature ``values`` (named as a column of ``X_train``): its numeric
    value (missing lowest), or its level's target rate on the training rows."""
    if is_categorical(values):
        return target_rate_encode(X_train[values.name], y_train, values)
    x = to_numbers(values, errors="coerce").to_numpy(dtype=float)
    finite = x[np.isfinite(x)]
    return np.where(np.isnan(x), (finite.min() - 1.0) if finite.size else 0.0, x)


def _auc_row(col: str, score: np.ndarray, filled: np.ndarray, y_eval: np.ndarray) -> dict[str, Any]:
    return {"feature": col, "single_auc": _auc(y_eval, score), "covered_auc": _auc(y_eval[filled], score[filled]),
            "coverage": float(filled.mean())}


def _auc_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["feature", "single_auc", "covered_auc", "coverage"]).set_index("feature")


def single_feature_auc(
    X_train: pd.DataFrame, y_train: np.ndarray, X_eval: pd.DataFrame, y_eval: np.ndarray,
    columns: Sequence[str] | None = None,
) -> pd.DataFrame:
    """``max(auc, 1 - auc)`` of each feature alone on the evaluation rows (all rows and filled-in rows).
    ``columns``: the features, read by name from wider frames (default: every column of ``X_eval``); each
    is scored and let go before the next, without a copy of the feature columns."""
    y_eval = np.asarray(y_eval, dtype=float)
    rows = []
    for col in X_eval.columns if columns is None else columns:
        values = X_eval[col]
        rows.append(_auc_row(col, feature_score(X_train, y_train, values), values.notna().to_numpy(dtype=bool),
                             y_eval))
    return _auc_table(rows)


def oof_single_feature_auc(X: pd.DataFrame, y: np.ndarray, folds: np.ndarray,
                           columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Out-of-fold single-feature AUCs: each row's score learned on the other folds (a categorical's target
    rates). ``columns``: the features, read by name (default: every column of ``X``); each is scored on
    every fold and let go before the next, without a copy of the feature columns or every feature's scores."""
    y = np.asarray(y, dtype=float)
    held_out = [folds == k for k in np.unique(folds)]
    rows = []
    for col in X.columns if columns is None else columns:
        values = X[col]
        score = np.empty(len(y))
        for held in held_out:
            score[held] = feature_score(values[~held].to_frame(), y[~held], values[held])
        rows.append(_auc_row(col, score, values.notna().to_numpy(dtype=bool), y))
    return _auc_table(rows)


@dataclass
class LeakageReport:
    """What the alarm saw and what it flagged."""

    features: pd.DataFrame  # feature, single_auc, covered_auc, coverage, importance_share, flagged, reason
    model_auc: float
    best_baseline_auc: float
    flagged_features: list[str]
    model_flag: str | None
    thresholds: LeakageThresholds
    notes: list[str] = field(default_factory=list)

    @property
    def flagged(self) -> bool:
        return bool(self.flagged_features) or self.model_flag is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "flagged": self.flagged,
            "flagged_features": self.flagged_features,
            "model_flag": self.model_flag,
            "model_auc": self.model_auc,
            "best_baseline_auc": self.best_baseline_auc,
            "thresholds": self.thresholds.model_dump(),
            "features": self.features.to_dict(orient="records"),
            "notes": self.notes,
        }

    def to_text(self) -> str:
        computed = self.features["single_auc"].notna()
        status = "FLAGGED" if self.flagged else "clear" if computed.any() else "clear on the model's AUC only"
        lines = [f"Leakage alarm: {status}"]
        for _, row in self.features[self.features["flagged"]].iterrows():
            lines.append(
                f"- feature {row['feature']!r}: {row['reason']} (single AUC {row['single_auc']:.3f}, "
                f"filled-in AUC {row['covered_auc']:.3f}, importance share {row['importance_share']:.2f})"
            )
        if self.model_flag:
            lines.append(f"- model: {self.model_flag}")
        top = self.features[computed].sort_values("single_auc", ascending=False).head(5)
        if len(top):
            lines.append("Top single-feature AUCs: " + ", ".join(
                f"{f} {a:.3f}" for f, a in zip(top["feature"], top["single_auc"], strict=True)))
        else:
            lines.append(f"Single-feature AUCs: not computed (the evaluation rows need at least {MIN_CLASS_ROWS} "
                         f"positives and {MIN_CLASS_ROWS} negatives)")
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)

    def raise_if_flagged(self) -> None:
        """Refuse (``LeakageError``) when anything is flagged."""
        if self.flagged:
            raise LeakageError(self.to_text())


def leakage_report(
    single_auc: pd.DataFrame,
    importance: pd.Series,
    model_auc: float,
    baseline_aucs: dict[str, float],
    thresholds: LeakageThresholds,
    covered_columns: Collection[str] | None = None,
) -> LeakageReport:
    """Flag features by single AUC / importance share, and the model by absolute or relative AUC.

    The filled-in ("covered") rule looks for fields written after contact, i.e. lead attributes: it
    applies to ``covered_columns`` only (None: every feature). The snapshot pipeline passes its fit
    columns: its "days since last ..." features are missing by construction until a lead first does
    that thing, count only events before the snapshot, and where filled in rank recent activity,
    real signal that crossed the bar on small CRMs (covered AUC 0.81-0.86 on 3 of 4 synthetic
    2,000-lead CRMs, below it at 5,000). In strict mode (``thresholds.strict``) a flagged report
    raises ``LeakageError``.
    """
    total = float(importance.sum())
    share = importance / total if total > 0 else importance * 0.0
    table = single_auc.join(share.rename("importance_share"), how="outer")
    table = table.fillna({"importance_share": 0.0}).rename_axis("feature").reset_index()
    reasons = []
    for name, auc, cov_auc, cov, imp in zip(table["feature"], table["single_auc"], table["covered_auc"],
                                            table["coverage"], table["importance_share"], strict=True):
        covered_rule = covered_columns is None or name in covered_columns
        if auc >= thresholds.single_feature_auc:
            reasons.append(f"alone predicts the label (AUC >= {thresholds.single_feature_auc})")
        elif covered_rule and cov_auc >= thresholds.covered_feature_auc and cov < 1.0:
            reasons.append(
                f"where filled in ({cov:.0%} of rows) alone predicts the label (AUC >= "
                f"{thresholds.covered_feature_auc}): typical of a field written after contact"
            )
        elif imp >= thresholds.importance_share and auc >= thresholds.importance_share_auc:
            reasons.append(
                f"dominates the model (gain share >= {thresholds.importance_share}) and alone has "
                f"AUC >= {thresholds.importance_share_auc}"
            )
        else:
            reasons.append("")
    table["reason"] = reasons
    table["flagged"] = table["reason"] != ""
    table = table.sort_values(["flagged", "single_auc"], ascending=[False, False]).reset_index(drop=True)
    finite = [v for v in baseline_aucs.values() if np.isfinite(v)]
    best = max(finite) if finite else float("nan")
    model_flag = None
    if model_auc > thresholds.model_auc:
        model_flag = f"model AUC {model_auc:.3f} > {thresholds.model_auc}: too good to be true"
    elif np.isfinite(best) and model_auc > best + thresholds.model_over_best_baseline:
        model_flag = (
            f"model AUC {model_auc:.3f} exceeds the best baseline ({best:.3f}) by more than "
            f"{thresholds.model_over_best_baseline}"
        )
    report = LeakageReport(
        features=table,
        model_auc=float(model_auc),
        best_baseline_auc=float(best),
        flagged_features=table.loc[table["flagged"], "feature"].tolist(),
        model_flag=model_flag,
        thresholds=thresholds,
    )
    if thresholds.strict:
        report.raise_if_flagged()
    return report
