"""`leadscore evaluate` on latest rows of one label class says how many rows, of which dates, and what to check."""

from __future__ import annotations

import pandas as pd

from training.workflow import single_class_message


def test_rows_without_a_conversion_are_counted_and_dated() -> None:
    """The message said only 'fewer than two label classes'; it now gives the rows, their dates and the cause."""
    rows = pd.DataFrame({"lead_id": [1, 2, 3], "as_of": pd.to_datetime(["2026-01-01", "2026-02-01", "2026-02-01"]),
                         "label": [0, 0, 0]})
    assert single_class_message(rows) == (
        "the latest evaluation rows (3 as of 2026-01-01 to 2026-02-01) hold one label class: none converted; AUC and "
        "the other metrics need both. Check the outcomes table and its converted_at mapping (`leadscore validate` "
        "notes an outcomes table without conversions), or evaluate once the data holds both")
    every = single_class_message(rows.assign(label=1).iloc[1:])
    assert every.startswith("the latest evaluation rows (2 as of 2026-02-01) hold one label class: every one converted")
    flat = single_class_message(pd.DataFrame({"lead_id": ["a", "b"], "label": [1, 1]}))
    assert flat.startswith("the latest evaluation rows (2) hold one label class: every one converted")
    assert "empty" in single_class_message(rows.iloc[:0])
