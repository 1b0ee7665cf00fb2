"""Typed settings of the revenue forecast (the ``forecast:`` section of a project file).

Cheap to import (pydantic only): the project loader uses it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class RecalibrationConfig(BaseModel):
    """Platt recalibration of the sales-readiness probabilities at the forecast date D.

    Snapshots of the leads open at ``D - H - k * step_days`` (``k * step_days <= window_days``),
    whose H-day outcome is known at D, are scored with the forecast's sales-readiness model; a
    logistic regression of their outcome on ``logit(p)`` then maps the pipeline's probabilities.
    """

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    window_days: float = Field(90.0, ge=0, le=730, description="span of the snapshot dates before D - H")
    step_days: float = Field(30.0, gt=0, le=365, description="days between two snapshot dates")
    min_positives: int = Field(20, ge=1, description="positive snapshot rows, and as many negative ones, "
                               "needed to fit (else skipped)")


class ForecastConfig(BaseModel):
    """Settings of ``leadscore forecast`` (the ``forecast:`` section of a project file)."""

    model_config = ConfigDict(extra="forbid")

    months: int = Field(6, ge=1, le=24, description="calendar months forecast, the first one starting at as_of")
    interval: float = Field(0.9, gt=0, lt=1, description="central probability of the revenue interval")
    method: Literal["analytic", "simulation"] = "analytic"
    draws: int = Field(2000, ge=100, le=100_000, description="simulation draws (method simulation)")
    combine: Literal["both", "time-to-close"] = Field(
        "both", description="both: the sales-readiness probability fixes P(close within H) and the hazard model the "
        "shape (training.close_curves); time-to-close: the hazard model's curve alone (no recalibration)")
    min_deals_for_model: int = Field(
        200, ge=10, description="closed deals with an amount above 0 needed to fit the deal-value model (else the "
        "mean)")
    seed: int = 0
    currency: str | None = Field(
        None, min_length=1, max_length=20, pattern=r"^\S(.*\S)?$",
        description="what outcomes.amount is counted in (e.g. EUR, USD, k EUR): named on the forecast's revenue "
        "axis, in its printed table and in the currency column of its files; null: 'unit of outcomes.amount'")
    recalibration: RecalibrationConfig = Field(default_factory=RecalibrationConfig)
