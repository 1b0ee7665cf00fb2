"""The `leadscore` command line: thin subcommands over the library functions."""

from __future__ import annotations

import io
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from leadscore.cli_options import (
    FLAG,
    console,
    destination_problem,
    err_console,
    fail,
    load_project_or_fail,
    option_error_text,
    say,
)

if TYPE_CHECKING:
    from features.build import TrainingSet
    from features.schema import CRMData, FlatData
    from leadscore.project import ProjectConfig
    from training.lineage import FeaturesLineage

app = typer.Typer(
    name="leadscore",
    help="Open lead-conversion prediction: point-in-time features, LightGBM, MLflow, SHAP reasons.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def _quiet_downloads() -> None:
    """Open lead-conversion prediction: point-in-time features, LightGBM, MLflow, SHAP reasons."""
    # MLflow draws a progress bar per artifact download (several per model load); our own bars stay.
    # (training.tracking.quiet_artifact_downloads, called by connect, does the same for library users
    # such as the notebook; not imported here: it loads MLflow, which `leadscore --help` does not need)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


features_app = typer.Typer(help="Point-in-time feature pipeline.", no_args_is_help=True)
app.add_typer(features_app, name="features")


ConfigOption = Annotated[
    Path, typer.Option("--config", "-c", help="Project file (leadscore.yaml) or a data config YAML.")
]


@contextmanager
def progress_bar(description: str, total: int | None, unit: str) -> Iterator[Callable[[int, int | None], None]]:
    """A rich progress bar; yields ``advance(n, total=None)``. An error removes it from the screen."""
    columns = [
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    ]
    from leadscore.cli_rescore import cleared_on_error

    with cleared_on_error(Progress(*columns, console=err_console, transient=False)) as bar:
        task = bar.add_task(description, total=total)

        def advance(n: int, new_total: int | None = None) -> None:
            if new_total is not None:
                bar.update(task, total=new_total)
            bar.advance(task, n)

        yield advance


def print_pairs(title: str, rows: list[tuple[str, str]]) -> None:
    """(label, value) rows as a two-column table under ``title``."""
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)


def _load_data(project):
    from features.contract import ContractError, QuarantineWriteError
    from features.loading import load_data

    try:
        return load_data(project.data)
    except ContractError as exc:
        raise fail(str(exc)) from exc
    except QuarantineWriteError as exc:
        raise fail(f"could not write the quarantine files: {exc}") from exc
    except (OSError, ValueError) as exc:
        raise fail(f"could not read the data: {exc}") from exc


def _print_data_summary(data, report) -> None:
    from features.summary import CRMSummary, summarize_data

    summary = summarize_data(data)
    if isinstance(summary, CRMSummary):
        print_pairs("CRM data", summary.as_rows())
        events = Table(title="events by type", title_justify="left")
        events.add_column("event type")
        events.add_column("events", justify="right")
        for name, count in summary.event_type_counts.items():
            events.add_row(name, f"{count:,}")
        console.print(events)
    else:
        print_pairs("flat data", summary.as_rows())
    console.print(report.summary(), highlight=False)


