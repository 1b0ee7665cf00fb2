"""The time-to-close model on the synthetic CRM: targets of issue 5 and behaviour of the fitted model.

One run of ``train_and_evaluate_time_to_close`` on 5,000 synthetic leads (monthly snapshots,
defaults of ``TimeToCloseConfig``) is shared by the module; the issue's targets are checked on a
second CRM too (seed 7: the seed whose 90-day calibration was 0.037 before the per-period
recalibration; its Cox peer on the penalizer the default grid picks there), so they do not hold by the luck
of one draw.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.build import build_training_set
from leadscore.synth import SynthConfig, generate
from training.survival_config import TimeToCloseConfig
from training.survival_evaluation import (
    COX_NAME,
    KM_NAME,
    MODEL_NAME,
    NAIVE_NAME,
    TimeToCloseResult,
    train_and_evaluate_time_to_close,
)
from training.time_to_close import BEYOND_HORIZON, MEDIAN_DAYS, TimeToCloseModel, p_close_column

N_LEADS = 5000
SEED = 3
SECOND_SEED = 7
SECOND_SEED_COX_PENALIZER = 0.003


def _run(seed: int) -> TimeToCloseResult:
    crm = generate(SynthConfig(n_leads=N_LEADS, seed=seed)).to_crm()
    # the targets are the run's figures, the backtest's with or without the refit for deployment, and the
    # behaviour tests are the model class's (the refit is tested in tests/model/test_time_to_close_refit.py): the
    # refit's second fit is not paid for here
    config = TimeToCloseConfig(make_plots=seed == SEED, refit=False)
    if seed != SEED:
        # the second CRM's Cox peer beside the one penalizer, 0.003, that the default grid of five picks on it (the
        # same comparison and calibration tables, bit for bit, at ~5 s less CPU); the first CRM keeps the grid
        config = config.model_copy(update={"cox_penalizers": (SECOND_SEED_COX_PENALIZER,)})
    return train_and_evaluate_time_to_close(build_training_set(crm), config)


@pytest.fixture(scope="module")
def result() -> TimeToCloseResult:
    return _run(SEED)


@pytest.fixture(scope="module")
def second_result() -> TimeToCloseResult:
    return _run(SECOND_SEED)


@pytest.fixture(scope="module", params=["seed_3", "seed_7"])
def any_result(request: pytest.FixtureRequest) -> TimeToCloseResult:
    return request.getfixturevalue("result" if request.param == "seed_3" else "second_result")


@pytest.fixture(scope="module")
def test_features(result: TimeToCloseResult) -> pd.DataFrame:
    return result.evaluation_rows[result.model.feature_columns_]


def test_concordance_far_above_kaplan_meier(result: TimeToCloseResult) -> None:
    table = result.comparison
    assert table.loc[KM_NAME, "harrell_c"] == pytest.approx(0.5) and table.loc[KM_NAME, "uno_c"] == pytest.approx(0.5)
    # measured 0.758 / 0.732 on this CRM; with every engagement feature blanked the model still gets
    # 0.729 / 0.715, so the bars sit between the two
    assert table.loc[MODEL_NAME, "harrell_c"] >= 0.745, table
    assert table.loc[MODEL_NAME, "uno_c"] >= 0.72, table


@pytest.mark.xfail(
    strict=True,
    reason="issue-5 target not met: a Cox peer tuned as the model is (penalizer chosen on the validation leads, "
    "refitted on all fitting snapshots) ranks as well as the hazard model. benchmarks/time_to_close.py --skip-olist "
    "--seed 3 7 11 19 23 29 31 37 (5,000 leads, ~220-290 test closes each): mean margin +0.003 Harrell (sd 0.012) / "
    "-0.001 Uno (sd 0.016), +0.01 on both on 1 of 8 seeds (31; not on 3 and 7); 20,000 leads, seeds 3 and 7: "
    "-0.003 / -0.003 and +0.003 / -0.002. The margins of earlier sessions (+0.001 / +0.004 at 5,000 leads, +0.013 to +0.047 at 20,000) were "
    "measured against a peer with a fixed penalizer of 0.1 on a 30,000-snapshot sample, which was the handicap. "
    "The generator's true curves rank +0.089 / +0.098 above Cox on those 8 seeds (the oracle row of the benchmark).",
)
def test_concordance_clearly_above_cox(result: TimeToCloseResult, second_result: TimeToCloseResult) -> None:
    for run in (result, second_result):
        table = run.comparison
        assert table.loc[MODEL_NAME, "harrell_c"] >= table.loc[COX_NAME, "harrell_c"] + 0.01, table
        assert table.loc[MODEL_NAME, "uno_c"] >= table.loc[COX_NAME, "uno_c"] + 0.01, table


def test_p_close_90_days_calibrated_within_3_points_per_decile(any_result: TimeToCloseResult) -> None:
    table = any_result.calibration
    model = table[(table["scorer"] == MODEL_NAME) & (table["horizon_days"] == 90)]
    assert len(model) == 10 and model["observed"].notna().all()
    assert model["gap"].abs().max() <= 0.03, model


def test_integrated_brier_below_kaplan_meier(result: TimeToCloseResult) -> None:
    # measured 2.7% below Kaplan-Meier; a model with its engagement features blanked is 0.9% below
    assert result.comparison.loc[MODEL_NAME, "ibs"] < 0.985 * result.comparison.loc[KM_NAME, "ibs"], result.comparison


def test_naive_regression_claims_closes_that_never_happen(result: TimeToCloseResult) -> None:
    """Fitted on converted leads only, it says everybody closes: far above the observed rate."""
    observed = result.metrics["observed_close_90d"]
    assert result.comparison.loc[NAIVE_NAME, "mean_p_close_90d"] > 10 * observed
    assert result.comparison.loc[NAIVE_NAME, "ibs"] > 10 * result.comparison.loc[MODEL_NAME, "ibs"]


def test_curves_are_survival_curves(result: TimeToCloseResult, test_features: pd.DataFrame) -> None:
    model = result.model
    X = test_features.iloc[:2000]
    days = np.arange(0, model.horizon_days + 1, 1.0)
    curve = model.predict_survival(X, days)
    assert (np.diff(curve, axis=1) <= 1e-12).all() and (curve[:, 0] == 1).all() and (curve >= 0).all()
    summary = model.predict_summary(X)
    assert list(summary.columns) == [p_close_column(h) for h in (30, 60, 90)] + [MEDIAN_DAYS, BEYOND_HORIZON]
    assert (summary["p_close_30d"] <= summary["p_close_60d"]).all()
    assert (summary["p_close_60d"] <= summary["p_close_90d"]).all()
    at_horizon = curve[:, -1]
    np.testing.assert_array_equal(summary[BEYOND_HORIZON].to_numpy(), at_horizon > 0.5)
    finite = summary[MEDIAN_DAYS].notna().to_numpy()
    if finite.any():
        s_at_median = [model.predict_survival(X.iloc[[i]], [summary[MEDIAN_DAYS].iloc[i]])[0, 0]
                       for i in np.flatnonzero(finite)[:20]]
        np.testing.assert_allclose(s_at_median, 0.5, atol=1e-9)


def test_engaged_lead_closes_sooner(result: TimeToCloseResult, test_features: pd.DataFrame) -> None:
    model = result.model
    lead = test_features.iloc[[0]]
    quiet = lead.assign(**{c: 0.0 for c in lead.columns if c.startswith(("demo_request", "pricing_page_view"))
                           and ("count" in c or "decayed" in c)})
    eager = lead.assign(demo_request_count_30d=3.0, demo_request_count_7d=2.0, demo_request_decayed_7d=2.0,
                        pricing_page_view_count_7d=5.0, pricing_page_view_decayed_7d=4.0,
                        days_since_last_demo_request=1.0, days_since_last_pricing_page_view=1.0)
    assert model.predict_close_probability(eager, 90)[0] > model.predict_close_probability(quiet, 90)[0]


def test_column_order_unseen_values_and_missing_columns(result: TimeToCloseResult,
                                                        test_features: pd.DataFrame) -> None:
    model = result.model
    X = test_features.iloc[:300]
    shuffled = X[list(reversed(X.columns))].assign(unrelated=1.0)
    np.testing.assert_array_equal(model.predict_hazard(X), model.predict_hazard(shuffled))
    odd = X.astype({"industry": object}).copy()
    odd["industry"] = "space_mining"
    hazards = model.predict_hazard(odd)
    assert np.isfinite(hazards).all() and ((hazards >= 0) & (hazards <= 1)).all()
    with pytest.raises(KeyError, match="employees"):
        model.predict_summary(X.drop(columns="employees"))


def test_save_load_round_trip(tmp_path: Path, result: TimeToCloseResult, test_features: pd.DataFrame) -> None:
    X = test_features.iloc[:500]
    loaded = TimeToCloseModel.load(result.model.save(tmp_path / "ttc"))
    pd.testing.assert_frame_equal(loaded.predict_summary(X), result.model.predict_summary(X))
    assert loaded.spec_.columns_ == result.model.spec_.columns_
    assert loaded.config == result.model.config


def test_run_reports_everything_it_promises(result: TimeToCloseResult) -> None:
    assert set(result.figures) == {"survival_curves", "calibration", "concordance", "brier_over_time"}
    assert set(result.comparison.index) == {MODEL_NAME, KM_NAME, COX_NAME, NAIVE_NAME}
    assert {"harrell_c", "uno_c", "ibs", "brier_90d", "calibration_max_gap_90d"} <= set(result.metrics)
    assert {f"baseline_cox_ph_penalised_{m}" for m in ("harrell_c", "uno_c", "ibs")} <= set(result.metrics)
    rows = result.evaluation_rows
    assert {"lead_id", "as_of", "duration_days", "event"} <= set(rows.columns) and len(rows) == result.metrics["n_test"]
    # test snapshots come after every fitting snapshot, and fitting outcomes stop at the cut
    assert rows["as_of"].min() == pd.Timestamp(result.split["censored_at"])
    assert "Model card" in result.model_card and f"tau = {result.settings.tau}" in result.model_card
    # the naive regression has no calibration gap (its P(close within h) is 0 or 1): "-" in the card, not "nan"
    card = result.model_card
    assert "| nan" not in card.lower() and "nan |" not in card.lower(), card
    header = next(line for line in card.splitlines() if line.startswith("| scorer | harrell_c"))
    naive = next(line for line in card.splitlines() if line.startswith(f"| {NAIVE_NAME} |"))
    cells = dict(zip(header.split("|")[1:-1], naive.split("|")[1:-1], strict=True))
    gaps = [c for c in cells if c.strip().startswith("calibration_max_gap_")]
    assert gaps and all(cells[c].strip() == "-" for c in gaps), naive
    assert "Its calibration gaps are `-`" in card


def _titles(fig) -> str:
    texts = [ax.get_title() for ax in fig.axes] + ([fig._suptitle.get_text()] if fig._suptitle is not None else [])
    return " | ".join(t for t in texts if t)


def test_card_reads_as_sentences_not_dict_keys(result: TimeToCloseResult) -> None:
    """The Evaluation section was the split dict joined ("n_train: 19328; fit_as_of: 2024-08-01..2025-12-01")
    and the observed rates their metric keys ("observed_close_30d 0.0059"), unlike the sales card."""
    from training.sales_readiness import split_text

    card = result.model_card
    assert split_text(result.split) in card
    assert "n_train" not in card and "fit_as_of" not in card and "observed_close_" not in card
    for h in result.settings.horizons:
        assert f"P(close within {h} days) {result.metrics[f'observed_close_{h}d']:.4f}" in card


def test_every_figure_names_its_test_snapshots(result: TimeToCloseResult) -> None:
    first, last = result.split["test_as_of"].split("..")
    for name, fig in result.figures.items():
        title = _titles(fig)
        assert "test" in title and f"{int(result.metrics['n_test']):,}" in title, (name, title)
        assert first in title and last in title, (name, title)


def test_calibration_panels_count_rows_and_closes_and_show_intervals(result: TimeToCloseResult) -> None:
    """Most deciles hold 0-10 closes: the panels said neither how many nor how uncertain."""
    fig = result.figures["calibration"]
    table = result.calibration[result.calibration["scorer"] == MODEL_NAME]
    for ax, (h, rows) in zip(fig.axes, table.groupby("horizon_days"), strict=True):
        assert f"{h} days" in ax.get_title()
        assert f"{int(rows['closed_within'].sum()):,} closes" in ax.get_title(), ax.get_title()
        assert f"~{int(rows['n'].median()):,} snapshots" in ax.get_title(), ax.get_title()
        assert any(c.__class__.__name__ == "ErrorbarContainer" for c in ax.containers)


def test_sample_curve_labels_say_beyond_what(result: TimeToCloseResult) -> None:
    fig = result.figures["survival_curves"]
    legend = fig.axes[0].get_legend() or fig.legends[0]
    labels = [t.get_text() for t in legend.get_texts()]
    beyond = [t for t in labels if "beyond" in t]
    assert beyond and all(f"beyond {result.model.config.horizon_days} d" in t for t in beyond), labels


def test_sample_curve_labels_name_the_snapshot_drawn_and_its_probability(result: TimeToCloseResult) -> None:
    """A lead has several test snapshots: the label named the lead only, and its P(90d) to 2 decimals."""
    fig = result.figures["survival_curves"]
    legend = fig.axes[0].get_legend() or fig.legends[0]
    labels = [t.get_text() for t in legend.get_texts() if t.get_text().startswith("lead ")]
    assert labels
    h = max(result.settings.horizons)
    rows = result.predictions.assign(as_of=pd.to_datetime(result.predictions["as_of"]))
    for label in labels:
        lead, _, rest = label.removeprefix("lead ").partition(" as of ")
        day, _, rest = rest.partition(":")
        row = rows[(rows["lead_id"].astype(str) == lead) & (rows["as_of"] == pd.Timestamp(day))]
        assert len(row) == 1, label
        assert f"P(close within {h} d) {row[p_close_column(h)].iloc[0]:.1%}" in rest, label


def test_card_opens_with_a_summary_in_plain_words_whose_figures_are_the_logged_ones(result: TimeToCloseResult) -> None:
    """The sales card opens with what a revenue team acts on; the time-to-close card opened with the
    hazard's construction and a 13-column table of metric keys."""
    lines = result.model_card.splitlines()
    assert "## In short" in lines and lines.index("## In short") < lines.index("## Model")
    summary = "\n".join(lines[lines.index("## In short"):lines.index("## Model")])
    m = result.metrics
    first, last = result.split["test_as_of"].split("..")
    assert f"{int(m['n_test']):,} snapshots" in summary and first in summary and last in summary
    assert f"{int(m['n_test_events']):,} closes" in summary
    for h in result.settings.horizons:
        assert (f"within {h} days: predicted {m[f'mean_p_close_{h}d']:.1%} on average, observed "
                f"{m[f'observed_close_{h}d']:.1%}") in summary
    assert f"Uno's C {m['uno_c']:.3f}" in summary
    assert f"{COX_NAME} {m['baseline_cox_ph_penalised_uno_c']:.3f}" in summary
