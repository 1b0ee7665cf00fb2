"""End to end: project -> data -> training set -> train_and_evaluate -> MLflow run -> challenger.

The library functions behind ``leadscore train`` / ``evaluate`` / ``models ...``, the MLproject
entry points, the retrain notebook and ``leadscore demo``. Configuration arrives typed
(``ProjectConfig``, ``TrackingTarget``); nothing here reads environment variables.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import pandas as pd

from features.build import TrainingSet, build_data_training_set, build_flat_training_set
from features.contract import ValidationReport
from features.fingerprint import data_fingerprint
from features.loading import load_data
from features.schema import CREATED_AT, CRMData, FlatData
from leadscore.project import ProjectConfig
from training.baselines import PointsRules, points_rules_identity, unknown_behaviour_types
from training.config import AS_OF, TrainingConfig
from training.evaluation import time_ordered_split
from training.lineage import (
    code_version,
    config_hash,
    data_section,
    lineage_card,
    lineage_params,
    lineage_summary,
    lineage_tags,
    version_lineage,
)
from training.model import take_rows
from training.progress import Progress, no_progress
from training.registry import (
    MODEL_NAME,
    PromotionDecision,
    out_of_sample_probabilities,
    promote,
    refit_tags,
    register_challenger,
    resolve_version,
    rows_metrics,
)
from training.sales_readiness import (
    TrainingResult,
    dated_flat_rows,
    points_rules_for,
    train_and_evaluate,
    train_and_evaluate_flat,
)
from training.survival_config import TimeToCloseConfig
from training.survival_evaluation import TimeToCloseResult, train_and_evaluate_time_to_close

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

from training.tracking import (
    LABEL_COLUMN,
    TrackingTarget,
    connect,
    evaluation_identity,
    log_training_run,
    tracking_server_errors,
)

ResultT = TypeVar("ResultT", TrainingResult, TimeToCloseResult)
LOGGING_LOST = "the run was not completed and no model version was registered"


def registering_lost(run_id: str) -> str:
    """What a tracking server lost while registering the run ``run_id`` leaves (the notes of
    :func:`training.registry.register_challenger` say what became of the version)."""
    return f"run {run_id} was logged"


@dataclass
class TrainRun:
    """What ``train_project`` did: the MLflow run, the registered version (None when refused), the result."""

    run_id: str
    experiment_id: str
    model_uri: str
    model_version: str | None
    result: TrainingResult
    tracking_uri: str
    evaluation: dict[str, str] = field(default_factory=dict)
    refusal: str | None = None  # why the model was not registered (strict leakage mode)

    @property
    def registered(self) -> bool:
        return self.model_version is not None


BUILD_REPORT_SECONDS = 10.0  # how often a running training-set build reports its lead blocks


def block_reporter(say: Progress) -> Callable[[int, int], None]:
    """A ``progress(done, total)`` for the feature build that tells ``say`` the blocks done every
    ``BUILD_REPORT_SECONDS`` (a build of a large CRM takes minutes)."""
    began = last = time.monotonic()

    def report(done: int, total: int) -> None:
        nonlocal last
        now = time.monotonic()
        if done < total and now - last >= BUILD_REPORT_SECONDS:
            last = now
            say(f"  training set: {done} of {total} lead blocks, {now - began:.0f}s")

    return report


def quarantine_note(report: ValidationReport) -> str | None:
    """What the quarantine policy set aside (rows per table and the folder), None when nothing was."""
    counts = {table: n for table, n in report.rows_quarantined.items() if n}
    if not counts:
        return None
    folders = sorted({str(Path(path).parent) for path in report.quarantine_files.values()})
    return (f"the data contract quarantined rows ({report.policy} policy): "
            + ", ".join(f"{table} {n:,}" for table, n in counts.items()) + "; they are left out"
            + (f" (rows and reasons in {', '.join(folders)})" if folders else ""))


def add_report_notes(result: TrainingResult | TimeToCloseResult, report: ValidationReport | None) -> None:
    """Append :func:`quarantine_note` and the contract's notes on doubtful input (``data: ...``) to a training
    result's notes and model card (its ``## Notes``)."""
    if report is None:
        return
    notes = [note for note in (quarantine_note(report),) if note] + [f"data: {note}" for note in report.notes]
    if not notes:
        return
    result.notes.extend(notes)
    heading = "" if "\n## Notes\n" in result.model_card else "\n\n## Notes"
    result.model_card = f"{result.model_card.rstrip()}{heading}\n" + "".join(f"- {note}\n" for note in notes)


