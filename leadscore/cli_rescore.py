"""`leadscore rescore`: batch rescoring of the lead database (wired into the main CLI by ``register``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from features.urls import masked_url
from leadscore.cli_options import (
    FLAG,
    MODEL_DIR,
    MODEL_DIR_ALIAS,
    both_sources_problem,
    console,
    destination_problem,
    err_console,
    fail,
    folder_problem,
    given_spelling,
)


def _data_config(db: str | None, config: Path | None) -> Any:
    """The data config: ``-c`` project/data YAML, else the canonical tables in the database ``--db``."""
    from features.contract import DataConfig
    from leadscore.project import ProjectConfigError, load_project

    if config is None:
        if db is None:
            raise fail("give --db URL or -c leadscore.yaml", 2)
        from serving.rescore import sql_data_config

        return sql_data_config(db)
    try:  # a bare data config too; every section is checked, as for train (a misspelt key is never passed over)
        data = load_project(config).data
    except ProjectConfigError as exc:
        raise fail(f"--config: {exc}", 2) from None
    if not isinstance(data, DataConfig):
        raise fail(f"--config {config}: rescoring needs the CRM data mode (leads/events/outcomes)", 2)
    return data


def _scores_url(db: str | None, data: Any) -> str:
    if db is not None:
        return db
    if data.source.kind == "sql" and data.source.url:
        return str(data.source.url)
    raise fail("the data is not in a database: give --db URL for the lead_scores tables", 2)


@contextmanager
def cleared_on_error(bar: Progress) -> Iterator[Progress]:
    """Run the progress ``bar``; an error removes it from the screen, so the error message stands alone."""
    with bar:
        try:
            yield bar
        except BaseException:
            bar.live.transient = True
            bar.live.stop()
            bar.disable = True  # stopped above: its exit prints no blank line either
            raise


def shown_value(value: object, label: str = "") -> str:
    """A reason's value as a person reads it: a missing "days since ..." is "never", another missing
    value "none"; 1,000 and more (after rounding) with thousands separators; a magnitude below 0.001
    as "< 0.001" (a decayed count long after its events); else three significant digits, never in
    scientific notation."""
    if value is None or (isinstance(value, float) and value != value):
        return "never" if label.startswith("days since") else "none"
    if isinstance(value, int | float) and not isinstance(value, bool):
        if abs(value) >= 999.5:  # 999.7 at three significant digits would read "1e+03"
            return f"{value:,.0f}"
        if value != 0 and abs(value) < 0.001:  # "6.57e-08"
            return "< 0.001" if value > 0 else "> -0.001"
        return f"{value:.3g}" if isinstance(value, float) else str(value)
    return str(value)


def shown_impact(impact: object) -> str:
    """A reason's impact (or a family sum) in probability points as a person reads it: signed, one
    decimal; a nonzero one that would round to 0.0 as "+<0.1" / "-<0.1" (its sign kept, and that it is
    small); exactly zero as "0"; a missing one (null in reasons written by earlier versions) as "n/a"."""
    if impact is None or not isinstance(impact, int | float) or impact != impact:
        return "n/a"
    if impact == 0:
        return "0"
    if f"{abs(impact):.1f}" == "0.0":
        return "+<0.1" if impact > 0 else "-<0.1"
    return f"{impact:+.1f}"


def processes_text(used: int, asked: int | None, partitions_now: int) -> str:
    """How many processes scored partitions, and why fewer than ``--processes`` when so."""
    if used == 0:
        return "none (no partition left to score)"
    if asked is None or used >= asked:
        return str(used)
    if partitions_now < asked:
        why = (f"{partitions_now} partition{'s' if partitions_now != 1 else ''} to score, one process each; "
               "--partition-leads sets their size")
    else:
        why = "the others got no partition before the run ended"
    return f"{used} of the {asked} asked ({why})"


def print_top_leads(leads: Any) -> None:
    """The highest-scored leads (``serving.rescore.top_leads``): score, grade, MQL, fit/engagement split,
    time to close (when that model scored them), then each lead's top reasons (impacts: ``shown_impact``)."""
    import pandas as pd
    from rich.table import Table

    table = Table(title=f"top-{len(leads)} leads", title_justify="left")
    for column in ("lead", "score", "grade", "MQL", "fit", "engagement", "P(close 90d)", "median days to close"):
        table.add_column(column, justify="right", overflow="fold")  # a narrow terminal folds a value, never cuts it
    for row in leads.itertuples(index=False):
        scored = not pd.isna(row.p_close_90d)
        median = "beyond" if scored and pd.isna(row.median_days) else (f"{row.median_days:.0f}" if scored else "-")
        split = ["-" if pd.isna(v) else shown_impact(float(v)) for v in (row.fit_score, row.engagement_score)]
        table.add_row(str(row.lead_id), str(row.score), str(row.grade), "yes" if row.mql else "no", *split,
                      f"{row.p_close_90d:.2f}" if scored else "-", median)
    needed = console.measure(table, options=console.options.update_width(10_000)).minimum  # every word whole
    if needed > console.width:  # a narrow terminal: one space between columns, then fold (never cut) what is left
        table.collapse_padding, table.pad_edge = True, False
    console.print(table)
    console.print("top reasons (impact in probability points; +<0.1 / -<0.1: smaller than 0.1 point):")
    for row in leads.itertuples(index=False):
        reasons = "; ".join(f"{r['label']} = {shown_value(r['value'], r['label'])} ({shown_impact(r['impact'])})"
                            for r in row.reasons)
        console.print(f"  {row.lead_id}: {reasons or '-'}", highlight=False)


