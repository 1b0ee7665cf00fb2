"""The pyfunc's categorical columns travel as text (MLflow signatures have no category type): the text is made
once per category, not by a Python call per value (about 30% of re-scoring 556,078 rows in ``models promote`` /
``evaluate``), and is the text of each value, ``None`` where missing, as before."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.serving_fixtures import train_small_champion
from training.pyfunc import SalesReadinessPyfunc, from_signature_frame, to_pyfunc_input


def python_calls(call: Callable[..., Any], *args: Any) -> tuple[Any, int]:
    """``call(*args)``'s result and how many Python functions it called (the profiler's ``call`` events)."""
    count = 0

    def profile(frame, event, arg) -> None:
        nonlocal count
        count += event == "call"

    sys.setprofile(profile)
    try:
        result = call(*args)
    finally:
        sys.setprofile(None)
    return result, count


def per_value_text(series: pd.Series) -> pd.Series:
    """The reference: ``str`` of every value, ``None`` where missing."""
    return series.astype(object).where(series.notna(), None).map(lambda v: v if v is None else str(v))


@pytest.fixture(scope="module")
def champion():
    return train_small_champion()


def test_text_of_the_categoricals_is_that_of_every_value(champion) -> None:
    from training.pyfunc import as_text

    features, model = champion.features, champion.model
    typed = to_pyfunc_input(features)
    for col in model.categories_:
        assert isinstance(features[col].dtype, pd.CategoricalDtype) and features[col].isna().any()
        expected = per_value_text(features[col])
        assert typed[col].dtype == object and typed[col].tolist() == expected.tolist()
        assert {type(v) for v in typed[col]} == {type(v) for v in expected}
    numbers = pd.Series(pd.Categorical([3, None, 1.5, 3]))  # categories that are not text
    assert as_text(numbers).tolist() == per_value_text(numbers).tolist() == ["3.0", None, "1.5", "3.0"]
    mixed = pd.Series(["a", 1, 1.0, True, None, np.nan], dtype=object)  # JSON values: str of each
    assert as_text(mixed).tolist() == ["a", "1", "1.0", "True", None, None]


def test_categorical_text_costs_no_python_call_per_value(champion) -> None:
    """The Python calls of the round trip (to text, back to the training vocabularies) do not grow with the
    rows: 4x the rows, the same calls (there were 2 x 7 more per row: the 7 columns' text both ways)."""
    features, model = champion.features, champion.model

    def rows(copies: int) -> pd.DataFrame:  # a new frame each time (a frame caches the columns it was asked for)
        return pd.concat([features.iloc[:2000]] * copies, ignore_index=True)

    def round_trip(frame: pd.DataFrame) -> pd.DataFrame:
        return from_signature_frame(to_pyfunc_input(frame), model)

    round_trip(rows(3))  # imports and caches
    back_small, calls_small = python_calls(round_trip, rows(2))
    back_large, calls_large = python_calls(round_trip, rows(8))
    assert calls_large == calls_small, (calls_small, calls_large)
    for col in model.categories_:
        assert back_large[col].tolist() == pd.concat([back_small[col]] * 4, ignore_index=True).tolist()


def test_pyfunc_probabilities_are_those_of_the_model(champion) -> None:
    """Through the text round trip, the probabilities of the model on its own frame, bit for bit."""
    features, model = champion.features, champion.model
    pyfunc = SalesReadinessPyfunc()
    pyfunc.model_ = model
    scored = np.asarray(pyfunc.predict(None, to_pyfunc_input(features)), dtype=np.float64)
    assert scored.tobytes() == model.predict_proba(features).astype(np.float64).tobytes()
