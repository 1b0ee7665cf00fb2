"""`leadscore train`, `leadscore evaluate` and `leadscore models {promote,rollback,export,list}`.

Wire into the main CLI with ``from leadscore.cli_models import register; register(app)``.
The tracking URI is read here, at the edge: ``--tracking-uri``, else ``MLFLOW_TRACKING_URI``, else
``sqlite:///<project file's dir>/mlflow.db`` (artifacts in ``<dir>/mlartifacts``).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import pandas as pd
import typer
from rich.table import Table

from features.schema import to_numbers
from features.urls import masked_url
from leadscore.cli_options import (
    FLAG,
    console,
    destination_problem,
    err_console,
    fail,
    load_project_or_fail,
    say,
)

if TYPE_CHECKING:
    from leadscore.project import ProjectConfig
    from training.baselines import PointsRules
    from training.tracking import TrackingTarget
    from training.workflow import TimeToCloseRun, TrainRun


ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="Project file (leadscore.yaml) or a data config YAML.")]
TrackingOption = Annotated[
    str | None,
    typer.Option("--tracking-uri", envvar="MLFLOW_TRACKING_URI",
                 help="MLflow tracking URI (default: sqlite:///<project dir>/mlflow.db)."),
]
ModelNameOption = Annotated[str, typer.Option("--model-name", help="Registered model name.")]


def _fmt(value: object, digits: int = 4) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.{digits}f}"
    return "-" if value is None else str(value)


COUNT_NAMES = ("n", "best_iteration", "final_rounds", "eval_rows", "eval_positives", "eval_events")


def is_count(name: object) -> bool:
    """Whether a metric or column name is a count (shown as a whole number)."""
    text = str(name)
    return text in COUNT_NAMES or text.startswith("n_") or text.endswith(("_rows", "_count", "_days"))


def format_value(value: object, count: bool = False, digits: int = 4) -> str:
    """A table cell: counts as whole numbers with thousands separators, other numbers to ``digits``
    decimals, missing as "-", anything else as its text."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, numbers.Real) and math.isfinite(value):
        return f"{round(value):,}" if count and float(value).is_integer() else f"{float(value):.{digits}f}"
    return _fmt(value, digits)


def calibration_line(metrics: Mapping[str, float]) -> str | None:
    """Calibration in the large (mean predicted vs observed rate, their ratio) and in the top 10% by
    score, in one line; None when the metrics lack the figures."""
    predicted, observed = metrics.get("mean_predicted", math.nan), metrics.get("base_rate", math.nan)
    if not (math.isfinite(predicted) and math.isfinite(observed)):
        return None
    ratio = predicted / observed if observed > 0 else math.nan
    if not math.isfinite(ratio):
        verdict = "ratio undefined: no conversions"
    elif abs(ratio - 1) < 0.05:
        verdict = f"predicted/observed {ratio:.2f}"
    else:
        verdict = f"predicted/observed {ratio:.2f}: {'under' if ratio < 1 else 'over'}-predicts by {abs(ratio - 1):.0%}"
        for key, rows in (("calibration_base_rate", "validation slice"),
                          ("refit_calibration_base_rate", "the run's test slice, for the refit model")):
            if math.isfinite(metrics.get(key, math.nan)):
                # after training: scikit-learn is loaded already
                from training.calibration import rate_shift_note

                if shift := rate_shift_note(observed, metrics[key], rows):
                    verdict += f"; {shift}"
                break
    line = f"calibration: mean predicted {predicted:.4f} vs observed rate {observed:.4f} ({verdict})"
    top_p, top_y = metrics.get("top_decile_predicted", math.nan), metrics.get("top_decile_observed", math.nan)
    if math.isfinite(top_p) and math.isfinite(top_y):
        line += f"; top 10% by score: predicted {top_p:.4f} vs observed {top_y:.4f}"
        if top_y > 0:
            line += f" (ratio {top_p / top_y:.2f})"
    return line


