"""The Dask path on a real local cluster (2 worker processes) gives exactly the pandas result."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from distributed import Client, LocalCluster

from features.build import build_training_set
from features.distributed import build_training_set_dask, lead_partition_of
from features.schema import CRMData
from features.spec import FeatureConfig

pytestmark = pytest.mark.timeout(180)


def small_crm(seed: int = 0, n_leads: int = 60, n_events: int = 2_000) -> CRMData:
    rng = np.random.default_rng(seed)
    origin = pd.Timestamp("2024-01-01")
    created = origin + pd.to_timedelta(rng.integers(0, 150, n_leads), "D")
    leads = pd.DataFrame(
        {
            "lead_id": [f"L{i:04d}" for i in range(n_leads)],
            "created_at": created,
            "country": rng.choice(["fr", "de", "us"], n_leads),
            "revenue": rng.lognormal(10, 1, n_leads),
        }
    )
    events = pd.DataFrame(
        {
            "lead_id": rng.choice(leads["lead_id"].to_numpy(), n_events),
            "occurred_at": origin + pd.to_timedelta(rng.integers(0, 300 * 86_400, n_events), "s"),
            "event_type": rng.choice(["email_open", "page_view", "demo_request", "recycled"], n_events),
        }
    )
    converts = rng.random(n_leads) < 0.4
    outcomes = pd.DataFrame(
        {
            "lead_id": leads["lead_id"],
            "converted_at": pd.Series(created + pd.to_timedelta(rng.integers(1, 250, n_leads), "D")).where(converts),
        }
    )
    return CRMData(leads, events, outcomes, ["country"], ["revenue"])


def test_lead_partitions_are_stable_and_cover_all_partitions() -> None:
    ids = pd.Series([f"L{i:04d}" for i in range(200)])
    parts = lead_partition_of(ids, 4)
    np.testing.assert_array_equal(parts, lead_partition_of(ids.sample(frac=1, random_state=0).sort_index(), 4))
    assert set(parts) == {0, 1, 2, 3}


@pytest.mark.slow
def test_dask_training_set_equals_pandas_on_local_cluster() -> None:
    crm = small_crm()
    config = FeatureConfig(cadence="MS", block_leads=16)
    expected = build_training_set(crm, config)
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        result = build_training_set_dask(crm, config, npartitions=5)
        assert len(client.scheduler_info()["workers"]) == 2
    assert result.spec == expected.spec
    assert len(result.frame) == len(expected.frame) > 100
    pd.testing.assert_frame_equal(result.frame, expected.frame, check_exact=True)
