"""Dask path, out of core: every task reads, validates and builds its own lead-id range of the source.

Every partition holds all rows (lead, events, outcomes) of its leads, so snapshots, labels and
features of a partition need nothing from the others; only the spec (vocabularies) and the as-of
dates / data_end are global: a first pass over the partitions gathers what fits them, a second one
calls :func:`features.build.training_frame` on each partition and writes its rows to Parquet.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.build import training_frame
from features.contract import QUARANTINE, ContractError, DataConfig, ValidationReport
from features.loading import (
    NO_LEAD_ID_FOLDER,
    TEXT_LEAD_ID_FOLDER,
    load_crm,
    set_aside_rows_without_lead_id,
)
from features.readers import lead_id_range_text, lead_id_ranges, read_lead_ids
from features.schema import EVENT_TYPE, LEAD_ID, LEADS, RECYCLED, TABLES, CRMData
from features.snapshots import AS_OF, as_of_dates, resolve_data_end
from features.spec import FeatureConfig, FeatureSpec, check_event_types

PART_FILE = re.compile(r"part-\d{5,}\.parquet")  # a partition file of build_training_set_from_source
QUARANTINE_PART = re.compile(r"part-\d{5,}")  # a partition's folder in quarantine_dir
SET_ASIDE_FOLDERS = (NO_LEAD_ID_FOLDER, TEXT_LEAD_ID_FOLDER)  # rows in no lead-id range


@dataclass
class SourceTrainingSet:
    """A training set written partition by partition (one Parquet file per lead-id range), with the
    rows each table had quarantined over all partitions (policy ``quarantine``)."""

    spec: FeatureSpec
    data_end: pd.Timestamp
    as_of_dates: pd.DatetimeIndex
    files: list[Path]
    rows_quarantined: dict[str, int] = field(default_factory=dict)

    def read(self) -> pd.DataFrame:
        """All partitions in one frame, sorted like :func:`features.build.build_training_set`."""
        frames = [pd.read_parquet(f) for f in self.files]
        # partitions without snapshot rows add nothing (and pandas warns that their dtypes will count)
        frame = pd.concat([f for f in frames if len(f)] or frames[:1], ignore_index=True)
        return frame.sort_values([AS_OF, LEAD_ID], kind="stable").reset_index(drop=True)


def _load_range(data: DataConfig, start: Any, stop: Any) -> tuple[CRMData, ValidationReport]:
    """One range read and validated; a violation names the range (its rows are counted within it)."""
    try:
        return load_crm(data, lead_id_range=(start, stop))
    except ContractError as exc:
        raise exc.located(f"the partition of {lead_id_range_text(start, stop)}") from None


def _partition_facts(data: DataConfig, start: Any, stop: Any) -> dict[str, Any]:
    """Pass 1 on a worker: the partition's validated leads, event types and latest timestamp."""
    crm, report = _load_range(data, start, stop)
    end = resolve_data_end(crm, FeatureConfig()) if len(crm.leads) else None
    types = set(crm.events[EVENT_TYPE].astype(str).unique()) if len(crm.events) else set()
    attributes = [*crm.categorical_attributes, *crm.numeric_attributes]
    filled = {c for c in attributes if crm.leads[c].notna().any()}
    return {"leads": crm.leads, "categorical": list(crm.categorical_attributes),
            "numeric": list(crm.numeric_attributes), "event_types": types, "data_end": end,
            "quarantined": dict(report.rows_quarantined), "filled": filled}


def _kinds(facts: tuple[dict[str, Any], ...]) -> set[tuple[tuple[str, ...], tuple[str, ...]]]:
    """The (categorical, numeric) attribute lists the partitions with leads inferred."""
    return {(tuple(f["categorical"]), tuple(f["numeric"])) for f in facts if len(f["leads"])}


def _agreed_kinds(facts: tuple[dict[str, Any], ...]) -> tuple[list[str], list[str]]:
    """Attribute kinds as the whole table would infer them, from partitions that disagree: a column is
    numeric when every partition holding a value of it inferred it numeric (a partition where it is empty
    has no say, as its empty values have none in a whole-table load), else categorical."""
    with_leads = [f for f in facts if len(f["leads"])]
    attributes = {c for f in with_leads for c in (*f["categorical"], *f["numeric"])}
    order = [c for c in with_leads[0]["leads"].columns if c in attributes]
    categorical, numeric = [], []
    for column in order:
        voters = [f for f in with_leads if column in f["filled"]] or with_leads
        (numeric if all(column in f["numeric"] for f in voters) else categorical).append(column)
    return categorical, numeric


