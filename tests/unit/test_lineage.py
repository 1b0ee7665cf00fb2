"""The data fingerprint and the code version a run records (features.fingerprint, training.lineage)."""

from __future__ import annotations

import subprocess
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.fingerprint import content_hash, data_fingerprint, table_fingerprint
from features.schema import CRMData
from training.lineage import code_version, library_versions, lineage_summary, source_commit, split_params

REPOSITORY = Path(__file__).resolve().parents[2]


def crm() -> CRMData:
    rng = np.random.default_rng(4)
    leads = pd.DataFrame({"lead_id": np.arange(50), "created_at": pd.Timestamp("2025-01-01")
                          + pd.to_timedelta(rng.integers(0, 90, 50), unit="D"),
                          "industry": rng.choice(["saas", "retail", None], 50), "employees": rng.uniform(1, 500, 50)})
    events = pd.DataFrame({"lead_id": rng.integers(0, 50, 400), "occurred_at": pd.Timestamp("2025-02-01")
                           + pd.to_timedelta(rng.uniform(0, 100, 400), unit="D"),
                           "event_type": rng.choice(["email_open", "demo_request"], 400)})
    outcomes = pd.DataFrame({"lead_id": [3, 7], "converted_at": pd.to_datetime(["2025-05-01", "2025-06-02"])})
    return CRMData(leads, events, outcomes, ["industry"], ["employees"])


def test_the_hash_ignores_row_and_column_order_and_sees_any_change() -> None:
    data = crm()
    events = data.events
    expected = content_hash(events)
    assert content_hash(events.sample(frac=1, random_state=2).reset_index(drop=True)) == expected
    assert content_hash(events[events.columns[::-1]]) == expected
    changed = events.copy()
    changed.loc[17, "event_type"] = "email_open" if changed.loc[17, "event_type"] != "email_open" else "demo_request"
    assert content_hash(changed) != expected
    assert content_hash(events.drop(index=5)) != expected
    assert content_hash(pd.concat([events, events.iloc[[5]]])) != expected  # a row twice is another table
    assert content_hash(events.rename(columns={"event_type": "type"})) != expected


def test_the_fingerprint_gives_rows_dates_and_hashes_per_table() -> None:
    data = crm()
    fingerprint = data_fingerprint(data)
    assert fingerprint["leads.rows"] == "50" and fingerprint["events.rows"] == "400"
    assert fingerprint["outcomes.rows"] == "2" and fingerprint["leads.columns"] == "4"
    assert fingerprint["leads.created_at_min"] == data.leads["created_at"].min().tz_localize("UTC").isoformat()
    assert fingerprint["events.occurred_at_max"] == data.events["occurred_at"].max().tz_localize("UTC").isoformat()
    assert fingerprint["outcomes.converted_at_max"].startswith("2025-06-02")
    assert fingerprint["events.hash"] == table_fingerprint(data.events)["hash"]
    shuffled = CRMData(data.leads.iloc[::-1], data.events.sample(frac=1, random_state=1), data.outcomes,
                       ["industry"], ["employees"])
    assert data_fingerprint(shuffled) == fingerprint
    fewer = CRMData(data.leads, data.events.iloc[1:], data.outcomes, ["industry"], ["employees"])
    assert data_fingerprint(fewer)["hash"] != fingerprint["hash"]


def test_code_version_names_the_package_and_the_checkout_commit() -> None:
    head = subprocess.run(["git", "-C", str(REPOSITORY), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    status = subprocess.run(["git", "-C", str(REPOSITORY), "status", "--porcelain", "--untracked-files=no"],
                            capture_output=True, text=True, check=True).stdout.strip()
    code = code_version()
    assert code == {"leadscore_version": metadata.version("leadscore"), "git_commit": head,
                    "git_dirty": str(bool(status)).lower()}


def test_code_outside_a_checkout_has_no_commit(tmp_path: Path) -> None:
    (tmp_path / "__init__.py").write_text("")
    assert source_commit(tmp_path) == ("unknown", "unknown")
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)  # a repository that does not track it
    assert source_commit(tmp_path) == ("unknown", "unknown")


def test_library_versions_and_split_params() -> None:
    versions = library_versions()
    import lightgbm

    assert versions["lightgbm"] == lightgbm.__version__ and versions["python"].count(".") == 2
    split = {"n_train": 10, "train_as_of": "2025-01-01..2025-03-01", "search": {"trials": [1, 2]}, "fold": None}
    assert split_params(split) == {"split.n_train": "10", "split.train_as_of": "2025-01-01..2025-03-01",
                                   "split.fold": "None"}


@pytest.mark.parametrize("dirty", ["true", "false"])
def test_the_summary_says_where_a_version_came_from(dirty: str) -> None:
    fingerprint = data_fingerprint(crm())
    code = {"leadscore_version": "1.2.3", "git_commit": "0123456789abcdef0123", "git_dirty": dirty}
    text = lineage_summary(code, fingerprint, 42, "acme")
    assert text.startswith("project acme; data: leads 50 (2025-01-")
    assert "events 400" in text and "outcomes 2 (2025-05-01 to 2025-06-02)" in text
    assert f"hash {fingerprint['hash']}" in text and "leadscore 1.2.3, git commit 0123456789ab" in text
    assert ("uncommitted changes" in text) == (dirty == "true") and text.endswith("seed 42")


def test_the_config_hash_leaves_out_where_the_data_lives() -> None:
    from training.lineage import config_hash

    sections = {"training": {"seed": 42, "points_rules": "/home/a/rules.yaml"},
                "data": {"source": {"url": "sqlite:////home/a/crm.db"}, "policy": "strict", "quarantine_dir": "/a/q"}}
    moved = {"training": {"seed": 42, "points_rules": "/srv/b/rules.yaml"},
             "data": {"source": {"url": "sqlite:////srv/b/crm.db"}, "policy": "strict", "quarantine_dir": "/b/q"}}
    assert config_hash(sections) == config_hash(moved)
    assert config_hash(sections) != config_hash({**sections, "training": {"seed": 7, "points_rules": None}})
    assert config_hash(sections) != config_hash({**sections, "data": {**sections["data"], "policy": "quarantine"}})