@app.command()
def synth(
    out: Annotated[str, typer.Option(help="SQLAlchemy URL (format sql) or a directory (csv/parquet).")],
    fmt: Annotated[Literal["sql", "parquet", "csv"], typer.Option("--format", help="Output format.")] = "sql",
    leads: Annotated[int, typer.Option(min=1, help="Number of leads.")] = 5000,
    seed: Annotated[int, typer.Option(min=0, help="Random seed (same seed, same data).")] = 0,
    events_per_lead: Annotated[float, typer.Option(min=0.01, help="Approximate mean events per lead.")] = 50.0,
    overwrite: Annotated[bool, typer.Option(metavar=FLAG, help="Replace existing tables/files (in a database, also drop the score "
                                              "tables of a rescore of the replaced data).")] = False,
) -> None:
    """Generate a synthetic B2B CRM (leads, events, outcomes + ground truth)."""
    import sqlalchemy as sa
    from pydantic import ValidationError

    from features.readers import sql_error_text
    from features.urls import masked_url
    from features.writers import DestinationExistsError, is_url
    from leadscore.synth import SynthConfig, write_synthetic

    if not out.strip():
        raise fail("--out is empty: give a SQLAlchemy URL (format sql) or a folder (csv/parquet)", 2)
    if fmt == "sql" and not is_url(out):
        raise fail(f"--out {masked_url(out)}: not a SQLAlchemy URL (e.g. sqlite:///crm.db); for a folder of files add "
                   "--format csv or --format parquet", 2)
    if fmt != "sql" and is_url(out):
        raise fail(f"--out {masked_url(out)}: a database URL, but --format {fmt} writes files into a folder; give a folder, "
                   "or --format sql for the database", 2)
    try:
        config = SynthConfig(n_leads=leads, seed=seed, events_per_lead=events_per_lead)
    except ValidationError as exc:
        raise fail(option_error_text(exc, SYNTH_OPTIONS, SynthConfig, "synth"), 2) from exc
    try:
        with progress_bar("synthesizing", leads, "leads") as advance:
            summary = write_synthetic(config, out, fmt, overwrite=overwrite, progress=advance)
    except DestinationExistsError as exc:
        raise fail(str(exc) if exc.while_writing else
                   f"table {exc.table!r} already exists in {exc.where}; add --overwrite to replace it") from exc
    except (FileExistsError, ValueError) as exc:
        raise fail(str(exc)) from exc
    except OSError as exc:
        raise fail(f"--out {masked_url(out)}: {exc.strerror or exc}") from exc
    except (sa.exc.SQLAlchemyError, ImportError) as exc:
        raise fail(f"--out {masked_url(out)}: {sql_error_text(exc)}") from exc
    dropped = _drop_stale_scores(out) if fmt == "sql" and overwrite else None
    median = summary.median_days_to_close
    print_pairs(
        f"synthetic CRM -> {masked_url(out)}",
        [
            ("leads", f"{summary.leads:,}"),
            ("events", f"{summary.events:,}"),
            ("conversions", f"{summary.conversions:,} ({summary.conversion_rate:.2%})"),
            ("median time to close", "n/a" if median is None else f"{median:.1f} days"),
            ("seconds", f"{summary.seconds:.1f}"),
            *([("stored scores dropped", f"{dropped:,} (lead_scores and its history: of the replaced data)")]
              if dropped is not None else []),
        ],
    )


def _drop_stale_scores(url: str) -> int | None:
    """After ``synth --overwrite`` into a database: drop the score tables of a rescore of the replaced data
    (an incremental rescore would take their lead ids for the new leads'): those of the database's default
    schema, where synth writes (the scores of projects in other schemas stay). Returns the scores dropped
    (None: there were no score tables)."""
    import sqlalchemy as sa

    from serving.score_store import count_scores

    engine = sa.create_engine(url)
    try:
        stored = count_scores(engine)
    finally:
        engine.dispose()
    if stored is not None:
        _drop_score_tables(url)
    return stored


SYNTH_OPTIONS = {"n_leads": "--leads", "seed": "--seed", "events_per_lead": "--events-per-lead"}


@app.command(short_help="Load the data through the contract, validate it and print a summary.")
def validate(config: ConfigOption = Path("leadscore.yaml")) -> None:
    """Load the data through the contract, validate it and print a summary (and read the project's
    points rules file, when it names one, as `train` will)."""
    project = load_project_or_fail(config)
    if project.training.points_rules is not None:
        from leadscore.cli_models import points_rules_of

        points_rules_of(project, config)
    data, report = _load_data(project)
    _print_data_summary(data, report)


