"""Time-to-close fields from the sales-readiness feature matrix (serving.closing) and in the scoring core."""

from __future__ import annotations

import copy

import lightgbm as lgb
import numpy as np
import pytest
from scipy.special import expit

from features.build import scoring_matrix
from features.spec import LEAD_AGE
from serving.closing import ClosingCore, period_bins
from serving.core import CLOSING_FIELDS, ModelInfo, ScoringCore
from tests.serving_fixtures import AS_OF, train_small_champion, train_small_time_to_close
from training.close_curves import combine_close_curves, cumulative_close, days_to_reach
from training.time_to_close import median_days, survival_at_days

N_LEADS, SEED = 800, 3


@pytest.fixture(scope="module")
def champion():
    return train_small_champion(n_leads=N_LEADS, seed=SEED)


@pytest.fixture(scope="module")
def closing_model():
    return train_small_time_to_close(n_leads=N_LEADS, seed=SEED)


@pytest.fixture(scope="module")
def rows(champion):
    ids, matrix = scoring_matrix(champion.crm, champion.model.spec_, AS_OF, eligible_only=False)
    return ids[:200], matrix[:200]


def test_hazards_equal_the_models_own_prediction(champion, closing_model, rows) -> None:
    assert closing_model.linear_ is not None  # the compiled linear base is exercised
    _, matrix = rows
    closing = ClosingCore(closing_model, champion.model.spec_)
    expected = closing_model.predict_hazard(champion.model.spec_.to_frame(matrix))
    np.testing.assert_allclose(closing.hazards(matrix), expected, rtol=1e-6, atol=1e-9)
    assert expected.std() > 0  # leads differ
    # the booster splits on the period: some periods share a bin, others do not (both paths exercised)
    assert 2 < len(closing.period_values) < closing.periods


def test_hazards_with_lead_age_bands_equal_the_models_own_prediction(champion) -> None:
    """``time_to_close.linear_age_bands``: the served hazards take each lead's band shape as the model does."""
    model = train_small_time_to_close(n_leads=N_LEADS, seed=SEED, linear_age_bands=(90.0, 180.0))
    assert model.linear_.band_column == LEAD_AGE and np.abs(model.linear_.band_coef).max() > 0
    _, matrix = scoring_matrix(champion.crm, champion.model.spec_, AS_OF, eligible_only=False)
    closing = ClosingCore(model, champion.model.spec_)
    frame = champion.model.spec_.to_frame(matrix)
    bands = len(model.linear_.band_edges) + 1  # bands with too few closes were merged
    assert bands >= 2 and np.bincount(model.linear_.bands(frame), minlength=bands).min() > 0  # each one served
    np.testing.assert_allclose(closing.hazards(matrix), model.predict_hazard(frame), rtol=1e-6, atol=1e-9)


BATCH, REQUEST = 1_037, 50  # leads in a batch (a rescore partition, a large request); in a request


