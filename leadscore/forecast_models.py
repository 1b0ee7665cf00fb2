"""Load the two champions a revenue forecast needs (registry aliases or exported folders)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from leadscore.cli_options import MODEL_DIR

READINESS_NAME = "lead-conversion"
TIME_TO_CLOSE_NAME = "lead-time-to-close"
CHAMPION = "champion"
READINESS_KIND = "sales_readiness"  # the "kind" of a saved model's model.json
# the commands that train and promote each model (named in the error when its champion is missing)
HOW_TO_GET = {
    READINESS_NAME: "leadscore train / leadscore models promote",
    TIME_TO_CLOSE_NAME: f"leadscore train --target time-to-close / leadscore models promote --model-name {TIME_TO_CLOSE_NAME}",
}


def _from_registry(tracking_uri: str, name: str, alias: str, loader: Any) -> tuple[Any, str]:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from serving.loader import download_registered
    from training.tracking import server_failure, tracking_server_errors

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    with tracking_server_errors(tracking_uri, "no forecast was made"):
        try:
            version = client.get_model_version_by_alias(name, alias)
        except MlflowException as exc:
            if server_failure(exc) is not None:  # the server went away: not a missing model
                raise
            how = HOW_TO_GET.get(name, f"leadscore models promote --model-name {name}")
            raise ValueError(f"no registered model {name!r} with alias {alias!r} at {tracking_uri}: train and "
                             f"promote it first ({how})") from exc
        model = download_registered(tracking_uri, name, str(version.version), loader)
    return model, f"{name} v{version.version}"


def _exported(models_dir: Path, name: str, kind: str, loader: Any, option: str) -> tuple[Any, Path]:
    """The model ``name`` exported under ``models_dir`` (given as ``option``) and its folder; refused when the
    folder holds another model."""
    import json

    from serving.loader import champion_folder, find_model_dir, read_champion_json
    from training.time_to_close import META_FILE

    try:
        folder = champion_folder(models_dir, name)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{option}: {exc}: export the {name!r} champion there (leadscore models export "
                                f"--out {models_dir} --model-name {name})") from exc
    found = read_champion_json(folder).get("name")
    model_dir = find_model_dir(folder)
    try:
        found_kind = json.loads((model_dir / META_FILE).read_text()).get("kind")
    except (OSError, ValueError) as exc:
        raise ValueError(f"saved model {model_dir}: unreadable {META_FILE}: {exc}") from exc
    if (found is not None and found != name) or found_kind not in (kind, None):  # None: the loader says what is missing
        what = f"the champion of {found!r}" if found is not None and found != name else f"a {found_kind!r} model"
        raise ValueError(
            f"{option} {models_dir}: {folder} holds {what}, not the {kind} model {name!r}: point {option} at "
            f"the folder holding {READINESS_NAME}/ and {TIME_TO_CLOSE_NAME}/ (leadscore models export --out <dir> "
            f"[--model-name {TIME_TO_CLOSE_NAME}])")
    return loader(model_dir), model_dir


def load_forecast_models(
    project: Any, config_path: Path, tracking_uri: str | None, models_dir: Path | None, alias: str = CHAMPION,
    option: str = MODEL_DIR,
) -> tuple[Any, Any, str]:
    """(sales-readiness model, time-to-close model, "names and versions") of the champions; ``option`` is the
    spelling of the exported folder's option the user typed, which messages name."""
    from training.model import SalesReadinessModel
    from training.time_to_close import KIND, TimeToCloseModel
    from training.tracking import bound_http_retries, probe_tracking_server, tracking_target

    if models_dir is not None:
        readiness, folder = _exported(models_dir, READINESS_NAME, READINESS_KIND, SalesReadinessModel.load, option)
        ttc, _ = _exported(models_dir, TIME_TO_CLOSE_NAME, KIND, TimeToCloseModel.load, option)
        readiness = _calibrated(readiness, str(folder))
        return readiness, ttc, f"exported champions in {models_dir}"
    target = tracking_target(tracking_uri, Path(config_path).resolve().parent)
    if target.is_server:
        probe_tracking_server(target.uri)  # one quick request: MLflow itself retries a dead server for minutes
        bound_http_retries()
    uri = target.uri
    readiness, a = _from_registry(uri, READINESS_NAME, alias, SalesReadinessModel.load)
    ttc, b = _from_registry(uri, TIME_TO_CLOSE_NAME, alias, TimeToCloseModel.load)
    return _calibrated(readiness, a), ttc, f"{a}, {b}"


def _calibrated(model: Any, where: str) -> Any:
    """``model`` when it has its calibrator (the forecast needs calibrated probabilities), else a ValueError."""
    if not hasattr(model, "calibrator_"):
        raise ValueError(f"sales-readiness model {where} has no calibrator (its model.json has \"calibrator\": "
                         "null): export a trained, calibrated champion")
    return model
