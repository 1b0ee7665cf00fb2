"""The `leadscore` command under the machine's settings a user may have: time zone, locale and terminal
encoding. What it prints and writes must not depend on them (real subprocesses, real files)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
LEADSCORE = [sys.executable, "-m", "leadscore.cli"]


def run_cli(*args: str, env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LEADSCORE, *args], cwd=cwd or ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1", **env}, encoding="utf-8",
                          errors="replace")


def csv_project(folder: Path, leads: int = 150) -> Path:
    """A small synthetic CRM as CSV files and its project file."""
    from leadscore.synth import SynthConfig, write_synthetic

    write_synthetic(SynthConfig(n_leads=leads, seed=1, events_per_lead=5), str(folder), "csv")
    project = folder / "leadscore.yaml"
    project.write_text("data:\n  source: {kind: csv, leads: leads.csv, events: events.csv, outcomes: outcomes.csv}\n",
                       encoding="utf-8")
    return project


def test_a_value_the_terminal_cannot_encode_is_printed_escaped_not_a_traceback(tmp_path: Path) -> None:
    """Under a Latin-1 locale (LC_ALL=de_DE.ISO-8859-1, or PYTHONIOENCODING=latin-1) `validate` of a CRM whose
    event type is 'webinar_東京' ended in rich's UnicodeEncodeError traceback, exit 1, the summary half
    printed. Now the value is printed with backslash escapes and the command succeeds."""
    project = csv_project(tmp_path)
    events = pd.read_csv(tmp_path / "events.csv", dtype=str, keep_default_na=False)
    events.loc[events.index[:5], "event_type"] = "webinar_東京"
    events.to_csv(tmp_path / "events.csv", index=False)
    for encoding in ("latin-1", "ascii"):
        result = run_cli("validate", "-c", str(project), env={"PYTHONIOENCODING": encoding})
        assert result.returncode == 0, result.stdout + result.stderr
        assert "webinar_\\u6771\\u4eac" in result.stdout, result.stdout
        assert "Traceback" not in result.stderr and "UnicodeEncodeError" not in result.stderr, result.stderr


def test_a_folder_named_in_letters_beyond_ascii_is_written_under_any_locale(tmp_path: Path) -> None:
    """Under a locale whose encoding is not UTF-8 (ASCII here: LC_ALL=C without Python's coercion to C.UTF-8; a
    Latin-1 one alike), `features build --out 'dé ü/ts.parquet'` made the folder through Python (in the locale's
    encoding) and wrote the file through Arrow (in UTF-8): "Failed to open local file ... No such file or
    directory", or "surrogates not allowed", exit 1. The demo in '/tmp/lat é' under LC_ALL=de_DE.ISO-8859-1
    stopped there. leadscore now runs in Python's UTF-8 mode whatever the locale: the same bytes both ways."""
    project = csv_project(tmp_path)
    out = tmp_path / "dé ü" / "ts.parquet"
    result = run_cli("features", "build", "-c", str(project), "--out", str(out),
                     env={"LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(pd.read_parquet(out)) > 0 and out.with_suffix(".spec.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["dé ü"]


def test_the_training_set_is_the_same_in_every_time_zone_and_with_utc_offsets(tmp_path: Path) -> None:
    """Instants are UTC everywhere: the training set of a CRM whose timestamps carry UTC offsets (+05:30,
    -04:00 in daylight saving time, +13:45), built under TZ=Pacific/Chatham and TZ=America/New_York with a
    German locale's environment, equals the one of the same CRM in naive UTC built under TZ=UTC."""
    project = csv_project(tmp_path / "utc")
    shifted = tmp_path / "offsets"
    shifted.mkdir()
    zones = ("Asia/Kolkata", "America/New_York", "Pacific/Chatham")
    for table, column in (("leads", "created_at"), ("events", "occurred_at"), ("outcomes", "converted_at")):
        frame = pd.read_csv(tmp_path / "utc" / f"{table}.csv", dtype=str, keep_default_na=False)
        instants = pd.to_datetime(frame[column].replace("", None))
        frame[column] = ["" if pd.isna(at) else at.tz_localize("UTC").tz_convert(zones[i % 3]).isoformat()
                         for i, at in enumerate(instants)]
        frame.to_csv(shifted / f"{table}.csv", index=False)
    (shifted / "leadscore.yaml").write_text(project.read_text(encoding="utf-8"), encoding="utf-8")
    assert "+05:30" in (shifted / "events.csv").read_text(encoding="utf-8")
    built = {}
    for name, folder, env in (("utc", tmp_path / "utc", {"TZ": "UTC"}),
                              ("chatham", shifted, {"TZ": "Pacific/Chatham", "LANG": "de_DE.UTF-8"}),
                              ("new_york", shifted, {"TZ": "America/New_York", "LC_TIME": "de_DE.UTF-8"})):
        out = tmp_path / f"{name}.parquet"
        result = run_cli("features", "build", "-c", str(folder / "leadscore.yaml"), "--out", str(out), env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        built[name] = (pd.read_parquet(out), out.with_suffix(".spec.json").read_text(encoding="utf-8"))
    frame, spec = built["utc"]
    assert len(frame) > 0
    for name in ("chatham", "new_york"):
        pd.testing.assert_frame_equal(built[name][0], frame)
        assert built[name][1] == spec