def comparison_table(comparison: pd.DataFrame, title: str = "model vs baselines (evaluation rows)") -> Table:
    """A compact rich table of a TrainingResult's comparison frame (rows: scorers)."""
    table = Table(title=title, title_justify="left")
    table.add_column("scorer", style="bold", min_width=12, overflow="fold")
    headers = {"roc_auc": "AUC [95% CI]", "pr_auc": "PR AUC", "log_loss": "log loss", "brier": "Brier",
               "ece": "ECE", "top_decile_capture": "top-10%\ncapture"}  # two lines: fits 80 columns
    cols = [c for c in headers if c in comparison.columns]
    for col in cols:
        table.add_column(headers[col], justify="right")
    for name, row in comparison.iterrows():
        cells = []
        for col in cols:
            value = _fmt(row[col], 3)
            if col == "roc_auc" and {"roc_auc_lo", "roc_auc_hi"} <= set(comparison.columns):
                value += f" [{_fmt(row['roc_auc_lo'], 3)}, {_fmt(row['roc_auc_hi'], 3)}]"
            cells.append(value)
        table.add_row(str(name), *cells)
    return table


def frame_table(frame: pd.DataFrame, title: str) -> Table:
    """Any small frame as a rich table (index first); a cell whose row or column names a count
    (:func:`is_count`) is a whole number, other numbers have 4 decimals."""
    table = Table(title=title, title_justify="left")
    table.add_column(str(frame.index.name or ""), style="bold")
    for col in frame.columns:
        table.add_column(str(col), justify="right")
    for idx, row in frame.iterrows():
        table.add_row(str(idx), *[format_value(v, is_count(idx) or is_count(col)) for col, v in row.items()])
    return table


# headline columns of `models list` per kind; a kind's columns are blank for the other kind's versions
VERSION_METRICS = ("roc_auc", "uno_c", "ibs", "leakage_flagged")


def versions_view(frame: pd.DataFrame) -> pd.DataFrame:
    """``list_versions`` rows as shown by ``models list``: metrics as numbers with 4 decimals, dates
    that wrap between day and time / start and end (not inside a date), the leakage flag as yes/no,
    and the metric columns that no version records (those of the other model kind) dropped."""
    kept = [c for c in VERSION_METRICS if c in frame.columns and frame[c].astype(str).str.strip().ne("").any()]
    view = pd.DataFrame({"version": frame["version"].astype(str), "aliases": frame["aliases"].replace("", "-")})
    view["trained (UTC)"] = frame["trained_at"].map(lambda t: str(t)[:16].replace("T", " ") or "-")
    dates = frame["eval_as_of"].map(lambda t: " to ".join(d for d in str(t).split("..") if d))
    rows = to_numbers(frame.get("eval_rows", pd.Series("", index=frame.index)), errors="coerce")
    # a flat export's rows have no as-of date (out-of-fold or created_at order): their count says what was used
    view["evaluated on"] = [d or (f"{int(n):,} rows (no as-of dates)" if pd.notna(n) else "-")
                            for d, n in zip(dates, rows, strict=True)]
    for col in kept:
        if col == "leakage_flagged":
            view["leakage flagged"] = frame[col].map({"true": "yes", "false": "no"}).fillna("-")
        else:
            view[col] = to_numbers(frame[col], errors="coerce").map(format_value)
    return view.set_index("version")


def _message(exc: BaseException) -> str:
    """An exception as one line for the user (a KeyError's text without its quotes)."""
    return str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)


def _target(tracking_uri: str | None, config: Path):
    from training.tracking import tracking_target

    try:
        return tracking_target(tracking_uri, config.resolve().parent)
    except ValueError as exc:
        raise fail(str(exc), 2) from exc


def _sqlite_file(target: TrackingTarget) -> Path | None:
    """The file of a SQLite store (without ``?timeout=20`` and SQLAlchemy's other parameters); None for
    another store or an in-memory one."""
    if not target.uri.startswith("sqlite:"):
        return None
    from sqlalchemy.engine import make_url

    database = make_url(target.uri).database
    return Path(database) if database and database != ":memory:" else None


