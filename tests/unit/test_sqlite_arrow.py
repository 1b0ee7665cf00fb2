"""The DATETIME texts the columnar SQLite reader parses itself, and those it leaves to SQLAlchemy's processor."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pyarrow as pa
import pytest

from features.sqlite_arrow import _datetimes


def test_sqlalchemy_datetime_texts_parse_to_the_processors_instants() -> None:
    texts = ["2024-01-31 23:59:59.999999", None, "1999-12-31 00:00:00.000001", "2024-02-29 12:30:05.250000"]
    parsed = _datetimes(pa.array(texts))
    assert parsed is not None and parsed.dtype == "datetime64[ns]"
    expected = [np.datetime64(datetime.fromisoformat(t), "ns") if t else np.datetime64("NaT") for t in texts]
    np.testing.assert_array_equal(parsed, np.array(expected, dtype="datetime64[ns]"))
    assert _datetimes(pa.array([None, None], type=pa.string())) is not None


@pytest.mark.parametrize("text", [
    "2024-03-01T10:00:00.000000",  # another separator
    "2024-03-01 10:00:00",  # no fraction
    "2024-13-01 10:00:00.000000",  # month 13
    "2023-02-29 10:00:00.000000",  # not a leap year
    "2024-03-01 24:00:00.000000",  # hour 24
    "2024-03-01 23:59:60.000000",  # leap second: fromisoformat refuses it
    "1600-03-01 10:00:00.000000",  # outside datetime64[ns]
    "2024-03-01 10:00:00.00000x",
])
def test_other_texts_are_left_to_the_processor(text: str) -> None:
    assert _datetimes(pa.array(["2024-03-01 10:00:00.000000", text, None])) is None
