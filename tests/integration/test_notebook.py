"""Execute notebooks/01_retrain.ipynb (thin: library calls only) on a small synthetic CRM."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from tests.integration.mlflow_support import write_project

pytestmark = pytest.mark.slow
NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "01_retrain.ipynb"


def _execute(cwd: Path, cells: int | None = None) -> nbformat.NotebookNode:
    """The notebook (its first ``cells`` cells) executed by a kernel whose working folder is ``cwd``."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    if cells is not None:
        notebook.cells = notebook.cells[:cells]
    # the kernel inherits this process's environment (LEADSCORE_*, MLFLOW_*)
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    return notebook


def _text(cells: list) -> str:
    """Text of the outputs (streams, stdout and stderr, and text/plain) of ``cells``."""
    return "\n".join(
        "".join(out.get("text", "")) + "".join(out.get("data", {}).get("text/plain", ""))
        for cell in cells if cell.cell_type == "code" for out in cell.get("outputs", [])
    )


def test_retrain_notebook_runs_and_promotes_from_the_notebooks_folder(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """As Jupyter opens it (kernel in notebooks/), on the project `make demo` writes (.demo/leadscore.yaml
    of the repository, here ``tmp_path``), no LEADSCORE_CONFIG."""
    config = write_project(tmp_path / ".demo", name="notebook-test")
    (tmp_path / "notebooks").mkdir()
    monkeypatch.delenv("LEADSCORE_CONFIG", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", raising=False)
    monkeypatch.setenv("LEADSCORE_PROMOTE", "1")
    notebook = _execute(tmp_path / "notebooks")
    text = _text(notebook.cells)
    assert "project 'notebook-test'" in text and str(tmp_path / ".demo" / "mlflow.db") in text
    assert "lightgbm (calibrated)" in text and "Leakage alarm" in text
    assert "registered version 1" in text and "PROMOTED" in text
    images = sum("image/png" in out.get("data", {}) for cell in notebook.cells if cell.cell_type == "code"
                 for out in cell.get("outputs", []))
    assert images >= 5
    assert (config.parent / "mlflow.db").is_file()
    # the promotion table once (explain() holds it); none of MLflow's routine lines or download bars
    promotion = [cell for cell in notebook.cells if "promote_challenger(target)" in cell.source]
    assert _text(promotion).count("challenger v1") == 1, _text(promotion)
    for noise in ("Downloading artifacts", "Passing a Python object as `python_model`",
                  "Failed to resolve installed pip version", "Creating initial MLflow database tables"):
        assert noise not in text, noise

    # from the repository root the same project is found
    assert "project 'notebook-test'" in _text(_execute(tmp_path, cells=3).cells)


def test_retrain_notebook_without_a_project_says_to_run_make_demo(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LEADSCORE_CONFIG", raising=False)
    (tmp_path / "notebooks").mkdir()
    with pytest.raises(CellExecutionError) as failed:
        _execute(tmp_path / "notebooks", cells=2)
    message = str(failed.value)
    assert f"project file not found: {tmp_path / '.demo' / 'leadscore.yaml'}" in message, message
    assert f"run `make demo` in {tmp_path} first" in message, message
