"""Each contract rule: a tiny valid CRM, one defect injected, the violation and its message checked."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.contract import (
    CONVERTED_BEFORE_CREATED,
    DUPLICATE_LEAD_ID,
    DUPLICATE_OUTCOME,
    EMPTY_TABLE,
    FUTURE_TIMESTAMP,
    MISSING_COLUMN,
    NEGATIVE_AMOUNT,
    NULL_VALUE,
    UNKNOWN_LEAD,
    WRONG_TYPE,
    AttributesConfig,
    ContractError,
    DataConfig,
    number_from_text,
    parse_numbers,
    parse_timestamps,
    timestamp_detail,
    validate_crm,
)
from features.readers import RawTables

MAPPING = {
    "leads": {"lead_id": "Id", "created_at": "CreatedDate"},
    "events": {"lead_id": "LeadId", "occurred_at": "When", "event_type": "Type"},
    "outcomes": {"lead_id": "LeadId", "converted_at": "WonDate"},
}
CONFIG = DataConfig(columns=MAPPING, reference_time="2025-01-01", missing_values=["", "Select"])


def raw_crm() -> RawTables:
    """Six valid leads in the company's own column names."""
    leads = pd.DataFrame(
        {
            "Id": [101, 102, 103, 104, 105, 106],
            "CreatedDate": [f"2024-01-0{d} 09:00:00" for d in range(1, 7)],
            "Industry": ["saas", "retail", "Select", "saas", "bank", None],
            "Employees": [10, 250, 40, np.nan, 5, 7],
        }
    )
    events = pd.DataFrame(
        {
            "LeadId": [101, 101, 102, 104, 105, 106],
            "When": ["2024-02-01T10:00:00+01:00", "2024-02-02", "2024-02-03", "2024-02-04", "2024-02-05", "2024-02-06"],
            "Type": ["email_open", "page_view", "form_fill", "webinar", "email_click", "demo_request"],
            "channel": ["email", "web", "web", "web", "email", "web"],
            "value": [1.0, 2.0, 3.0, np.nan, 1.0, 5.0],
        }
    )
    outcomes = pd.DataFrame(
        {
            "LeadId": [101, 102, 103, 104, 105, 106],
            "WonDate": ["2024-03-01", None, None, "2024-03-04", None, None],
            "amount": [1000.0, np.nan, np.nan, 50.0, np.nan, np.nan],
        }
    )
    return RawTables(leads, events, outcomes)


def test_valid_crm_passes_and_is_canonical() -> None:
    data, report = validate_crm(raw_crm(), CONFIG)
    assert report.ok and report.rows_kept == {"leads": 6, "events": 6, "outcomes": 6}
    assert list(data.leads.columns[:2]) == ["lead_id", "created_at"]
    assert list(data.events.columns) == ["lead_id", "occurred_at", "event_type", "channel", "value"]
    assert list(data.outcomes.columns) == ["lead_id", "converted_at", "amount"]
    assert data.leads["lead_id"].dtype == np.int64
    assert data.leads["created_at"].dtype == "datetime64[ns]"
    # tz-aware +01:00 converted to UTC, then made naive
    assert data.events["occurred_at"].iloc[0] == pd.Timestamp("2024-02-01 09:00:00")
    # the naive values after it stay as written (pandas alone would shift them by the +01:00 above)
    assert data.events["occurred_at"].iloc[1:].tolist() == [pd.Timestamp(f"2024-02-0{d}") for d in range(2, 7)]
    assert data.categorical_attributes == ["Industry"] and data.numeric_attributes == ["Employees"]
    assert data.leads["Industry"].isna().sum() == 2  # "Select" and None
    assert data.outcomes["converted_at"].isna().sum() == 4
    assert isinstance(data.events["event_type"].dtype, pd.CategoricalDtype)
    assert data.events["channel"].dtype == object


def test_typed_input_with_category_markers_and_tz_aware_timestamps() -> None:
    raw = raw_crm()
    raw.leads["CreatedDate"] = pd.to_datetime(raw.leads["CreatedDate"]).dt.tz_localize("America/New_York")
    raw.events["Type"] = pd.Categorical(["email_open", "Select", "form_fill", "webinar", "page_view", "webinar"])
    with pytest.raises(ContractError) as caught:
        validate_crm(raw, CONFIG)
    assert [(v.table, v.column, v.rule, v.n_rows) for v in caught.value.violations] == [
        ("events", "event_type", NULL_VALUE, 1)
    ]
    raw.events["Type"] = raw.events["Type"].cat.rename_categories({"Select": "page_view2"})
    data, _ = validate_crm(raw, CONFIG)
    assert data.leads["created_at"].iloc[0] == pd.Timestamp("2024-01-01 14:00:00")  # 09:00 EST = 14:00 UTC


