"""MLflow tracking of one training run: params, metrics, baseline comparison, plots, model card,
the evaluation rows (so promotion can re-score models on them), the pyfunc model and, when it was refit
for deployment, the backtest model its figures are about (the registry grades the refit with it).

Where runs go is a :class:`TrackingTarget` resolved at the edge: the embedded default is a SQLite
store ``sqlite:///<project dir>/mlflow.db`` with artifacts in ``<project dir>/mlartifacts``; an
``http(s)://`` URI is a tracking server that stores (or proxies) the artifacts itself; :func:`connect`
checks once that it answers (MLflow's own client retries an unreachable server for minutes) and bounds
MLflow's retries, and :func:`tracking_server_errors` turns a server lost mid-command into one line.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import math
import os
import socket
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.environment_variables import MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError, ReadTimeoutError
from urllib3.util import Retry

from features.schema import LEAD_ID
from features.urls import has_password, is_server_uri, masked_url, tracking_scheme_problem
from training.config import AS_OF
from training.lineage import flatten_params
from training.model import take_rows
from training.pyfunc import log_pyfunc_model
from training.sales_readiness import TrainingResult

MLFLOW_DB = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"
MODEL_NAME_IN_RUN = "model"
LABEL_COLUMN = "label"
# Artifact paths inside a run (the registry reads the first two back).
TEST_SET_ARTIFACT = "evaluation/test_set.parquet"
COMPARISON_ARTIFACT = "comparison/comparison.csv"
MODEL_CARD_ARTIFACT = "model_card.md"
PLOTS_DIR = "plots"
POINTS_RULES_ARTIFACT = "baselines/points_rules.json"
# a run refit for deployment (training.refit, time_to_close.refit) also keeps the model its figures are about
BACKTEST_MODEL_ARTIFACT = "backtest_model"


@dataclass(frozen=True)
class TrackingTarget:
    """A tracking (and registry) URI plus where new experiments keep their artifacts (None: server default)."""

    uri: str
    artifact_location: str | None = None

    @property
    def is_server(self) -> bool:
        return is_server_uri(self.uri)


def default_tracking_uri(project_dir: str | Path) -> str:
    """The embedded default: a SQLite store next to the project file."""
    return f"sqlite:///{(Path(project_dir) / MLFLOW_DB).resolve()}"


def tracking_target(tracking_uri: str | None, project_dir: str | Path) -> TrackingTarget:
    """Resolve the target: explicit URI, else the SQLite default; local stores keep artifacts beside the DB."""
    uri = tracking_uri or default_tracking_uri(project_dir)
    if is_server_uri(uri) or uri.lower().startswith("databricks"):
        return TrackingTarget(uri)
    if uri.startswith("sqlite:///"):
        db_path = Path(uri.removeprefix("sqlite:///"))
        return TrackingTarget(uri, (db_path.parent / ARTIFACTS_DIR).resolve().as_uri())
    if "://" not in uri or uri.startswith("file:"):  # MLflow 3 keeps its file store behind a flag
        folder = Path(uri.removeprefix("file://").removeprefix("file:")).resolve()
        raise ValueError(f"tracking URI {masked_url(uri)!r}: a folder is MLflow's retired file store; use "
                         f"{masked_url(f'sqlite:///{folder / MLFLOW_DB}')} (a database in that folder) or an "
                         "http(s):// server")
    if (problem := tracking_scheme_problem(uri)) is not None:
        raise ValueError(problem)
    return TrackingTarget(uri, (Path(project_dir) / ARTIFACTS_DIR).resolve().as_uri())


# MLflow's routine log lines that every run would print, by logger and message start. Only these are
# dropped, and only inside :func:`quiet_mlflow_noise`; any other record of these loggers still shows.
MLFLOW_NOISE: dict[str, tuple[str, ...]] = {
    "mlflow.store.db.utils": ("Creating initial MLflow database tables", "Updating database tables"),
    "mlflow.pyfunc": ("Passing a Python object as `python_model`", "Validating input example against model signature"),
    "mlflow.utils.environment": ("Failed to resolve installed pip version",),
    # a tracking server: registration waits for the version to be READY, and says so every time
    "mlflow.store.model_registry.abstract_store": ("Waiting up to",),
}


class _DropMessages(logging.Filter):
    """Drops records whose message starts with one of ``prefixes``."""

    def __init__(self, prefixes: tuple[str, ...]) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefixes)


@contextmanager
def quiet_mlflow_noise() -> Iterator[None]:
    """Inside the block, MLflow's routine store-creation and pyfunc-logging lines (:data:`MLFLOW_NOISE`)
    are not printed; every other log record of those loggers is."""
    installed = [(logging.getLogger(name), _DropMessages(prefixes)) for name, prefixes in MLFLOW_NOISE.items()]
    for logger, dropper in installed:
        logger.addFilter(dropper)
    try:
        yield
    finally:
        for logger, dropper in installed:
            logger.removeFilter(dropper)


REGISTRATION_NOISE = ("Successfully registered model", "Registered model ", "Created version ")


@contextmanager
def quiet_registration_lines() -> Iterator[None]:
    """Inside the block, MLflow's registration lines (plain prints to stderr, not log records:
    :data:`REGISTRATION_NOISE`) are not shown; every other line written to stderr is, after the block."""
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            yield
    finally:
        kept = [line for line in captured.getvalue().splitlines(keepends=True)
                if not line.startswith(REGISTRATION_NOISE)]
        if kept:
            sys.stderr.write("".join(kept))
            sys.stderr.flush()


def quiet_artifact_downloads() -> None:
    """No tqdm bar per MLflow artifact download (several per model load) unless the user asked for them
    (``MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR`` set); what the CLI does for every command."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