@dataclass
class Lineage:
    """Where a run's model comes from: run params and tags, registered-version tags and description, and the
    model card's section (:mod:`training.lineage`)."""

    params: dict[str, str]
    tags: dict[str, str]
    version_tags: dict[str, str]
    description: str
    card: str


def run_lineage(project: ProjectConfig, training_set: TrainingSet, sections: dict, split: dict, seed: int) -> Lineage:
    """The lineage of a run on ``training_set`` configured by ``sections`` (the params' config sections)."""
    code = code_version()
    fingerprint = training_set.source_fingerprint
    configuration = config_hash(sections)
    return Lineage(lineage_params(code, fingerprint, split, configuration), lineage_tags(code, fingerprint, seed),
                   {**version_lineage(code, fingerprint, seed), "config_hash": configuration},
                   lineage_summary(code, fingerprint, seed, project.name),
                   lineage_card(code, fingerprint, seed, project.name, configuration))


def with_card_section(result: ResultT, section: str) -> ResultT:
    """A copy of a training result whose model card ends with ``section`` (the caller's result is left as it
    was: a notebook that logs one result twice gets one section in each card)."""
    copied = copy.copy(result)
    copied.model_card = f"{result.model_card.rstrip()}\n\n{section.rstrip()}\n"
    return copied


def load_training_set(
    project: ProjectConfig, progress: Progress | None = None
) -> tuple[TrainingSet, CRMData | FlatData, ValidationReport]:
    """Read + validate the project's data and build its training set (snapshots, or the flat rows); one without
    rows is refused (:func:`features.build.build_data_training_set`), before anything is trained or logged."""
    say = progress or no_progress
    say("loading and validating data")
    data, report = load_data(project.data)
    for note in report.notes:  # doubtful input the contract lets through: said before anything can refuse it
        say(f"note: {note}")
    say("building the training set")
    training_set = build_data_training_set(data, project.features, set_aside=project.training.score_columns,
                                           progress=block_reporter(say))
    training_set.source_fingerprint = data_fingerprint(data)  # what the run's lineage names as its data
    return training_set, data, report


def fit_training_set(
    training_set: TrainingSet,
    data: CRMData | FlatData,
    config: TrainingConfig,
    points_rules: PointsRules | None = None,
    progress: Progress | None = None,
    report: ValidationReport | None = None,
) -> TrainingResult:
    """``train_and_evaluate`` (snapshots) or ``train_and_evaluate_flat``; the leakage alarm never raises here.
    ``points_rules`` None: ``config.points_rules``, else the packaged default. Points rules with
    ``missing_columns: error`` that name a column the data lacks fail before any fit. ``report``: the data's
    validation report (from :func:`load_training_set`); rows the quarantine set aside and its notes on doubtful
    input are noted in the result."""
    points_rules = points_rules_for(points_rules, config)  # the notebook's call gets the checks below as the CLI's
    if points_rules.missing_columns == "error":
        absent = sorted(set(points_rules.needed_columns) - set(training_set.frame.columns))
        if absent:
            raise ValueError(f"points rules {points_rules.name!r}: column(s) {absent} not in the data "
                             "(missing_columns: error; set missing_columns: skip to score without those rules)")
        unknown = unknown_behaviour_types(points_rules, data.events) if isinstance(data, CRMData) else []
        if unknown:
            raise ValueError(f"points rules {points_rules.name!r}: behaviour event type(s) {unknown} are neither in "
                             "the events table nor conventional types (a typo?); fix them, or set missing_columns: "
                             "skip to score without them")
    relaxed = config.model_copy(update={"leakage": config.leakage.model_copy(update={"strict": False})})
    if isinstance(data, FlatData):
        result = train_and_evaluate_flat(data, relaxed, points_rules=points_rules, spec=training_set.spec,
                                         progress=progress)
    else:
        result = train_and_evaluate(training_set, relaxed, points_rules=points_rules, events=data.events,
                                    progress=progress)
    add_report_notes(result, report)
    return result


