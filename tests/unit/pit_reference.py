"""Helpers for the point-in-time feature tests: a tiny random CRM and a brute-force reference.

The reference computes each feature of one (lead, as_of) pair directly from its definition, row by
row, with none of the kernels' tricks, so kernel results can be checked against it.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from features.schema import (
    EMAIL_BOUNCE,
    EMAIL_OPEN,
    PAGE_VIEW,
    PRICING_PAGE_VIEW,
    RECYCLED,
    UNSUBSCRIBE,
    CRMData,
)
from features.spec import FeatureSpec

DAY = pd.Timedelta(days=1)
EVENT_TYPES = (EMAIL_OPEN, PAGE_VIEW, PRICING_PAGE_VIEW, UNSUBSCRIBE, EMAIL_BOUNCE, RECYCLED)
ORIGIN = pd.Timestamp("2024-01-01")


def random_crm(seed: int, n_leads: int = 12, n_events: int = 300, span_days: int = 200) -> CRMData:
    """Small random CRM: leads with two attributes, events of every type, some conversions."""
    rng = np.random.default_rng(seed)
    created = ORIGIN + pd.to_timedelta(rng.integers(0, span_days // 2, n_leads), "D")
    leads = pd.DataFrame(
        {
            "lead_id": np.arange(100, 100 + n_leads),
            "created_at": created,
            "industry": pd.Series(rng.choice(["saas", "retail", "bank"], n_leads)).where(
                rng.random(n_leads) > 0.1
            ),
            "employees": np.round(rng.lognormal(3, 1, n_leads), 1),
        }
    )
    # Seconds resolution plus some ties and some events exactly at midnight.
    offsets = rng.integers(0, span_days * 86_400, n_events)
    offsets[: n_events // 10] = (offsets[: n_events // 10] // 86_400) * 86_400
    events = pd.DataFrame(
        {
            "lead_id": rng.choice(leads["lead_id"].to_numpy(), n_events),
            "occurred_at": ORIGIN + pd.to_timedelta(offsets, "s"),
            "event_type": rng.choice(EVENT_TYPES, n_events, p=[0.3, 0.3, 0.15, 0.05, 0.05, 0.15]),
        }
    )
    converts = rng.random(n_leads) < 0.4
    converted_at = created + pd.to_timedelta(rng.integers(1, span_days, n_leads), "D")
    outcomes = pd.DataFrame(
        {"lead_id": leads["lead_id"], "converted_at": pd.Series(converted_at).where(converts)}
    )
    return CRMData(leads, events, outcomes, ["industry"], ["employees"])


def reference_features(crm: CRMData, spec: FeatureSpec, lead_id: object, as_of: pd.Timestamp) -> dict[str, float]:
    """Every event-derived and lifecycle feature of one pair, straight from the definitions."""
    config = spec.config
    lead = crm.leads.set_index("lead_id").loc[lead_id]
    ev = crm.events[(crm.events["lead_id"] == lead_id) & (crm.events["occurred_at"] < as_of)]
    times = list(ev["occurred_at"])
    types = [str(t) for t in ev["event_type"]]
    out: dict[str, float] = {}

    def days(delta: pd.Timedelta) -> float:
        return delta.value / 86_400e9

    for event_type in spec.event_types_:
        for w in config.windows:
            out[f"{event_type}_count_{w}d"] = float(
                sum(1 for t, k in zip(times, types, strict=True) if k == event_type and t >= as_of - w * DAY)
            )
    for event_type in spec.event_types_:
        seen = [t for t, k in zip(times, types, strict=True) if k == event_type]
        out[f"days_since_last_{event_type}"] = days(as_of - max(seen)) if seen else math.nan
    active = [(t, k) for t, k in zip(times, types, strict=True) if k in spec.event_types_ and config.weight_of(k) > 0]
    recent, prior = config.trend_windows
    a = sum(1 for t, _ in active if t >= as_of - recent * DAY)
    b = sum(1 for t, _ in active if as_of - (recent + prior) * DAY <= t < as_of - recent * DAY)
    out[f"engagement_trend_{recent}d_vs_{prior}d"] = (a + 1) / (b * recent / prior + 1)
    longest = max(config.windows)
    out[f"active_days_{longest}d"] = float(
        len({t.normalize() for t, _ in active if t >= as_of - longest * DAY})
    )
    out["engagement_intensity"] = sum(
        config.weight_of(k) * 2 ** (-days(as_of - t) / config.half_life_days) for t, k in active
    )
    for event_type in spec.event_types_:
        if config.weight_of(event_type) <= 0:
            continue
        for half_life in config.type_half_lives_days:
            out[f"{event_type}_decayed_{half_life:g}d"] = sum(
                2 ** (-days(as_of - t) / half_life) for t, k in active if k == event_type
            )
    if config.burst_gap_days is not None:
        # Walk the activity in time order; a quiet gap of >= burst_gap_days starts a new burst.
        burst_start, previous = None, None
        for t, _ in sorted(active, key=lambda pair: pair[0]):
            if previous is None or t - previous >= config.burst_gap_days * DAY:
                burst_start = t
            previous = t
        out["days_since_burst_start"] = days(as_of - burst_start) if burst_start is not None else math.nan
        out["activity_since_burst_start"] = float(
            sum(1 for t, _ in active if burst_start is not None and t >= burst_start)
        )
    if UNSUBSCRIBE in spec.event_types_:
        out["ever_unsubscribed"] = float(UNSUBSCRIBE in types)
    if EMAIL_BOUNCE in spec.event_types_:
        out["ever_email_bounced"] = float(EMAIL_BOUNCE in types)
    out["lead_age_days"] = days(as_of - lead["created_at"])
    recycles = [t for t, k in zip(times, types, strict=True) if k == RECYCLED]
    out["times_recycled"] = float(len(recycles))
    out["days_since_last_recycle"] = days(as_of - max(recycles)) if recycles else math.nan
    return out


def payload_of(crm: CRMData, lead_id: object) -> dict:
    """JSON-like payload of one lead with ISO-string timestamps (all its events, any time)."""
    lead = crm.leads.set_index("lead_id").loc[lead_id]
    ev = crm.events[crm.events["lead_id"] == lead_id]
    attributes = {}
    for col in crm.attributes:
        value = lead[col]
        attributes[col] = None if pd.isna(value) else (value.item() if hasattr(value, "item") else value)
    return {
        "lead_id": lead_id.item() if hasattr(lead_id, "item") else lead_id,
        "created_at": lead["created_at"].isoformat(),
        "attributes": attributes,
        "events": [
            {"occurred_at": t.isoformat(), "event_type": str(k)}
            for t, k in zip(ev["occurred_at"], ev["event_type"], strict=True)
        ],
    }
