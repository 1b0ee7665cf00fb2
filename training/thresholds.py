"""MQL threshold for a sales capacity.

For every 0-100 cut-off: how many test rows score at or above it, how many that is per week, the
precision among them and the share of all conversions they capture. Per week = flagged rows /
weeks represented by the test snapshots (``evaluation.weeks_represented``: distinct as_of dates x
median cadence / 7). Each snapshot row counts once: a lead re-flagged in two weekly snapshots is
counted in both weeks, as sales would see it twice.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def threshold_table(
    score: np.ndarray, y: np.ndarray, weeks: float | None, step: int = 1
) -> pd.DataFrame:
    """Cut-offs 0..100 (every ``step``) with flagged rows, per week, precision, capture and lift."""
    score = np.asarray(score, dtype=float)
    y = np.asarray(y, dtype=float)
    cutoffs = np.arange(0, 101, step)
    n_pos = y.sum()
    base = y.mean() if len(y) else float("nan")
    # counts of rows / positives with score >= c for every c, without a loop over rows
    order = np.sort(score)
    flagged = len(score) - np.searchsorted(order, cutoffs, side="left")
    pos_sorted = np.sort(score[y == 1])
    captured = len(pos_sorted) - np.searchsorted(pos_sorted, cutoffs, side="left")
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(flagged > 0, captured / np.maximum(flagged, 1), np.nan)
        table = pd.DataFrame(
            {
                "cutoff": cutoffs,
                "leads_flagged": flagged,
                "leads_per_week": flagged / weeks if weeks else np.nan,
                "share_flagged": flagged / max(len(score), 1),
                "precision": precision,
                "conversions_captured": captured,
                "capture": captured / n_pos if n_pos else np.nan,
                "lift": precision / base if base else np.nan,
            }
        )
    return table


def capacity_of(
    table: pd.DataFrame, capacity_per_week: float | None = None, capacity_share: float | None = None
) -> tuple[float, str]:
    """The capacity :func:`recommend_threshold` applies to ``table`` and its unit (the table's column it
    bounds): leads per week when given and the table knows weeks, else a share of leads."""
    if capacity_per_week is not None and table["leads_per_week"].notna().all():
        return float(capacity_per_week), "leads_per_week"
    if capacity_share is not None:
        return float(capacity_share), "share_flagged"
    raise ValueError("recommend_threshold: give capacity_per_week (with weeks known) or capacity_share")


def recommend_threshold(
    table: pd.DataFrame, capacity_per_week: float | None = None, capacity_share: float | None = None
) -> dict[str, float] | None:
    """Lowest cut-off (= highest capture) whose flagged volume fits the capacity.

    Capacity is leads per week when given and the table knows weeks; otherwise a share of leads.
    Returns the chosen row as a dict (plus ``capacity`` and ``capacity_unit``), or None when no
    cut-off fits.
    """
    capacity, unit = capacity_of(table, capacity_per_week, capacity_share)
    fits = (table[unit] <= capacity) & (table["leads_flagged"] > 0)
    if not fits.any():
        return None
    row = table.loc[fits].sort_values("cutoff").iloc[0]
    out = {k: float(v) for k, v in row.items()}
    out["cutoff"] = int(row["cutoff"])
    out["capacity"] = float(capacity)
    out["capacity_unit"] = unit  # type: ignore[assignment]
    return out


def table_to_markdown(table: pd.DataFrame, every: int = 5, around: int | None = None, window: int = 3) -> str:
    """Compact Markdown view of the threshold table: every ``every``-th cut-off with flagged rows, plus
    every cut-off within ``window`` of ``around`` (the recommended one, marked), where choices are made."""
    keep = table["cutoff"] % every == 0
    if around is not None:
        keep |= (table["cutoff"] - around).abs() <= window
    view = table[keep & (table["leads_flagged"] > 0)]
    cols = ["cutoff", "leads_flagged", "leads_per_week", "precision", "capture", "lift"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in view[cols].iterrows():
        cutoff = int(r["cutoff"])
        label = f"**{cutoff}** (recommended)" if cutoff == around else str(cutoff)
        per_week = "-" if np.isnan(r["leads_per_week"]) else f"{r['leads_per_week']:.1f}"
        lines.append(
            f"| {label} | {int(r['leads_flagged'])} | {per_week} | "
            f"{r['precision']:.3f} | {r['capture']:.3f} | {r['lift']:.2f} |"
        )
    return "\n".join(lines)


def share_text(share: float) -> str:
    """A share of leads in percent, whole percents as such (``0.1`` -> "10%"), smaller ones to two
    significant digits (``0.00001`` -> "0.001%", not "0%")."""
    return f"{share:.0%}" if share >= 0.01 and round(share * 100, 6).is_integer() else f"{share * 100:.2g}%"


def volume_text(value: float) -> str:
    """Leads per week: whole ones from 10 up (``1,234``), two significant digits below (``0.01``, ``2.5``)."""
    return f"{value:,.0f}" if value >= 10 else f"{value:.2g}"


def capacity_level(table: pd.DataFrame, capacity: float, unit: str) -> tuple[float, str]:
    """A capacity (:func:`capacity_of`) as a level of the table's volume (leads per week when the table knows
    weeks, else the share flagged) and in words: "50 leads per week", "10% of leads (79 per week)"."""
    per_week = bool(table["leads_per_week"].notna().all())
    if unit == "leads_per_week":
        return capacity, f"{volume_text(capacity)} leads per week"
    everyone = float(table["leads_per_week"].max()) if per_week else 1.0
    level = capacity * everyone
    return level, f"{share_text(capacity)} of leads" + (f" ({volume_text(level)} per week)" if per_week else "")


def highest_cut_off_text(table: pd.DataFrame) -> str:
    """What the highest cut-off that still flags a lead flags (why a small capacity fits none)."""
    flagging = table.loc[table["leads_flagged"] > 0]
    if flagging.empty:
        return "no cut-off flags a lead"
    top = flagging.sort_values("cutoff").iloc[-1]
    flags = (f"{volume_text(top['leads_per_week'])} leads per week" if table["leads_per_week"].notna().all()
             else f"{share_text(top['share_flagged'])} of leads")
    return f"even cut-off {int(top['cutoff'])}, the highest that flags a lead, flags {flags}"


def no_cut_off_text(table: pd.DataFrame, capacity: float, unit: str) -> str:
    """Why no cut-off is recommended, in one sentence: the capacity and what the highest cut-off flags."""
    return f"no cut-off fits the capacity of {capacity_level(table, capacity, unit)[1]}: {highest_cut_off_text(table)}"
