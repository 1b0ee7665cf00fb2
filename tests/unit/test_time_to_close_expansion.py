"""Period expansion, the LightGBM row sequence and the survival-curve arithmetic of the hazard model."""

from __future__ import annotations

import math

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from training.survival_config import TimeToCloseConfig
from training.time_to_close import (
    PeriodSequence,
    TimeToCloseModel,
    concat_period_rows,
    expand_periods,
    median_days,
    period_offsets,
    survival_at_days,
    survival_at_period_ends,
)


def _rows(durations, events, **kwargs):
    rows = expand_periods(np.array(durations, dtype=float), np.array(events), 7, 4, **kwargs)
    return list(zip(rows.row.tolist(), rows.period.tolist(), rows.label.tolist(), rows.weight.tolist(), strict=True))


def test_expansion_rules_by_hand() -> None:
    got = _rows([7.0, 7.5, 30.0, 10.0, 14.0, 0.0, 40.0], [1, 1, 1, 0, 0, 0, 0], censored_period_weight=0.5)
    assert got == [
        (0, 0, 1.0, 1.0),  # closes at day 7: period (0, 7]
        (1, 0, 0.0, 1.0), (1, 1, 1.0, 1.0),  # closes at 7.5: period 1
        (2, 0, 0.0, 1.0), (2, 1, 0.0, 1.0), (2, 2, 0.0, 1.0), (2, 3, 0.0, 1.0),  # closes past the horizon
        (3, 0, 0.0, 1.0), (3, 1, 0.0, 0.5),  # censored at 10: one full period + half of the censored one
        (4, 0, 0.0, 1.0), (4, 1, 0.0, 1.0),  # censored at 14: two full periods
        (6, 0, 0.0, 1.0), (6, 1, 0.0, 1.0), (6, 2, 0.0, 1.0), (6, 3, 0.0, 1.0),  # followed past the horizon
    ]  # row 5 (censored at 0) contributes nothing


def test_censored_period_can_be_dropped() -> None:
    assert _rows([10.0], [0], censored_period_weight=0.0) == [(0, 0, 0.0, 1.0)]


def test_subsampling_keeps_events_and_reweights() -> None:
    rng = np.random.default_rng(0)
    n = 20_000
    durations = rng.uniform(0, 200, n)
    events = rng.random(n) < 0.2
    full = expand_periods(durations, events, 7, 26)
    sampled = expand_periods(durations, events, 7, 26, max_nonevents_per_event=5, seed=1)
    assert full.sampling_rate == 1.0 and 0 < sampled.sampling_rate < 1
    assert sampled.n_full == len(full)
    assert sampled.label.sum() == full.label.sum()  # every event row kept
    non = sampled.label == 0
    assert non.sum() <= 5 * sampled.label.sum() * 1.05
    # the weighted non-event mass is preserved in expectation
    assert sampled.weight[non].sum() == pytest.approx(full.weight[full.label == 0].sum(), rel=0.02)
    budget = expand_periods(durations, events, 7, 26, max_rows=len(full) // 4, seed=1)
    assert len(budget) <= len(full) // 4 * 1.02


def test_expansion_chunks_do_not_change_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    import training.time_to_close as ttc

    rng = np.random.default_rng(2)
    durations, events = rng.uniform(0, 100, 999), rng.random(999) < 0.3
    whole = expand_periods(durations, events, 7, 10)
    monkeypatch.setattr(ttc, "EXPANSION_CHUNK", 100)
    chunked = expand_periods(durations, events, 7, 10)
    for a, b in zip((whole.row, whole.period, whole.label, whole.weight),
                    (chunked.row, chunked.period, chunked.label, chunked.weight), strict=True):
        np.testing.assert_array_equal(a, b)


def test_bad_outcomes_are_named() -> None:
    with pytest.raises(ValueError, match=r"bad rows \[1\]"):
        expand_periods(np.array([1.0, -1.0]), np.array([0, 1]), 7, 4)
    with pytest.raises(ValueError, match="events must be 0/1"):
        expand_periods(np.array([1.0, 2.0]), np.array([0, 3]), 7, 4)


def test_period_sequence_gathers_rows() -> None:
    base = np.arange(12, dtype=np.float32).reshape(4, 3)
    rows = expand_periods(np.array([20.0, 3.0, 8.0, 0.0]), np.array([0, 1, 1, 0]), 7, 4)
    seq = PeriodSequence(base, rows, batch_size=2)
    dense = np.column_stack([base[rows.row], rows.period])
    np.testing.assert_array_equal(seq[0 : len(seq)], dense)
    np.testing.assert_array_equal(seq[3], dense[3])
    assert seq[3].dtype == np.float64  # LightGBM's bin sampling insists on doubles


def test_survival_arithmetic_by_hand() -> None:
    hazards = np.array([[0.1, 0.2], [0.3, 0.5]])
    np.testing.assert_allclose(survival_at_period_ends(hazards), [[1, 0.9, 0.72], [1, 0.7, 0.35]])
    s = survival_at_days(hazards, 7, [0, 3.5, 7, 10.5, 14])
    np.testing.assert_allclose(s[0], [1, math.sqrt(0.9), 0.9, 0.9 * math.sqrt(0.8), 0.72])
    med = median_days(hazards, 7)
    assert np.isnan(med[0])  # 0.72 > 1/2 at the horizon: beyond it
    assert med[1] == pytest.approx(7 * (1 + math.log(0.5 / 0.7) / math.log(0.5)))
    assert survival_at_days(hazards[1:], 7, [med[1]])[0, 0] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="model horizon"):
        survival_at_days(hazards, 7, [15])


