"""Strict and quarantine policies: refusal, quarantine files with reasons, counts, cascade."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.contract import ContractError, DataConfig, QuarantineWriteError, validate_crm
from features.readers import RawTables


def raw_crm() -> RawTables:
    """Five leads (canonical names), with defects in every table."""
    leads = pd.DataFrame(
        {
            "lead_id": [1, 2, 3, 4, 5],
            "created_at": ["2024-01-01", "2024-01-02", "not a date", "2024-01-04", "2024-01-05"],
            "segment": ["a", "b", "a", "b", "a"],
        }
    )
    events = pd.DataFrame(
        {
            "lead_id": [1, 1, 2, 3, 3, 4, 9, 5],
            "occurred_at": ["2024-02-01"] * 6 + ["2024-02-01", "2099-01-01"],
            "event_type": ["email_open"] * 8,
        }
    )
    outcomes = pd.DataFrame(
        {
            "lead_id": [1, 2, 3, 4, 5],
            "converted_at": ["2024-03-01", None, None, "2023-06-01", None],
        }
    )
    return RawTables(leads, events, outcomes)


def config(policy: str, tmp_path: Path, fmt: str = "csv") -> DataConfig:
    return DataConfig(
        policy=policy, quarantine_dir=tmp_path / "quarantine", quarantine_format=fmt, reference_time="2025-01-01"
    )


def read_quarantine(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)


def test_strict_refuses_listing_every_violation_and_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(ContractError) as caught:
        validate_crm(raw_crm(), config("strict", tmp_path))
    rules = {(v.table, v.column, v.rule) for v in caught.value.violations}
    assert rules == {
        ("leads", "created_at", "wrong_type"),
        ("events", "lead_id", "unknown_lead"),
        ("events", "occurred_at", "future_timestamp"),
        ("outcomes", "converted_at", "converted_before_created"),
    }
    assert "4 problem(s)" in str(caught.value)
    assert not (tmp_path / "quarantine").exists()
    # the CSV line hint only where the source is CSV files
    strict = config("strict", tmp_path)
    parquet = strict.model_copy(update={"source": strict.source.model_copy(update={"kind": "parquet"})})
    for data, hint in ((parquet, False), (strict, True)):  # the default source: CSV files
        with pytest.raises(ContractError) as caught:
            validate_crm(raw_crm(), data)
        assert "(row = position among the rows read, from 0" in str(caught.value)
        assert ("its line is row + 2" in str(caught.value)) is hint


def test_a_contract_error_crosses_a_process_boundary_whole(tmp_path: Path) -> None:
    """Rescore workers (processes, Dask) hand a partition's ContractError back pickled: it must come back
    with its violations and message (unpickling it failed, and a worker's violation became "a process in
    the process pool was terminated abruptly")."""
    with pytest.raises(ContractError) as caught:
        validate_crm(raw_crm(), config("strict", tmp_path))
    copy = pickle.loads(pickle.dumps(caught.value))
    assert type(copy) is ContractError and str(copy) == str(caught.value)
    assert copy.violations == caught.value.violations


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_quarantine_moves_rows_with_reasons_and_cascades(tmp_path: Path, fmt: str) -> None:
    raw = raw_crm()
    data, report = validate_crm(raw, config("quarantine", tmp_path, fmt))

    # lead 3 (bad date) and lead 4 (conversion before creation: the outcome takes its lead along)
    assert sorted(data.leads["lead_id"]) == [1, 2, 5]
    assert sorted(data.outcomes["lead_id"]) == [1, 2, 5]
    assert data.events["lead_id"].tolist() == [1, 1, 2]

    files = {t: tmp_path / "quarantine" / f"{t}.{fmt}" for t in ("leads", "events", "outcomes")}
    assert report.quarantine_files == files
    leads_q = read_quarantine(files["leads"]).set_index("lead_id")
    assert leads_q.loc[3, "_reason"] == "wrong_type:created_at"
    assert leads_q.loc[4, "_reason"] == "outcome_quarantined"
    assert leads_q.loc[3, "created_at"] == "not a date"  # raw value kept for fixing
    events_q = read_quarantine(files["events"])
    reasons = events_q.groupby("_reason")["_row"].apply(sorted).to_dict()
    assert reasons == {
        "lead_quarantined": [3, 4, 5],
        "unknown_lead:lead_id": [6],
        "future_timestamp:occurred_at": [7],
    }
    outcomes_q = read_quarantine(files["outcomes"]).set_index("lead_id")
    assert outcomes_q.loc[4, "_reason"] == "converted_before_created:converted_at"
    assert outcomes_q.loc[3, "_reason"] == "lead_quarantined"

    # nothing silently dropped, counts match the files
    for table, frame in (("leads", raw.leads), ("events", raw.events), ("outcomes", raw.outcomes)):
        quarantined = read_quarantine(files[table])
        assert report.rows_in[table] == len(frame)
        assert report.rows_kept[table] == len(getattr(data, table))
        assert report.rows_quarantined[table] == len(quarantined)
        assert report.rows_kept[table] + report.rows_quarantined[table] == len(frame)
        kept_and_quarantined = len(getattr(data, table)) + len(quarantined)
        assert kept_and_quarantined == len(frame)
    counts = report.counts
    assert counts[("events", "lead_quarantined", "lead_id")] == 3
    assert counts[("leads", "outcome_quarantined", "lead_id")] == 1
    assert counts[("events", "unknown_lead", "lead_id")] == 1
    assert {"table": "events", "rule": "lead_quarantined", "column": "lead_id", "n_rows": 3} in report.as_dict()["counts"]
    summary = report.summary()
    assert "events: 8 in, 3 kept, 5 quarantined" in summary
    # it read "events: lead_quarantined: 3 rows" and "leads: outcome_quarantined: 1 rows"
    assert "events: 3 rows set aside with their quarantined lead (lead_quarantined)" in summary
    assert "leads: 1 row set aside with its quarantined outcome (outcome_quarantined)" in summary


def test_row_with_two_problems_lists_both_reasons(tmp_path: Path) -> None:
    raw = raw_crm()
    raw.events.loc[6, "occurred_at"] = "2099-01-01"  # unknown lead AND future
    _, report = validate_crm(raw, config("quarantine", tmp_path))
    events_q = pd.read_csv(report.quarantine_files["events"]).set_index("_row")
    assert set(events_q.loc[6, "_reason"].split("; ")) == {"unknown_lead:lead_id", "future_timestamp:occurred_at"}


def test_duplicate_leads_quarantine_every_copy_and_their_rows(tmp_path: Path) -> None:
    raw = raw_crm()
    raw.leads.loc[2, "created_at"] = "2024-01-03"
    raw.leads.loc[1, "lead_id"] = 1  # lead 1 twice, lead 2 gone
    raw.events = raw.events[raw.events["lead_id"] != 2].reset_index(drop=True)
    raw.outcomes = raw.outcomes[raw.outcomes["lead_id"] != 2].reset_index(drop=True)
    data, report = validate_crm(raw, config("quarantine", tmp_path))
    assert 1 not in set(data.leads["lead_id"]) and 1 not in set(data.events["lead_id"])
    assert report.counts[("leads", "duplicate_lead_id", "lead_id")] == 2


def test_clean_input_under_quarantine_writes_empty_files_and_keeps_all(tmp_path: Path) -> None:
    raw = raw_crm()
    raw.leads.loc[2, "created_at"] = "2024-01-03"
    raw.events = raw.events.iloc[:6]
    raw.outcomes.loc[3, "converted_at"] = "2024-06-01"
    data, report = validate_crm(raw, config("quarantine", tmp_path))
    assert report.ok and len(data.leads) == 5 and len(data.events) == 6
    assert all(len(pd.read_csv(p)) == 0 for p in report.quarantine_files.values())


def test_quarantine_policy_requires_a_folder() -> None:
    with pytest.raises(ValueError, match="quarantine_dir"):
        DataConfig(policy="quarantine")


def test_rules_scale_vectorised_on_many_rows(tmp_path: Path) -> None:
    n_leads, n_events = 20_000, 200_000
    rng = np.random.default_rng(0)
    leads = pd.DataFrame(
        {"lead_id": np.arange(n_leads), "created_at": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 100, n_leads), "D")}
    )
    events = pd.DataFrame(
        {
            "lead_id": rng.integers(0, n_leads + 10, n_events),  # a few unknown leads
            "occurred_at": pd.Timestamp("2024-05-01") + pd.to_timedelta(rng.integers(0, 10**6, n_events), "s"),
            "event_type": rng.choice(["email_open", "page_view"], n_events),
        }
    )
    outcomes = pd.DataFrame({"lead_id": np.arange(n_leads), "converted_at": pd.NaT})
    data, report = validate_crm(RawTables(leads, events, outcomes), config("quarantine", tmp_path, "parquet"))
    unknown = int((events["lead_id"] >= n_leads).sum())
    assert report.counts[("events", "unknown_lead", "lead_id")] == unknown
    assert len(data.events) == n_events - unknown


