"""Close-probability curves from per-period hazards (pure numpy), shared by the revenue forecast
(:mod:`training.forecast`) and the time-to-close fields of every score (:mod:`serving.closing`).

``F(t) = 1 - S(t)`` with a constant hazard inside each period; past the last period the last
period's hazard is held constant. :func:`combine_close_curves` multiplies the hazard model's hazards by
one factor per lead so that its curve agrees with the sales-readiness model's calibrated
``P(close within H)``.
"""

from __future__ import annotations

import numpy as np


def cumulative_close(hazards: np.ndarray, period_days: float, days: np.ndarray) -> np.ndarray:
    """``F(t) = 1 - S(t)`` at ``days`` from per-period hazards (constant hazard inside a period and,
    past the last period, the last period's hazard held constant): (n, len(days))."""
    hazards = np.clip(np.asarray(hazards, dtype=np.float64), 0.0, 1.0)
    days = np.asarray(days, dtype=np.float64)
    if days.size and days.min() < 0:
        raise ValueError(f"days must be >= 0; got {days.min():g}")
    n, periods = hazards.shape
    ends = np.ones((n, periods + 1))
    np.cumprod(1.0 - hazards, axis=1, out=ends[:, 1:])
    position = days / period_days
    k = np.minimum(np.floor(position).astype(np.int64), periods)
    inside_k = np.minimum(k, periods - 1)
    frac = position - k  # past the horizon (k == periods): days beyond it, at the last period's hazard
    with np.errstate(divide="ignore", invalid="ignore"):
        decay = np.where(frac > 0, np.power(1.0 - hazards[:, inside_k], frac), 1.0)
    return 1.0 - ends[:, k] * decay


SURE = 1.0 - 1e-6  # readiness probabilities at or above this are treated as certain


def hazard_factor(f_ttc_horizon: np.ndarray, p_readiness: np.ndarray) -> np.ndarray:
    """``c`` with ``1 - (1 - F_ttc(H))**c = p``: the factor on every hazard of the hazard model that makes
    its curve reach the sales-readiness probability at H (NaN where ``F_ttc(H)`` is ~0 or ~1)."""
    fh = np.asarray(f_ttc_horizon, dtype=np.float64)
    p = np.clip(np.asarray(p_readiness, dtype=np.float64), 0.0, SURE)  # c at p ~ 1 would hang on p's last digits
    with np.errstate(divide="ignore", invalid="ignore"):
        c = np.log1p(-p) / np.log1p(-fh)
    return np.where((fh > 1e-12) & (fh < 1.0 - 1e-12), c, np.nan)


def combine_close_curves(
    f_ttc: np.ndarray, f_ttc_horizon: np.ndarray, p_readiness: np.ndarray, days: np.ndarray, horizon_days: float
) -> np.ndarray:
    """The hazard model's ``F_ttc`` (n, len(days)) adjusted so that ``F(H) = p_readiness``: every hazard is
    multiplied by the same factor ``c`` (:func:`hazard_factor`), ``S(t) = S_ttc(t)**c``. The curve keeps
    the hazard model's shape on both sides of H (no jump in the close rate at H), and the timing inside
    H is the hazard model's for the small probabilities of leads. Degenerate rows: with no timing
    information inside H (``F_ttc(H)`` ~ 0) ``p`` is spread uniformly over [0, H]; with ``F_ttc(H)`` ~ 1
    the hazard model's curve is rescaled inside H; after H both take the hazard model's conditional law
    given still open at H. Above :data:`SURE` the factor of ``SURE`` is used, the curve scaled by
    ``p / SURE``."""
    f_ttc = np.asarray(f_ttc, dtype=np.float64)
    fh = np.asarray(f_ttc_horizon, dtype=np.float64)[:, None]
    p = np.clip(np.asarray(p_readiness, dtype=np.float64), 0.0, 1.0)[:, None]
    days = np.asarray(days, dtype=np.float64)[None, :]
    c = hazard_factor(fh, p)
    survival = np.clip(1.0 - f_ttc, 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        # 1 - S_ttc ** c; above SURE the curve of SURE, scaled to reach p at H (continuous in p)
        scaled = -np.expm1(c * np.log(survival)) * np.maximum(p / SURE, 1.0)
        before = np.where(fh > 1e-12, p * f_ttc / fh, p * np.minimum(days / horizon_days, 1.0))
        tail = np.where(1.0 - fh > 1e-12, (f_ttc - fh) / (1.0 - fh), 0.0)
    degenerate = np.where(days <= horizon_days, before, p + (1.0 - p) * np.clip(tail, 0.0, 1.0))
    scaled = np.where((p <= 0.0) | (survival >= 1.0), 0.0, scaled)
    return np.clip(np.where(np.isnan(c), degenerate, scaled), 0.0, 1.0)


def days_to_reach(hazards: np.ndarray, period_days: float, target: np.ndarray) -> np.ndarray:
    """First t with ``F(t) = 1 - S(t) >= target`` per row (constant hazard inside a period); NaN when the
    curve does not reach it within the hazards' horizon."""
    hazards = np.clip(np.asarray(hazards, dtype=np.float64), 0.0, 1.0)
    n, periods = hazards.shape
    survival_needed = 1.0 - np.asarray(target, dtype=np.float64)
    ends = np.ones((n, periods + 1))
    np.cumprod(1.0 - hazards, axis=1, out=ends[:, 1:])
    below = ends[:, 1:] <= survival_needed[:, None]
    reached = below.any(axis=1) & (survival_needed < 1.0)
    k = np.argmax(below, axis=1)
    rows = np.arange(n)
    h = hazards[rows, k]
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(h >= 1.0, 0.0, np.log(survival_needed / ends[rows, k]) / np.log1p(-h))
    frac = np.clip(np.nan_to_num(frac, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
    return np.where(reached, (k + frac) * period_days, np.where(survival_needed >= 1.0, 0.0, np.nan))