def _existing_store(target: TrackingTarget, config: Path) -> TrackingTarget:
    """``target`` when it is no SQLite file that does not exist yet: a command that only reads the registry
    (evaluate, models ...) would create an empty store there and then find nothing in it."""
    path = _sqlite_file(target)
    if path is not None and not path.exists():
        raise fail(f"no MLflow store {path}: nothing is trained or registered there yet (run `leadscore train -c "
                   f"{config}` first, or give the store with --tracking-uri)")
    return target


def _client(tracking_uri: str | None, config: Path):
    """An MLflow client of the target; an unreachable tracking server ends the command with its reason."""
    from training.tracking import TrackingServerUnreachable, connect

    try:
        return connect(_target(tracking_uri, config))
    except TrackingServerUnreachable as exc:
        raise fail(str(exc)) from exc


def _store_project_file(tracking_uri: str | None, config: Path) -> None:
    """Without a tracking URI the project file names the store (its folder's mlflow.db), so it must load: a
    mistyped ``-c`` path would open a new, empty store beside it. Called first by the ``models`` commands, before
    MLflow and LightGBM load, so that a bad project file fails at once."""
    if not tracking_uri:
        load_project_or_fail(config)


def _registry_client(tracking_uri: str | None, config: Path):
    """The client of the ``models`` commands (:func:`_store_project_file` first)."""
    _store_project_file(tracking_uri, config)
    from training.tracking import TrackingServerUnreachable, connect

    try:
        return connect(_existing_store(_target(tracking_uri, config), config))
    except TrackingServerUnreachable as exc:
        raise fail(str(exc)) from exc


def points_rules_of(project: ProjectConfig, config: Path, option: Path | None = None) -> PointsRules:
    """The points rules of a run, read here at the edge: ``option`` (``--points-rules``), else the project's
    ``training.points_rules``, else the packaged default. A file that cannot be read ends the command (exit 2),
    named by where its path came from: the option, or the project file's key."""
    from training.baselines import resolve_points_rules

    try:
        return resolve_points_rules(option or project.training.points_rules)
    except (OSError, ValueError) as exc:
        origin = "--points-rules" if option else f"training.points_rules of project file {config}"
        raise fail(f"{origin}: {exc}", 2) from exc


def threshold_line(cut: dict[str, Any] | None, no_cut_off: str = "") -> str:
    """The recommended MQL cut-off in one line (what it flags, its precision and capture), or why none is."""
    if not cut:
        why = no_cut_off or "none fits the sales capacity"
        return f"MQL cut-off: {why} (see the run's evaluation/thresholds.csv)"
    parts = []
    if math.isfinite(cut.get("leads_per_week", math.nan)):
        parts.append(f"{cut['leads_per_week']:.1f} leads/week")
    if math.isfinite(cut.get("share_flagged", math.nan)):
        parts.append(f"{cut['share_flagged']:.1%} of leads flagged")
    for key, label in (("precision", "precision"), ("capture", "of conversions captured")):
        if math.isfinite(cut.get(key, math.nan)):
            parts.append(f"{label} {cut[key]:.3f}" if key == "precision" else f"{cut[key]:.0%} {label}")
    capacity = (f"{cut['capacity']:g} leads/week" if cut.get("capacity_unit") == "leads_per_week"
                else f"{cut.get('capacity', math.nan):.0%} of leads")
    return f"MQL cut-off for a capacity of {capacity}: score >= {cut['cutoff']} ({', '.join(parts)})"


def print_train_run(run: TrainRun) -> None:
    """Comparison table, leakage report, run id and model version of a ``TrainRun``."""
    result = run.result
    console.print(comparison_table(result.comparison))
    if (calibration := calibration_line(result.metrics)) is not None:
        console.print(calibration, highlight=False)
    console.print(threshold_line(result.recommended_threshold, result.no_cut_off), highlight=False)
    for note in result.notes:
        console.print(f"note: {note}", highlight=False, soft_wrap=True)
    console.print(result.leakage.to_text(), highlight=False)
    rows = [("tracking URI", masked_url(run.tracking_uri)), ("run id", run.run_id),
            ("evaluation rows", ", ".join(f"{k}={v}" for k, v in run.evaluation.items()))]
    rows.append(("model version", f"{run.model_version} (alias challenger)" if run.registered else "not registered"))
    table = Table(show_header=False, title="MLflow", title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)


