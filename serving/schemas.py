"""Request and response models of the scoring endpoint (pydantic; they make the OpenAPI schema).

Shapes follow the data contract: a lead is ``lead_id``, ``created_at``, ``attributes`` and recent
``events`` (``created_at`` may be left out for a flat model, which reads only ``attributes``). Field-level rules live here (types, lengths, finite numbers, sane timestamps);
rules that need the model's FeatureSpec or the request's ``as_of`` are in :func:`check_leads`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    field_serializer,
    field_validator,
)

from features.contract import did_you_mean, number_from_text
from features.schema import EVENT_TYPE, naive_utc_datetime
from features.spec import FLAT_KIND, FeatureSpec
from serving.settings import MAX_TOP_K

MIN_INSTANT = datetime(1970, 1, 1)
MAX_INSTANT = datetime(2200, 1, 1)
MAX_TEXT = 1000
MAX_NAME = 200
MAX_EVENTS_PER_LEAD = 10_000
MAX_ATTRIBUTES = 500
MAX_BATCH_HARD = 10_000
FUTURE_TOLERANCE = timedelta(days=1)  # an as-of later than now by more than this is refused (clock skew allowed)
# without an as-of the request is scored at the server's now, or just after its latest timestamp when that is
# ahead of the server's clock by at most this (the caller's clock runs ahead: its "now" events still count)
DEFAULT_AS_OF_SKEW = timedelta(minutes=5)


def default_as_of(leads: Sequence[LeadIn], now: datetime) -> datetime:
    """The as-of of a request that gives none: ``now``, or 1 microsecond after the request's latest
    ``created_at`` / ``occurred_at`` when that lies ahead of ``now`` by at most :data:`DEFAULT_AS_OF_SKEW`
    (later ones are then refused as after as_of, naming the lead)."""
    latest = max((t for lead in leads for t in (lead.created_at, *(e.occurred_at for e in lead.events))
                  if t is not None), default=now)
    if now < latest <= now + DEFAULT_AS_OF_SKEW:
        return latest + timedelta(microseconds=1)
    return now
MAX_ECHOED = 60  # characters of a request's key (a field location) quoted back in an answer or the log

Name = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME)]
Text = Annotated[str, StringConstraints(max_length=MAX_TEXT)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


def _not_a_bool(value: Any) -> Any:
    """Refuse ``true`` / ``false`` as a lead id (lax mode would take ``true`` for the lead 1)."""
    if isinstance(value, bool):
        raise ValueError("must be an integer or a text, not a boolean")
    return value


def _number_from_text(value: Any) -> Any:
    """An event's ``value`` sent as text: its number when the data contract reads the text as one
    (:func:`~features.contract.number_from_text`: ``"250"``, ``" 1e3 "``), else the text (a missing marker
    of the model's project, or an error, decided by :func:`check_leads`, which knows the markers)."""
    if isinstance(value, str) and (number := number_from_text(value)) is not None:
        return number
    return value


LeadId = Annotated[Annotated[int, Field(ge=-(2**63), le=2**63 - 1)] | Name, BeforeValidator(_not_a_bool)]
BoundedInt = Annotated[int, Field(ge=-(10**18), le=10**18)]
AttributeValue = FiniteFloat | BoundedInt | bool | Text | None


def clipped(text: str, limit: int = MAX_ECHOED) -> str:
    """``text`` cut to ``limit`` characters, "..." marking the cut (request keys are input too: a
    form-encoded body arrives as one huge key)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_instant(value: datetime) -> datetime:
    outside = f"outside [{MIN_INSTANT.date()}, {MAX_INSTANT.date()})"
    try:
        value = naive_utc_datetime(value)
    except OverflowError:  # year 1 at +01:00, 9999 at -01:00: before or after datetime's range in UTC
        raise ValueError(f"timestamp {value.isoformat()} {outside}") from None
    if not MIN_INSTANT <= value < MAX_INSTANT:
        raise ValueError(f"timestamp {value.isoformat()} {outside}")
    return value


ReasonCount = Annotated[int, Strict()]
"""A JSON integer (``true`` or ``"3"`` are refused, not read as 1 and 3)."""

Instant = Annotated[datetime, AfterValidator(_check_instant)]
"""A timestamp in [1970, 2200), timezone-aware values converted to naive UTC."""


class EventIn(BaseModel):
    """One engagement event of a lead."""

    model_config = ConfigDict(extra="forbid")

    occurred_at: datetime
    event_type: Name
    channel: Text | None = None
    campaign: Text | None = None
    value: Annotated[FiniteFloat | Text | None, BeforeValidator(_number_from_text)] = Field(
        None, description="a number (or one as text); a missing marker of the model's project (\"\", e.g. "
                          "\"Select\") is a missing value")

    _instant = field_validator("occurred_at")(_check_instant)


CREATED_AT_HELP = ("when the lead was created; required by a CRM (event) model, whose features count from it; "
                   "a flat model reads none of it: leave it out (null), or it is checked as given (not after as_of)")


class LeadIn(BaseModel):
    """A lead to score: its attributes and recent engagement events (``created_at``: see
    :data:`CREATED_AT_HELP`; a lead without it is refused by :func:`check_leads` unless the model is flat)."""

    model_config = ConfigDict(extra="forbid")

    lead_id: LeadId
    created_at: Instant | None = Field(None, description=CREATED_AT_HELP)
    attributes: dict[Name, AttributeValue] = Field(default_factory=dict, max_length=MAX_ATTRIBUTES)
    events: list[EventIn] = Field(default_factory=list, max_length=MAX_EVENTS_PER_LEAD)

    def payload(self) -> dict[str, Any]:
        """The dict shape ``features_from_payloads`` reads."""
        return {
            "lead_id": self.lead_id,
            "created_at": self.created_at,
            "attributes": self.attributes,
            "events": [{"occurred_at": e.occurred_at, EVENT_TYPE: e.event_type} for e in self.events],
        }


MAX_EVENTS_PER_REQUEST = 500_000  # all leads together: a larger request would outrun the server's timeout


class ScoreRequest(BaseModel):
    """The body of ``POST /score``: unknown top-level fields are refused (a misspelt ``as_of`` would
    silently score at the current instant)."""

    model_config = ConfigDict(extra="forbid")

    leads: list[LeadIn] = Field(..., min_length=1, max_length=MAX_BATCH_HARD)
    as_of: Instant | None = Field(None, description="scoring instant (default now, UTC, or just after the request's "
                                  "latest timestamp when that is at most 5 minutes ahead); no event may be after it")
    top_k: ReasonCount | None = Field(None, ge=0, le=MAX_TOP_K, description="reasons per lead (default: LEADSCORE_TOP_K, 3)")

    @field_validator("leads")
    @classmethod
    def _events_in_total(cls, leads: list[LeadIn]) -> list[LeadIn]:
        total = sum(len(lead.events) for lead in leads)
        if total > MAX_EVENTS_PER_REQUEST:
            raise ValueError(f"{total:,} events in total; at most {MAX_EVENTS_PER_REQUEST:,} per request "
                             "(send fewer leads per request)")
        return leads


class Reason(BaseModel):
    """One feature's share of the score, in probability points (signed)."""

    feature: str
    label: str
    family: str
    value: str | float | None
    impact: float


class LeadScore(BaseModel):
    """The answer for one lead.

    ``base_score + fit_score + engagement_score + lifecycle_score == 100 * probability``; these and
    ``reasons`` are left out (null / empty) when ``top_k`` is 0. The time-to-close fields are null
    when no time-to-close model is served; ``median_days`` is also null when the median lies beyond
    that model's horizon (``time_to_close_model.horizon_days``).
    """

    lead_id: int | str
    probability: float
    horizon_days: int | None
    score: int
    grade: str
    mql: bool
    base_score: float | None
    fit_score: float | None
    engagement_score: float | None
    lifecycle_score: float | None
    reasons: list[Reason]
    p_close_30d: float | None = Field(None, description="P(closes within 30 days), time-to-close model")
    p_close_60d: float | None = Field(None, description="P(closes within 60 days), time-to-close model")
    p_close_90d: float | None = Field(None, description="P(closes within 90 days), time-to-close model")
    median_days: float | None = Field(None, description="median days to close; null beyond the model's horizon")
    warnings: list[str] = Field(default_factory=list)


class ModelIdentity(BaseModel):  # serving.core.ModelInfo without its source (a registry URI or server folder)
    """Which model answered."""

    name: str
    version: str
    run_id: str | None = None
    training_date: str | None = None
    horizon_days: int | None = None
    mql_cutoff: int | None = None


class ScoreResponse(BaseModel):
    model: ModelIdentity
    time_to_close_model: ModelIdentity | None = None
    as_of: datetime = Field(description="the scoring instant, UTC, with its offset (Z)")
    scores: list[LeadScore]

    @field_serializer("as_of")
    def _utc(self, value: datetime) -> str:
        """With its offset: a client that reads a timestamp without one as local time (JavaScript's Date
        does) would move it by its time zone."""
        return naive_utc_datetime(value).isoformat() + "Z"


class ErrorResponse(BaseModel):
    """An error answer of ``POST /score``: ``error`` always; a 400 names the lead (``lead_index``,
    ``lead_id``, null for an error of the whole request) and ``field`` of its first error and lists
    every error under ``errors``; a 500 has the ``error_id`` that is also in the server log."""

    error: str
    error_id: str | None = None
    lead_index: int | None = None
    lead_id: int | str | None = None
    field: str | None = None
    errors: list[str] | None = None


MAX_ERRORS_LISTED = 50  # lead errors listed in one 400 answer


def request_error(field: str, message: str) -> dict[str, Any]:
    """The 400 body of an error of the whole request (no lead to name), in the shape of
    :meth:`LeadError.as_response`."""
    error = f"{field}: {message}"
    return {"error": error, "lead_index": None, "lead_id": None, "field": field, "errors": [error]}


class LeadError(ValueError):
    """A lead that cannot be scored: names the lead (index and id) and the field; ``others`` are the
    errors of the request's other leads (all are listed in the answer)."""

    def __init__(self, index: int, lead_id: Any, field: str, message: str) -> None:
        where = f"lead {index}" if lead_id is None else f"lead {index} (lead_id {lead_id!r})"  # None: a missing id
        super().__init__(f"{where}: {field}: {message}")
        self.index, self.lead_id, self.field = index, lead_id, field
        self.others: list[LeadError] = []

    def as_response(self) -> dict[str, Any]:
        every = [self, *self.others]
        return {"error": str(self) if not self.others else f"{len(every)} errors; first: {self}",
                "lead_index": self.index, "lead_id": self.lead_id, "field": self.field,
                "errors": [str(e) for e in every[:MAX_ERRORS_LISTED]]}


def check_leads(
    leads: Sequence[LeadIn], as_of: datetime, spec: FeatureSpec, non_negative: Sequence[str] = (),
    unseen: Sequence[Mapping[str, list[str]]] | None = None,
) -> list[list[str]]:
    """Rules that need ``as_of`` and the model's spec; raises LeadError, returns warnings per lead.
    ``unseen``: each lead's ``spec.unseen_in_payload`` when the caller has it (else computed here).

    Numeric attributes are read as the data contract reads a table's column, and the lead's
    ``attributes`` get the numbers (its payload holds the same dict): text as its number
    (:func:`~features.contract.number_from_text`: ``"250"``, ``" 1e3 "``), a missing marker of the
    model's project (``spec.missing_values_``: ``""``, and e.g. ``"Select"`` when the project declares it)
    as missing, ``true`` / ``false`` as 1 / 0. A categorical attribute given as a marker is missing too
    (no unseen-category warning), and so is an event's ``value`` (set to None; numbers sent as text were
    read on validation; no feature reads it).

    Errors (all leads' are collected, then raised together): a lead id equal to a missing marker (a
    missing id: the contract refuses the lead row, or quarantines it; the error gives ``lead_id`` null),
    a lead id given twice (42 and "42" are one id), a lead without ``created_at`` when the model is not
    flat (a CRM model's features count from it), lead created after as_of (flat models too: a given
    ``created_at`` is checked, though not read), events after as_of, an event type equal to a missing marker (a
    missing type: the contract refuses such an event row, or quarantines it), values of numeric
    attributes or of event values that are no finite number (text such as ``"abc"``, ``"1,000"``,
    ``"NaN"``), negative
    values of ``non_negative`` attributes. Warnings: unseen categories
    (scored as unknown), unknown event types (ignored), events at as_of exactly (not counted:
    features use the time strictly before it), attributes the model does not use.
    """
    numeric = set(spec.numeric_columns_)
    known = set(spec.fit_columns)
    markers = spec.missing_markers
    no_negatives = set(non_negative)
    out: list[list[str]] = []
    errors: list[LeadError] = []
    first_index: dict[str, int] = {}
    for i, lead in enumerate(leads):
        # a marker as the id ("Select"): the contract reads a missing id (null_value), not echoed as an id
        lead_id = None if isinstance(lead.lead_id, str) and lead.lead_id in markers else lead.lead_id
        if lead_id is None:
            errors.append(LeadError(i, None, "lead_id", f"{clipped(repr(lead.lead_id))} is a missing value (the "
                                    "project's missing_values): a lead needs its id"))
        else:
            key = str(lead_id)  # one id: 4988 and "4988" are the same lead
            if key in first_index:
                errors.append(LeadError(i, lead_id, "lead_id", f"also given as lead {first_index[key]}"))
            first_index.setdefault(key, i)
        if lead.created_at is None:
            if spec.kind_ != FLAT_KIND:
                errors.append(LeadError(i, lead_id, "created_at", "missing: this model reads each lead's creation "
                                        "instant (a CRM model; only a flat model's leads may leave it out)"))
        elif lead.created_at > as_of:
            errors.append(LeadError(i, lead_id, "created_at", f"{lead.created_at.isoformat()} is after as_of "
                                    f"{as_of.isoformat()}"))
        at_as_of = 0
        for j, event in enumerate(lead.events):
            if event.occurred_at > as_of:
                errors.append(LeadError(i, lead_id, f"events[{j}].occurred_at",
                                        f"{event.occurred_at.isoformat()} is after as_of {as_of.isoformat()}"))
                break
            if event.event_type in markers:
                errors.append(LeadError(i, lead_id, f"events[{j}].event_type",
                                        f"{event.event_type!r} is a missing value (the project's missing_values): "
                                        "an event needs its type"))
                break
            if isinstance(event.value, str):  # numbers as text were read on validation: a marker, or no number
                if event.value not in markers:
                    errors.append(LeadError(i, lead_id, f"events[{j}].value",
                                            f"must be a number, got {clipped(repr(event.value))}"))
                    break
                event.value = None  # as the contract reads the value column: missing (no feature reads it)
            at_as_of += event.occurred_at == as_of
        read: dict[str, float | None] = {}  # numbers sent as text (or booleans), read as the contract reads them
        for name, value in lead.attributes.items():
            if name not in numeric or value is None:
                continue
            number: Any = value
            if isinstance(value, bool):  # a boolean column is read as 1 / 0
                number = float(value)
            elif isinstance(value, str) and value in markers:  # as the contract reads a table: "", "Select"
                read[name] = None
                continue
            elif isinstance(value, str):  # "250" and " 1e3 " are numbers
                number = number_from_text(value)
                if number is None:
                    errors.append(LeadError(i, lead_id, f"attributes.{name}", f"must be a number, got {clipped(repr(value))}"))
                    continue
            if not isinstance(number, int | float):
                errors.append(LeadError(i, lead_id, f"attributes.{name}", f"must be a number, got {clipped(repr(value))}"))
            elif not math.isfinite(number):
                errors.append(LeadError(i, lead_id, f"attributes.{name}", f"must be finite, got {clipped(repr(value))}"))
            elif name in no_negatives and number < 0:
                errors.append(LeadError(i, lead_id, f"attributes.{name}", f"must be >= 0, got {clipped(repr(value))}"))
            elif number is not value:
                read[name] = number
        if read and not errors:
            lead.attributes.update(read)  # the payload holds this dict: the features get the numbers
        if errors:
            continue  # warnings only matter for a request that is scored
        warnings = [k for k in lead.attributes if k not in known]
        if warnings:  # a misspelt name may mean a feature the lead left out
            left_out = [c for c in spec.fit_columns if c not in lead.attributes]
            warnings = [f"attribute {k!r} is not a model feature; ignored{did_you_mean(k, left_out)}" for k in warnings]
        if at_as_of:
            warnings.append(f"{at_as_of} event(s) at as_of exactly not counted (features use the time before it)")
        for col, values in (spec.unseen_in_payload(lead.payload()) if unseen is None else unseen[i]).items():
            if col == EVENT_TYPE:
                warnings.append(f"unknown event types ignored: {values}")
            else:
                warnings.append(f"attribute {col!r}: unseen category {values[0]!r} scored as unknown")
        out.append(warnings)
    if errors:
        errors[0].others = errors[1:]
        raise errors[0]
    return out


DATETIME_EXPECTED = "expected ISO 8601, such as 2026-01-31 or 2026-01-31T09:00:00Z"
_UNION_MEMBER = re.compile(r"^(constrained-)?(int|float|str|bool|bytes|dict|list|none|datetime|date)$|^function-")


def _unknown_field_hint(loc: tuple[str, ...]) -> str:
    """What an unknown field of the body, a lead or an event may have meant: the accepted field it is closest to
    ("asOf": "did you mean 'as_of'?"); at a lead, attributes go under ``attributes``; else the accepted fields."""
    if len(loc) == 1:
        model: type[BaseModel] = ScoreRequest
    elif len(loc) == 3 and loc[0] == "leads":
        model = LeadIn
    elif len(loc) == 5 and loc[0] == "leads" and loc[2] == "events":
        model = EventIn
    else:
        return ""
    fields = list(model.model_fields)
    hint = did_you_mean(loc[-1][:MAX_NAME], fields)
    if hint:
        return hint
    if model is LeadIn:
        return f"; a lead's attributes go under \"attributes\" ({{\"attributes\": {{{clipped(loc[-1])!r}: ...}}}})"
    return f"; accepted: {', '.join(fields)}"


def validation_error_response(detail: list[dict[str, Any]], request: Any) -> dict[str, Any] | None:
    """The body of a request the pydantic model refused (BentoML's ``detail`` list), in the shape of
    :meth:`LeadError.as_response`: ``error``, ``lead_index``, ``lead_id``, ``field``, ``errors``;
    ``request`` is the parsed request body (for the lead ids). None when ``detail`` is not such a list."""
    if not detail or not all(isinstance(d, dict) and isinstance(d.get("loc"), list | tuple) for d in detail):
        return None
    leads = request.get("leads") if isinstance(request, dict) else None
    # a value refused by every member of a union (number | text) comes as one error per member, the
    # member's tag last in its location: one field, one message
    grouped: dict[tuple[str, ...], list[str]] = {}
    for item in detail:
        loc = tuple(str(part) for part in item["loc"])
        member = len(loc) > 1 and _UNION_MEMBER.match(loc[-1]) is not None
        key = loc[:-1] if member else loc
        message = str(item.get("msg", "invalid"))
        if item.get("type") == "extra_forbidden" or message == "Extra inputs are not permitted":
            message += _unknown_field_hint(loc)
        if str(item.get("type", "")).startswith(("datetime_", "date_")):  # "01-02-2018" (day first) said nothing
            message += f" ({DATETIME_EXPECTED})"                          # of the format to send
        grouped.setdefault(key, []).append(f"{clipped(loc[-1])}: {message}" if member else message)
    messages, first = [], None
    for parts, texts in grouped.items():
        loc = list(parts)
        item = {"msg": texts[0] if len(texts) == 1 else "not valid as any accepted type (" + "; ".join(texts) + ")"}
        loc = loc[:2] + [f"[{p}]" if p.isdigit() else p for p in loc[2:]]  # events.0.x -> events[0].x
        index = int(loc[1]) if len(loc) > 1 and loc[0] == "leads" and loc[1].isdigit() else None
        field = ".".join(loc[2:] if index is not None else loc).replace(".[", "[") or ("lead" if index is not None
                                                                                      else "body")
        field = clipped(field)  # a key is input: a form-encoded body is one key, the whole body
        lead_id = None
        if index is not None and isinstance(leads, list) and index < len(leads) and isinstance(leads[index], dict):
            given = leads[index].get("lead_id")  # echoed only when it is a valid id (never a huge or odd value)
            valid_int = isinstance(given, int) and not isinstance(given, bool) and -(2**63) <= given < 2**63
            lead_id = given if valid_int or (isinstance(given, str) and 0 < len(given) <= MAX_NAME) else None
        where = "" if index is None else f"lead {index}: " if lead_id is None else f"lead {index} (lead_id {lead_id!r}): "
        messages.append(f"{where}{field}: {item.get('msg', 'invalid')}")
        first = first or (index, lead_id, field)
    index, lead_id, field = first
    error = messages[0] if len(messages) == 1 else f"{len(messages)} errors; first: {messages[0]}"
    return {"error": error, "lead_index": index, "lead_id": lead_id, "field": field,
            "errors": messages[:MAX_ERRORS_LISTED]}
