"""Serving settings (read once from the environment at start-up) and champion loading.

The champion comes from the MLflow registry (alias ``champion`` of ``lead-conversion``) or from an
exported folder (``models/<name>/`` with ``champion.json`` written by ``leadscore models export``).
:class:`ChampionHolder` keeps the current :class:`~serving.core.ScoringCore` and swaps it
atomically on reload: requests in flight keep the core they started with.
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from features.build import features_from_payloads
from features.schema import utc_now
from serving.core import ModelInfo, ScoringConfig, ScoringCore
from serving.schemas import MAX_TOP_K
from training.model import BOOSTER_FILE, META_FILE, SalesReadinessModel
from training.time_to_close import TimeToCloseModel

T = TypeVar("T")

logger = logging.getLogger("leadscore.serving")

DEFAULT_MODEL_NAME = "lead-conversion"
DEFAULT_TIME_TO_CLOSE_NAME = "lead-time-to-close"
DEFAULT_ALIAS = "champion"
CHAMPION_FILE = "champion.json"
PYFUNC_ARTIFACT = Path("artifacts") / "sales_readiness_model"
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
    reload_seconds: float = Field(30.0, ge=0, description="period of the champion check; 0 disables it")
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


# ----- locating a saved SalesReadinessModel ------------------------------------------------------
def find_model_dir(path: Path) -> Path:
    """The SalesReadinessModel directory (booster.txt + model.json) at or inside ``path``."""
    path = Path(path)
    for candidate in (path, path / PYFUNC_ARTIFACT):
        if (candidate / BOOSTER_FILE).is_file() and (candidate / META_FILE).is_file():
            return candidate
    found = sorted(p.parent for p in path.rglob(META_FILE) if (p.parent / BOOSTER_FILE).is_file())
    if len(found) != 1:
        raise FileNotFoundError(
            f"{path}: expected one saved model ({BOOSTER_FILE} + {META_FILE}), found {len(found)}"
        )
    return found[0]


def champion_folder(models_dir: Path, name: str) -> Path:
    """``models_dir`` itself when it holds champion.json, else ``models_dir/<name>``."""
    models_dir = Path(models_dir)
    for candidate in (models_dir, models_dir / name):
        if (candidate / CHAMPION_FILE).is_file():
            return candidate
    raise FileNotFoundError(f"no {CHAMPION_FILE} in {models_dir} or {models_dir / name}")


def _first(meta: Mapping[str, Any], *keys: str) -> Any:
    return next((meta[k] for k in keys if meta.get(k) is not None), None)


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(round(float(value)))


def read_champion_json(folder: Path) -> dict[str, Any]:
    try:
        meta = json.loads((folder / CHAMPION_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{folder / CHAMPION_FILE}: unreadable: {exc}") from exc
    if not isinstance(meta, dict):
        raise ValueError(f"{folder / CHAMPION_FILE}: expected a JSON object")
    return meta


def exported_info(folder: Path, name: str) -> ModelInfo:
    """Identity of an exported champion folder (its ``champion.json``)."""
    meta = read_champion_json(folder)
    return ModelInfo(
        name=str(_first(meta, "name", "model_name") or name),
        version=str(_first(meta, "version", "model_version") or "exported"),
        run_id=_first(meta, "run_id"),
        training_date=_first(meta, "training_date", "trained_at"),
        horizon_days=_int_or_none(_first(meta, "horizon_days", "horizon")),
        mql_cutoff=_int_or_none(_first(meta, "threshold", "mql_cutoff")),
        source=str(folder),
    )


def exported_closing_folder(models_dir: Path, name: str) -> Path | None:
    """``models_dir/<name>`` when it holds an exported time-to-close champion, else None."""
    folder = Path(models_dir) / name
    return folder if name and (folder / CHAMPION_FILE).is_file() else None


def load_exported(
    models_dir: Path, name: str, config: ScoringConfig, closing_name: str = DEFAULT_TIME_TO_CLOSE_NAME
) -> tuple[ScoringCore, str]:
    """Scoring core of an exported champion folder (with the exported time-to-close champion beside it
    when there is one), and its fingerprint (changes on re-export)."""
    folder = champion_folder(models_dir, name)
    model = SalesReadinessModel.load(find_model_dir(folder))
    closing = None
    closing_folder = exported_closing_folder(models_dir, closing_name)
    if closing_folder is not None:
        closing = (TimeToCloseModel.load(find_model_dir(closing_folder)), exported_info(closing_folder, closing_name))
    core = ScoringCore(model, exported_info(folder, name), config, closing=closing)
    return core, exported_fingerprint(models_dir, name, closing_name)


def exported_fingerprint(models_dir: Path, name: str, closing_name: str = DEFAULT_TIME_TO_CLOSE_NAME) -> str:
    """Version and file stamp of the exported champion(s)."""
    parts = []
    for folder in (champion_folder(models_dir, name), exported_closing_folder(models_dir, closing_name)):
        if folder is None:
            continue
        stat = (folder / CHAMPION_FILE).stat()
        parts.append(f"{read_champion_json(folder).get('version')}:{stat.st_mtime_ns}:{stat.st_size}")
    return "+".join(parts)


# ----- MLflow registry ---------------------------------------------------------------------------
def _client(tracking_uri: str) -> Any:
    from mlflow import MlflowClient

    from features.readers import check_sqlite_file

    try:
        if tracking_uri.startswith("sqlite:"):
            check_sqlite_file(tracking_uri)  # MLflow would create an empty store (and its folder) instead
    except ValueError as exc:
        raise FileNotFoundError(f"no MLflow tracking store: {exc} (train a model first, or give --project-dir "
                                "or --tracking-uri)") from exc
    if tracking_uri.startswith(("http://", "https://")):  # training.tracking loads matplotlib: only for a server
        from training.tracking import reach_tracking_server

        reach_tracking_server(tracking_uri)  # a server that does not answer fails in seconds
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def registry_fingerprint(tracking_uri: str, name: str, alias: str, closing_name: str = DEFAULT_TIME_TO_CLOSE_NAME) -> str:
    """Version numbers the alias points to (cheap: a health probe of a server, one or two registry calls)."""
    from training.tracking import tracking_server_errors

    client = _client(tracking_uri)
    with tracking_server_errors(tracking_uri):
        version = str(client.get_model_version_by_alias(name, alias).version)
        closing = _closing_version(client, closing_name, alias)
    return version if closing is None else f"{version}+{closing.version}"


def _closing_version(client: Any, name: str, alias: str) -> Any:
    """The time-to-close version at ``alias``; None when that model or alias is not registered."""
    from mlflow.exceptions import MlflowException

    if not name:
        return None
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def download_registered(tracking_uri: str, name: str, version: str, load: Callable[[Path], T]) -> T:
    """``load(model directory)`` of registered version ``name``/``version``, downloaded to a temporary dir.

    Both the tracking and the registry URI are ``tracking_uri``: a stray ``MLFLOW_REGISTRY_URI`` in
    the environment (MLflow sets it on ``set_registry_uri``) never redirects the download.
    """
    import mlflow

    # Not ``models:/name/version``: MLflow resolves that through the process-wide registry URI.
    location = _client(tracking_uri).get_model_version_download_uri(name, version)
    with tempfile.TemporaryDirectory(prefix="leadscore-model-") as tmp:
        local = mlflow.artifacts.download_artifacts(artifact_uri=location, dst_path=tmp, tracking_uri=tracking_uri)
        return load(find_model_dir(Path(local)))


def load_registered(
    tracking_uri: str, name: str, alias: str, config: ScoringConfig, version: str | None = None,
    closing_name: str = DEFAULT_TIME_TO_CLOSE_NAME, closing_version: str | None = None,
) -> tuple[ScoringCore, str]:
    """Scoring core of ``models:/<name>@<alias>`` (or of ``version`` when given), with the time-to-close
    model at the same alias when one is registered, and the fingerprint of the pair."""
    from training.tracking import tracking_server_errors

    client = _client(tracking_uri)
    with tracking_server_errors(tracking_uri):
        return _load_registered(client, tracking_uri, name, alias, config, version, closing_name, closing_version)


def _load_registered(
    client: Any, tracking_uri: str, name: str, alias: str, config: ScoringConfig, version: str | None,
    closing_name: str, closing_version: str | None,
) -> tuple[ScoringCore, str]:
    registered = client.get_model_version(name, version) if version else client.get_model_version_by_alias(name, alias)
    tags = dict(registered.tags or {})
    run_date = None
    mql = tags.get("mql_cutoff")
    if registered.run_id:
        run = client.get_run(registered.run_id)
        run_date = datetime.fromtimestamp(run.info.start_time / 1000, UTC).isoformat()
        if mql is None:
            mql = run.data.metrics.get("mql_cutoff")
    model = download_registered(tracking_uri, name, str(registered.version), SalesReadinessModel.load)
    info = ModelInfo(
        name=name,
        version=str(registered.version),
        run_id=registered.run_id,
        training_date=tags.get("trained_at") or tags.get("training_date") or run_date,
        horizon_days=_int_or_none(tags.get("horizon_days")) or model.horizon_days,
        mql_cutoff=_int_or_none(mql),
        source=f"models:/{name}/{registered.version}" if version else f"models:/{name}@{alias}",
    )
    closing = None
    if closing_version is not None and closing_name:
        registered_closing = client.get_model_version(closing_name, closing_version)
    else:
        registered_closing = _closing_version(client, closing_name, alias)
    fingerprint = str(registered.version)
    if registered_closing is not None:
        closing_model = download_registered(tracking_uri, closing_name, str(registered_closing.version),
                                            TimeToCloseModel.load)
        closing_tags = dict(registered_closing.tags or {})
        closing = (closing_model, ModelInfo(
            name=closing_name, version=str(registered_closing.version), run_id=registered_closing.run_id,
            training_date=closing_tags.get("trained_at"), horizon_days=int(closing_model.horizon_days),
            source=f"models:/{closing_name}@{alias}",
        ))
        fingerprint = f"{fingerprint}+{registered_closing.version}"
    return ScoringCore(model, info, config, closing=closing), fingerprint


def smoke_test(core: ScoringCore) -> str | None:
    """Score one empty lead end to end before a core may serve; the run also warms the request path.

    Raises when the core cannot score (features, margin, calibration; e.g. a booster that does not
    match its FeatureSpec): such a model is refused at load instead of failing every request.
    Returns the error of the SHAP explanation when the model scores but cannot explain (LightGBM
    has no TreeSHAP for ``linear_tree`` boosters): it is served for ``top_k=0`` and requests for
    reasons fail with a 500 and an error id; None when reasons work.
    """
    now = utc_now()
    matrix = features_from_payloads([{"lead_id": 0, "created_at": now, "attributes": {}, "events": []}],
                                    core.spec, now)
    probability = float(core.score_matrix([0], matrix, top_k=0).probability[0])
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"model {core.info.name} v{core.info.version}: smoke-test probability "
                         f"{probability!r} is not in [0, 1]")
    try:
        core.score_matrix([0], matrix, top_k=3)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


# ----- the holder ------------------------------------------------------------------------------
class ChampionHolder:
    """The current scoring core; ``reload`` swaps it atomically (in-flight requests keep theirs)."""

    def __init__(self, settings: ServingSettings) -> None:
        self.settings = settings
        self.core: ScoringCore | None = None
        self.fingerprint: str | None = None
        self.last_error: str | None = None
        self.explain_error: str | None = None  # the served model scores but cannot explain (see smoke_test)
        self._lock = threading.Lock()

    def _fingerprint(self) -> str:
        s = self.settings
        if s.model_dir is not None:
            return exported_fingerprint(s.model_dir, s.model_name, s.time_to_close_name)
        return registry_fingerprint(s.resolved_tracking_uri, s.model_name, s.alias, s.time_to_close_name)

    def _load(self) -> tuple[ScoringCore, str]:
        s = self.settings
        if s.model_dir is not None:
            return load_exported(s.model_dir, s.model_name, s.scoring, s.time_to_close_name)
        return load_registered(s.resolved_tracking_uri, s.model_name, s.alias, s.scoring,
                               closing_name=s.time_to_close_name)

    def reload(self, force: bool = True) -> bool:
        """Load the champion (only when its fingerprint changed unless ``force``); True if swapped."""
        with self._lock:
            try:
                if not force and self.core is not None and self._fingerprint() == self.fingerprint:
                    self.last_error = None  # the champion(s) served are the current ones
                    return False
                core, fingerprint = self._load()
                explain_error = smoke_test(core)
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                raise
            self.core, self.fingerprint, self.last_error = core, fingerprint, None
            self.explain_error = explain_error
        logger.info("serving model %s version %s (%s)", core.info.name, core.info.version, core.info.source)
        if explain_error is not None:
            logger.error("model %s version %s scores but cannot explain (%s): requests with top_k > 0 will fail",
                         core.info.name, core.info.version, explain_error)
        return True

    def poll(self, stop: threading.Event) -> None:
        """Check the champion every ``reload_seconds`` until ``stop`` is set (run in a daemon thread)."""
        period = self.settings.reload_seconds
        while period > 0 and not stop.wait(period if self.core is not None else min(period, 5.0)):
            try:
                self.reload(force=False)
            except Exception as exc:  # keep serving the current model
                logger.warning("champion check failed: %s: %s", type(exc).__name__, exc)
