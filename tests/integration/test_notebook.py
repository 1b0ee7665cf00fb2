"""Execute the notebooks (thin: library calls only) on a small synthetic CRM: 01_retrain.ipynb and
02_time_to_close_and_forecast.ipynb."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from leadscore.project import load_project
from tests.integration.mlflow_support import SMALL_TRAINING, write_project
from training.survival_config import TimeToCloseConfig
from training.tracking import tracking_target
from training.workflow import promote_challenger, train_project

pytestmark = pytest.mark.slow
NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
NOTEBOOK = NOTEBOOKS / "01_retrain.ipynb"
FORECAST_NOTEBOOK = NOTEBOOKS / "02_time_to_close_and_forecast.ipynb"
FLAT_PROJECT = "data:\n  mode: flat\n  source: {path: x.csv}\n  id_column: Id\n  label_column: y\n"


def _execute(cwd: Path, cells: int | None = None, path: Path = NOTEBOOK) -> nbformat.NotebookNode:
    """The notebook at ``path`` (its first ``cells`` cells) executed by a kernel whose working folder is ``cwd``."""
    notebook = nbformat.read(path, as_version=4)
    if cells is not None:
        notebook.cells = notebook.cells[:cells]
    # the kernel inherits this process's environment (LEADSCORE_*, MLFLOW_*)
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    return notebook


def _images(notebook: nbformat.NotebookNode) -> int:
    """How many PNG images the notebook's outputs hold."""
    return sum("image/png" in out.get("data", {}) for cell in notebook.cells if cell.cell_type == "code"
               for out in cell.get("outputs", []))


def _text(cells: list) -> str:
    """Text of the outputs (streams, stdout and stderr, and text/plain) of ``cells``."""
    return "\n".join(
        "".join(out.get("text", "")) + "".join(out.get("data", {}).get("text/plain", ""))
        for cell in cells if cell.cell_type == "code" for out in cell.get("outputs", [])
    )


def _scorer_columns(notebook: nbformat.NotebookNode, call: str, scorer: str) -> bool:
    """Whether the comparison shown by the cell that calls ``call`` has one column per scorer (a header line
    ``scorer  <scorer> ...``), not one per metric (19 of them, wrapped in blocks)."""
    text = _text([cell for cell in notebook.cells if call in cell.source])
    return any(line.startswith("scorer") and scorer in line for line in text.splitlines())


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
    assert _images(notebook) >= 5
    assert (config.parent / "mlflow.db").is_file()
    assert _scorer_columns(notebook, "fit_training_set(", "lightgbm (calibrated)")
    # the data summary whole (pandas cut long cells at 50 characters: the attribute list ended in '...')
    assert "employees (numeric), annual_revenue (numeric)" in " ".join(text.split()), text  # wrapped lines
    # a lead inspected by the registered models before the promotion: here only the new challenger
    inspection = _text([cell for cell in notebook.cells if "inspect_lead(" in cell.source])
    assert "challenger v1" in inspection and "reason 1" in inspection and "score" in inspection, inspection
    assert "..." not in inspection, inspection  # the reasons' labels whole
    # the promotion table once (explain() holds it); none of MLflow's routine lines or download bars
    promotion = [cell for cell in notebook.cells if "promote_challenger(target)" in cell.source]
    assert _text(promotion).count("challenger v1") == 1, _text(promotion)
    for noise in ("Downloading artifacts", "Passing a Python object as `python_model`",
                  "Failed to resolve installed pip version", "Creating initial MLflow database tables",
                  "IProgress not found"):
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


def test_time_to_close_notebook_trains_promotes_forecasts_and_backtests(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """After the sales-readiness champion exists (as `make demo` or 01_retrain leave it), the notebook trains the
    time-to-close model beside its peers, promotes it, forecasts the open pipeline with both champions and
    backtests a forecast made at a past date."""
    # the champion trained here only has to exist (no figures); the notebook's model and its backtest's are fitted
    # beside one Cox penalizer, 0.01, the one the default grid of five picks on this CRM (the same comparison
    # table, to the fourth decimal; each Cox grid ~4 s of CPU)
    config = write_project(tmp_path / ".demo", name="forecast-notebook",
                           training=SMALL_TRAINING.model_copy(update={"make_plots": False}),
                           time_to_close=TimeToCloseConfig(cox_penalizers=(0.01,)))
    target = tracking_target(None, config.parent)
    train_project(load_project(config), target)
    assert promote_challenger(target).promoted
    (tmp_path / "notebooks").mkdir()
    monkeypatch.delenv("LEADSCORE_CONFIG", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("LEADSCORE_BACKTEST_AS_OF", raising=False)
    monkeypatch.setenv("LEADSCORE_PROMOTE", "1")
    notebook = _execute(tmp_path / "notebooks", path=FORECAST_NOTEBOOK)
    text = _text(notebook.cells)
    assert "project 'forecast-notebook'" in text
    for scorer in ("lightgbm hazard", "kaplan-meier", "cox ph", "naive regression"):
        assert scorer in text, scorer
    assert "registered version 1 of lead-time-to-close" in text and "PROMOTED: version 1" in text
    # the forecast by both champions: lead-conversion v1 and lead-time-to-close v1
    assert "Revenue forecast of" in text and "as of 2026-06-30" in text, text
    # the default backtest: six whole months before the data's end (the synthetic CRM ends 2026-06-30)
    assert "Forecast backtest as of 2026-01-01" in text and "observed months" in text, text
    # four time-to-close figures, a lead's survival curve, the forecast, the backtest
    assert _images(notebook) >= 7
    inspection = _text([cell for cell in notebook.cells if "inspect_lead(" in cell.source])
    assert "champion v1" in inspection and "P(close within 30 d)" in inspection, inspection
    assert _scorer_columns(notebook, "fit_time_to_close(", "lightgbm hazard")
    for noise in ("Passing a Python object as `python_model`", "IProgress not found"):
        assert noise not in text, noise


def test_time_to_close_notebook_refuses_a_flat_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "flat.yaml"
    config.write_text(FLAT_PROJECT, encoding="utf-8")
    monkeypatch.setenv("LEADSCORE_CONFIG", str(config))
    with pytest.raises(CellExecutionError) as failed:
        _execute(tmp_path, cells=3, path=FORECAST_NOTEBOOK)
    assert "time to close needs dated snapshots: data.mode must be 'crm'" in str(failed.value)
