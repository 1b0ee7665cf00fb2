"""The training frame holds its features once: built in place, the same frame as the matrix-then-frame
construction, in a bounded multiple of its own size."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pandas as pd
import pytest

from features.build import build_training_set, lead_feature_matrix
from features.schema import CRMData
from features.snapshots import LABEL, LeadHistory, as_of_dates, labels, resolve_data_end, snapshot_pairs
from features.spec import FeatureConfig, FeatureSpec
from leadscore.synth import SynthConfig, generate


@pytest.fixture(scope="module")
def crm() -> CRMData:
    return generate(SynthConfig(n_leads=1500, seed=5)).to_crm()


def reference_frame(crm: CRMData, config: FeatureConfig) -> pd.DataFrame:
    """The training frame built the straightforward way: a row-major matrix, a frame over it, the head."""
    spec = FeatureSpec(config).fit(crm)
    data_end = resolve_data_end(crm, config)
    history = LeadHistory(crm)
    lead, as_of = snapshot_pairs(history, as_of_dates(crm, config, data_end))
    lead_ids = crm.leads["lead_id"].to_numpy()
    rank = np.empty(len(lead_ids), dtype=np.int64)
    rank[np.argsort(lead_ids, kind="stable")] = np.arange(len(lead_ids))
    order = np.lexsort((rank[lead], as_of))
    lead, as_of = lead[order], as_of[order]
    head = pd.DataFrame({"lead_id": lead_ids[lead], "as_of": as_of.view("datetime64[ns]"),
                         **labels(history, lead, as_of, config.horizon_days, data_end)})
    return pd.concat([head, spec.to_frame(lead_feature_matrix(crm, spec, lead, as_of))], axis=1)


@pytest.mark.parametrize("block_leads", [50_000, 400])
def test_training_frame_is_the_matrix_then_frame_construction(crm: CRMData, block_leads: int) -> None:
    config = FeatureConfig(block_leads=block_leads)
    frame = build_training_set(crm, config).frame
    expected = reference_frame(crm, config)
    pd.testing.assert_frame_equal(frame, expected, check_exact=True)
    assert list(frame.dtypes) == list(expected.dtypes)
    for col in frame.columns[frame.dtypes == np.float64]:  # bit for bit, NaNs included
        assert frame[col].to_numpy().tobytes() == expected[col].to_numpy().tobytes(), col
    assert frame[LABEL].notna().any() and frame[LABEL].isna().any()


def test_event_kernels_called_on_slices_of_a_block_give_the_same_frame(crm: CRMData, monkeypatch) -> None:
    """A block's pairs go to the event kernels in slices of about BLOCK_PAIRS: the frame is the same as
    with the whole block in one call (a lead's values do not depend on the other leads of the call)."""
    import features.build

    config = FeatureConfig(block_leads=400)
    whole = build_training_set(crm, config).frame
    monkeypatch.setattr(features.build, "BLOCK_PAIRS", 37)  # many slices per block, cut anywhere
    sliced = build_training_set(crm, config).frame
    pd.testing.assert_frame_equal(sliced, whole, check_exact=True)
    for col in whole.columns[whole.dtypes == np.float64]:
        assert sliced[col].to_numpy().tobytes() == whole[col].to_numpy().tobytes(), col


def test_training_frame_peak_memory_is_bounded_by_the_frame() -> None:
    """Allocation peak of the build (numpy reports its buffers to tracemalloc) on a CRM with few events,
    where the features dominate: about 2x the features (the matrix while the kernels run) instead of
    3.3x when a frame copy and a concatenation copy followed the matrix."""
    sparse = generate(SynthConfig(n_leads=3000, seed=5, events_per_lead=2.0)).to_crm()
    config = FeatureConfig(block_leads=300)  # small blocks: the kernels' temporaries stay small
    build_training_set(sparse, config)  # warm caches and imports outside the measurement
    tracemalloc.start()
    try:
        frame = build_training_set(sparse, config).frame
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    features = frame.select_dtypes(np.float64).memory_usage(index=False).sum()
    assert peak < 2.5 * features, (peak, features)


@pytest.mark.parametrize("aside", [("annual_revenue",), ("annual_revenue", "industry")])
def test_score_columns_set_aside_follow_the_features_without_a_copy_of_the_frame(crm: CRMData, aside) -> None:
    """Set-aside attributes (``training.score_columns``) are appended as columns of their own: the frame a
    merge on lead_id gave (same columns, order, dtypes, values), where that merge copied the whole frame
    (allocation peak 4.2x the features instead of 2x)."""
    config = FeatureConfig(block_leads=300)
    frame = build_training_set(crm, config, set_aside=aside).frame
    plain = build_training_set(crm.__class__(crm.leads.drop(columns=list(aside)), crm.events, crm.outcomes,
                                             [c for c in crm.categorical_attributes if c not in aside],
                                             [c for c in crm.numeric_attributes if c not in aside]), config).frame
    expected = plain.merge(crm.leads[["lead_id", *aside]], on="lead_id", how="left", validate="many_to_one")
    pd.testing.assert_frame_equal(frame, expected, check_exact=True)
    assert list(frame.columns[-len(aside):]) == list(aside) and frame[list(aside)].notna().any().all()

    sparse = generate(SynthConfig(n_leads=3000, seed=5, events_per_lead=2.0)).to_crm()
    build_training_set(sparse, config, set_aside=aside)
    tracemalloc.start()
    try:
        frame = build_training_set(sparse, config, set_aside=aside).frame
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    features = frame.drop(columns=list(aside)).select_dtypes(np.float64).memory_usage(index=False).sum()
    assert peak < 2.5 * features, (peak, features)
