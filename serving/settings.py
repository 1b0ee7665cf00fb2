"""The serving settings (read once from the environment at start-up) and the scoring core's parameters.

Light on purpose (pydantic only): `leadscore serve` checks them before it becomes `bentoml serve`, without
loading the scoring libraries the server's worker loads anyway.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

DEFAULT_MODEL_NAME = "lead-conversion"
DEFAULT_TIME_TO_CLOSE_NAME = "lead-time-to-close"
DEFAULT_ALIAS = "champion"
DEFAULT_GRADE_LIFTS = (4.0, 2.0, 1.0)
MAX_TOP_K = 20  # reasons per lead the real-time endpoint gives at most (a rescore takes up to 50)


class ScoringConfig(BaseModel):
    """Parameters of the scoring core (loaded once at the edge)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    top_k: int = Field(3, ge=0, le=50, description="reasons per lead (0 skips the SHAP cost)")
    grade_lifts: tuple[float, float, float] = Field(
        DEFAULT_GRADE_LIFTS, description="A/B/C cut-offs as multiples of the training base rate's odds"
    )
    grade_cutoffs: tuple[int, int, int] | None = Field(
        None, description="fixed A/B/C score cut-offs (0-100); overrides grade_lifts"
    )
    mql_cutoff: int = Field(50, ge=0, le=100, description="fallback MQL score cut-off when the model has none")
    explain_threads: int = Field(2, ge=1, le=64, description="parallel chunks for large batches")
    chunk_rows: int = Field(4096, ge=1)

    @model_validator(mode="after")
    def _descending(self) -> ScoringConfig:
        for name, values in (("grade_lifts", self.grade_lifts), ("grade_cutoffs", self.grade_cutoffs)):
            if values is not None and not (values[0] >= values[1] >= values[2] >= 0):
                raise ValueError(f"{name} must be non-negative and descending (A >= B >= C), got {values}")
        return self


MIB = 1 << 20
# The largest request LEADSCORE_MAX_BATCH allows at its maximum, with realistic leads: 10,000 leads of
# ~1.4 KB of attributes each (the largest of X Education's, 37 columns) and the 500,000 events a request
# may hold (50 per lead) of ~150 B each (microsecond timestamp with offset, type, channel, campaign, value)
# come to ~89 MB; rounded up (README, "Security").
DEFAULT_MAX_BODY_MB = 100
# A client's body arrives in pieces (one per socket read); a client that is sending leaves gaps of milliseconds
# between them. 10 s without a byte is a client that stopped sending, well within the request timeout.
DEFAULT_RECEIVE_TIMEOUT_SECONDS = 10.0
# BentoML's request timeout of the service (a 504 once it passes), from its headers to the answer's first
# byte. The largest request the limits allow (10,000 leads of 50 full events, 77 MB) costs the worker 10.0 s
# of CPU; on 2 cores shared at load 8 it was answered in 24 s, so 30 s answered some such valid requests 504.
# Two at once on a worker take twice that: 120 s leaves room for both on a busy machine.
REQUEST_TIMEOUT_SECONDS = 120.0


