"""The linear base of the hazard booster: a penalised discrete-time logistic hazard.

``logit h_k(x) = b + z(x) . beta + gamma_k`` with ``gamma_k = c log(1 + k) + delta_k``: ``z`` is the
standardised design of :class:`training.survival_baselines.CoxDesign` (log1p numerics, missing
flags, one-hot of the frequent levels), ``b + c log(1 + k)`` a Weibull-like baseline and
``delta_k`` one departure from it per period. It is the discrete-time cousin of the Cox model; the
LightGBM hazard then boosts from its margin (``init_score``), so the trees only add what the linear
hazard misses (interactions with the period, thresholds, high-cardinality categoricals), and early
stopping on held-out leads decides how much of that is real.

Why: closes are rare, and with a few hundred of them a tree model alone learns less than a
penalised linear one (on a 5,000-lead synthetic CRM the booster alone reached C 0.73 where the
Cox peer reached 0.74; boosted from this base it reached 0.76).

The ridge penalty (``C``, scikit-learn's inverse strength: the objective is the weighted log loss
plus ``|theta|^2 / (2 C)``) applies to ``beta`` and to the departures ``delta_k``, never to the
baseline's level ``b`` and log-time slope ``c``, as a Cox model's baseline hazard is never
penalised. Penalising one coefficient per period instead (the earlier design) shrank the baseline
to a flat hazard: at the chosen ``C = 0.001`` every ``gamma_k`` was 0.00 on the 5,000-lead
synthetic CRM, so a lead was as likely to close in week 20 as in week 1 and the revenue forecast
put too much mass in its months 4-6 (hot leads, whose intent fades within weeks, most of all).
A free coefficient per period would not do either: some weeks hold no close at all.

``C`` is chosen on the validation leads: the strongest penalty whose weighted validation log loss
is within ``tolerance`` (relative) of the best on the grid. ``TimeToCloseConfig`` passes 0 (the
best): a 1% tolerance (a one-standard-error style rule) chose too strong a penalty. The model's
mean C over 8 synthetic CRMs of 5,000 leads went from 0.759 / 0.716 (Harrell / Uno) to 0.763 /
0.722, on Olist from 0.673 / 0.673 to 0.677 / 0.677, on the 20,000-lead CRM (seed 3) from 0.780 /
0.759 to 0.789 / 0.768. Fitting uses at most ``max_rows`` period rows (every event row,
non-event rows subsampled and re-weighted), so its memory is bounded whatever the number of
snapshots.

Period shape by lead age (``band_column``, ``band_edges``; the model passes ``lead_age_days``): one shape
for every lead is set by the young leads that hold most closes and whose intent fades, and is too
front-loaded for old ones. With bands, the snapshots are split by that column at the snapshot (``age <
edges[0]``, ..., ``>= edges[-1]``; a missing value goes to the first band) and each band after the first
gets its own unpenalised level and log-time slope, ``a_j + s_j log(1 + k)``, added to the shared shape
``gamma_k``: a stratified Weibull-like baseline, free as the shared one is; a band with fewer than
:data:`MIN_BAND_CLOSES` closes is merged into the band below (as a stratum needs events). Off by default
(``TimeToCloseConfig.linear_age_bands``): with [90, 180] the revenue forecast's months 4-6 moved toward the
oracle on the synthetic CRMs where it was below, but further above it on a seed where the whole forecast
was high and past it on another (README, Revenue forecast).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import expit

from features.schema import to_numbers
from training.survival_baselines import CoxDesign, stacked_rows

CHUNK = 100_000


def _subsample(rows: Any, max_rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions of at most ``max_rows`` period rows (all events) and their weights."""
    n = len(rows)
    weight = rows.weight.astype(np.float64).copy()
    if n <= max_rows:
        return np.arange(n), weight
    event = rows.label > 0
    non = np.flatnonzero(~event)
    rate = max(max_rows - int(event.sum()), 1) / max(non.size, 1)
    keep = event | (np.random.default_rng(seed).random(n) < rate)
    weight[~event] /= rate
    idx = np.flatnonzero(keep)
    return idx, weight[idx]


