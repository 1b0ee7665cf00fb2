"""Text with a decimal exponent too large for pandas' parser (a C int): read as no number, never a crash.

pandas 2.3's ``to_numeric`` kills the process on ``"1e2147483648"`` and reads ``"1e4294967296"`` as 1.0. Hex ids
such as Olist's ``mql_id`` ``401013266745e5661589292315434968`` are exactly that text, so ``leadscore rescore -c
configs/olist.yaml`` ended in a segmentation fault. Each case runs in a child process: a crash fails the test
instead of ending the test session.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd

from features.contract import number_from_text, parse_numbers

OLIST_LIKE_ID = "401013266745e5661589292315434968"


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).resolve().parents[2])


def test_parse_numbers_refuses_an_overflowing_exponent_without_crashing():
    done = _run(f"""
        import pandas as pd
        from features.contract import parse_numbers
        parsed, bad = parse_numbers(pd.Series(["5", "{OLIST_LIKE_ID}", "1e2147483648", None], dtype=object))
        print(bad.tolist(), parsed.tolist()[0])
    """)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["[False,", "True,", "True,", "False]", "5.0"]


def test_a_wrapped_exponent_is_no_number():
    parsed, bad = parse_numbers(pd.Series(["1e4294967296", "1e0000000003", "2.5e-3"], dtype=object))
    assert bad.tolist() == [True, False, False]
    assert parsed.tolist()[1:] == [1000.0, 0.0025]
    assert number_from_text("1e4294967296") is None
    assert number_from_text("1e-4294967296") is None  # the endpoint reads text as the table does
    assert number_from_text("1e0000000003") == 1000.0


def test_rescore_lead_ids_of_hex_text_are_refused_by_name(tmp_path):
    leads = tmp_path / "leads.csv"
    leads.write_text(f"mql_id,first_contact_date\n0a1b,01-02-2018\n{OLIST_LIKE_ID},02-02-2018\n")
    outcomes = tmp_path / "outcomes.csv"
    outcomes.write_text(f"mql_id,won_date\n{OLIST_LIKE_ID},03-02-2018 10:00\n")
    done = _run(f"""
        from features.contract import DataConfig
        from features.readers import read_lead_ids
        config = DataConfig.model_validate({{
            "mode": "crm",
            "source": {{"kind": "csv", "leads": {str(leads)!r}, "events": None,
                        "outcomes": {str(outcomes)!r}}},
            "columns": {{"leads": {{"lead_id": "mql_id", "created_at": "first_contact_date"}},
                         "outcomes": {{"lead_id": "mql_id", "converted_at": "won_date"}}}},
        }})
        try:
            read_lead_ids(config)
        except ValueError as error:
            print(error)
    """)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "table 'leads', column 'mql_id'" in done.stdout
    assert "ids are text" in done.stdout
    assert OLIST_LIKE_ID in done.stdout
    assert "map an integer key column as the lead id (columns.leads.lead_id)" in done.stdout  # the way out
