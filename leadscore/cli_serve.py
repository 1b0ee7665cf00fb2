"""`leadscore serve`: start the BentoML scoring service (wired into the main CLI by ``register``)."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import socket
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated
from urllib.parse import unquote, urlsplit

import typer

from leadscore.cli_options import (
    FLAG,
    MODEL_DIR,
    MODEL_DIR_ALIAS,
    both_sources_problem,
    fail,
    folder_problem,
    given_spelling,
)

SERVICE = "serving.service:LeadScoringService"
ROOT = Path(__file__).resolve().parents[1]


def absolute_store_uri(uri: str, cwd: Path, what: str = "MLFLOW_TRACKING_URI") -> str:
    """An MLflow store URI with a relative local path made absolute against ``cwd``: ``sqlite:///rel.db``,
    ``file:rel`` and a plain folder; server and other URIs unchanged. A malformed SQLite URL is a
    ``typer.BadParameter`` naming ``what``."""
    from features.contract import resolve_sqlite_url
    from features.urls import tracking_scheme_problem

    if uri.startswith("sqlite:"):
        try:
            return resolve_sqlite_url(uri, cwd)
        except ValueError as exc:
            raise typer.BadParameter(f"{uri!r} is not a SQLite URL (e.g. sqlite:///mlflow.db)", param_hint=what) from exc
    if uri.startswith("file:"):
        parts = urlsplit(uri)
        if parts.netloc not in ("", "localhost") or parts.path.startswith("/"):
            return uri  # file:///abs, file:/abs, file://localhost/abs: absolute already
        return (cwd / unquote(parts.path)).resolve().as_uri()
    if "://" in uri or uri.startswith("databricks"):
        if (problem := tracking_scheme_problem(uri)) is not None:
            raise typer.BadParameter(problem.split(": ", 1)[1], param_hint=what)
        return uri
    return str((cwd / uri).resolve())  # a plain folder


def port_problem(host: str, port: int) -> str | None:
    """Why the server could not listen on ``host:port`` (None when it can): a bind test, with
    ``SO_REUSEADDR`` as the server sets it (a port held only by closed connections is free)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except socket.gaierror as exc:
        return f"host {host!r} cannot be resolved ({exc.strerror})"
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return f"port {port} on {host} is in use (another server? choose another with --port)"
        return f"cannot listen on {host}:{port} ({exc.strerror or exc})"
    return None


def server_bentoml_home(host: str, port: int, environ: Mapping[str, str], cwd: Path) -> Path:
    """The BentoML home of the server on ``host:port``: ``leadscore-serve/<host>-<port>`` in the caller's
    (``BENTOML_HOME``, else ``~/bentoml``). BentoML keeps the Prometheus files behind ``/metrics`` in
    ``<home>/prometheus_multiproc_dir``, reads all of them and empties the folder at every start: in one home
    shared by the user's servers, a server's start wiped the others' counts and each counted the others'
    requests. One server at a time listens on a host and port, so this home is its own."""
    home = Path(os.path.expandvars(environ.get("BENTOML_HOME") or "~/bentoml")).expanduser()
    return (cwd / home).resolve() / "leadscore-serve" / re.sub(r"[^A-Za-z0-9.-]", "_", f"{host}-{port}")