class Target(StrEnum):
    """What ``leadscore train`` fits."""

    sales_readiness = "sales-readiness"
    time_to_close = "time-to-close"


DEFAULT_MODEL_NAMES = {Target.sales_readiness: "lead-conversion", Target.time_to_close: "lead-time-to-close"}


def print_time_to_close_run(run: TimeToCloseRun) -> None:
    """Model vs peers, calibration at the horizons, run id and model version of a ``TimeToCloseRun``."""
    result = run.result
    # two-line headers: the table fits an 80-column terminal
    headers = {"harrell_c": "Harrell\nC", "uno_c": "Uno\nC", "ibs": "int.\nBrier"}
    horizons = result.settings.horizons
    last = max(horizons)  # the other horizons are in the run's comparison table
    headers.update({f"brier_{last}d": f"Brier\n{last}d", f"calibration_max_gap_{last}d": f"calib.\ngap {last}d"})
    table = Table(title=f"time to close vs peers (test snapshots, tau {result.settings.tau} days)",
                  title_justify="left")
    table.add_column("scorer", style="bold", min_width=22, overflow="fold")
    cols = [c for c in headers if c in result.comparison.columns]
    for col in cols:
        table.add_column(headers[col], justify="right")
    for name, row in result.comparison.iterrows():
        table.add_row(str(name), *[_fmt(float(row[c]), 4) for c in cols])
    console.print(table)
    observed = ", ".join(f"{h}d {result.metrics.get(f'observed_close_{h}d', float('nan')):.4f}" for h in horizons)
    console.print(f"observed P(close within h), Kaplan-Meier on the test snapshots: {observed}", highlight=False)
    for note in result.notes:
        console.print(f"- {note}", highlight=False, soft_wrap=True)
    rows = [("tracking URI", masked_url(run.tracking_uri)), ("run id", run.run_id),
            ("evaluation rows", ", ".join(f"{k}={v}" for k, v in run.evaluation.items())),
            ("model version", f"{run.model_version} (alias challenger)")]
    info = Table(show_header=False, title="MLflow", title_justify="left")
    info.add_column(style="bold")
    info.add_column()
    for key, value in rows:
        info.add_row(key, value)
    console.print(info)


