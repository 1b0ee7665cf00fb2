"""Synthetic CRM generator: determinism, canonical schema, funnel invariants, the oracle."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.schema import (
    CONVERTED_AT,
    CREATED_AT,
    EMAIL_BOUNCE,
    EMAIL_CLICK,
    EMAIL_OPEN,
    EVENT_TYPE,
    EVENTS,
    LEAD_ID,
    LEADS,
    OCCURRED_AT,
    OPTIONAL_COLUMNS,
    OUTCOMES,
    RECYCLED,
    REQUIRED_COLUMNS,
    UNSUBSCRIBE,
)
from leadscore.synth import (
    CATEGORICAL_ATTRIBUTES,
    NUMERIC_ATTRIBUTES,
    SynthConfig,
    SyntheticCRM,
    generate,
    iter_chunks,
    true_probability,
)

N_LEADS = 2000


@pytest.fixture(scope="module")
def crm() -> SyntheticCRM:
    return generate(SynthConfig(n_leads=N_LEADS, seed=7))


def test_same_seed_same_tables_whatever_the_chunk_size(crm: SyntheticCRM) -> None:
    again = generate(SynthConfig(n_leads=N_LEADS, seed=7, chunk_leads=333))
    for name, frame in crm.tables().items():
        pd.testing.assert_frame_equal(getattr(again, name), frame, obj=name)


def test_chunks_partition_the_leads() -> None:
    chunks = list(iter_chunks(SynthConfig(n_leads=700, seed=1, chunk_leads=300)))
    assert [c.n_leads for c in chunks] == [300, 300, 100]
    for chunk in chunks:
        ids = set(chunk.leads[LEAD_ID])
        assert set(chunk.events[LEAD_ID]) <= ids
        assert set(chunk.truth[LEAD_ID]) == ids


def test_other_seed_other_tables(crm: SyntheticCRM) -> None:
    other = generate(SynthConfig(n_leads=N_LEADS, seed=8))
    assert not other.leads["industry"].equals(crm.leads["industry"])
    assert len(other.events) != len(crm.events) or not other.events[OCCURRED_AT].equals(crm.events[OCCURRED_AT])


def test_canonical_schema_and_dtypes(crm: SyntheticCRM) -> None:
    frames = {LEADS: crm.leads, EVENTS: crm.events, OUTCOMES: crm.outcomes}
    for table, frame in frames.items():
        assert set(REQUIRED_COLUMNS[table]) <= set(frame.columns)
        extra = set(frame.columns) - set(REQUIRED_COLUMNS[table]) - set(OPTIONAL_COLUMNS[table])
        if table != LEADS:
            assert not extra, f"{table}: non-canonical columns {extra}"
        assert frame[LEAD_ID].dtype == np.int64
    assert crm.leads[LEAD_ID].tolist() == list(range(1, N_LEADS + 1))
    for frame, column in ((crm.leads, CREATED_AT), (crm.events, OCCURRED_AT), (crm.outcomes, CONVERTED_AT)):
        assert frame[column].dtype == np.dtype("datetime64[ns]")
    for column in CATEGORICAL_ATTRIBUTES:
        assert isinstance(crm.leads[column].dtype, pd.CategoricalDtype)
    for column in NUMERIC_ATTRIBUTES:
        assert crm.leads[column].dtype == np.float64
    assert crm.events["value"].dtype == np.float64
    assert crm.to_crm().attributes == [*CATEGORICAL_ATTRIBUTES, *NUMERIC_ATTRIBUTES]


def test_events_within_lifetime(crm: SyntheticCRM) -> None:
    events = crm.events.merge(crm.leads[[LEAD_ID, CREATED_AT]], on=LEAD_ID).merge(crm.outcomes, on=LEAD_ID)
    assert (events[OCCURRED_AT] >= events[CREATED_AT]).all()
    converted = events[CONVERTED_AT].notna()
    assert (events.loc[converted, OCCURRED_AT] <= events.loc[converted, CONVERTED_AT]).all()
    assert events[OCCURRED_AT].max() < pd.Timestamp("2026-07-01")
    assert crm.events.groupby(LEAD_ID)[OCCURRED_AT].apply(lambda s: s.is_monotonic_increasing).all()


def test_no_email_after_unsubscribe_or_bounce(crm: SyntheticCRM) -> None:
    events = crm.events
    email = events[EVENT_TYPE].isin([EMAIL_OPEN, EMAIL_CLICK, UNSUBSCRIBE, EMAIL_BOUNCE])
    stops = events[events[EVENT_TYPE].isin([UNSUBSCRIBE, EMAIL_BOUNCE])].groupby(LEAD_ID)[OCCURRED_AT].min()
    assert len(stops) > 10  # the invariant is exercised
    after = events[email].merge(stops.rename("stop"), left_on=LEAD_ID, right_index=True)
    assert (after[OCCURRED_AT] <= after["stop"]).all()
    assert after.groupby(LEAD_ID)[EVENT_TYPE].apply(lambda s: s.isin([UNSUBSCRIBE, EMAIL_BOUNCE]).sum()).max() == 1


def test_conversions_after_creation_with_amounts(crm: SyntheticCRM) -> None:
    merged = crm.outcomes.merge(crm.leads[[LEAD_ID, CREATED_AT]], on=LEAD_ID)
    converted = merged[CONVERTED_AT].notna()
    assert converted.sum() > 0
    assert (merged.loc[converted, CONVERTED_AT] > merged.loc[converted, CREATED_AT]).all()
    assert (merged.loc[converted, "amount"] > 0).all()
    assert merged.loc[~converted, "amount"].isna().all()


def test_recycled_leads_and_missing_values_exist(crm: SyntheticCRM) -> None:
    recycled = crm.events.loc[crm.events[EVENT_TYPE] == RECYCLED, LEAD_ID].nunique()
    assert recycled > 0.01 * N_LEADS
    for column in [*CATEGORICAL_ATTRIBUTES, *NUMERIC_ATTRIBUTES]:
        share = crm.leads[column].isna().mean()
        assert 0.002 < share < 0.2, column


def test_creation_seasonality_and_growth(crm: SyntheticCRM) -> None:
    created = crm.leads[CREATED_AT]
    weekend = created.dt.dayofweek >= 5
    assert weekend.mean() < 0.5 * 2 / 7  # fewer leads on weekends
    assert crm.leads[CREATED_AT].is_monotonic_increasing
    first_year = (created < pd.Timestamp("2025-07-01")).sum()
    assert first_year < N_LEADS - first_year  # growth


def test_true_probability_bounds_and_edge_cases(crm: SyntheticCRM) -> None:
    as_of = pd.Timestamp("2025-06-15 12:00")
    ids = crm.leads[LEAD_ID].to_numpy()
    p = true_probability(crm.truth, ids, as_of)
    created = crm.leads[CREATED_AT].to_numpy()
    converted = crm.outcomes[CONVERTED_AT].to_numpy()
    not_yet = created > as_of
    done = converted <= as_of
    assert np.isnan(p[not_yet]).all() and not_yet.any()
    assert (p[done] == 0).all() and done.any()
    open_p = p[~not_yet & ~done]
    assert ((open_p > 0) & (open_p < 1)).all()
    longer = true_probability(crm.truth, ids, as_of, horizon_days=180)
    assert (longer[~not_yet & ~done] >= open_p).all()
    per_lead = true_probability(crm.truth, ids[:5], np.full(5, np.datetime64("2025-06-15T12:00")))
    np.testing.assert_allclose(per_lead, p[:5])
    with pytest.raises(ValueError, match="unknown lead_id"):
        true_probability(crm.truth, [N_LEADS + 5], as_of)
    with pytest.raises(ValueError, match="after the end"):
        true_probability(crm.truth, ids[:3], pd.Timestamp("2026-09-01"))


def test_true_probability_matches_simulated_outcomes() -> None:
    crm = generate(SynthConfig(n_leads=5000, seed=3))
    predicted, observed = [], []
    for as_of in pd.date_range("2024-10-01", "2026-03-01", freq="2MS"):
        open_ = (crm.leads[CREATED_AT] <= as_of) & ~(crm.outcomes[CONVERTED_AT] <= as_of)
        converted_at = crm.outcomes.loc[open_, CONVERTED_AT]
        observed.append(((converted_at > as_of) & (converted_at <= as_of + pd.Timedelta(days=90))).to_numpy())
        predicted.append(true_probability(crm.truth, crm.leads.loc[open_, LEAD_ID].to_numpy(), as_of))
    p, y = np.concatenate(predicted), np.concatenate(observed)
    assert y.sum() > 200
    tolerance = 4 * np.sqrt((p * (1 - p)).sum())
    assert abs(p.sum() - y.sum()) < tolerance, (p.sum(), y.sum())
    high = p >= np.quantile(p, 0.8)
    assert abs(p[high].sum() - y[high].sum()) < 4 * np.sqrt((p[high] * (1 - p[high])).sum())
    assert y[high].mean() > 3 * y[~high].mean()  # the oracle ranks, not just calibrates


def test_non_buyers_engage_but_do_not_convert_and_mostly_show_in_attributes(crm: SyntheticCRM) -> None:
    truth = crm.truth.drop_duplicates(LEAD_ID).set_index(LEAD_ID).reindex(crm.leads[LEAD_ID])
    non_buyer = (truth["persona"] != "buyer").to_numpy()
    assert 0.2 < non_buyer.mean() < 0.4
    converted = crm.outcomes[CONVERTED_AT].notna().to_numpy()
    assert converted[~non_buyer].mean() > 10 * max(converted[non_buyer].mean(), 1e-3)
    events = crm.events[LEAD_ID].value_counts().reindex(crm.leads[LEAD_ID], fill_value=0).to_numpy()
    assert events[non_buyer].mean() > 1.3 * events[~non_buyer].mean()  # engaged non-buyers
    leads = crm.leads
    tell_tale = (leads["seniority"].isin(["training", "unpaid", "owner"])
                 | leads["email_domain"].isin(["personal", "edu"])
                 | leads["account_type"].isin(["customer", "partner", "competitor"])).to_numpy()
    assert 0.6 < tell_tale[non_buyer].mean() < 0.98  # mostly, not perfectly, identifiable
    assert tell_tale[~non_buyer].mean() < 0.35


def test_link_scanners_click_within_seconds_of_the_open(crm: SyntheticCRM) -> None:
    truth = crm.truth.drop_duplicates(LEAD_ID).set_index(LEAD_ID)
    scanned = truth.index[truth["email_scanner"].astype(bool)]
    assert len(scanned) > 0.02 * N_LEADS
    assert (crm.leads.set_index(LEAD_ID).loc[scanned, "email_domain"].dropna() == "business").all()
    email = crm.events[crm.events[EVENT_TYPE].isin([EMAIL_OPEN, EMAIL_CLICK])]
    gaps = email.groupby(LEAD_ID)[OCCURRED_AT].diff().dt.total_seconds()
    quick = (gaps < 120).groupby(email[LEAD_ID]).mean()
    assert quick.reindex(scanned).mean() > 0.3
    assert quick.drop(scanned, errors="ignore").mean() < 0.05


def test_realism_off_has_no_personas_nor_new_attributes() -> None:
    plain = generate(SynthConfig(n_leads=300, seed=7, realism=False))
    assert "email_domain" not in plain.leads.columns and "account_type" not in plain.leads.columns
    assert plain.to_crm().attributes == [c for c in [*CATEGORICAL_ATTRIBUTES, *NUMERIC_ATTRIBUTES]
                                         if c not in ("email_domain", "account_type")]
    assert (plain.truth["persona"] == "buyer").all() and not plain.truth["email_scanner"].any()
