"""Time-ordered split of the time-to-close model: test after fit, outcomes censored at the cut, held-out leads."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.survival_config import TimeToCloseConfig
from training.survival_evaluation import EvaluationSettings, censor_at, survival_split

DATES = pd.date_range("2025-01-01", periods=12, freq="MS")


def _frame() -> pd.DataFrame:
    rows = [(lead, d) for d in DATES for lead in range(40)]
    return pd.DataFrame(rows, columns=["lead_id", "as_of"])


def test_split_orders_time_and_holds_out_leads() -> None:
    frame = _frame()
    config = TimeToCloseConfig(test_fraction=0.25, validation_fraction=0.25, seed=1)
    data_end = pd.Timestamp("2026-03-01")  # 90 days of follow-up reach as_of 2025-12-01
    split = survival_split(frame["as_of"], frame["lead_id"], data_end, config)
    test_dates = sorted(frame["as_of"].iloc[split.test].unique())
    assert [pd.Timestamp(d) for d in test_dates] == list(DATES[-3:])  # latest quarter of the followed dates
    assert split.test_start == DATES[-3]
    fit = frame.iloc[split.fit]
    assert (fit["as_of"] < split.test_start).all() and len(split.fit) + len(split.test) == len(frame)
    train_leads = set(frame["lead_id"].iloc[split.train])
    valid_leads = set(frame["lead_id"].iloc[split.valid])
    assert not train_leads & valid_leads and len(valid_leads) == 10


def test_short_follow_up_rows_stay_out_of_the_test() -> None:
    frame = _frame()
    split = survival_split(frame["as_of"], frame["lead_id"], pd.Timestamp("2025-11-15"), TimeToCloseConfig())
    assert frame["as_of"].iloc[split.test].max() <= pd.Timestamp("2025-11-15") - pd.Timedelta(days=90)
    assert split.n_short_follow_up == 40 * 4  # as_of 2025-09-01 .. 2025-12-01 (after 2025-08-17)


def test_too_short_history_is_a_clear_error() -> None:
    frame = _frame()
    with pytest.raises(ValueError, match="no snapshot is followed for 90 days"):
        survival_split(frame["as_of"], frame["lead_id"], pd.Timestamp("2025-01-15"), TimeToCloseConfig())


def test_censor_at_hides_outcomes_after_the_cut() -> None:
    as_of = pd.Series(pd.to_datetime(["2025-01-01", "2025-01-01", "2025-03-01", "2025-03-01"]))
    durations = np.array([10.0, 100.0, 5.0, 400.0])
    events = np.array([1, 1, 0, 0])
    d, e = censor_at(as_of, durations, events, pd.Timestamp("2025-04-01"))
    np.testing.assert_allclose(d, [10.0, 90.0, 5.0, 31.0])
    np.testing.assert_array_equal(e, [True, False, False, False])
    with pytest.raises(ValueError, match="after the cut"):
        censor_at(as_of, durations, events, pd.Timestamp("2025-02-01"))


def test_an_evaluation_horizon_below_every_reported_horizon_is_a_clear_error() -> None:
    """Test rows followed only ~20 days (min_follow_up_days short, strict min_censoring_survival): tau falls
    below 30 days, so no P(close within h) can be scored; a training run used to die on an empty
    calibration table ("No objects to concatenate")."""
    time = np.concatenate([np.full(90, 20.0), np.arange(1.0, 11.0)])
    event = np.concatenate([np.zeros(90), np.ones(10)])
    config = TimeToCloseConfig(min_follow_up_days=10, min_censoring_survival=0.5)
    with pytest.raises(ValueError, match=r"tau is 19 days, below every horizons_days \[30, 60, 90\].*"
                                         r"min_follow_up_days \(now 10\)"):
        EvaluationSettings.for_rows(time, event, config)
    settings = EvaluationSettings.for_rows(time, event, TimeToCloseConfig(horizons_days=(7, 14)))
    assert settings.horizons == [7, 14] and settings.tau == 19


def test_an_evaluation_horizon_set_below_every_reported_horizon_is_refused_with_the_config() -> None:
    """evaluation_horizon_days caps tau: set below every horizons_days it failed only after the model was
    fitted, blaming the test rows' follow-up ("raise min_follow_up_days") for the setting's choice."""
    with pytest.raises(ValueError, match=r"evaluation_horizon_days 20 is below every horizons_days \[30, 60, 90\]"):
        TimeToCloseConfig(evaluation_horizon_days=20)
    assert TimeToCloseConfig(evaluation_horizon_days=30).evaluation_horizon_days == 30
    assert TimeToCloseConfig(evaluation_horizon_days=20, horizons_days=(14,)).evaluation_horizon_days == 20


def test_a_crm_too_small_to_fit_says_how_many_closes_each_slice_holds() -> None:
    """300 synthetic leads (18 deals): the validation leads hold no close within the horizon. The error names
    the slice, counts the closes of every slice and says what would help (it was "validation slice: no
    conversion within the model horizon; cannot early-stop", raised from inside the fit)."""
    from features.build import build_training_set
    from features.spec import FeatureConfig
    from leadscore.synth import SynthConfig, generate
    from training.survival_evaluation import train_and_evaluate_time_to_close

    training_set = build_training_set(generate(SynthConfig(n_leads=300, seed=1)).to_crm(), FeatureConfig())
    with pytest.raises(ValueError) as caught:
        train_and_evaluate_time_to_close(training_set, TimeToCloseConfig(make_plots=False))
    message = " ".join(str(caught.value).split())
    assert message.startswith("the validation slice (280 snapshots of held-out leads, as of 2024-"), message
    assert "holds no close within the model horizon (182 days)" in message, message
    assert "closes within the horizon: 16 in training, 0 in validation" in message, message
    assert "time_to_close.validation_fraction (now 0.2) and test_fraction (now 0.2) move the cuts" in message, message