FITTED_UNTIL = "fitted_until"  # version tag and champion.json key: see fitted_until_tag


def refit_data_end(training_set: TrainingSet, identity: dict[str, str]) -> pd.Timestamp | str | None:
    """The data end of a model refit for deployment: the latest instant whose outcomes it learnt from (the training
    set's data end; the last as-of date of its test slice when the data has no end). None without dates."""
    return training_set.data_end if training_set.data_end is not None else identity.get("eval_as_of_max")


def fitted_until_tag(training_set: TrainingSet, identity: dict[str, str], refit: bool) -> dict[str, str]:
    """The version tag ``fitted_until``: the latest instant whose outcomes the registered model was fitted or
    calibrated on. A model refit for deployment learnt from its test slice too: its data end (:func:`refit_data_end`);
    else the start of its test slice (``eval_as_of_min``). None without dates. A forecast made before it is
    in-sample (:func:`leadscore.forecast_models.in_sample_warning`)."""
    end = refit_data_end(training_set, identity) if refit else identity.get("eval_as_of_min")
    return {} if end is None else {FITTED_UNTIL: pd.Timestamp(end).isoformat()}


def track_and_register(
    target: TrackingTarget,
    project: ProjectConfig,
    training_set: TrainingSet,
    result: TrainingResult,
    *,
    strict_leakage: bool | None = None,
    model_name: str = MODEL_NAME,
    run_name: str | None = None,
    run_id: str | None = None,
    progress: Progress | None = None,
) -> TrainRun:
    """Log the run into the project's experiment; register it as ``challenger`` unless strict leakage refuses."""
    say = progress or no_progress
    strict = project.training.leakage.strict if strict_leakage is None else strict_leakage
    refusal = None
    if strict and result.leakage.flagged:
        refusal = "strict leakage mode: the leakage alarm flagged this model, so it is not registered\n" + (
            result.leakage.to_text())
    say("logging the MLflow run")
    params = {
        "training": project.training.model_dump(mode="json"),
        "features": project.features.model_dump(mode="json"),
        "data": data_section(project),
    }
    lineage = run_lineage(project, training_set, params, result.split, project.training.seed)
    params["data"]["rows"] = len(training_set.frame)
    if result.points_rules is not None:  # the rules compared with (--points-rules too), not only the config's path
        params["baseline"] = {"points_rules": points_rules_identity(result.points_rules)}
    params.update(lineage.params)
    tags = {"leadscore.project": project.name, **lineage.tags,
            "leadscore.registration": "refused (strict leakage)" if refusal else "challenger"}
    result = with_card_section(result, lineage.card)
    with tracking_server_errors(target.uri, LOGGING_LOST):
        logged = log_training_run(target, project.name, result, training_set.frame, params, tags, run_name,
                                  run_id)
    version = None
    if refusal is None:
        say("registering the challenger")
        client = connect(target)
        # out_of_fold: refit on every row, its run holds out-of-fold probabilities (K-fold flat mode); refit: graded
        # with its run's backtest model on rows dated up to its data end
        refit = "refit" in result.split
        version_tags = {"project": project.name, "data_mode": project.data.mode,
                        "out_of_fold": str("fold" in result.predictions.columns).lower(),
                        **refit_tags(refit, logged.identity.get("eval_as_of_min"),
                                     refit_data_end(training_set, logged.identity)),
                        **fitted_until_tag(training_set, logged.identity, refit),
                        **lineage.version_tags}
        with tracking_server_errors(target.uri, registering_lost(logged.run_id)):
            version = register_challenger(client, logged, result.metrics, version_tags, name=model_name,
                                          description=lineage.description).version
        version = str(version)
    return TrainRun(logged.run_id, logged.experiment_id, logged.model_uri, version, result, target.uri,
                    logged.identity, refusal)


