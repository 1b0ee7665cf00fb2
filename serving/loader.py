"""Champion loading (the serving settings it reads: :mod:`serving.settings`).

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

from features.build import features_from_payloads
from features.schema import utc_now
from features.urls import is_server_uri
from serving.core import ModelInfo, ScoringConfig, ScoringCore
from serving.settings import (  # noqa: F401  (the settings' names, also imported from here)
    DEFAULT_ALIAS,
    DEFAULT_MAX_BODY_MB,
    DEFAULT_MODEL_NAME,
    DEFAULT_RECEIVE_TIMEOUT_SECONDS,
    DEFAULT_TIME_TO_CLOSE_NAME,
    MIB,
    REQUEST_TIMEOUT_SECONDS,
    ServingSettings,
    SettingsError,
)
from training.model import BOOSTER_FILE, META_FILE, SalesReadinessModel
from training.time_to_close import TimeToCloseModel

T = TypeVar("T")

logger = logging.getLogger("leadscore.serving")

CHAMPION_FILE = "champion.json"
PYFUNC_ARTIFACT = Path("artifacts") / "sales_readiness_model"
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
    if is_server_uri(tracking_uri):  # training.tracking loads matplotlib: only for a server
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
