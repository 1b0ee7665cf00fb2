"""Survival metrics for right-censored outcomes (pure numpy; no fitted state).

Conventions (time in days, ``event`` 1 = closed at ``time``, 0 = censored at ``time``):

- Kaplan-Meier: product-limit over the distinct event times; a snapshot censored at a time where
  others close is still at risk for them. ``step_at(..., left=True)`` gives the left limit S(t-).
- Censoring distribution ``G``: the Kaplan-Meier estimate with the roles of event and censoring
  swapped, estimated on the evaluation rows themselves (their censoring comes from the end of the
  data, which differs between the training and the test period).
- Concordance (Harrell's and Uno's), truncated at ``tau``: a pair (i, j) is comparable when i closed
  at ``T_i < tau`` and ``T_j > T_i``, or j was censored at ``T_j = T_i`` (it outlived i); it is concordant when i has the higher risk, and
  a tie in risk counts 1/2. Uno's C weights each comparable pair by ``G(T_i-)^-2``, which makes it
  consistent under censoring that does not depend on the features (Uno et al. 2011); Harrell's C
  weights every pair 1. Counting is O(n log^2 n) (bottom-up merge counting), exact.
- Brier score at t with inverse probability of censoring weights (Graf et al. 1999):
  ``mean_i [ 1(T_i <= t, closed) S_i(t)^2 / G(T_i-) + 1(T_i > t) (1 - S_i(t))^2 / G(t) ]``;
  the integrated Brier score is its trapezoid integral over [0, tau] divided by tau (BS(0) = 0).
- Calibration of P(close within h): equal-mass bins of the predicted probability; the observed
  rate per bin is 1 - KM(h) of the bin's rows (Kaplan-Meier-corrected for censoring).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def _arrays(time: Sequence[float] | np.ndarray, event: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(time, dtype=np.float64)
    e = np.asarray(event).astype(np.float64)
    if t.shape != e.shape or t.ndim != 1:
        raise ValueError(f"time and event must be 1-D and of equal length ({t.shape} vs {e.shape})")
    bad = ~np.isfinite(t) | (t < 0)
    if bad.any():
        raise ValueError(f"time must be finite and >= 0; bad rows {np.flatnonzero(bad)[:10].tolist()}")
    if not np.isin(e, (0.0, 1.0)).all():
        raise ValueError(f"event must be 0/1; bad rows {np.flatnonzero(~np.isin(e, (0.0, 1.0)))[:10].tolist()}")
    return t, e.astype(bool)


# ----- Kaplan-Meier ------------------------------------------------------------------------------
def kaplan_meier(time: Sequence[float] | np.ndarray, event: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct event times and the product-limit S just after each (right-continuous steps)."""
    t, e = _arrays(time, event)
    if t.size == 0:
        return np.empty(0), np.empty(0)
    times, inverse = np.unique(t, return_inverse=True)
    deaths = np.bincount(inverse, weights=e.astype(np.float64), minlength=times.size)
    leaving = np.bincount(inverse, minlength=times.size)
    at_risk = t.size - np.concatenate([[0], np.cumsum(leaving)[:-1]])
    keep = deaths > 0
    times, deaths, at_risk = times[keep], deaths[keep], at_risk[keep]
    return times, np.cumprod(1.0 - deaths / at_risk)


BRIER_ROWS = 16_384  # rows of the Brier score's terms held at a time


def step_at(times: np.ndarray, values: np.ndarray, t: float | np.ndarray, left: bool = False) -> np.ndarray:
    """A right-continuous step function starting at 1 (Kaplan-Meier) evaluated at ``t``;
    ``left=True``: the left limit at ``t``."""
    extended = np.concatenate([[1.0], np.asarray(values, dtype=np.float64)])
    return extended[np.searchsorted(times, np.asarray(t, dtype=np.float64), side="left" if left else "right")]


