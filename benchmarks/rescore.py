"""Batch rescoring end to end (read, contract, features, score, top-3 reasons, write) vs a naive peer.

For each database (SQLite file, fresh PostgreSQL database) the script writes ``--leads`` synthetic
leads (~``--events-per-lead`` events each), trains and exports a small champion, and runs
:func:`serving.rescore.rescore` (partitions of ``--partition-leads``, one transaction each, history,
checkpoints; worker processes: ``--processes``, default one per core). It prints wall time, scored
leads/s and lead ids/s, the seconds per stage summed over the partitions, the peak memory of the
process tree (RSS of this process and its workers, sampled every 50 ms) and the CPU seconds used by
that tree and by the whole machine during the run (the benchmark machine may be shared: the
machine figure shows how much of the 2 cores others took).

The naive peer (what one writes first with pandas and shap): ``pd.read_sql`` of the three tables,
the same contract and features, ``shap.TreeExplainer(booster).shap_values`` + ``predict_proba`` on
the pandas frame, top-3 by ``argsort``, then one ``INSERT`` per lead (lead id, probability, 3 reason
names: less than leadscore writes) in one transaction. It holds the whole base in memory, so on a
large base it runs on a separate database of ``--peer-leads`` leads (same generator and seed), on
which leadscore runs too: the ratio printed is measured on that same data, side by side.

With ``--data-dir``, generated databases are kept (SQLite files in that folder, PostgreSQL databases
named ``leadscore_bench_crm_<leads>_<events>``) and reused by a later run with the same sizes (SQLite:
copied; PostgreSQL: ``CREATE DATABASE ... TEMPLATE``), so repeated runs skip the generation.

With ``--repeat N`` the side-by-side comparison runs N rounds (leadscore then the peer, each on a
fresh copy) and prints the median ratios and their range.

Usage: .venv/bin/python benchmarks/rescore.py [--leads 1000000] [--peer-leads 100000]
       [--databases sqlite,postgres] [--partition-leads 25000] [--processes N] [--data-dir DIR] [--repeat N]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(HERE.parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import psutil  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from features.build import scoring_matrix  # noqa: E402
from features.contract import validate_crm  # noqa: E402
from features.readers import RawTables  # noqa: E402
from leadscore.synth import SynthConfig, write_synthetic  # noqa: E402
from serving.loader import ServingSettings  # noqa: E402
from serving.rescore import (  # noqa: E402
    PartitionResult,
    RescoreConfig,
    RescoreSummary,
    data_config_for,
    rescore,
    sql_data_config,
)
from tests.serving_fixtures import export_champion, train_small_champion  # noqa: E402

AS_OF = pd.Timestamp("2026-05-01")
POSTGRES_ADMIN = os.environ.get("LEADSCORE_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
GIB = 2**30


class Usage:
    """Over a block: peak RSS of this process tree (sampled every 50 ms; child processes looked up every
    second), CPU seconds used by this tree,
    by the PostgreSQL server (all its sessions) and by the whole machine.

    CPU of a process group = its live processes' CPU + what its parent has collected from exited
    children (Linux accounts a reaped child's CPU to its parent), so short-lived workers and server
    backends are counted too.
    """

    def __enter__(self) -> Usage:
        self.process = psutil.Process()
        self.peak = self._tree_rss()
        self._tree_start, self._server_start = self._tree_cpu(), self._server_cpu()
        self._machine = psutil.cpu_times()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._began = time.perf_counter()
        self._thread.start()
        return self

    @staticmethod
    def _cpu(process: psutil.Process, reaped: bool = True) -> float:
        try:
            times = process.cpu_times()
        except psutil.Error:
            return 0.0
        return times.user + times.system + (times.children_user + times.children_system if reaped else 0.0)

    def _tree_cpu(self) -> float:
        return self._cpu(self.process) + sum(self._cpu(c, reaped=False) for c in self.process.children(recursive=True))

    def _server_cpu(self) -> float:
        return sum(self._cpu(p) for p in psutil.process_iter(["name"]) if p.info["name"] in ("postgres", "postmaster"))

    def _tree_rss(self, children: list[psutil.Process] | None = None) -> int:
        total = self.process.memory_info().rss
        for child in self.process.children(recursive=True) if children is None else children:
            with contextlib.suppress(psutil.Error):
                total += child.memory_info().rss
        return total

    def _sample(self) -> None:
        """RSS every 50 ms; the list of child processes (a scan of every process on the machine, costly
        enough to slow the run it measures) is refreshed every second (workers live for the whole run)."""
        children: list[psutil.Process] = []
        ticks = 0
        while not self._stop.wait(0.05):
            if ticks % 20 == 0:
                children = self.process.children(recursive=True)
            ticks += 1
            self.peak = max(self.peak, self._tree_rss(children))

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.seconds = time.perf_counter() - self._began
        self.tree_cpu = self._tree_cpu() - self._tree_start
        self.server_cpu = self._server_cpu() - self._server_start
        machine = psutil.cpu_times()
        self.machine_cpu = (machine.user + machine.system) - (self._machine.user + self._machine.system)

    def describe(self) -> str:
        cores = psutil.cpu_count() or 1
        return (f"peak RSS {self.peak / GIB:.2f} GiB (process tree); CPU seconds: this tree {self.tree_cpu:.0f}, "
                f"PostgreSQL server (all sessions) {self.server_cpu:.0f}, whole machine {self.machine_cpu:.0f} of "
                f"{cores * self.seconds:.0f} available")


@dataclass
class Database:
    """A generated lead database (kept for reuse) and the per-run copy rescoring writes into."""

    kind: str
    url: str
    drop: Callable[[], None] = field(default=lambda: None)


def sqlite_copy(data_dir: Path, work: Path, n_leads: int, events_per_lead: float) -> Database:
    source = data_dir / f"crm-{n_leads}-{events_per_lead:g}.db"
    if not source.exists():
        generate(f"sqlite:///{source}.tmp", n_leads, events_per_lead)
        Path(f"{source}.tmp").replace(source)
    target = work / f"run-{uuid.uuid4().hex[:6]}.db"
    shutil.copy(source, target)
    with open(target, "rb+") as copied:  # on disk before the timer starts, as a database at rest is: else the
        os.fsync(copied.fileno())  # run's first commit (SQLite syncs the file) pays for writing the whole copy
    return Database("sqlite", f"sqlite:///{target}", lambda: target.unlink(missing_ok=True))


def postgres_copy(admin: sa.Engine, n_leads: int, events_per_lead: float, templates: set[str]) -> Database:
    template = f"leadscore_bench_crm_{n_leads}_{str(events_per_lead).replace('.', '_')}"
    templates.add(template)
    unfinished = f"{template}_tmp"  # generated under this name, renamed once whole
    with admin.connect() as conn:
        exists = conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": template}).first()
        if exists is None:  # a run killed while generating left its database: start it again
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{unfinished}" WITH (FORCE)'))
            conn.execute(sa.text(f'CREATE DATABASE "{unfinished}"'))
    url_of = lambda name: sa.engine.make_url(POSTGRES_ADMIN).set(database=name).render_as_string(  # noqa: E731
        hide_password=False)
    if exists is None:
        try:
            generate(url_of(unfinished), n_leads, events_per_lead)
        except BaseException:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{unfinished}" WITH (FORCE)'))
            raise
        with admin.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{unfinished}" RENAME TO "{template}"'))
    name = f"leadscore_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    return Database("postgres", url_of(name), drop)


def generate(url: str, n_leads: int, events_per_lead: float) -> None:
    began = time.perf_counter()
    summary = write_synthetic(SynthConfig(n_leads=n_leads, seed=3, events_per_lead=events_per_lead), url, "sql",
                              overwrite=True)
    print(f"  generated {summary.leads:,} leads, {summary.events:,} events in {time.perf_counter() - began:.0f}s",
          flush=True)


def run_leadscore(db: Database, settings: ServingSettings, args: argparse.Namespace,
                  partition_leads: int) -> tuple[RescoreSummary, Usage, dict[str, float]]:
    stages: dict[str, float] = {}

    def collect(result: PartitionResult) -> None:
        for stage, seconds in result.stages.items():
            stages[stage] = stages.get(stage, 0.0) + seconds

    config = RescoreConfig(partition_leads=partition_leads, as_of=AS_OF, processes=args.processes)
    with Usage() as usage:
        summary = rescore(sql_data_config(db.url), db.url, settings, config, on_result=collect)
    return summary, usage, stages


def naive_peer(url: str, model: Any) -> tuple[float, int, dict[str, float]]:
    """Seconds, scored leads and seconds per phase of the naive pipeline over the whole database.

    Its contract and features are leadscore's own (:func:`validate_crm`, :func:`scoring_matrix`): only
    the read, the explanation and the write are naive, so faster features speed up both sides.
    """
    import shap

    spec = model.spec_
    phases: dict[str, float] = {}
    began = mark = time.perf_counter()

    def phase(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        phases[name] = now - mark
        mark = now

    engine = sa.create_engine(url)
    with engine.connect() as conn:
        tables = {t: pd.read_sql(sa.text(f"SELECT * FROM {t}"), conn) for t in ("leads", "events", "outcomes")}
    phase("read")
    crm, _ = validate_crm(RawTables(**tables), data_config_for(sql_data_config(url), spec))
    ids, matrix = scoring_matrix(crm, spec, AS_OF)
    phase("contract + features (leadscore's)")
    frame = spec.to_frame(matrix)[model.feature_columns_]
    probability = np.ravel(model.predict_proba(frame))
    shap_values = shap.TreeExplainer(model.booster_).shap_values(frame)
    top = np.argsort(-np.abs(shap_values), axis=1)[:, :3]
    columns = np.array(model.feature_columns_)
    phase("score + shap + top-3")
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS naive_scores"))
        conn.execute(sa.text("CREATE TABLE naive_scores (lead_id BIGINT PRIMARY KEY, probability FLOAT, "
                             "r1 TEXT, r2 TEXT, r3 TEXT)"))
        for i in range(len(ids)):
            conn.execute(sa.text("INSERT INTO naive_scores VALUES (:id, :p, :a, :b, :c)"),
                         {"id": int(ids[i]), "p": float(probability[i]), "a": columns[top[i, 0]],
                          "b": columns[top[i, 1]], "c": columns[top[i, 2]]})
    engine.dispose()
    phase("write")
    return time.perf_counter() - began, len(ids), phases


def own_cpu(usage: Usage, kind: str) -> float:
    """CPU seconds of the run: this process tree, plus the database server when it is PostgreSQL."""
    return usage.tree_cpu + (usage.server_cpu if kind == "postgres" else 0.0)


def report(label: str, kind: str, summary: RescoreSummary, usage: Usage, stages: dict[str, float]) -> float:
    rate = summary.scored / usage.seconds
    print(f"  {label}: {summary.leads:,} leads ({summary.scored:,} open leads scored with top-3 reasons, "
          f"{summary.history_rows:,} history rows) in {usage.seconds:.1f}s = {rate:,.0f} scored leads/s, "
          f"{summary.leads / usage.seconds:,.0f} leads/s", flush=True)
    print(f"    {usage.describe()}")
    own = own_cpu(usage, kind)
    print(f"    CPU per lead ({'this tree + PostgreSQL server' if kind == 'postgres' else 'this tree'}): "
          f"{1e6 * own / summary.leads:,.0f} us -> "
          f"{summary.leads / own * (psutil.cpu_count() or 1):,.0f} leads/s if these cores were this run's alone")
    if stages:
        total = sum(stages.values())
        print("    seconds per stage, summed over partitions and processes: "
              + ", ".join(f"{k} {v:.1f}" for k, v in stages.items()) + f" (total {total:.1f})")
    return rate


def side_by_side(db: Database, kind: str, n: int, settings: ServingSettings, args: argparse.Namespace,
                 partition_leads: int, model: Any) -> tuple[float, float, float, float]:
    """One round on a fresh copy: leadscore, then the naive peer. Returns (leadscore scored leads/s,
    peer scored leads/s, leadscore CPU seconds per lead, peer CPU seconds per lead)."""
    try:
        summary, usage, stages = run_leadscore(db, settings, args, partition_leads)
        ours = report("leadscore rescore", kind, summary, usage, stages)
        with Usage() as peer_usage:
            seconds, scored, phases = naive_peer(db.url, model)
        peer = scored / seconds
        print(f"  naive peer: {scored:,} open leads scored in {seconds:.1f}s = {peer:,.0f} scored leads/s; "
              f"{peer_usage.describe()}")
        print("    peer seconds per phase: " + ", ".join(f"{k} {v:.1f}" for k, v in phases.items()))
        peer_cpu = own_cpu(peer_usage, kind) / n
        ours_cpu = own_cpu(usage, kind) / n
        print(f"  ratio leadscore / peer on the same {n:,} leads: {ours / peer:.1f}x in wall time "
              f"(measured, shared machine); {peer_cpu / ours_cpu:.1f}x in CPU seconds per lead", flush=True)
        return ours, peer, ours_cpu, peer_cpu
    finally:
        db.drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--events-per-lead", type=float, default=20.0)
    parser.add_argument("--partition-leads", type=int, default=25_000)
    parser.add_argument("--processes", type=int, default=None, help="default: one per core")
    parser.add_argument("--peer-leads", type=int, default=100_000,
                        help="size of the side-by-side comparison with the naive peer (0: skip the peer)")
    parser.add_argument("--databases", default="sqlite,postgres")
    parser.add_argument("--data-dir", type=Path, default=None, help="keep generated databases here for reuse")
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds of the side-by-side comparison (single runs vary a lot on a shared machine)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="leadscore-bench-rescore-"))
    data_dir = args.data_dir or work
    data_dir.mkdir(parents=True, exist_ok=True)
    trained = train_small_champion(3000)
    export_champion(trained.model, work / "models", "1")
    settings = ServingSettings(model_dir=work / "models")
    load = os.getloadavg()
    print(f"rescore benchmark: {args.leads:,} leads, ~{args.events_per_lead:g} events/lead, partitions of "
          f"{args.partition_leads:,}, top-3 reasons, {psutil.cpu_count()} cores, processes "
          f"{args.processes or 'auto'}; load average before start {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}")
    admin = sa.create_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT")
    templates: set[str] = set()
    try:
        for kind in args.databases.split(","):
            print(f"\n[{kind}]", flush=True)

            def copy(n: int, kind: str = kind) -> Database:
                if kind == "sqlite":
                    return sqlite_copy(data_dir, work, n, args.events_per_lead)
                return postgres_copy(admin, n, args.events_per_lead, templates)

            n = min(args.peer_leads, args.leads)
            if n < args.leads or not args.peer_leads:
                db = copy(args.leads)
                try:
                    summary, usage, stages = run_leadscore(db, settings, args, args.partition_leads)
                    report(f"leadscore rescore, {args.leads:,}-lead base", kind, summary, usage, stages)
                finally:
                    db.drop()
            if not args.peer_leads:
                continue
            print(f"  side by side on a {n:,}-lead base{' (a subset: the peer holds the whole base in memory)' if n < args.leads else ''}:",
                  flush=True)
            # at least ~10 partitions, so that the processes share the work evenly on the smaller base
            partition_leads = min(args.partition_leads, max(5_000, n // 10))
            print(f"  (partitions of {partition_leads:,}; {args.repeat} round(s): leadscore, then the peer, "
                  "each on a fresh copy)")
            rounds = [side_by_side(copy(n), kind, n, settings, args, partition_leads, trained.model)
                      for _ in range(args.repeat)]
            if len(rounds) > 1:
                wall = sorted(r[0] / r[1] for r in rounds)
                cpu = sorted(r[3] / r[2] for r in rounds)
                print(f"  over {len(rounds)} rounds: leadscore {np.median([r[0] for r in rounds]):,.0f} scored "
                      f"leads/s, peer {np.median([r[1] for r in rounds]):,.0f} (medians); ratio in wall time "
                      f"{np.median(wall):.1f}x (from {wall[0]:.1f}x to {wall[-1]:.1f}x), in CPU per lead "
                      f"{np.median(cpu):.1f}x (from {cpu[0]:.1f}x to {cpu[-1]:.1f}x)", flush=True)
    finally:
        if args.data_dir is None:  # generated PostgreSQL databases are kept only with --data-dir
            with admin.connect() as conn:
                for template in templates:
                    conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)'))
        admin.dispose()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
