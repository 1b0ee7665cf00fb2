"""What `leadscore train / evaluate / models list` print: calibration line, counts, version table."""

from __future__ import annotations

import pandas as pd
import pytest
from rich.console import Console

from leadscore.cli_models import calibration_line, format_value, frame_table, versions_view


def _render(renderable, width: int = 80) -> str:
    console = Console(width=width, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def test_calibration_line_states_the_under_prediction_ece_hides() -> None:
    line = calibration_line({"mean_predicted": 0.0105, "base_rate": 0.0138, "ece": 0.003,
                             "top_decile_predicted": 0.049, "top_decile_observed": 0.070})
    assert line == ("calibration: mean predicted 0.0105 vs observed rate 0.0138 (predicted/observed 0.76: "
                    "under-predicts by 24%); top 10% by score: predicted 0.0490 vs observed 0.0700 (ratio 0.70)")
    # what `evaluate` has (no top-decile figures) still gives the overall comparison; over-prediction is named
    assert calibration_line({"mean_predicted": 0.2, "base_rate": 0.1}) == (
        "calibration: mean predicted 0.2000 vs observed rate 0.1000 (predicted/observed 2.00: over-predicts by 100%)")
    assert calibration_line({"roc_auc": 0.8}) is None


def test_calibration_line_says_when_the_rate_moved_after_the_calibration_rows() -> None:
    """The demo's model under-predicts its test slice by 24% with an ECE of 0.004: its validation slice, where the
    calibrator was fitted, converted at a lower rate. The line now says so; a rate that held says nothing more."""
    metrics = {"mean_predicted": 0.0105, "base_rate": 0.0138, "calibration_base_rate": 0.0107}
    assert calibration_line(metrics) == (
        "calibration: mean predicted 0.0105 vs observed rate 0.0138 (predicted/observed 0.76: under-predicts by 24%; "
        "the calibration rows (validation slice) converted at 0.0107, these at 0.0138 (+29%): the conversion rate "
        "moved after the rows the probabilities were fitted on)")
    held = calibration_line({**metrics, "calibration_base_rate": 0.0130})  # +6%: within RATE_SHIFT
    assert held == calibration_line({"mean_predicted": 0.0105, "base_rate": 0.0138})
    assert "moved" not in calibration_line({"mean_predicted": 0.0137, "base_rate": 0.0138,  # calibrated: nothing to explain
                                            "calibration_base_rate": 0.0107})
    # `evaluate` of a refit version on rows it scored itself: its calibrator's rows were its run's test slice
    refit = calibration_line({"mean_predicted": 0.0105, "base_rate": 0.0138, "refit_calibration_base_rate": 0.0107})
    assert "the calibration rows (the run's test slice, for the refit model) converted at 0.0107" in refit
    # a training run logs both: its figures are the backtest model's, calibrated on the validation slice
    both = calibration_line({**metrics, "refit_calibration_base_rate": 0.0200})
    assert both == calibration_line(metrics)


@pytest.mark.parametrize(("value", "count", "text"), [
    (13959.0, True, "13,959"), (0.792369, False, "0.7924"), (float("nan"), False, "-"), (None, True, "-"),
    (2.5, True, "2.5000"), ("e8ccf104", False, "e8ccf104"),
])
def test_format_value(value: object, count: bool, text: str) -> None:
    assert format_value(value, count) == text


def test_evaluate_table_prints_counts_as_whole_numbers() -> None:
    metrics = pd.DataFrame({"value": {"roc_auc": 0.749364, "n": 13959.0, "n_positive": 108.0, "eval_rows": 13959.0,
                                      "base_rate": 0.0129}}).rename_axis("metric")
    text = _render(frame_table(metrics, "v1"))
    assert "13,959" in text and "108" in text and "0.7494" in text and "0.0129" in text
    assert "13959.0000" not in text and "108.0000" not in text


def _versions(**metrics: list[str]) -> pd.DataFrame:
    base = {"version": [1, 2], "aliases": ["champion", "challenger"], "was_champion": [True, False],
            "run_id": ["a", "b"], "trained_at": ["2026-11-24T06:29:59+00:00", "2026-11-25T08:01:02+00:00"],
            "eval_as_of": ["2026-01-01..2026-04-01", "2026-01-01..2026-05-01"], "eval_rows": ["8343", "9000"],
            "roc_auc": ["", ""], "log_loss": ["", ""], "uno_c": ["", ""], "ibs": ["", ""], "leakage_flagged": ["", ""]}
    base.update(metrics)
    return pd.DataFrame(base)


def test_versions_view_formats_numbers_and_keeps_only_the_kinds_columns() -> None:
    sales = versions_view(_versions(roc_auc=["0.792369", "0.8011"], log_loss=["0.06", "0.05"],
                                    leakage_flagged=["true", "false"]))
    assert list(sales.columns) == ["aliases", "trained (UTC)", "evaluated on", "roc_auc", "leakage flagged"]
    assert sales["roc_auc"].tolist() == ["0.7924", "0.8011"]
    assert sales["leakage flagged"].tolist() == ["yes", "no"]
    assert sales.loc["1", "trained (UTC)"] == "2026-11-24 06:29"
    assert sales.loc["1", "evaluated on"] == "2026-01-01 to 2026-04-01"
    ttc = versions_view(_versions(uno_c=["0.710664", "0.72"], ibs=["0.0120349", "0.0119"]))
    assert list(ttc.columns) == ["aliases", "trained (UTC)", "evaluated on", "uno_c", "ibs"]
    assert ttc["ibs"].tolist() == ["0.0120", "0.0119"]


def test_versions_view_says_how_many_rows_a_flat_model_was_evaluated_on() -> None:
    """A flat export's model has no as-of dates: `models list` showed "-" under "evaluated on", as if it had
    never been evaluated."""
    flat = versions_view(_versions(eval_as_of=["..", ".."], eval_rows=["9237", ""], roc_auc=["0.87", "0.86"]))
    assert flat["evaluated on"].tolist() == ["9,237 rows (no as-of dates)", "-"]


def test_models_export_help_says_where_another_alias_goes() -> None:
    """`--alias challenger` writes <out>/<name>@challenger/ (never over the deployed champion): the help said
    every export went to <out>/<model name>/."""
    from typer.testing import CliRunner

    from leadscore.cli import app

    shown = " ".join(CliRunner().invoke(app, ["models", "export", "--help"], env={"COLUMNS": "200"}).output.split())
    assert "Write a registered version (default: the champion;" in shown, shown
    assert "the champion goes to <out>/<model name>/, another alias or version to <out>/<model name>@<alias>/" in shown