class TrackingServerUnreachable(ConnectionError, ValueError):
    """The tracking server of an ``http(s)://`` URI does not answer (refused, unknown host, timeout, TLS
    failure, gateway error). A ``ValueError`` too: the CLI turns those into a one-line error."""

    def __init__(self, uri: str, reason: str) -> None:
        super().__init__(f"cannot reach the MLflow tracking server at {masked_url(uri)}: {reason}")
        self.uri = uri
        self.reason = reason

    def __reduce__(self):  # pickles by (uri, reason), not by the formatted message
        return type(self), (self.uri, self.reason)


class TrackingServerLost(TrackingServerUnreachable):
    """The tracking server answered when the command started and stopped answering in its course;
    ``detail`` says what that left behind (a run not ended, no version registered, ...)."""

    def __init__(self, uri: str, reason: str, detail: str = "") -> None:
        ConnectionError.__init__(self, f"lost the MLflow tracking server at {masked_url(uri)} during the command: "
                                 f"{reason}"
                                 + (f"; {detail}" if detail else ""))
        self.uri = uri
        self.reason = reason
        self.detail = detail

    def __reduce__(self):
        return type(self), (self.uri, self.reason, self.detail)


PROBE_ENDPOINT = "/health"  # an MLflow server answers "OK"
PROBE_TIMEOUT_SECONDS = 5.0  # connect and read, each


def _exception_chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from / while handling, outermost first."""
    chain: list[BaseException] = []
    inner: BaseException | None = exc
    while inner is not None and inner not in chain:
        chain.append(inner)
        inner = inner.__cause__ or inner.__context__
    return chain


def _probe_failure_reason(exc: BaseException, timeout: float) -> str:
    """A short reason for a failed probe: the innermost socket/TLS error, not urllib3's nested reprs."""
    import requests

    chain = _exception_chain(exc)
    if any(isinstance(e, requests.exceptions.Timeout | TimeoutError) for e in chain):
        return f"no answer within {timeout:g} s"
    root = chain[-1]
    if isinstance(root, socket.gaierror):
        return f"cannot resolve the host name ({root.strerror or root})"
    if isinstance(root, OSError) and root.strerror:
        return root.strerror
    return str(root) or type(root).__name__


