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


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_benchmark_script_starts(script: str) -> None:
    # run by path, as documented: the script's folder comes first on sys.path, where benchmarks/features.py
    # would shadow the features package for a script that does not put the repository first
    result = run_benchmark(script, "--help")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage" in result.stdout.lower()


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
