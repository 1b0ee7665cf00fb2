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
