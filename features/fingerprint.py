"""What data a training set was built from: per table its rows, time range and a content hash.

The hash is of the table as the data contract read it (canonical columns, typed), and does not depend on
the order of its rows or columns: each row is hashed (its columns taken by name) and the row hashes are
summed modulo 2**64, so the same rows in another order, or another column order of the export, give the
same hash, and a changed, added or removed row changes it. Pure functions over frames.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd

from features.schema import CONVERTED_AT, CREATED_AT, OCCURRED_AT, CRMData, FlatData

# the instant column of each table whose range is recorded
HASH_ROWS = 200_000  # rows hashed at a time
TIME_COLUMNS = {"leads": CREATED_AT, "events": OCCURRED_AT, "outcomes": CONVERTED_AT, "flat": CREATED_AT}


def content_hash(frame: pd.DataFrame) -> str:
    """First 16 hex digits of a SHA-256 over the column names and the sum of the row hashes: the same for
    the same rows in any row or column order."""
    columns = sorted(map(str, frame.columns))
    if len(set(columns)) != len(columns):
        raise ValueError(f"content_hash: duplicate column names in {columns}")
    by_name = np.argsort(np.array([str(c) for c in frame.columns], dtype=object), kind="stable")
    total = 0
    for first in range(0, len(frame), HASH_ROWS):  # a block at a time: no copy of the table, bounded memory
        block = frame.iloc[first : first + HASH_ROWS].iloc[:, by_name]  # rows first: only the block is copied
        rows = pd.util.hash_pandas_object(block, index=False).to_numpy(dtype=np.uint64)
        total = (total + int(rows.sum(dtype=np.uint64))) % 2**64  # a multiset hash of the rows
    digest = hashlib.sha256(json.dumps(columns).encode())
    digest.update(total.to_bytes(8, "little"))
    digest.update(len(frame).to_bytes(8, "little"))
    return digest.hexdigest()[:16]


def table_fingerprint(frame: pd.DataFrame, time_column: str | None = None) -> dict[str, str]:
    """``rows``, ``columns``, ``hash`` (:func:`content_hash`) and, when ``time_column`` holds any value,
    its first and last instant (``<column>_min`` / ``<column>_max``, ISO 8601)."""
    out = {"rows": str(len(frame)), "columns": str(frame.shape[1]), "hash": content_hash(frame)}
    if time_column is not None and time_column in frame.columns:
        stamps = pd.to_datetime(frame[time_column], utc=True).dropna()
        if len(stamps):
            out[f"{time_column}_min"] = stamps.min().isoformat()
            out[f"{time_column}_max"] = stamps.max().isoformat()
    return out


def data_fingerprint(data: CRMData | FlatData) -> dict[str, str]:
    """``{"<table>.<field>": value}`` for the tables of validated data (``leads``, ``events``, ``outcomes``,
    or ``flat``), plus ``hash``: one hash over the tables' hashes."""
    tables = {"flat": data.frame} if isinstance(data, FlatData) else {
        "leads": data.leads, "events": data.events, "outcomes": data.outcomes}
    out: dict[str, str] = {}
    for name, frame in tables.items():
        out.update({f"{name}.{key}": value for key, value in table_fingerprint(frame, TIME_COLUMNS[name]).items()})
    combined = hashlib.sha256(json.dumps({name: out[f"{name}.hash"] for name in tables}, sort_keys=True).encode())
    out["hash"] = combined.hexdigest()[:16]
    return out


__all__ = ["TIME_COLUMNS", "content_hash", "data_fingerprint", "table_fingerprint"]
