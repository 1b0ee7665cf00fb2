"""Validation speed on millions of events: prints seconds and rows/s per step (no assertions).

    .venv/bin/python benchmarks/bench_contract.py --events 5000000 --leads 500000
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

# Run by path, this folder would come first on sys.path, where benchmarks/features.py hides the
# features package: put the repository first instead.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(HERE.parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from features.contract import DataConfig, validate_crm  # noqa: E402
from features.readers import LeadSubset, RawTables, read_parquet_table  # noqa: E402


def synthetic(n_leads: int, n_events: int, seed: int = 0) -> RawTables:
    rng = np.random.default_rng(seed)
    ids = np.arange(n_leads, dtype=np.int64)
    created = pd.Timestamp("2023-01-01") + pd.to_timedelta(rng.integers(0, 365 * 86400, n_leads), "s")
    leads = pd.DataFrame({"lead_id": ids, "created_at": created, "industry": rng.choice(["a", "b", "c"], n_leads).astype(object),
                          "employees": rng.integers(1, 1000, n_leads).astype(float)})
    events = pd.DataFrame({
        "lead_id": rng.integers(0, n_leads, n_events),
        "occurred_at": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 300 * 86400, n_events), "s"),
        "event_type": pd.Categorical.from_codes(rng.integers(0, 5, n_events), ["email_open", "email_click", "page_view", "form_fill", "webinar"]),
        "channel": pd.Categorical.from_codes(rng.integers(0, 2, n_events), ["email", "web"]),
        "value": rng.random(n_events),
    })
    won = rng.random(n_leads) < 0.2
    outcomes = pd.DataFrame({"lead_id": ids, "converted_at": (created + pd.Timedelta(days=400)).where(won)})
    return RawTables(leads, events, outcomes)


def timed(label: str, n_rows: int, func):
    start = time.perf_counter()
    result = func()
    seconds = time.perf_counter() - start
    print(f"{label:<55} {seconds:7.2f} s  {n_rows / seconds / 1e6:6.2f} M events/s")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--leads", type=int, default=500_000)
    args = parser.parse_args()
    raw = synthetic(args.leads, args.events)
    config = DataConfig(reference_time="2026-01-01")
    print(f"{args.leads:,} leads, {args.events:,} events")
    timed("validate (typed input, clean, strict)", args.events, lambda: validate_crm(raw, config))

    dirty = RawTables(raw.leads, raw.events.copy(), raw.outcomes)
    n_bad = args.events // 1000
    rows = np.random.default_rng(1).choice(args.events, n_bad, replace=False)
    dirty.events.loc[rows, "lead_id"] = args.leads + 1  # unknown leads
    with tempfile.TemporaryDirectory() as folder:
        q = DataConfig(reference_time="2026-01-01", policy="quarantine", quarantine_dir=Path(folder), quarantine_format="parquet")
        _, report = timed(f"validate (quarantine {n_bad:,} unknown-lead events)", args.events, lambda: validate_crm(dirty, q))
        print("  ", report.summary().splitlines()[2])

        text = RawTables(raw.leads, raw.events.assign(occurred_at=raw.events["occurred_at"].astype(str),
                                                      event_type=raw.events["event_type"].astype(str).astype(object),
                                                      channel=raw.events["channel"].astype(str).astype(object)),
                         raw.outcomes)
        timed("validate (events as text, as from CSV/SQLite)", args.events, lambda: validate_crm(text, config))

        path = Path(folder) / "events.parquet"
        raw.events.to_parquet(path)
        ids = np.arange(0, args.leads, 100)
        timed(f"read_parquet_table subset of {ids.size:,} leads", args.events,
              lambda: read_parquet_table(path, subset=LeadSubset(lead_ids=ids)))
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB")


if __name__ == "__main__":
    main()
