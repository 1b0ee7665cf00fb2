"""The optional Optuna search: bounded by trials and seconds, tuned on the validation slice (or
inside the training folds) only, its best parameters reported in the run's metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.schema import FlatData
from tests.training_frames import FrameSet, snapshot_frame
from training.config import BoosterConfig, SearchConfig, TrainingConfig
from training.model import search_booster
from training.sales_readiness import train_and_evaluate, train_and_evaluate_flat

BOOSTER = BoosterConfig(max_rounds=40, early_stopping_rounds=10, learning_rate=0.2)
SEARCH = SearchConfig(n_trials=3, timeout_seconds=60, max_num_leaves=7, max_depth=3)
CONFIG = TrainingConfig(booster=BOOSTER, search=SEARCH, bootstrap_samples=0, make_plots=False)


@pytest.fixture(scope="module")
def frame():
    frame = snapshot_frame(900, 30, seed=7)
    return frame[frame["converted_within_h"].notna()].drop(columns="true_probability").reset_index(drop=True)


def _shuffle_test_labels(frame, test_as_of_min):
    """The same frame with the labels of every row from ``test_as_of_min`` on permuted."""
    out = frame.copy()
    late = out["as_of"] >= test_as_of_min
    out.loc[late, "converted_within_h"] = np.random.default_rng(0).permutation(
        out.loc[late, "converted_within_h"].to_numpy())
    return out


def test_search_runs_within_budget_and_never_sees_the_test_slice(frame) -> None:
    result = train_and_evaluate(FrameSet(frame), CONFIG)
    search = result.split["search"]
    assert search["n_trials"] == SEARCH.n_trials
    assert 4 <= search["num_leaves"] <= SEARCH.max_num_leaves and 2 <= search["max_depth"] <= SEARCH.max_depth
    for name in ("num_leaves", "max_depth", "learning_rate", "min_data_in_leaf", "lambda_l2"):
        assert result.model.params_[name] == pytest.approx(search[name])
        assert result.metrics[f"search_{name}"] == pytest.approx(search[name])
    assert result.metrics["search_n_trials"] == SEARCH.n_trials
    assert any("Optuna search" in note for note in result.notes)
    # every trial is reported (what was tried), the best among them
    trials = search["trials"]
    assert [t["trial"] for t in trials] == list(range(SEARCH.n_trials))
    done = [t for t in trials if t["state"] == "complete"]
    assert max(t["valid_auc"] for t in done) == search["best_valid_auc"]
    best = next(t for t in done if t["valid_auc"] == search["best_valid_auc"])
    assert best["num_leaves"] == search["num_leaves"] and best["best_iteration"] == search["best_iteration"]
    assert not any("'trials':" in note for note in result.notes)  # the list is not printed whole...
    assert "complete" not in result.model_card  # ...nor in the card's split line
    from io import StringIO

    from training.tracking import search_trials_csv

    table = pd.read_csv(StringIO(search_trials_csv(result.split)))  # the run's evaluation/search_trials.csv
    assert len(table) == SEARCH.n_trials and {"state", "valid_auc", "best_iteration", "num_leaves"} <= set(table)
    assert search_trials_csv({"search": None}) is None

    # the test slice's labels play no part in the choice: permuting them changes nothing chosen
    test_start = result.predictions["as_of"].min()
    shuffled = train_and_evaluate(FrameSet(_shuffle_test_labels(frame, test_start)), CONFIG)
    assert shuffled.split["search"] == search
    assert shuffled.model.best_iteration_ == result.model.best_iteration_
    assert shuffled.metrics["roc_auc"] != result.metrics["roc_auc"]  # the test labels did change


def test_search_stops_at_its_time_budget_and_reports_as_it_goes(frame, monkeypatch) -> None:
    import training.model

    monkeypatch.setattr(training.model, "SEARCH_REPORT_SECONDS", 0.5)
    budget = SearchConfig(n_trials=10_000, timeout_seconds=3)
    said: list[str] = []
    result = train_and_evaluate(FrameSet(frame), CONFIG.model_copy(update={"search": budget}), progress=said.append)
    assert 1 <= result.split["search"]["n_trials"] < 10_000  # the 3 s budget, not the trial count, stopped it
    reports = [m for m in said if m.strip().startswith("search:")]
    assert reports and "of 10000 trials" in reports[-1] and "best validation AUC" in reports[-1]


def test_flat_search_is_nested_inside_the_training_folds(monkeypatch) -> None:
    import training.sales_readiness as sales_readiness

    searched: list[set[int]] = []  # the rows each search was given (its fit and early-stopping rows)

    def recording(X_fit, y_fit, X_stop, y_stop, *args, **kwargs):
        searched.append(set(X_fit.index) | set(X_stop.index))
        return search_booster(X_fit, y_fit, X_stop, y_stop, *args, **kwargs)

    monkeypatch.setattr(sales_readiness, "search_booster", recording)
    rng = np.random.default_rng(3)
    n = 900
    source = rng.choice(["web", "referral", "event"], n)
    visits = rng.poisson(3, n).astype(float)
    logit = -1.0 + 1.2 * (source == "referral") + 0.4 * (visits - 3)
    frame = {"lead_id": np.arange(n), "label": (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int),
             "source": source, "visits": visits}
    flat = FlatData(frame=pd.DataFrame(frame), categorical_features=["source"], numeric_features=["visits"],
                    families={"source": "fit", "visits": "engagement"})
    config = CONFIG.model_copy(update={"cv_folds": 3})
    result = train_and_evaluate_flat(flat, config)
    assert len(result.split["fold_searches"]) == 3  # one search per outer fold, on its training rows
    folds = result.predictions["fold"]
    assert len(searched) == 4  # the three folds' searches, then the final model's on every row
    for k in range(3):
        held = set(folds.index[folds == k])
        assert held and not searched[k] & held, k  # the held-out fold is never seen by its search...
        assert searched[k] | held == set(folds.index), k  # ...which has all the other rows
    assert searched[3] == set(folds.index)
    assert result.split["final_rounds"] == result.split["search"]["best_iteration"]
    assert result.model.params_["num_leaves"] == result.split["search"]["num_leaves"]
    assert result.metrics["roc_auc"] > 0.6


ENDLESS = BoosterConfig(max_rounds=3000, early_stopping_rounds=3000)  # a trial fits all 3000 rounds


def _timed_search(frame, timeout_seconds: float | None = None, n_trials: int = 100):
    """``search_booster`` over ENDLESS trials on the frame's train/validation slices: (best, summary, seconds)."""
    import time

    from training.evaluation import time_ordered_split
    from training.model import search_booster

    split = time_ordered_split(frame["as_of"], 14)
    X = frame.drop(columns=["lead_id", "as_of", "converted_within_h", "censored"])
    y = frame["converted_within_h"].to_numpy()
    search = SearchConfig(n_trials=n_trials, max_num_leaves=7, max_depth=3,
                          **({} if timeout_seconds is None else {"timeout_seconds": timeout_seconds}))
    began = time.monotonic()
    best, summary = search_booster(X.iloc[split.train], y[split.train], X.iloc[split.valid], y[split.valid],
                                   ENDLESS, search)
    return best, summary, time.monotonic() - began