@features_app.command("build")
def features_build(
    config: ConfigOption = Path("leadscore.yaml"),
    out: Annotated[Path, typer.Option(help="Training set (Parquet).")] = Path("training_set.parquet"),
    spec_out: Annotated[Path | None, typer.Option(help="Fitted feature spec (JSON); default: --out with the suffix .spec.json.")] = None,
    run_id: Annotated[
        str | None, typer.Option("--run-id", envvar="MLFLOW_RUN_ID", hidden=True,
                                 help="Log the results into this existing run (set by `mlflow run`).")
    ] = None,
) -> None:
    """Build the point-in-time training set (snapshots, labels, features) and its feature spec."""
    from leadscore.run_logging import log_into_run

    if out.suffix.lower() != ".parquet":  # ts.csv got Parquet bytes without a word
        raise fail(f"--out {out}: the training set is written as Parquet: name it with the suffix .parquet", 2)
    spec_path = spec_out or out.with_suffix(".spec.json")
    for option, path in (("--out", out), ("--spec-out", spec_path)):  # before any work
        if (problem := destination_problem(path, folder=False)) is not None:
            raise fail(f"{option} {path}: {problem}", 2)
    project = load_project_or_fail(config)
    data, report = _load_data(project)
    console.print(report.summary(), highlight=False)
    try:
        training_set, lineage = build_features(project, data, out, spec_out)
    except OSError as exc:  # names what was and was not replaced
        raise fail(str(exc)) from exc
    except ValueError as exc:  # raised before any file is replaced
        raise fail(f"{exc}; nothing written") from exc
    summary = training_set.summary()
    _print_training_set_summary(summary)
    # the lineage as a training run records it (data fingerprint per table, config hash, code, seed)
    if not run_id:
        return
    from training.tracking import tracking_target

    def warn(message: str) -> None:
        err_console.print(f"warning: {message}", highlight=False, soft_wrap=True)

    try:  # the store `train -c` uses: MLFLOW_TRACKING_URI (`mlflow run` sets it), else the project's mlflow.db
        store = tracking_target(os.environ.get("MLFLOW_TRACKING_URI") or None, config.resolve().parent).uri
    except ValueError as exc:
        return warn(f"not logged into MLflow run {run_id}: MLFLOW_TRACKING_URI: {exc}")
    log_into_run(run_id, store, say=warn, params=lineage.params,
                 metrics={f"training_set_{k}": v for k, v in summary.items() if isinstance(v, int | float)},
                 tags={"leadscore.entry_point": "features", **lineage.tags}, files=[spec_path],
                 artifact_path="features")


def build_features(project: ProjectConfig, data: CRMData | FlatData, out: Path,
                   spec_out: Path | None = None) -> tuple[TrainingSet, FeaturesLineage]:
    """Build the training set of validated data, write it (Parquet, with its lineage in the file's metadata) and
    its spec (JSON); the lineage is returned for the run that logs it."""
    from features.build import build_data_training_set
    from features.fingerprint import data_fingerprint
    from features.schema import FlatData
    from features.writers import write_training_set_files
    from training.lineage import features_lineage

    if isinstance(data, FlatData):  # built at once: no lead blocks to count
        training_set = build_data_training_set(data)
    else:
        with progress_bar("features", None, "lead blocks") as advance:
            training_set = build_data_training_set(data, project.features, set_aside=project.training.score_columns,
                                                   progress=lambda done, total: advance(1, total))
    training_set.source_fingerprint = data_fingerprint(data)
    lineage = features_lineage(project, training_set)
    spec_path = spec_out or out.with_suffix(".spec.json")
    write_training_set_files(training_set, out, spec_path, lineage.record)
    console.print(f"training set -> {out}\nfeature spec -> {spec_path}\n"
                  f"data hash {lineage.record['data_fingerprint'].get('hash', 'unknown')}, configuration hash "
                  f"{lineage.record['config_hash']}, git commit {lineage.record['code']['git_commit'][:12]}",
                  highlight=False)
    return training_set, lineage


def _print_training_set_summary(summary: dict) -> None:
    """The training set's counts; the snapshot lines (as-of dates, censored rows, as-of range) only for
    snapshots (a flat export has one row per lead and no as-of date)."""
    families = summary.get("features_by_family", {})
    snapshots = "snapshots" in summary
    rows = [
        *([("snapshots (as-of dates)", str(summary["snapshots"]))] if snapshots else []),
        ("rows", f"{summary['rows']:,}" + ("" if snapshots else " (one per lead, flat export)")),
        ("leads", f"{summary['leads']:,}"),
        ("positives", f"{summary['positives']:,}"),
        ("negatives", f"{summary['negatives']:,}"),
        *([("censored", f"{summary['censored']:,}")] if snapshots else []),
        ("features", f"{summary['features']} ({', '.join(f'{k}: {v}' for k, v in families.items())})"),
        *([("as-of range", f"{summary.get('first_as_of', 'n/a')} .. {summary.get('last_as_of', 'n/a')}")]
          if snapshots else []),
    ]
    print_pairs("training set", rows)


@app.command(short_help="End to end on the embedded defaults: synthetic CRM, validate, features, train both "
                        "models, promote, export, forecast, rescore.")
