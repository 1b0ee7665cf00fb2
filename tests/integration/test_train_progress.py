"""`leadscore train` reports how far the training-set build has come on a long build (it sat silent)."""

from __future__ import annotations

from pathlib import Path

from features.contract import DataConfig, SourceConfig
from features.spec import FeatureConfig
from leadscore.project import ProjectConfig
from leadscore.synth import SynthConfig, write_synthetic
from training.workflow import load_training_set


def test_the_training_set_build_reports_its_lead_blocks(tmp_path: Path, monkeypatch) -> None:
    import training.workflow

    write_synthetic(SynthConfig(n_leads=300, seed=2, events_per_lead=5), str(tmp_path), "parquet", overwrite=True)
    source = SourceConfig(kind="parquet", leads=str(tmp_path / "leads.parquet"),
                          events=str(tmp_path / "events.parquet"), outcomes=str(tmp_path / "outcomes.parquet"))
    project = ProjectConfig(name="progress", data=DataConfig(source=source), features=FeatureConfig(block_leads=100))
    monkeypatch.setattr(training.workflow, "BUILD_REPORT_SECONDS", 0.0)
    said: list[str] = []
    load_training_set(project, said.append)
    reports = [line for line in said if "lead blocks" in line]
    assert reports and reports[0].strip().startswith("training set: 1 of 3 lead blocks")


def test_train_says_and_records_the_validation_notes(tmp_path: Path) -> None:
    """The contract's notes on doubtful input (a column nearly all numbers read as categories, an identifier, a
    lead created in 1900 ...) were printed by `validate` only: `train` trained on the data without a word of
    them. Now they are said as the data loads (before any refusal) and kept in the run's notes and card."""
    import pandas as pd

    from training.config import BoosterConfig, TrainingConfig
    from training.workflow import fit_training_set

    write_synthetic(SynthConfig(n_leads=300, seed=2, events_per_lead=5), str(tmp_path), "parquet", overwrite=True)
    leads = pd.read_parquet(tmp_path / "leads.parquet")
    leads["employees"] = leads["employees"].map(lambda v: None if pd.isna(v) else f"{v:g}")
    leads.loc[leads["employees"].notna().idxmax(), "employees"] = "lots"  # one text among numbers: inferred categorical, noted
    leads.to_parquet(tmp_path / "leads.parquet")
    source = SourceConfig(kind="parquet", leads=str(tmp_path / "leads.parquet"),
                          events=str(tmp_path / "events.parquet"), outcomes=str(tmp_path / "outcomes.parquet"))
    project = ProjectConfig(name="notes", data=DataConfig(source=source))
    said: list[str] = []
    training_set, data, report = load_training_set(project, said.append)
    note = next(n for n in report.notes if n.startswith("leads.employees: inferred categorical"))
    assert f"note: {note}" in said and said.index(f"note: {note}") < said.index("building the training set")
    config = TrainingConfig(booster=BoosterConfig(max_rounds=20), bootstrap_samples=0, make_plots=False,
                            validation_fraction=0.3)
    result = fit_training_set(training_set, data, config, report=report)
    assert f"data: {note}" in result.notes
    assert "## Notes\n" in result.model_card and f"- data: {note}" in result.model_card
