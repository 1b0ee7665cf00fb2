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

from pydantic import ValidationError  # noqa: E402

from leadscore.synth import SynthConfig, write_synthetic  # noqa: E402

TARGET_SECONDS = 180.0
TARGET_PEAK_GIB = 4.0


def _peak_rss_gib() -> float:
    """Peak resident memory of this process plus its reaped children (ru_maxrss is KiB on Linux)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (own + children) / 2**20


def _output_mib(dest: str, fmt: str) -> float | None:
    """Size of what was written: the folder's files, or the SQLite file (None for a server database)."""
    if fmt != "sql":
        return sum(p.stat().st_size for p in Path(dest).glob("*")) / 2**20
    import sqlalchemy as sa

    url = sa.engine.make_url(dest)
    if url.get_backend_name() != "sqlite" or not url.database or not Path(url.database).is_file():
        return None
    return Path(url.database).stat().st_size / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leads", "--n-leads", dest="n_leads", type=int, default=1_000_000)
    parser.add_argument("--fmt", choices=["csv", "parquet", "sql"], default="parquet")
    parser.add_argument("--dest", default=None, help="directory or SQLAlchemy URL (default: a temporary directory; "
                        "with --fmt sql a SQLite file in it)")
    parser.add_argument("--chunk-leads", type=int, default=SynthConfig().chunk_leads)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    try:
        config = SynthConfig(n_leads=args.n_leads, seed=args.seed, chunk_leads=args.chunk_leads)
    except ValidationError as exc:
        options = {"n_leads": "--leads", "chunk_leads": "--chunk-leads", "seed": "--seed"}
        parser.error("; ".join(f"{options.get(str(e['loc'][0]), e['loc'][0])}: {e['msg']}" for e in exc.errors()))
    scratch = None if args.dest else tempfile.mkdtemp(prefix="leadscore-synth-")
    dest = args.dest or (f"sqlite:///{Path(scratch) / 'crm.db'}" if args.fmt == "sql" else str(Path(scratch) / "crm"))
    try:
        summary = write_synthetic(config, dest, args.fmt, overwrite=True)
        size = _output_mib(dest, args.fmt)
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    peak = _peak_rss_gib()
    median = summary.median_days_to_close
    print(f"leads            {summary.leads:,}")
    print(f"events           {summary.events:,} ({summary.events / summary.leads:.1f} per lead)")
    print(f"conversions      {summary.conversions:,} ({summary.conversion_rate:.2%})")
    print(f"median to close  {'n/a' if median is None else f'{median:.1f} days'}")
    print(f"output           {args.fmt}, {'size n/a (not a SQLite file)' if size is None else f'{size:,.0f} MiB'}")
    print(f"time             {summary.seconds:.1f} s  (target < {TARGET_SECONDS:.0f} s for 1M leads)")
    print(f"throughput       {summary.leads / summary.seconds:,.0f} leads/s, {summary.events / summary.seconds:,.0f} events/s")
    print(f"peak RSS         {peak:.2f} GiB (self + children; target < {TARGET_PEAK_GIB:.0f} GiB)")
    if args.n_leads >= 1_000_000:
        ok = summary.seconds < TARGET_SECONDS and peak < TARGET_PEAK_GIB
        print(f"target           {'MET' if ok else 'MISSED'}")


if __name__ == "__main__":
    main()
