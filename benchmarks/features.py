"""Benchmark of the point-in-time feature pipeline, side by side with featuretools.

    .venv/bin/python benchmarks/features.py                    # 100k leads, ~5M events, 12 snapshots
    .venv/bin/python benchmarks/features.py --leads 20000 --skip-featuretools

Steps: (1) generate a synthetic CRM (``leadscore.synth``) and write it as Parquet under
``--out``; (2) build the training set over 12 monthly snapshots in a child process, printing wall
time and peak RSS (data loading included); (3) time the single-lead payload path (a lead with
~200 events, median of many calls); (4) run featuretools deep feature synthesis with cutoff times
(counts per event type over the same windows + time since last per type) in its own virtualenv
(created under ``--out`` with uv) on a sample of leads, time leadscore on the same sample, and
extrapolate featuretools linearly in the number of (lead, as_of) pairs to the full data.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
# This script is itself named features.py: keep its folder off sys.path so that ``features`` is
# the package at the repository root.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from features.build import build_training_set, features_from_payload  # noqa: E402
from features.schema import CRMData  # noqa: E402
from features.spec import FeatureConfig  # noqa: E402

FEATURETOOLS_REQUIREMENTS = ["featuretools==1.31.0", "pandas>=2.2,<2.4", "numpy<2.3", "setuptools<81", "pyarrow"]
WINDOWS = (7, 30, 90)

FEATURETOOLS_RUNNER = textwrap.dedent(
    """
    import json, sys, time, warnings
    warnings.filterwarnings("ignore")
    import pandas as pd
    import featuretools as ft

    data, cutoff_path, windows = sys.argv[1], sys.argv[2], [int(w) for w in sys.argv[3].split(",")]
    leads = pd.read_parquet(f"{data}/leads.parquet", columns=["lead_id", "created_at"])
    events = pd.read_parquet(f"{data}/events.parquet", columns=["lead_id", "occurred_at", "event_type"])
    cutoff = pd.read_parquet(cutoff_path)
    leads = leads[leads["lead_id"].isin(cutoff["lead_id"])]
    events = events[events["lead_id"].isin(cutoff["lead_id"])].reset_index(drop=True)
    events["event_type"] = events["event_type"].astype(str)
    events["event_id"] = range(len(events))
    types = sorted(events["event_type"].unique())
    start = time.perf_counter()
    es = ft.EntitySet("crm")
    es.add_dataframe(dataframe_name="leads", dataframe=leads, index="lead_id", time_index="created_at")
    es.add_dataframe(dataframe_name="events", dataframe=events, index="event_id", time_index="occurred_at",
                     logical_types={"event_type": "Categorical"})
    es.add_relationship("leads", "lead_id", "events", "lead_id")
    es.add_interesting_values(dataframe_name="events", values={"event_type": types})
    n_features = 0
    for i, window in enumerate(sorted(windows, reverse=True)):
        # The longest window also computes time-since-last per type (over that window).
        aggs = ["count", "time_since_last"] if i == 0 else ["count"]
        matrix, defs = ft.dfs(entityset=es, target_dataframe_name="leads", cutoff_time=cutoff,
                              agg_primitives=aggs, where_primitives=aggs, trans_primitives=[],
                              max_depth=1, training_window=f"{window} days", verbose=False)
        n_features += len(defs)
    print(json.dumps({"seconds": time.perf_counter() - start, "rows": int(len(matrix)),
                      "features": n_features}))
    """
)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def generate_crm(n_leads: int, events_per_lead: float, seed: int) -> CRMData:
    """Synthetic CRM from ``leadscore.synth`` (falls back to a simple random CRM)."""
    try:
        from leadscore.synth import SynthConfig, generate
    except ImportError:
        return random_crm(n_leads, events_per_lead, seed)
    return generate(SynthConfig(n_leads=n_leads, seed=seed, events_per_lead=events_per_lead)).to_crm()


def random_crm(n_leads: int, events_per_lead: float, seed: int) -> CRMData:
    rng = np.random.default_rng(seed)
    origin = pd.Timestamp("2024-07-01")
    created = origin + pd.to_timedelta(rng.integers(0, 600 * 86_400, n_leads), "s")
    leads = pd.DataFrame({"lead_id": np.arange(n_leads), "created_at": created,
                          "industry": pd.Categorical(rng.choice(["a", "b", "c", "d"], n_leads)),
                          "employees": rng.lognormal(4, 1, n_leads)})
    n_events = int(n_leads * events_per_lead)
    lead = rng.integers(0, n_leads, n_events)
    types = ["email_open", "email_click", "page_view", "pricing_page_view", "form_fill", "webinar",
             "demo_request", "unsubscribe", "email_bounce", "recycled"]
    events = pd.DataFrame({"lead_id": lead,
                           "occurred_at": created[lead] + pd.to_timedelta(rng.integers(0, 200 * 86_400, n_events), "s"),
                           "event_type": pd.Categorical(rng.choice(types, n_events))})
    conv = rng.random(n_leads) < 0.2
    outcomes = pd.DataFrame({"lead_id": np.arange(n_leads),
                             "converted_at": pd.Series(created + pd.to_timedelta(rng.integers(1, 300, n_leads), "D"))
                             .where(conv)})
    return CRMData(leads, events, outcomes, ["industry"], ["employees"])


def snapshot_config(crm: CRMData, snapshots: int) -> FeatureConfig:
    """The last ``snapshots`` month starts of the history."""
    end = max(crm.events["occurred_at"].max(), crm.leads["created_at"].max())
    dates = pd.date_range(end=end.normalize(), periods=snapshots + 1, freq="MS")[-snapshots:]
    return FeatureConfig(as_of_dates=tuple(d.to_pydatetime() for d in dates))


def write_parquet(crm: CRMData, data_dir: Path) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    crm.leads.to_parquet(data_dir / "leads.parquet", index=False)
    crm.events.to_parquet(data_dir / "events.parquet", index=False)
    crm.outcomes.to_parquet(data_dir / "outcomes.parquet", index=False)
    meta = {"categorical": crm.categorical_attributes, "numeric": crm.numeric_attributes}
    (data_dir / "attributes.json").write_text(json.dumps(meta))


def read_parquet(data_dir: Path, lead_ids: np.ndarray | None = None) -> CRMData:
    meta = json.loads((data_dir / "attributes.json").read_text())
    tables = [pd.read_parquet(data_dir / f"{t}.parquet") for t in ("leads", "events", "outcomes")]
    if lead_ids is not None:
        tables = [t[t["lead_id"].isin(lead_ids)].reset_index(drop=True) for t in tables]
    return CRMData(*tables, meta["categorical"], meta["numeric"])


def child_build(data_dir: Path, snapshots: int, sample_path: Path | None) -> None:
    """Runs in a fresh process: read Parquet, build the training set, print a JSON line."""
    lead_ids = pd.read_parquet(sample_path)["lead_id"].unique() if sample_path else None
    start = time.perf_counter()
    crm = read_parquet(data_dir, lead_ids)
    loaded = time.perf_counter()
    config = snapshot_config(read_parquet(data_dir) if lead_ids is not None else crm, snapshots)
    if lead_ids is not None:
        loaded = time.perf_counter()
    training = build_training_set(crm, config)
    built = time.perf_counter()
    print(json.dumps({"load_seconds": loaded - start, "build_seconds": built - loaded,
                      "peak_rss_mib": peak_rss_mib(), "rows": len(training.frame),
                      "features": len(training.spec.columns_), "events": len(crm.events),
                      "leads": len(crm.leads), "summary": training.summary()}))


def run_child(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"child failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def payload_latency(crm: CRMData, config: FeatureConfig, n_events: int = 200, repeats: int = 2000) -> float:
    """Median seconds of ``features_from_payload`` for one lead with ``n_events`` events."""
    from features.spec import FeatureSpec

    spec = FeatureSpec(config).fit(crm)
    counts = crm.events["lead_id"].value_counts()
    lead_id = (counts - n_events).abs().idxmin()
    lead = crm.leads.set_index("lead_id").loc[lead_id]
    ev = crm.events[crm.events["lead_id"] == lead_id]
    rng = np.random.default_rng(0)
    ev = ev.iloc[rng.choice(len(ev), n_events, replace=len(ev) < n_events)]
    payload = {
        "lead_id": int(lead_id),
        "created_at": lead["created_at"].isoformat(),
        "attributes": {c: (None if pd.isna(lead[c]) else lead[c]) for c in crm.attributes},
        "events": [{"occurred_at": t.isoformat(), "event_type": str(k)}
                   for t, k in zip(ev["occurred_at"], ev["event_type"], strict=True)],
    }
    as_of = pd.Timestamp(config.as_of_dates[-1]).isoformat()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        features_from_payload(payload, spec, as_of)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _uv() -> str:
    """uv on the PATH, else the one `make env` bootstraps into .uv-bootstrap/."""
    found = shutil.which("uv") or str(Path(__file__).resolve().parents[1] / ".uv-bootstrap" / "bin" / "uv")
    if not Path(found).exists():
        raise SystemExit("the featuretools peer needs uv (run `make env` first), or pass --skip-featuretools")
    return found


def featuretools_python(out: Path) -> Path:
    """A separate venv with featuretools, pinned (installed from the package registry on the first run)."""
    venv = out / "featuretools-venv"
    python = venv / "bin" / "python"
    uv = _uv()
    if not python.exists():
        subprocess.run([uv, "venv", "-q", "--python", "3.11", str(venv)], check=True)
    subprocess.run([uv, "pip", "install", "-q", "--python", str(python), *FEATURETOOLS_REQUIREMENTS], check=True)
    return python


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--events-per-lead", type=float, default=50.0,
                        help="passed to the generator (50 gave ~5M events for 100k leads)")
    parser.add_argument("--snapshots", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ft-sample-leads", type=int, default=2_000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench-out" / "features")
    parser.add_argument("--skip-featuretools", action="store_true")
    parser.add_argument("--child", choices=["build"], help=argparse.SUPPRESS)
    parser.add_argument("--sample", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    data_dir = args.out / "data"
    if args.child == "build":
        child_build(data_dir, args.snapshots, args.sample)
        return

    t0 = time.perf_counter()
    crm = generate_crm(args.leads, args.events_per_lead, args.seed)
    write_parquet(crm, data_dir)
    print(f"data: {len(crm.leads):,} leads, {len(crm.events):,} events, {len(crm.outcomes):,} outcome rows "
          f"(generated + written in {time.perf_counter() - t0:.1f}s) -> {data_dir}")
    config = snapshot_config(crm, args.snapshots)
    print(f"snapshots: {args.snapshots} month starts {config.as_of_dates[0]:%Y-%m-%d} .. "
          f"{config.as_of_dates[-1]:%Y-%m-%d}; machine: {os.cpu_count()} cores")

    full = run_child(["--child", "build", "--out", str(args.out), "--snapshots", str(args.snapshots)])
    s = full["summary"]
    print(f"leadscore training set: {full['rows']:,} rows x {full['features']} features "
          f"(positives {s['positives']:,}, censored {s['censored']:,})")
    print(f"  build wall time {full['build_seconds']:.1f}s (+ Parquet load {full['load_seconds']:.1f}s), "
          f"peak RSS {full['peak_rss_mib'] / 1024:.2f} GiB  [targets: < 120s, < 6 GiB]")

    latency = payload_latency(crm, config)
    print(f"single-lead payload path (200 events): median {latency * 1e3:.3f} ms  [target ~1 ms]")

    if args.skip_featuretools:
        return
    rng = np.random.default_rng(args.seed)
    sample_ids = rng.choice(crm.leads["lead_id"].to_numpy(), min(args.ft_sample_leads, len(crm.leads)),
                            replace=False)
    frame = build_training_set(read_parquet(data_dir, sample_ids), config).frame
    cutoff = frame[["lead_id", "as_of"]].rename(columns={"as_of": "time"})
    sample_path = args.out / "cutoff_sample.parquet"
    cutoff.to_parquet(sample_path, index=False)
    ours = run_child(["--child", "build", "--out", str(args.out), "--snapshots", str(args.snapshots),
                      "--sample", str(sample_path)])
    python = featuretools_python(args.out)
    runner = args.out / "featuretools_runner.py"
    runner.write_text(FEATURETOOLS_RUNNER)
    proc = subprocess.run([str(python), str(runner), str(data_dir), str(sample_path), ",".join(map(str, WINDOWS))],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        print(f"featuretools failed:\n{proc.stderr[-3000:]}")
        return
    ft_result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"sample: {len(sample_ids):,} leads, {len(cutoff):,} (lead, as_of) pairs")
    print(f"  featuretools DFS: {ft_result['seconds']:.1f}s, {ft_result['features']} features "
          f"(3 windows x per-type counts + time since last)")
    print(f"  leadscore on the same sample: {ours['build_seconds']:.2f}s, {ours['features']} features "
          f"-> {ft_result['seconds'] / ours['build_seconds']:.0f}x faster")
    extrapolated = ft_result["seconds"] * full["rows"] / max(len(cutoff), 1)
    print(f"featuretools extrapolated to the full {full['rows']:,} pairs (linear in pairs): "
          f"{extrapolated:.0f}s vs leadscore {full['build_seconds']:.1f}s measured "
          f"-> ratio {extrapolated / full['build_seconds']:.0f}x  [target >= 10x]")


if __name__ == "__main__":
    main()