def _declaring(data: DataConfig, categorical: list[str], numeric: list[str]) -> DataConfig:
    """``data`` with its attribute kinds declared (every partition then reads them alike)."""
    declared = data.attributes.model_copy(update={"categorical": categorical, "numeric": numeric,
                                                  "infer_undeclared": False})
    return data.model_copy(update={"attributes": declared})


def _build_quarantine_folders(root: Path) -> list[Path]:
    """The folders a build writes in ``quarantine_dir``: ``part-NNNNN/``, ``no-lead-id/``, ``text-lead-id/``."""
    return [f for f in root.iterdir() if f.is_dir() and (QUARANTINE_PART.fullmatch(f.name) or f.name in SET_ASIDE_FOLDERS)]


@contextmanager
def _fresh_quarantine_folders(data: DataConfig) -> Iterator[None]:
    """As a whole-table load rewrites its files, a build leaves in ``quarantine_dir`` its own rows only, never
    an earlier build's that the data no longer has: the earlier build's folders are set aside (a hidden
    folder) while this one runs, dropped when it succeeds, put back when it fails (beside the earlier
    build's partition files, which a failed build leaves in place)."""
    if data.policy != QUARANTINE or data.quarantine_dir is None or not Path(data.quarantine_dir).is_dir():
        yield
        return
    root = Path(data.quarantine_dir)
    aside = root / f".earlier-build-{uuid.uuid4().hex[:8]}"
    earlier = _build_quarantine_folders(root)
    if earlier:
        aside.mkdir()
        for folder in earlier:
            folder.rename(aside / folder.name)
    try:
        yield
    except BaseException:
        for folder in _build_quarantine_folders(root):  # this build's, incomplete
            shutil.rmtree(folder)
        if aside.is_dir():
            for folder in aside.iterdir():
                folder.rename(root / folder.name)
            aside.rmdir()
        raise
    if aside.is_dir():
        shutil.rmtree(aside)


def _partition_config(data: DataConfig, k: int) -> DataConfig:
    """Partition ``k``'s data config: its own quarantine folder (``quarantine_dir/part-NNNNN``)."""
    if data.quarantine_dir is None:
        return data
    return data.model_copy(update={"quarantine_dir": Path(data.quarantine_dir) / f"part-{k:05d}"})