@pytest.fixture(scope="module")
def many_rows(champion) -> np.ndarray:
    """A batch of leads: every lead at AS_OF, repeated."""
    _, matrix = scoring_matrix(champion.crm, champion.model.spec_, AS_OF, eligible_only=False)
    return np.tile(matrix, (-(-BATCH // len(matrix)), 1))[:BATCH]


@pytest.fixture
def booster_rows(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of rows of each ``Booster.predict`` call made while a test runs."""
    rows: list[int] = []
    predict = lgb.Booster.predict

    def counting(self, data, *args, **kwargs):
        rows.append(len(data))
        return predict(self, data, *args, **kwargs)

    monkeypatch.setattr(lgb.Booster, "predict", counting)
    return rows


def test_a_batch_walks_each_leads_trees_once_with_lightgbms_margins(champion, closing_model, many_rows,
                                                                   booster_rows) -> None:
    """A batch handed LightGBM one row per lead and period bin (on the 200k-lead CRM's champion, 362 trees
    walked for each of a lead's period bins); it takes the booster's tree arrays now
    (:mod:`training.period_margins`), with the margins ``Booster.predict`` gives on every (lead, period) row,
    bit for bit. A request's few leads still go to LightGBM."""
    assert closing_model.period_trees() is not None
    closing = ClosingCore(closing_model, champion.model.spec_)
    assert len(closing.period_values) > 2  # the booster splits on the period
    booster_rows.clear()
    hazards = closing.hazards(many_rows)
    assert booster_rows == []
    base = closing.encode(many_rows)
    rows = np.empty((BATCH, base.shape[1] + 1), dtype=np.float32)
    rows[:, :-1] = base
    raw = np.empty((BATCH, closing.periods))
    for k in range(closing.periods):
        rows[:, -1] = k
        raw[:, k] = closing_model.booster_.predict(rows, raw_score=True, num_iteration=closing_model.best_iteration_)
    raw += closing.linear.snapshot_margin(base)[:, None] + closing.linear.period_margins(base)
    assert hazards.tobytes() == expit(raw).tobytes()
    booster_rows.clear()
    closing.hazards(many_rows[:REQUEST])
    assert sum(booster_rows) == REQUEST * len(closing.period_values)


def test_period_bins_group_periods_between_thresholds() -> None:
    values, bin_of = period_bins(8, np.array([1.5, 1.7, 4.0]))
    assert values.tolist() == [0.0, 1.0, 2.0, 5.0]  # 0 alone; 1; 2-4 (4 <= 4.0 goes left); 5-7
    assert bin_of.tolist() == [0, 1, 2, 2, 2, 3, 3, 3]


def test_own_curve_without_a_readiness_probability(champion, closing_model, rows) -> None:
    _, matrix = rows
    closing = ClosingCore(closing_model, champion.model.spec_)
    summary = closing.summary(matrix)
    hazards = closing.hazards(matrix)
    curve = survival_at_days(hazards, closing.period_days, [30, 60, 90])
    for j, days in enumerate((30, 60, 90)):
        np.testing.assert_allclose(summary[f"p_close_{days}d"], 1 - curve[:, j], atol=1e-12)
    np.testing.assert_allclose(summary["median_days"], median_days(hazards, 7.0), equal_nan=True)
    assert closing.summary(matrix[:0])["p_close_90d"].shape == (0,)


def test_curve_agrees_with_the_readiness_probability(champion, closing_model, rows) -> None:
    """p_close at the readiness horizon is the calibrated probability; the median is where F = 1/2."""
    _, matrix = rows
    closing = ClosingCore(closing_model, champion.model.spec_)
    p = np.linspace(0.01, 0.9, len(matrix))  # wide enough that some medians fall inside the horizon
    summary = closing.summary(matrix, p, 90)
    np.testing.assert_array_equal(summary["p_close_90d"], p)  # equal, as documented (was off by ~1e-17)
    assert (summary["p_close_30d"] <= summary["p_close_60d"] + 1e-12).all()
    assert (summary["p_close_60d"] <= summary["p_close_90d"] + 1e-12).all()
    hazards = closing.hazards(matrix)
    median = summary["median_days"]
    found = ~np.isnan(median)
    assert found.any() and (median[p >= 0.5] <= 90 + 1e-9).all()
    at_h = cumulative_close(hazards, 7.0, [90.0])[:, 0]
    for i in np.flatnonzero(found)[::7]:
        f = combine_close_curves(cumulative_close(hazards[i:i + 1], 7.0, [median[i]]), at_h[i:i + 1], p[i:i + 1],
                                 np.array([median[i]]), 90.0)
        assert f[0, 0] == pytest.approx(0.5, abs=1e-9)
    # beyond the hazard model's horizon: the curve stays below 1/2 there
    far = closing.horizon_days
    for i in np.flatnonzero(~found)[:5]:
        f = combine_close_curves(cumulative_close(hazards[i:i + 1], 7.0, [far]), at_h[i:i + 1], p[i:i + 1],
                                 np.array([far]), 90.0)
        assert f[0, 0] < 0.5


def test_days_to_reach_inverts_the_curve() -> None:
    hazards = np.array([[0.1, 0.2, 0.3], [0.0, 0.0, 0.0]])
    days = days_to_reach(hazards, 7.0, np.array([0.25, 0.1]))
    assert np.isnan(days[1])  # never closes
    f = cumulative_close(hazards[:1], 7.0, [days[0]])[0, 0]
    assert f == pytest.approx(0.25, abs=1e-12) and 7.0 < days[0] < 14.0
    assert np.isnan(median_days(hazards[:1], 7.0)[0])  # S(21) = 0.504: the median is beyond the horizon
    steep = np.array([[0.3, 0.4, 0.5]])
    median = median_days(steep, 7.0)[0]  # the curve at 1/2
    assert 7.0 < median < 14.0 and cumulative_close(steep, 7.0, [median])[0, 0] == pytest.approx(0.5, abs=1e-12)


def test_other_category_codes_are_mapped_by_text(champion, closing_model, rows) -> None:
    """A readiness spec whose vocabulary lists the levels in another order gives the same answers."""
    spec = champion.model.spec_
    _, matrix = rows
    column = next(c for c in closing_model.categories_ if len(spec.categorical_vocab_.get(c, [])) > 2)
    j = list(spec.columns_).index(column)
    shuffled = copy.deepcopy(spec)
    old = list(spec.categorical_vocab_[column])
    new = old[::-1]
    shuffled.categorical_vocab_[column] = new
    recoded = matrix.copy()
    known = ~np.isnan(matrix[:, j])
    recoded[known, j] = [new.index(old[int(code)]) for code in matrix[known, j]]
    assert not np.array_equal(recoded[known, j], matrix[known, j])
    np.testing.assert_allclose(ClosingCore(closing_model, shuffled).hazards(recoded),
                               ClosingCore(closing_model, spec).hazards(matrix), rtol=1e-12)


def test_a_model_needing_columns_the_spec_lacks_is_refused(champion, closing_model) -> None:
    other = copy.copy(closing_model)
    other.feature_columns_ = [*closing_model.feature_columns_, "seats_bought"]
    with pytest.raises(ValueError, match="seats_bought"):
        ClosingCore(other, champion.model.spec_)


def test_a_model_of_other_feature_settings_is_refused(champion, closing_model) -> None:
    """Same columns, other values: a hazard model built with another half-life would get the readiness
    model's decayed counts, unlike its training ones."""
    other = copy.copy(closing_model)
    other.spec_ = copy.deepcopy(closing_model.spec_)
    other.spec_.config = other.spec_.config.model_copy(update={"half_life_days": 7.0, "horizon_days": 30.0})
    with pytest.raises(ValueError, match=r"different feature settings \(half_life_days 14\.0 vs 7\.0\)"):
        ClosingCore(other, champion.model.spec_)
    other.spec_.config = other.spec_.config.model_copy(update={"half_life_days": 14.0})  # the horizon is no value
    ClosingCore(other, champion.model.spec_)


def test_scoring_core_answers_with_and_without_time_to_close(champion, closing_model, rows) -> None:
    ids, matrix = rows
    plain = ScoringCore(champion.model, ModelInfo("lead-conversion", "7"))
    both = ScoringCore(champion.model, ModelInfo("lead-conversion", "7"),
                       closing=(closing_model, ModelInfo("lead-time-to-close", "2")))
    alone, paired = plain.score_matrix(ids, matrix, 3), both.score_matrix(ids, matrix, 3)
    np.testing.assert_array_equal(alone.probability, paired.probability)
    record = paired.to_records()[0]
    assert set(CLOSING_FIELDS) <= set(record) and not set(CLOSING_FIELDS) & set(alone.to_records()[0])
    assert 0 <= record["p_close_30d"] <= record["p_close_90d"] <= 1
    np.testing.assert_array_equal(paired.closing["p_close_90d"], paired.probability)  # 90-day horizon
    frame = paired.to_frame()
    assert (frame["time_to_close_version"] == "2").all() and frame["p_close_90d"].notna().all()
    assert alone.to_frame()["p_close_90d"].isna().all()
    assert both.describe_closing()["name"] == "lead-time-to-close" and plain.describe_closing() is None
    rebuilt = ScoringCore(**both.parts()).score_matrix(ids, matrix, 3)
    np.testing.assert_array_equal(rebuilt.closing["p_close_60d"], paired.closing["p_close_60d"])
