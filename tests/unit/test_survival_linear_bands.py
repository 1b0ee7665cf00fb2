"""The linear base's period shape by lead age (issue 5: the forecast's months 4-6 for old leads).

One period shape for every lead is set by the young leads, whose hazard falls with time; old leads'
hazard is flat by period. With lead-age bands each band after the first gets its own free level and
log-time slope. The bands are saved with the base and computed the same way by the serving path.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from serving.closing import CompiledLinear
from training.survival_config import TimeToCloseConfig
from training.survival_linear import Bands, LinearHazard, band_of, bands_with_closes, fit_linear_hazard
from training.time_to_close import TimeToCloseModel, expand_periods

PERIODS = 20
EDGES = (90.0, 180.0)
# logit h_k per band: young leads fade (slope -0.8), middle-aged leads fade less, old leads are flat
SHAPES = {0: (-3.0, -0.8), 1: (-3.6, -0.4), 2: (-4.2, 0.0)}


def _snapshots(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    age = rng.choice([20.0, 60.0, 120.0, 150.0, 250.0, 400.0], n)
    X = pd.DataFrame({"lead_age_days": age, "a": rng.standard_normal(n)})
    band = band_of(age, np.array(EDGES))
    level = np.array([SHAPES[b][0] for b in band])
    slope = np.array([SHAPES[b][1] for b in band])
    logit = level[:, None] + slope[:, None] * np.log1p(np.arange(PERIODS))[None, :] + 0.7 * X["a"].to_numpy()[:, None]
    closes = rng.random((n, PERIODS)) < expit(logit)
    closed = closes.any(axis=1)
    durations = np.where(closed, (np.argmax(closes, axis=1) + 0.5) * 7.0, PERIODS * 7.0)
    return X, durations, closed


def _fit(bands: Bands) -> tuple[LinearHazard, pd.DataFrame]:
    X, d, e = _snapshots(12000, seed=1)
    Xv, dv, ev = _snapshots(3000, seed=2)
    rows = expand_periods(d, e, 7.0, PERIODS, censored_period_weight=0.5)
    valid = expand_periods(dv, ev, 7.0, PERIODS, censored_period_weight=0.5)
    return fit_linear_hazard(X, rows, PERIODS, Xv, valid, c_grid=(1e-3, 1e-2), bands=bands), X


def _drop(linear: LinearHazard, age: float) -> float:
    """logit h_0 - logit h_19 of a lead of this age."""
    shape = linear.margins(pd.DataFrame({"lead_age_days": [age], "a": [0.0]}))[0]
    return float(shape[0] - shape[-1])


def test_band_of_splits_at_the_edges_and_sends_missing_to_the_first_band() -> None:
    values = np.array([0.0, 89.9, 90.0, 179.0, 180.0, 1000.0, np.nan])
    assert band_of(values, np.array(EDGES)).tolist() == [0, 0, 1, 1, 2, 2, 0]


def test_each_age_band_gets_its_own_period_shape() -> None:
    banded, _ = _fit(Bands("lead_age_days", EDGES))
    true_drop = 0.8 * np.log1p(PERIODS - 1)  # 2.4 for young leads, 0 for old ones
    assert abs(_drop(banded, 20.0) - true_drop) < 0.5
    assert abs(_drop(banded, 120.0) - true_drop / 2) < 0.5
    assert abs(_drop(banded, 400.0)) < 0.5
    assert banded.band_coef.shape == (2, 2)
    # one shape for every lead: old leads get the young leads' fall (the defect)
    shared, _ = _fit(Bands())
    assert _drop(shared, 400.0) == _drop(shared, 20.0)
    assert _drop(shared, 400.0) > 1.0


def test_bands_are_saved_and_served_alike() -> None:
    linear, X = _fit(Bands("lead_age_days", EDGES))
    X = X.iloc[:300]
    loaded = LinearHazard.from_dict(linear.to_dict())
    assert loaded.band_column == "lead_age_days" and loaded.band_edges.tolist() == list(EDGES)
    np.testing.assert_array_equal(loaded.margins(X), linear.margins(X))
    compiled = CompiledLinear.of(loaded, list(X.columns), {})
    base = X.to_numpy(dtype=np.float64)
    served = compiled.snapshot_margin(base)[:, None] + compiled.period_margins(base)
    np.testing.assert_allclose(served, linear.margins(X), rtol=0, atol=1e-9)
    # a base saved before the bands loads with one shape for every lead
    old = {k: v for k, v in linear.to_dict().items() if not k.startswith("band_")}
    plain = LinearHazard.from_dict(old)
    assert plain.band_column is None
    np.testing.assert_array_equal(plain.margins(X), plain.snapshot_margin(X)[:, None] + plain.period[None, :])


def test_bands_need_their_column_and_increasing_edges() -> None:
    X, d, e = _snapshots(500, seed=3)
    rows = expand_periods(d, e, 7.0, PERIODS, censored_period_weight=0.5)
    with pytest.raises(ValueError, match="lead_age_days"):
        fit_linear_hazard(X.drop(columns="lead_age_days"), rows, PERIODS, bands=Bands("lead_age_days", EDGES))
    with pytest.raises(ValueError, match="edges"):
        fit_linear_hazard(X, rows, PERIODS, bands=Bands("lead_age_days", (180.0, 90.0)))


def _model_data() -> dict:
    X, d, e = _snapshots(6000, seed=4)
    return dict(X=X[:4500], durations=d[:4500], events=e[:4500], X_valid=X[4500:], durations_valid=d[4500:],
                events_valid=e[4500:])


def test_the_model_fits_refits_saves_and_serves_the_bands(tmp_path) -> None:
    """``time_to_close.linear_age_bands``: the bands go through the linear refit and the per-period
    recalibration, are saved with the model, and the serving path computes the same hazards."""
    config = TimeToCloseConfig(max_periods=PERIODS, horizons_days=(30, 60), linear_age_bands=EDGES,
                               recalibration_strength=30.0, make_plots=False)
    model = TimeToCloseModel(config).fit(**_model_data())
    assert model.linear_.band_column == "lead_age_days" and model.linear_.band_coef.shape == (2, 2)
    X = _snapshots(300, seed=5)[0]
    hazards = model.predict_hazard(X)
    young, old = (hazards[X["lead_age_days"].to_numpy() == age].mean(axis=0) for age in (20.0, 400.0))
    assert young[0] / young[-1] > 3 * old[0] / old[-1]  # the old leads' hazard falls far less
    loaded = TimeToCloseModel.load(model.save(tmp_path / "model"))
    np.testing.assert_array_equal(loaded.predict_hazard(X), hazards)
    compiled = CompiledLinear.of(loaded.linear_, list(loaded.feature_columns_), loaded.categories_)
    base = X[loaded.feature_columns_].to_numpy(dtype=np.float64)  # the inputs, as serving holds them
    trees = np.stack([loaded.booster_.predict(np.column_stack([loaded.encode(X), np.full(len(X), k)]).astype(
        np.float32), raw_score=True, num_iteration=loaded.best_iteration_) for k in range(PERIODS)], axis=1)
    served = expit(trees + compiled.snapshot_margin(base)[:, None] + compiled.period_margins(base))
    np.testing.assert_allclose(served, hazards, rtol=1e-9, atol=1e-12)


def test_bands_without_the_lead_age_feature_are_refused() -> None:
    data = _model_data()
    data["X"], data["X_valid"] = data["X"][["a"]], data["X_valid"][["a"]]
    config = TimeToCloseConfig(max_periods=PERIODS, horizons_days=(30, 60), linear_age_bands=EDGES)
    with pytest.raises(ValueError, match="linear_age_bands.*lead_age_days"):
        TimeToCloseModel(config).fit(**data)


@pytest.mark.parametrize("edges", [(180.0, 90.0), (90.0, 90.0), (0.0, 90.0)])
def test_the_config_refuses_bands_that_do_not_increase(edges) -> None:
    with pytest.raises(ValueError, match="linear_age_bands must be increasing positive"):
        TimeToCloseConfig(linear_age_bands=edges)


def _closing_snapshots(closes_per_band: list[int], open_per_band: int = 50) -> tuple[pd.DataFrame, object]:
    """Snapshots of the ages 20, 120 and 400 days: ``closes_per_band[j]`` close in week 1, the others stay open."""
    ages, events = [], []
    for age, closes in zip((20.0, 120.0, 400.0), closes_per_band, strict=True):
        ages += [age] * (closes + open_per_band)
        events += [True] * closes + [False] * open_per_band
    events = np.array(events)
    rows = expand_periods(np.where(events, 3.0, PERIODS * 7.0), events, 7.0, PERIODS, censored_period_weight=0.5)
    return pd.DataFrame({"lead_age_days": ages, "a": np.zeros(len(ages))}), rows


@pytest.mark.parametrize(("closes", "edges"), [([40, 30, 25], EDGES), ([40, 30, 5], (90.0,)), ([40, 5, 30], (180.0,)),
                                               ([40, 5, 0], ()), ([40, 0, 15], ())])
def test_a_band_with_too_few_closes_joins_the_band_below(closes, edges) -> None:
    X, rows = _closing_snapshots(closes)
    kept = bands_with_closes(Bands("lead_age_days", EDGES), X, rows, min_closes=20)
    assert kept.edges == edges
    assert kept.column == ("lead_age_days" if edges else None)


def test_a_band_without_closes_gets_no_shape_of_its_own() -> None:
    """Olist: no lead 180 days or older closed in the backtest's fitting rows, and that band's free level went
    to -14.8 (its leads' hazard ~0, the C-index 0.010 lower). Such a band is merged into the one below."""
    X, d, e = _snapshots(12000, seed=1)
    old = X["lead_age_days"].to_numpy() >= 180
    e = e & ~old
    d = np.where(old, PERIODS * 7.0, d)
    rows = expand_periods(d, e, 7.0, PERIODS, censored_period_weight=0.5)
    unguarded = fit_linear_hazard(X, rows, PERIODS, bands=Bands("lead_age_days", EDGES), min_band_closes=0)
    assert unguarded.band_coef[1, 0] < -5  # the defect: a level far below any band's with closes
    linear = fit_linear_hazard(X, rows, PERIODS, bands=Bands("lead_age_days", EDGES))
    assert linear.band_edges.tolist() == [90.0] and np.abs(linear.band_coef).max() < 3


def test_the_config_refuses_bands_without_the_linear_base() -> None:
    """The bands shape the linear base's period hazard: with ``linear_base: false`` they were silently ignored."""
    with pytest.raises(ValueError, match="linear_age_bands .* need linear_base"):
        TimeToCloseConfig(linear_base=False, linear_age_bands=(90, 180))
    assert TimeToCloseConfig(linear_base=False).linear_age_bands == ()