def demo(
    directory: Annotated[Path, typer.Option("--dir", help="Where the demo writes everything.")] = Path(".demo"),
    leads: Annotated[int, typer.Option(min=1, help="Leads in the synthetic CRM.")] = 5000,
    seed: Annotated[int, typer.Option(min=0, help="Random seed (same seed, same data).")] = 0,
) -> None:
    """End to end on the embedded defaults: synthesize a CRM into SQLite, validate, build features,
    train and register both models in MLflow (sales readiness, time to close), promote them when they
    beat their baselines, export them, forecast revenue and rescore the database."""
    from leadscore.cli_models import points_rules_of, print_time_to_close_run, print_train_run
    from leadscore.project import DEMO_DATABASE, project_yaml, sqlite_project
    from training.registry import export_champion
    from training.tracking import connect, quiet_mlflow_noise, tracking_target
    from training.workflow import (
        TIME_TO_CLOSE_MODEL_NAME,
        promote_challenger,
        train_project,
        train_time_to_close_project,
    )

    if (problem := destination_problem(directory, folder=True)) is not None:
        raise fail(f"--dir {directory}: {problem}", 2)
    directory.mkdir(parents=True, exist_ok=True)
    project = sqlite_project(directory)
    config_path = directory / "leadscore.yaml"
    config_path.write_text(project_yaml(project), encoding="utf-8")
    console.rule("1. synthetic CRM")
    synth(out=project.data.source.url, fmt="sql", leads=leads, seed=seed, events_per_lead=50.0, overwrite=True)
    # scores of an earlier demo belong to its data, not this one
    _drop_score_tables(project.data.source.url, project.data.source.db_schema)
    console.rule("2. load and validate through the data contract")
    data, report = _load_data(project)
    _print_data_summary(data, report)
    console.rule("3. point-in-time training set")
    training_set, _ = build_features(project, data, directory / "training_set.parquet")
    _print_training_set_summary(training_set.summary())
    console.rule("4. train, evaluate against the baselines, register in MLflow")
    target = tracking_target(None, directory)
    # no rules named: the packaged default points rules are the baseline
    run = train_project(project, target, points_rules=points_rules_of(project, config_path),
                        progress=say)
    print_train_run(run)
    console.rule("5. promote the challenger if it beats the champion and the baselines")
    decision = promote_challenger(target)
    console.print(decision.explain(), highlight=False)
    if decision.promoted:
        exported = export_champion(connect(target), directory / "models", "lead-conversion", "champion")
        console.print(f"champion exported -> {exported}")
    console.rule("6. time to close: hazard model next to Kaplan-Meier and Cox, registered and promoted")
    with quiet_mlflow_noise():  # its pyfunc is logged outside training.tracking's own quiet scope
        ttc_run = train_time_to_close_project(project, target, progress=say)
    print_time_to_close_run(ttc_run)
    ttc_decision = promote_challenger(target, TIME_TO_CLOSE_MODEL_NAME)
    console.print(ttc_decision.explain(), highlight=False)
    if ttc_decision.promoted:
        exported = export_champion(connect(target), directory / "models", TIME_TO_CLOSE_MODEL_NAME, "champion")
        console.print(f"time-to-close champion exported -> {exported}")
    console.rule("7. revenue forecast of the open pipeline, next months")
    if _champion_exists(target) and _champion_exists(target, TIME_TO_CLOSE_MODEL_NAME):
        _demo_forecast(directory, project)
    else:
        console.print("[yellow]a forecast needs both champions[/] (see the refusals above)", markup=True)
    console.rule("8. rescore the lead database with the champions; the top-10 leads")
    if _champion_exists(target):
        # the synthetic history ends in the past: score as of its end, not the wall clock
        _demo_rescore(directory, project.data.source.url, training_set.data_end)
    else:
        console.print("[yellow]no champion registered: nothing to rescore with[/] (see the refusal above)", markup=True)
    console.print(Text.assemble(("demo done", "green"), f": database {directory / DEMO_DATABASE}, project file "
                                f"{config_path}, MLflow store {target.uri}"))


def _champion_exists(target, name: str = "lead-conversion") -> bool:
    from mlflow.exceptions import MlflowException

    from training.tracking import connect

    try:
        connect(target).get_model_version_by_alias(name, "champion")
    except MlflowException:
        return False
    return True


