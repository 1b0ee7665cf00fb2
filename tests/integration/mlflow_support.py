"""Shared helpers of the MLflow tests: a small synthetic CRM project and models fitted once per session.

Fitted results are cached in memory (``functools.cache``) so the tracking, registry, server and
CLI modules train each kind of model only once per pytest process.
"""

from __future__ import annotations

import functools
import http.server
import socket
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from features.build import TrainingSet
from features.contract import DataConfig, SourceConfig
from features.schema import CRMData
from leadscore.project import ProjectConfig, project_yaml, sqlite_project
from leadscore.synth import SynthConfig, write_synthetic
from training.config import BoosterConfig, LeakageThresholds, TrainingConfig
from training.sales_readiness import TrainingResult
from training.survival_config import TimeToCloseConfig
from training.workflow import fit_training_set, load_training_set

# Big enough that the default model beats the hand-tuned points rules and the logistic regression
# (at 1,500 leads the ~70 positive test snapshots leave them within noise and the points rules won).
N_LEADS = 5000
SEED = 1
SMALL_TRAINING = TrainingConfig(bootstrap_samples=20, shap_sample=200)


def write_project(directory: Path, name: str = "mlflow-test", training: TrainingConfig = SMALL_TRAINING,
                  time_to_close: TimeToCloseConfig | None = None) -> Path:
    """Synthetic CRM as Parquet files in ``directory/crm`` + ``directory/leadscore.yaml`` (``time_to_close``:
    that section, the defaults when None); returns the file."""
    directory.mkdir(parents=True, exist_ok=True)
    crm = directory / "crm"
    write_synthetic(SynthConfig(n_leads=N_LEADS, seed=SEED, events_per_lead=20), str(crm), "parquet", overwrite=True)
    source = SourceConfig(kind="parquet", leads=str(crm / "leads.parquet"), events=str(crm / "events.parquet"),
                          outcomes=str(crm / "outcomes.parquet"))
    project = ProjectConfig(name=name, data=DataConfig(source=source), training=training,
                            time_to_close=time_to_close or TimeToCloseConfig())
    path = directory / "leadscore.yaml"
    document = project_yaml(project)
    path.write_text(document, encoding="utf-8")
    return path


@functools.cache
def _shared_project() -> tuple[ProjectConfig, TrainingSet, CRMData]:
    from leadscore.project import load_project

    directory = Path(tempfile.mkdtemp(prefix="leadscore-mlflow-"))
    project = load_project(write_project(directory))
    training_set, data, _ = load_training_set(project)
    return project, training_set, data


def shared_project() -> tuple[ProjectConfig, TrainingSet, CRMData]:
    """(project, training set, data) of the session's synthetic CRM."""
    return _shared_project()


@functools.cache
def fitted(kind: str, refit: bool = True) -> TrainingResult:
    """A model fitted on the shared training set.

    ``good``: default booster with plots; ``medium``: at most 20 three-leaf trees (beats the
    baselines, not ``good``); ``constant``: no split possible (AUC 0.5); ``leaky``: leakage
    thresholds so low that the alarm fires. ``refit`` False: the backtest model is the result's model
    (``training.refit``), as registered before the deployment refit.
    """
    project, training_set, data = _shared_project()
    base = SMALL_TRAINING
    configs = {
        "good": base,
        "medium": base.model_copy(update={"make_plots": False, "booster": BoosterConfig(
            max_rounds=20, num_leaves=3, max_depth=2, learning_rate=0.3, early_stopping_rounds=20)}),
        "constant": base.model_copy(update={"make_plots": False,
                                            "booster": BoosterConfig(min_data_in_leaf=1_000_000)}),
        "leaky": base.model_copy(update={"make_plots": False,
                                         "leakage": LeakageThresholds(single_feature_auc=0.6)}),
    }
    return fit_training_set(training_set, data, configs[kind].model_copy(update={"refit": refit}))


def sqlite_project_file(directory: Path) -> Path:
    """``directory/leadscore.yaml`` of a project on the embedded SQLite defaults (a command against a tracking
    server contacts the server before it reads the data)."""
    path = directory / "leadscore.yaml"
    path.write_text(project_yaml(sqlite_project(directory)), encoding="utf-8")
    return path


def cli_message(result) -> str:
    """What the user of a CLI command sees: the printed error, or the exception the command does not catch."""
    text = result.output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        text += f"\n{type(result.exception).__name__}: {result.exception}"
    return " ".join(text.split())  # rich wraps long lines


@contextmanager
def local_http_server(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """``handler`` served by a thread on a free port of 127.0.0.1; yields the server's base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    # polled every 50 ms for its shutdown (the default 0.5 s held every test using it that long at its end)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def count_connections(monkeypatch, port: int) -> list[tuple]:
    """The connections this process tries to open to ``127.0.0.1:port`` from now on (one address per try,
    each made for real: the count of tries where nothing listens, as a listening socket counts its accepts)."""
    tries: list[tuple] = []
    connect = socket.socket.connect

    def counting_connect(sock: socket.socket, address) -> None:
        if isinstance(address, tuple) and address[1] == port:
            tries.append(address)
        return connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", counting_connect)
    return tries


def count_pyfunc_scoring(monkeypatch, pyfunc_class: type) -> tuple[list[int], list[int]]:
    """(rows given to MLflow's per-value schema check, rows given to ``pyfunc_class.predict``), one entry per call,
    counted while both still run."""
    import mlflow.pyfunc

    checked: list[int] = []
    enforce = mlflow.pyfunc._enforce_schema  # what PyFuncModel.predict checks its input with

    def counting_check(data, *args, **kwargs):
        checked.append(len(data))
        return enforce(data, *args, **kwargs)

    scored: list[int] = []
    predict = pyfunc_class.predict

    def counting_predict(self, context, model_input, params=None):
        scored.append(len(model_input))
        return predict(self, context, model_input, params)

    monkeypatch.setattr(mlflow.pyfunc, "_enforce_schema", counting_check)
    monkeypatch.setattr(pyfunc_class, "predict", counting_predict)
    return checked, scored