def train_project(
    project: ProjectConfig,
    target: TrackingTarget,
    *,
    points_rules: PointsRules | None = None,
    strict_leakage: bool | None = None,
    model_name: str = MODEL_NAME,
    run_id: str | None = None,
    progress: Progress | None = None,
) -> TrainRun:
    """Data -> training set -> train and evaluate -> MLflow run -> registered ``challenger``."""
    training_set, data, report = load_training_set(project, progress)
    result = fit_training_set(training_set, data, project.training, points_rules, progress, report)
    return track_and_register(target, project, training_set, result, strict_leakage=strict_leakage,
                              model_name=model_name, run_id=run_id, progress=progress)


def promote_challenger(
    target: TrackingTarget, model_name: str = MODEL_NAME, *, version: str | None = None,
    metric: str | None = None, min_delta: float = 0.0,
) -> PromotionDecision:
    """``promote`` against a tracking target (for the CLI and the demo)."""
    client = connect(target)
    with tracking_server_errors(target.uri):
        return promote(client, model_name, version=version, metric=metric, min_delta=min_delta)


TIME_TO_CLOSE_MODEL_NAME = "lead-time-to-close"


@dataclass
class TimeToCloseRun:
    """What ``train_time_to_close_project`` did: the MLflow run, the registered version, the result."""

    run_id: str
    experiment_id: str
    model_uri: str
    model_version: str
    result: TimeToCloseResult
    tracking_uri: str
    evaluation: dict[str, str] = field(default_factory=dict)


def require_dated_snapshots(project: ProjectConfig) -> None:
    """Refuse a project whose data cannot give time to close (a flat export has no dates)."""
    if project.data.mode != "crm":
        raise ValueError("time to close needs dated snapshots: data.mode must be 'crm' (a flat export has no "
                         "creation and conversion timestamps)")


def fit_time_to_close(
    training_set: TrainingSet,
    config: TimeToCloseConfig,
    progress: Progress | None = None,
    report: ValidationReport | None = None,
) -> TimeToCloseResult:
    """The time-to-close model next to its peers (Kaplan-Meier, Cox, the naive regression) on ``training_set``'s
    snapshots; ``report``: the data's validation report (rows the quarantine set aside are noted in the result)."""
    result = train_and_evaluate_time_to_close(training_set, config, progress)
    add_report_notes(result, report)  # printed with the notes, logged in notes.txt and the card
    return result


def track_and_register_time_to_close(
    target: TrackingTarget,
    project: ProjectConfig,
    training_set: TrainingSet,
    result: TimeToCloseResult,
    *,
    model_name: str = TIME_TO_CLOSE_MODEL_NAME,
    run_id: str | None = None,
    progress: Progress | None = None,
) -> TimeToCloseRun:
    """Log a time-to-close run into the project's experiment and register it as ``challenger``."""
    from training.survival_tracking import log_time_to_close_run, register_time_to_close

    say = progress or no_progress
    say("logging the MLflow run")
    params = {"time_to_close": project.time_to_close.model_dump(mode="json"),
              "features": project.features.model_dump(mode="json"),
              "data": data_section(project)}
    lineage = run_lineage(project, training_set, params, result.split, project.time_to_close.seed)
    params["data"]["rows"] = len(training_set.frame)
    params.update(lineage.params)
    tags = {"leadscore.project": project.name, **lineage.tags, "leadscore.registration": "challenger"}
    result = with_card_section(result, lineage.card)
    with tracking_server_errors(target.uri, LOGGING_LOST):
        logged = log_time_to_close_run(target, project.name, result, params, tags, run_id=run_id)
    say("registering the challenger")
    client = connect(target)
    with tracking_server_errors(target.uri, registering_lost(logged.run_id)):
        version = register_time_to_close(client, logged, result.metrics,
                                         {"project": project.name, "data_mode": project.data.mode,
                                          **refit_tags(result.backtest_model is not None,
                                                       result.split.get("censored_at"), training_set.data_end),
                                          **fitted_until_tag(training_set, logged.identity,
                                                             result.backtest_model is not None),
                                          **lineage.version_tags}, name=model_name,
                                         description=lineage.description)
    return TimeToCloseRun(logged.run_id, logged.experiment_id, logged.model_uri, str(version.version), result,
                          target.uri, logged.identity)


