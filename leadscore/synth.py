"""Synthetic B2B CRM: firmographics, intent-driven engagement, conversions and the oracle.

The latent world, per lead:

- a *fit* score from its firmographics (seniority, size, industry, source, country) plus noise;
- *buying episodes*: one at creation (probability by lead source) and then a Poisson number per
  day (rate ``episode_rate``); an episode starting on day ``s`` with amplitude ``A`` (``A`` Gamma
  with shape ``AMPLITUDE_SHAPE`` and mean ``amplitude_mean``) adds ``A * rho**k * (1 - KAPPA**k)`` (``k = d-s+1``) to the intent of every
  day ``d >= s``: it rises for a few days, then decays with the lead's half-life;
- a daily conversion hazard ``base_hazard * season(d) * (INTENT_FLOOR + intent(d))``, piecewise
  constant per UTC day;
- engagement events: a Poisson process per type whose daily rate depends on fit and on the
  engagement level ``sum A * rho**k`` (the decaying part of the episodes: high from an episode's
  first day, so behaviour reveals the latent intent; see ``EVENT_SQRT`` / ``EVENT_LINEAR``).

Realism (``SynthConfig.realism``, on by default; its draws come from a separate random stream,
so ``realism=False`` reproduces the earlier generator exactly):

- *engaged non-buyers* (``PERSONAS``, ~30% of leads): students/researchers, job seekers,
  competitors, existing customers/partners, consultants. In real funnels much engagement comes from
  people who will never buy: students read everything for coursework, competitors watch pricing
  pages and webinars and even book demos, customers open every email and attend product webinars,
  consultants research on behalf of clients. Their base hazard is ``NON_BUYER_HAZARD`` times a
  buyer's (almost never converting), they have more episodes (``PERSONA_EPISODE_RATE``) and their
  own event mix (``PERSONA_EVENT_MIX``). A CRM shows most of them, not all: self-describing job
  titles and enrichment seniority levels ("training", "unpaid", "owner", as LinkedIn's levels) for
  ~60-80% of students, job seekers and consultants; the new attributes ``email_domain``
  (business/personal/edu: small-company buyers use personal addresses, education buyers edu ones)
  and ``account_type`` (prospect/customer/partner/competitor from lead-to-account matching, which
  misses ~20%); their lead sources (inbound content and events, no outbound). A model can learn
  attribute x behaviour interactions; additive points over-count their engagement.
- *email link scanners*: security gateways of business mailboxes (mostly large companies,
  ``SCANNER_P``) open every delivered marketing email and click its links within seconds, whatever
  the recipient's intent (``_scanner_events``): opens and clicks carry less signal.
- event volume is rescaled by ``REALISM_EVENT_VOLUME`` so ``events_per_lead`` stays the mean.

The truth table records ``persona`` and ``email_scanner``; the oracle needs nothing new, since the
persona acts through ``base_hazard``, ``episode_rate`` and ``amplitude_mean``.

Events are consequences of intent, never causes of conversion, so :func:`true_probability` only
needs the latent state. All randomness comes from fixed blocks of ``BLOCK_LEADS`` leads, each seeded
by ``(seed, block)``: the tables do not depend on the chunk size used to produce them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from features.schema import (
    AMOUNT,
    CAMPAIGN,
    CHANNEL,
    CONTENT_DOWNLOAD,
    CONVERTED_AT,
    CREATED_AT,
    DEMO_REQUEST,
    EMAIL_BOUNCE,
    EMAIL_CLICK,
    EMAIL_OPEN,
    EVENT_TYPE,
    EVENTS,
    FORM_FILL,
    LEAD_ID,
    LEADS,
    OCCURRED_AT,
    OUTCOMES,
    PAGE_VIEW,
    PRICING_PAGE_VIEW,
    RECYCLED,
    UNSUBSCRIBE,
    VALUE,
    WEBINAR,
    CRMData,
)

TRUTH = "truth"
SYNTH_TABLES = (LEADS, EVENTS, OUTCOMES, TRUTH)

BLOCK_LEADS = 10_000  # leads per random block: the unit of determinism (never change lightly)
SECONDS_PER_DAY = 86_400
NS_PER_DAY = SECONDS_PER_DAY * 1_000_000_000

# --- latent process constants (shared by the generator and the oracle) -------------------------
KAPPA = 0.93  # an episode's intent rises as 1 - KAPPA**days while it decays as rho**days
INTENT_FLOOR = 0.002  # conversion hazard multiplier with no intent at all
BASE_LOG_HAZARD = -5.3  # log daily hazard per unit intent for fit 0
EPISODE_RATE = 1 / 600  # episodes per day for fit 0
EPISODE_RATE_FIT = 0.45  # log episode rate per unit fit
AMPLITUDE_FIT = 0.25  # log amplitude mean per unit fit
AMPLITUDE_SHAPE = 0.5  # Gamma shape of episode amplitudes (mean amplitude_mean)
INITIAL_AMPLITUDE = 1.6  # the episode that created the lead is stronger than later ones
HALF_LIFE_MEDIAN = 20.0  # days
HALF_LIFE_SIGMA = 0.2
FIT_NOISE = 0.1  # fit the firmographics cannot show (small: unobservable)
FIT_WEIGHT = 0.7  # strength of the firmographic effects
RECYCLE_MIN_AMPLITUDE = 1.2  # episodes above this many amplitude_means reach sales...
RECYCLE_PROBABILITY = 0.5  # ...and this share of them, not closed, goes back to nurturing
REFERENCE_EVENTS_PER_LEAD = 45.0  # events per lead at intensity 1 on the default history

# --- firmographics: categories, probabilities, fit effects --------------------------------------
INDUSTRIES = ("software", "financial_services", "healthcare", "manufacturing", "retail",
              "professional_services", "education", "media", "logistics", "government")
INDUSTRY_P = (0.24, 0.14, 0.11, 0.10, 0.09, 0.09, 0.07, 0.06, 0.05, 0.05)
INDUSTRY_FIT = (0.35, 0.2, 0.0, -0.1, -0.3, 0.1, -0.4, -0.2, 0.0, -0.5)
INDUSTRY_REVENUE_PER_EMPLOYEE = (2.0e5, 3.0e5, 1.5e5, 2.5e5, 1.8e5, 1.5e5, 0.8e5, 1.8e5, 2.2e5, 1.2e5)
COUNTRIES = ("US", "GB", "DE", "FR", "CA", "NL", "AU", "IN", "BR", "ES")
COUNTRY_P = (0.42, 0.13, 0.10, 0.07, 0.06, 0.05, 0.05, 0.05, 0.04, 0.03)
COUNTRY_FIT = (0.1, 0.05, 0.0, -0.05, 0.05, 0.0, 0.0, -0.3, -0.25, -0.1)
SENIORITIES = ("IC", "manager", "director", "VP", "C-level")
SENIORITY_P = (0.36, 0.28, 0.18, 0.10, 0.08)
SENIORITY_FIT = (-0.45, 0.0, 0.3, 0.45, 0.3)
LEAD_SOURCES = ("organic", "paid_search", "paid_social", "referral", "event", "outbound", "partner")
LEAD_SOURCE_P = (0.26, 0.20, 0.14, 0.08, 0.09, 0.16, 0.07)
LEAD_SOURCE_FIT = (0.0, 0.1, -0.35, 0.6, 0.25, -0.5, 0.4)
LEAD_SOURCE_INITIAL_EPISODE = (0.75, 0.75, 0.6, 0.8, 0.6, 0.2, 0.7)
OUTBOUND = LEAD_SOURCES.index("outbound")
FUNCTIONS = ("Engineering", "IT", "Marketing", "Sales", "Operations", "Finance", "Product")
C_TITLES = ("CTO", "CIO", "CMO", "CRO", "COO", "CFO", "CPO")
TITLE_TEMPLATES = (
    ("{f} Specialist", "{f} Analyst", "Senior {f} Specialist"),
    ("{f} Manager", "Senior {f} Manager", "{f} Team Lead"),
    ("Director of {f}", "{f} Director", "Senior Director, {f}"),
    ("VP {f}", "Vice President of {f}", "SVP {f}"),
    ("{c}", "{c}", "CEO"),
)
MISSING_RATE = {"industry": 0.02, "employees": 0.04, "annual_revenue": 0.06, "country": 0.01,
                "job_title": 0.04, "seniority": 0.03, "lead_source": 0.015}
CATEGORICAL_ATTRIBUTES = ["industry", "country", "job_title", "seniority", "lead_source", "email_domain",
                          "account_type"]
NUMERIC_ATTRIBUTES = ["employees", "annual_revenue"]
REALISM_ATTRIBUTES = ("email_domain", "account_type")  # only generated with SynthConfig.realism

# --- realism: engaged non-buyers and email security scanners (SynthConfig.realism) ---------------
REALISM_STREAM = 1  # the realism draws use their own random stream (seed, block, REALISM_STREAM)
PERSONAS = ("buyer", "student", "job_seeker", "competitor", "customer", "consultant")
BUYER, STUDENT, JOB_SEEKER, COMPETITOR, CUSTOMER, CONSULTANT = range(len(PERSONAS))
PERSONA_P = (0.70, 0.09, 0.05, 0.05, 0.06, 0.05)
NON_BUYER_HAZARD = 0.01  # multiplies a non-buyer's base hazard: they (almost) never convert
PERSONA_EPISODE_RATE = (0.0, 1 / 200, 1 / 260, 1 / 180, 1 / 200, 1 / 260)  # per day (buyers: by fit)
PERSONA_AMPLITUDE = 1.3  # mean episode amplitude of non-buyers: curiosity, not budget
# event-rate multipliers per persona, columns as EVENT_TYPES[:10] (open, click, page, pricing, form,
# webinar, content, demo, unsubscribe, bounce)
PERSONA_EVENT_MIX = np.array([
    [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],  # buyer
    [0.8, 1.0, 0.8, 0.4, 1.5, 1.5, 3.0, 0.2, 1.0, 1.0],  # student: reads everything, rarely prices
    [1.2, 1.0, 1.0, 0.3, 0.8, 0.5, 1.0, 0.05, 1.0, 1.0],  # job seeker: browses (careers, about us)
    [0.6, 0.8, 0.8, 2.0, 0.8, 1.5, 1.5, 0.7, 1.0, 1.0],  # competitor: pricing, webinars, demos
    [1.5, 1.5, 0.6, 0.8, 0.8, 2.0, 1.0, 0.6, 1.0, 1.0],  # customer / partner: email, webinars
    [1.0, 1.0, 0.7, 1.0, 1.5, 1.5, 2.0, 1.0, 1.0, 1.0],  # consultant: content, demos for clients
])
# lead source of non-buyers (LEAD_SOURCES order): inbound content and events, almost never outbound
PERSONA_SOURCE_P = np.array([
    LEAD_SOURCE_P,
    (0.50, 0.10, 0.25, 0.00, 0.15, 0.00, 0.00),
    (0.50, 0.10, 0.30, 0.05, 0.05, 0.00, 0.00),
    (0.45, 0.25, 0.10, 0.00, 0.20, 0.00, 0.00),
    (0.30, 0.10, 0.05, 0.10, 0.25, 0.05, 0.15),
    (0.35, 0.10, 0.15, 0.10, 0.20, 0.00, 0.10),
])
STUDENT_TITLES = ("Student", "Graduate Student", "PhD Candidate", "Research Assistant", "Intern")
JOB_SEEKER_TITLES = ("Open to Work", "Seeking New Opportunities", "Unemployed", "Career Changer")
CONSULTANT_TITLES = ("Consultant", "Independent Consultant", "Freelance Consultant", "Advisor")
PERSONA_TITLES = {STUDENT: (STUDENT_TITLES, 0.8), JOB_SEEKER: (JOB_SEEKER_TITLES, 0.6),
                  CONSULTANT: (CONSULTANT_TITLES, 0.75)}  # persona -> (titles, share using them)
# enrichment derives the seniority level from such titles, as LinkedIn's levels "Training" (students,
# interns), "Unpaid" (between jobs) and "Owner" (one-person firms) do
PERSONA_SENIORITIES = ("training", "unpaid", "owner")
PERSONA_SENIORITY = {STUDENT: 0, JOB_SEEKER: 1, CONSULTANT: 2}  # persona -> PERSONA_SENIORITIES index
PERSONA_SIZE_MISSING = {STUDENT: 0.6, JOB_SEEKER: 0.5}  # no company to report
EMAIL_DOMAINS = ("business", "personal", "edu")
PERSONA_EMAIL_P = np.array([
    (0.92, 0.08, 0.00),  # buyer (small companies and education buyers: see _email_domain_p)
    (0.05, 0.35, 0.60),
    (0.10, 0.90, 0.00),
    (0.95, 0.05, 0.00),
    (0.92, 0.08, 0.00),
    (0.45, 0.55, 0.00),
])
ACCOUNT_TYPES = ("prospect", "customer", "partner", "competitor")
PERSONA_ACCOUNT_P = np.array([
    (0.96, 0.03, 0.01, 0.00),  # buyer: a few expansion deals with existing customers
    (1.00, 0.00, 0.00, 0.00),
    (1.00, 0.00, 0.00, 0.00),
    (0.20, 0.00, 0.00, 0.80),  # lead-to-account matching misses some competitors
    (0.15, 0.60, 0.25, 0.00),
    (0.85, 0.00, 0.15, 0.00),
])
REALISM_MISSING_RATE = {"email_domain": 0.005, "account_type": 0.08}
SCANNER_P = (0.6, 0.25, 0.03)  # share of business mailboxes behind a link scanner: >=1000, >=250, smaller
SCANNER_SENDS_PER_DAY = 0.06  # marketing emails per day reaching a scanned mailbox (weekdays only)
SCANNER_EXTRA_CLICKS = 1.5  # mean extra links clicked per scanned email (Poisson), beyond the first
REALISM_EVENT_VOLUME = 1.3  # non-buyers and scanners add ~30% events: rescaled to keep events_per_lead

# --- engagement: per-type daily rate = const*exp(0.3 fit) + sqrt_coef*sqrt(e) + linear*e, with the
# engagement level e = sum of A * rho**k over started episodes: it jumps to the episode's amplitude on
# its first day and decays with the half-life, so behaviour reveals an episode (and its amplitude)
# early, while its conversion hazard is still rising. Pricing views and demo requests follow e
# linearly (the intent-revealing acts); browsing and email are concave in e.
EVENT_TYPES = (EMAIL_OPEN, EMAIL_CLICK, PAGE_VIEW, PRICING_PAGE_VIEW, FORM_FILL, WEBINAR,
               CONTENT_DOWNLOAD, DEMO_REQUEST, UNSUBSCRIBE, EMAIL_BOUNCE, RECYCLED)
_T = {name: i for i, name in enumerate(EVENT_TYPES)}
N_SAMPLED_TYPES = 10  # every type but RECYCLED comes from the intensity model
EVENT_CONST = np.array([0.03, 0.003, 0.012, 0.0005, 0.0004, 0.0004, 0.001, 0.00003, 0.0, 0.0])
EVENT_SQRT = np.array([0.12, 0.05, 0.5, 0.0, 0.02, 0.01, 0.04, 0.0, 0.0, 0.0])
EVENT_LINEAR = np.array([0.0, 0.0, 0.0, 0.25, 0.0, 0.0, 0.0, 0.05, 0.0, 0.0])
UNSUBSCRIBE_RATE = 0.0015  # divided by (1 + 2 * intent): unsubscribing is a low-intent act
BOUNCE_RATE = 0.2  # bad addresses bounce on the first sends
EMAIL_TYPES = np.array([_T[EMAIL_OPEN], _T[EMAIL_CLICK], _T[UNSUBSCRIBE], _T[EMAIL_BOUNCE]])
EMAIL_STOPPERS = np.array([_T[UNSUBSCRIBE], _T[EMAIL_BOUNCE]])
CHANNELS = ("email", "web", "webinar", "sales")
EVENT_CHANNEL = np.array([0, 0, 1, 1, 1, 2, 1, 1, 0, 0, 3])
CAMPAIGN_KINDS = ("nurture", "newsletter", "webinar", "ebook")


class SynthConfig(BaseModel):
    """Size, seed, history and intensities of a synthetic CRM."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_leads: int = Field(5000, ge=1)
    seed: int = Field(0, ge=0)
    start: date = date(2024, 7, 1)
    end: date = Field(date(2026, 6, 30), description="last day of the history (inclusive)")
    events_per_lead: float = Field(50.0, gt=0, allow_inf_nan=False, description="approximate mean events per lead")
    conversion_scale: float = Field(1.0, gt=0, allow_inf_nan=False, description="multiplies every lead's base hazard")
    horizon_days: int = Field(90, ge=1, description="default horizon of the oracle probability")
    chunk_leads: int = Field(20_000, ge=1, description="leads per yielded/written chunk")
    realism: bool = Field(True, description="engaged non-buyer personas, email link scanners, attributes "
                          "email_domain/account_type (see the module docstring)")

    @model_validator(mode="after")
    def _history_is_long_enough(self) -> SynthConfig:
        if (self.end - self.start).days < 28:
            raise ValueError(f"SynthConfig: end ({self.end}) must be at least 28 days after start ({self.start})")
        return self

    @property
    def start_day(self) -> int:
        return int(np.datetime64(self.start, "D").astype(np.int64))

    @property
    def end_day(self) -> int:
        return int(np.datetime64(self.end, "D").astype(np.int64))

    @property
    def observed_until(self) -> pd.Timestamp:
        """End of the history: midnight after ``end``."""
        return pd.Timestamp(self.end) + pd.Timedelta(days=1)