class ServingSettings(BaseModel):
    """Everything the service needs besides the model (see :meth:`from_env` for the variables)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    project_dir: Path = Path(".demo")
    tracking_uri: str | None = None
    model_dir: Path | None = None
    model_name: str = DEFAULT_MODEL_NAME
    time_to_close_name: str = Field(DEFAULT_TIME_TO_CLOSE_NAME, description="registered name (or exported folder) of "
                                    "the time-to-close model, served beside when it exists; empty: never")
    alias: str = DEFAULT_ALIAS
    api_keys: tuple[str, ...] = ()
    max_batch: int = Field(1000, ge=1, le=10_000)
    max_body_mb: int = Field(DEFAULT_MAX_BODY_MB, ge=1, le=1024, description="largest request body in MiB; a "
                             "larger one is refused (413) before it is read in full")
    receive_timeout_seconds: float = Field(DEFAULT_RECEIVE_TIMEOUT_SECONDS, gt=0, description="longest wait for "
                                           "the next piece of a request body; then a 408")
    request_timeout_seconds: float = Field(REQUEST_TIMEOUT_SECONDS, ge=1, le=3600, description="BentoML's request "
                                           "timeout of the service (applied by `leadscore serve`); then a 504")
    # finite: an infinite period was taken, and the champion check's wait overflowed and ended its thread
    reload_seconds: float = Field(30.0, ge=0, allow_inf_nan=False,
                                  description="period of the champion check; 0 disables it")
    non_negative_attributes: tuple[str, ...] = ("employees", "annual_revenue")
    scoring: ScoringConfig = Field(default_factory=ScoringConfig)

    @field_validator("api_keys")
    @classmethod
    def _keys_fit_a_header(cls, keys: tuple[str, ...]) -> tuple[str, ...]:
        """An HTTP header carries ASCII: a key with other characters could never be matched (a client's UTF-8
        bytes arrive read as Latin-1), so it is refused at start-up rather than answering 401 for ever."""
        for number, key in enumerate(keys, start=1):
            if not all(" " <= ch <= "~" for ch in key):
                raise ValueError(f"key {number} of {len(keys)} has characters an HTTP header cannot carry (only "
                                 "printable ASCII: letters, digits, punctuation)")
        return keys

    @property
    def max_body_bytes(self) -> int:
        """``max_body_mb`` in bytes (1 MiB = 1,048,576 bytes)."""
        return self.max_body_mb * MIB

    @property
    def resolved_tracking_uri(self) -> str:
        """MLFLOW_TRACKING_URI, else the embedded ``sqlite:///<project dir>/mlflow.db``."""
        return self.tracking_uri or f"sqlite:///{(self.project_dir / 'mlflow.db').resolve()}"

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, endpoint: bool = False) -> ServingSettings:
        """LEADSCORE_PROJECT_DIR, MLFLOW_TRACKING_URI, LEADSCORE_MODEL_DIR, LEADSCORE_MODEL_NAME,
        LEADSCORE_MODEL_ALIAS, LEADSCORE_TIME_TO_CLOSE_NAME, LEADSCORE_API_KEYS (comma-separated), LEADSCORE_MAX_BATCH,
        LEADSCORE_MAX_BODY_MB, LEADSCORE_RECEIVE_TIMEOUT_SECONDS, LEADSCORE_REQUEST_TIMEOUT_SECONDS,
        LEADSCORE_RELOAD_SECONDS, LEADSCORE_TOP_K, LEADSCORE_MQL_CUTOFF (fallback),
        LEADSCORE_GRADE_CUTOFFS ("A,B,C" scores), LEADSCORE_EXPLAIN_THREADS. ``endpoint``: settings of the
        real-time service, whose answers carry at most ``MAX_TOP_K`` reasons (a rescore takes up to 50)."""
        values: dict[str, Any] = {}
        scoring: dict[str, Any] = {}
        for var, key in _PLAIN_VARIABLES.items():
            if env.get(var):
                values[key] = env[var]
        if "LEADSCORE_TIME_TO_CLOSE_NAME" in env:  # set but empty: no time-to-close model
            values["time_to_close_name"] = env["LEADSCORE_TIME_TO_CLOSE_NAME"].strip()
        if env.get("LEADSCORE_API_KEYS"):
            values["api_keys"] = tuple(k.strip() for k in env["LEADSCORE_API_KEYS"].split(",") if k.strip())
            if endpoint and not values["api_keys"]:  # blanks and commas: a secret that came out empty, not "no keys"
                raise SettingsError("LEADSCORE_API_KEYS: set, but holds no key (only blanks and commas); unset it "
                                    "to serve without API keys", env)
        for var, key in _SCORING_VARIABLES.items():
            if env.get(var):
                scoring[key] = env[var]
        if env.get("LEADSCORE_GRADE_CUTOFFS"):
            scoring["grade_cutoffs"] = tuple(env["LEADSCORE_GRADE_CUTOFFS"].split(","))
        try:
            settings = cls.model_validate({**values, "scoring": scoring})
        except ValidationError as exc:
            raise SettingsError(exc, env) from None
        if settings.receive_timeout_seconds >= settings.request_timeout_seconds:  # BentoML's 504 would come first
            raise SettingsError(f"LEADSCORE_RECEIVE_TIMEOUT_SECONDS={settings.receive_timeout_seconds:g} must be below "
                                f"LEADSCORE_REQUEST_TIMEOUT_SECONDS={settings.request_timeout_seconds:g}: the request "
                                "timeout counts from the request's headers, and its 504 would come before the 408", env)
        if endpoint and settings.scoring.top_k > MAX_TOP_K:
            raise SettingsError(f"LEADSCORE_TOP_K={env.get('LEADSCORE_TOP_K', '')}: the endpoint gives at most "
                                f"{MAX_TOP_K} reasons per lead", env)
        return settings


