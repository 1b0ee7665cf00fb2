"""Load the two champions a revenue forecast needs (registry aliases or exported folders)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

from features.urls import masked_url
from leadscore.cli_options import MODEL_DIR
from training.progress import Progress, no_progress

READINESS_NAME = "lead-conversion"
TIME_TO_CLOSE_NAME = "lead-time-to-close"
CHAMPION = "champion"
READINESS_KIND = "sales_readiness"  # the "kind" of a saved model's model.json
# the latest outcomes a version was fitted or calibrated on (registry tag; top-level key of an exported
# champion.json; training.workflow.fitted_until_tag): the data end for a model refit for deployment, the start of
# its test slice otherwise
FITTED_UNTIL = "fitted_until"
# versions registered before that tag: the first as-of of the test slice ("evaluation" of a champion.json); they
# were fitted, calibrated and early-stopped on outcomes known at that date, never later ones
FIT_OUTCOMES_END = "eval_as_of_min"
# ... and for those refit for deployment (tag "refit"), calibrated on that slice: its last as-of, at least
REFIT_OUTCOMES_END = "eval_as_of_max"
# the commands that train and promote each model (named in the error when its champion is missing)
HOW_TO_GET = {
    READINESS_NAME: "leadscore train / leadscore models promote",
    TIME_TO_CLOSE_NAME: f"leadscore train --target time-to-close / leadscore models promote --model-name {TIME_TO_CLOSE_NAME}",
}


class ForecastModels(NamedTuple):
    """The two champions, "names and versions", and per model ("name vN") the date up to which the outcomes
    it was fitted on reach, when its version records it (:func:`fitted_until`)."""

    readiness: Any
    time_to_close: Any
    names: str
    fitted_until: dict[str, datetime]
    labels: tuple[str, str] = ("", "")  # "name vN" of the sales-readiness and the time-to-close champion


def _recorded_date(value: Any) -> datetime | None:
    """A recorded ISO date as naive UTC (None when missing or unreadable: older versions lack it)."""
    from features.schema import naive_utc_datetime

    try:
        at = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return naive_utc_datetime(at)


def in_sample_warning(fitted_until: dict[str, datetime], as_of: datetime) -> str | None:
    """Why a forecast at ``as_of`` is in-sample (None when it is not, or nothing says): a champion was fitted
    on outcomes after that date, so it shows what the models learned since, not what a forecast made then
    would have said."""
    later = {label: date for label, date in fitted_until.items() if date > as_of}
    if not later:
        return None
    day = f"{as_of:%Y-%m-%d}"
    first, *others = [f"{label} {'on outcomes ' if not i else ''}up to {date:%Y-%m-%d}"
                      for i, (label, date) in enumerate(later.items())]
    return (f"the champions were fitted on outcomes after the forecast date {day} ({', '.join([first, *others])}): "
            f"this forecast is in-sample, not what one made on {day} would have said; `leadscore forecast "
            f"--backtest --as-of {day}` trains both models on what was known then and compares with what closed")


def fitted_until(recorded: dict[str, Any], evaluation: dict[str, Any]) -> datetime | None:
    """The end of the outcomes a version was fitted on: its :data:`FITTED_UNTIL` record, else (versions before it)
    the end of its test slice when it was refit for deployment (tag ``refit``: calibrated on that slice), the start
    otherwise; None when nothing is recorded."""
    if recorded.get(FITTED_UNTIL):
        return _recorded_date(recorded[FITTED_UNTIL])
    refit = str(recorded.get("refit", "")).lower() == "true"
    return _recorded_date(evaluation.get(REFIT_OUTCOMES_END if refit else FIT_OUTCOMES_END))


def _from_registry(tracking_uri: str, name: str, alias: str, loader: Any) -> tuple[Any, str, datetime | None]:
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
            raise ValueError(f"no registered model {name!r} with alias {alias!r} at {masked_url(tracking_uri)}: train and "
                             f"promote it first ({how})") from exc
        model = download_registered(tracking_uri, name, str(version.version), loader)
    return model, f"{name} v{version.version}", fitted_until(version.tags, version.tags)


def _exported(models_dir: Path, name: str, kind: str, loader: Any, option: str
              ) -> tuple[Any, Path, str, datetime | None]:
    """The model ``name`` exported under ``models_dir`` (given as ``option``), its folder, "name vN" and the
    end of the outcomes it was fitted on (when recorded); refused when the folder holds another model."""
    import json

    from serving.loader import champion_folder, find_model_dir, read_champion_json
    from training.time_to_close import META_FILE

    try:
        folder = champion_folder(models_dir, name)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{option}: {exc}: export the {name!r} champion there (leadscore models export "
                                f"--out {models_dir} --model-name {name})") from exc
    meta = read_champion_json(folder)
    found = meta.get("name")
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
    evaluation = meta.get("evaluation") if isinstance(meta.get("evaluation"), dict) else {}
    label = f"{name} v{meta['version']}" if meta.get("version") is not None else name
    return loader(model_dir), model_dir, label, fitted_until(meta, evaluation)


def load_forecast_models(
    project: Any, config_path: Path, tracking_uri: str | None, models_dir: Path | None, alias: str = CHAMPION,
    option: str = MODEL_DIR,
) -> ForecastModels:
    """The two champions (registry aliases, or exported under ``models_dir``); ``option`` is the spelling of the
    exported folder's option the user typed, which messages name."""
    from training.model import SalesReadinessModel
    from training.time_to_close import KIND, TimeToCloseModel
    from training.tracking import reach_tracking_server, tracking_target

    if models_dir is not None:
        readiness, folder, a, a_until = _exported(models_dir, READINESS_NAME, READINESS_KIND, SalesReadinessModel.load,
                                                  option)
        ttc, _, b, b_until = _exported(models_dir, TIME_TO_CLOSE_NAME, KIND, TimeToCloseModel.load, option)
        readiness = _calibrated(readiness, str(folder))
        names = f"exported champions in {models_dir}"
    else:
        target = tracking_target(tracking_uri, Path(config_path).resolve().parent)
        reach_tracking_server(target.uri)  # one quick request: MLflow itself retries a dead server for minutes
        readiness, a, a_until = _from_registry(target.uri, READINESS_NAME, alias, SalesReadinessModel.load)
        ttc, b, b_until = _from_registry(target.uri, TIME_TO_CLOSE_NAME, alias, TimeToCloseModel.load)
        readiness, names = _calibrated(readiness, a), f"{a}, {b}"
    fitted_until = {label: until for label, until in ((a, a_until), (b, b_until)) if until is not None}
    return ForecastModels(readiness, ttc, names, fitted_until, (a, b))


