"""One lead inspected in a notebook: its score, grade, reasons and time-to-close curve by each registered model
(the champion next to the challenger), as the endpoint would answer for it at its snapshot date."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from features.build import TrainingSet
from features.schema import LEAD_ID
from features.snapshots import AS_OF
from serving.closing import SERVED_HORIZONS, p_close_field
from serving.core import ScoringConfig, ScoringCore
from serving.loader import DEFAULT_MODEL_NAME, DEFAULT_TIME_TO_CLOSE_NAME, load_registered
from training.survival_plots import sample_curve_label, survival_curves_figure

CURVE_DAYS = 1.0  # spacing of the survival curve's points


@dataclass
class LeadInspection:
    """``table``: one column per model, rows score .. reasons; ``figure``: the lead's survival curve by each
    model served with a time-to-close model (None when none is)."""

    table: pd.DataFrame
    figure: Figure | None

    def to_text(self) -> str:
        """The table with every cell whole (a notebook's table cuts a cell past 50 characters, as it did the
        reasons' feature labels)."""
        if self.table.empty:
            return f"{self.table.columns.name}: no registered model to score it with"
        # the lead on a line of its own (not widening the labels), then left-aligned columns: the reasons are text
        cells = self.table.astype(str)
        label_width = max(len(str(label)) for label in cells.index)
        widths = {c: max(len(str(c)), int(cells[c].str.len().max())) for c in cells.columns}

        def line(label: str, values: list[str]) -> str:
            return "  ".join([label.ljust(label_width), *(v.ljust(widths[c]) for c, v in zip(cells.columns, values,
                                                                                                strict=True))]).rstrip()

        rows = [line("", [str(c) for c in cells.columns])]
        rows += [line(str(label), list(values)) for label, values in zip(cells.index, cells.to_numpy(), strict=True)]
        return "\n".join([str(self.table.columns.name), *rows])


def registered_cores(tracking_uri: str, aliases: Sequence[str] = ("champion", "challenger"),
                     name: str = DEFAULT_MODEL_NAME, closing_name: str = DEFAULT_TIME_TO_CLOSE_NAME,
                     top_k: int = 3) -> dict[str, ScoringCore]:
    """``"<alias> v<version>"`` -> the scoring core of each alias set on the registered model ``name`` (with the
    time-to-close model at the same alias when one is), as the endpoint loads it; aliases not set are left out
    (none when ``name`` is not registered: a first registration refused by strict leakage mode)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    found = client.search_registered_models(filter_string=f"name = '{name}'")
    set_aliases = found[0].aliases if found else {}
    config = ScoringConfig(top_k=top_k)
    cores = {}
    for alias in aliases:
        if alias in set_aliases:
            core, _ = load_registered(tracking_uri, name, alias, config, closing_name=closing_name)
            cores[f"{alias} v{core.info.version}"] = core
    return cores


def lead_snapshot(training_set: TrainingSet, lead_id: Any, as_of: Any = None) -> pd.DataFrame:
    """The lead's row of the training set: its snapshot at ``as_of`` (dated snapshots), else its latest."""
    rows = training_set.frame[training_set.frame[LEAD_ID].astype(str) == str(lead_id)]
    if rows.empty:
        raise KeyError(f"lead {lead_id!r} is not in the training set ({training_set.frame[LEAD_ID].nunique():,} "
                       "leads; a lead converted or not yet created at every snapshot date has no row)")
    if AS_OF not in rows.columns:
        return rows.tail(1)
    if as_of is not None:
        at = rows[rows[AS_OF] == pd.Timestamp(as_of)]
        if at.empty:
            dates = ", ".join(f"{d:%Y-%m-%d}" for d in rows[AS_OF])
            raise KeyError(f"lead {lead_id!r} has no snapshot as of {pd.Timestamp(as_of):%Y-%m-%d} (its snapshots: "
                           f"{dates})")
        return at.tail(1)
    return rows.sort_values(AS_OF, kind="stable").tail(1)


def _reason_text(reason: Mapping[str, Any]) -> str:
    value = reason["value"]
    shown = "missing" if value is None else (f"{value:.3g}" if isinstance(value, float) else str(value))
    return f"{reason['label']} = {shown} ({reason['impact']:+.1f})"


def inspect_lead(cores: Mapping[str, ScoringCore], snapshot: pd.DataFrame) -> LeadInspection:
    """Score the one-row ``snapshot`` (:func:`lead_snapshot`) with each core of ``cores`` (label -> core)."""
    if len(snapshot) != 1:
        raise ValueError(f"inspect_lead takes one lead's snapshot (one row), got {len(snapshot)} rows")
    lead_id = snapshot[LEAD_ID].iloc[0]
    as_of = snapshot[AS_OF].iloc[0] if AS_OF in snapshot.columns else None
    columns: dict[str, dict[str, Any]] = {}
    curves, labels = [], []
    for label, core in cores.items():
        matrix = core.spec.to_matrix(snapshot)
        batch = core.score_matrix(np.array([lead_id]), matrix)
        record = batch.to_records()[0]
        column: dict[str, Any] = {"score (0-100)": record["score"], "probability": round(record["probability"], 4),
                                  "grade": record["grade"], "MQL": "yes" if record["mql"] else "no"}
        if core.closing is not None:
            for d in SERVED_HORIZONS:
                p = record.get(p_close_field(d))
                column[f"P(close within {d} d)"] = "-" if p is None else f"{p:.1%}"
            median = record.get("median_days")
            column["median days to close"] = "beyond the horizon" if median is None else round(median)
            days = np.arange(0.0, core.closing.horizon_days + CURVE_DAYS / 2, CURVE_DAYS)
            curve = 1.0 - core.closing.close_curve(matrix, days, batch.probability, core.horizon_days)[0]
            curves.append(curve)
            horizon = core.horizon_days or SERVED_HORIZONS[-1]
            p_horizon = record["probability"] if core.horizon_days else float(1.0 - curve[int(horizon)])
            lead_label = sample_curve_label(lead_id, as_of, horizon, p_horizon, np.nan if median is None else median,
                                            int(core.closing.horizon_days))
            labels.append(f"{label} + time to close v{core.closing_info.version if core.closing_info else '?'}: "
                          + lead_label.split(": ", 1)[1])
        for slot, reason in enumerate(record["reasons"], start=1):
            column[f"reason {slot}"] = _reason_text(reason)
        columns[label] = column
    table = pd.DataFrame(columns).fillna("-")  # "-": that model has no time-to-close model
    table.columns.name = f"lead {lead_id}" + ("" if as_of is None else f" as of {pd.Timestamp(as_of):%Y-%m-%d}")
    figure = None
    if curves:
        # the longest horizon's days; a shorter curve is padded with NaN
        width = max(len(c) for c in curves)
        grid = np.arange(width) * CURVE_DAYS
        padded = np.array([np.pad(c, (0, width - len(c)), constant_values=np.nan) for c in curves])
        data = "" if as_of is None else f"as of {pd.Timestamp(as_of):%Y-%m-%d}"
        figure = survival_curves_figure(grid, padded, labels, horizons=SERVED_HORIZONS,
                                        title=f"Predicted survival (still open) of lead {lead_id}", data=data)
    return LeadInspection(table, figure)


__all__ = ["LeadInspection", "inspect_lead", "lead_snapshot", "registered_cores"]
