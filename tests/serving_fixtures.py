"""Helpers for the serving tests: a small trained champion, its export folder, a real server."""

from __future__ import annotations

import functools
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd

from features.build import build_flat_training_set, build_training_set
from features.contract import DEFAULT_MISSING_VALUES, FlatConfig
from features.flat import validate_flat
from features.schema import CREATED_AT, EVENT_TYPE, LEAD_ID, OCCURRED_AT, CRMData
from features.snapshots import DAYS_OBSERVED, EVENT_OBSERVED
from features.spec import FeatureConfig
from leadscore.synth import SynthConfig, generate
from training.config import BoosterConfig
from training.evaluation import time_ordered_split
from training.model import SalesReadinessModel
from training.sales_readiness import feature_columns_of
from training.survival_config import TimeToCloseConfig
from training.time_to_close import TimeToCloseModel

ROOT = Path(__file__).resolve().parents[1]
MODEL_NAME = "lead-conversion"
TIME_TO_CLOSE_NAME = "lead-time-to-close"
AS_OF = pd.Timestamp("2026-03-01")


@dataclass
class TrainedChampion:
    model: SalesReadinessModel
    crm: CRMData
    features: pd.DataFrame
    labels: np.ndarray  # converted within the horizon, one per row of ``features``
    training_set: Any = None  # the features.build.TrainingSet both models are fitted on


@functools.cache
def train_small_champion(n_leads: int = 1500, seed: int = 1, max_rounds: int = 80,
                         missing_values: tuple[str, ...] = DEFAULT_MISSING_VALUES) -> TrainedChampion:
    """A compact calibrated model on a small synthetic CRM (a few seconds; cached per process: read-only).
    ``missing_values``: the markers of the contract the CRM was read through (its spec keeps them)."""
    crm = replace(generate(SynthConfig(n_leads=n_leads, seed=seed)).to_crm(), missing_values=missing_values)
    ts = build_training_set(crm, FeatureConfig())
    frame = ts.frame[ts.frame["converted_within_h"].notna()].reset_index(drop=True)
    split = time_ordered_split(frame["as_of"], 90)
    X = frame[feature_columns_of(frame, ts.spec)]
    y = frame["converted_within_h"].to_numpy()
    booster = BoosterConfig(max_rounds=max_rounds, early_stopping_rounds=max_rounds, num_threads=1)
    model = SalesReadinessModel(booster, horizon_days=90).fit(
        X.iloc[split.train], y[split.train], X.iloc[split.valid], y[split.valid], spec=ts.spec)
    return TrainedChampion(model, crm, X, y, ts)


def category_levels_that_differ(champion: TrainedChampion, column: str, rows: int = 30) -> tuple[str, str]:
    """Two training categories of ``column`` that give the same lead (the first of ``rows`` feature rows
    where any do) different probabilities: the champion's score depends on ``column``. Asserts there are
    such (a champion on which every category scores alike cannot show a break in category handling)."""
    model = champion.model
    levels = [str(v) for v in model.categories_[column]]
    frame = champion.features.head(rows)
    by_level = np.array([model.predict_proba(frame.assign(**{column: level})) for level in levels])
    differs = np.flatnonzero(by_level.max(axis=0) > by_level.min(axis=0))
    assert differs.size, f"the champion scores every category of {column!r} alike (no split on it)"
    row = by_level[:, differs[0]]
    return levels[int(row.argmin())], levels[int(row.argmax())]


@functools.cache
def train_small_flat_champion(n_leads: int = 400, seed: int = 0) -> SalesReadinessModel:
    """A compact calibrated model on a small flat export (one row per lead: ``Lead``, ``Visits``, ``Source``,
    ``Converted``; no dates); cached per process: read-only."""
    rng = np.random.default_rng(seed)
    visits = rng.poisson(3, n_leads)
    raw = pd.DataFrame({"Lead": [f"L{i}" for i in range(n_leads)], "Visits": visits,
                        "Source": rng.choice(["ads", "organic"], n_leads),
                        "Converted": (rng.random(n_leads) < 0.2 + 0.1 * (visits > 3)).astype(int)})
    flat, _ = validate_flat(raw, FlatConfig(source={"path": "unused.csv"}, id_column="Lead",
                                            label_column="Converted"))
    ts = build_flat_training_set(flat)
    X = ts.frame[feature_columns_of(ts.frame, ts.spec)]
    y = ts.frame["converted_within_h"].to_numpy()
    train = n_leads * 3 // 4
    booster = BoosterConfig(max_rounds=20, early_stopping_rounds=20, num_threads=1)
    return SalesReadinessModel(booster).fit(X.iloc[:train], y[:train], X.iloc[train:], y[train:], spec=ts.spec)


@functools.cache
def train_small_time_to_close(n_leads: int = 1500, seed: int = 1, max_rounds: int = 60,
                              linear_age_bands: tuple[float, ...] = ()) -> TimeToCloseModel:
    """A time-to-close model on the training set of ``train_small_champion(n_leads, seed)`` (same spec)."""
    ts = train_small_champion(n_leads, seed).training_set
    frame = ts.frame
    X = frame[feature_columns_of(frame, ts.spec)]
    config = TimeToCloseConfig(booster=BoosterConfig(max_rounds=max_rounds, early_stopping_rounds=max_rounds,
                                                     num_threads=1), linear_age_bands=linear_age_bands)
    return TimeToCloseModel(config).fit(X, frame[DAYS_OBSERVED].to_numpy(dtype=float),
                                        frame[EVENT_OBSERVED].to_numpy().astype(bool), spec=ts.spec,
                                        num_boost_round=max_rounds)