def train(
    config: ConfigOption = Path("leadscore.yaml"),
    tracking_uri: TrackingOption = None,
    target: Annotated[
        Target, typer.Option("--target", help="sales-readiness: P(convert within H days); time-to-close: "
                             "per-lead survival curve, P(close within 30/60/90 days), median days.")
    ] = Target.sales_readiness,
    strict_leakage: Annotated[
        bool, typer.Option("--strict-leakage", metavar=FLAG, help="Refuse to register a model the leakage alarm flags (default: the "
                                  "project's training.leakage.strict, false).")
    ] = False,
    points_rules: Annotated[
        Path | None, typer.Option("--points-rules", help="Hand-tuned points rules YAML, the baseline to beat "
                                  "(default: training.points_rules of the project, else the packaged default).")
    ] = None,
    model_name: Annotated[
        str | None, typer.Option("--model-name", help="Registered model name (default: lead-conversion, or "
                                 "lead-time-to-close with --target time-to-close).")
    ] = None,
    run_id: Annotated[
        str | None, typer.Option("--run-id", envvar="MLFLOW_RUN_ID", hidden=True,
                                 help="Log into this existing run (set by `mlflow run`).")
    ] = None,
) -> None:
    """Train, evaluate against the baselines, log to MLflow and register the challenger."""
    project = load_project_or_fail(config)  # before MLflow and LightGBM load: a bad project file fails at once
    from features.contract import ContractError
    from leadscore.run_logging import running_run_id
    from training.registry import registered_kind
    from training.tracking import TrackingServerUnreachable, tracking_server_errors
    from training.workflow import train_project

    model_name = model_name or DEFAULT_MODEL_NAMES[target]
    store = _sqlite_file(_target(tracking_uri, config))
    if store is not None and not store.exists() and not run_id:
        # a new SQLite store holds no model and no run yet: it is created when the run is logged, after the
        # training set is built (a project that cannot be trained leaves no store behind); its folder is tried now
        if (problem := destination_problem(store, folder=False)) is not None:
            raise fail(f"MLflow store {store}: {problem}", 2)
        held = None
    else:
        client = _client(tracking_uri, config)  # a tracking server that does not answer fails now, not after the fit
        try:  # a server lost here (or answering /health only) is one line too, before the fit
            with tracking_server_errors(client.tracking_uri, "nothing was trained"):
                run_id = running_run_id(run_id, client, say=lambda m: err_console.print(
                    f"warning: {m}", highlight=False, soft_wrap=True))
                held = registered_kind(client, model_name)
        except TrackingServerUnreachable as exc:
            raise fail(str(exc)) from exc
    kind = "time_to_close" if target == Target.time_to_close else "sales_readiness"
    if held is not None and held != kind:
        raise fail(f"--model-name {model_name}: its versions are {held.replace('_', '-')} models; a "
                   f"{kind.replace('_', '-')} model is registered under another name (default "
                   f"{DEFAULT_MODEL_NAMES[target]})", 2)
    if target == Target.time_to_close:
        from training.workflow import train_time_to_close_project

        ignored = [name for name, given in (("--strict-leakage", strict_leakage), ("--points-rules", points_rules))
                   if given]
        if ignored:
            raise fail(f"{' and '.join(ignored)}: sales-readiness options; the time-to-close model has neither "
                       "a leakage alarm nor a points baseline (its peers are Kaplan-Meier, Cox and the naive "
                       "regression)", 2)

        try:
            ttc_run = train_time_to_close_project(project, _target(tracking_uri, config), model_name=model_name,
                                                  run_id=run_id, progress=say)
        except (ContractError, OSError, ValueError, KeyError) as exc:
            raise fail(_message(exc)) from exc
        print_time_to_close_run(ttc_run)
        return
    rules = points_rules_of(project, config, points_rules)
    try:
        run = train_project(project, _target(tracking_uri, config), points_rules=rules,
                            strict_leakage=strict_leakage or None, model_name=model_name, run_id=run_id,
                            progress=say)
    except (ContractError, OSError, ValueError, KeyError) as exc:
        raise fail(_message(exc)) from exc
    print_train_run(run)
    if run.refusal:
        raise fail(run.refusal, 3)


def evaluate(
    config: ConfigOption = Path("leadscore.yaml"),
    tracking_uri: TrackingOption = None,
    model: Annotated[str, typer.Option("--model", "-m", help="Alias (champion, challenger) or version.")] = "champion",
    model_name: ModelNameOption = "lead-conversion",
    run_id: Annotated[
        str | None, typer.Option("--run-id", envvar="MLFLOW_RUN_ID", hidden=True,
                                 help="Log the results into this existing run (set by `mlflow run`).")
    ] = None,
) -> None:
    """Evaluate a registered model version/alias on the project's latest evaluation data."""
    project = load_project_or_fail(config)  # before MLflow and LightGBM load: a bad project file fails at once
    from leadscore.run_logging import log_into_run
    from training.registry import RegistryError
    from training.workflow import evaluate_registered

    try:
        report = evaluate_registered(project, _existing_store(_target(tracking_uri, config), config), model,
                                     model_name, progress=say)
    except (RegistryError, ValueError, KeyError, OSError) as exc:
        raise fail(_message(exc)) from exc
    frame = pd.DataFrame({"value": report.metrics}).rename_axis("metric")
    console.print(frame_table(frame, f"{report.name} v{report.version} on the latest evaluation rows"))
    if (calibration := calibration_line(report.metrics)) is not None:
        console.print(calibration, highlight=False)
    console.print(", ".join(f"{k}={v}" for k, v in report.evaluation.items()), highlight=False)
    if run_id:  # the `mlflow run` run also gets the figures as a file (metrics and evaluation rows)
        import json
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "evaluation.json"
            path.write_text(json.dumps({"model": report.name, "version": report.version,
                                        "metrics": report.metrics, "evaluation_rows": report.evaluation},
                                       indent=2, default=str), encoding="utf-8")
            log_into_run(run_id, _target(tracking_uri, config).uri, say=lambda m: err_console.print(f"warning: {m}", highlight=False, soft_wrap=True),
                         params={"evaluated_model": f"{report.name} v{report.version}"}, metrics=report.metrics,
                         tags={"leadscore.entry_point": "evaluate",
                               **{f"leadscore.{k}": v for k, v in report.evaluation.items()}},
                         files=[path], artifact_path="evaluate")