def serve_command(
    host: str = "127.0.0.1",
    port: int = 3000,
    project_dir: Path | None = None,
    model_dir: Path | None = None,
    tracking_uri: str | None = None,
    workers: int = 1,
    reload_seconds: float | None = None,
    access_log: bool = False,
    max_body_mb: int | None = None,
    request_timeout: float | None = None,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> tuple[list[str], dict[str, str]]:
    """(argv, environment additions) of the ``bentoml serve`` process.

    The server runs in the package folder (to import the service), so every folder and SQLite file it
    is given, by option or by ``LEADSCORE_PROJECT_DIR`` / ``LEADSCORE_MODEL_DIR`` /
    ``MLFLOW_TRACKING_URI`` in ``environ``, is made absolute against ``cwd`` (the caller's folder), the
    default project folder ``.demo`` too. BentoML settings of the service (workers, access log, the request
    timeout of ``request_timeout`` or ``LEADSCORE_REQUEST_TIMEOUT_SECONDS``) go through
    ``BENTOML_CONFIG_OVERRIDES``, merged into a JSON value the caller may already have set. ``BENTOML_HOME``
    is the server's own (:func:`server_bentoml_home`).
    """
    environ = os.environ if environ is None else environ
    cwd = Path.cwd() if cwd is None else cwd
    env: dict[str, str] = {}
    project = project_dir or Path(environ.get("LEADSCORE_PROJECT_DIR") or ".demo")
    env["LEADSCORE_PROJECT_DIR"] = str((cwd / project).resolve())
    if model := model_dir or (Path(environ["LEADSCORE_MODEL_DIR"]) if environ.get("LEADSCORE_MODEL_DIR") else None):
        env["LEADSCORE_MODEL_DIR"] = str((cwd / model).resolve())
    for name, given in (("MLFLOW_TRACKING_URI", tracking_uri), ("MLFLOW_REGISTRY_URI", None)):
        if uri := given or environ.get(name):  # a bad one is named as given: --tracking-uri or the variable
            env[name] = absolute_store_uri(uri, cwd, "--tracking-uri" if given else name)
    if reload_seconds is not None:
        env["LEADSCORE_RELOAD_SECONDS"] = str(reload_seconds)
    if max_body_mb is not None:
        env["LEADSCORE_MAX_BODY_MB"] = str(max_body_mb)
    service: dict[str, object] = {}
    timeout = f"{request_timeout:g}" if request_timeout is not None else environ.get("LEADSCORE_REQUEST_TIMEOUT_SECONDS")
    if timeout:  # BentoML reads it when it builds the app, before the service reads its settings
        env["LEADSCORE_REQUEST_TIMEOUT_SECONDS"] = timeout  # checked with the other settings before the start
        with contextlib.suppress(ValueError):
            service["traffic"] = {"timeout": float(timeout)}
    if workers != 1:
        service["workers"] = workers
    if access_log:
        service["logging"] = {"access": {"enabled": True}}
    if service:
        overrides = json.loads(environ.get("BENTOML_CONFIG_OVERRIDES") or "{}")
        lead_scoring = overrides.setdefault("services", {}).setdefault("lead_scoring", {})
        if "traffic" in service:  # the caller's other traffic settings are kept
            lead_scoring.setdefault("traffic", {}).update(service.pop("traffic"))
        lead_scoring.update(service)
        env["BENTOML_CONFIG_OVERRIDES"] = json.dumps(overrides)
    env["BENTOML_HOME"] = str(server_bentoml_home(host, port, environ, cwd))
    bentoml = Path(sys.executable).parent / "bentoml"
    argv = [str(bentoml), "serve", SERVICE, "--host", host, "--port", str(port)]
    return argv, env


def register(app: typer.Typer) -> None:
    """Add ``leadscore serve`` to the main Typer app."""

    @app.command()
    def serve(
        host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
        port: Annotated[int, typer.Option(min=1, max=65535, help="Port.")] = 3000,
        project_dir: Annotated[Path | None, typer.Option(
            help="Project dir holding mlflow.db (default .demo; env LEADSCORE_PROJECT_DIR).")] = None,
        model_dir: Annotated[Path | None, typer.Option(
            MODEL_DIR, help="Serve an exported models/ folder instead of the registry (env LEADSCORE_MODEL_DIR; default: "
                         "the registry).")] = None,
        models_dir: Annotated[Path | None, typer.Option(MODEL_DIR_ALIAS, hidden=True, help=f"Same as {MODEL_DIR}.")] = None,
        tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI (env MLFLOW_TRACKING_URI; default: "
                                                               "sqlite:///<project dir>/mlflow.db).")] = None,
        workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
        reload_seconds: Annotated[float | None, typer.Option(
            min=0, help="Champion check period in seconds (0 = only POST /reload; default 30, env "
                 "LEADSCORE_RELOAD_SECONDS).")] = None,
        access_log: Annotated[bool, typer.Option(
            metavar=FLAG, help="One log line per request (off by default: it costs ~10-25% of a request's CPU).")] = False,
        max_body_mb: Annotated[int | None, typer.Option(
            min=1, max=1024, help="Largest request body in MiB; a larger one gets a 413 before it is read "
                                  "(default 100, env LEADSCORE_MAX_BODY_MB).")] = None,
        request_timeout: Annotated[float | None, typer.Option(
            min=1, max=3600, help="Seconds a request may take until its answer starts; then a 504 "
            "(default 120, env LEADSCORE_REQUEST_TIMEOUT_SECONDS).")] = None,
    ) -> None:
        """Serve real-time scoring (POST /score) with the champion model."""
        model_dir, model_dir_option = given_spelling({MODEL_DIR: model_dir, MODEL_DIR_ALIAS: models_dir})
        argv, env = serve_command(host, port, project_dir, model_dir, tracking_uri, workers, reload_seconds,
                                  access_log, max_body_mb, request_timeout)
        if tracking_uri is not None and "LEADSCORE_MODEL_DIR" in env:  # as rescore and forecast refuse it
            given = (f"{model_dir_option} {model_dir}" if model_dir
                     else f"LEADSCORE_MODEL_DIR={env['LEADSCORE_MODEL_DIR']}")
            drop = "give one of them" if model_dir else "unset LEADSCORE_MODEL_DIR to serve the registry's champion"
            raise fail(both_sources_problem(given, used="served", drop=drop), 2)
        from serving.settings import ServingSettings, SettingsError

        try:  # the server reads them at start-up: a bad one would fail its worker again and again, unanswered
            ServingSettings.from_env({**os.environ, **env}, endpoint=True)
        except SettingsError as exc:
            problem = str(exc)
            for variable, option, given in (("LEADSCORE_RELOAD_SECONDS", "--reload-seconds", reload_seconds),
                                            ("LEADSCORE_MAX_BODY_MB", "--max-body-mb", max_body_mb),
                                            ("LEADSCORE_REQUEST_TIMEOUT_SECONDS", "--request-timeout", request_timeout)):
                if given is not None:  # named as given, not as the variable it became
                    problem = problem.replace(f"{variable}={env[variable]}", f"{option} {env[variable]}")
            raise fail(problem, 2) from None
        folders = [("--project-dir ", project_dir), (f"{model_dir_option} ", model_dir)]
        if model_dir is None and "LEADSCORE_MODEL_DIR" in env:
            folders.append(("LEADSCORE_MODEL_DIR=", Path(env["LEADSCORE_MODEL_DIR"])))
        for given, folder in folders:
            if folder is not None and (problem := folder_problem(folder)) is not None:
                raise fail(f"{given}{folder}: {problem}", 2)
        store = Path(env["LEADSCORE_PROJECT_DIR"]) / "mlflow.db"
        if "LEADSCORE_MODEL_DIR" not in env and "MLFLOW_TRACKING_URI" not in env and not store.is_file():
            # the embedded default store: the server would check an empty registry every few seconds
            where = "--project-dir" if project_dir else ("LEADSCORE_PROJECT_DIR" if os.environ.get(
                "LEADSCORE_PROJECT_DIR") else "the default project folder .demo")
            raise fail(f"no MLflow store {store} ({where}): run `make demo` or `leadscore train` there first, "
                       "or give --project-dir, --model-dir or --tracking-uri", 2)
        if problem := port_problem(host, port):
            raise fail(problem)
        typer.echo(f"serving {SERVICE} on http://{host}:{port}")
        sys.stdout.flush()
        # this process becomes `bentoml serve`: a SIGTERM or Ctrl-C reaches the server itself (a child
        # process would outlive a terminated parent and keep the port)
        os.chdir(ROOT)
        # the server names files as this process does (UTF-8 whatever the locale: see leadscore.cli.main)
        os.execve(argv[0], argv, {**os.environ, **env, "PYTHONUTF8": "1"})
