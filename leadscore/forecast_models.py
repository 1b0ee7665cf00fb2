"""Load the two champions a revenue forecast needs (registry aliases or exported folders)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

READINESS_NAME = "lead-conversion"
TIME_TO_CLOSE_NAME = "lead-time-to-close"
CHAMPION = "champion"
# the commands that train and promote each model (named in the error when its champion is missing)
HOW_TO_GET = {
    READINESS_NAME: "leadscore train / leadscore models promote",
    TIME_TO_CLOSE_NAME: f"leadscore train --target time-to-close / leadscore models promote --model-name {TIME_TO_CLOSE_NAME}",
}


def _from_registry(tracking_uri: str, name: str, alias: str, loader: Any) -> tuple[Any, str]:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from serving.loader import download_registered

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        version = client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        how = HOW_TO_GET.get(name, f"leadscore models promote --model-name {name}")
        raise ValueError(f"no registered model {name!r} with alias {alias!r} at {tracking_uri}: train and "
                         f"promote it first ({how})") from exc
    model = download_registered(tracking_uri, name, str(version.version), loader)
    return model, f"{name} v{version.version}"


def load_forecast_models(
    project: Any, config_path: Path, tracking_uri: str | None, models_dir: Path | None, alias: str = CHAMPION
) -> tuple[Any, Any, str]:
    """(sales-readiness model, time-to-close model, "names and versions") of the champions."""
    from serving.loader import champion_folder, find_model_dir
    from training.model import SalesReadinessModel
    from training.time_to_close import TimeToCloseModel
    from training.tracking import probe_tracking_server, tracking_target

    if models_dir is not None:
        folder = find_model_dir(champion_folder(models_dir, READINESS_NAME))
        readiness = _calibrated(SalesReadinessModel.load(folder), str(folder))
        ttc = TimeToCloseModel.load(find_model_dir(champion_folder(models_dir, TIME_TO_CLOSE_NAME)))
        return readiness, ttc, f"exported champions in {models_dir}"
    target = tracking_target(tracking_uri, Path(config_path).resolve().parent)
    if target.is_server:
        probe_tracking_server(target.uri)  # one quick request: MLflow itself retries a dead server for minutes
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