_PLAIN_VARIABLES = {
    "LEADSCORE_PROJECT_DIR": "project_dir",
    "MLFLOW_TRACKING_URI": "tracking_uri",
    "LEADSCORE_MODEL_DIR": "model_dir",
    "LEADSCORE_MODEL_NAME": "model_name",
    "LEADSCORE_MODEL_ALIAS": "alias",
    "LEADSCORE_MAX_BATCH": "max_batch",
    "LEADSCORE_MAX_BODY_MB": "max_body_mb",
    "LEADSCORE_RECEIVE_TIMEOUT_SECONDS": "receive_timeout_seconds",
    "LEADSCORE_REQUEST_TIMEOUT_SECONDS": "request_timeout_seconds",
    "LEADSCORE_RELOAD_SECONDS": "reload_seconds",
}
_SCORING_VARIABLES = {"LEADSCORE_TOP_K": "top_k", "LEADSCORE_MQL_CUTOFF": "mql_cutoff",
                      "LEADSCORE_EXPLAIN_THREADS": "explain_threads", "LEADSCORE_GRADE_CUTOFFS": "grade_cutoffs"}
_VARIABLE_OF = {**{(key,): var for var, key in _PLAIN_VARIABLES.items()},
                **{("scoring", key): var for var, key in _SCORING_VARIABLES.items()},
                ("time_to_close_name",): "LEADSCORE_TIME_TO_CLOSE_NAME", ("api_keys",): "LEADSCORE_API_KEYS"}


_SECRET_VARIABLES = frozenset({"LEADSCORE_API_KEYS"})


class SettingsError(ValueError):
    """Serving settings the environment gives wrong: each error names its variable and value."""

    def __init__(self, exc: ValidationError | str, env: Mapping[str, str]) -> None:
        if isinstance(exc, str):
            super().__init__(exc)
            return
        problems = []
        for error in exc.errors(include_url=False):
            loc = tuple(str(part) for part in error["loc"])
            key = next((k for k in _VARIABLE_OF if loc[: len(k)] == k), None)
            if key is None:  # a rule over several fields (grade cut-offs descending) names its field
                key = next((k for k in _VARIABLE_OF if k[-1] in error["msg"] and loc == k[:-1]), None)
            if key is None:
                problems.append(f"{'.'.join(loc) or 'settings'}: {error['msg']}")
                continue
            var = _VARIABLE_OF[key]
            item = f" (value {int(loc[len(key)]) + 1})" if loc[len(key):] and loc[len(key)].isdigit() else ""
            shown = var if var in _SECRET_VARIABLES else f"{var}={env.get(var, '')}"  # keys stay out of logs
            problems.append(f"{shown}{item}: {error['msg']}")
        super().__init__("; ".join(problems))
