"""`leadscore forecast`: expected revenue per month of the open pipeline (wired in by ``register``)."""

from __future__ import annotations

import os
import uuid
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.table import Table
from rich.text import Text

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
    load_project_or_fail,
    option_error_text,
    say,
)
from leadscore.forecast_models import ChampionForecast


def _on_command_line(ctx: typer.Context, name: str) -> bool:
    """Whether option ``name`` was given on the command line (not by its environment variable)."""
    return getattr(ctx.get_parameter_source(name), "name", None) == "COMMANDLINE"


def interval_text(settings: Any) -> str:
    """What the revenue is counted in and what the low and high columns are, e.g. "revenue in EUR; low / high:
    90% interval (analytic)"."""
    from training.forecast import interval_label, revenue_unit

    return f"revenue in {revenue_unit(settings.currency)}; low / high: {interval_label(settings)}"


def with_currency(frame: Any, settings: Any) -> Any:
    """``frame`` with a ``currency`` column: ``forecast.currency``, empty when it is not set, so a file of the
    forecast says what its amounts are counted in."""
    return frame.assign(currency=settings.currency or "")


def forecast_table(months: Any, title: str) -> Table:
    """Months x (expected deals, expected revenue, interval[, actual]) as a rich table."""
    from training.forecast import (
        ACTUAL_DEALS,
        ACTUAL_REVENUE,
        EXPECTED_DEALS,
        EXPECTED_REVENUE,
        HIGH,
        INSIDE,
        LOW,
        MONTH,
        OBSERVED,
    )

    table = Table(title=title, title_justify="left", pad_edge=False)
    for name in ("month", "expected\ndeals", "expected\nrevenue", "low", "high"):  # two-line headers: 80 columns
        table.add_column(name, justify="right")
    backtest = ACTUAL_REVENUE in months
    if backtest:
        table.add_column("actual\ndeals", justify="right")
        table.add_column("actual\nrevenue", justify="right")
        table.add_column("inside", justify="center")
    for _, row in months.iterrows():
        cells: list[str | Text] = [str(row[MONTH]), f"{row[EXPECTED_DEALS]:,.1f}", f"{row[EXPECTED_REVENUE]:,.0f}",
                 f"{row[LOW]:,.0f}", f"{row[HIGH]:,.0f}"]
        if backtest and not row.get(OBSERVED, True):
            cells += [f"{row[ACTUAL_DEALS]:,}*", f"{row[ACTUAL_REVENUE]:,.0f}*", "n/a"]
            table.caption = "* the month ends after the data end: revenue closed until then, not compared"
        elif backtest:
            cells += [f"{row[ACTUAL_DEALS]:,}", f"{row[ACTUAL_REVENUE]:,.0f}", "yes" if row[INSIDE] else Text("no", style="red")]
        table.add_row(*cells)
    return table


OUTPUT_FILES = ("forecast_months.csv", "forecast_leads.csv", "forecast.png")


def out_problem(out: Path) -> str | None:
    """Why ``--out`` cannot receive the forecast's files (None when it can): checked before any work."""
    if (problem := destination_problem(out, folder=True)) is not None:
        return problem
    for name in OUTPUT_FILES:
        if (out / name).exists() and not (out / name).is_file():
            return f"{out / name} exists and is not a file"
    return None


def _write(out: Path, months: Any, leads: Any, figure: Any) -> list[Path]:
    """The forecast's files into ``out``, all or none: each is written under a temporary name beside it and
    the three are renamed at the end, so a failure or Ctrl-C leaves the earlier files as they were."""
    out.mkdir(parents=True, exist_ok=True)
    written = [out / name for name in OUTPUT_FILES[:2]] + ([out / OUTPUT_FILES[2]] if figure is not None else [])
    token = f"{os.getpid()}.{uuid.uuid4().hex[:8]}"
    temporary = [path.with_name(f".{path.name}.{token}.tmp") for path in written]
    try:
        months.to_csv(temporary[0], index=False)
        leads.to_csv(temporary[1], index=False)
        if figure is not None:
            figure.savefig(temporary[2], dpi=120, format="png")
        for tmp, path in zip(temporary, written, strict=True):
            os.replace(tmp, path)
    finally:
        for tmp in temporary:
            tmp.unlink(missing_ok=True)
    console.print("wrote " + ", ".join(str(p) for p in written), highlight=False)
    return written


def write_forecast_files(out: Path, months: Any, leads: Any, figure: Any) -> list[Path]:
    """The forecast's files into ``out`` all or none (:func:`_write`); a failure of the file system (disk full,
    permissions) is one line naming --out."""
    try:
        return _write(out, months, leads, figure)
    except OSError as exc:
        raise fail(f"--out {out}: the forecast could not be written ({exc.strerror or exc}); no file was replaced",
                   1) from exc


