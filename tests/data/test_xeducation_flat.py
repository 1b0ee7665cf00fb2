"""Flat mode on the real X Education export, loaded with nothing but configs/xeducation.yaml."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from features.contract import FlatConfig, ValidationReport
from features.flat import load_flat
from features.schema import FlatData
from leadscore.project import load_project

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "xeducation.yaml"
LEAKY = ["Tags", "Lead Quality", "Lead Profile", "Asymmetrique Activity Index", "Asymmetrique Profile Index",
         "Last Activity", "Last Notable Activity"]
SCORES = ["Asymmetrique Activity Score", "Asymmetrique Profile Score"]


@pytest.fixture(scope="module")
def config() -> FlatConfig:
    loaded = load_project(CONFIG).data
    assert isinstance(loaded, FlatConfig)
    return loaded


@pytest.fixture(scope="module")
def loaded(config: FlatConfig, real_data_dir: Path) -> tuple[FlatData, ValidationReport]:
    """The export loaded once for the module's tests (they only read it)."""
    return load_flat(config)


@pytest.fixture(scope="module")
def raw(real_data_dir: Path) -> pd.DataFrame:
    return pd.read_csv(real_data_dir / "xeducation_leads.csv")


def test_config_points_at_the_real_file(config: FlatConfig, real_data_dir: Path) -> None:
    assert Path(config.source.path).resolve() == (real_data_dir / "xeducation_leads.csv").resolve()


def test_loads_every_lead_with_the_label_rate(loaded, raw: pd.DataFrame) -> None:
    data, report = loaded
    frame = data.frame
    assert report.ok and report.rows_in == {"flat": len(raw)} and len(frame) == len(raw) == 9237
    assert frame["lead_id"].is_unique and frame["lead_id"].tolist() == raw["Prospect ID"].tolist()
    assert frame["label"].mean() == pytest.approx(raw["Converted"].mean()) == pytest.approx(0.385, abs=0.001)


def test_select_became_missing(loaded, raw: pd.DataFrame) -> None:
    data, _ = loaded
    frame = data.frame
    had_select = [c for c in raw.columns if (raw[c] == "Select").any() and c in frame.columns]
    assert "Specialization" in had_select and "City" in had_select
    for column in had_select:
        assert not (frame[column] == "Select").any()
        assert frame[column].isna().sum() == raw[column].isna().sum() + (raw[column] == "Select").sum()


def test_leaky_columns_absent_and_scores_aside(loaded) -> None:
    data, report = loaded
    assert not set(LEAKY) & set(data.frame.columns)
    assert not set(LEAKY) & set(data.features)
    assert set(LEAKY) <= set(report.ignored_columns["flat"])
    assert "Lead Number" not in data.frame.columns
    assert data.score_columns == SCORES and not set(SCORES) & set(data.features)
    assert data.frame[SCORES].notna().mean().round(2).tolist() == [0.54, 0.54]
    assert {"TotalVisits", "Total Time Spent on Website", "Page Views Per Visit"} <= set(data.numeric_features)
    assert data.families["TotalVisits"] == "engagement" and data.families["Lead Source"] == "fit"
    assert set(data.families) == set(data.features)


def test_leaky_fields_can_be_put_back(config: FlatConfig) -> None:
    data, _ = load_flat(config.unignore("Tags", "Lead Quality"))
    assert {"Tags", "Lead Quality"} <= set(data.categorical_features)


def test_a_lead_sent_with_the_exports_select_scores_as_its_row_of_the_table(config: FlatConfig, loaded,
                                                                            raw: pd.DataFrame) -> None:
    """The spec keeps the project's markers: the export's rows sent to the endpoint as written ("Select"
    in the dropdown answers), without a ``created_at`` (a flat model reads none), get the feature rows the table
    gave them (checks and payload path)."""
    from datetime import datetime

    import numpy as np

    from features.build import build_flat_training_set, features_from_payloads
    from serving.schemas import LeadIn, check_leads

    data, _ = loaded
    training = build_flat_training_set(data)
    spec = training.spec
    assert data.missing_values == ("", "Select") and spec.missing_values_ == ["", "Select"]
    rows = [i for i in range(len(raw)) if (raw.iloc[i] == "Select").sum() >= 2][:200]
    assert len(rows) == 200
    leads = [LeadIn(lead_id=str(raw.at[i, config.id_column]),
                    attributes={c: raw.at[i, c] for c in spec.fit_columns if not pd.isna(raw.at[i, c])})
             for i in rows]
    assert sum(v == "Select" for lead in leads for v in lead.attributes.values()) >= 400
    warnings = check_leads(leads, datetime(2026, 3, 1), spec)
    assert not any("unseen" in w for notes in warnings for w in notes)
    got = features_from_payloads([lead.payload() for lead in leads], spec, datetime(2026, 3, 1))
    expected = spec.to_matrix(training.frame.iloc[rows])
    np.testing.assert_array_equal(got, expected)
