"""kill -9 in the middle of a rescoring run, then `rescore --resume`: nothing lost, nothing duplicated."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from leadscore.cli import app
from serving import score_store
from tests.integration.rescore_support import AS_OF, Champion, in_memory_scores, make_champion, make_lead_db

ROOT = Path(__file__).resolve().parents[2]
PARTITION_LEADS = 150

# A run whose progress callback sleeps after each committed partition (the slow-partition hook).
SLOW_RUN = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import pandas as pd
    from serving.loader import ServingSettings
    from serving.rescore import RescoreConfig, rescore, sql_data_config

    url, models = sys.argv[1], Path(sys.argv[2])
    def slow(done, total, partition):
        print(f"committed {partition}", flush=True)
        time.sleep(0.6)
    rescore(sql_data_config(url), url, ServingSettings(model_dir=models),
            RescoreConfig(partition_leads=int(sys.argv[3]), as_of=pd.Timestamp(sys.argv[4]), run_id="crashy"),
            progress=slow)
    print("finished", flush=True)
""")


@pytest.fixture(scope="module")
def champion(tmp_path_factory: pytest.TempPathFactory) -> Champion:
    return make_champion(tmp_path_factory.mktemp("crash-champion"))


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_kill_9_then_resume(database: str, request: pytest.FixtureRequest, champion: Champion) -> None:
    url = request.getfixturevalue("sqlite_url" if database == "sqlite" else "postgres_url")
    make_lead_db(url)
    process = subprocess.Popen(
        [sys.executable, "-c", SLOW_RUN, url, str(champion.models_dir), str(PARTITION_LEADS), AS_OF.isoformat()],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        lines = []
        deadline = time.monotonic() + 60
        while len(lines) < 2 and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
        assert len(lines) == 2 and lines[-1].startswith("committed"), (lines, process.stderr.read())
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    assert process.returncode == -signal.SIGKILL

    engine = sa.create_engine(url)
    try:
        crashed = score_store.load_run(engine, "crashy")
        assert crashed.status == score_store.RUNNING
        assert 2 <= len(crashed.done) < len(crashed.partitions)
        partial = score_store.read_scores(engine)
        committed_before = partial.groupby("run_id").size().to_dict()

        result = CliRunner().invoke(app, ["rescore", "--db", url, "--model-dir",
                                                  str(champion.models_dir), "--resume"])
        assert result.exit_code == 0, result.output
        resumed = score_store.load_run(engine, "crashy")
        assert resumed.status == score_store.FINISHED and resumed.done == {p.index for p in resumed.partitions}
        stored = score_store.read_scores(engine)
        history = score_store.read_history(engine, "crashy")
    finally:
        engine.dispose()

    reference = in_memory_scores(url, champion.core(), AS_OF)
    np.testing.assert_array_equal(stored["lead_id"].to_numpy(), reference.lead_id)  # none lost, none extra
    assert stored["lead_id"].is_unique
    np.testing.assert_allclose(stored["probability"].to_numpy(), reference.probability, atol=1e-12)
    assert (stored["run_id"] == "crashy").all() and (stored["as_of"] == AS_OF).all()
    assert committed_before == {"crashy": len(partial)} and len(partial) < len(stored)
    # rows committed before the crash were not rewritten by the resume
    first = partial.set_index("lead_id")
    np.testing.assert_array_equal(
        stored.set_index("lead_id").loc[first.index, "scored_at"].to_numpy(), first["scored_at"].to_numpy())
    # history: exactly one first-scoring row per lead
    assert sorted(history["lead_id"].tolist()) == stored["lead_id"].tolist()
    assert history["previous_score"].isna().all()
