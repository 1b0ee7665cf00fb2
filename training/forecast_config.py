"""Typed settings of the revenue forecast (the ``forecast:`` section of a project file).

Cheap to import (pydantic only): the project loader uses it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ForecastConfig(BaseModel):
    """Settings of ``leadscore forecast`` (the ``forecast:`` section of a project file)."""

    model_config = ConfigDict(extra="forbid")

    months: int = Field(6, ge=1, le=24, description="calendar months forecast, the first one starting at as_of")
    interval: float = Field(0.9, gt=0, lt=1, description="central probability of the revenue interval")
    method: Literal["analytic", "simulation"] = "analytic"
    draws: int = Field(2000, ge=100, le=100_000, description="simulation draws (method simulation)")
    combine: Literal["both", "time-to-close"] = "both"
    min_deals_for_model: int = Field(
        200, ge=10, description="closed deals with an amount needed to fit the deal-value model (else the mean)")
    seed: int = 0
