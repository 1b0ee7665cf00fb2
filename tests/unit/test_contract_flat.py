"""Flat mode on tiny frames: roles, markers, labels, families, score columns, each rule's message."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.contract import ContractError, FlatConfig
from features.flat import load_flat, validate_flat


def raw_flat() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "Lead": ["a1", "a2", "a3", "a4", "a5"],
            "Won": ["yes", "no", "no", "yes", "no"],
            "Signup": ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05"],
            "Visits": [3, 0, np.nan, 7, 1],
            "Industry": ["saas", "Select", "bank", "saas", None],
            "Minutes": ["12", "Select", "3.5", "0", "8"],
            "LastStep": ["email", "call", "email", "call", "web"],
            "Note": ["x", "y", "z", "w", "v"],
            "OldScore": [10, 50, np.nan, 80, 20],
        }
    )


def flat_config(**overrides) -> FlatConfig:
    base = dict(
        source={"path": "unused.csv"}, id_column="Lead", label_column="Won", positive_label="yes",
        negative_label="no", timestamp_column="Signup", ignore=["Note"], score_columns=["OldScore"],
        families={"engagement": ["Visits", "Minutes"]}, missing_values=["", "Select"],
        reference_time="2025-01-01",
    )
    return FlatConfig(**{**base, **overrides})


def test_flat_roles_markers_families_and_scores() -> None:
    data, report = validate_flat(raw_flat(), flat_config(masked_values={"LastStep": ["call"]}))
    frame = data.frame
    assert list(frame.columns[:3]) == ["lead_id", "label", "created_at"]
    assert frame["label"].tolist() == [1, 0, 0, 1, 0] and frame["label"].dtype == np.int64
    assert data.categorical_features == ["Industry", "LastStep"]
    assert data.numeric_features == ["Visits", "Minutes"]
    assert frame["Minutes"].tolist()[:3] == [12.0, pytest.approx(np.nan, nan_ok=True), 3.5]
    assert frame["Industry"].isna().tolist() == [False, True, False, False, True]
    assert frame["LastStep"].isna().sum() == 2  # masked post-outcome values
    assert data.families == {"Industry": "fit", "LastStep": "fit", "Visits": "engagement", "Minutes": "engagement"}
    assert data.score_columns == ["OldScore"] and "OldScore" in frame and "OldScore" not in data.features
    assert "Note" not in frame and report.ignored_columns == {"flat": ["Note"]}


def test_flat_default_binary_label_and_no_timestamp() -> None:
    raw = raw_flat().assign(Won=[1, 0, 0, 1, 0])
    data, _ = validate_flat(raw, flat_config(positive_label=1, negative_label=0, timestamp_column=None,
                                             ignore=["Note", "Signup"]))
    assert data.frame["label"].sum() == 2 and "created_at" not in data.frame


@pytest.mark.parametrize(
    ("column", "row", "value", "expected"),
    [
        ("Won", 2, "maybe", "flat.Won: non_binary_label: 1 row"),
        ("Won", 3, None, "flat.Won: null_value: 1 row"),
        ("Lead", 4, "a1", "flat.Lead: duplicate_lead_id: 2 rows"),
        ("Lead", 1, None, "flat.Lead: null_value: 1 row"),
        ("Signup", 0, "2030-01-01", "flat.Signup: future_timestamp: 1 row"),
        ("Signup", 1, "soon", "flat.Signup: wrong_type: 1 row"),
        ("OldScore", 3, "high", "flat.OldScore: wrong_type: 1 row"),
    ],
)
def test_flat_rules_are_named_with_examples(column: str, row: int, value: object, expected: str) -> None:
    raw = raw_flat()
    raw[column] = raw[column].astype(object)
    raw.loc[row, column] = value
    with pytest.raises(ContractError) as caught:
        validate_flat(raw, flat_config())
    message = str(caught.value)
    assert len(caught.value.violations) == 1 and expected in message
    assert f"row={row}" in message


def test_flat_declared_numeric_with_text_and_missing_declared_column() -> None:
    raw = raw_flat()
    raw.loc[0, "Visits"] = np.nan
    raw["Visits"] = raw["Visits"].astype(object)
    raw.loc[2, "Visits"] = "lots"
    with pytest.raises(ContractError, match=r"flat.Visits: wrong_type: 1 row.*row=2, Lead=a3, value='lots'"):
        validate_flat(raw, flat_config(numeric=["Visits"]))
    with pytest.raises(ContractError) as caught:
        validate_flat(raw_flat().drop(columns=["OldScore", "Note"]), flat_config())
    assert {(v.column, v.rule) for v in caught.value.violations} == {
        ("OldScore", "missing_column"), ("Note", "missing_column")
    }


def test_flat_quarantine_keeps_the_rest(tmp_path: Path) -> None:
    raw = raw_flat()
    raw.loc[2, "Won"] = "maybe"
    raw.loc[4, "Lead"] = "a1"
    data, report = validate_flat(raw, flat_config(policy="quarantine", quarantine_dir=tmp_path))
    assert data.frame["lead_id"].tolist() == ["a2", "a4"]
    quarantined = pd.read_csv(report.quarantine_files["flat"])
    assert quarantined["_row"].tolist() == [0, 2, 4]
    assert quarantined["_reason"].tolist() == [
        "duplicate_lead_id:Lead", "non_binary_label:Won", "duplicate_lead_id:Lead"
    ]
    assert report.rows_kept["flat"] + report.rows_quarantined["flat"] == len(raw)


@pytest.mark.parametrize(("written", "positive", "negative"), [
    (["1.0", "0.0", "0", "1", " 0.00"], 1, 0),  # a CSV column pandas once wrote as floats; CSV values are text
    (["true", "FALSE", "False", "True", "false"], True, False),  # booleans as any case, as a boolean column reads
])
def test_flat_labels_written_as_numbers_with_decimals_or_booleans_of_any_case_match(
        written: list[str], positive: object, negative: object) -> None:
    raw = raw_flat().assign(Won=written)
    data, _ = validate_flat(raw, flat_config(positive_label=positive, negative_label=negative))
    assert data.frame["label"].tolist() == [1, 0, 0, 1, 0]
    with pytest.raises(ContractError, match=r"flat\.Won: non_binary_label: 1 row.*value='2\.0'"):
        validate_flat(raw.assign(Won=[*written[:4], "2.0"]), flat_config(positive_label=positive,
                                                                          negative_label=negative))


def test_a_flat_table_without_rows_is_refused_as_an_empty_leads_table_is(tmp_path: Path) -> None:
    path = tmp_path / "flat.csv"
    raw_flat().iloc[:0].to_csv(path, index=False)  # the header only: validate said ok, 0 rows
    config = flat_config(source={"kind": "csv", "path": str(path)})
    with pytest.raises(ContractError, match=r"flat\.Lead: empty_table: 0 rows \(the flat table has no rows\)"):
        load_flat(config)


def test_flat_number_column_with_a_stray_text_value_is_noted(tmp_path: Path) -> None:
    """A typo in one row of a flat export's number column makes the whole column categorical: the report says
    so and names the key to declare it under (as the CRM mode's ``attributes.numeric`` note does)."""
    n = 60
    raw = pd.DataFrame({
        "Lead": [f"a{i}" for i in range(n)], "Won": ["yes", "no"] * (n // 2),
        "Visits": [str(i) for i in range(n - 1)] + ["abc"],
        "Email": [f"p{i}@example.com" for i in range(n - 1)] + [None],
    })
    config = flat_config(timestamp_column=None, ignore=[], score_columns=[], families={})
    data, report = validate_flat(raw, config)
    assert "Visits" in data.categorical_features
    notes = [n for n in report.notes if n.startswith("flat.Visits:")]
    assert len(notes) == 1 and "98.3%" in notes[0] and "'abc'" in notes[0] and "under numeric" in notes[0]
    assert "attributes.numeric" not in notes[0]
    email = [n for n in report.notes if n.startswith("flat.Email:")]
    assert len(email) == 1 and "under ignore, or under categorical" in email[0] and "attributes." not in email[0]
    data, report = validate_flat(raw, flat_config(timestamp_column=None, ignore=[], score_columns=[], families={},
                                                  numeric=["Visits"], policy="quarantine",
                                                  quarantine_dir=str(tmp_path)))
    assert not [n for n in report.notes if n.startswith("flat.Visits:")]
    assert "Visits" in data.numeric_features and len(data.frame) == n - 1  # 'abc' quarantined as wrong_type


def test_a_misspelt_column_name_is_refused_with_the_closest_header_name() -> None:
    """`id_column: Prospect Id` against X Education's `Prospect ID` said "declared column not found" and left the
    user to compare 37 header names by eye."""
    with pytest.raises(ContractError) as error:
        validate_flat(raw_flat(), flat_config(id_column="lead", ignore=["Nte"], score_columns=["Old Score"]))
    text = str(error.value)
    assert "flat.lead: missing_column: 0 rows (declared column not found; did you mean 'Lead'?)" in text
    assert "flat.Nte: missing_column: 0 rows (declared column not found; did you mean 'Note'?)" in text
    assert "(declared column not found; did you mean 'OldScore'?)" in text
    with pytest.raises(ContractError) as error:
        validate_flat(raw_flat(), flat_config(ignore=["Zzzzzz"]))
    assert "flat.Zzzzzz: missing_column: 0 rows (declared column not found)" in str(error.value)


def test_the_flat_summary_lists_the_numeric_and_categorical_features() -> None:
    """`leadscore validate` on X Education printed only "features by family: engagement: 5, fit: 20": which
    columns were read as numbers (a stray text value makes one categorical) could not be seen."""
    from features.summary import summarize_flat

    data, _ = validate_flat(raw_flat(), flat_config())
    rows = dict(summarize_flat(data).as_rows())
    assert rows["numeric features"] == "Visits, Minutes"
    assert rows["categorical features"] == "Industry, LastStep"


@pytest.mark.parametrize("column", ["as_of", "converted_within_h", "label", "lead_id"])
def test_a_feature_column_named_as_a_training_set_column_is_refused(column: str) -> None:
    """A flat export with an ``as_of`` column validated and trained, then `leadscore train` ended in a traceback
    (pandas' "Categorical is not ordered for operation min") while naming the evaluation rows."""
    raw = raw_flat().assign(**{column: ["x", "y", "x", "y", "x"]})
    with pytest.raises(ContractError, match=rf"flat\.{column}: reserved_name: .*ignore"):
        validate_flat(raw, flat_config())
    data, report = validate_flat(raw, flat_config(ignore=["Note", column]))
    assert report.ok and column not in data.features


def test_a_yes_no_label_read_with_the_default_labels_names_the_settings_to_use() -> None:
    """A Yes/No label column read with the default 1 / 0 refused every row as non_binary_label and said only what
    it expected: the error now names positive_label and negative_label with the column's two values."""
    raw = raw_flat().assign(Won=["Yes", "No", "No", "Yes", "No"])
    with pytest.raises(ContractError) as caught:
        validate_flat(raw, flat_config(positive_label=1, negative_label=0))
    assert ("flat.Won: non_binary_label: 5 rows" in str(caught.value)
            and "the column holds 'No' and 'Yes': set positive_label: 'Yes' and negative_label: 'No'" in str(caught.value))
    with pytest.raises(ContractError) as caught:  # two values, neither reads as the positive one
        validate_flat(raw.assign(Won=["hot", "cold", "cold", "hot", "cold"]), flat_config(positive_label=1,
                                                                                           negative_label=0))
    assert "the column holds 'cold' and 'hot': set positive_label and negative_label to them" in str(caught.value)
    with pytest.raises(ContractError) as caught:  # a stray third value: no pair to name
        validate_flat(raw.assign(Won=["yes", "no", "no", "yes", "maybe"]), flat_config())
    assert "set positive_label" not in str(caught.value)