def scored_text(summary: Any) -> str:
    """Leads scored, and how many of those scores went into ``lead_scores`` when not all did."""
    if summary.written >= summary.scored:
        return f"{summary.scored:,}"
    return f"{summary.scored:,} ({summary.written:,} written: a later run's scores are newer)"


def latest_activity_text(summary: Any) -> str:
    """The base's latest lead creation or event before the as-of and how long before it ("-": no partition run
    now, or nothing before the as-of)."""
    days = summary.days_since_latest_activity
    if days is None:
        return "-"
    unit = "day" if f"{days:,.0f}" == "1" else "days"
    return f"{summary.latest_activity:%Y-%m-%d %H:%M} ({days:,.0f} {unit} before the as-of)"


def stale_as_of_note(summary: Any) -> str | None:
    """A note when the as-of is long after everything in the base (a historical export scored as of now: every
    lead looks years old, every recency feature beyond what the model learned from)."""
    from serving.rescore import STALE_AS_OF_DAYS

    days = summary.days_since_latest_activity
    if days is None or days <= STALE_AS_OF_DAYS:
        return None
    return (f"the as-of {summary.as_of:%Y-%m-%d} is {days:,.0f} days after the latest lead or event of the base "
            f"({summary.latest_activity:%Y-%m-%d}): lead ages and recency features are that much older than any "
            "the model saw; to score a historical export as it stood, pass --as-of (e.g. --as-of "
            f"{summary.latest_activity:%Y-%m-%d})")


