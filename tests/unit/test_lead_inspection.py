"""One lead inspected in a notebook (leadscore.inspection): its score, reasons and survival curve by each model."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest

from features.snapshots import AS_OF
from leadscore.inspection import inspect_lead, lead_snapshot
from serving.closing import SERVED_HORIZONS, ClosingCore, p_close_field
from serving.core import ModelInfo, ScoringConfig, ScoringCore
from tests.serving_fixtures import train_small_champion, train_small_time_to_close

N_LEADS, SEED = 800, 3


@pytest.fixture(scope="module")
def champion():
    return train_small_champion(n_leads=N_LEADS, seed=SEED)


@pytest.fixture(scope="module")
def cores(champion):
    """A champion served with a time-to-close model, a challenger without one."""
    closing = (train_small_time_to_close(n_leads=N_LEADS, seed=SEED), ModelInfo("lead-time-to-close", "4"))
    config = ScoringConfig(top_k=3)
    return {"champion v1": ScoringCore(champion.model, ModelInfo("lead-conversion", "1"), config, closing=closing),
            "challenger v2": ScoringCore(champion.model, ModelInfo("lead-conversion", "2"), config)}


@pytest.fixture(scope="module")
def snapshot(champion) -> pd.DataFrame:
    frame = champion.training_set.frame
    lead = frame[AS_OF].idxmax()  # a lead of the latest snapshot date
    return lead_snapshot(champion.training_set, frame.loc[lead, "lead_id"])


def test_the_plotted_curve_passes_through_the_served_p_close(champion, cores) -> None:
    """The survival curve drawn for a lead is the one whose points the endpoint serves (rescaled to the
    sales-readiness probability), not the hazard model's own."""
    closing: ClosingCore = cores["champion v1"].closing
    matrix = champion.model.spec_.to_matrix(champion.features.iloc[:40])
    probability = np.linspace(0.01, 0.6, 40)
    served = closing.summary(matrix, probability, 90)
    curve = closing.close_curve(matrix, np.array(SERVED_HORIZONS, dtype=float), probability, 90)
    for j, d in enumerate(SERVED_HORIZONS):
        np.testing.assert_allclose(curve[:, j], served[p_close_field(d)], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(curve[:, -1], probability)  # at the horizon: the probability itself
    own = closing.close_curve(matrix, np.array([90.0]))
    assert not np.allclose(own[:, 0], probability)  # the rescaling matters


def test_a_lead_by_champion_and_challenger(champion, cores, snapshot) -> None:
    inspection = inspect_lead(cores, snapshot)
    table = inspection.table
    assert list(table.columns) == ["champion v1", "challenger v2"]
    lead, as_of = snapshot["lead_id"].iloc[0], snapshot[AS_OF].iloc[0]
    assert table.columns.name == f"lead {lead} as of {as_of:%Y-%m-%d}"
    expected = cores["challenger v2"].score_matrix([lead], champion.model.spec_.to_matrix(snapshot))
    assert table.loc["score (0-100)", "challenger v2"] == expected.score[0]
    assert table.loc["score (0-100)", "champion v1"] == expected.score[0]  # the same model twice
    assert table.loc["grade", "champion v1"] == expected.grade[0]
    top = expected.reasons_of(0)[0]
    assert table.loc["reason 1", "challenger v2"].startswith(f"{top['label']} = ")
    assert table.loc["reason 1", "challenger v2"].endswith(f"({top['impact']:+.1f})")
    # time to close only where a time-to-close model is served
    assert table.loc["P(close within 90 d)", "champion v1"] == f"{expected.probability[0]:.1%}"
    assert table.loc["P(close within 90 d)", "challenger v2"] == "-"
    # one curve: the champion's, from 1 at day 0, at 1 - P(close within 90 d) on day 90
    (ax,) = inspection.figure.axes
    (line,) = [ln for ln in ax.get_lines() if ln.get_label().startswith("champion v1 + time to close v4: ")]
    days, survival = line.get_data()
    assert days[0] == 0 and survival[0] == pytest.approx(1.0)
    assert survival[list(days).index(90)] == pytest.approx(1 - expected.probability[0])


def test_the_text_holds_every_cell_whole(champion, snapshot) -> None:
    """Feature labels such as 'pricing page views, decayed count (half-life 30 days)' are longer than the
    50 characters a notebook's table shows of a cell."""
    model = copy.deepcopy(champion.model)
    model.spec_.labels_ = {c: f"{c}: a feature label longer than a table cell shows" for c in model.spec_.columns_}
    inspection = inspect_lead({"champion v1": ScoringCore(model, ModelInfo("lead-conversion", "1"))}, snapshot)
    text = inspection.to_text()
    cells = [str(v) for v in inspection.table.to_numpy().ravel() if not pd.isna(v)]
    assert max(len(c) for c in cells) > 50  # long enough to be cut in a notebook's table
    for cell in cells:
        assert cell in text, cell
    lines = text.splitlines()
    assert lines[0] == inspection.table.columns.name
    assert lines[1].split() == ["champion", "v1"]  # the header: the lead's name does not widen the row labels
    # left-aligned: every value starts in the column of the header's model name (the reasons are text)
    start = lines[1].index("champion v1")
    assert all(line[start - 2:start] == "  " and line[start] != " " for line in lines[2:]), text


def test_without_a_time_to_close_model_there_is_no_figure(cores, snapshot) -> None:
    inspection = inspect_lead({"challenger v2": cores["challenger v2"]}, snapshot)
    assert inspection.figure is None
    assert "P(close within 30 d)" not in inspection.table.index


def test_the_snapshot_of_a_lead(champion) -> None:
    ts = champion.training_set
    lead = ts.frame["lead_id"].iloc[0]
    dates = ts.frame.loc[ts.frame["lead_id"] == lead, AS_OF]
    assert lead_snapshot(ts, lead)[AS_OF].iloc[0] == dates.max()
    assert lead_snapshot(ts, str(lead), as_of=dates.min())[AS_OF].iloc[0] == dates.min()
    with pytest.raises(KeyError, match="lead 'no-such-lead' is not in the training set"):
        lead_snapshot(ts, "no-such-lead")
    with pytest.raises(KeyError, match=f"has no snapshot as of 1999-01-01 \\(its snapshots: {dates.min():%Y-%m-%d}"):
        lead_snapshot(ts, lead, as_of="1999-01-01")


def test_one_lead_at_a_time(cores, champion) -> None:
    with pytest.raises(ValueError, match="one lead's snapshot \\(one row\\), got 2 rows"):
        inspect_lead(cores, champion.training_set.frame.head(2))


def test_no_registered_model_says_so(champion) -> None:
    """Nothing registered (a first registration refused by strict leakage mode): a line, no traceback."""
    snapshot = champion.training_set.frame.head(1)
    inspection = inspect_lead({}, snapshot)
    assert inspection.figure is None and inspection.table.empty
    lead = snapshot["lead_id"].iloc[0]
    assert inspection.to_text() == (f"lead {lead} as of {snapshot[AS_OF].iloc[0]:%Y-%m-%d}: no registered model "
                                    "to score it with")