def test_a_trial_still_fitting_when_the_seconds_run_out_is_stopped(frame) -> None:
    """The trial running at the deadline is stopped (pruned, or cut if it is the first): it does not run
    its 3000 rounds. States, not wall-clock times: those vary with the machine's load."""
    *_, one_trial = _timed_search(frame, n_trials=1)
    stopped = 0
    for share in (1.5, 2.3, 3.1):  # a deadline can fall between two trials (a short trial ending just before
        # it): the search then ends with no trial to stop; another budget puts it inside a trial
        _, summary, _ = _timed_search(frame, one_trial * share)
        states = [t["state"] for t in summary["trials"]]
        assert summary["n_trials"] < 100 and summary["n_stopped_at_budget"] <= 1, states
        assert states[:-1] == ["complete"] * (len(states) - 1)  # every trial before the deadline finished
        if summary["n_stopped_at_budget"]:
            assert states[-1] in ("pruned", "stopped at budget"), states  # the one at the deadline did not
            stopped += 1
            break
    assert stopped == 1


def test_the_first_trial_keeps_to_the_budget_too(frame) -> None:
    """A first trial that would outrun the seconds stops at its best round so far and is the search's result."""
    *_, one_trial = _timed_search(frame, n_trials=1)
    best, summary, _ = _timed_search(frame, one_trial * 0.3)
    assert summary["n_trials"] == 1 and summary["n_stopped_at_budget"] == 1
    assert summary["trials"][0]["state"] == "stopped at budget"
    assert 1 <= summary["best_iteration"] < 3000 and summary["best_valid_auc"] > 0.5
    assert best.num_leaves == summary["num_leaves"]