def test_text_timestamps_mixing_offsets_and_naive_values_each_keep_their_own_instant() -> None:
    values = pd.Series(["2024-07-03 10:08:29", "2024-07-03T10:08:29-05:00", "2024-07-04 10:00:00", None,
                        "2024-07-04T10:00:00Z", "2024-07-05", "2024-07-05T01:00+0200", "not a date",
                        "2024-07-06 08:00:00.5+01:00", "2024-07-06 08:00:00",
                        "2024-01-15T10:00:00+02:00[Europe/Paris]", "2024-01-16 10:00:00"])
    parsed, bad = parse_timestamps(values)
    assert parsed.tolist()[:3] == [pd.Timestamp("2024-07-03 10:08:29"), pd.Timestamp("2024-07-03 15:08:29"),
                                   pd.Timestamp("2024-07-04 10:00:00")]
    assert pd.isna(parsed.iloc[3]) and pd.isna(parsed.iloc[7])
    assert parsed.tolist()[4:7] == [pd.Timestamp("2024-07-04 10:00"), pd.Timestamp("2024-07-05"),
                                    pd.Timestamp("2024-07-04 23:00")]
    assert parsed.tolist()[8:10] == [pd.Timestamp("2024-07-06 07:00:00.5"), pd.Timestamp("2024-07-06 08:00")]
    assert parsed.iloc[11] == pd.Timestamp("2024-01-16 10:00")  # not shifted by the zone-named value before it
    assert bad.tolist()[:10] == [False] * 7 + [True] + [False] * 2 and not bad[11]
    # an offset followed by blanks, or with seconds, is still an offset: the naive value after it stays put
    for first in ("2024-07-03T10:08:29-05:00 ", "2024-07-03T10:08:29-05:00\t", "2024-07-03T10:08:29-05:00:00"):
        parsed, _ = parse_timestamps(pd.Series([first, "2024-07-03 12:00:00", "2024-07-04T00:00:00+00:00"]))
        assert parsed.iloc[1] == pd.Timestamp("2024-07-03 12:00:00"), first


def _set(table: str, column: str, row: int, value: object) -> Callable[[RawTables], None]:
    def mutate(raw: RawTables) -> None:
        frame = getattr(raw, table)
        frame[column] = frame[column].astype(object)
        frame.loc[row, column] = value

    return mutate


def _append_copy(table: str, row: int) -> Callable[[RawTables], None]:
    def mutate(raw: RawTables) -> None:
        frame = getattr(raw, table)
        setattr(raw, table, pd.concat([frame, frame.iloc[[row]]], ignore_index=True))

    return mutate


