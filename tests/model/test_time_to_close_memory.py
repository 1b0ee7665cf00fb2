"""The time-to-close run holds its features about once: no copy of the whole snapshot frame per step, no
design matrix of every training snapshot, no CRM data beside the fit (a 200k-lead CRM peaked at 8.7 GiB)."""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.build import build_training_set
from features.contract import DataConfig, SourceConfig
from features.schema import CRMData
from leadscore.project import ProjectConfig
from leadscore.synth import SynthConfig, generate, write_synthetic
from tests.allocation import allocation_peak
from training.survival_baselines import CoxBaseline, CoxDesign, stacked_rows
from training.survival_config import TimeToCloseConfig
from training.survival_evaluation import censor_at, survival_split, train_and_evaluate_time_to_close
from training.time_to_close import expand_periods
from training.tracking import tracking_target
from training.workflow import train_time_to_close_project

FIT_STARTS = "fitting the LightGBM hazard"


class Stop(Exception):
    """Ends a run once the test has looked at it."""


@pytest.fixture(scope="module")
def training_set():
    return build_training_set(generate(SynthConfig(n_leads=1500, seed=3)).to_crm())


@pytest.fixture(scope="module")
def features(training_set) -> pd.DataFrame:
    return training_set.frame[training_set.spec.columns_]


def _design_bytes(design: CoxDesign, rows: int) -> int:
    return rows * len(design.columns_) * 8


def test_cox_design_statistics_are_those_of_the_whole_design(features) -> None:
    """Kept columns, means and scales are those of the design built for every row at once, bit for bit."""
    design = CoxDesign().fit(features)
    whole = design._raw(features)
    std = whole.std(ddof=0)
    assert design.columns_ == [c for c in whole.columns if std[c] > 1e-12]
    assert design.mean_.to_numpy().tobytes() == whole[design.columns_].mean().to_numpy().tobytes()
    assert design.scale_.to_numpy().tobytes() == whole[design.columns_].std(ddof=0).to_numpy().tobytes()
    assert list(design.mean_.index) == list(design.scale_.index) == design.columns_


def test_cox_design_fit_holds_one_column_at_a_time(features) -> None:
    """Fitting the design (the linear base's, on every training snapshot) allocates a few columns, not the
    design of every row (it was held twice: ~0.8 GB each at 766k training snapshots of a 200k-lead CRM)."""
    design, peak = allocation_peak(CoxDesign().fit, features)
    assert peak < 0.25 * _design_bytes(design, len(features))


def test_the_cox_peer_copies_only_the_rows_it_samples(features) -> None:
    """With a row budget the Cox peer copies out of the training and validation slices only the rows it fits
    on (it concatenated both slices whole first: 959k snapshots at a 200k-lead CRM for a 200k sample)."""
    rows = pd.concat([features] * 8, ignore_index=True)  # the slices outweigh lifelines' fit on 500 rows
    rng = np.random.default_rng(0)
    n = len(rows)
    durations = rng.uniform(1, 200, n)
    events = rng.random(n) < 0.3
    half = n // 2
    X, X_valid = rows.iloc[:half], rows.iloc[half:]
    peer = CoxBaseline(penalizers=0.01, max_rows=500, seed=1)
    _, peak = allocation_peak(peer.fit, X, durations[:half], events[:half], X_valid, durations[half:],
                              events[half:])
    assert peer.n_train_ == 500
    assert peak < 0.5 * int(rows.memory_usage(deep=True).sum())


def test_stacked_rows_are_the_rows_of_both_slices(features) -> None:
    """``stacked_rows`` is ``pd.concat([first, second], ignore_index=True).iloc[positions]`` with a fresh index."""
    first, second = features.iloc[:5000], features.iloc[5000:]
    positions = np.sort(np.random.default_rng(2).choice(len(features), 700, replace=False))
    expected = pd.concat([first, second], ignore_index=True).iloc[positions].reset_index(drop=True)
    pd.testing.assert_frame_equal(stacked_rows(first, second, positions), expected)
    pd.testing.assert_frame_equal(stacked_rows(features, None, positions),
                                  features.iloc[positions].reset_index(drop=True))


def test_the_fit_slices_are_copied_once(training_set) -> None:
    """When the hazard's fit starts, the run holds one copy of the slices' features beside the training set
    (it held a copy of the whole frame, one of its features and then the slices)."""
    frame = training_set.frame
    config = TimeToCloseConfig(make_plots=False)
    split = survival_split(frame["as_of"], frame["lead_id"], training_set.data_end, config)
    used = np.concatenate([split.train, split.valid, split.test])
    slices_bytes = int(frame[training_set.spec.columns_].iloc[used].memory_usage(deep=True).sum())
    held: list[int] = []

    def look(message: str) -> None:
        if message == FIT_STARTS:
            held.append(tracemalloc.get_traced_memory()[0])
            raise Stop

    gc.collect()
    tracemalloc.start()
    try:
        with pytest.raises(Stop):
            train_and_evaluate_time_to_close(training_set, config, progress=look)
    finally:
        tracemalloc.stop()
    assert held and held[0] < 1.25 * slices_bytes


