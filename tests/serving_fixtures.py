"""Helpers for the serving tests: a small trained champion, its export folder, a real server."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd

from features.build import build_training_set
from features.schema import CREATED_AT, EVENT_TYPE, LEAD_ID, OCCURRED_AT, CRMData
from features.spec import FeatureConfig
from leadscore.synth import SynthConfig, generate
from training.config import BoosterConfig
from training.evaluation import time_ordered_split
from training.model import SalesReadinessModel
from training.sales_readiness import feature_columns_of

ROOT = Path(__file__).resolve().parents[1]
MODEL_NAME = "lead-conversion"
AS_OF = pd.Timestamp("2026-03-01")


@dataclass
class TrainedChampion:
    model: SalesReadinessModel
    crm: CRMData
    features: pd.DataFrame


def train_small_champion(n_leads: int = 1500, seed: int = 1, max_rounds: int = 80) -> TrainedChampion:
    """A compact calibrated model on a small synthetic CRM (a few seconds)."""
    crm = generate(SynthConfig(n_leads=n_leads, seed=seed)).to_crm()
    ts = build_training_set(crm, FeatureConfig())
    frame = ts.frame[ts.frame["converted_within_h"].notna()].reset_index(drop=True)
    split = time_ordered_split(frame["as_of"], 90)
    X = frame[feature_columns_of(frame, ts.spec)]
    y = frame["converted_within_h"].to_numpy()
    booster = BoosterConfig(max_rounds=max_rounds, early_stopping_rounds=max_rounds, num_threads=1)
    model = SalesReadinessModel(booster, horizon_days=90).fit(
        X.iloc[split.train], y[split.train], X.iloc[split.valid], y[split.valid], spec=ts.spec)
    return TrainedChampion(model, crm, X)


def export_champion(model: SalesReadinessModel, models_dir: Path, version: str, mql_cutoff: int = 10) -> Path:
    """The layout of ``leadscore models export``: models/<name>/ + champion.json + the saved model."""
    folder = models_dir / MODEL_NAME
    model.save(folder / "model")
    meta = {"name": MODEL_NAME, "version": version, "run_id": f"run-{version}", "training_date": "2026-06-30",
            "horizon_days": 90, "threshold": mql_cutoff}
    (folder / "champion.json").write_text(json.dumps(meta))
    return folder


def payloads_from_crm(crm: CRMData, lead_ids: list[Any], as_of: pd.Timestamp) -> list[dict[str, Any]]:
    """The JSON payloads of some CRM leads: attributes + events before as_of."""
    leads = crm.leads.set_index(LEAD_ID).loc[lead_ids]
    events = crm.events[(crm.events[LEAD_ID].isin(lead_ids)) & (crm.events[OCCURRED_AT] < as_of)]
    by_lead = {k: g for k, g in events.groupby(LEAD_ID)}
    out = []
    for lead_id, row in leads.iterrows():
        attributes = {}
        for col in crm.attributes:
            value = row[col]
            if pd.isna(value):
                continue
            attributes[col] = float(value) if col in crm.numeric_attributes else str(value)
        group = by_lead.get(lead_id, events.iloc[:0])
        out.append({
            "lead_id": int(lead_id),
            "created_at": pd.Timestamp(row[CREATED_AT]).isoformat(),
            "attributes": attributes,
            "events": [{"occurred_at": pd.Timestamp(t).isoformat(), "event_type": str(k)}
                       for t, k in zip(group[OCCURRED_AT], group[EVENT_TYPE], strict=True)],
        })
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    process: subprocess.Popen
    url: str
    log: Path

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


def start_server(env: dict[str, str], log: Path, wait_seconds: float = 90.0) -> Server:
    """``bentoml serve serving.service:LeadScoringService`` on a free 127.0.0.1 port, ready or failed."""
    port = free_port()
    bentoml = Path(sys.executable).parent / "bentoml"
    handle = log.open("w")
    process = subprocess.Popen(
        [str(bentoml), "serve", "serving.service:LeadScoringService", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT, env={**os.environ, **env}, stdout=handle, stderr=subprocess.STDOUT,
    )
    server = Server(process, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"bentoml serve exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{server.url}/readyz", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    server.stop()
    raise RuntimeError(f"server not ready after {wait_seconds}s:\n{log.read_text()[-3000:]}")


def batch_reference(champion: TrainedChampion, lead_ids: list[Any], as_of: pd.Timestamp) -> np.ndarray:
    """Row positions of lead_ids in crm.leads (for scoring_matrix(..., eligible_only=False))."""
    position = pd.Index(champion.crm.leads[LEAD_ID]).get_indexer(lead_ids)
    assert (position >= 0).all()
    return position
