"""Batch rescoring end to end (read, contract, features, score, top-3 reasons, write) vs a naive peer.

Generates N synthetic leads into SQLite and into a fresh PostgreSQL database, trains and exports a
small champion, runs :func:`serving.rescore.rescore` and prints leads/s and peak memory (RSS of this
process sampled during the run). The naive peer on the same data: pandas reads of the whole tables
(``pd.read_sql``), the same contract and features, ``shap.TreeExplainer(...).shap_values`` +
``predict_proba``, then one INSERT per lead. The peer runs on the first ``--peer-leads`` leads only
and its rate is extrapolated linearly (stated in the output).
Usage: .venv/bin/python benchmarks/rescore.py [--leads 1000000] [--databases sqlite,postgres]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

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
from serving.rescore import RescoreConfig, data_config_for, rescore, sql_data_config  # noqa: E402
from tests.serving_fixtures import export_champion, train_small_champion  # noqa: E402

AS_OF = pd.Timestamp("2026-05-01")
POSTGRES_ADMIN = os.environ.get("LEADSCORE_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


class PeakRss:
    """Peak resident memory of this process while the block runs (sampled every 50 ms)."""

    def __enter__(self) -> PeakRss:
        self.process = psutil.Process()
        self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def naive_peer(url: str, models_model, n_leads: int) -> float:
    """Seconds of the naive pipeline on the leads with the n_leads smallest ids."""
    import shap

    spec = models_model.spec_
    began = time.perf_counter()
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        stop = conn.execute(sa.text(f"SELECT MAX(lead_id) FROM (SELECT lead_id FROM leads ORDER BY lead_id "
                                    f"LIMIT {int(n_leads)}) AS s")).scalar_one() + 1
        tables = {t: pd.read_sql(sa.text(f"SELECT * FROM {t} WHERE lead_id < :stop"), conn, params={"stop": stop})
                  for t in ("leads", "events", "outcomes")}
    crm, _ = validate_crm(RawTables(**tables), data_config_for(sql_data_config(url), spec))
    ids, matrix = scoring_matrix(crm, spec, AS_OF)
    frame = spec.to_frame(matrix)[models_model.feature_columns_]
    probability = models_model.predict_proba(frame)
    shap_values = shap.TreeExplainer(models_model.booster_).shap_values(frame)
    top = np.argsort(-np.abs(shap_values), axis=1)[:, :3]
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS naive_scores"))
        conn.execute(sa.text("CREATE TABLE naive_scores (lead_id BIGINT PRIMARY KEY, probability FLOAT, "
                             "r1 TEXT, r2 TEXT, r3 TEXT)"))
        columns = np.array(models_model.feature_columns_)
        for i in range(len(ids)):
            conn.execute(sa.text("INSERT INTO naive_scores VALUES (:id, :p, :a, :b, :c)"),
                         {"id": int(ids[i]), "p": float(np.ravel(probability)[i]), "a": columns[top[i, 0]],
                          "b": columns[top[i, 1]], "c": columns[top[i, 2]]})
    engine.dispose()
    return time.perf_counter() - began, len(ids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--events-per-lead", type=float, default=20.0)
    parser.add_argument("--partition-leads", type=int, default=50_000)
    parser.add_argument("--peer-leads", type=int, default=20_000)
    parser.add_argument("--databases", default="sqlite,postgres")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="leadscore-bench-rescore-"))
    trained = train_small_champion(3000)
    export_champion(trained.model, work / "models", "1")
    settings = ServingSettings(model_dir=work / "models")
    print(f"rescore benchmark: {args.leads:,} leads, ~{args.events_per_lead:g} events/lead, "
          f"partitions of {args.partition_leads:,}, top-3 reasons, {os.cpu_count()} cores")
    admin = sa.create_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT")
    for database in args.databases.split(","):
        pg_name = None
        if database == "sqlite":
            url = f"sqlite:///{work / 'crm.db'}"
        else:
            pg_name = f"leadscore_bench_{uuid.uuid4().hex[:8]}"
            with admin.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{pg_name}"'))
            url = sa.engine.make_url(POSTGRES_ADMIN).set(database=pg_name).render_as_string(hide_password=False)
        try:
            t = time.perf_counter()
            write_synthetic(SynthConfig(n_leads=args.leads, seed=3, events_per_lead=args.events_per_lead), url, "sql")
            print(f"\n[{database}] synthetic data written in {time.perf_counter() - t:.0f}s")
            with PeakRss() as rss:
                summary = rescore(sql_data_config(url), url, settings,
                                  RescoreConfig(partition_leads=args.partition_leads, as_of=AS_OF))
            rate = summary.scored / summary.seconds
            print(f"[{database}] leadscore rescore: {summary.leads:,} leads read, {summary.scored:,} scored in "
                  f"{summary.seconds:.1f}s = {rate:,.0f} scored leads/s ({summary.leads / summary.seconds:,.0f} "
                  f"leads read/s); peak RSS {rss.peak / 2**30:.2f} GiB")
            with PeakRss() as peer_rss:
                seconds, n = naive_peer(url, trained.model, args.peer_leads)
            peer_rate = n / seconds
            print(f"[{database}] naive peer on a sample of {n:,} scored leads (extrapolated): {seconds:.1f}s = "
                  f"{peer_rate:,.0f} leads/s -> {summary.scored / peer_rate:,.0f}s for {summary.scored:,}; "
                  f"peak RSS {peer_rss.peak / 2**30:.2f} GiB (sample only)")
            print(f"[{database}] ratio leadscore / peer: {rate / peer_rate:.1f}x")
        finally:
            if pg_name is not None:
                with admin.connect() as conn:
                    conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)'))
    admin.dispose()


if __name__ == "__main__":
    main()