CASES = {
    "unparseable created_at": (_set("leads", "CreatedDate", 2, "yesterday"), "leads", "created_at", WRONG_TYPE, "row=2", "103"),
    "null created_at": (_set("leads", "CreatedDate", 3, None), "leads", "created_at", NULL_VALUE, "row=3", "104"),
    "null lead id": (_set("events", "LeadId", 4, None), "events", "lead_id", NULL_VALUE, "row=4", "lead_id=None"),
    "text lead id": (_set("events", "LeadId", 1, "abc"), "events", "lead_id", WRONG_TYPE, "row=1", "abc"),
    "duplicate lead id": (_append_copy("leads", 0), "leads", "lead_id", DUPLICATE_LEAD_ID, "row=0", "lead_id=101"),
    "unknown lead in events": (_set("events", "LeadId", 3, 999), "events", "lead_id", UNKNOWN_LEAD, "row=3", "999"),
    "unknown lead in outcomes": (_set("outcomes", "LeadId", 5, 777), "outcomes", "lead_id", UNKNOWN_LEAD, "row=5", "777"),
    "duplicate outcome": (_append_copy("outcomes", 0), "outcomes", "lead_id", DUPLICATE_OUTCOME, "row=0", "101"),
    "future event": (_set("events", "When", 4, "2031-05-01"), "events", "occurred_at", FUTURE_TIMESTAMP, "row=4", "105"),
    "future conversion": (_set("outcomes", "WonDate", 1, "2030-01-01"), "outcomes", "converted_at", FUTURE_TIMESTAMP, "row=1", "102"),
    "conversion before creation": (
        _set("outcomes", "WonDate", 4, "2023-12-31"), "outcomes", "converted_at", CONVERTED_BEFORE_CREATED, "row=4", "105"
    ),
    "null event type": (_set("events", "Type", 2, "Select"), "events", "event_type", NULL_VALUE, "row=2", "102"),
    "bad event value": (_set("events", "value", 5, "lots"), "events", "value", WRONG_TYPE, "row=5", "lots"),
    "bad amount": (_set("outcomes", "amount", 0, "1k"), "outcomes", "amount", WRONG_TYPE, "row=0", "1k"),
    "negative amount": (_set("outcomes", "amount", 3, -50.0), "outcomes", "amount", NEGATIVE_AMOUNT, "row=3", "-50.0"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_each_rule_is_reported_with_table_column_rule_count_and_example(name: str) -> None:
    mutate, table, column, rule, row_text, example = CASES[name]
    raw = raw_crm()
    mutate(raw)
    with pytest.raises(ContractError) as caught:
        validate_crm(raw, CONFIG)
    violations = caught.value.violations
    assert [(v.table, v.column, v.rule) for v in violations] == [(table, column, rule)]
    expected_rows = 2 if rule in (DUPLICATE_LEAD_ID, DUPLICATE_OUTCOME) else 1
    assert violations[0].n_rows == expected_rows
    message = str(caught.value)
    assert f"{table}.{column}: {rule}: {expected_rows} row" in message
    assert row_text in message and example in message


def test_a_source_column_named_like_the_canonical_one_it_is_not_mapped_from_is_ambiguous() -> None:
    raw = raw_crm()
    raw.leads["lead_id"] = raw.leads["Id"] + 1000  # "Id" is mapped onto lead_id: which one is the id?
    with pytest.raises(ContractError) as caught:
        validate_crm(raw, CONFIG)
    assert [(v.table, v.column, v.rule) for v in caught.value.violations] == [("leads", "lead_id", "ambiguous_column")]
    assert "source has both 'lead_id' and the column mapped onto it" in str(caught.value)


def test_a_lead_may_convert_again_at_another_instant_but_not_twice_at_the_same_one() -> None:
    raw = raw_crm()
    # lead 101 won 2024-03-01, was handed back to nurturing and won again: two deals, both kept
    raw.events = pd.concat([raw.events, pd.DataFrame({"LeadId": [101], "When": ["2024-03-10"], "Type": ["recycled"]})],
                           ignore_index=True)
    raw.outcomes = pd.concat([raw.outcomes, pd.DataFrame({"LeadId": [101], "WonDate": ["2024-05-02"], "amount": [700.0]})],
                             ignore_index=True)
    data, report = validate_crm(raw, CONFIG)
    assert report.ok
    won = data.outcomes[data.outcomes["lead_id"] == 101]
    assert won["converted_at"].tolist() == [pd.Timestamp("2024-03-01"), pd.Timestamp("2024-05-02")]
    assert won["amount"].tolist() == [1000.0, 700.0]
    # the same second deal written twice is one deal counted twice: both copies refused
    raw.outcomes = pd.concat([raw.outcomes, raw.outcomes.iloc[[-1]]], ignore_index=True)
    with pytest.raises(ContractError) as caught:
        validate_crm(raw, CONFIG)
    [violation] = caught.value.violations
    assert (violation.table, violation.rule, violation.n_rows) == ("outcomes", DUPLICATE_OUTCOME, 2)
    assert "same conversion" in str(caught.value) and "row=6" in str(caught.value)


def test_missing_required_column_names_the_source_column_and_is_fatal_even_in_quarantine(tmp_path) -> None:
    raw = raw_crm()
    raw.events = raw.events.drop(columns=["Type"])
    raw.outcomes = raw.outcomes.drop(columns=["WonDate"])
    config = CONFIG.model_copy(update={"policy": "quarantine", "quarantine_dir": tmp_path / "q"})
    with pytest.raises(ContractError) as caught:
        validate_crm(raw, config)
    found = {(v.table, v.column, v.rule) for v in caught.value.violations}
    assert found == {("events", "event_type", MISSING_COLUMN), ("outcomes", "converted_at", MISSING_COLUMN)}
    assert "'Type' not found" in str(caught.value) and "'WonDate' not found" in str(caught.value)
    assert not (tmp_path / "q").exists()


def test_declared_attribute_or_mapped_optional_column_missing_is_fatal() -> None:
    config = CONFIG.model_copy(
        update={
            "attributes": CONFIG.attributes.model_copy(update={"numeric": ["Revenue"]}),
            "columns": CONFIG.columns.model_copy(update={"events": {**MAPPING["events"], "campaign": "Campaign"}}),
        }
    )
    with pytest.raises(ContractError) as caught:
        validate_crm(raw_crm(), config)
    assert {(v.table, v.column) for v in caught.value.violations} == {("leads", "Revenue"), ("events", "campaign")}


def test_a_misspelt_mapping_or_ignore_entry_is_fatal_even_when_a_column_of_that_name_exists() -> None:
    raw = raw_crm()
    raw.leads["lead_id"] = raw.leads["Id"]  # the loader must not fall back on it
    config = CONFIG.model_copy(update={
        "columns": CONFIG.columns.model_copy(update={"leads": {**MAPPING["leads"], "lead_id": "LeadID"}}),
        "attributes": CONFIG.attributes.model_copy(update={"ignore": ["Industy"]}),
    })
    with pytest.raises(ContractError) as caught:
        validate_crm(raw, config)
    assert {(v.table, v.column, v.rule) for v in caught.value.violations} == {
        ("leads", "lead_id", MISSING_COLUMN), ("leads", "Industy", MISSING_COLUMN)}
    assert "source column 'LeadID' not found" in str(caught.value)
    assert "ignored attribute not found" in str(caught.value)


def test_non_negative_attributes_are_checked_and_their_names_too() -> None:
    raw = raw_crm()
    raw.leads.loc[1, "Employees"] = -5
    config = CONFIG.model_copy(update={"attributes": AttributesConfig(non_negative=["Employees", "Employes"])})
    with pytest.raises(ContractError) as caught:
        validate_crm(raw, config)
    assert {(v.column, v.rule) for v in caught.value.violations} == {("Employes", MISSING_COLUMN)}
    config = CONFIG.model_copy(update={"attributes": AttributesConfig(non_negative=["Employees"])})
    with pytest.raises(ContractError, match=r"leads.Employees: negative_value: 1 row .*row=1, lead_id=102"):
        validate_crm(raw, config)
    with pytest.raises(ValueError, match="are categorical or ignored"):
        AttributesConfig(categorical=["Industry"], non_negative=["Industry"])
    raw.leads["Employees"] = raw.leads["Employees"].astype(object)
    raw.leads.loc[3, "Employees"] = "about 50"  # a listed column is a number column: not inferred categorical
    with pytest.raises(ContractError) as caught:
        validate_crm(raw, config)
    assert {(v.column, v.rule) for v in caught.value.violations} == {("Employees", "negative_value"),
                                                                      ("Employees", WRONG_TYPE)}


def test_an_empty_leads_table_is_refused(tmp_path) -> None:
    from features.contract import SourceConfig
    from features.loading import load_crm

    raw = raw_crm()
    paths = {}
    for table in ("leads", "events", "outcomes"):
        frame = getattr(raw, table)
        paths[table] = str(tmp_path / f"{table}.csv")
        (frame.iloc[:0] if table == "leads" else frame).to_csv(paths[table], index=False)
    config = CONFIG.model_copy(update={"source": SourceConfig(kind="csv", **paths)})
    with pytest.raises(ContractError, match="leads.lead_id: empty_table") as caught:
        load_crm(config)
    assert [v.rule for v in caught.value.violations] == [EMPTY_TABLE]
    load_crm(config, lead_id_range=(0, 10))  # an empty subset is no error (a partition may hold no lead)


def test_string_lead_ids_are_matched_across_tables() -> None:
    raw = raw_crm()
    raw.leads["Id"] = "L" + raw.leads["Id"].astype(str)
    raw.events["LeadId"] = "L" + raw.events["LeadId"].astype(str)
    raw.outcomes["LeadId"] = "L" + raw.outcomes["LeadId"].astype(str)
    raw.events.loc[0, "LeadId"] = "L404"
    with pytest.raises(ContractError) as caught:
        validate_crm(raw, CONFIG)
    assert [(v.table, v.rule, v.n_rows) for v in caught.value.violations] == [("events", UNKNOWN_LEAD, 1)]
    assert "L404" in str(caught.value)


def test_declared_and_inferred_attribute_kinds() -> None:
    raw = raw_crm()
    raw.leads["Employees"] = raw.leads["Employees"].astype(object)
    raw.leads.loc[2, "Employees"] = "Select"  # a marker in a numeric column: still numeric
    raw.leads["Partner"] = [True, False, True, True, False, False]
    raw.leads["Reseller"] = [True, None, False, True, None, True]  # yes/no with blanks: no "nearly numbers" note
    raw.leads["Zip"] = ["01000", "02000", "03000", "04000", "05000", "06000"]
    raw.leads["Email"] = "x@y.z"
    attributes = AttributesConfig(categorical=["Zip"], ignore=["Email"])
    data, report = validate_crm(raw, CONFIG.model_copy(update={"attributes": attributes}))
    assert data.categorical_attributes == ["Industry", "Partner", "Reseller", "Zip"]
    assert data.numeric_attributes == ["Employees"]
    assert data.leads["Zip"].iloc[0] == "01000" and data.leads["Partner"].iloc[0] == "True"
    assert data.leads["Employees"].isna().sum() == 2
    assert "Email" not in data.leads.columns and report.ignored_columns == {"leads": ["Email"]}
    assert report.notes == [] and "ignored columns: Email" in report.summary()
    # one stray text among numbers turns an inferred column into categories: accepted, but noted
    raw.leads["Revenue"] = ["10", "20", "30", "40", "50", "lots"] * 1
    raw.leads = pd.concat([raw.leads] + [raw.leads.assign(Id=raw.leads["Id"] + 10 * k) for k in range(1, 3)],
                          ignore_index=True)
    raw.leads.loc[raw.leads.index[6:], "Revenue"] = "60"
    _, report = validate_crm(raw, CONFIG.model_copy(update={"attributes": attributes}))
    assert len(report.notes) == 1 and report.notes[0].startswith("leads.Revenue: inferred categorical although 94.4%")
    assert "'lots'" in report.notes[0] and "note: leads.Revenue" in report.summary()


def test_declared_numeric_attribute_with_text_is_wrong_type() -> None:
    raw = raw_crm()
    raw.leads["Employees"] = ["10", "many", "3", None, "5", "7"]
    attributes = AttributesConfig(numeric=["Employees"])
    with pytest.raises(ContractError, match=r"leads.Employees: wrong_type: 1 row.*row=1, lead_id=102, value='many'"):
        validate_crm(raw, CONFIG.model_copy(update={"attributes": attributes}))


NUMBER_TEXTS = ["250", " 250 ", "\t250\n", "1e3", "1E3", "+5", "-5", ".5", "5.", "250.0", "00250", "0.1e1", "1.5e+2",
                "1.5E-2", "-0", "1e-400", "9223372036854", "1,000", "1_000", "abc", "", " ", "NaN", "nan",
                "inf", "-inf", "Infinity", "0x10", "1e400", "1.8e308", "true", "True", "250abc", "1 000", "--5",
                "e3", "1e", ".", "+.", "1e+", "1.2.3", "\xa0250", "250\xa0", "\u0662\u0665\u0660", "\uff12\uff15\uff10"]


def _table_reads(texts: list[str]) -> list[float | None]:
    """The texts as the contract reads them in a text column (None: refused as not a finite number)."""
    parsed, bad = parse_numbers(pd.Series(texts, dtype=object))
    return [None if b or np.isnan(v) else float(v) for v, b in zip(parsed.to_numpy(), bad, strict=True)]


def test_number_from_text_reads_what_the_table_path_reads() -> None:
    """The endpoint reads a number sent as text as the contract reads a text column: the same texts
    accepted (blanks around, sign, decimal point, exponent), the same refused ("1,000", "NaN", "inf", ...)."""
    assert [number_from_text(t) for t in NUMBER_TEXTS] == _table_reads(NUMBER_TEXTS)
    assert number_from_text(" 250 ") == 250.0 and number_from_text("1e3") == 1000.0
    assert number_from_text("1,000") is None and number_from_text("NaN") is None and number_from_text("") is None


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet="0123456789+-.eE \t\nx,_i", max_size=8), min_size=1, max_size=50))
def test_number_from_text_accepts_exactly_the_texts_the_table_path_accepts(texts: list[str]) -> None:
    table = _table_reads(texts)
    assert [number_from_text(t) is None for t in texts] == [v is None for v in table]
    for text, value in zip(texts, table, strict=True):
        if value is not None and "e" not in text.lower():  # no exponent, at most 8 digits: the same value
            assert number_from_text(text) == value