def _calibrated(model: Any, where: str) -> Any:
    """``model`` when it has its calibrator (the forecast needs calibrated probabilities), else a ValueError."""
    if not hasattr(model, "calibrator_"):
        raise ValueError(f"sales-readiness model {where} has no calibrator (its model.json has \"calibrator\": "
                         "null): export a trained, calibrated champion")
    return model


def read_crm_with_note(data: Any, progress: Progress = no_progress) -> tuple[Any, str | None]:
    """The CRM of ``data`` (a DataConfig) read through the contract, and what its quarantine set aside (a note;
    None when nothing was)."""
    from features.loading import load_crm
    from training.workflow import quarantine_note

    progress("loading and validating data")
    crm, report = load_crm(data)
    return crm, quarantine_note(report)


def missing_model_attributes(leads: Any, champions: ForecastModels) -> str | None:
    """What is wrong when the leads table, as the project reads it, lacks a lead attribute a champion was trained
    on (a column dropped or renamed since, or listed under ``attributes.ignore``), in the words a rescore uses
    for it; None when every one is there."""
    wanted: dict[str, list[str]] = {}
    for model, label in zip((champions.readiness, champions.time_to_close), champions.labels, strict=True):
        spec = getattr(model, "spec_", None)
        for column in (spec.fit_columns if spec is not None else []):
            if column not in leads.columns:
                wanted.setdefault(column, []).append(label)
    if not wanted:
        return None
    return "; ".join(f"leads.{column}: missing_column: a lead attribute {' and '.join(labels)} "
                     f"{'was' if len(labels) == 1 else 'were'} trained on, not in the leads table as the project "
                     "file reads it (dropped or renamed since, or under attributes.ignore); restore it, or train "
                     "and promote models on the data as it is" for column, labels in wanted.items())


class ChampionForecast(NamedTuple):
    """A forecast of the open pipeline by the two champions: the result (``training.forecast.PipelineForecast``),
    the champions' "name vN", its notes (the quarantine's too) and why it is in-sample (None: it is not)."""

    result: Any
    names: str
    notes: list[str]
    warning: str | None


def forecast_with_champions(project: Any, config_path: Path, settings: Any, as_of: datetime | None = None, *,
                            tracking_uri: str | None = None, model_dir: Path | None = None,
                            option: str = MODEL_DIR, progress: Progress = no_progress) -> ChampionForecast:
    """The forecast of the leads open at ``as_of`` (default: the end of the data, its latest timestamp or
    ``features.data_end``) by the champions (the registry's, or exported under ``model_dir``, given as
    ``option``), the CRM read with their missing-value markers as rescore reads it. The champions are loaded
    first: an unreachable registry fails before the data is read. ``settings``: a ``ForecastConfig``
    (``project.forecast``). Used by ``leadscore forecast``, the demo and the forecast notebook."""
    from serving.rescore import with_model_markers
    from training.forecast import crm_data_end, forecast_open_pipeline

    champions = load_forecast_models(project, config_path, tracking_uri, model_dir, option=option)
    data = project.data
    for model in (champions.readiness, champions.time_to_close):
        if getattr(model, "spec_", None) is not None:
            data = with_model_markers(data, model.spec_)
    crm, quarantined = read_crm_with_note(data, progress)
    if (problem := missing_model_attributes(crm.leads, champions)) is not None:
        raise ValueError(problem)
    data_end = crm_data_end(crm, project.features.data_end)
    result = forecast_open_pipeline(crm, champions.readiness, champions.time_to_close,
                                    as_of if as_of is not None else data_end, settings, progress=progress,
                                    data_end=data_end)
    return ChampionForecast(result, champions.names, [*result.notes, *([quarantined] if quarantined else [])],
                            in_sample_warning(champions.fitted_until, result.as_of.to_pydatetime()))