def test_the_time_to_close_run_lets_the_crm_data_go(tmp_path: Path) -> None:
    """The CRM tables (the events: 10.5M rows at 200k leads) are let go once the snapshots are built: the
    hazard and its peers only read the training set."""
    write_synthetic(SynthConfig(n_leads=1500, seed=3), str(tmp_path), "parquet", overwrite=True)
    source = SourceConfig(kind="parquet", leads=str(tmp_path / "leads.parquet"),
                          events=str(tmp_path / "events.parquet"), outcomes=str(tmp_path / "outcomes.parquet"))
    project = ProjectConfig(name="ttc-memory", data=DataConfig(source=source),
                            time_to_close=TimeToCloseConfig(make_plots=False))
    alive: list[int] = []

    def crm_objects() -> int:
        gc.collect()
        return sum(isinstance(o, CRMData) for o in gc.get_objects())

    def look(message: str) -> None:
        if message == FIT_STARTS:
            alive.append(crm_objects())
            raise Stop

    before = crm_objects()  # other tests of this process may hold CRMs of their own (module fixtures)
    with pytest.raises(Stop):
        train_time_to_close_project(project, tracking_target(None, tmp_path), progress=look)
    assert len(alive) == 1 and alive[0] <= before


def _traced_between(training_set, config: TimeToCloseConfig, first: str) -> int:
    """Peak bytes allocated from the progress line ``first`` of a run to the line after it."""
    peaks: list[int] = []

    def look(message: str) -> None:
        if tracemalloc.is_tracing():
            peaks.append(tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()
            raise Stop
        if message == first:
            gc.collect()
            tracemalloc.start()

    try:
        with pytest.raises(Stop):
            train_and_evaluate_time_to_close(training_set, config, progress=look)
    finally:
        if tracemalloc.is_tracing():
            tracemalloc.stop()
    assert len(peaks) == 1
    return peaks[0]


def test_the_linear_refit_copies_no_slice() -> None:
    """Refitting the linear base on the training and validation leads copies out of the slices only the
    snapshots its sampled period rows use (it copied both slices' features, then stacked the copies); 4,000
    leads, so that the slices outweigh the design of the 1,000 sampled period rows."""
    training_set = build_training_set(generate(SynthConfig(n_leads=4000, seed=3)).to_crm())
    frame = training_set.frame
    config = TimeToCloseConfig(make_plots=False, linear_max_rows=1000)
    split = survival_split(frame["as_of"], frame["lead_id"], training_set.data_end, config)
    fit_bytes = int(frame[training_set.spec.columns_].iloc[split.fit].memory_usage(deep=True).sum())
    peak = _traced_between(training_set, config, "refitting the linear base on the training and validation leads")
    assert peak < 0.5 * fit_bytes


def test_the_recalibration_scores_the_validation_rows_a_block_at_a_time(training_set, monkeypatch) -> None:
    """The per-period recalibration (``recalibration_strength``) scores the validation period rows a block at a
    time (it gathered every one of them with its features first: up to ``max_period_rows`` x features x 4
    bytes); the same offsets as scoring them all at once."""
    import training.time_to_close as ttc

    config = TimeToCloseConfig(make_plots=False, recalibration_strength=1.0)
    offsets: list[np.ndarray] = []
    period_offsets = ttc.period_offsets
    monkeypatch.setattr(ttc, "period_offsets", lambda *a, **k: offsets.append(period_offsets(*a, **k)) or offsets[-1])
    monkeypatch.setattr(ttc, "PREDICT_CHUNK", 500)
    frame = training_set.frame
    split = survival_split(frame["as_of"], frame["lead_id"], training_set.data_end, config)
    d, e = censor_at(frame["as_of"].iloc[split.valid], frame["days_observed"].to_numpy()[split.valid],
                     frame["event"].to_numpy()[split.valid], split.test_start)
    valid_rows = expand_periods(d, e, config.period_days, config.max_periods, config.censored_period_weight,
                                config.max_period_rows, config.seed + 1, config.nonevent_rows_per_event)
    dense_bytes = len(valid_rows) * (len(training_set.spec.columns_) + 1) * 4
    assert len(valid_rows) > 4 * 500
    peak = _traced_between(training_set, config, "recalibrating the per-period hazard on the validation leads")
    assert peak < 0.5 * dense_bytes
    monkeypatch.setattr(ttc, "PREDICT_CHUNK", 10**9)  # all at once: the same offsets
    _traced_between(training_set, config, "recalibrating the per-period hazard on the validation leads")
    assert len(offsets) == 2 and offsets[0].tobytes() == offsets[1].tobytes()