def test_timestamp_format_option() -> None:
    raw = raw_crm()
    raw.leads["CreatedDate"] = [f"0{d}-01-2024" for d in range(1, 7)]
    raw.events["When"] = [f"0{d}-02-2024" for d in range(1, 7)]
    raw.outcomes["WonDate"] = ["01-03-2024", None, None, "04-03-2024", None, None]
    data, _ = validate_crm(raw, CONFIG.model_copy(update={"timestamp_format": "%d-%m-%Y"}))
    # day first in every table (month first would read 03-01-2024 as March 3rd)
    assert data.leads["created_at"].tolist() == [pd.Timestamp(f"2024-01-0{d}") for d in range(1, 7)]
    assert data.events["occurred_at"].tolist() == [pd.Timestamp(f"2024-02-0{d}") for d in range(1, 7)]
    assert data.outcomes["converted_at"].dropna().tolist() == [pd.Timestamp("2024-03-01"), pd.Timestamp("2024-03-04")]
    # a format per table: the events written month first, the other tables day first
    raw.events["When"] = [f"02/0{d}/2024" for d in range(1, 7)]
    per_table = {"leads": "%d-%m-%Y", "events": "%m/%d/%Y", "outcomes": "%d-%m-%Y"}
    data, _ = validate_crm(raw, CONFIG.model_copy(update={"timestamp_format": per_table}))
    assert data.leads["created_at"].iloc[2] == pd.Timestamp("2024-01-03")
    assert data.events["occurred_at"].tolist() == [pd.Timestamp(f"2024-02-0{d}") for d in range(1, 7)]


