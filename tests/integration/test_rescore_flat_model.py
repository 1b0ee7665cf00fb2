"""A model trained on a flat export (one row per lead, no dates) has no CRM features: `leadscore rescore` refuses it
up front, naming the mode, instead of recording a run that fails in its first partition with the feature spec's
internal message ("spec kind is 'flat': CRM features need a spec fitted on CRMData")."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from typer.testing import CliRunner

from leadscore.cli import app
from tests.serving_fixtures import export_champion, train_small_flat_champion


def test_rescore_refuses_a_flat_model_before_recording_a_run(tmp_path: Path) -> None:
    export_champion(train_small_flat_champion(), tmp_path / "models", "1")
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