def train_time_to_close_project(
    project: ProjectConfig,
    target: TrackingTarget,
    *,
    model_name: str = TIME_TO_CLOSE_MODEL_NAME,
    run_id: str | None = None,
    progress: Progress | None = None,
) -> TimeToCloseRun:
    """Data -> snapshots -> time-to-close model next to its peers -> MLflow run -> registered ``challenger``
    (``leadscore train --target time-to-close``)."""
    require_dated_snapshots(project)
    training_set, data, report = load_training_set(project, progress)
    # the snapshots are all the hazard and its peers read: holding the CRM tables through the fit kept the
    # 10.5M events of a 200k-lead CRM beside it
    del data
    result = fit_time_to_close(training_set, project.time_to_close, progress, report)
    return track_and_register_time_to_close(target, project, training_set, result, model_name=model_name,
                                            run_id=run_id, progress=progress)


@dataclass
class EvaluationReport:
    """Metrics of a registered version on the project's latest evaluation rows."""

    name: str
    version: str
    metrics: dict[str, float]
    evaluation: dict[str, str]


def latest_evaluation_rows(training_set: TrainingSet, config: TrainingConfig, horizon_days: int | None) -> pd.DataFrame:
    """The latest labelled slice the way training tests on it: the time-ordered test slice
    (snapshots; flat rows with a timestamp) or every row (flat rows without); keys, features and ``label``.
    The rows are found by position and copied out of the frame once (the labelled rows, their re-indexed
    copy, the test slice and its columns were four copies of most of the frame)."""
    frame = training_set.frame
    rows = np.flatnonzero(frame[config.label].notna().to_numpy())
    if AS_OF in frame.columns and horizon_days:
        split = time_ordered_split(frame[AS_OF].iloc[rows].reset_index(drop=True), int(horizon_days),
                                   config.test_fraction, config.validation_fraction)
        rows = rows[split.test]
    elif AS_OF not in frame.columns and CREATED_AT in frame.columns:
        created = frame[[CREATED_AT]].iloc[rows].reset_index(drop=True)
        if dated_flat_rows(created):
            split = time_ordered_split(created[CREATED_AT], 0, config.test_fraction, config.validation_fraction)
            rows = rows[split.test]
    keys = [c for c in ("lead_id", AS_OF) if c in frame.columns]
    out = take_rows(frame, rows, [*keys, *training_set.spec.columns_])
    out.index = pd.RangeIndex(len(out))
    out[LABEL_COLUMN] = frame[config.label].to_numpy(dtype=float)[rows]
    return out


def crm_evaluation_rows(crm: CRMData, spec, config: TrainingConfig, horizon_days: int | None) -> pd.DataFrame:
    """:func:`latest_evaluation_rows` of the CRM's training set (built with ``spec``), the features built for those
    rows only: the split is found on every snapshot's as_of and label (at 200k leads the whole training set is
    1.85M rows, 1.04 GB of features, for 556,078 evaluation rows)."""
    from features.build import snapshot_features, snapshot_heads

    heads = snapshot_heads(crm, spec)
    rows = np.flatnonzero(heads.frame[config.label].notna().to_numpy())
    if horizon_days:
        split = time_ordered_split(heads.frame[AS_OF].iloc[rows].reset_index(drop=True), int(horizon_days),
                                   config.test_fraction, config.validation_fraction)
        rows = rows[split.test]
    out = snapshot_features(crm, spec, heads, rows)
    out.insert(0, "lead_id", heads.frame["lead_id"].to_numpy()[rows])
    out.insert(1, AS_OF, heads.frame[AS_OF].to_numpy()[rows])
    out[LABEL_COLUMN] = heads.frame[config.label].to_numpy(dtype=float)[rows]
    return out


