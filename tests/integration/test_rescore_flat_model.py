"""A model trained on a flat export (one row per lead, no dates) has no CRM features: `leadscore rescore` refuses it
up front, naming the mode, instead of recording a run that fails in its first partition with the feature spec's
internal message ("spec kind is 'flat': CRM features need a spec fitted on CRMData")."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa
from typer.testing import CliRunner

from features.build import build_flat_training_set
from features.contract import FlatConfig
from features.flat import validate_flat
from leadscore.cli import app
from tests.serving_fixtures import export_champion
from training.config import BoosterConfig
from training.model import SalesReadinessModel
from training.sales_readiness import feature_columns_of


def _flat_champion(models_dir: Path) -> None:
    rng = np.random.default_rng(0)
    n = 400
    visits = rng.poisson(3, n)
    raw = pd.DataFrame({"Lead": [f"L{i}" for i in range(n)], "Visits": visits,
                        "Source": rng.choice(["ads", "organic"], n),
                        "Converted": (rng.random(n) < 0.2 + 0.1 * (visits > 3)).astype(int)})
    flat, _ = validate_flat(raw, FlatConfig(source={"path": "unused.csv"}, id_column="Lead",
                                            label_column="Converted"))
    ts = build_flat_training_set(flat)
    X = ts.frame[feature_columns_of(ts.frame, ts.spec)]
    y = ts.frame["converted_within_h"].to_numpy()
    model = SalesReadinessModel(BoosterConfig(max_rounds=20, early_stopping_rounds=20, num_threads=1)).fit(
        X.iloc[:300], y[:300], X.iloc[300:], y[300:], spec=ts.spec)
    export_champion(model, models_dir, "1")


def test_rescore_refuses_a_flat_model_before_recording_a_run(tmp_path: Path) -> None:
    _flat_champion(tmp_path / "models")
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    engine = sa.create_engine(url)  # the flat rows as a CRM leads table, as a user would load them
    pd.DataFrame({"lead_id": range(1, 51), "created_at": "2026-01-01T00:00:00", "Visits": 2, "Source": "ads"}) \
        .to_sql("leads", engine, index=False)
    pd.DataFrame({"lead_id": pd.Series(dtype="int64"), "occurred_at": pd.Series(dtype=str),
                  "event_type": pd.Series(dtype=str)}).to_sql("events", engine, index=False)
    pd.DataFrame({"lead_id": pd.Series(dtype="int64"), "converted_at": pd.Series(dtype=str)}) \
        .to_sql("outcomes", engine, index=False)
    engine.dispose()
    result = CliRunner().invoke(app, ["rescore", "--db", url, "--model-dir", str(tmp_path / "models")],
                                env={"MLFLOW_TRACKING_URI": "", "COLUMNS": "200"})
    assert result.exit_code != 0
    words = " ".join(result.output.split())
    assert "trained on a flat export" in words and "POST /score" in words, words
    assert "CRMData" not in words
    with sa.create_engine(url).connect() as connection:
        tables = sa.inspect(connection).get_table_names()
    # nothing half-written: no run recorded and no empty score table left in the user's database
    assert sorted(tables) == ["events", "leads", "outcomes"], tables