def test_day_first_text_dates_without_a_format_name_the_timestamp_format_that_reads_them() -> None:
    """A European export's ``23/01/2024 08:01`` was "unparseable timestamp" in every row, with no word of the
    ``timestamp_format`` setting that reads it; an ambiguous ``01/02/2024`` names both readings."""
    raw = raw_crm()
    raw.leads["CreatedDate"] = [f"{d}/01/2024 09:00" for d in range(13, 19)]
    with pytest.raises(ContractError, match=r"leads\.created_at: wrong_type: 6 rows \(unparseable timestamp: not ISO "
                                            r"8601; they read with timestamp_format '%d/%m/%Y %H:%M' \(set it, or one "
                                            r"per table\)\)"):
        validate_crm(raw, CONFIG)
    raw.leads["CreatedDate"] = [f"0{d}/01/2024" for d in range(1, 7)]
    with pytest.raises(ContractError, match=r"they read with timestamp_format '%d/%m/%Y' or '%m/%d/%Y'"):
        validate_crm(raw, CONFIG)
    raw.leads.loc[0, "CreatedDate"] = "soon"  # not every value reads with one format: no suggestion
    with pytest.raises(ContractError, match=r"wrong_type: 6 rows \(unparseable timestamp\)"):
        validate_crm(raw, CONFIG)