@dataclass
class SyntheticCRM:
    """Canonical ``leads``/``events``/``outcomes`` plus the long-form ground-truth table ``truth``."""

    leads: pd.DataFrame
    events: pd.DataFrame
    outcomes: pd.DataFrame
    truth: pd.DataFrame

    @property
    def n_leads(self) -> int:
        return len(self.leads)

    def tables(self) -> dict[str, pd.DataFrame]:
        return {LEADS: self.leads, EVENTS: self.events, OUTCOMES: self.outcomes, TRUTH: self.truth}

    def to_crm(self) -> CRMData:
        """The canonical tables (without the truth) as the shared container."""
        return CRMData(self.leads, self.events, self.outcomes,
                       categorical_attributes=[c for c in CATEGORICAL_ATTRIBUTES if c in self.leads.columns],
                       numeric_attributes=list(NUMERIC_ATTRIBUTES))


class SynthSummary(BaseModel):
    """What :func:`write_synthetic` wrote."""

    dest: str
    fmt: str
    leads: int
    events: int
    conversions: int
    conversion_rate: float
    median_days_to_close: float | None
    seconds: float


# --- calendar ------------------------------------------------------------------------------------


def _calendar(days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weekday (Mon=0), month (1-12) and day of month of epoch day numbers."""
    days = np.asarray(days, dtype=np.int64)
    dates = days.astype("datetime64[D]")
    months = dates.astype("datetime64[M]")
    month = months.astype(np.int64) % 12 + 1
    dom = (dates - months.astype("datetime64[D]")).astype(np.int64) + 1
    weekday = (days + 3) % 7
    return weekday, month, dom


def conversion_season(days: np.ndarray) -> np.ndarray:
    """Multiplier of the conversion hazard by calendar day: weekends, quarter ends, holidays, August."""
    weekday, month, dom = _calendar(days)
    factor = np.where(weekday >= 5, 0.3, 1.0)
    factor = factor * np.where((month % 3 == 0) & (dom >= 20), 1.5, 1.0)
    factor = factor * np.where(((month == 12) & (dom >= 22)) | ((month == 1) & (dom <= 3)), 0.4, 1.0)
    return factor * np.where(month == 8, 0.8, 1.0)


def _creation_weights(days: np.ndarray, start_day: int) -> np.ndarray:
    """Relative lead-creation volume per day: weekly cycle, year-end dip, January peak, growth."""
    weekday, month, dom = _calendar(days)
    weight = np.select([weekday == 5, weekday == 6], [0.3, 0.25], 1.0)
    holiday = ((month == 12) & (dom >= 20)) | ((month == 1) & (dom <= 3))
    weight = weight * np.where(holiday, 0.5, 1.0)
    weight = weight * np.where((month == 1) & (dom > 3), 1.15, 1.0)
    weight = weight * np.where((month >= 9) & (month <= 11), 1.1, 1.0)
    weight = weight * np.where(month == 8, 0.85, 1.0)
    return weight * np.exp(np.log(1.5) * (days - start_day) / 365.25)


def _event_weekly(days: np.ndarray) -> np.ndarray:
    weekday = (np.asarray(days, dtype=np.int64) + 3) % 7
    return np.where(weekday >= 5, 0.5, 1.0)


def _campaign_names(config: SynthConfig) -> list[str]:
    first, last = config.start.year, config.end.year
    return [f"{y}Q{q} {kind}" for y in range(first, last + 1) for q in range(1, 5) for kind in CAMPAIGN_KINDS]


def _job_titles(realism: bool = False) -> tuple[np.ndarray, list[str]]:
    """Title strings indexed [seniority, template, function, lowercase] and the category list."""
    titles = np.empty((len(SENIORITIES), 3, len(FUNCTIONS), 2), dtype=object)
    for s, templates in enumerate(TITLE_TEMPLATES):
        for t, template in enumerate(templates):
            for f, function in enumerate(FUNCTIONS):
                title = template.format(f=function, c=C_TITLES[f])
                titles[s, t, f, 0] = title
                titles[s, t, f, 1] = title.lower()
    categories = set(titles.ravel().tolist())
    if realism:
        for persona_titles, _ in PERSONA_TITLES.values():
            categories |= set(persona_titles) | {t.lower() for t in persona_titles}
    return titles, sorted(categories)


def _pick(rng: np.random.Generator, p_rows: np.ndarray) -> np.ndarray:
    """One category code per row of a (rows x categories) probability matrix."""
    u = rng.random(len(p_rows))
    return np.minimum((np.cumsum(p_rows, axis=1) < u[:, None]).sum(axis=1), p_rows.shape[1] - 1)


# --- one block -----------------------------------------------------------------------------------


def _with_missing(rng: np.random.Generator, values: np.ndarray, rate: float, extra: np.ndarray) -> np.ndarray:
    """Mask (True = missing) at ``rate``, higher on low-quality records (``extra`` in [0, 1])."""
    return rng.random(len(values)) < rate * (1.0 + 2.0 * extra)


def _categorical(codes: np.ndarray, categories: tuple[str, ...] | list[str], missing: np.ndarray) -> pd.Categorical:
    codes = np.where(missing, -1, codes).astype(np.int16)
    return pd.Categorical.from_codes(codes, categories=pd.Index(list(categories), dtype=object))


def _generate_block(config: SynthConfig, block: int) -> SyntheticCRM:
    """Leads ``block*BLOCK_LEADS+1 ..`` of the CRM, from their own random stream."""
    rng = np.random.default_rng([config.seed, block])
    lo = block * BLOCK_LEADS
    hi = min(lo + BLOCK_LEADS, config.n_leads)
    n = hi - lo
    lead_id = np.arange(lo + 1, hi + 1, dtype=np.int64)
    start_day, end_day = config.start_day, config.end_day

    # creation: stratified inverse CDF over the history, so ids increase with creation time
    days = np.arange(start_day, end_day + 1)
    weights = _creation_weights(days, start_day)
    cdf = np.cumsum(weights) / weights.sum()
    u = (np.arange(lo, hi) + rng.random(n)) / config.n_leads
    day_pos = np.minimum(np.searchsorted(cdf, u, side="right"), len(days) - 1)
    prev = np.where(day_pos > 0, cdf[day_pos - 1], 0.0)
    within = np.clip((u - prev) / (cdf[day_pos] - prev), 1e-6, 1 - 1e-6)
    hour = np.clip(13.5 + 2.2 * np.log(within / (1 - within)), 0.0, 23.999)  # business hours, monotone
    created_sec = (days[day_pos] * SECONDS_PER_DAY + np.floor(hour * 3600)).astype(np.int64)
    created_day = created_sec // SECONDS_PER_DAY
    created_frac = (created_sec - created_day * SECONDS_PER_DAY) / SECONDS_PER_DAY

    # firmographics (true values; the observed ones get missing values)
    industry = rng.choice(len(INDUSTRIES), size=n, p=INDUSTRY_P)
    country = rng.choice(len(COUNTRIES), size=n, p=COUNTRY_P)
    seniority = rng.choice(len(SENIORITIES), size=n, p=SENIORITY_P)
    source = rng.choice(len(LEAD_SOURCES), size=n, p=LEAD_SOURCE_P)
    function = rng.integers(0, len(FUNCTIONS), size=n)
    template = rng.integers(0, 3, size=n)
    lowercase = (rng.random(n) < 0.1).astype(np.int64)
    employees = np.clip(np.round(np.exp(np.log(120) + 1.6 * rng.standard_normal(n))), 1, 300_000)
    revenue_noise = np.exp(0.5 * rng.standard_normal(n))
    sloppy = rng.random(n) ** 4  # data quality of the record: a few very sloppy ones
    titles, title_categories = _job_titles(config.realism)

    # realism (own random stream): who the lead really is, and what the CRM shows of it
    rx = np.random.default_rng([config.seed, block, REALISM_STREAM])
    persona = np.zeros(n, dtype=np.int64)
    size_unknown = np.zeros(n, dtype=bool)
    if config.realism:
        persona = rx.choice(len(PERSONAS), size=n, p=PERSONA_P)
        non_buyer = persona != BUYER
        source = np.where(non_buyer, _pick(rx, PERSONA_SOURCE_P[persona]), source)
        seniority = np.where(persona == STUDENT, 0, seniority)
        industry = np.where((persona == STUDENT) & (rx.random(n) < 0.6), INDUSTRIES.index("education"), industry)
        industry = np.where((persona == COMPETITOR) & (rx.random(n) < 0.9), INDUSTRIES.index("software"), industry)
        employees = np.where(persona == CONSULTANT, rx.integers(1, 11, size=n), employees).astype(float)
        size_unknown = rx.random(n) < np.select([persona == STUDENT, persona == JOB_SEEKER],
                                                 [PERSONA_SIZE_MISSING[STUDENT], PERSONA_SIZE_MISSING[JOB_SEEKER]], 0.0)
    revenue = np.round(employees * np.asarray(INDUSTRY_REVENUE_PER_EMPLOYEE)[industry] * revenue_noise, -3)

    fit = FIT_WEIGHT * (np.asarray(SENIORITY_FIT)[seniority] + np.asarray(INDUSTRY_FIT)[industry]
                        + np.asarray(LEAD_SOURCE_FIT)[source] + np.asarray(COUNTRY_FIT)[country]
                        + 0.2 * np.clip(np.log(employees / 120), -3, 4)) + FIT_NOISE * rng.standard_normal(n)
    base_hazard = config.conversion_scale * np.exp(BASE_LOG_HAZARD + fit)
    episode_rate = EPISODE_RATE * np.exp(EPISODE_RATE_FIT * fit)
    amplitude_mean = np.exp(AMPLITUDE_FIT * fit)
    if config.realism:
        non_buyer = persona != BUYER
        base_hazard = np.where(non_buyer, NON_BUYER_HAZARD * base_hazard, base_hazard)
        episode_rate = np.where(non_buyer, np.asarray(PERSONA_EPISODE_RATE)[persona], episode_rate)
        amplitude_mean = np.where(non_buyer, PERSONA_AMPLITUDE, amplitude_mean)
    half_life = np.clip(HALF_LIFE_MEDIAN * np.exp(HALF_LIFE_SIGMA * rng.standard_normal(n)), 3.0, 60.0)
    rho = 2.0 ** (-1.0 / half_life)
    rho_fast = rho * KAPPA
    bad_email = rng.random(n) < 0.02 + 0.1 * sloppy

    # episodes: the initial one (by source) plus Poisson arrivals on the days after creation
    initial = rng.random(n) < np.asarray(LEAD_SOURCE_INITIAL_EPISODE)[source]
    n_later = rng.poisson(episode_rate * (end_day - created_day))
    later_lead = np.repeat(np.arange(n), n_later)
    later_day = created_day[later_lead] + 1 + np.floor(
        rng.random(len(later_lead)) * (end_day - created_day[later_lead])).astype(np.int64)
    ep_lead = np.concatenate([np.flatnonzero(initial), later_lead])
    ep_day = np.concatenate([created_day[initial], later_day])
    ep_amp = amplitude_mean[ep_lead] * rng.gamma(AMPLITUDE_SHAPE, 1.0 / AMPLITUDE_SHAPE, size=len(ep_lead))
    ep_amp[: initial.sum()] *= INITIAL_AMPLITUDE
    order = np.lexsort((ep_day, ep_lead))
    ep_lead, ep_day, ep_amp = ep_lead[order], ep_day[order], ep_amp[order]

    # daily intent (days x leads) by the two-exponential recursion
    d0 = int(created_day.min())
    n_days = end_day - d0 + 1
    day_axis = np.arange(d0, end_day + 1)
    pulses = np.zeros((n_days, n))
    np.add.at(pulses, (ep_day - d0, ep_lead), ep_amp)
    intent = np.empty((n_days, n))
    engaged = np.empty((n_days, n))  # engagement level: the decaying part, high from an episode's first day
    slow = np.zeros(n)
    fast = np.zeros(n)
    for d in range(n_days):
        slow += pulses[d]
        slow *= rho
        fast += pulses[d]
        fast *= rho_fast
        np.subtract(slow, fast, out=intent[d])
        engaged[d] = slow
    np.maximum(intent, 0.0, out=intent)  # rounding only
    del pulses

    # exposure per day: 0 before creation, the rest of the creation day, then whole days
    offset = (created_day - d0)[None, :]
    rows = np.arange(n_days)[:, None]
    exposure = np.where(rows > offset, 1.0, np.where(rows == offset, 1.0 - created_frac[None, :], 0.0))

    # conversion: first day where the cumulative hazard passes an Exp(1) draw
    rate = (conversion_season(day_axis)[:, None] * base_hazard[None, :]) * (INTENT_FLOOR + intent)
    cumulative = np.cumsum(rate * exposure, axis=0)
    threshold = rng.exponential(size=n)
    passed = cumulative >= threshold[None, :]
    converted = passed[-1]
    conv_row = np.argmax(passed, axis=0)
    del passed
    cols = np.arange(n)
    before = cumulative[conv_row, cols] - rate[conv_row, cols] * exposure[conv_row, cols]
    del cumulative
    in_day = (threshold - before) / rate[conv_row, cols]
    start_in_day = np.where(conv_row == offset[0], created_frac, 0.0)
    conv_time = (d0 + conv_row) + np.minimum(start_in_day + in_day, 1.0 - 1e-9)
    conv_sec = np.floor(conv_time * SECONDS_PER_DAY).astype(np.int64)
    conv_sec = np.where(converted, np.maximum(conv_sec, created_sec + 1), np.iinfo(np.int64).max)
    del rate

    # engagement: Poisson process over (lead, day) cells with intent-driven intensity
    fit_factor = np.exp(0.3 * fit)
    mix = PERSONA_EVENT_MIX[persona]
    const = EVENT_CONST[None, :] * fit_factor[:, None] * mix
    linear = EVENT_LINEAR[None, :] * mix
    const[bad_email, _T[EMAIL_OPEN]] = 0.0
    const[bad_email, _T[EMAIL_CLICK]] = 0.0
    const[bad_email, _T[EMAIL_BOUNCE]] = BOUNCE_RATE
    concave = EVENT_SQRT[None, :] * mix
    concave[bad_email, _T[EMAIL_OPEN]] = 0.0
    concave[bad_email, _T[EMAIL_CLICK]] = 0.0
    unsubscribe = np.where(bad_email, 0.0, UNSUBSCRIBE_RATE)
    scale = config.events_per_lead / REFERENCE_EVENTS_PER_LEAD / (REALISM_EVENT_VOLUME if config.realism else 1.0)
    last_row = np.where(converted, conv_row, n_days - 1)
    alive = exposure * (rows <= last_row[None, :])
    intensity = np.sqrt(engaged)
    intensity *= concave.sum(1)[None, :]
    intensity += const.sum(1)[None, :] + linear.sum(1)[None, :] * engaged + unsubscribe[None, :] / (1.0 + 2.0 * engaged)
    intensity *= alive
    intensity *= (scale * _event_weekly(day_axis))[:, None]
    del alive
    by_lead = np.ascontiguousarray(intensity.T).ravel()  # lead-major cells
    del intensity
    flat = np.cumsum(by_lead)
    del by_lead
    row_end = flat[np.arange(1, n + 1) * n_days - 1]
    row_start = np.concatenate([[0.0], row_end[:-1]])
    counts = rng.poisson(np.maximum(row_end - row_start, 0.0))
    ev_lead = np.repeat(np.arange(n), counts)
    target = row_start[ev_lead] + rng.random(len(ev_lead)) * (row_end - row_start)[ev_lead]
    cell = np.searchsorted(flat, target, side="right")
    del flat
    ev_row = np.clip(cell - ev_lead * n_days, offset[0][ev_lead], last_row[ev_lead])
    first_day = ev_row == offset[0][ev_lead]
    lo_frac = np.where(first_day, created_frac[ev_lead], 0.0)
    ev_time = (d0 + ev_row) + lo_frac + rng.random(len(ev_lead)) * (1.0 - lo_frac)
    ev_sec = np.maximum(np.floor(ev_time * SECONDS_PER_DAY).astype(np.int64), created_sec[ev_lead])

    # event types from the per-type intensities at that lead-day
    level = engaged[ev_row, ev_lead]
    del intent, engaged
    type_rate = const[ev_lead] + concave[ev_lead] * np.sqrt(level)[:, None] + linear[ev_lead] * level[:, None]
    type_rate[:, _T[UNSUBSCRIBE]] = unsubscribe[ev_lead] / (1.0 + 2.0 * level)
    cum_rate = np.cumsum(type_rate, axis=1)
    pick = rng.random(len(ev_lead)) * cum_rate[:, -1]
    ev_type = np.minimum((cum_rate < pick[:, None]).sum(axis=1), N_SAMPLED_TYPES - 1)
    del type_rate, cum_rate
    value_draw = rng.standard_normal(len(ev_lead))

    # observed realism attributes, then the link scanners of business mailboxes
    email_domain = np.zeros(n, dtype=np.int64)
    account_type = np.zeros(n, dtype=np.int64)
    scanner = np.zeros(n, dtype=bool)
    if config.realism:
        email_domain = _pick(rx, _email_domain_p(persona, industry, employees))
        account_type = _pick(rx, PERSONA_ACCOUNT_P[persona])
        scan_p = np.select([employees >= 1000, employees >= 250], list(SCANNER_P[:2]), SCANNER_P[2])
        scanner = (rx.random(n) < scan_p) & (email_domain == 0) & ~bad_email
        sc_lead, sc_sec, sc_type = _scanner_events(rx, scanner, created_sec, end_day, scale)
        ev_lead = np.concatenate([ev_lead, sc_lead])
        ev_sec = np.concatenate([ev_sec, sc_sec])
        ev_type = np.concatenate([ev_type, sc_type])
        level = np.concatenate([level, np.zeros(len(sc_lead))])
        value_draw = np.concatenate([value_draw, np.zeros(len(sc_lead))])

    # no email after the first unsubscribe/bounce, nothing after the conversion
    keep = ev_sec <= conv_sec[ev_lead]
    stopper = np.isin(ev_type, EMAIL_STOPPERS) & keep
    stop_sec = np.full(n, np.iinfo(np.int64).max)
    np.minimum.at(stop_sec, ev_lead[stopper], ev_sec[stopper])
    keep &= ~(np.isin(ev_type, EMAIL_TYPES) & (ev_sec > stop_sec[ev_lead]))
    ev_lead, ev_sec, ev_type, level, value_draw = (
        ev_lead[keep], ev_sec[keep], ev_type[keep], level[keep], value_draw[keep])

    # recycled: strong episodes reach sales; some are handed back weeks later if not closed
    strong = (ep_amp > RECYCLE_MIN_AMPLITUDE * amplitude_mean[ep_lead]) & (rng.random(len(ep_lead)) < RECYCLE_PROBABILITY)
    recycle_time = ep_day + 20.0 + rng.exponential(20.0, size=len(ep_lead))
    recycle_sec = np.floor(recycle_time * SECONDS_PER_DAY).astype(np.int64)
    recycle_sec = np.maximum(recycle_sec, created_sec[ep_lead] + 1)
    recycled = strong & (recycle_sec < conv_sec[ep_lead]) & (recycle_sec < (end_day + 1) * SECONDS_PER_DAY)
    rc_lead, rc_sec = ep_lead[recycled], recycle_sec[recycled]

    # the form that created an inbound lead
    inbound = source != OUTBOUND
    cr_lead, cr_sec = np.flatnonzero(inbound), created_sec[inbound]

    all_lead = np.concatenate([ev_lead, rc_lead, cr_lead])
    all_sec = np.concatenate([ev_sec, rc_sec, cr_sec])
    all_type = np.concatenate([ev_type, np.full(len(rc_lead), _T[RECYCLED]), np.full(len(cr_lead), _T[FORM_FILL])])
    all_level = np.concatenate([level, np.zeros(len(rc_lead) + len(cr_lead))])
    all_draw = np.concatenate([value_draw, np.zeros(len(rc_lead) + len(cr_lead))])
    order = np.argsort(all_lead.astype(np.int64) * (1 << 40) + (all_sec - start_day * SECONDS_PER_DAY), kind="stable")
    all_lead, all_sec, all_type = all_lead[order], all_sec[order], all_type[order]
    all_level, all_draw = all_level[order], all_draw[order]
    events = _events_frame(config, lead_id[all_lead], all_sec, all_type, all_level, all_draw)

    # observed leads: missing values, more on sloppy records
    title_values = titles[seniority, template, function, lowercase]
    observed_seniority, seniority_levels = seniority, SENIORITIES
    if config.realism:
        titled = _persona_titles(rx, persona, lowercase)
        has_title = titled != None  # noqa: E711 (object array)
        title_values = np.where(has_title, titled, title_values)
        level_of_persona = np.full(len(PERSONAS), -1)
        for code, level in PERSONA_SENIORITY.items():
            level_of_persona[code] = len(SENIORITIES) + level
        observed_seniority = np.where(has_title, level_of_persona[persona], seniority)
        seniority_levels = (*SENIORITIES, *PERSONA_SENIORITIES)
    leads = pd.DataFrame({
        LEAD_ID: lead_id,
        CREATED_AT: created_sec.astype("datetime64[s]").astype("datetime64[ns]"),
        "industry": _categorical(industry, INDUSTRIES, _with_missing(rng, industry, MISSING_RATE["industry"], sloppy)),
        "employees": np.where(_with_missing(rng, employees, MISSING_RATE["employees"], sloppy), np.nan, employees),
        "annual_revenue": np.where(_with_missing(rng, revenue, MISSING_RATE["annual_revenue"], sloppy), np.nan, revenue),
        "country": _categorical(country, COUNTRIES, _with_missing(rng, country, MISSING_RATE["country"], sloppy)),
        "job_title": pd.Categorical(
            np.where(_with_missing(rng, function, MISSING_RATE["job_title"], sloppy), None,
                     title_values),
            categories=pd.Index(title_categories, dtype=object)),
        "seniority": _categorical(observed_seniority, seniority_levels,
                                  _with_missing(rng, seniority, MISSING_RATE["seniority"], sloppy)),
        "lead_source": _categorical(source, LEAD_SOURCES, _with_missing(rng, source, MISSING_RATE["lead_source"], sloppy)),
    })
    if config.realism:
        leads.loc[size_unknown, ["employees", "annual_revenue"]] = np.nan
        leads["email_domain"] = _categorical(email_domain, EMAIL_DOMAINS, _with_missing(
            rx, email_domain, REALISM_MISSING_RATE["email_domain"], sloppy))
        leads["account_type"] = _categorical(account_type, ACCOUNT_TYPES, _with_missing(
            rx, account_type, REALISM_MISSING_RATE["account_type"], sloppy))

    converted_at = np.where(converted, conv_sec, 0).astype("datetime64[s]").astype("datetime64[ns]")
    converted_at[~converted] = np.datetime64("NaT")
    amount = np.round(np.exp(np.log(8000) + 0.35 * np.log(employees / 50) + 0.6 * rng.standard_normal(n)), 2)
    outcomes = pd.DataFrame({LEAD_ID: lead_id, CONVERTED_AT: converted_at,
                             AMOUNT: np.where(converted, amount, np.nan)})

    lead_params = {
        LEAD_ID: lead_id, CREATED_AT: leads[CREATED_AT].to_numpy(), CONVERTED_AT: converted_at,
        "observed_until": np.full(n, config.observed_until.to_datetime64()).astype("datetime64[ns]"),
        "fit_score": fit, "base_hazard": base_hazard, "episode_rate": episode_rate,
        "amplitude_mean": amplitude_mean, "half_life_days": half_life, "bad_email": bad_email,
        "persona": np.asarray(PERSONAS, dtype=object)[persona], "email_scanner": scanner,
    }
    truth = _truth_frame(lead_params, ep_lead, ep_day, ep_amp, n)
    return SyntheticCRM(leads, events, outcomes, truth)


def _email_domain_p(persona: np.ndarray, industry: np.ndarray, employees: np.ndarray) -> np.ndarray:
    """Probabilities of business / personal / edu addresses per lead (rows of ``PERSONA_EMAIL_P``).

    Buyers from very small companies often sign up with a personal address, and buyers in
    education (universities buying software) with an edu one: neither is a perfect non-buyer sign.
    """
    p = PERSONA_EMAIL_P[persona].copy()
    buyer = persona == BUYER
    p[buyer & (employees < 20)] = (0.6, 0.4, 0.0)
    p[buyer & (industry == INDUSTRIES.index("education"))] = (0.45, 0.1, 0.45)
    return p


def _persona_titles(rng: np.random.Generator, persona: np.ndarray, lowercase: np.ndarray) -> np.ndarray:
    """Self-describing titles ("Student", "Open to Work", "Consultant"...) for most such personas, else NaN."""
    out = np.full(len(persona), None, dtype=object)
    u = rng.random(len(persona))
    which = rng.random(len(persona))
    for code, (titles, share) in PERSONA_TITLES.items():
        rows = (persona == code) & (u < share)
        chosen = np.asarray(titles, dtype=object)[(which[rows] * len(titles)).astype(np.int64)]
        out[rows] = np.where(lowercase[rows] == 1, np.char.lower(chosen.astype(str)).astype(object), chosen)
    return out


def _scanner_events(rng: np.random.Generator, scanner: np.ndarray, created_sec: np.ndarray, end_day: int,
                    scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A security gateway opens each delivered marketing email and clicks its links within seconds.

    Deliveries are a Poisson process on weekdays from creation to the end of the history; each one
    gives an open 1-30 s after delivery and 1 + Poisson(``SCANNER_EXTRA_CLICKS``) clicks 2-60 s after.
    """
    end_sec = (end_day + 1) * SECONDS_PER_DAY
    lifetime = np.where(scanner, (end_sec - created_sec) / SECONDS_PER_DAY, 0.0)
    sends = rng.poisson(SCANNER_SENDS_PER_DAY * scale * lifetime * 7 / 5)
    lead = np.repeat(np.arange(len(scanner)), sends)
    sent = created_sec[lead] + np.floor(rng.random(len(lead)) * (end_sec - created_sec[lead])).astype(np.int64)
    weekday = (sent // SECONDS_PER_DAY + 3) % 7
    lead, sent = lead[weekday < 5], sent[weekday < 5]
    clicks = 1 + rng.poisson(SCANNER_EXTRA_CLICKS, size=len(lead))
    click_lead = np.repeat(lead, clicks)
    click_sec = np.repeat(sent, clicks) + rng.integers(2, 61, size=len(click_lead))
    open_sec = sent + rng.integers(1, 31, size=len(lead))
    all_lead = np.concatenate([lead, click_lead])
    all_sec = np.minimum(np.concatenate([open_sec, click_sec]), end_sec - 1)
    all_type = np.concatenate([np.full(len(lead), _T[EMAIL_OPEN]), np.full(len(click_lead), _T[EMAIL_CLICK])])
    return all_lead, all_sec, all_type


def _events_frame(config: SynthConfig, lead_ids: np.ndarray, sec: np.ndarray, type_code: np.ndarray,
                  level: np.ndarray, draw: np.ndarray) -> pd.DataFrame:
    """Build the events table: type, channel, campaign (by quarter) and value (time on page...)."""
    channel = EVENT_CHANNEL[type_code]
    days = sec // SECONDS_PER_DAY
    dates = days.astype("datetime64[D]")
    year = dates.astype("datetime64[Y]").astype(np.int64) + 1970
    quarter = (dates.astype("datetime64[M]").astype(np.int64) % 12) // 3
    kind = np.full(len(type_code), -1)
    is_email = np.isin(type_code, [_T[EMAIL_OPEN], _T[EMAIL_CLICK], _T[UNSUBSCRIBE], _T[EMAIL_BOUNCE]])
    kind[is_email] = np.where(days[is_email] % 7 == 0, 1, 0)  # newsletter on one weekday
    kind[type_code == _T[WEBINAR]] = 2
    kind[type_code == _T[CONTENT_DOWNLOAD]] = 3
    campaign_code = np.where(kind >= 0, ((year - config.start.year) * 4 + quarter) * len(CAMPAIGN_KINDS) + kind, -1)
    value = np.full(len(type_code), np.nan)
    on_page = np.isin(type_code, [_T[PAGE_VIEW], _T[PRICING_PAGE_VIEW]])
    value[on_page] = np.round(40.0 * (1.0 + 0.3 * level[on_page]) * np.exp(0.9 * draw[on_page]), 1)
    watched = type_code == _T[WEBINAR]
    value[watched] = np.round(np.clip(35.0 + 12.0 * draw[watched], 2.0, 60.0), 1)  # minutes attended
    return pd.DataFrame({
        LEAD_ID: lead_ids,
        OCCURRED_AT: sec.astype("datetime64[s]").astype("datetime64[ns]"),
        EVENT_TYPE: pd.Categorical.from_codes(type_code.astype(np.int16), categories=pd.Index(EVENT_TYPES, dtype=object)),
        CHANNEL: pd.Categorical.from_codes(channel.astype(np.int16), categories=pd.Index(CHANNELS, dtype=object)),
        CAMPAIGN: pd.Categorical.from_codes(campaign_code.astype(np.int16),
                                            categories=pd.Index(_campaign_names(config), dtype=object)),
        VALUE: value,
    })


def _truth_frame(params: dict[str, np.ndarray], ep_lead: np.ndarray, ep_day: np.ndarray,
                 ep_amp: np.ndarray, n: int) -> pd.DataFrame:
    """Long ground truth: one row per episode (or one row with NaT for a lead without any)."""
    n_episodes = np.bincount(ep_lead, minlength=n)
    rows = np.maximum(n_episodes, 1)
    lead_of_row = np.repeat(np.arange(n), rows)
    first_row = np.concatenate([[0], np.cumsum(rows)[:-1]])
    start = np.full(len(lead_of_row), np.datetime64("NaT"), dtype="datetime64[ns]")
    amplitude = np.full(len(lead_of_row), np.nan)
    ep_first = np.concatenate([[0], np.cumsum(n_episodes)[:-1]])
    ep_row = first_row[ep_lead] + (np.arange(len(ep_lead)) - ep_first[ep_lead])
    start[ep_row] = ep_day.astype("datetime64[D]").astype("datetime64[ns]")
    amplitude[ep_row] = ep_amp
    frame = pd.DataFrame({name: values[lead_of_row] for name, values in params.items()})
    frame["episode_start"] = start
    frame["episode_amplitude"] = amplitude
    return frame


# --- chunks and outputs --------------------------------------------------------------------------


def _slice(crm: SyntheticCRM, first_id: int, stop_id: int) -> SyntheticCRM:
    """Leads with ``first_id <= lead_id < stop_id`` (every table is sorted by lead_id)."""

    def rows(frame: pd.DataFrame) -> pd.DataFrame:
        ids = frame[LEAD_ID].to_numpy()
        a, b = np.searchsorted(ids, [first_id, stop_id])
        return frame.iloc[a:b].reset_index(drop=True)

    return SyntheticCRM(*(rows(f) for f in (crm.leads, crm.events, crm.outcomes, crm.truth)))


def _concat(parts: list[SyntheticCRM]) -> SyntheticCRM:
    if len(parts) == 1:
        return parts[0]
    return SyntheticCRM(*(pd.concat([getattr(p, name) for p in parts], ignore_index=True)
                          for name in ("leads", "events", "outcomes", "truth")))


def iter_chunks(config: SynthConfig) -> Iterator[SyntheticCRM]:
    """Yield the CRM in chunks of ``config.chunk_leads`` leads (by lead id), in bounded memory."""
    n_blocks = -(-config.n_leads // BLOCK_LEADS)
    pending: list[SyntheticCRM] = []
    pending_leads = 0
    next_id = 1
    for block in range(n_blocks):
        pending.append(_generate_block(config, block))
        pending_leads += pending[-1].n_leads
        while pending_leads >= config.chunk_leads or (block == n_blocks - 1 and pending_leads > 0):
            merged = _concat(pending)
            stop = next_id + min(config.chunk_leads, pending_leads)
            yield _slice(merged, next_id, stop)
            rest = _slice(merged, stop, config.n_leads + 1)
            next_id = stop
            pending, pending_leads = ([rest], rest.n_leads) if rest.n_leads else ([], 0)


def generate(config: SynthConfig) -> SyntheticCRM:
    """The whole CRM in memory (for tests, demos and small sizes)."""
    return _concat(list(iter_chunks(config)))


def write_synthetic(
    config: SynthConfig,
    dest: str,
    fmt: Literal["csv", "parquet", "sql"],
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
) -> SynthSummary:
    """Generate chunk by chunk into ``dest`` (tables leads, events, outcomes, truth); summary of it.

    ``progress`` is called with the number of leads of each chunk written.
    """
    from features.writers import TableWriter

    began = time.perf_counter()
    n_leads = n_events = 0
    close_days: list[np.ndarray] = []
    with TableWriter(dest, fmt, overwrite=overwrite) as writer:
        for chunk in iter_chunks(config):
            for table, frame in chunk.tables().items():
                writer.write(table, frame)
            n_leads += chunk.n_leads
            n_events += len(chunk.events)
            days = (chunk.outcomes[CONVERTED_AT] - chunk.leads[CREATED_AT]).dt.total_seconds() / SECONDS_PER_DAY
            close_days.append(days.dropna().to_numpy())
            if progress is not None:
                progress(chunk.n_leads)
    durations = np.concatenate(close_days) if close_days else np.array([])
    return SynthSummary(
        dest=str(dest), fmt=fmt, leads=n_leads, events=n_events, conversions=len(durations),
        conversion_rate=len(durations) / max(n_leads, 1),
        median_days_to_close=float(np.median(durations)) if len(durations) else None,
        seconds=time.perf_counter() - began,
    )


# --- the oracle ----------------------------------------------------------------------------------

TRUTH_LEAD_COLUMNS = (LEAD_ID, CREATED_AT, CONVERTED_AT, "observed_until", "base_hazard", "episode_rate",
                      "amplitude_mean", "half_life_days")
TRUTH_EPISODE_COLUMNS = ("episode_start", "episode_amplitude")


def _epoch_days(values: pd.Series | np.ndarray) -> np.ndarray:
    """Fractional days since 1970-01-01 (NaT -> NaN)."""
    stamps = pd.to_datetime(pd.Series(np.asarray(values)))
    out = stamps.to_numpy(dtype="datetime64[ns]").astype(np.int64) / NS_PER_DAY
    return np.where(stamps.isna().to_numpy(), np.nan, out)


def true_probability(
    truth: pd.DataFrame,
    lead_ids: np.ndarray | pd.Series | list,
    as_of: pd.Timestamp | str | np.ndarray | pd.Series,
    horizon_days: int = 90,
    batch_size: int = 100_000,
) -> np.ndarray:
    """P(lead converts in ``(as_of, as_of + horizon_days]``) given the latent state at ``as_of``.

    Known: the lead's parameters and the episodes started before ``as_of`` (an episode of day ``s``
    starts at midnight of ``s``, so at a midnight ``as_of`` that day's episodes are still unknown:
    no event before ``as_of`` could reveal them); the later episodes are integrated out (Poisson arrivals, Gamma amplitudes: Campbell's
    formula with the Gamma Laplace transform). Returns 0 for leads converted at or before ``as_of`` and NaN for leads created after
    it. ``as_of`` is one instant or one per lead id, and must not pass the history end.
    """
    missing = [c for c in (*TRUTH_LEAD_COLUMNS, *TRUTH_EPISODE_COLUMNS) if c not in truth.columns]
    if missing:
        raise ValueError(f"truth table lacks columns {missing}")
    if horizon_days < 1:
        raise ValueError(f"horizon_days must be >= 1, got {horizon_days}")
    ordered = truth.sort_values([LEAD_ID, "episode_start"], kind="stable")
    params = ordered.drop_duplicates(LEAD_ID)
    param_ids = params[LEAD_ID].to_numpy()
    ids = np.asarray(lead_ids)
    pos = np.minimum(np.searchsorted(param_ids, ids), len(param_ids) - 1)
    unknown = param_ids[pos] != ids
    if unknown.any():
        raise ValueError(f"truth: unknown lead_id(s) {ids[unknown][:10].tolist()}")
    t = _epoch_days(np.broadcast_to(np.asarray(as_of, dtype="datetime64[ns]"), ids.shape))
    if np.isnan(t).any():
        raise ValueError("as_of: missing (NaT) instants")
    observed_until = _epoch_days(params["observed_until"])[pos]
    late = t > observed_until + 1e-9
    if late.any():
        raise ValueError(f"as_of after the end of the simulated history for lead_id(s) {ids[late][:10].tolist()}")

    episodes = ordered[ordered["episode_start"].notna()]
    ep_param = np.searchsorted(param_ids, episodes[LEAD_ID].to_numpy())
    ep_day = np.round(_epoch_days(episodes["episode_start"])).astype(np.int64)
    ep_amp = episodes["episode_amplitude"].to_numpy(dtype=float)
    ep_first = np.searchsorted(ep_param, np.arange(len(param_ids)))
    ep_count = np.searchsorted(ep_param, np.arange(len(param_ids)), side="right") - ep_first

    created = _epoch_days(params[CREATED_AT])[pos]
    converted = _epoch_days(params[CONVERTED_AT])[pos]
    result = np.full(len(ids), np.nan)
    result[converted <= t] = 0.0
    open_rows = np.flatnonzero((created <= t) & ~(converted <= t))
    columns = {name: params[name].to_numpy(dtype=float) for name in TRUTH_LEAD_COLUMNS[4:]}
    for begin in range(0, len(open_rows), batch_size):
        rows = open_rows[begin: begin + batch_size]
        p = pos[rows]
        result[rows] = _open_probability(
            t[rows], columns["base_hazard"][p], columns["episode_rate"][p], columns["amplitude_mean"][p],
            2.0 ** (-1.0 / columns["half_life_days"][p]), ep_first[p], ep_count[p], ep_day, ep_amp, horizon_days,
        )
    return result


def _open_probability(t: np.ndarray, base: np.ndarray, lam: np.ndarray, amp_mean: np.ndarray, rho: np.ndarray,
                      ep_first: np.ndarray, ep_count: np.ndarray, ep_day: np.ndarray, ep_amp: np.ndarray,
                      horizon: int) -> np.ndarray:
    """Oracle for open leads (vectors aligned by query)."""
    q = len(t)
    day = np.floor(t).astype(np.int64)
    frac = t - day
    # intent state at the as-of day from the episodes already started
    query_of = np.repeat(np.arange(q), ep_count)
    within = np.arange(len(query_of)) - np.repeat(np.cumsum(ep_count) - ep_count, ep_count)
    idx = ep_first[query_of] + within
    lag = day[query_of] - ep_day[idx] + 1
    # an episode of day s starts at midnight of s: known iff s < t (at a midnight as_of, that day's
    # episodes have not started yet and no event can reveal them, so they are integrated out)
    known = (lag >= 2) | ((lag == 1) & (frac[query_of] > 0))
    slow = np.bincount(query_of[known], weights=ep_amp[idx][known] * rho[query_of][known] ** lag[known], minlength=q)
    rho_fast = rho * KAPPA
    fast = np.bincount(query_of[known], weights=ep_amp[idx][known] * rho_fast[query_of][known] ** lag[known], minlength=q)

    steps = np.arange(horizon + 1)
    weight = np.ones((q, horizon + 1))
    weight[:, 0] = 1.0 - frac
    weight[:, horizon] = frac
    x = base[:, None] * conversion_season(day[:, None] + steps[None, :]) * weight
    intent = slow[:, None] * rho[:, None] ** steps[None, :] - fast[:, None] * rho_fast[:, None] ** steps[None, :]
    known_hazard = (x * (INTENT_FLOOR + intent)).sum(axis=1)
    # an episode starting on day+j adds A * c_j of hazard; c_j by backward recursion
    future = np.zeros(q)
    tail_slow = np.zeros(q)
    tail_fast = np.zeros(q)
    for j in range(horizon, -1, -1):
        tail_slow = rho * (x[:, j] + tail_slow)
        tail_fast = rho_fast * (x[:, j] + tail_fast)
        c = (amp_mean / AMPLITUDE_SHAPE) * (tail_slow - tail_fast)
        term = -np.expm1(-AMPLITUDE_SHAPE * np.log1p(c))
        future += term if j > 0 else np.where(frac > 0, 0.0, term)  # day 0: only unknown at midnight
    return -np.expm1(-known_hazard - lam * future)