def test_a_passthrough_lead_column_stays_with_its_lead_after_quarantine(tmp_path: Path) -> None:
    """Rescoring keeps ``updated_at`` (no attribute) for --changed-since: each kept lead its own value."""
    raw = raw_crm()
    raw.leads["updated_at"] = ["2024-06-01", "2024-06-02", "2024-06-03", "2024-06-04", "2024-06-05"]
    config = DataConfig(policy="quarantine", quarantine_dir=tmp_path, reference_time="2025-01-01",
                        attributes={"ignore": ["updated_at"]})
    crm, _ = validate_crm(raw, config, passthrough=("updated_at",))
    assert "updated_at" not in crm.attributes
    kept = crm.leads.set_index("lead_id")["updated_at"].to_dict()
    assert kept and kept == {i: f"2024-06-0{i}" for i in kept}
    assert "updated_at" not in validate_crm(raw, config)[0].leads.columns


def test_a_quarantine_dir_that_cannot_be_written_is_named_and_nothing_is_half_written(tmp_path: Path) -> None:
    (tmp_path / "quarantine").write_text("a file, not a folder")  # was "[Errno 17] File exists: ..." only
    with pytest.raises(QuarantineWriteError, match=rf"^quarantine_dir {tmp_path / 'quarantine'}: File exists"):
        validate_crm(raw_crm(), config("quarantine", tmp_path))
    (tmp_path / "quarantine").unlink()
    (tmp_path / "quarantine").mkdir()
    (tmp_path / "quarantine" / "events.csv").mkdir()  # the second table's file cannot be replaced
    with pytest.raises(QuarantineWriteError, match=r"^quarantine_dir .*quarantine: events\.csv: Is a directory"):
        validate_crm(raw_crm(), config("quarantine", tmp_path))
    leftovers = sorted(p.name for p in (tmp_path / "quarantine").iterdir())
    assert leftovers == ["events.csv"]  # leads.csv of the failed run is not left behind, nor any temporary file
