"""Execute notebooks/01_retrain.ipynb (thin: library calls only) on a small synthetic CRM."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.integration.mlflow_support import write_project

pytestmark = pytest.mark.slow
NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "01_retrain.ipynb"


def test_retrain_notebook_runs_and_promotes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write_project(tmp_path / "project", name="notebook-test")
    monkeypatch.setenv("LEADSCORE_CONFIG", str(config))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("LEADSCORE_PROMOTE", "1")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}},
                   env=dict(os.environ)).execute()
    text = "\n".join(
        "".join(out.get("text", "")) + "".join(out.get("data", {}).get("text/plain", ""))
        for cell in notebook.cells if cell.cell_type == "code" for out in cell.get("outputs", [])
    )
    assert "lightgbm (calibrated)" in text and "Leakage alarm" in text
    assert "registered version 1" in text and "PROMOTED" in text
    images = sum("image/png" in out.get("data", {}) for cell in notebook.cells if cell.cell_type == "code"
                 for out in cell.get("outputs", []))
    assert images >= 5
    assert (config.parent / "mlflow.db").is_file()
