"""The time-to-close run holds its features about once: no copy of the whole snapshot frame per step, no
design matrix of every training snapshot, no CRM data beside the fit (a 200k-lead CRM peaked at 8.7 GiB)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.build import build_training_set
from leadscore.synth import SynthConfig, generate
from tests.allocation import allocation_peak
from training.survival_baselines import CoxBaseline, CoxDesign, stacked_rows


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
