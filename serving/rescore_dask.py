"""Rescoring on Dask: partitions are read, featurised, scored and explained on the workers.

Each task gets the data config, one lead-id range and the run (as_of, top_k, run id), reads its
partition from the database itself, and returns the score frame with its counts; the driver commits
every result through :func:`serving.score_store.commit_partition` (the same one-transaction path as
the in-process run), so checkpoints, resume and idempotence are identical. The model is shipped once
per worker (``client.scatter(..., broadcast=True)``); at most ``2 x workers`` partitions are in
flight, so the driver holds a bounded number of results.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from features import sqlite_arrow
from features.contract import ContractError, DataConfig
from features.readers import check_sqlite_file
from serving.core import ScoringCore
from serving.loader import ServingSettings
from serving.rescore import (
    PartitionResult,
    RescoreConfig,
    RescoreProgress,
    RescoreSummary,
    WorkerDiedError,
    open_source_database,
    rescore,
    score_partition,
)
from serving.score_store import PartitionSpec, RunRecord


@dataclass
class _Refused:
    """A partition whose data broke the contract, handed back as a value and raised by the driver: a task
    that raised would be logged by its worker as a failed computation, traceback included (a data error is
    no crash)."""

    error: ContractError


def _score_on_worker(data: DataConfig, parts: dict[str, Any], partition: PartitionSpec,
                     run: RunRecord) -> PartitionResult | _Refused:
    if data.source.kind == "sql" and data.source.url:
        check_sqlite_file(data.source.url)  # a file this worker cannot see: an error, not an empty database
    core = ScoringCore(**parts)
    database = open_source_database(data)
    try:
        return score_partition(data, core, partition, run, database=database)
    except ContractError as exc:
        return _Refused(exc)
    finally:
        core.close()
        if database is not None:
            sqlite_arrow.dispose(database.engine)


class DaskExecutor:
    """Scores partitions on the workers of a ``distributed.Client``; yields results as they finish."""

    def __init__(self, client: Any, in_flight: int | None = None) -> None:
        self.client = client
        n_workers = max(1, len(client.scheduler_info().get("workers", {})))
        self.in_flight = in_flight or 2 * n_workers

    def map(self, data: DataConfig, core: ScoringCore, run: RunRecord,
            partitions: list[PartitionSpec]) -> Iterator[PartitionResult]:
        from distributed import KilledWorker, as_completed

        if not partitions:
            return
        data = data.resolve_paths(Path.cwd())  # workers started in other folders read the same SQLite file
        # one future (a dict would scatter per key), under a key of its own: with the content hash as its key, a
        # resumed run right after a failed one scattered the same key the scheduler was still releasing, and its
        # tasks were cancelled for "lost dependencies" (dask/distributed#8576)
        parts = self.client.scatter([core.parts()], broadcast=True, hash=False)[0]
        attempt = uuid.uuid4().hex[:8]  # task keys of their own too: a resumed run's may not meet the failed run's
        todo = list(partitions)
        running = as_completed()
        indices: dict[Any, int] = {}  # partition index of each task's key

        def submit() -> None:
            partition = todo.pop(0)
            future = self.client.submit(_score_on_worker, data, parts, partition, run,
                                        key=f"rescore-{run.run_id}-{partition.index}-{attempt}", pure=False)
            indices[future.key] = partition.index
            running.add(future)

        for _ in range(min(self.in_flight, len(todo))):
            submit()
        for future in running:
            try:
                result = future.result()
            except KilledWorker as exc:  # the task's workers died (the scheduler gave up retrying it)
                raise WorkerDiedError(indices.get(future.key)) from exc
            indices.pop(future.key, None)
            future.release()
            if isinstance(result, _Refused):
                raise result.error
            if todo:
                submit()
            yield result


def rescore_on_dask(
    data: DataConfig,
    scores_url: str,
    settings: ServingSettings | None = None,
    config: RescoreConfig | None = None,
    *,
    address: str | None = None,
    n_workers: int | None = None,
    client: Any = None,
    core: ScoringCore | None = None,
    progress: RescoreProgress | None = None,
    out: Path | None = None,
    note: Callable[[str], None] | None = None,
) -> RescoreSummary:
    """:func:`serving.rescore.rescore` with partitions scored on Dask.

    ``note`` is told when the scheduler at ``address`` has no worker yet (the run waits for one: an adaptive
    cluster may start them on demand).

    Use ``client`` (an existing ``distributed.Client``), else connect to ``address``, else start a
    ``LocalCluster(n_workers, processes=True, threads_per_worker=1)`` for the duration of the run (its
    workers log errors only: a failed run's own error is printed alone, not the warnings of the tasks
    cancelled with it; its scheduler's HTTP server takes a free port of 127.0.0.1, never a warning that
    8787, Dask's default, is taken by another cluster).
    """
    from distributed import Client, LocalCluster

    if client is not None:
        return rescore(data, scores_url, settings, config, core=core, executor=DaskExecutor(client),
                       progress=progress, out=out)
    if address is not None:
        with Client(address) as remote:
            if note is not None and not remote.scheduler_info().get("workers"):
                note(f"no worker is connected to the Dask scheduler at {address} yet: the run waits for one "
                     "(start workers with `dask worker ADDRESS`, or Ctrl-C)")
            return rescore(data, scores_url, settings, config, core=core, executor=DaskExecutor(remote),
                           progress=progress, out=out)
    with LocalCluster(n_workers=n_workers or 2, processes=True, threads_per_worker=1,
                      dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR) as cluster, Client(cluster) as local:
        return rescore(data, scores_url, settings, config, core=core, executor=DaskExecutor(local),
                       progress=progress, out=out)
