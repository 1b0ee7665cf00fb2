"""Dask path: the same per-lead feature code mapped over lead-partitioned tables.

Every partition holds all rows (lead, events, outcomes) of its leads, so snapshots, labels and
features of a partition need nothing from the others; only the spec (vocabularies) and the as-of
dates / data_end are global, and they are computed first (from pandas tables or passed in).
Partitions are assigned by a stable hash of ``lead_id``. The three tables are indexed by partition
number with identical divisions, so ``dask.dataframe.map_partitions`` pairs partition ``k`` of each
table and calls :func:`features.build.training_frame` on it.
"""

from __future__ import annotations

from typing import Any

import dask.dataframe as dd
import numpy as np
import pandas as pd

from features.build import TrainingSet, training_frame
from features.schema import LEAD_ID, CRMData
from features.snapshots import AS_OF, as_of_dates, resolve_data_end
from features.spec import FeatureConfig, FeatureSpec

PARTITION = "lead_partition"


def lead_partition_of(lead_ids: pd.Series, npartitions: int) -> np.ndarray:
    """Stable partition number of each lead_id (pandas' hash of the value, modulo npartitions)."""
    hashed = pd.util.hash_pandas_object(lead_ids, index=False).to_numpy()
    return (hashed % np.uint64(npartitions)).astype(np.int64)


def partition_by_lead(frame: pd.DataFrame, npartitions: int) -> dd.DataFrame:
    """A dask frame indexed by lead partition, one dask partition per lead partition."""
    keyed = frame.assign(**{PARTITION: lead_partition_of(frame[LEAD_ID], npartitions)})
    keyed = keyed.sort_values(PARTITION, kind="stable").set_index(PARTITION)
    divisions = (*range(npartitions), npartitions - 1)
    parts = [keyed.loc[[k]] if k in keyed.index else keyed.iloc[0:0] for k in range(npartitions)]
    return dd.from_delayed([_delayed_value(p) for p in parts], meta=keyed.iloc[0:0], divisions=divisions)


def _delayed_value(part: pd.DataFrame) -> Any:
    from dask import delayed

    return delayed(part, traverse=False)


def _partition_training_frame(
    leads: pd.DataFrame,
    events: pd.DataFrame,
    outcomes: pd.DataFrame,
    spec_dict: dict[str, Any],
    categorical: list[str],
    numeric: list[str],
    dates: pd.DatetimeIndex,
    data_end: pd.Timestamp,
) -> pd.DataFrame:
    crm = CRMData(
        leads.reset_index(drop=True),
        events.reset_index(drop=True),
        outcomes.reset_index(drop=True),
        categorical,
        numeric,
    )
    return training_frame(crm, FeatureSpec.from_dict(spec_dict), dates, data_end)


def build_training_set_dask(
    crm: CRMData,
    config: FeatureConfig | None = None,
    npartitions: int = 4,
    spec: FeatureSpec | None = None,
) -> TrainingSet:
    """Training set computed partition by partition on the current Dask scheduler.

    Gives exactly :func:`features.build.build_training_set` (same rows, order and values). Use
    inside ``with distributed.Client(cluster):`` to run on a cluster.
    """
    config = config or (spec.config if spec is not None else FeatureConfig())
    spec = spec if spec is not None else FeatureSpec(config).fit(crm)
    data_end = resolve_data_end(crm, config)
    dates = as_of_dates(crm, config, data_end)
    tables = [partition_by_lead(t, npartitions) for t in (crm.leads, crm.events, crm.outcomes)]
    meta = training_frame(
        CRMData(crm.leads.iloc[0:0], crm.events.iloc[0:0], crm.outcomes.iloc[0:0],
                crm.categorical_attributes, crm.numeric_attributes),
        spec, dates, data_end,
    )
    result = dd.map_partitions(
        _partition_training_frame,
        *tables,
        spec.to_dict(),
        list(crm.categorical_attributes),
        list(crm.numeric_attributes),
        dates,
        data_end,
        meta=meta,
        align_dataframes=False,
    )
    frame = result.compute()
    frame = frame.sort_values([AS_OF, LEAD_ID], kind="stable").reset_index(drop=True)
    return TrainingSet(frame, spec, data_end, dates)
