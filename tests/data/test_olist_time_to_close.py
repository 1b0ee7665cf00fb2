"""The time-to-close model on the real Olist marketing funnel beats Kaplan-Meier (C-index and IBS).

Loaded through the data contract with ``configs/olist.yaml`` (MQLs as leads, closed deals' won
date as the conversion, no events table); the data folder and the quarantine folder are pointed
at the test's own locations.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from features.build import build_training_set
from features.loading import load_data
from leadscore.project import load_project
from training.survival_evaluation import (
    COX_NAME,
    KM_NAME,
    MODEL_NAME,
    TimeToCloseResult,
    train_and_evaluate_time_to_close,
)

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "olist.yaml"


@pytest.fixture(scope="module")
def olist(real_data_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    project = load_project(CONFIG)
    source = project.data.source.model_copy(update={
        "leads": str(real_data_dir / "olist_mqls.csv"), "outcomes": str(real_data_dir / "olist_closed_deals.csv")})
    quarantine = tmp_path_factory.mktemp("olist-quarantine")
    data_config = project.data.model_copy(update={"source": source, "quarantine_dir": quarantine})
    data, report = load_data(data_config)
    return project, data, report, quarantine


@pytest.fixture(scope="module")
def result(olist) -> TimeToCloseResult:
    project, data, _, _ = olist
    config = project.time_to_close.model_copy(update={"make_plots": False})
    return train_and_evaluate_time_to_close(build_training_set(data, project.features), config)


def test_dirty_rows_are_quarantined_not_fatal(olist) -> None:
    _, data, report, quarantine = olist
    assert report.rows_in == {"leads": 8000, "events": 0, "outcomes": 842}
    # the deal won before the MQL's first contact, and its lead with it
    assert report.rows_quarantined["outcomes"] >= 1
    assert report.rows_quarantined["leads"] == report.rows_quarantined["outcomes"]
    rows = pd.read_csv(quarantine / "outcomes.csv")
    assert rows["_reason"].str.contains("converted_before_created").all()
    assert len(data.leads) + report.rows_quarantined["leads"] == 8000
    assert len(data.events) == 0
    assert set(data.outcomes.columns) == {"lead_id", "converted_at"}  # no leaky deal column is read


def test_never_won_leads_are_censored_at_the_data_end(olist) -> None:
    project, data, _, _ = olist
    training = build_training_set(data, project.features)
    frame = training.frame
    assert training.data_end == data.outcomes["converted_at"].max()
    open_rows = frame[frame["event"] == 0]
    end = (training.data_end - open_rows["as_of"]).dt.total_seconds() / 86_400
    pd.testing.assert_series_equal(open_rows["days_observed"], end, check_names=False)


def test_model_beats_kaplan_meier_on_olist(result: TimeToCloseResult) -> None:
    table = result.comparison
    model, km = table.loc[MODEL_NAME], table.loc[KM_NAME]
    assert model["harrell_c"] > km["harrell_c"] + 0.1, table
    assert model["uno_c"] > km["uno_c"] + 0.1, table
    assert model["ibs"] < km["ibs"], table
    assert COX_NAME in table.index  # the Cox peer is scored on the same rows
    assert result.metrics["n_test_events"] >= 300
