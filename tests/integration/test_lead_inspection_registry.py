"""leadscore.inspection against a real MLflow store: nothing registered yet is no error."""

from __future__ import annotations

from pathlib import Path

from leadscore.inspection import registered_cores


def test_a_store_without_a_registered_model_gives_no_cores(tmp_path: Path) -> None:
    """A first run whose registration strict leakage mode refused leaves no registered model: the retrain
    notebook's inspection cell ended in a LookupError traceback there (Run All stopped before the model card)."""
    assert registered_cores(f"sqlite:///{tmp_path / 'mlflow.db'}") == {}
