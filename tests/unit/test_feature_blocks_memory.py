"""The event kernels get a bounded number of events per call, not only a bounded number of (lead, as_of) pairs:
with one snapshot per lead (the scoring frame of `forecast` and `rescore`, the recalibration's dates) a block of
50,000 leads went to the kernels whole, 2.6M events of a 200k-lead CRM at about 300 bytes each (0.8 GB)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import features.build
from features.build import lead_feature_matrix
from features.snapshots import to_ns
from features.spec import FeatureConfig, FeatureSpec
from leadscore.synth import SynthConfig, generate
from tests.allocation import allocation_peak


@pytest.fixture(scope="module")
def crm():
    return generate(SynthConfig(n_leads=1500, seed=1)).to_crm()


def test_a_block_goes_to_the_kernels_in_slices_of_bounded_events_with_the_same_features(
        crm, monkeypatch: pytest.MonkeyPatch) -> None:
    """Allocation peak 7.7 MB in 8 slices, 24.7 MB with the block's 78,909 events in one call; the same values."""
    spec = FeatureSpec(FeatureConfig()).fit(crm)  # one block: 1,500 leads, 78,909 events
    leads = np.arange(len(crm.leads))
    as_of = np.full(leads.size, to_ns(pd.DatetimeIndex([crm.events["occurred_at"].max()]))[0])
    monkeypatch.setattr(features.build, "BLOCK_EVENTS", 10**12)  # pairs alone bound a call (as before)
    whole, whole_peak = allocation_peak(lead_feature_matrix, crm, spec, leads, as_of)
    monkeypatch.setattr(features.build, "BLOCK_EVENTS", len(crm.events) // 8)
    sliced, sliced_peak = allocation_peak(lead_feature_matrix, crm, spec, leads, as_of)
    np.testing.assert_array_equal(sliced, whole)  # a lead's values do not depend on the other leads of its call
    assert sliced_peak < 0.5 * whole_peak, (sliced_peak, whole_peak)