def export_time_to_close(model: TimeToCloseModel, models_dir: Path, version: str) -> Path:
    """``leadscore models export --model-name lead-time-to-close``'s layout."""
    folder = models_dir / TIME_TO_CLOSE_NAME
    model.save(folder / "model")
    meta = {"name": TIME_TO_CLOSE_NAME, "version": version, "run_id": f"ttc-run-{version}",
            "training_date": "2026-06-30", "horizon_days": model.horizon_days}
    (folder / "champion.json").write_text(json.dumps(meta))
    return folder


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


def score_schema(spec: dict[str, Any], status: str | None = None) -> dict[str, Any]:
    """The ``POST /score`` request (``status`` None) or answer schema of an OpenAPI document (as JSON),
    its ``#/components/...`` references resolvable (for ``jsonschema.validate``)."""
    post = spec["paths"]["/score"]["post"]
    holder = post["requestBody"] if status is None else post["responses"][status]
    return {**holder["content"]["application/json"]["schema"], "components": spec["components"]}


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


def start_server(env: dict[str, str], log: Path, wait_seconds: float = 90.0, ready: bool = True) -> Server:
    """``leadscore serve`` (which becomes ``bentoml serve serving.service:LeadScoringService``) on a free
    127.0.0.1 port, configured by the ``LEADSCORE_*`` / ``MLFLOW_*`` variables in ``env``.

    Returns once ``/readyz`` answers 200 (``ready``) or, with ``ready=False``, once ``/livez`` does
    (the service is up, with or without a model); raises if the process dies or time runs out.
    """
    port = free_port()
    env = {"BENTOML_HOME": str(log.parent / "bentoml"), **env}  # the server's BentoML home under the test's folder
    handle = log.open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "leadscore.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT, env={**os.environ, **env}, stdout=handle, stderr=subprocess.STDOUT,
    )
    server = Server(process, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"bentoml serve exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{server.url}/{'readyz' if ready else 'livez'}", timeout=1).status_code == 200:
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


class ChampionRegistry:
    """A real MLflow tracking store + model registry in a directory, as the training pipeline fills it.

    ``register`` logs a model as the pyfunc the training run logs and registers it through
    :func:`training.registry.register_challenger` (version tags ``mql_cutoff``, ``trained_at``);
    ``promote`` points the ``champion`` alias at a version, as ``leadscore models promote`` does.
    """

    def __init__(self, directory: Path) -> None:
        from mlflow import MlflowClient

        from training.tracking import ensure_experiment

        directory.mkdir(parents=True, exist_ok=True)
        self.uri = f"sqlite:///{directory / 'mlflow.db'}"
        self.client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        self.experiment_id = ensure_experiment(self.client, "serving-tests", (directory / "artifacts").as_uri())

    def register(self, model: SalesReadinessModel, features: pd.DataFrame, mql_cutoff: int, trained_at: str) -> str:
        """Log + register ``model``; returns the new version number."""
        import mlflow

        from training.pyfunc import log_pyfunc_model
        from training.registry import register_challenger
        from training.tracking import LoggedRun

        previous = mlflow.get_tracking_uri()
        mlflow.set_tracking_uri(self.uri)
        try:
            with mlflow.start_run(experiment_id=self.experiment_id) as run:
                info = log_pyfunc_model(model, features.head(50))
            logged = LoggedRun(run.info.run_id, self.experiment_id, info.model_uri, identity={},
                               tags={"leadscore.trained_at": trained_at})
            version = register_challenger(self.client, logged, {"mql_cutoff": float(mql_cutoff)}, name=MODEL_NAME)
        finally:
            mlflow.set_tracking_uri(previous)
        return str(version.version)

    def register_time_to_close(self, model: TimeToCloseModel, features: pd.DataFrame, trained_at: str) -> str:
        """Log + register a time-to-close model as ``leadscore train --target time-to-close`` does."""
        import mlflow

        from training.survival_pyfunc import log_time_to_close_pyfunc
        from training.survival_tracking import register_time_to_close
        from training.tracking import LoggedRun

        previous = mlflow.get_tracking_uri()
        mlflow.set_tracking_uri(self.uri)
        try:
            with mlflow.start_run(experiment_id=self.experiment_id) as run:
                info = log_time_to_close_pyfunc(model, features[list(model.feature_columns_)])
            logged = LoggedRun(run.info.run_id, self.experiment_id, info.model_uri, identity={},
                               tags={"leadscore.trained_at": trained_at})
            version = register_time_to_close(self.client, logged, {"uno_c": 0.7}, name=TIME_TO_CLOSE_NAME)
        finally:
            mlflow.set_tracking_uri(previous)
        return str(version.version)

    def promote(self, version: str, name: str = MODEL_NAME) -> None:
        self.client.set_registered_model_alias(name, "champion", version)


def linear_tree_variant(champion: TrainedChampion, rounds: int = 20) -> SalesReadinessModel:
    """The champion refitted with LightGBM's ``linear_tree=True`` (same columns, spec and calibrator).

    A legitimate model that predicts, but for which LightGBM has no TreeSHAP: every explanation
    raises inside LightGBM ("not implemented for linear trees").
    """
    import copy

    import lightgbm as lgb

    from training.model import encode_features

    model = copy.copy(champion.model)
    encoded = encode_features(champion.features, model.feature_columns_, model.categories_)
    categorical = [j for j, c in enumerate(model.feature_columns_) if c in model.categories_]
    params = {**model.params_, "linear_tree": True, "metric": "binary_logloss"}
    model.booster_ = lgb.train(params, lgb.Dataset(encoded, label=champion.labels, categorical_feature=categorical),
                               num_boost_round=rounds)
    model.best_iteration_ = rounds
    return model