def probe_tracking_server(uri: str, timeout: float = PROBE_TIMEOUT_SECONDS) -> None:
    """One ``GET <uri>/health`` with ``timeout`` and no retries; raises :class:`TrackingServerUnreachable`
    when nothing answers or a gateway answers 5xx for it. Any other HTTP answer (401, 404 behind a path
    prefix, ...) counts as reachable: MLflow's own calls report those. Goes through MLflow's HTTP client
    so its TLS, proxy and credential settings (``MLFLOW_TRACKING_INSECURE_TLS``, ...) apply."""
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    try:
        response = http_request(get_default_host_creds(uri), PROBE_ENDPOINT, "GET", max_retries=0,
                                backoff_factor=0, backoff_jitter=0, timeout=timeout, raise_on_status=False,
                                respect_retry_after_header=False)
    except Exception as exc:  # MLflow wraps every requests error in an MlflowException
        # requests' errors are OSErrors; anything else (e.g. a misconfigured auth plugin) is MLflow's own error
        if not any(isinstance(e, OSError) for e in _exception_chain(exc)):
            raise
        # from None: the reason is in the message, and a command that does not catch the error prints a
        # short traceback instead of urllib3's five chained ones (the original stays in __context__)
        raise TrackingServerUnreachable(uri, _probe_failure_reason(exc, timeout)) from None
    if response.status_code >= 500:
        reason = f"{PROBE_ENDPOINT} answered HTTP {response.status_code} {response.reason or ''}".rstrip()
        raise TrackingServerUnreachable(uri, reason)


# MLflow retries a failed request 7 times with a doubling backoff (about 4 minutes per call, for rate-limited
# hosted backends); against a server of one's own that is minutes of silence per call once it has gone away.
HTTP_RETRY_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}


def _timed_out(error: Exception | None) -> bool:
    """A connection that did not open, or a request that got no answer, within the timeout (a refused
    connection is a ``NewConnectionError``, which urllib3 derives from its connect timeout)."""
    return isinstance(error, ReadTimeoutError) or (
        isinstance(error, ConnectTimeoutError) and not isinstance(error, NewConnectionError))


class RetryUnlessTimedOut(Retry):
    """urllib3's retries (refused or dropped connections, 5xx answers) but none after a timeout: the request
    that timed out was the last try, and fails as when the retries are used up."""

    def increment(self, method=None, url=None, response=None, error=None, _pool=None, _stacktrace=None):
        if _timed_out(error):
            return Retry.increment(self.new(total=0), method, url, response, error, _pool, _stacktrace)
        return super().increment(method, url, response, error, _pool, _stacktrace)


def no_retry_after_timeout() -> None:
    """MLflow's HTTP client sends a request that timed out once, not ``1 + MLFLOW_HTTP_REQUEST_MAX_RETRIES``
    times: it retried a read timeout like a refused connection, so a server that takes requests in and never
    answers (hung, its database locked) cost 4 ``MLFLOW_HTTP_REQUEST_TIMEOUT`` per call. The timeout itself is
    unchanged, and a request the server may have acted on (a POST) is not sent twice. MLflow builds its
    sessions' retry policy from ``mlflow.utils.request_utils.Retry`` (it has no setting for this): that name is
    pointed at :class:`RetryUnlessTimedOut` once per process, and the sessions it cached before are dropped."""
    from mlflow.utils import request_utils

    if getattr(request_utils, "Retry", None) in (None, RetryUnlessTimedOut):
        return
    request_utils.Retry = RetryUnlessTimedOut
    cached = getattr(request_utils, "_cached_get_request_session", None)
    if hasattr(cached, "cache_clear"):
        cached.cache_clear()