def test_sequence_fit_equals_dense_fit() -> None:
    """The memory-aware path (Sequence) trains exactly the booster a dense matrix would."""
    rng = np.random.default_rng(3)
    n = 3000
    X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.integers(0, 5, n).astype(float),
                      "c": pd.Categorical(rng.choice(["x", "y", "z"], n))})
    rate = np.exp(-4 + X["a"].to_numpy())
    durations = np.minimum(rng.exponential(1 / rate), rng.uniform(10, 150, n))
    events = durations < 150
    config = TimeToCloseConfig(max_periods=20, horizons_days=(30, 60), nonevent_rows_per_event=None,
                               linear_base=False)
    model = TimeToCloseModel(config).fit(X, durations, events, num_boost_round=20)
    rows = expand_periods(durations, events, 7, 20, 0.5)
    dense = np.column_stack([model.encode(X)[rows.row], rows.period]).astype(np.float32)
    cat = [2]
    booster = lgb.train(model.params_, lgb.Dataset(dense, label=rows.label, weight=rows.weight,
                                                   categorical_feature=cat, params=model.params_), 20)
    probe = np.column_stack([model.encode(X[:200]), np.full(200, 3.0)]).astype(np.float32)
    np.testing.assert_allclose(model.booster_.predict(probe), booster.predict(probe), rtol=1e-10)
    assert model.predict_hazard(X[:200])[:, 3] == pytest.approx(booster.predict(probe), rel=1e-10)


def test_linear_base_is_the_starting_margin(tmp_path) -> None:
    """With a linear base, logit h = linear margin + trees; without trees' help it already ranks."""
    from scipy.special import logit

    rng = np.random.default_rng(8)
    n = 4000
    X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.exponential(3, n),
                      "c": pd.Categorical(rng.choice(["x", "y", "z"], n))})
    rate = np.exp(-4.5 + 0.8 * X["a"].to_numpy())
    durations = np.minimum(rng.exponential(1 / rate), rng.uniform(20, 150, n))
    events = durations < 150
    config = TimeToCloseConfig(max_periods=20, horizons_days=(30, 60))
    model = TimeToCloseModel(config).fit(X, durations, events, X[:1000], durations[:1000], events[:1000])
    linear = model.linear_
    assert linear is not None and linear.c in config.linear_c_grid and linear.validation_losses
    assert linear.coef[linear.design.columns_.index("a")] > 0.3  # the real effect, standardised
    trees = np.stack([model.booster_.predict(np.column_stack([model.encode(X[:50]), np.full(50, k)]).astype(
        np.float32), raw_score=True, num_iteration=model.best_iteration_) for k in range(20)], axis=1)
    np.testing.assert_allclose(logit(model.predict_hazard(X[:50])), trees + linear.margins(X[:50]), rtol=1e-9)
    loaded = TimeToCloseModel.load(model.save(tmp_path / "m"))
    np.testing.assert_allclose(loaded.predict_hazard(X[:50]), model.predict_hazard(X[:50]), rtol=1e-12)
    assert model.predict_close_probability(X.assign(a=2.0)[:1], 60)[0] > model.predict_close_probability(
        X.assign(a=-2.0)[:1], 60)[0]


def test_load_names_the_folder_when_model_json_is_broken(tmp_path) -> None:
    """A damaged ``model.json`` said only ``KeyError: 'config'`` (or a bare JSON / attribute error); it now
    gets the sales-readiness loader's errors, naming the folder and the file."""
    import json
    import re

    rng = np.random.default_rng(2)
    X = pd.DataFrame({"a": rng.normal(size=600)})
    durations = rng.uniform(1, 60, 600)
    events = rng.random(600) < 0.5
    folder = TimeToCloseModel(TimeToCloseConfig(max_periods=4, horizons_days=(14,))).fit(
        X, durations, events, num_boost_round=5).save(tmp_path / "m")
    meta = json.loads((folder / "model.json").read_text())
    for text, needle in (("{", "model.json is not JSON"), ("[1]", "model.json is not a JSON object"),
                         (json.dumps({k: meta[k] for k in ("kind", "format_version")}), re.escape("lacks ['config'")),
                         (json.dumps({**meta, "kind": "sales_readiness"}), "not a time_to_close model")):
        (folder / "model.json").write_text(text)
        with pytest.raises(ValueError, match=needle) as info:
            TimeToCloseModel.load(folder)
        assert str(folder) in str(info.value)


