"""Fixtures of the model tests."""

from __future__ import annotations

import pytest

import training.model as model_module


@pytest.fixture
def encoded_rows(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The row count of every frame ``training.model`` encodes into a LightGBM matrix, in call order."""
    encoded: list[int] = []
    encode = model_module.encode_features

    def counting(frame, columns, categories):
        encoded.append(len(frame))
        return encode(frame, columns, categories)

    monkeypatch.setattr(model_module, "encode_features", counting)
    return encoded