def _loss(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> float:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return float(-np.average(y * np.log(p) + (1 - y) * np.log1p(-p), weights=w))


def band_of(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Band of each value: 0 below ``edges[0]``, ..., ``len(edges)`` at or above ``edges[-1]``; NaN -> 0."""
    values = np.asarray(values, dtype=np.float64)
    return np.where(np.isnan(values), 0, np.searchsorted(np.asarray(edges, dtype=np.float64), values, side="right"))


def band_shapes(band_coef: np.ndarray, periods: int) -> np.ndarray:
    """Each band's addition to the shared period shape, (bands, periods): 0 for the first band, ``a_j + s_j
    log(1 + k)`` for band ``j`` with ``band_coef[j - 1] = (a_j, s_j)``."""
    coef = np.asarray(band_coef, dtype=np.float64).reshape(-1, 2)
    return np.vstack([np.zeros((1, periods)), coef @ period_basis(periods).T])


@dataclass
class LinearHazard:
    """Fitted linear hazard: design, coefficients, period offsets, intercept, chosen C, and (optional)
    the level and log-time slope of each lead-age band after the first (``band_coef``, (bands - 1, 2))."""

    design: CoxDesign
    coef: np.ndarray
    period: np.ndarray
    intercept: float
    c: float
    validation_losses: dict[float, float]
    band_column: str | None = None
    band_edges: np.ndarray = field(default_factory=lambda: np.empty(0))
    band_coef: np.ndarray = field(default_factory=lambda: np.empty((0, 2)))

    def bands(self, X: pd.DataFrame) -> np.ndarray:
        """Lead-age band of each snapshot (all 0 without bands)."""
        if self.band_column is None:
            return np.zeros(len(X), dtype=np.int64)
        if self.band_column not in X.columns:
            raise ValueError(f"linear hazard: period shape by {self.band_column!r}, which is not a column")
        return band_of(to_numbers(X[self.band_column], errors="coerce").to_numpy(dtype=np.float64),
                       self.band_edges)

    def band_period(self) -> np.ndarray:
        """Each band's addition to ``period``, (bands, periods)."""
        return band_shapes(self.band_coef, len(self.period))

    def snapshot_margin(self, X: pd.DataFrame) -> np.ndarray:
        """``b + z(x) . beta`` per snapshot (computed in chunks: the design is never held whole)."""
        out = np.empty(len(X))
        for first in range(0, len(X), CHUNK):
            block = X.iloc[first : first + CHUNK]
            out[first : first + len(block)] = self.design.transform(block).to_numpy(dtype=np.float64) @ self.coef
        return out + self.intercept

    def margins(self, X: pd.DataFrame) -> np.ndarray:
        """Linear logit of every period: (n, K)."""
        if self.band_column is None:
            return self.snapshot_margin(X)[:, None] + self.period[None, :]
        return self.snapshot_margin(X)[:, None] + (self.period[None, :] + self.band_period()[self.bands(X)])

    def row_margins(self, X: pd.DataFrame, rows: Any) -> np.ndarray:
        """Linear logit of the period ``rows`` of the snapshots ``X``."""
        if self.band_column is None:
            return self.snapshot_margin(X)[rows.row] + self.period[rows.period]
        return self.snapshot_margin(X)[rows.row] + (self.period[rows.period]
                                                    + self.band_period()[self.bands(X)[rows.row], rows.period])

    def to_dict(self) -> dict[str, Any]:
        return {"design": self.design.to_dict(), "coef": self.coef.tolist(), "period": self.period.tolist(),
                "intercept": self.intercept, "c": self.c,
                "validation_losses": {str(k): v for k, v in self.validation_losses.items()},
                "band_column": self.band_column, "band_edges": self.band_edges.tolist(),
                "band_coef": self.band_coef.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LinearHazard:
        """Read :meth:`to_dict`; a base saved before the bands has none (one shape for every lead)."""
        return cls(CoxDesign.from_dict(data["design"]), np.asarray(data["coef"], dtype=float),
                   np.asarray(data["period"], dtype=float), float(data["intercept"]), float(data["c"]),
                   {float(k): float(v) for k, v in data.get("validation_losses", {}).items()},
                   data.get("band_column"), np.asarray(data.get("band_edges", []), dtype=float),
                   np.asarray(data.get("band_coef", []), dtype=float).reshape(-1, 2))


def period_basis(periods: int) -> np.ndarray:
    """The unpenalised baseline columns of each period ``k``: ``1`` and ``log(1 + k)``, (periods, 2)."""
    k = np.arange(periods, dtype=np.float64)
    return np.column_stack([np.ones(periods), np.log1p(k)])


@dataclass(frozen=True)
class Bands:
    """Lead-age bands of the period shape: the column and the edges (no bands: ``column`` None)."""

    column: str | None = None
    edges: tuple[float, ...] = ()

    @property
    def extra(self) -> int:
        """Bands after the first (each adds a free level and slope)."""
        return len(self.edges) if self.column is not None else 0


MIN_BAND_CLOSES = 20
"""Closes a lead-age band needs in the fitting rows to get its own period shape (fewer: merged into the band
below). A band without closes would get a free level of minus infinity: on Olist, whose leads 180 days or
older at the fitting dates hold no close, the band's level came out at -14.8 and its leads' hazard at ~0."""


def bands_with_closes(bands: Bands, X: pd.DataFrame, rows: Any, min_closes: int = MIN_BAND_CLOSES) -> Bands:
    """``bands`` with every band holding fewer than ``min_closes`` closes among the period ``rows`` of ``X``
    merged into the band below it (from the top down); no band left above the first: ``Bands()``. Pure."""
    if not bands.extra:
        return bands
    if bands.column not in X.columns:
        raise ValueError(f"linear hazard: period shape by {bands.column!r}, which is not a feature column")
    band = band_of(to_numbers(X[bands.column], errors="coerce").to_numpy(dtype=np.float64),
                   np.asarray(bands.edges, dtype=np.float64))
    closes = np.bincount(band[rows.row[rows.label > 0]], minlength=bands.extra + 1).tolist()
    edges = list(bands.edges)
    for j in range(bands.extra, 0, -1):
        if closes[j] < min_closes:
            closes[j - 1] += closes.pop(j)
            edges.pop(j - 1)
    return Bands(bands.column, tuple(edges)) if edges else Bands()


def _design_rows(design: CoxDesign, X: pd.DataFrame, rows: Any, idx: np.ndarray, periods: int,
                 X_more: pd.DataFrame | None = None, bands: Bands = Bands()) -> np.ndarray:
    """[z(snapshot), one-hot(period), band j's period_basis(period) for j >= 1, period_basis(period)] of the
    period rows ``idx``; ``rows`` index the snapshots of ``X`` stacked on ``X_more`` (when given), of which only
    those used are copied."""
    snapshots, inverse = np.unique(rows.row[idx], return_inverse=True)
    frame = stacked_rows(X, X_more, snapshots)
    z = design.transform(frame).to_numpy(dtype=np.float64)[inverse]
    onehot = np.zeros((idx.size, periods))
    onehot[np.arange(idx.size), rows.period[idx]] = 1.0
    basis = period_basis(periods)[rows.period[idx]]
    blocks = [z, onehot]
    if bands.extra:
        if bands.column not in frame.columns:
            raise ValueError(f"linear hazard: period shape by {bands.column!r}, which is not a feature column")
        band = band_of(to_numbers(frame[bands.column], errors="coerce").to_numpy(dtype=np.float64),
                       np.asarray(bands.edges, dtype=np.float64))[inverse]
        blocks += [basis * (band == j)[:, None] for j in range(1, bands.extra + 1)]
    return np.hstack([*blocks, basis])


def fit_partly_penalised_logistic(
    G: np.ndarray, y: np.ndarray, weight: np.ndarray, c: float, n_free: int, start: np.ndarray | None = None,
    *, max_iter: int = 2000, tolerance: float = 1e-7,
) -> np.ndarray:
    """Coefficients minimising the weighted log loss of ``expit(G @ theta)`` plus ``|theta|^2 / (2 c)``
    over all but the last ``n_free`` columns (those are not penalised; ``G`` carries its own constant).
    L-BFGS on the objective divided by the total weight, from ``start`` (default zeros). Pure."""
    total = float(weight.sum())
    penalised = np.ones(G.shape[1])
    penalised[G.shape[1] - n_free:] = 0.0

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        eta = G @ theta
        loss = float(np.sum(weight * (np.logaddexp(0.0, eta) - y * eta)))
        grad = G.T @ (weight * (expit(eta) - y))
        ridge = penalised * theta / c
        return (loss + 0.5 * float(theta @ ridge)) / total, (grad + ridge) / total

    x0 = np.zeros(G.shape[1]) if start is None else np.asarray(start, dtype=np.float64)
    result = minimize(objective, x0, jac=True, method="L-BFGS-B",
                      options={"maxiter": max_iter, "gtol": tolerance, "ftol": 64 * np.finfo(float).eps})
    return result.x


def _hazard_from(design: CoxDesign, theta: np.ndarray, periods: int, c: float,
                 losses: dict[float, float], bands: Bands = Bands()) -> LinearHazard:
    """Split ``[beta, delta, (a_j, s_j) per band j >= 1, b, slope]`` into a :class:`LinearHazard`
    (``gamma_k = slope log(1 + k) + delta_k``)."""
    d = theta.size - periods - 2 * bands.extra - 2
    delta, band_coef = theta[d : d + periods], theta[d + periods : theta.size - 2]
    level, slope = theta[-2:]
    gamma = delta + slope * np.log1p(np.arange(periods, dtype=np.float64))
    return LinearHazard(design, theta[:d].copy(), gamma, float(level), float(c), losses, bands.column,
                        np.asarray(bands.edges, dtype=np.float64), band_coef.reshape(-1, 2).copy())


def refit_linear_hazard(
    start: LinearHazard, X: pd.DataFrame, rows: Any, periods: int, *, max_rows: int = 300_000, seed: int = 0,
    X_more: pd.DataFrame | None = None,
) -> LinearHazard:
    """``start`` refitted on more period ``rows`` of ``X`` (stacked on ``X_more`` when given: ``rows`` index
    both): same design and penalty ``C``, its margins as the starting point (the penalty was chosen on
    held-out leads; the final linear part then learns from those leads too)."""
    idx, weight = _subsample(rows, max_rows, seed)
    bands = Bands(start.band_column, tuple(float(e) for e in start.band_edges))
    G = _design_rows(start.design, X, rows, idx, periods, X_more, bands)
    x0 = np.concatenate([start.coef, start.period, start.band_coef.ravel(), [start.intercept, 0.0]])
    theta = fit_partly_penalised_logistic(G, rows.label[idx].astype(np.float64), weight, start.c,
                                          2 + 2 * bands.extra, x0)
    return _hazard_from(start.design, theta, periods, start.c, dict(start.validation_losses), bands)


def fit_linear_hazard(
    X: pd.DataFrame,
    rows: Any,
    periods: int,
    X_valid: pd.DataFrame | None = None,
    valid_rows: Any = None,
    *,
    c_grid: Sequence[float] = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2),
    c_default: float = 3e-3,
    tolerance: float = 0.0,
    max_rows: int = 300_000,
    max_levels: int = 12,
    seed: int = 0,
    bands: Bands = Bands(),
    min_band_closes: int = MIN_BAND_CLOSES,
) -> LinearHazard:
    """Fit the design on ``X`` and the penalised logistic hazard on its period ``rows`` (see module doc),
    with a free level and log-time slope per lead-age band after the first when ``bands`` has a column (a
    band with fewer than ``min_band_closes`` closes merged into the one below: :func:`bands_with_closes`)."""
    if bands.column is not None and list(bands.edges) != sorted(set(bands.edges)):
        raise ValueError(f"linear hazard: band edges must increase strictly, got {list(bands.edges)}")
    bands = bands_with_closes(bands, X, rows, min_band_closes)
    design = CoxDesign(max_levels).fit(X)
    idx, weight = _subsample(rows, max_rows, seed)
    G = _design_rows(design, X, rows, idx, periods, bands=bands)
    y = rows.label[idx].astype(np.float64)
    candidates = sorted(set(c_grid)) if X_valid is not None and valid_rows is not None else [c_default]
    fitted: dict[float, np.ndarray] = {}
    losses: dict[float, float] = {}
    if len(candidates) > 1:
        v_idx, v_weight = _subsample(valid_rows, max_rows, seed + 1)
        Gv = _design_rows(design, X_valid, valid_rows, v_idx, periods, bands=bands)
        yv = valid_rows.label[v_idx].astype(np.float64)
    previous = None
    for c in candidates:  # strongest penalty first; each fit starts from the previous solution
        fitted[c] = previous = fit_partly_penalised_logistic(G, y, weight, c, 2 + 2 * bands.extra, previous)
        if len(candidates) > 1:
            losses[c] = _loss(yv, expit(Gv @ previous), v_weight)
    if losses:
        best = min(losses.values())
        chosen = min(c for c, loss in losses.items() if loss <= best * (1 + tolerance))
    else:
        chosen = candidates[0]
    return _hazard_from(design, fitted[chosen], periods, chosen, losses, bands)
