"""The benchmark scripts as the README runs them: every one starts, the cheap ones run at tiny sizes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted(p.name for p in (ROOT / "benchmarks").glob("*.py") if p.name != "__init__.py")


def run_benchmark(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


# Every script's --help, run by path as documented, in one process: the script's folder first on sys.path
# (where benchmarks/features.py would shadow the features package for a script that does not put the
# repository first) and the project's own modules imported afresh for each script. The heavy libraries
# stay imported between scripts: fourteen interpreters paid about 6 s each of imports alone.
HELP_DRIVER = """
import contextlib, io, json, runpy, sys
folder, scripts = sys.argv[1], sys.argv[2:]
ours = ("features", "training", "serving", "leadscore", "benchmarks")
base_path = [p for p in sys.path if p not in ("", folder)]
results = {}
for script in scripts:
    for name in [m for m in sys.modules if m.split(".")[0] in ours or m in ("__mp_main__",)]:
        del sys.modules[name]
    sys.path[:] = [folder, *base_path]
    sys.argv = [folder + "/" + script, "--help"]
    out, err, code = io.StringIO(), io.StringIO(), None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            runpy.run_path(sys.argv[0], run_name="__main__")
        except SystemExit as stop:
            code = stop.code or 0
        except BaseException as exc:
            import traceback
            traceback.print_exc(file=err)
            code = repr(exc)
    results[script] = {"code": code, "stdout": out.getvalue(), "stderr": err.getvalue()}
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def help_outputs() -> dict[str, dict]:
    import json

    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    done = subprocess.run([sys.executable, "-c", HELP_DRIVER, str(ROOT / "benchmarks"), *SCRIPTS], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_benchmark_script_starts(script: str, help_outputs: dict[str, dict]) -> None:
    result = help_outputs[script]
    assert result["code"] == 0, result["stderr"][-2000:]
    assert "usage" in result["stdout"].lower()


def test_synth_benchmark_at_tiny_sizes() -> None:
    none_converted = run_benchmark("synth.py", "--leads", "3")
    assert none_converted.returncode == 0, none_converted.stderr[-2000:]
    assert "conversions      0 (0.00%)" in none_converted.stdout
    assert "median to close  n/a" in none_converted.stdout

    sql = run_benchmark("synth.py", "--leads", "300", "--fmt", "sql")  # no --dest: a temporary SQLite file
    assert sql.returncode == 0, sql.stderr[-2000:]
    assert "leads            300" in sql.stdout and "output           sql, " in sql.stdout
    assert "nan" not in sql.stdout

    for option in ("--leads", "--chunk-leads"):
        refused = run_benchmark("synth.py", option, "0")
        assert refused.returncode == 2 and option in refused.stderr, refused.stderr[-2000:]
        assert "Traceback" not in refused.stderr


@pytest.mark.postgres
def test_rescore_benchmark_generates_again_after_an_unfinished_generation(
        postgres_server_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlalchemy as sa

    from benchmarks import rescore as bench

    # the benchmark names its databases by size: a size of this process's own keeps a parallel run's apart
    n_leads, events_per_lead = 37 + os.getpid() % 97, 1.5
    template = f"leadscore_bench_crm_{n_leads}_1_5"
    admin = sa.create_engine(postgres_server_url, isolation_level="AUTOCOMMIT")

    def databases() -> set[str]:
        with admin.connect() as conn:
            rows = conn.execute(sa.text("SELECT datname FROM pg_database WHERE datname LIKE :p"),
                                {"p": f"{template}%"})
            return {r[0] for r in rows}

    def drop(name: str) -> None:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    monkeypatch.setattr(bench, "POSTGRES_ADMIN", postgres_server_url)
    try:
        # a generation that fails (or is interrupted) leaves no half-generated database behind...
        def broken(url: str, n: int, per_lead: float) -> None:
            raise KeyboardInterrupt
        with monkeypatch.context() as patched:
            patched.setattr(bench, "generate", broken)
            with pytest.raises(KeyboardInterrupt):
                bench.postgres_copy(admin, n_leads, events_per_lead, set())
        assert databases() == set()
        # ...and one left by a killed run (no cleanup ran) no longer blocks every later run
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{template}_tmp"'))
        db = bench.postgres_copy(admin, n_leads, events_per_lead, set())
        try:
            engine = sa.create_engine(db.url)
            with engine.connect() as conn:
                assert conn.execute(sa.text("SELECT count(*) FROM leads")).scalar() == n_leads
            engine.dispose()
        finally:
            db.drop()
        assert databases() == {template}
    finally:
        drop(f"{template}_tmp")
        drop(template)
        admin.dispose()


def test_serving_benchmark_leaves_no_mlflow_artifacts_in_the_working_folder(tmp_path: Path, monkeypatch) -> None:
    """The pyfunc `mlflow models serve` gets is logged to a store in the benchmark's temporary folder; its
    artifacts went to MLflow's default ``./mlruns`` of the folder it ran in (the repository), left behind."""
    from benchmarks.serving import mlflow_pyfunc_folder
    from tests.serving_fixtures import train_small_champion

    champion = train_small_champion(n_leads=800, seed=4)
    work, scratch = tmp_path / "work", tmp_path / "scratch"
    work.mkdir(), scratch.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    pyfunc = mlflow_pyfunc_folder(champion.model, champion.features, scratch)
    assert (pyfunc / "MLmodel").is_file() and pyfunc.is_relative_to(scratch)
    assert list(work.iterdir()) == []
