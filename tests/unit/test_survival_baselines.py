"""The Cox peer is tuned as the model is: penalizer chosen on validation leads, then refitted on all."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.survival_baselines import CoxBaseline


def _snapshots(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Exponential times whose log hazard is linear in ``signal``; ``noise_*`` carry nothing; censored at 60."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"signal": rng.normal(size=n), "source": rng.choice(["web", "event", "ads"], size=n)})
    for j in range(8):
        X[f"noise_{j}"] = rng.normal(size=n)
    time = rng.exponential(40.0 * np.exp(-0.9 * X["signal"].to_numpy()))
    return X, np.minimum(time, 60.0), time <= 60.0


def test_penalizer_is_chosen_on_the_validation_rows_then_refitted_on_all() -> None:
    X, d, e = _snapshots(600, 0)
    Xv, dv, ev = _snapshots(300, 1)
    cox = CoxBaseline((0.001, 0.1, 3.0), max_levels=4).fit(X, d, e, Xv, dv, ev)
    assert set(cox.validation_scores_) == {0.001, 0.1, 3.0}
    assert cox.penalizer_ == max(cox.validation_scores_, key=cox.validation_scores_.get)
    assert cox.validation_scores_[3.0] < max(cox.validation_scores_.values())  # a crushing penalty loses
    assert cox.n_train_ == cox.n_available_ == 900  # refitted on training + validation rows
    days = np.array([0.0, 10.0, 30.0, 60.0])
    curves = cox.predict_survival(Xv, days)
    assert (np.diff(curves, axis=1) <= 1e-12).all() and ((curves > 0) & (curves <= 1)).all()
    hot, cold = Xv.iloc[[0]].assign(signal=2.0), Xv.iloc[[0]].assign(signal=-2.0)
    assert cox.predict_survival(hot, [30.0])[0, 0] < cox.predict_survival(cold, [30.0])[0, 0]


def test_without_validation_rows_the_middle_of_the_grid_is_used_and_rows_are_capped() -> None:
    X, d, e = _snapshots(500, 2)
    cox = CoxBaseline((0.3, 0.01, 0.03), max_rows=200).fit(X, d, e)
    assert cox.penalizer_ == 0.03 and cox.validation_scores_ == {}
    assert cox.n_train_ == 200 and cox.n_available_ == 500
    Xv, dv, ev = _snapshots(300, 7)
    single = CoxBaseline(0.05).fit(X, d, e, Xv, dv, ev)  # nothing to choose, but the validation rows are used
    assert single.penalizer_ == 0.05 and single.validation_scores_ == {} and single.n_train_ == 800


@pytest.mark.parametrize("grid", [(), (-0.1, 0.1)])
def test_bad_penalizer_grid_is_refused(grid) -> None:
    with pytest.raises(ValueError, match="penalizers"):
        CoxBaseline(grid)


def test_no_close_among_the_validation_rows_is_a_clear_error() -> None:
    X, d, e = _snapshots(300, 3)
    Xv, dv, _ = _snapshots(100, 4)
    with pytest.raises(ValueError, match="no conversion among the validation rows"):
        CoxBaseline((0.01, 0.1)).fit(X, d, e, Xv, dv, np.zeros(100, dtype=bool))


def test_a_fit_that_does_not_converge_is_skipped_and_the_next_best_is_refitted(monkeypatch) -> None:
    X, d, e = _snapshots(600, 5)
    Xv, dv, ev = _snapshots(300, 6)
    real_fit = CoxBaseline._fit_one
    full = CoxBaseline((0.01, 0.1, 1.0)).fit(X, d, e, Xv, dv, ev)
    best, second = sorted(full.validation_scores_, key=full.validation_scores_.get, reverse=True)[:2]

    def flaky(frame, penalizer, start=None):
        if penalizer == 1.0 or (penalizer == best and len(frame) == 900):  # diverges; the refit of the best too
            raise ValueError(f"Cox baseline: Newton-Raphson did not converge at penalizer {penalizer:g}")
        return real_fit(frame, penalizer, start)

    monkeypatch.setattr(CoxBaseline, "_fit_one", staticmethod(flaky))
    cox = CoxBaseline((0.01, 0.1, 1.0)).fit(X, d, e, Xv, dv, ev)
    assert cox.validation_scores_[1.0] == -np.inf
    expected = second if second != 1.0 else next(p for p in (0.01, 0.1) if p != best)
    assert cox.penalizer_ == expected and cox.n_train_ == 900
    monkeypatch.setattr(CoxBaseline, "_fit_one", staticmethod(lambda frame, penalizer, start=None: flaky(frame, 1.0)))
    with pytest.raises(ValueError, match="no penalizer .* converged"):
        CoxBaseline((0.01, 0.1, 1.0)).fit(X, d, e, Xv, dv, ev)