def _open_ended(ranges: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    """The first range from the smallest int64 (text ids: from ``''``, which every text sorts from), the last to
    the largest (text ranges already end open): events and outcomes of ids outside every lead's range are read
    (and refused as unknown leads) instead of never seen."""
    ranges = list(ranges)
    if isinstance(ranges[0][0], str):
        ranges[0] = ("", ranges[0][1])
        return ranges
    info = np.iinfo(np.int64)
    ranges[0] = (int(info.min), ranges[0][1])
    ranges[-1] = (ranges[-1][0], int(info.max))
    return ranges


def _partition_to_parquet(data: DataConfig, start: Any, stop: Any, spec_dict: dict[str, Any],
                          dates: pd.DatetimeIndex, data_end: pd.Timestamp, path: Path) -> Path:
    """Pass 2 on a worker: read the partition again, build its snapshot rows, write them."""
    crm, _ = _load_range(data, start, stop)
    frame = training_frame(crm, FeatureSpec.from_dict(spec_dict), dates, data_end)
    frame.to_parquet(path, index=False)
    return path


def build_training_set_from_source(
    data: DataConfig,
    out_dir: Path,
    config: FeatureConfig | None = None,
    partition_leads: int = 50_000,
) -> SourceTrainingSet:
    """Training set of a CRM too large for one machine, on the current Dask scheduler.

    The driver reads only the lead ids: integers, or text (UUIDs, CRM ids, zero-padded numbers) cut in
    ranges of their bytewise order, as a rescore cuts them (:func:`features.fast_sql.range_clause`, whatever
    the collation). Pass 1 (on workers, one task per lead-id range) validates each partition and returns
    its leads, event types and latest timestamp, from which the driver fits the spec (vocabularies, column
    order) and fixes ``data_end`` and the as-of dates. Pass 2 reads each partition again and writes its snapshot rows to ``out_dir/part-NNNNN.parquet``: under
    temporary names, moved in place once every partition is written (the ``part-NNNNN.parquet`` files of
    an earlier build with more partitions are removed then; a failed build leaves the folder as it was).
    Rows and values equal :func:`features.build.build_training_set` on the whole CRM (tested).
    """
    from dask import compute, delayed

    config = config or FeatureConfig()
    data = data.resolve_paths(Path.cwd())  # workers started in other folders read and write the same files
    out_dir = Path(out_dir).absolute()  # ... and write their partitions into this folder, not their own
    ranges = lead_id_ranges(read_lead_ids(data, text_ids=True), partition_leads)
    if not ranges:
        raise ValueError(f"table {LEADS!r}: no leads to build a training set from")
    with _fresh_quarantine_folders(data):
        without_id = set_aside_rows_without_lead_id(data)
        ranges = _open_ended(ranges)
        facts = compute(*[delayed(_partition_facts)(_partition_config(data, k), a, b)
                          for k, (a, b) in enumerate(ranges)])
        kinds = _kinds(facts)
        if len(kinds) > 1:  # e.g. a column empty in a whole partition: read again, typed as the whole table types it
            data = _declaring(data, *_agreed_kinds(facts))
            facts = compute(*[delayed(_partition_facts)(_partition_config(data, k), a, b)
                              for k, (a, b) in enumerate(ranges)])
            kinds = _kinds(facts)
        quarantined = {t: without_id.get(t, 0) + sum(f["quarantined"].get(t, 0) for f in facts) for t in TABLES}
        if len(kinds) > 1:
            raise ValueError(
                "leads: attribute types were inferred differently in different lead partitions "
                f"({sorted(kinds)}); declare them under data.attributes (categorical / numeric)"
            )
        categorical, numeric = (list(k) for k in kinds.pop())
        leads = pd.concat([f["leads"] for f in facts], ignore_index=True)
        ends = [f["data_end"] for f in facts if f["data_end"] is not None]
        event_types = sorted(set().union(*(f["event_types"] for f in facts)) - {RECYCLED})
        if config.event_types is not None:  # the spec below is fitted without events: checked here
            check_event_types(config.event_types, set(event_types))
        fixed = config.model_copy(update={
            "data_end": config.data_end or max(ends).to_pydatetime(),
            "event_types": config.event_types or tuple(event_types),
        })
        no_rows = data.model_copy(update={"policy": "strict", "quarantine_dir": None})  # writes no quarantine files
        empty = load_crm(no_rows, lead_id_range=(ranges[0][0], ranges[0][0]))[0]
        crm = CRMData(leads, empty.events, empty.outcomes, categorical, numeric, tuple(data.missing_values))
        spec = FeatureSpec(fixed).fit(crm)
        data_end = resolve_data_end(crm, fixed)
        dates = as_of_dates(crm, fixed, data_end)
        data = _declaring(data, categorical, numeric)
        out_dir.mkdir(parents=True, exist_ok=True)
        spec_dict = spec.to_dict()
        files = [out_dir / f"part-{k:05d}.parquet" for k in range(len(ranges))]
        token = uuid.uuid4().hex[:8]
        temporary = [f.with_name(f".{f.name}.{token}.tmp") for f in files]  # hidden: readers of the folder skip them
        tasks = [delayed(_partition_to_parquet)(_partition_config(data, k), a, b, spec_dict, dates, data_end, tmp)
                 for k, ((a, b), tmp) in enumerate(zip(ranges, temporary, strict=True))]
        try:
            compute(*tasks)
            _replace_partition_files(out_dir, temporary, files)
        finally:
            for tmp in temporary:
                tmp.unlink(missing_ok=True)
        return SourceTrainingSet(spec, data_end, dates, files, quarantined)


def _replace_partition_files(out_dir: Path, temporary: list[Path], files: list[Path]) -> None:
    """Move a finished build's files in place and remove the ``part-NNNNN.parquet`` files of an earlier
    build that this one does not replace (it had more partitions): the folder holds one build's rows."""
    for stale in set(out_dir.glob("part-*.parquet")) - set(files):
        if PART_FILE.fullmatch(stale.name):
            stale.unlink()
    for tmp, final in zip(temporary, files, strict=True):
        os.replace(tmp, final)