def test_lost_opportunities_of_one_lead_are_no_duplicates_and_a_second_win_counts_the_lead_once() -> None:
    from features.summary import summarize_crm

    raw = raw_crm()
    extra = pd.DataFrame({"LeadId": [102, 101], "WonDate": [None, "2024-05-02"], "amount": [np.nan, 700.0]})
    raw.outcomes = pd.concat([raw.outcomes, extra], ignore_index=True)  # 102: two rows without a win
    data, report = validate_crm(raw, CONFIG)
    assert report.ok
    summary = summarize_crm(data)
    assert summary.conversions == 2 and summary.conversion_rate == pytest.approx(2 / 6)  # leads 101 and 104
    assert ("converted leads", "2") in summary.as_rows()
    assert summary.median_days_to_close == pytest.approx(np.median([(pd.Timestamp("2024-03-01") - pd.Timestamp(
        "2024-01-01 09:00")).total_seconds(), (pd.Timestamp("2024-03-04") - pd.Timestamp("2024-01-04 09:00"))
        .total_seconds()]) / 86400)  # each lead's first win, not the second one


def test_category_text_writes_whole_floats_as_integers_and_keeps_everything_else() -> None:
    from features.schema import category_text, values_as_text

    floats = pd.Series([75.0, np.nan, 13.0, 1.5, 2.0**60])
    text = values_as_text(floats)
    assert text.dtype == object and text.isna().tolist() == [False, True, False, False, False]
    assert text[[0, 2, 3]].tolist() == ["75", "13", "1.5"]
    assert values_as_text(floats)[4] == str(2.0**60)  # beyond exact integers: as pandas writes it
    assert values_as_text(pd.Series([75.0, None, "a", 3], dtype=object)).tolist() == ["75", None, "a", "3"]
    assert values_as_text(pd.Series(["x", None])).tolist() == ["x", None]
    assert [category_text(v) for v in (75.0, np.float32(2.0), 1.5, 7, "07")] == ["75", "2", "1.5", "7", "07"]
    categorical = values_as_text(pd.Series(pd.Categorical([75.0, None, 1.5])))
    assert categorical[[0, 2]].tolist() == ["75", "1.5"] and pd.isna(categorical[1])