def _log_run(run_id: str | None, store: tuple[str | None, Path], months: Any, as_of: Any, files: list[Path],
             backtest: bool, currency: str | None = None) -> None:
    """Totals and files of the forecast into the `mlflow run` run, when there is one, of the store ``store``
    names: (tracking URI, project file) as :func:`training.tracking.tracking_target` resolves them."""
    if not run_id:
        return
    from leadscore.run_logging import log_into_run
    from training.forecast import ACTUAL_REVENUE, EXPECTED_DEALS, EXPECTED_REVENUE, HIGH, LOW, OBSERVED
    from training.tracking import tracking_target

    metrics = {"forecast_expected_deals": months[EXPECTED_DEALS].sum(),
               "forecast_expected_revenue": months[EXPECTED_REVENUE].sum(),
               "forecast_low_first_month": months[LOW].iloc[0], "forecast_high_first_month": months[HIGH].iloc[0]}
    if backtest:  # over the months that end before the data end
        seen = months[months[OBSERVED]]
        metrics.update(backtest_expected_revenue=seen[EXPECTED_REVENUE].sum(),
                       backtest_actual_revenue=seen[ACTUAL_REVENUE].sum(), backtest_observed_months=len(seen))
    params = {"forecast_as_of": f"{as_of:%Y-%m-%d %H:%M}", "forecast_months": len(months),
              **({"forecast_currency": currency} if currency else {})}
    try:
        uri = tracking_target(store[0], store[1].resolve().parent).uri
    except ValueError as exc:
        return say(f"not logged into MLflow run {run_id}: {exc}")
    log_into_run(run_id, uri, say=say, params=params,
                 metrics=metrics, tags={"leadscore.entry_point": "forecast"}, files=files, artifact_path="forecast")


def read_crm(data: Any) -> tuple[Any, str | None]:
    """The CRM of ``data`` (a DataConfig) read through the contract, and its quarantine note (None: nothing
    was set aside)."""
    from leadscore.forecast_models import read_crm_with_note

    return read_crm_with_note(data, say)


def forecast_with_champions(project: Any, config: Path, settings: Any, as_of: datetime | None = None, *,
                            tracking_uri: str | None = None, model_dir: Path | None = None,
                            option: str = MODEL_DIR) -> ChampionForecast:
    """:func:`leadscore.forecast_models.forecast_with_champions`, a failure ending the command (exit 1)."""
    from features.contract import ContractError
    from leadscore.forecast_models import forecast_with_champions as forecast_by_champions

    try:
        return forecast_by_champions(project, config, settings, as_of, tracking_uri=tracking_uri,
                                     model_dir=model_dir, option=option, progress=say)
    except (ContractError, ValueError, KeyError, FileNotFoundError) as exc:
        raise fail(str(exc)) from exc


def print_forecast(forecast: ChampionForecast, settings: Any, out: Path | None) -> list[Path]:
    """The forecast's in-sample warning (stderr), its table and notes, and its files into ``out`` (None: no
    files); the files written."""
    from training.forecast import forecast_figure, interval_label

    result = forecast.result
    if forecast.warning is not None:
        err_console.print(Text.assemble(("warning:", "bold yellow"), f" {forecast.warning}"), highlight=False,
                          soft_wrap=True)
    console.print(forecast_table(result.months, f"revenue forecast as of {result.as_of:%Y-%m-%d} ({forecast.names}); "
                                 f"{interval_text(settings)}"))
    for note in forecast.notes:
        console.print(f"note: {note}", highlight=False, soft_wrap=True)
    if out is None:
        return []
    figure = forecast_figure(result.months, f"Revenue forecast as of {result.as_of:%Y-%m-%d} "
                             f"({len(result.leads):,} open leads)", interval_label(settings), settings.currency)
    return write_forecast_files(out, with_currency(result.months, settings), with_currency(result.leads, settings),
                                figure)


FORECAST_OPTIONS = {"months": "--months", "interval": "--interval", "method": "--method"}


def _checked_overrides(**given: Any) -> dict[str, Any]:
    """The ``forecast:`` settings the options give (None: not given), checked as the project file's are; a bad
    one ends the command (exit 2) named by its option, e.g. ``--interval: must be above 0 and below 1, got 1.5``
    (in the project file the same value is named by the file and its field, ``forecast.interval``)."""
    from pydantic import ValidationError

    from training.forecast_config import ForecastConfig

    overrides = {name: value for name, value in given.items() if value is not None}
    try:
        ForecastConfig.model_validate(overrides)
    except ValidationError as exc:
        raise fail(option_error_text(exc, FORECAST_OPTIONS, ForecastConfig, "forecast"), 2) from None
    return overrides


