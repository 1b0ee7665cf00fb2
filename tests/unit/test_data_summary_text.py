"""The data summary as text (the notebooks print it): every value whole, long ones wrapped."""

from __future__ import annotations

from features.summary import FlatSummary, rows_text

LONG = [f"Column number {i} of the export" for i in range(12)]


def test_long_values_are_wrapped_whole_under_their_label() -> None:
    """The retrain notebook showed the summary as a pandas table, whose cells end in '...' past 50
    characters: X Education's numeric and categorical feature lists were cut after two or three names."""
    summary = FlatSummary(leads=9237, positives=3559, positive_rate=0.3853, features_by_family={"fit": 12},
                          score_columns=[], numeric_features=LONG, categorical_features=["Lead Origin"])
    text = summary.to_text()
    lines = text.splitlines()
    assert lines[0] == "leads:                  9,237"
    assert "existing score columns: none" in lines
    numeric = [i for i, line in enumerate(lines) if line.startswith("numeric features:")]
    assert len(numeric) == 1
    block = [lines[numeric[0]]] + [line for line in lines[numeric[0] + 1:] if line.startswith(" ")][:10]
    assert len(block) > 1 and all(len(line) <= 100 for line in lines)
    assert all(line.startswith(" " * 24) for line in block[1:])  # under the value, not the label
    assert " ".join(line[24:].strip() for line in block) == ", ".join(LONG)  # every name, none cut


def test_rows_text_of_no_rows_is_empty() -> None:
    assert rows_text([]) == ""
