"""Small synthetic snapshot frames shaped like a TrainingSet frame, for the training tests.

Weekly ``as_of`` snapshots, a few categorical attributes, engagement counts, and a label drawn
from a known logistic model (so tests can compare with the true probability).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

SENIORITIES = ["IC", "manager", "director", "VP", "C-level"]
INDUSTRIES = ["software", "retail", "healthcare", "manufacturing"]
SOURCES = ["organic", "paid_search", "referral", "outbound"]
HORIZON = 14


@dataclass
class FrameSet:
    """Stand-in for features.build.TrainingSet (``frame`` + ``spec``)."""

    frame: pd.DataFrame
    spec: object = None
    horizon_days: int = HORIZON


def true_log_odds(frame: pd.DataFrame) -> np.ndarray:
    """The generating model (vectorised)."""
    seniority = frame["seniority"].astype(str).map(
        {"IC": -0.6, "manager": 0.0, "director": 0.4, "VP": 0.7, "C-level": 0.6}).fillna(0).to_numpy()
    industry = frame["industry"].astype(str).map({"software": 0.4, "retail": -0.4}).fillna(0.0).to_numpy()
    employees = np.log1p(frame["employees"].fillna(50).to_numpy()) * 0.15
    return (-3.2 + seniority + industry + employees
            + 1.6 * frame["demo_request_count_30d"].to_numpy()
            + 0.35 * frame["pricing_page_view_count_30d"].to_numpy()
            + 0.08 * frame["email_open_count_30d"].to_numpy()
            - 1.5 * frame["ever_unsubscribed"].to_numpy())


def snapshot_frame(n_leads: int = 600, n_weeks: int = 30, seed: int = 0) -> pd.DataFrame:
    """lead_id, as_of (weekly), converted_within_h, censored, then features (3 categoricals)."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2024-01-01")
    lead_ids = np.arange(n_leads)
    first_week = rng.integers(0, n_weeks - 4, n_leads)
    n_snaps = rng.integers(2, 8, n_leads)
    rows_lead = np.repeat(lead_ids, n_snaps)
    offsets = np.concatenate([np.arange(k) for k in n_snaps])
    week = np.minimum(np.repeat(first_week, n_snaps) + offsets, n_weeks - 1)
    n = len(rows_lead)
    lead_attr = pd.DataFrame({
        "seniority": rng.choice(SENIORITIES, n_leads, p=[0.35, 0.3, 0.18, 0.1, 0.07]),
        "industry": rng.choice(INDUSTRIES, n_leads),
        "lead_source": rng.choice(SOURCES, n_leads),
        "employees": np.where(rng.random(n_leads) < 0.05, np.nan, rng.lognormal(4, 1.5, n_leads).round()),
    })
    frame = pd.DataFrame({"lead_id": rows_lead, "as_of": start + pd.to_timedelta(week * 7, unit="D")})
    for col in ("seniority", "industry", "lead_source"):
        frame[col] = pd.Categorical(lead_attr[col].to_numpy()[rows_lead], categories=sorted(set(lead_attr[col])))
    frame["employees"] = lead_attr["employees"].to_numpy()[rows_lead]
    intent = rng.gamma(0.6, 1.0, n)
    frame["email_open_count_30d"] = rng.poisson(1 + 2 * intent).astype(float)
    frame["pricing_page_view_count_30d"] = rng.poisson(0.4 * intent).astype(float)
    frame["demo_request_count_30d"] = (rng.random(n) < 0.06 * intent).astype(float)
    frame["ever_unsubscribed"] = (rng.random(n) < 0.05).astype(float)
    p = 1 / (1 + np.exp(-true_log_odds(frame)))
    frame["true_probability"] = p
    frame["converted_within_h"] = (rng.random(n) < p).astype(float)
    last = start + pd.Timedelta(weeks=n_weeks - 1)
    censored = frame["as_of"] + pd.Timedelta(days=HORIZON) > last
    frame["censored"] = censored
    frame.loc[censored, "converted_within_h"] = np.nan
    ordered = ["lead_id", "as_of", "converted_within_h", "censored", "true_probability"]
    return frame[ordered + [c for c in frame.columns if c not in ordered]]


def feature_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns
            if c not in ("lead_id", "as_of", "converted_within_h", "censored", "true_probability")]


def labelled_time_slices(n_leads: int = 900, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame,
                                                                      np.ndarray, pd.DataFrame]:
    """Training features and labels, validation features and labels, test features of the labelled rows of
    :func:`snapshot_frame` (30 weeks), split in time as training splits them (14-day gap, 20% / 20%)."""
    from training.evaluation import time_ordered_split

    frame = snapshot_frame(n_leads, 30, seed=seed)
    frame = frame[frame["converted_within_h"].notna()].reset_index(drop=True)
    split = time_ordered_split(frame["as_of"], 14, 0.2, 0.2)
    X, y = frame[feature_columns(frame)], frame["converted_within_h"].to_numpy()
    return X.iloc[split.train], y[split.train], X.iloc[split.valid], y[split.valid], X.iloc[split.test]


def events_for(frame: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """A canonical events table consistent in spirit with the counts (for the points baseline)."""
    rng = np.random.default_rng(seed)
    snaps = frame[["lead_id", "as_of", "demo_request_count_30d", "pricing_page_view_count_30d"]]
    parts = []
    for col, kind in (("demo_request_count_30d", "demo_request"), ("pricing_page_view_count_30d",
                                                                    "pricing_page_view")):
        reps = snaps[col].to_numpy(dtype=int)
        ev = snaps.loc[snaps.index.repeat(reps), ["lead_id", "as_of"]]
        ev["occurred_at"] = ev["as_of"] - pd.to_timedelta(rng.uniform(0.1, 29, len(ev)), unit="D")
        ev["event_type"] = kind
        parts.append(ev[["lead_id", "occurred_at", "event_type"]])
    return pd.concat(parts, ignore_index=True).drop_duplicates()