def crm_time_to_close_rows(crm: CRMData, model) -> pd.DataFrame:
    """:func:`time_to_close_evaluation_rows` of the CRM's training set (built with the model's spec), the features
    built for those rows only (the split reads every snapshot's lead and as_of)."""
    from features.build import snapshot_features, snapshot_heads
    from training.survival_evaluation import DURATION, EVENT, survival_split

    heads = snapshot_heads(crm, model.spec_)
    test = survival_split(heads.frame[AS_OF], heads.frame["lead_id"], heads.data_end, model.config).test
    features = snapshot_features(crm, model.spec_, heads, test)
    rows = pd.DataFrame({"lead_id": heads.frame["lead_id"].to_numpy()[test], AS_OF: heads.frame[AS_OF].to_numpy()[test]})
    rows = pd.concat([rows, features[list(model.feature_columns_)]], axis=1)
    rows[DURATION] = heads.frame["days_observed"].to_numpy(dtype=float)[test]
    rows[EVENT] = heads.frame["event"].to_numpy()[test].astype(int)
    return rows


def single_class_message(rows: pd.DataFrame) -> str:
    """Why the latest evaluation rows cannot grade a model: their count, conversions and as-of dates."""
    if rows.empty:
        return "the latest evaluation rows are empty (no labelled snapshot); cannot evaluate"
    positives = int(rows[LABEL_COLUMN].sum())
    dates = ""
    if AS_OF in rows.columns:
        first, last = (pd.Timestamp(rows[AS_OF].min()).date(), pd.Timestamp(rows[AS_OF].max()).date())
        dates = f" as of {first}" if first == last else f" as of {first} to {last}"
    which = "none converted" if positives == 0 else "every one converted"
    return (f"the latest evaluation rows ({len(rows):,}{dates}) hold one label class: {which}; AUC and the other "
            "metrics need both. Check the outcomes table and its converted_at mapping (`leadscore validate` "
            "notes an outcomes table without conversions), or evaluate once the data holds both")


def evaluate_registered(
    project: ProjectConfig, target: TrackingTarget, ref: str = "champion", model_name: str = MODEL_NAME,
    progress: Progress | None = None,
) -> EvaluationReport:
    """Score a registered version/alias on the project's latest evaluation data (its own FeatureSpec)."""
    import mlflow

    say = progress or no_progress
    client = connect(target)
    with tracking_server_errors(target.uri):
        version = resolve_version(client, model_name, ref)
        model = mlflow.pyfunc.load_model(f"models:/{model_name}/{version.version}")
    inner = model.unwrap_python_model().model_
    say("loading and validating data")
    data, _ = load_data(project.data)
    say("building features with the model's FeatureSpec")
    from training.time_to_close import TimeToCloseModel

    survival = isinstance(inner, TimeToCloseModel)
    if isinstance(data, CRMData):  # the latest test slice only is built (every snapshot's keys and labels find it)
        rows = (crm_time_to_close_rows(data, inner) if survival
                else crm_evaluation_rows(data, inner.spec_, project.training, inner.horizon_days))
    else:
        training_set = build_flat_training_set(data, spec=inner.spec_)
        rows = (time_to_close_evaluation_rows(training_set, inner) if survival
                else latest_evaluation_rows(training_set, project.training, inner.horizon_days))
        del training_set
    # the evaluation reads its rows only: the CRM tables (10.5M events at 200k leads) go before the scoring
    del data
    if survival:
        say(f"scoring {len(rows):,} evaluation rows")
        with tracking_server_errors(target.uri):
            return _evaluate_time_to_close(client, version, inner, rows, say)
    if rows.empty or rows[LABEL_COLUMN].nunique() < 2:
        raise ValueError(single_class_message(rows))
    from training.pyfunc import pyfunc_probabilities

    scored: list[int] = []

    def score(part: pd.DataFrame) -> np.ndarray:
        scored.append(len(part))
        return pyfunc_probabilities(model, part[list(inner.feature_columns_)])

    say(f"scoring {len(rows):,} evaluation rows")
    # a flat-mode version was refit on every row of its run: those rows get its run's out-of-fold probabilities; a
    # refit time-split version's calibrator read outcomes up to its data end: rows dated up to it, its backtest's
    with tracking_server_errors(target.uri):
        probability = out_of_sample_probabilities(client, version, rows, score, say)
    metrics = rows_metrics(rows, probability, project.training.ece_bins,
                           project.training.ece_binning)  # ECE as the run measured it
    if version.run_id:  # the rate of the rows its calibrator was fitted on: a moved rate explains a calibration gap
        # a refit version's own calibrator (fitted on its run's test rows) graded the rows it scored (dated after its
        # data end), the backtest model's (validation slice) the others: one rate is said only when one graded them all
        refit = version.tags.get("refit") == "true"
        key = ("calibration_base_rate" if not refit or not scored else
               "refit_calibration_base_rate" if sum(scored) == len(rows) else None)
        with tracking_server_errors(target.uri):
            logged = client.get_run(version.run_id).data.metrics.get(key) if key else None
        if logged is not None:
            metrics[key] = float(logged)
    return EvaluationReport(model_name, str(version.version), metrics, evaluation_identity(rows))