def censoring_survival(time: np.ndarray, event: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """G: Kaplan-Meier of the censoring times (event and censoring swapped)."""
    t, e = _arrays(time, event)
    return kaplan_meier(t, ~e)


# ----- concordance -------------------------------------------------------------------------------
def _later_smaller_counts(ranks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For every position i: #{j > i: ranks[j] < ranks[i]} and #{j > i: ranks[j] == ranks[i]}."""
    n = ranks.size
    less = np.zeros(n, dtype=np.int64)
    equal = np.zeros(n, dtype=np.int64)
    if n < 2:
        return less, equal
    span = int(ranks.max()) + 1
    pos = np.arange(n, dtype=np.int64)
    size = 1
    while size < n:
        block = pos // (2 * size)
        right = (pos % (2 * size)) >= size
        right_keys = np.sort(block[right] * span + ranks[right])
        left = ~right
        keys = block[left] * span + ranks[left]
        start = np.searchsorted(right_keys, block[left] * span, side="left")
        below = np.searchsorted(right_keys, keys, side="left")
        upto = np.searchsorted(right_keys, keys, side="right")
        less[left] += below - start
        equal[left] += upto - below
        size *= 2
    return less, equal


def concordance_sums(
    time: np.ndarray, event: np.ndarray, risk: np.ndarray, tau: float | None = None, weights: np.ndarray | None = None
) -> tuple[float, float]:
    """(weighted concordant pairs with ties as 1/2, weighted comparable pairs); weights per row i."""
    t, e = _arrays(time, event)
    r = np.asarray(risk, dtype=np.float64)
    if r.shape != t.shape:
        raise ValueError(f"risk has {r.size} values for {t.size} rows")
    if np.isnan(r).any():
        raise ValueError(f"risk has NaN in rows {np.flatnonzero(np.isnan(r))[:10].tolist()}")
    w = np.ones(t.size) if weights is None else np.asarray(weights, dtype=np.float64)
    # time ascending, closed before censored at the same time, then risk ascending
    order = np.lexsort((r, ~e, t))
    t, e, r, w = t[order], e[order], r[order], w[order]
    _, ranks = np.unique(r, return_inverse=True)
    less, equal = _later_smaller_counts(ranks.astype(np.int64))
    # Rows after a closed row i: the other rows closed at the same time (not comparable; sorted by
    # risk, they never have a smaller risk, only an equal one), then the rows censored at that time
    # and every later time (comparable). Remove the former from the tie counts and the pair counts.
    n = t.size
    pos = np.arange(n)
    change = np.ones(n, dtype=bool)
    change[:-1] = (t[1:] != t[:-1]) | (e[1:] != e[:-1])
    block_last = np.flatnonzero(change)  # last row of every (time, closed) block
    end_of_block = block_last[np.searchsorted(block_last, pos, side="left")] + 1
    change[:-1] |= r[1:] != r[:-1]
    group_last = np.flatnonzero(change)  # last row of every (time, closed, risk) group
    end_of_group = group_last[np.searchsorted(group_last, pos, side="left")] + 1
    equal = equal - (end_of_group - pos - 1)
    comparable = n - end_of_block
    use = e & (t < (np.inf if tau is None else tau))
    numerator = float(np.sum(w[use] * (less[use] + 0.5 * equal[use])))
    denominator = float(np.sum(w[use] * comparable[use]))
    return numerator, denominator


def harrell_c(time: np.ndarray, event: np.ndarray, risk: np.ndarray, tau: float | None = None) -> float:
    """Harrell's concordance index (higher risk = closes sooner), truncated at ``tau``."""
    num, den = concordance_sums(time, event, risk, tau)
    return num / den if den > 0 else float("nan")


def uno_c(
    time: np.ndarray,
    event: np.ndarray,
    risk: np.ndarray,
    tau: float,
    censoring: tuple[np.ndarray, np.ndarray] | None = None,
) -> float:
    """Uno's IPCW concordance index truncated at ``tau``; ``censoring`` = G as (times, values)
    (default: estimated on the same rows)."""
    t, e = _arrays(time, event)
    g_times, g_values = censoring if censoring is not None else censoring_survival(t, e)
    g = step_at(g_times, g_values, t, left=True)
    usable = e & (t < tau)
    if (g[usable] <= 0).any():
        raise ValueError("uno_c: the censoring distribution reaches 0 before tau; lower tau")
    weights = np.where(usable, 1.0 / np.where(g > 0, g, 1.0) ** 2, 0.0)
    num, den = concordance_sums(t, e, risk, tau, weights)
    return num / den if den > 0 else float("nan")


# ----- Brier -------------------------------------------------------------------------------------
def brier_scores(
    time: np.ndarray,
    event: np.ndarray,
    survival: np.ndarray,
    days: np.ndarray,
    censoring: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """IPCW Brier score at each of ``days`` for predicted ``survival`` (n, len(days))."""
    t, e = _arrays(time, event)
    days = np.asarray(days, dtype=np.float64)
    s = np.asarray(survival, dtype=np.float64)
    if s.shape != (t.size, days.size):
        raise ValueError(f"survival must be (rows, days) = {(t.size, days.size)}, got {s.shape}")
    g_times, g_values = censoring if censoring is not None else censoring_survival(t, e)
    g_at_event = step_at(g_times, g_values, t, left=True)
    g_at_day = step_at(g_times, g_values, days)
    # a block of rows at a time (the terms of every row were 3 matrices of the size of ``survival``: 650 MB at
    # 556,078 rows x 47 days); each block's rows are added to the running sums in row order, as the mean of the
    # whole matrix adds them, so the scores are the same to the bit
    total = np.zeros(days.size)
    for first in range(0, t.size, BRIER_ROWS):
        block = slice(first, first + BRIER_ROWS)
        tb, sb = t[block, None], s[block]
        closed_by = e[block, None] & (tb <= days[None, :])
        still_open = tb > days[None, :]
        with np.errstate(divide="ignore", invalid="ignore"):
            first_term = np.where(closed_by, sb**2 / g_at_event[block, None], 0.0)
            second_term = np.where(still_open, (1.0 - sb) ** 2 / g_at_day[None, :], 0.0)
        total = np.add.reduce(np.vstack([total[None, :], first_term + second_term]), axis=0)
    return total / t.size


def integrated_brier_score(
    time: np.ndarray,
    event: np.ndarray,
    survival: np.ndarray,
    days: np.ndarray,
    censoring: tuple[np.ndarray, np.ndarray] | None = None,
) -> float:
    """Trapezoid integral of the IPCW Brier score over [0, days[-1]] divided by days[-1] (BS(0) = 0)."""
    days = np.asarray(days, dtype=np.float64)
    scores = brier_scores(time, event, survival, days, censoring)
    grid = np.concatenate([[0.0], days])
    return float(np.trapezoid(np.concatenate([[0.0], scores]), grid) / days[-1])


# ----- calibration -------------------------------------------------------------------------------
def calibration_table(
    time: np.ndarray, event: np.ndarray, p_close: np.ndarray, horizon: float, bins: int = 10
) -> pd.DataFrame:
    """Per equal-mass bin of predicted P(close within ``horizon``): size, mean predicted, the
    Kaplan-Meier-corrected observed rate and their gap (predicted - observed)."""
    t, e = _arrays(time, event)
    p = np.asarray(p_close, dtype=np.float64)
    order = np.argsort(p, kind="mergesort")
    rows = []
    for k, idx in enumerate(np.array_split(order, min(bins, max(t.size, 1)))):
        if idx.size == 0:
            continue
        km_t, km_s = kaplan_meier(t[idx], e[idx])
        followed = t[idx].max() >= horizon or (km_t.size and km_s[-1] == 0)
        observed = 1.0 - float(step_at(km_t, km_s, horizon)) if followed else float("nan")
        rows.append({"bin": k + 1, "n": int(idx.size), "mean_predicted": float(p[idx].mean()),
                     "observed": observed, "closed_within": int((e[idx] & (t[idx] <= horizon)).sum())})
    table = pd.DataFrame(rows, columns=["bin", "n", "mean_predicted", "observed", "closed_within"])
    table["gap"] = table["mean_predicted"] - table["observed"]
    return table


# ----- the evaluation horizon and grid -----------------------------------------------------------
def evaluation_horizon(time: np.ndarray, event: np.ndarray, max_days: float, min_censoring_survival: float) -> int:
    """tau: ``max_days``, lowered to the last whole day at which at least ``min_censoring_survival``
    of the rows are still uncensored (IPCW weights stay bounded)."""
    t, e = _arrays(time, event)
    g_times, g_values = censoring_survival(t, e)
    low = g_values < min_censoring_survival
    # the last whole day before G drops below the threshold (else the longest follow-up)
    limit = float(np.ceil(g_times[np.argmax(low)]) - 1) if low.any() else float(np.floor(t.max(initial=0.0)))
    tau = int(np.floor(min(max_days, limit)))
    if tau < 1:
        raise ValueError(f"evaluation horizon below one day (follow-up too short: max time {t.max(initial=0):.2f})")
    return tau


def evaluation_days(tau: int, horizons: Sequence[int], points: int = 48) -> np.ndarray:
    """Days at which curves are compared: a regular grid over (0, tau] plus the horizons <= tau."""
    step = max(1, int(round(tau / points)))
    grid = np.arange(step, tau + 1, step, dtype=np.float64)
    extra = [float(h) for h in horizons if h <= tau] + [float(tau)]
    return np.unique(np.concatenate([grid, extra]))