def _drop_score_tables(url: str, schema: str | None = None) -> None:
    """Drop the score tables in ``schema`` of the database at ``url`` (None: its default schema)."""
    import sqlalchemy as sa

    from serving.score_store import drop_score_tables, in_schema

    engine = sa.create_engine(url)
    try:
        drop_score_tables(in_schema(engine, schema))
    finally:
        engine.dispose()


def _demo_rescore(directory: Path, url: str, as_of) -> None:
    """Batch rescore of the demo database as of ``as_of``, as `leadscore rescore --db URL --top 10` does."""
    from leadscore.cli_rescore import rescore_and_print
    from serving.loader import ServingSettings
    from serving.rescore import RescoreConfig, sql_data_config

    rescore_and_print(sql_data_config(url), url, ServingSettings(project_dir=directory),
                      RescoreConfig(as_of=as_of.to_pydatetime()), top=10)


def _demo_forecast(directory: Path, project) -> None:
    """Expected revenue per month of the leads open at the end of the data, from the two registered champions,
    as `leadscore forecast --out DIR/forecast` makes it."""
    from leadscore.cli_forecast import forecast_with_champions, print_forecast

    forecast = forecast_with_champions(project, directory / "leadscore.yaml", project.forecast)
    print_forecast(forecast, project.forecast, directory / "forecast")


def _register_room_commands() -> None:
    """Commands of the training and serving rooms (train, evaluate, models, forecast, serve, rescore)."""
    from leadscore import cli_forecast, cli_models, cli_rescore, cli_serve

    cli_models.register(app)
    cli_serve.register(app)
    cli_rescore.register(app)
    cli_forecast.register(app)


_register_room_commands()

def main() -> None:
    """The ``leadscore`` program. A job stopped by SIGTERM (systemd, Kubernetes, ``kill``) cleans up as
    after Ctrl-C: partial files and staging tables removed, a rescore run marked failed (SIGTERM's default
    action ran no cleanup at all); it then says so and exits 143 (128 + SIGTERM), as a killed program would.
    Not done by ``app`` itself, which tests and notebooks call in-process."""
    _in_utf8_mode()
    _escape_what_the_terminal_cannot_encode()
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        app()
    except SystemExit as exc:
        if _terminated:
            err_console.print(TERMINATED, highlight=False)
            raise SystemExit(128 + signal.SIGTERM) from None
        if exc.code == 128 + signal.SIGINT:  # typer's exit after Ctrl-C, which said nothing
            err_console.print(INTERRUPTED, highlight=False)
        raise


_CLEANED_UP = ("cleaned up as it stopped (no partial file or staging table is left; an MLflow run in progress is "
               "marked FAILED; a rescore run is marked failed, `leadscore rescore --resume` finishes it)")
INTERRUPTED = f"interrupted (Ctrl-C): {_CLEANED_UP}"
# a job stopped by systemd or Kubernetes says as much as one stopped by Ctrl-C: what is left and how to finish it
TERMINATED = f"stopped by SIGTERM: {_CLEANED_UP}"


_terminated = False


def _in_utf8_mode() -> None:
    """Run this command again, at once, in Python's UTF-8 mode when the locale's encoding is another (LC_ALL=C
    without coercion, a Latin-1 locale). Python named files in the locale's encoding and Arrow and LightGBM in
    UTF-8: a folder 'dé' that Python made was not the one Arrow wrote into ("No such file or directory"), or the
    path could not be given to Arrow at all ("surrogates not allowed"). Arguments keep their bytes."""
    if sys.flags.utf8_mode or sys.getfilesystemencoding().replace("-", "").lower() == "utf8":
        return
    os.execv(sys.executable, [sys.executable, "-X", "utf8", *sys.orig_argv[1:]])


def _escape_what_the_terminal_cannot_encode() -> None:
    """Standard output and error write a character their encoding lacks (a Latin-1 or ASCII locale,
    ``PYTHONIOENCODING``) as a backslash escape: a lead's value in Chinese script in a table or an error
    ended the command in a UnicodeEncodeError traceback there. UTF-8 terminals print as before."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper) and stream.errors == "strict":
            stream.reconfigure(errors="backslashreplace")


def _interrupt(signum: int, frame: object) -> None:
    global _terminated
    _terminated = True
    raise KeyboardInterrupt(f"signal {signum}")


if __name__ == "__main__":
    main()