def bound_http_retries() -> None:
    """At most 3 retries over about 10 s per MLflow HTTP request (:data:`HTTP_RETRY_DEFAULTS`), unless the
    user set ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` / ``MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR`` themselves, and
    none after a timeout (:func:`no_retry_after_timeout`)."""
    for name, value in HTTP_RETRY_DEFAULTS.items():
        os.environ.setdefault(name, value)
    no_retry_after_timeout()


def reach_tracking_server(uri: str) -> None:
    """What every registry client does before its first call (training, serving, rescore, forecast): a tracking
    server (``http(s)://``) is probed once with a short timeout (:func:`probe_tracking_server`: an unreachable
    one raises :class:`TrackingServerUnreachable` at once instead of MLflow retrying each call for minutes),
    then MLflow's retries are bounded (:func:`bound_http_retries`) for a server that goes away later. Local
    stores (SQLite, files) are not probed; a database store (PostgreSQL, MySQL, ...) is opened once
    (:func:`probe_tracking_database`)."""
    if is_server_uri(uri):
        probe_tracking_server(uri)
        bound_http_retries()
    elif "://" in uri and not uri.startswith(("sqlite:", "file:")):
        probe_tracking_database(uri)


class TrackingStoreUnreadable(TrackingServerUnreachable):
    """A database tracking store (``postgresql://`` ...) that cannot be opened: no such database or role,
    the server down, the driver missing."""

    def __init__(self, uri: str, reason: str) -> None:
        ConnectionError.__init__(self, f"cannot open the MLflow tracking store {masked_url(uri)}: {reason}")
        self.uri = uri
        self.reason = reason


def probe_tracking_database(uri: str) -> None:
    """Connect once to a database tracking store before MLflow does: MLflow retries a connection that fails
    for about 100 s, then ends in SQLAlchemy's traceback; this raises :class:`TrackingStoreUnreadable` with the
    driver's reason at once. A URI SQLAlchemy cannot read is left to MLflow."""
    import sqlalchemy as sa

    from features.readers import sql_error_text

    try:
        engine = sa.create_engine(uri)
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError):
        return
    except ImportError as exc:  # the database's driver is not installed
        raise TrackingStoreUnreadable(uri, f"{type(exc).__name__}: {exc}") from exc
    try:
        with engine.connect():
            pass
    except sa.exc.SQLAlchemyError as exc:
        raise TrackingStoreUnreadable(uri, sql_error_text(exc)) from exc
    finally:
        engine.dispose()


