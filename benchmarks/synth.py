"""Benchmark: generate a synthetic CRM into Parquet (default 1M leads) and print time and memory.

Target: 1M leads (~50M events) in under 3 minutes and under 4 GiB peak RSS on 2 cores.

    .venv/bin/python benchmarks/synth.py [--leads 1000000] [--fmt parquet] [--dest DIR] [--chunk-leads N]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from leadscore.synth import SynthConfig, write_synthetic  # noqa: E402

TARGET_SECONDS = 180.0
TARGET_PEAK_GIB = 4.0


def _peak_rss_gib() -> float:
    """Peak resident memory of this process plus its reaped children (ru_maxrss is KiB on Linux)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (own + children) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leads", "--n-leads", dest="n_leads", type=int, default=1_000_000)
    parser.add_argument("--fmt", choices=["csv", "parquet", "sql"], default="parquet")
    parser.add_argument("--dest", default=None, help="directory or SQLAlchemy URL (default: a temporary directory)")
    parser.add_argument("--chunk-leads", type=int, default=SynthConfig().chunk_leads)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    scratch = None if args.dest else tempfile.mkdtemp(prefix="leadscore-synth-")
    dest = args.dest or str(Path(scratch) / "crm")
    config = SynthConfig(n_leads=args.n_leads, seed=args.seed, chunk_leads=args.chunk_leads)
    try:
        summary = write_synthetic(config, dest, args.fmt, overwrite=True)
        size = sum(p.stat().st_size for p in Path(dest).glob("*")) / 2**20 if args.fmt != "sql" else float("nan")
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    peak = _peak_rss_gib()
    print(f"leads            {summary.leads:,}")
    print(f"events           {summary.events:,} ({summary.events / summary.leads:.1f} per lead)")
    print(f"conversions      {summary.conversions:,} ({summary.conversion_rate:.2%})")
    print(f"median to close  {summary.median_days_to_close:.1f} days")
    print(f"output           {args.fmt}, {size:,.0f} MiB")
    print(f"time             {summary.seconds:.1f} s  (target < {TARGET_SECONDS:.0f} s for 1M leads)")
    print(f"throughput       {summary.leads / summary.seconds:,.0f} leads/s, {summary.events / summary.seconds:,.0f} events/s")
    print(f"peak RSS         {peak:.2f} GiB (self + children; target < {TARGET_PEAK_GIB:.0f} GiB)")
    if args.n_leads >= 1_000_000:
        ok = summary.seconds < TARGET_SECONDS and peak < TARGET_PEAK_GIB
        print(f"target           {'MET' if ok else 'MISSED'}")


if __name__ == "__main__":
    main()