def test_identifier_like_columns_and_event_types_differing_in_case_are_noted_not_refused() -> None:
    n = 60
    leads = pd.DataFrame({"Id": range(1, n + 1), "CreatedDate": "2024-01-01",
                          "Email": [f"person{i}@example.com" for i in range(n)],  # one value per lead
                          "Country": ["DE", "US", "FR"] * (n // 3)})
    events = pd.DataFrame({"LeadId": [1, 2, 3, 4], "When": "2024-02-01",
                           "Type": ["email_open", "Email_Open", "email_open ", "page_view"],
                           "channel": "web", "value": 1.0})
    outcomes = pd.DataFrame({"LeadId": [1], "WonDate": [None], "amount": [np.nan]})
    data, report = validate_crm(RawTables(leads, events, outcomes), CONFIG)
    assert report.ok and "Email" in data.categorical_attributes  # still kept: the note asks the user
    email_note = [n for n in report.notes if n.startswith("leads.Email: inferred categorical with 60 distinct")]
    assert email_note and "attributes.ignore" in email_note[0]
    assert not [n for n in report.notes if n.startswith("leads.Country")]
    assert ("events.event_type: types that differ only in case or spaces are separate types: "
            "'Email_Open' / 'email_open' / 'email_open '") in report.notes
    declared = CONFIG.model_copy(update={"attributes": AttributesConfig(categorical=["Email"])})
    assert not [n for n in validate_crm(RawTables(leads, events, outcomes), declared)[1].notes
                if n.startswith("leads.Email")]


def test_infinite_numbers_are_wrong_type_as_the_endpoint_refuses_them() -> None:
    raw = raw_crm()
    raw.leads["Employees"] = [10, np.inf, 40, np.nan, 5, 7]  # a float column (Parquet, SQL REAL)
    raw.outcomes["amount"] = ["1000", None, None, "Infinity", None, None]  # text, as PostgreSQL's numeric prints
    with pytest.raises(ContractError) as caught:
        validate_crm(raw, CONFIG)
    found = {(v.table, v.column, v.rule, v.n_rows) for v in caught.value.violations}
    assert found == {("leads", "Employees", "wrong_type", 1), ("outcomes", "amount", "wrong_type", 1)}
    assert "not a finite number" in str(caught.value) and "lead_id=102" in str(caught.value)


def test_vocabularies_written_before_whole_floats_became_integers_still_match() -> None:
    from features.schema import vocabulary_codes, vocabulary_key

    legacy = ["1.5", "2.0"]  # a model fitted when a float column's 2.0 was the category "2.0"
    codes = vocabulary_codes(pd.Series([1.5, 2.0, np.nan, "2", "2.0", 2, "x"], dtype=object), legacy)
    np.testing.assert_array_equal(codes, [0, 1, np.nan, 1, 1, 1, np.nan])
    current = ["1.5", "2"]
    np.testing.assert_array_equal(vocabulary_codes(pd.Series(["2.0", 2.0, "2", "02", "x"]), current), [1, 1, 1, 1, np.nan])
    assert [vocabulary_key(v, dict.fromkeys(legacy)) for v in (2, "2", 2.0, "x")] == ["2.0", "2.0", "2.0", None]
    # vocabularies of models fitted when pandas typed CSV values: numbers and booleans as it parsed them
    parsed = ["1000", "2.5", "501", "True"]
    np.testing.assert_array_equal(vocabulary_codes(pd.Series(["1e3", "2.50", "00501", "true", "TRUE"]), parsed),
                                  [0, 1, 2, 3, 3])


def test_boolean_text_reads_as_a_boolean_column_writes_it_value_by_value() -> None:
    from features.schema import values_as_text

    assert values_as_text(pd.Series(["true", "FALSE", "True", None, "maybe"])).tolist() == [
        "True", "False", "True", None, "maybe"]


def test_dates_a_timestamp_cannot_hold_are_wrong_type_named_as_out_of_range_not_a_crash() -> None:
    # a Parquet timestamp[us] column holding 0001-01-01 (.NET's DateTime.MinValue) or 9999-12-31 ("no end"):
    # the cast to nanoseconds raised OutOfBoundsDatetime, and the CLI printed it naming no table, column or row
    raw = raw_crm()
    created = pd.to_datetime(raw.leads["CreatedDate"]).astype("datetime64[us]")
    created.iloc[1] = np.datetime64("0001-01-01", "us")
    created.iloc[4] = np.datetime64("9999-12-31", "us")
    raw.leads["CreatedDate"] = created
    raw.outcomes["WonDate"] = ["2024-03-01", None, None, "9999-12-31", None, None]  # text: 'unparseable' before
    with pytest.raises(ContractError) as caught:
        validate_crm(raw, CONFIG)
    by_column = {v.column: v for v in caught.value.violations}
    leads = by_column["created_at"]
    assert (leads.table, leads.rule, leads.n_rows) == ("leads", WRONG_TYPE, 2)
    assert [e["row"] for e in leads.examples] == [1, 4]
    assert "outside the years 1677..2262" in leads.detail
    outcomes = by_column["converted_at"]
    assert (outcomes.table, outcomes.rule, outcomes.n_rows) == ("outcomes", WRONG_TYPE, 1)
    assert "outside the years 1677..2262" in outcomes.detail and "missing_values" in outcomes.detail
    tz = pd.Series(np.array(["2024-01-01", "9999-12-31"], dtype="datetime64[us]")).dt.tz_localize("UTC")
    parsed, bad = parse_timestamps(tz)
    assert bad.tolist() == [False, True] and parsed.isna().tolist() == [False, True]


def test_only_dates_outside_the_years_a_timestamp_holds_are_named_out_of_range() -> None:
    """Text that Python reads as a date but pandas refuses, inside 1677..2262 (an ISO week date), is
    unparseable: the detail must not call it a date outside the years a timestamp holds, nor quote it
    as the example when a real out-of-range placeholder is among the refused values."""
    week = pd.Series(["2024-01-01", "2024-W01-1"], dtype=object)
    parsed, bad = parse_timestamps(week)
    assert bad.tolist() == [False, True]
    assert timestamp_detail(week, bad) == "unparseable timestamp"
    both = pd.Series(["2024-W01-1", "9999-12-31", "2024-02-01"], dtype=object)
    parsed, bad = parse_timestamps(both)
    assert bad.tolist() == [True, True, False]
    assert "such as '9999-12-31'" in timestamp_detail(both, bad)


def test_a_misspelt_mapped_or_declared_column_names_the_closest_source_column() -> None:
    """Olist's `created_at: first_contact_dat` said "source column 'first_contact_dat' not found"; the closest name
    of the file's header is now given, for mapped, declared and ignored columns alike."""
    from features.contract import ContractError, DataConfig, validate_crm
    from features.readers import RawTables

    leads = pd.DataFrame({"mql_id": ["a"], "first_contact_date": ["2018-01-01"], "origin": ["email"]})
    events = pd.DataFrame({"lead_id": pd.Series(dtype=str), "occurred_at": pd.Series(dtype=str),
                           "event_type": pd.Series(dtype=str)})
    outcomes = pd.DataFrame({"mql_id": ["a"], "won_date": ["2018-02-01"]})
    config = DataConfig.model_validate({
        "source": {"kind": "csv", "leads": "l.csv", "events": "e.csv", "outcomes": "o.csv"},
        "columns": {"leads": {"lead_id": "mql_id", "created_at": "first_contact_dat"},
                    "outcomes": {"lead_id": "mql_id", "converted_at": "won_date"}},
        "attributes": {"categorical": ["orgin"]}})
    with pytest.raises(ContractError) as error:
        validate_crm(RawTables(leads=leads, events=events, outcomes=outcomes), config)
    text = str(error.value)
    assert "source column 'first_contact_dat' not found; did you mean 'first_contact_date'?" in text
    assert "leads.orgin: missing_column: 0 rows (declared attribute not found; did you mean 'origin'?)" in text


def test_a_lead_created_before_1970_is_noted_naming_its_row_and_id() -> None:
    """A placeholder ``created_at`` of 1900 passed without a word, then made the as-of dates start in 1900:
    a training slice of a century of empty snapshots, refused as holding no conversion."""
    raw = raw_crm()
    raw.leads.loc[4, "CreatedDate"] = "1900-01-01"
    data, report = validate_crm(raw, CONFIG)
    assert report.ok and len(data.leads) == 6  # a note: still a valid instant, nothing dropped
    notes = [n for n in report.notes if n.startswith("leads.created_at")]
    assert len(notes) == 1
    assert "1 lead created before 1970" in notes[0] and "row=4, lead_id=105, value='1900-01-01'" in notes[0]
    assert "features.start" in notes[0] and "note: leads.created_at" in report.summary()
    _, clean = validate_crm(raw_crm(), CONFIG)
    assert not [n for n in clean.notes if n.startswith("leads.created_at")]


@pytest.mark.parametrize("column", ["as_of", "converted_within_h", "days_observed", "event"])
def test_an_attribute_named_as_a_training_set_column_is_refused_naming_it(column: str) -> None:
    """A leads column named ``as_of`` or ``converted_within_h`` passed validation, then `features build` and
    `train` ended in pandas' "cannot insert as_of, already exists", naming no table and no way out."""
    raw = raw_crm()
    raw.leads[column] = [1, 0, 1, 0, 1, 0]
    with pytest.raises(ContractError, match=rf"leads\.{column}: reserved_name: .*attributes\.ignore"):
        validate_crm(raw, CONFIG)
    with pytest.raises(ContractError, match=rf"leads\.{column}: reserved_name"):  # no policy can keep it
        validate_crm(raw, CONFIG.model_copy(update={"policy": "quarantine"}))
    data, report = validate_crm(raw, CONFIG.model_copy(update={"attributes": AttributesConfig(ignore=[column])}))
    assert report.ok and column not in data.leads.columns


def test_outcomes_without_any_conversion_are_noted() -> None:
    """An outcomes table whose converted_at is empty in every row (no lead converted, or the column mapped to the
    wrong field) validated without a word; `train` then refused, asking for "more history or more leads"."""
    raw = raw_crm()
    raw.outcomes["WonDate"] = None
    _, report = validate_crm(raw, CONFIG)
    notes = [n for n in report.notes if n.startswith("outcomes.converted_at")]
    assert len(notes) == 1 and "no conversion in its 6 rows" in notes[0] and "'WonDate'" in notes[0]
    raw.outcomes = raw.outcomes.iloc[:0]
    _, report = validate_crm(raw, CONFIG)
    assert [n for n in report.notes if n.startswith("outcomes.converted_at")] == [
        "outcomes.converted_at: no conversion in its 0 rows (source column 'WonDate'): no lead converted, so no "
        "model can be trained; is the outcomes table or its converted_at mapping the right one?"]
    _, clean = validate_crm(raw_crm(), CONFIG)
    assert not [n for n in clean.notes if n.startswith("outcomes.converted_at")]