def server_failure(exc: BaseException) -> str | None:
    """The reason, when ``exc`` (an MLflow error, or one it wraps) is a tracking server that stopped
    answering: refused, reset or timed-out connections, or retries exhausted on 5xx answers. None otherwise."""
    import requests

    lost = (requests.exceptions.ConnectionError, requests.exceptions.Timeout, requests.exceptions.RetryError)
    chain = _exception_chain(exc)
    if not any(isinstance(e, lost) for e in chain):
        return None
    if any(isinstance(e, requests.exceptions.RetryError) for e in chain) and not any(
            isinstance(e, requests.exceptions.ConnectionError | requests.exceptions.Timeout) for e in chain):
        return str(chain[-1]) or "too many error answers"
    return _probe_failure_reason(exc, float(os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT", "120")))


@contextmanager
def tracking_server_errors(uri: str, detail: str = "") -> Iterator[None]:
    """Inside the block, a tracking server (``http(s)://`` ``uri``) that stops answering raises
    :class:`TrackingServerLost` (a one-line error with ``detail`` and the notes of the error, such as
    what registration left behind) instead of MLflow's error with urllib3's chained tracebacks."""
    try:
        yield
    except TrackingServerUnreachable:
        raise
    except Exception as exc:
        reason = server_failure(exc) if is_server_uri(uri) else None
        if reason is None:
            raise
        notes = "; ".join(n for n in [detail, *getattr(exc, "__notes__", [])] if n)
        raise TrackingServerLost(uri, reason, notes) from None


def connect(target: TrackingTarget) -> MlflowClient:
    """Point MLflow (fluent API + registry) at ``target`` and return a client for it.

    A tracking server is probed first and MLflow's retries bounded (:func:`reach_tracking_server`). Opening
    a new store does not print MLflow's table creation lines, and artifact downloads draw no progress bars
    (:func:`quiet_artifact_downloads`). A URI with a password (``https://user:password@host``): MLflow's
    "View run at <URI>" lines, which would show it, are not printed."""
    reach_tracking_server(target.uri)
    quiet_artifact_downloads()
    if has_password(target.uri):
        os.environ[MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT.name] = "true"
    mlflow.set_tracking_uri(target.uri)
    mlflow.set_registry_uri(target.uri)
    with quiet_mlflow_noise():  # the client opens (and on first use creates) the store
        return MlflowClient(tracking_uri=target.uri, registry_uri=target.uri)


def ensure_experiment(client: MlflowClient, name: str, artifact_location: str | None) -> str:
    """Experiment id for ``name`` (created with ``artifact_location`` when new)."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id
    return client.create_experiment(name, artifact_location=artifact_location)


# ----- pure helpers -----------------------------------------------------------------------------
_POSITION = "__position_in_frame__"


def evaluation_rows(result: TrainingResult, frame: pd.DataFrame) -> pd.DataFrame:
    """The rows the run was evaluated on: key columns, the raw feature columns and ``label``.

    Snapshot mode: the test slice (keyed by lead_id + as_of); flat mode: every row (out-of-fold).
    """
    keys = [LEAD_ID, AS_OF] if AS_OF in result.predictions.columns else [LEAD_ID]
    features = list(result.model.feature_columns_)
    missing = [c for c in [*keys, *features] if c not in frame.columns]
    if missing:
        raise KeyError(f"training frame lacks column(s) {missing} needed for the evaluation rows")
    # the frame's rows are found by their keys alone, then only they are copied (merging the key and
    # feature columns of the frame copied all of them: at 200k leads 1 GB more while the run was logged)
    position = result.predictions[keys].merge(frame[keys].assign(**{_POSITION: np.arange(len(frame))}), on=keys,
                                              how="left", validate="one_to_one")[_POSITION]
    if position.isna().any():  # rows the frame lacks get missing features, as from a merge
        rows = result.predictions[keys].merge(frame[[*keys, *features]], on=keys, how="left", validate="one_to_one")
    else:
        rows = take_rows(frame, position.to_numpy(dtype=np.int64), [*keys, *features]).reset_index(drop=True)
    rows[LABEL_COLUMN] = result.predictions["label"].to_numpy(dtype=float)
    return rows


def data_hash(frame: pd.DataFrame) -> str:
    """Stable content hash of a frame (values and column names), first 16 hex digits of SHA-256."""
    digest = hashlib.sha256()
    digest.update(json.dumps([str(c) for c in frame.columns]).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]


def evaluation_identity(rows: pd.DataFrame) -> dict[str, str]:
    """What identifies the evaluation data: size, positives, as_of range, content hash (registry tags)."""
    identity = {
        "eval_rows": str(len(rows)),
        "eval_positives": str(int(rows[LABEL_COLUMN].sum())),
        "eval_data_hash": data_hash(rows),
    }
    if AS_OF in rows.columns and len(rows):
        identity["eval_as_of_min"] = pd.Timestamp(rows[AS_OF].min()).isoformat()
        identity["eval_as_of_max"] = pd.Timestamp(rows[AS_OF].max()).isoformat()
    return identity


def finite_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    """Metrics MLflow can store (finite floats)."""
    return {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(float(v))}


def run_params(params: Mapping[str, Any], model: Mapping[str, Any]) -> dict[str, str]:
    """The flat ``section.key`` params of a run: the config sections plus a ``model`` section."""
    flat: dict[str, str] = {}
    for section, value in params.items():
        flat.update(flatten_params(section, value))
    flat.update(flatten_params("model", dict(model)))
    return flat


def log_run_summary(client: MlflowClient, run_id: str, result: Any, params: Mapping[str, str],
                    tags: Mapping[str, Any]) -> None:
    """Into the active run: metrics, params and tags in one batch, then the model card, the comparison
    with the baselines (CSV + Markdown) and the split (``result``: a training or time-to-close result)."""
    now = int(datetime.now(UTC).timestamp() * 1000)
    client.log_batch(
        run_id,
        metrics=[Metric(k, v, now, 0) for k, v in finite_metrics(result.metrics).items()],
        params=[Param(k, v) for k, v in params.items()],
        tags=[RunTag(k, str(v)) for k, v in tags.items()],
    )
    mlflow.log_text(result.model_card, MODEL_CARD_ARTIFACT)
    mlflow.log_text(result.comparison.to_csv(), COMPARISON_ARTIFACT)
    mlflow.log_text(comparison_markdown(result.comparison), "comparison/comparison.md")
    mlflow.log_dict(json.loads(json.dumps(result.split, default=str)), "evaluation/split.json")
    if (trials := search_trials_csv(result.split)) is not None:
        mlflow.log_text(trials, SEARCH_TRIALS_ARTIFACT)


SEARCH_TRIALS_ARTIFACT = "evaluation/search_trials.csv"  # one row per trial of the hyperparameter search


def search_trials_csv(split: Mapping[str, Any]) -> str | None:
    """The trials of a run's hyperparameter search (``split["search"]["trials"]``) as CSV; None without one."""
    trials = (split.get("search") or {}).get("trials")
    return pd.DataFrame(trials).to_csv(index=False) if trials else None


def comparison_markdown(comparison: pd.DataFrame) -> str:
    """The model-vs-baselines table as Markdown."""
    cols = [comparison.index.name or "scorer", *comparison.columns]
    lines = ["| " + " | ".join(map(str, cols)) + " |", "|" + "---|" * len(cols)]
    for name, row in comparison.iterrows():
        cells = [f"{v:.4f}" if isinstance(v, float | np.floating) else str(v) for v in row.tolist()]
        lines.append("| " + " | ".join([str(name), *cells]) + " |")
    return "\n".join(lines) + "\n"


# ----- logging ----------------------------------------------------------------------------------
@dataclass
class LoggedRun:
    """Identity of a logged training run."""

    run_id: str
    experiment_id: str
    model_uri: str
    identity: dict[str, str]
    tags: dict[str, str] = field(default_factory=dict)


def log_frame_parquet(client: MlflowClient, run_id: str, frame: pd.DataFrame, artifact_file: str) -> None:
    """``frame`` as a Parquet artifact ``artifact_file`` of run ``run_id``."""
    directory, _, name = artifact_file.rpartition("/")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        frame.to_parquet(path, index=False)
        client.log_artifact(run_id, str(path), directory or None)


def log_run_evidence(client: MlflowClient, run_id: str, result: Any, rows: pd.DataFrame) -> None:
    """Into the active run, what every model's run holds after its own tables (``result``: a training or
    time-to-close result): its notes (``notes.txt``, when it has any), its model's FeatureSpec, its figures,
    the evaluation rows ``rows`` (:data:`TEST_SET_ARTIFACT`) and the test predictions."""
    if result.notes:
        mlflow.log_text("\n".join(result.notes) + "\n", "notes.txt")
    spec = getattr(result.model, "spec_", None)
    if spec is not None and hasattr(spec, "to_dict"):
        mlflow.log_dict(spec.to_dict(), "feature_spec.json")
    for name, figure in result.figures.items():
        mlflow.log_figure(figure, f"{PLOTS_DIR}/{name}.png")
    log_frame_parquet(client, run_id, rows, TEST_SET_ARTIFACT)
    log_frame_parquet(client, run_id, result.predictions, "evaluation/predictions.parquet")


def log_backtest_model(model: Any) -> None:
    """Into the active run, the backtest model of a run refit for deployment (:data:`BACKTEST_MODEL_ARTIFACT`, the
    directory its ``save`` writes): the registry grades the refit with it on rows dated up to its data end."""
    with tempfile.TemporaryDirectory() as tmp:
        mlflow.log_artifacts(str(model.save(Path(tmp) / BACKTEST_MODEL_ARTIFACT)), BACKTEST_MODEL_ARTIFACT)


def log_training_run(
    target: TrackingTarget,
    experiment_name: str,
    result: TrainingResult,
    frame: pd.DataFrame,
    params: Mapping[str, Any],
    tags: Mapping[str, str] | None = None,
    run_name: str | None = None,
    run_id: str | None = None,
) -> LoggedRun:
    """One MLflow run with everything ``result`` holds; returns its ids and the evaluation identity.

    ``frame`` is the training set frame (keys + features) the result was trained on; ``params``
    are nested config sections (flattened into MLflow params). ``run_id`` continues an existing
    run (``mlflow run`` creates one for its entry point) instead of starting one in the experiment.
    """
    client = connect(target)
    if run_id is not None:
        experiment_id = client.get_run(run_id).info.experiment_id
    else:
        experiment_id = ensure_experiment(client, experiment_name, target.artifact_location)
    rows = evaluation_rows(result, frame)
    identity = evaluation_identity(rows)
    leakage = result.leakage
    run_tags = {
        "leadscore.kind": "sales_readiness",
        "leadscore.trained_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "leadscore.leakage_flagged": str(leakage.flagged).lower(),
        **{f"leadscore.{k}": v for k, v in identity.items()},
        **dict(tags or {}),
    }
    flat_params = run_params(params, {
        "best_iteration": result.model.best_iteration_, "calibration": result.model.calibrator_.kind,
        "n_features": len(result.model.feature_columns_), "horizon_days": result.model.horizon_days,
        "lightgbm": result.model.params_,  # the parameters actually used (the search's best when it ran)
    })
    start = {"run_id": run_id} if run_id else {"experiment_id": experiment_id, "run_name": run_name}
    with mlflow.start_run(**start) as run:
        run_id = run.info.run_id
        log_run_summary(client, run_id, result, flat_params, run_tags)
        mlflow.log_text(result.segments.to_csv(index=False), "evaluation/segments.csv")
        mlflow.log_text(result.thresholds.to_csv(index=False), "evaluation/thresholds.csv")
        mlflow.log_dict({"recommended_threshold": result.recommended_threshold, "notes": result.notes},
                        "evaluation/threshold.json")
        mlflow.log_dict(json.loads(json.dumps(leakage.to_dict(), default=str)), "leakage/leakage.json")
        mlflow.log_text(leakage.to_text(), "leakage/leakage.txt")
        if result.points_rules is not None:  # the hand-tuned rules the baseline scored with
            mlflow.log_dict(result.points_rules.model_dump(mode="json"), POINTS_RULES_ARTIFACT)
        log_run_evidence(client, run_id, result, rows)
        if result.backtest_model is not None:
            log_backtest_model(result.backtest_model)
        with quiet_mlflow_noise():
            info = log_pyfunc_model(result.model, rows[list(result.model.feature_columns_)], name=MODEL_NAME_IN_RUN)
    return LoggedRun(run_id, experiment_id, info.model_uri, identity, run_tags)


def load_run_frame(client: MlflowClient, run_id: str, artifact_path: str) -> pd.DataFrame:
    """A Parquet or CSV artifact of a run as a frame."""
    with tempfile.TemporaryDirectory() as tmp:
        local = client.download_artifacts(run_id, artifact_path, tmp)
        if artifact_path.endswith(".parquet"):
            return pd.read_parquet(local)
        return pd.read_csv(local, index_col=0)
