"""A CRM source without an events table and with per-table timestamp formats (the Olist shape)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from features.build import build_training_set
from features.contract import ContractError
from features.loading import load_data
from features.spec import FeatureConfig
from leadscore.project import ProjectConfigError, load_project

LEADS = pd.DataFrame({
    "mql_id": ["a", "b", "c", "d"],
    "first_contact_date": ["01-02-2018", "15-02-2018", "20-03-2018", "02-04-2018"],
    "origin": ["social", "email", None, "social"],
})
DEALS = pd.DataFrame({
    "mql_id": ["a", "c", "d"],
    "won_date": ["26-02-2018 19:58", "19-03-2018 10:00", "30-04-2018 08:15"],  # c: won before first contact
    "seller_id": ["s1", "s2", "s3"],  # leakage column: never read
})


def _config(tmp_path: Path, **overrides) -> Path:
    LEADS.to_csv(tmp_path / "mqls.csv", index=False)
    DEALS.to_csv(tmp_path / "deals.csv", index=False)
    document = {
        "mode": "crm",
        "source": {"kind": "csv", "leads": "mqls.csv", "events": None, "outcomes": "deals.csv"},
        "columns": {"leads": {"lead_id": "mql_id", "created_at": "first_contact_date"},
                    "outcomes": {"lead_id": "mql_id", "converted_at": "won_date"}},
        "timestamp_format": {"leads": "%d-%m-%Y", "outcomes": "%d-%m-%Y %H:%M"},
        "policy": "quarantine",
        "quarantine_dir": "quarantine",
        **overrides,
    }
    path = tmp_path / "data.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def test_absent_events_and_per_table_formats_load(tmp_path: Path) -> None:
    config = load_project(_config(tmp_path)).data
    assert config.source.events is None and config.source.location("events") is None
    data, report = load_data(config)
    assert len(data.events) == 0 and list(data.events.columns[:3]) == ["lead_id", "occurred_at", "event_type"]
    assert data.leads["created_at"].tolist() == pd.to_datetime(["2018-02-01", "2018-02-15", "2018-04-02"]).tolist()
    assert "seller_id" not in data.outcomes.columns
    # the win before first contact is quarantined with its lead; nothing else is touched
    assert report.rows_quarantined == {"leads": 1, "events": 0, "outcomes": 1}
    assert data.leads["lead_id"].tolist() == ["a", "b", "d"]
    assert data.outcomes["converted_at"].tolist() == [pd.Timestamp("2018-02-26 19:58"), pd.Timestamp("2018-04-30 08:15")]
    quarantined = pd.read_csv(tmp_path / "quarantine" / "outcomes.csv")
    assert quarantined["mql_id"].tolist() == ["c"]
    assert quarantined["_reason"].str.contains("converted_before_created").all()


def test_training_set_without_events_has_survival_columns(tmp_path: Path) -> None:
    data, _ = load_data(load_project(_config(tmp_path)).data)
    training = build_training_set(data, FeatureConfig(cadence="SMS"))
    frame = training.frame
    assert {"days_observed", "event", "lead_age_days", "origin"} <= set(frame.columns)
    a = frame[frame["lead_id"] == "a"]  # created Feb 1, won Feb 26 19:58: snapshots Feb 15 (event 11.8 days later)
    assert a["as_of"].tolist() == [pd.Timestamp("2018-02-15")]
    assert a["event"].tolist() == [1]
    assert a["days_observed"].iloc[0] == pytest.approx(11 + 19 / 24 + 58 / 1440)


def test_strict_policy_names_the_dirty_row(tmp_path: Path) -> None:
    config = load_project(_config(tmp_path, policy="strict")).data
    with pytest.raises(ContractError, match=r"outcomes\.converted_at: converted_before_created: 1 row; e\.g\. row=1, lead_id=c"):
        load_data(config)


def test_one_format_for_the_wrong_table_is_a_clear_error(tmp_path: Path) -> None:
    path = _config(tmp_path, timestamp_format={"deals": "%d-%m-%Y"})
    with pytest.raises(ProjectConfigError) as caught:
        load_project(path)
    assert str(caught.value).startswith(f"{path}: timestamp_format: unknown table(s) ['deals']"), caught.value
    # a single format for both tables cannot parse the won dates: reported per row, not a crash
    data_config = load_project(_config(tmp_path, timestamp_format="%d-%m-%Y", policy="strict")).data
    with pytest.raises(ContractError, match="outcomes.converted_at: wrong_type: 3 rows"):
        load_data(data_config)