def test_period_offsets_recalibrate_each_period_and_shrink_towards_a_common_shift() -> None:
    """Free offsets (strength 0) match every period's weighted close rate; a huge strength leaves one
    common shift that matches the overall rate; in between, a period moves part of the way."""
    from scipy.special import expit, logit

    rng = np.random.default_rng(5)
    durations = rng.uniform(1, 40, 20_000)
    events = rng.random(20_000) < 0.6
    rows = expand_periods(durations, events, 7, 6, 0.5)
    hazards = np.full(len(rows), 0.05)
    free = period_offsets(hazards, rows, 6, 0.0)
    w, y, k = rows.weight.astype(float), rows.label.astype(float), rows.period.astype(int)
    rate = np.bincount(k, w * y, 6) / np.bincount(k, w, 6)
    np.testing.assert_allclose(expit(logit(0.05) + free), rate, rtol=1e-6)
    common = period_offsets(hazards, rows, 6, 1e9)
    assert np.ptp(common) < 1e-3
    assert expit(logit(0.05) + common[0]) == pytest.approx(np.average(y, weights=w), rel=1e-3)
    some = period_offsets(hazards, rows, 6, 30.0)
    assert (np.diff(free) > 0).all() and (np.diff(some) > 0).all()  # the rates rise with the period here
    assert np.ptp(common) < np.ptp(some) < np.ptp(free)  # shrunk, not flattened


def test_concat_period_rows_shifts_the_second_slice() -> None:
    a = expand_periods(np.array([10.0, 3.0]), np.array([1, 0]), 7, 4)
    b = expand_periods(np.array([20.0]), np.array([1]), 7, 4)
    both = concat_period_rows(a, b, 2)
    assert both.row.tolist() == [*a.row.tolist(), 2, 2, 2]
    assert both.label.tolist() == [*a.label.tolist(), *b.label.tolist()]
    assert both.n_full == a.n_full + b.n_full and len(both) == len(a) + len(b)


def test_refit_and_recalibration_keep_the_hazard_convention() -> None:
    """Refitted on train + validation leads, the linear part keeps its design and penalty, learns from
    the validation leads (its coefficients move), and the hazard is still expit(trees + linear margins)."""
    from scipy.special import logit

    rng = np.random.default_rng(9)
    n = 4000
    X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.exponential(3, n)})
    rate = np.exp(-4.5 + 0.8 * X["a"].to_numpy())
    durations = np.minimum(rng.exponential(1 / rate), rng.uniform(20, 150, n))
    events = durations < 150
    config = TimeToCloseConfig(max_periods=20, horizons_days=(30, 60), recalibration_strength=30.0)
    fit = dict(X=X[:3000], durations=durations[:3000], events=events[:3000], X_valid=X[3000:],
               durations_valid=durations[3000:], events_valid=events[3000:])
    plain = TimeToCloseModel(config.model_copy(update={"linear_refit": False, "recalibration_strength": None})).fit(**fit)
    model = TimeToCloseModel(config).fit(**fit)
    assert model.linear_.design is not None and model.linear_.c == plain.linear_.c
    assert model.linear_.design.columns_ == plain.linear_.design.columns_
    assert not np.allclose(model.linear_.coef, plain.linear_.coef)
    assert model.period_offsets_.shape == (20,) and np.isfinite(model.period_offsets_).all()
    assert not np.allclose(model.period_offsets_, 0.0)
    trees = np.stack([model.booster_.predict(np.column_stack([model.encode(X[:50]), np.full(50, k)]).astype(
        np.float32), raw_score=True, num_iteration=model.best_iteration_) for k in range(20)], axis=1)
    np.testing.assert_allclose(logit(model.predict_hazard(X[:50])), trees + model.linear_.margins(X[:50]), rtol=1e-9)


def test_recalibration_after_the_refit_matches_the_validation_close_rate() -> None:
    """The recalibration's common shift is free, so the fitted model (trees + refitted linear part +
    offsets) predicts as many closes on the validation period rows as they hold. The offsets must be
    fitted against the model they are added to: fitted against the linear part before its refit on
    the training + validation leads, the shift the refit already made was counted twice."""
    from training.time_to_close import expand_periods as expand

    rng = np.random.default_rng(11)
    n = 4000
    X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.exponential(3, n)})
    level = np.where(np.arange(n) < 3000, -4.5, -3.5)  # the validation leads close faster: the refit moves the level
    rate = np.exp(level + 0.8 * X["a"].to_numpy())
    durations = np.minimum(rng.exponential(1 / rate), rng.uniform(20, 150, n))
    events = durations < 150
    config = TimeToCloseConfig(max_periods=20, horizons_days=(30, 60), recalibration_strength=30.0,
                               nonevent_rows_per_event=None)
    model = TimeToCloseModel(config).fit(X[:3000], durations[:3000], events[:3000], X[3000:], durations[3000:],
                                         events[3000:])
    rows = expand(durations[3000:], events[3000:], 7, 20, config.censored_period_weight)
    hazard = model.predict_hazard(X[3000:])[rows.row, rows.period]
    predicted, observed = float(np.sum(rows.weight * hazard)), float(np.sum(rows.weight * rows.label))
    assert predicted == pytest.approx(observed, rel=1e-3)