def print_summary(summary: Any, processes: str | None = None) -> None:
    """The end-of-run summary table (counts, grades, largest changes; ``processes``: who scored)."""
    table = Table(title=f"rescore run {summary.run_id}", show_header=False, title_justify="left")
    table.add_column(style="bold", overflow="fold")  # a long word (a model name, a URL) folds, never cut
    table.add_column(overflow="fold")
    rows = [
        ("model", f"{summary.model_name} v{summary.model_version}"),
        ("time-to-close model", summary.time_to_close_model or "none (time-to-close fields left empty)"),
        ("as of", str(summary.as_of)),
        ("latest lead or event", latest_activity_text(summary)),
        ("partitions", f"{summary.partitions} ({summary.partitions_run_now} run now)"),
        *([("processes", processes)] if processes is not None else []),
        ("leads read", f"{summary.leads:,}"),
        ("scored", scored_text(summary)),
        ("skipped: converted", f"{summary.skipped_converted:,}"),
        ("skipped: not yet created", f"{summary.skipped_not_created:,}"),
        ("unchanged since --changed-since", f"{summary.unchanged:,}"),
        ("rescored: other model", f"{summary.model_changed:,}"),
        ("scored: no stored score", f"{summary.never_scored:,}"),
        ("quarantined lead ids", f"{summary.quarantined:,}"),
        ("MQLs", f"{summary.mql:,}"),
        ("grades", "  ".join(f"{g}: {n:,}" for g, n in summary.grades.items())),
        ("history rows", f"{summary.history_rows:,}"),
        ("unseen values (scored as missing)",
         "; ".join(f"{c}: {', '.join(v)}" for c, v in summary.unseen.items()) or "none"),
        ("seconds", f"{summary.seconds:.1f} ({summary.leads_per_second:,.0f} leads/s)"),
    ]
    for label, changes in (("largest increases", summary.largest_increases),
                           ("largest decreases", summary.largest_decreases)):
        text = ", ".join(f"{c['lead_id']}: {c['previous_score']}->{c['score']} ({c['delta']:+d})" for c in changes)
        rows.append((label, text or "none"))
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)