models_app = typer.Typer(help="Model registry: promote, roll back, export, list.", no_args_is_help=True)


@models_app.command("promote")
def models_promote(
    config: ConfigOption = Path("leadscore.yaml"),
    tracking_uri: TrackingOption = None,
    version: Annotated[str | None, typer.Option(help="Version to promote (default: the challenger).")] = None,
    metric: Annotated[str | None, typer.Option(
        help="Deciding metric (roc_auc, pr_auc, log_loss, ...; uno_c, harrell_c, ibs for time to close). "
             "Default: roc_auc, or uno_c for a time-to-close model.")] = None,
    min_delta: Annotated[float, typer.Option(min=0.0, help="Margin by which the challenger must beat the champion "
                                             "(>= 0).")] = 0.0,
    model_name: ModelNameOption = "lead-conversion",
) -> None:
    """Make the challenger champion if it beats the champion (same rows) and the baselines."""
    if not math.isfinite(min_delta):  # typer's min=0 lets inf (and nan) through
        raise fail(f"--min-delta: must be a finite number >= 0, got {min_delta:g}", 2)
    _store_project_file(tracking_uri, config)
    from training.registry import MetricError, RegistryError, deciding_metrics, promote
    from training.tracking import tracking_server_errors

    accepted = deciding_metrics()
    if metric is not None and not any(metric in metrics for metrics in accepted.values()):
        kinds = " or ".join(f"{', '.join(metrics)} ({kind.replace('_', '-')} models)" for kind, metrics in accepted.items())
        raise fail(f"--metric {metric}: not a metric that can decide a promotion; use one of {kinds}", 2)
    client = _registry_client(tracking_uri, config)
    try:
        with tracking_server_errors(client.tracking_uri):
            decision = promote(client, model_name, version=version, metric=metric, min_delta=min_delta)
    except MetricError as exc:  # a metric of the other kind of model: known only once the version is read
        raise fail(f"--metric {metric}: cannot decide the promotion of {model_name!r}, a {exc.kind.replace('_', '-')} "
                   f"model; use one of {', '.join(exc.accepted)}", 2) from exc
    except (RegistryError, ValueError) as exc:
        raise fail(str(exc)) from exc
    console.print(frame_table(decision.table, "same evaluation rows, side by side"))
    style = "green" if decision.promoted else "yellow"
    console.print(f"[bold {style}]{'PROMOTED' if decision.promoted else 'REFUSED'}[/]", markup=True)
    for reason in decision.reasons:
        console.print(f"- {reason}", highlight=False)
    if not decision.promoted:
        raise typer.Exit(4)