def time_to_close_evaluation_rows(training_set: TrainingSet, model) -> pd.DataFrame:
    """The latest test slice of a time-to-close version (its own config: split) as training identified it:
    keys, the model's features, ``duration_days`` and ``event``; copied out of the frame once (the re-indexed
    frame, the slice and its features were three copies, the first of the whole frame)."""
    from training.survival_evaluation import DURATION, EVENT, survival_split

    if training_set.data_end is None:
        raise ValueError("time to close needs dated snapshots (data.mode: crm)")
    frame = training_set.frame
    split = survival_split(frame[AS_OF], frame["lead_id"], training_set.data_end, model.config)
    rows = take_rows(frame, split.test, ["lead_id", AS_OF, *model.feature_columns_])
    rows.index = pd.RangeIndex(len(rows))
    rows[DURATION] = frame["days_observed"].to_numpy(dtype=float)[split.test]
    rows[EVENT] = frame["event"].to_numpy()[split.test].astype(int)
    return rows


def _evaluate_time_to_close(client: MlflowClient, version: ModelVersion, model, rows: pd.DataFrame,
                            say: Progress) -> EvaluationReport:
    """A time-to-close version on its evaluation rows (:func:`time_to_close_evaluation_rows`; the model's own
    config: horizons, tau). The model reads its features by name; the other columns are not features. A version
    refit for deployment is graded with its run's backtest model on the rows it was fitted on."""
    from training.survival_evaluation import (
        DURATION,
        EVENT,
        EvaluationSettings,
        observed_rates,
        score_survival,
    )
    from training.survival_tracking import evaluation_identity as survival_identity
    from training.survival_tracking import out_of_sample_survival

    time, event = rows[DURATION].to_numpy(dtype=float), rows[EVENT].to_numpy()
    if not event.any():
        raise ValueError("latest evaluation rows hold no close; cannot evaluate")
    settings = EvaluationSettings.for_rows(time, event, model.config)
    survival = out_of_sample_survival(
        client, version, rows, lambda part, backtest: (backtest or model).predict_survival(part, settings.days), say)
    metrics = {**score_survival(time, event, survival, settings).metrics,
               **observed_rates(time, event, settings.horizons), "tau_days": float(settings.tau)}
    return EvaluationReport(version.name, str(version.version), metrics, survival_identity(rows))


__all__ = [
    "FITTED_UNTIL",
    "TIME_TO_CLOSE_MODEL_NAME",
    "EvaluationReport",
    "TimeToCloseRun",
    "train_time_to_close_project",
    "fit_time_to_close",
    "track_and_register_time_to_close",
    "require_dated_snapshots",
    "TrainRun",
    "evaluate_registered",
    "fit_training_set",
    "fitted_until_tag",
    "refit_data_end",
    "latest_evaluation_rows",
    "time_to_close_evaluation_rows",
    "load_training_set",
    "promote_challenger",
    "track_and_register",
    "train_project",
]