_WRITES = frozenset({"INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "ALTER"})


def _failed_database(exc: Exception, data: Any, scores_url: str) -> str:
    """"database <scores URL>" (password masked) when the failure is the scores database's: the only database, or
    a statement that writes (the lead data is only read); else "database" (which one, the error says)."""
    source = getattr(getattr(data, "source", None), "url", None)
    statement = str(getattr(exc, "statement", None) or "").split(None, 1)
    if source == scores_url or (statement and statement[0].upper() in _WRITES):
        return f"database {masked_url(scores_url)}"
    return "database"


def rescore_and_print(data: Any, scores_url: str, settings: Any, config: Any, *, out: Path | None = None,
                      dask: str | None = None, workers: int | None = None, top: int = 0) -> Any:
    """Rescore the open leads of ``data`` (``serving.rescore.rescore``; on Dask workers with ``dask`` (a scheduler
    address) or ``workers`` (a local cluster)) with a progress bar on stderr, then print the run's summary, where
    ``out`` has the scores, and the ``top`` highest-scored leads with their reasons. A failure is one error line
    (exit 1). The run's summary."""
    import sqlalchemy as sa
    from mlflow.exceptions import MlflowException

    from features.contract import ContractError
    from features.readers import sql_error_text
    from serving.rescore import WorkerDiedError, score_schema, top_leads
    from serving.rescore import rescore as run_rescore

    columns = [TextColumn("rescoring"), BarColumn(), MofNCompleteColumn(), TextColumn("lead ids"),
               TaskProgressColumn(), TextColumn("{task.fields[rate]}"), TextColumn("eta"), TimeRemainingColumn()]
    scored_by: set[int] = set()  # ids of the processes that scored partitions
    try:
        with cleared_on_error(Progress(*columns, console=err_console)) as bar:
            task = bar.add_task("rescore", total=None, rate="")
            before = [0]  # lead ids a resumed run had committed before this call (partition -1)

            def progress(done: int, total: int, partition: int) -> None:
                bar.update(task, total=total, advance=done)
                if partition < 0:
                    before[0] += done
                    return
                elapsed = bar.tasks[task].elapsed or 0.0
                completed = bar.tasks[task].completed - before[0]
                if elapsed > 0:
                    bar.update(task, rate=f"{completed / elapsed:,.0f} leads/s")

            if dask is not None or workers is not None:
                from serving.rescore_dask import rescore_on_dask

                summary = rescore_on_dask(data, scores_url, settings, config, address=dask,
                                          n_workers=workers, progress=progress, out=out,
                                          note=lambda text: err_console.print(f"note: {text}", highlight=False, soft_wrap=True))
            else:
                summary = run_rescore(data, scores_url, settings, config, progress=progress, out=out,
                                      on_result=lambda result: scored_by.add(result.pid))
    except (ContractError, WorkerDiedError, LookupError, ValueError, OSError) as exc:
        raise fail(str(exc)) from exc
    except (sa.exc.SQLAlchemyError, ImportError) as exc:  # unreachable server, unknown role, missing driver
        raise fail(f"{_failed_database(exc, data, scores_url)}: {sql_error_text(exc)}") from exc
    except MlflowException as exc:
        todo = ""
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):  # no such model or alias
            todo = (f" (store {masked_url(settings.resolved_tracking_uri)}): train and promote a {settings.alias} first "
                    f"(leadscore train, then leadscore models promote), or give {MODEL_DIR} with an exported one")
        raise fail(f"model registry: {exc.message}{todo}") from exc
    if dask is not None or workers is not None:
        who = f"Dask workers ({f'scheduler {dask}' if dask else f'{workers} on this machine'})"
    else:
        who = processes_text(len(scored_by), config.processes, summary.partitions_run_now)
    print_summary(summary, who)
    if summary.leads and summary.skipped_not_created == summary.leads:
        raise fail(f"the as-of {summary.as_of:%Y-%m-%d %H:%M}".removesuffix(" 00:00")
                   + f" is before the created_at of every lead read ({summary.leads:,}): no lead was scored; "
                   "pass a later --as-of")
    if (stale := stale_as_of_note(summary)) is not None:
        err_console.print(f"note: {stale}", highlight=False, soft_wrap=True)
    if out is not None:
        console.print(f"scores -> {out}")
    if top:
        try:
            leads = top_leads(scores_url, top, score_schema(data))
        except ValueError as exc:  # reasons that are not JSON
            raise fail(f"--top: {exc}") from exc
        print_top_leads(leads)
    return summary


def register(app: typer.Typer) -> None:
    """Add ``leadscore rescore`` to the main Typer app."""

    @app.command()
    def rescore(
        db: Annotated[str | None, typer.Option(
            help="SQLAlchemy URL of the lead database (leads/events/outcomes; scores are written there; with -c, "
                 "of the scores only, in the source's db_schema).")] = None,
        config: Annotated[Path | None, typer.Option(
            "--config", "-c", help="Project file (leadscore.yaml) or data config instead of --db.")] = None,
        model_dir: Annotated[str | None, typer.Option(
            MODEL_DIR, metavar="<path>", help='Exported models/ folder (env LEADSCORE_MODEL_DIR) instead of the registry; '
                                            '"" (empty): the registry.')] = None,
        models_dir: Annotated[str | None, typer.Option(MODEL_DIR_ALIAS, hidden=True, help=f"Same as {MODEL_DIR}.")] = None,
        tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI (env MLFLOW_TRACKING_URI; default: "
                                                           "sqlite:///<project dir>/mlflow.db).")] = None,
        project_dir: Annotated[Path | None, typer.Option(
            help="Project dir holding mlflow.db (default: the -c file's folder, as for train; without -c: env "
                 "LEADSCORE_PROJECT_DIR, else .demo).")] = None,
        as_of: Annotated[datetime | None, typer.Option(help="Features as of this instant (UTC); default now.")] = None,
        changed_since: Annotated[datetime | None, typer.Option(
            help="Incremental: only leads with events / updates / creation at or after this instant, and those "
                 "without a stored score or scored by another model.")] = None,
        partition_leads: Annotated[int | None, typer.Option(
            min=1, help="Lead ids per partition (one transaction; default 50,000; a resumed run keeps its own).")] = None,
        top_k: Annotated[int | None, typer.Option(
            min=0, max=50, help="Reasons per lead (default: LEADSCORE_TOP_K, else 3).")] = None,
        resume: Annotated[bool, typer.Option(metavar=FLAG, help="Continue the latest unfinished run (or --run-id).")] = False,
        run_id: Annotated[str | None, typer.Option(help="Id of the new run (default: its UTC start time and 8 random "
                                                     "hex digits), or of the run to resume (default: the latest "
                                                     "unfinished one).")] = None,
        out: Annotated[Path | None, typer.Option(help="Also write the scores to this .parquet or .csv file.")] = None,
        dask: Annotated[str | None, typer.Option(help="Dask scheduler address: score partitions on its workers.")] = None,
        workers: Annotated[int | None, typer.Option(min=1, help="Run a local Dask cluster with N workers.")] = None,
        processes: Annotated[int | None, typer.Option(  # max: RescoreConfig.processes' bound (serving not imported)
            min=1, max=256, help="Processes scoring partitions, this one included (default: one per core for bases of "
                        "250,000+ lead ids in 2+ partitions; 1: this process only).")] = None,
        top: Annotated[int, typer.Option(min=0, help="Print the top-N leads with reasons at the end.")] = 0,
    ) -> None:
        """Rescore the open leads of the lead database with the champion (chunked, resumable)."""
        if resume:  # the run keeps its own as-of, reasons per lead and incremental start
            given = [name for name, value in (("--as-of", as_of), ("--changed-since", changed_since),
                                              ("--top-k", top_k), ("--partition-leads", partition_leads))
                     if value is not None]
            if given:
                raise fail(f"{', '.join(given)}: a resumed run keeps the values it started with; drop "
                           f"{'it' if len(given) == 1 else 'them'} with --resume", 2)
        if out is not None and out.suffix.lower() not in (".parquet", ".csv"):
            raise fail(f"--out {out}: expected a .parquet or .csv file", 2)
        if out is not None and (problem := destination_problem(out, folder=False)) is not None:
            raise fail(f"--out {out}: {problem}", 2)
        model_dir, model_dir_option = given_spelling({MODEL_DIR: model_dir, MODEL_DIR_ALIAS: models_dir})
        data = _data_config(db, config)  # before MLflow and LightGBM load: a bad project file fails at once
        from serving.loader import ServingSettings, SettingsError
        from serving.rescore import RescoreConfig

        scores_url = _scores_url(db, data)
        try:
            settings = ServingSettings.from_env(os.environ)
        except SettingsError as exc:
            raise fail(str(exc), 2) from None
        overrides: dict[str, Any] = {}
        if model_dir is not None:
            overrides["model_dir"] = Path(model_dir) if model_dir else None  # "": the registry
        if tracking_uri is not None:
            overrides["tracking_uri"] = tracking_uri
        if project_dir is not None:
            overrides["project_dir"] = project_dir
        elif config is not None:  # the project's own store, as train uses: -c beats LEADSCORE_PROJECT_DIR
            overrides["project_dir"] = config.resolve().parent
        settings = settings.model_copy(update=overrides)
        exported = f"{model_dir_option} {model_dir}" if model_dir else f"LEADSCORE_MODEL_DIR={settings.model_dir}"
        if tracking_uri is not None and settings.model_dir is not None:
            raise fail(both_sources_problem(exported), 2)
        if settings.model_dir is not None and (what := folder_problem(settings.model_dir)) is not None:
            raise fail(f"{exported}: {what} (the folder `leadscore models export --out` wrote)", 2)
        if settings.model_dir is None:  # the registry: a plain folder is MLflow's retired file store
            from training.tracking import tracking_target

            try:
                tracking_target(settings.resolved_tracking_uri, settings.project_dir)
            except ValueError as exc:
                raise fail(str(exc), 2) from None
        if dask is not None and workers is not None:
            raise fail("--dask scores on that scheduler's workers, --workers starts a local cluster; give one of them", 2)
        if processes is not None and (dask is not None or workers is not None):
            raise fail("--processes is for a run on this machine; with --dask / --workers the Dask workers score "
                       "the partitions", 2)
        sized = {} if partition_leads is None else {"partition_leads": partition_leads}  # else RescoreConfig's
        rescore_config = RescoreConfig(**sized, as_of=as_of, changed_since=changed_since,
                                       top_k=settings.scoring.top_k if top_k is None else top_k, run_id=run_id, resume=resume,
                                       processes=processes)
        rescore_and_print(data, scores_url, settings, rescore_config, out=out, dask=dask, workers=workers, top=top)