@models_app.command("rollback")
def models_rollback(
    config: ConfigOption = Path("leadscore.yaml"),
    tracking_uri: TrackingOption = None,
    model_name: ModelNameOption = "lead-conversion",
) -> None:
    """Restore the previous champion (skipping earlier champions deleted since)."""
    _store_project_file(tracking_uri, config)
    from mlflow.exceptions import MlflowException

    from training.registry import RegistryError, rollback
    from training.tracking import TrackingServerUnreachable, tracking_server_errors

    client = _registry_client(tracking_uri, config)
    try:
        with tracking_server_errors(client.tracking_uri):
            result = rollback(client, model_name)
    except (RegistryError, TrackingServerUnreachable) as exc:
        raise fail(str(exc)) from exc
    except MlflowException as exc:  # the registry refused a read or a write: one line, no traceback
        first = (str(exc).strip().splitlines() or ["unknown error"])[0]
        raise fail(f"model {model_name!r}: rollback failed: {first}") from exc
    console.print(result.explain(), highlight=False)


@models_app.command("export")
def models_export(
    config: ConfigOption = Path("leadscore.yaml"),
    tracking_uri: TrackingOption = None,
    out: Annotated[Path, typer.Option(help="Directory: the champion goes to <out>/<model name>/, another alias or "
                                      "version to <out>/<model name>@<alias>/.")] = Path("models"),
    alias: Annotated[str, typer.Option(help="Alias or version to export.")] = "champion",
    model_name: ModelNameOption = "lead-conversion",
) -> None:
    """Write a registered version (default: the champion; pyfunc dir + champion.json) for deployment without a
    tracking server."""
    if (problem := destination_problem(out, folder=True)) is not None:  # before the registry is read
        raise fail(f"--out {out}: {problem}", 2)
    _store_project_file(tracking_uri, config)
    from training.registry import RegistryError, export_champion
    from training.tracking import TrackingServerUnreachable, tracking_server_errors

    client = _registry_client(tracking_uri, config)
    try:
        with tracking_server_errors(client.tracking_uri, "nothing was exported"):
            path = export_champion(client, out, model_name, alias)
    except (RegistryError, TrackingServerUnreachable) as exc:
        raise fail(str(exc)) from exc
    except OSError as exc:  # a folder the system will not let us write (permissions, read-only file system)
        raise fail(f"--out {out}: cannot write the export ({exc.strerror or exc}); nothing was exported") from exc
    console.print(f"exported {model_name}@{alias} -> {path}")


@models_app.command("list")
def models_list(
    config: ConfigOption = Path("leadscore.yaml"),
    tracking_uri: TrackingOption = None,
    model_name: ModelNameOption = "lead-conversion",
) -> None:
    """Versions, aliases and headline figures of the registered model."""
    _store_project_file(tracking_uri, config)
    from training.registry import list_versions
    from training.tracking import TrackingServerUnreachable, tracking_server_errors

    client = _registry_client(tracking_uri, config)
    try:
        with tracking_server_errors(client.tracking_uri):
            frame = list_versions(client, model_name)
    except TrackingServerUnreachable as exc:
        raise fail(str(exc)) from exc
    if frame.empty:
        console.print(f"no versions of {model_name!r} registered yet")
        return
    view = versions_view(frame)
    table = Table(title=f"{model_name} versions", title_justify="left")
    table.add_column("version", style="bold", no_wrap=True)
    # widths that break "challenger, champion", "date time" and "start to end" between words: 80 columns
    widths = {"aliases": 11, "trained (UTC)": 10, "evaluated on": 13, "leakage flagged": 7}
    for col in view.columns:
        numeric = col in VERSION_METRICS
        table.add_column(col, justify="right" if numeric else "left", no_wrap=numeric, overflow="fold",
                         max_width=widths.get(col))
    for version, row in view.iterrows():
        table.add_row(str(version), *[str(v) for v in row.tolist()])
    console.print(table)
    origins = [(version, text) for version, text in zip(frame["version"], frame["description"], strict=True) if text]
    if origins:  # versions registered before lineage was recorded have no description
        console.print("where each version came from:")
        for version, text in origins:
            console.print(f"  {version}: {text}", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add ``train``, ``evaluate`` and the ``models`` sub-app to ``app``."""
    app.command("train")(train)
    app.command("evaluate")(evaluate)
    app.add_typer(models_app, name="models")