def register(app: typer.Typer) -> None:
    """Add the ``forecast`` command to the main CLI."""

    @app.command()
    def forecast(
        ctx: typer.Context,
        config: Annotated[Path, typer.Option("--config", "-c", help="Project file (leadscore.yaml) or a data config YAML.")] = Path(
            "leadscore.yaml"),
        as_of: Annotated[
            datetime | None,
            typer.Option("--as-of", help="Forecast date, UTC (default: the end of the data, i.e. its latest "
                         "timestamp or features.data_end; with --backtest: required, before the data end)."),
        ] = None,
        backtest: Annotated[
            bool, typer.Option("--backtest", metavar=FLAG, help="Train both models on the data known at --as-of, forecast, "
                               "and compare with the revenue those leads actually closed.")
        ] = False,
        months: Annotated[int | None, typer.Option(
            "--months", min=1, max=24, help="Months forecast (default: the project's forecast.months, 6).")] = None,
        interval: Annotated[
            float | None, typer.Option("--interval", help="Central probability of the interval, above 0 and below 1 "
                                       "(default: forecast.interval, 0.9).")
        ] = None,
        method: Annotated[Literal["analytic", "simulation"] | None, typer.Option(
            "--method", help="How the interval is computed (default: forecast.method, analytic).")] = None,
        out: Annotated[
            Path | None, typer.Option("--out", help="Folder for forecast_months.csv, forecast_leads.csv, forecast.png (default: none, the "
                                        "forecast is only printed).")
        ] = None,
        tracking_uri: Annotated[
            str | None,
            typer.Option("--tracking-uri", envvar="MLFLOW_TRACKING_URI",
                         help="MLflow tracking URI (default: sqlite:///<project dir>/mlflow.db)."),
        ] = None,
        model_dir: Annotated[
            Path | None, typer.Option(MODEL_DIR, help="Exported champions (instead of the registry).")
        ] = None,
        models_dir: Annotated[Path | None, typer.Option(MODEL_DIR_ALIAS, hidden=True, help=f"Same as {MODEL_DIR}.")] = None,
        run_id: Annotated[
            str | None, typer.Option("--run-id", envvar="MLFLOW_RUN_ID", hidden=True,
                                     help="Log the forecast into this existing run (set by `mlflow run`).")
        ] = None,
    ) -> None:
        """Expected revenue per month of the open pipeline, with an interval (or its backtest)."""
        from features.contract import ContractError, config_error_text

        overrides = _checked_overrides(months=months, interval=interval, method=method)  # before the project file
        model_dir, model_dir_option = given_spelling({MODEL_DIR: model_dir, MODEL_DIR_ALIAS: models_dir})
        if backtest:  # it trains its own two models: no champions are read (MLFLOW_TRACKING_URI may stay set)
            given = ([model_dir_option] if model_dir is not None else []) + (
                ["--tracking-uri"] if _on_command_line(ctx, "tracking_uri") else [])
            if given:
                raise fail(f"{' and '.join(given)}: not used with --backtest, which trains both models on the data "
                           f"known at --as-of; drop {'it' if len(given) == 1 else 'them'}", 2)
        elif model_dir is not None and _on_command_line(ctx, "tracking_uri"):
            raise fail(both_sources_problem(f"{model_dir_option} {model_dir}"), 2)
        elif model_dir is not None and (problem := folder_problem(model_dir)) is not None:  # as serve and rescore: before any work
            raise fail(f"{model_dir_option} {model_dir}: {problem}", 2)
        project = load_project_or_fail(config)
        if project.data.mode != "crm":
            raise fail(f"{config}: forecasting needs the CRM data mode (leads/events/outcomes with dates)", 2)
        from training.forecast import backtest_forecast, naive_utc  # after the project file: it fails at once

        if not backtest and model_dir is None:  # a URI that names no store is refused as the other commands do
            from training.tracking import tracking_target

            try:
                tracking_target(tracking_uri, config.resolve().parent)
            except ValueError as exc:
                raise fail(str(exc), 2) from exc

        try:
            settings = project.forecast.model_validate({**project.forecast.model_dump(), **overrides})
        except ValueError as exc:
            raise fail(config_error_text("forecast", exc), 2) from exc
        if out is not None and (problem := out_problem(out)) is not None:
            raise fail(f"--out {out}: {problem}", 2)
        when = naive_utc(as_of) if as_of is not None else None
        if backtest and as_of is None:
            raise fail("--backtest needs --as-of (a past date with months of outcomes after it)", 2)
        if not backtest:
            forecast = forecast_with_champions(project, config, settings, when, tracking_uri=tracking_uri,
                                               model_dir=model_dir, option=model_dir_option)
            files = print_forecast(forecast, settings, out)
            _log_run(run_id, (tracking_uri, config), forecast.result.months, forecast.result.as_of, files,
                     backtest=False, currency=settings.currency)
            return
        try:
            crm, quarantined = read_crm(project.data)
            result = backtest_forecast(crm, when, project, settings, progress=say)
            console.print(forecast_table(result.table, f"forecast made {when:%Y-%m-%d} vs actual; "
                                         f"{interval_text(settings)}"))
            for note in [*result.forecast.notes, *([quarantined] if quarantined else [])]:
                console.print(f"note: {note}", highlight=False, soft_wrap=True)
            console.print(result.to_text().splitlines()[-1], highlight=False)
            files = (write_forecast_files(out, with_currency(result.table, settings),
                                          with_currency(result.forecast.leads, settings), result.figure)
                     if out is not None else [])
            _log_run(run_id, (tracking_uri, config), result.table, when, files, backtest=True,
                     currency=settings.currency)
        except (ContractError, ValueError, KeyError, FileNotFoundError) as exc:
            raise fail(str(exc)) from exc
