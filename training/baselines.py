"""Baselines run next to the model on the same test rows: the hand-tuned points scorer marketing
teams write, an existing score column, and a logistic regression.

Points scorer (rules in YAML; the packaged default is ``training/default_points_rules.yaml``):

- ``fit``: explicit points on attribute columns (``in`` / ``not_in`` / ``eq`` / ``gt`` / ``ge`` /
  ``lt`` / ``le`` / ``missing`` conditions), read from the feature frame (or the leads table);
- ``columns``: points per unit of a numeric column, capped (flat exports with aggregated
  engagement, or the feature frame's windowed counts);
- ``behaviour``: points per event type, RECOMPUTED FROM THE EVENTS table for each snapshot
  (only events strictly before ``as_of``), each event's points halving every ``half_life_days``.
  This is exact point-in-time and independent of how the feature pipeline names its columns.

A lead is an MQL when its points reach ``mql_threshold``. Every training run scores one: the
rules named by ``TrainingConfig.points_rules`` (or passed in), else the packaged default, whose
``missing_columns: skip`` drops rules on attributes the data lacks (listed in the run's notes).
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy import sparse
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.utils import check_array

from features.contract import config_error_text, yaml_error_text
from features.schema import ENGAGEMENT_EVENT_TYPES, EVENT_TYPE, LEAD_ID, OCCURRED_AT, RECYCLED, to_numbers
from training.model import is_categorical, take_rows

MISSING = "(missing)"


class FitRule(BaseModel):
    """Explicit points when a column meets one condition."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    column: str
    points: float
    in_: list[Any] | None = Field(None, alias="in")
    not_in: list[Any] | None = None
    eq: Any = None
    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    missing: bool | None = None

    @model_validator(mode="after")
    def _one_condition(self) -> FitRule:
        conditions = [self.in_, self.not_in, self.eq, self.gt, self.ge, self.lt, self.le, self.missing]
        if sum(c is not None for c in conditions) != 1:
            raise ValueError(f"points rule on {self.column!r} needs exactly one condition")
        return self

    def matches(self, s: pd.Series) -> np.ndarray:
        """Boolean mask of rows meeting the condition (missing values never match except ``missing``)."""
        if self.missing is not None:
            return (s.isna() == self.missing).to_numpy()
        if self.in_ is not None or self.not_in is not None or self.eq is not None:
            values = s.astype(object)
            if self.in_ is not None:
                mask = values.isin(self.in_)
            elif self.not_in is not None:
                mask = ~values.isin(self.not_in) & s.notna()
            else:
                mask = values == self.eq
            return mask.to_numpy(dtype=bool)
        x = to_numbers(s, errors="coerce").to_numpy(dtype=float)
        bound, op = next((v, o) for v, o in ((self.gt, np.greater), (self.ge, np.greater_equal),
                                             (self.lt, np.less), (self.le, np.less_equal)) if v is not None)
        with np.errstate(invalid="ignore"):
            return op(x, bound) & ~np.isnan(x)


def fit_rule_condition(rule: FitRule) -> tuple[str, Any]:
    """The rule's one condition as its YAML key and value (``in`` for ``in_``)."""
    for key in ("in_", "not_in", "eq", "gt", "ge", "lt", "le", "missing"):
        if (value := getattr(rule, key)) is not None:
            return key.rstrip("_"), value
    raise ValueError(f"points rule on {rule.column!r} has no condition")


def unmatched_fit_rules(rules: PointsRules, frame: pd.DataFrame) -> list[str]:
    """The fit rules on a column of ``frame`` that match none of its rows, each with why when it shows: a
    number comparison on a text column, or a value close to one the column holds (a typo)."""
    out = []
    for i, rule in enumerate(rules.fit):
        if rule.column not in frame.columns or not len(frame) or rule.matches(frame[rule.column]).any():
            continue
        key, value = fit_rule_condition(rule)
        text = f"fit[{i}] {rule.column} {key} {value!r}" if not isinstance(value, float) else (
            f"fit[{i}] {rule.column} {key} {value:g}")
        values = frame[rule.column]
        if key in ("gt", "ge", "lt", "le") and is_categorical(values):
            text += f" ({rule.column} holds text; gt, ge, lt and le compare numbers)"
        elif key in ("in", "not_in", "eq"):
            held = [str(v) for v in values.dropna().unique()[:10_000]]
            wanted = value if isinstance(value, list) else [value]
            close = [m for v in wanted for m in difflib.get_close_matches(str(v), held, 1, 0.75)]
            if close:
                text += f" (did you mean {', '.join(repr(c) for c in close)}?)"
        out.append(text)
    return out


class ColumnRule(BaseModel):
    """Points per unit of a numeric column (missing = 0), capped."""

    model_config = ConfigDict(extra="forbid")

    column: str
    per_unit: float
    cap: float | None = None


class PointsRules(BaseModel):
    """A hand-tuned lead-scoring rule set."""

    model_config = ConfigDict(extra="forbid")

    name: str = "points"
    mql_threshold: float = 50
    half_life_days: float | None = Field(30, gt=0, description="behaviour points halve every N days")
    fit: list[FitRule] = Field(default_factory=list)
    columns: list[ColumnRule] = Field(default_factory=list)
    behaviour: dict[str, float] = Field(default_factory=dict)
    missing_columns: Literal["error", "skip"] = Field(
        "error", description="a rule on a column the data lacks: fail (error) or drop the rule (skip)"
    )

    @property
    def needed_columns(self) -> list[str]:
        return sorted({r.column for r in self.fit} | {r.column for r in self.columns})

    @property
    def is_empty(self) -> bool:
        return not (self.fit or self.columns or self.behaviour)

    def applicable_to(self, columns: Any, has_events: bool) -> tuple[PointsRules, list[str]]:
        """These rules restricted to what the data has (``missing_columns: skip``), and what was dropped.

        With ``missing_columns: error`` the rules come back unchanged (scoring then names the
        missing columns). Behaviour points are dropped when there is no events table.
        """
        if self.missing_columns == "error":
            return self, []
        present = set(columns)
        absent = sorted(set(self.needed_columns) - present)
        dropped = [f"attribute column(s) {absent} absent"] if absent else []
        behaviour = self.behaviour
        if behaviour and not has_events:
            dropped.append("behaviour points (no events table)")
            behaviour = {}
        kept = self.model_copy(update={
            "fit": [r for r in self.fit if r.column in present],
            "columns": [r for r in self.columns if r.column in present],
            "behaviour": behaviour,
        })
        return kept, dropped


def unknown_behaviour_types(rules: PointsRules, events: pd.DataFrame | None) -> list[str]:
    """Behaviour types of the rules that no event has and that are no conventional type (typos, most likely)."""
    if not rules.behaviour or events is None:
        return []
    present = event_type_names(events[EVENT_TYPE]) if len(events) else set()
    return sorted(set(rules.behaviour) - present - {*ENGAGEMENT_EVENT_TYPES, RECYCLED})


def event_type_names(types: pd.Series) -> set[str]:
    """The event types that occur, as text (``astype(str)``: a missing type is ``"nan"``); for a category
    column, from its codes (a text per event took over 100 bytes an event)."""
    if not isinstance(types.dtype, pd.CategoricalDtype):
        return set(types.astype(str).unique())
    seen = np.zeros(len(types.cat.categories) + 1, dtype=bool)
    seen[types.cat.codes.to_numpy()] = True  # code -1 (missing) marks the last
    return {name for name, hit in zip([*types.cat.categories.astype(str), str(np.nan)], seen, strict=True) if hit}


DEFAULT_POINTS_RULES = "default_points_rules.yaml"


def parse_points_rules(text: str, source: str) -> PointsRules:
    """Rules from YAML text; ``source`` names the file in errors."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"points rules file {source}: not valid YAML: {yaml_error_text(exc)}") from exc
    if data is None:
        raise ValueError(f"points rules file {source} is empty")
    if not isinstance(data, dict):
        raise ValueError(f"points rules file {source} must hold a mapping")
    try:
        return PointsRules.model_validate(data)
    except ValueError as exc:
        raise ValueError(f"points rules file {source}: {config_error_text('', exc)}") from exc


def load_points_rules(path: str | Path) -> PointsRules:
    """Read a rules YAML file (call at the edge, once)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"points rules file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"points rules file {path}: not UTF-8 text ({exc.reason} at byte {exc.start}); "
                         "save it as UTF-8") from exc
    return parse_points_rules(text, str(path))


def default_points_rules() -> PointsRules:
    """The packaged default rules (``training/default_points_rules.yaml``; works from an installed wheel)."""
    resource = resources.files("training").joinpath(DEFAULT_POINTS_RULES)
    return parse_points_rules(resource.read_text(encoding="utf-8"), f"training/{DEFAULT_POINTS_RULES} (packaged)")


def points_rules_identity(rules: PointsRules) -> dict[str, str]:
    """``name`` and ``hash`` (first 16 hex digits of a SHA-256 of every field, the name too) of a rule set:
    the same rules read from two paths have the same hash, and a changed rule changes it."""
    text = json.dumps(rules.model_dump(mode="json"), sort_keys=True)
    return {"name": rules.name, "hash": hashlib.sha256(text.encode()).hexdigest()[:16]}


def resolve_points_rules(path: str | Path | None) -> PointsRules:
    """The rules a run compares with: the file at ``path``, else the packaged default."""
    return default_points_rules() if path is None else load_points_rules(path)


def explicit_points(frame: pd.DataFrame, rules: PointsRules) -> np.ndarray:
    """Fit + column points per row of ``frame``."""
    missing = [c for c in rules.needed_columns if c not in frame.columns]
    if missing:
        raise KeyError(f"points rules {rules.name!r} need column(s) {missing} absent from the frame")
    total = np.zeros(len(frame), dtype=float)
    for rule in rules.fit:
        total += rule.points * rule.matches(frame[rule.column])
    for rule in rules.columns:
        x = to_numbers(frame[rule.column], errors="coerce").fillna(0.0).to_numpy(dtype=float) * rule.per_unit
        if rule.cap is not None:
            x = np.minimum(x, rule.cap) if rule.per_unit >= 0 else np.maximum(x, -rule.cap)
        total += x
    return total


def event_points(types: pd.Series, behaviour: Mapping[str, float]) -> np.ndarray:
    """Points of each event's type read as text (``astype(str)``: a missing type is ``"nan"``), NaN for a type
    the rules do not score; looked up once per distinct type, without a text copy of the column."""
    codes, per_type = _type_codes(types, behaviour)
    return per_type[codes]


def _type_codes(types: pd.Series, behaviour: Mapping[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """A code per event and the points per code (NaN: not scored); code -1 (a missing category) takes the
    last entry, the points of ``"nan"``."""
    if isinstance(types.dtype, pd.CategoricalDtype):
        codes = types.cat.codes.to_numpy()
        names = pd.Series([*types.cat.categories.astype(str), str(np.nan)], dtype=object)
    else:
        codes, uniques = pd.factorize(types, use_na_sentinel=False)
        names = pd.Series(np.asarray(uniques, dtype=object)).astype(str)
    return codes, names.map(behaviour).to_numpy(dtype=float)


def _in_time_order(scored: np.ndarray, ev_leads: np.ndarray, occurred: pd.Series, points: np.ndarray) -> np.ndarray:
    """``scored`` (positions of events, grouped by lead: ``ev_leads``) with each lead's events in (time, points)
    order: float sums in a fixed order, whatever the order of the table's rows. Unchanged (no sort) when they are
    in that order already, as a table written in (lead, time) order is."""
    if len(scored) < 2:
        return scored
    time = np.asarray(occurred.array.asi8)[scored]
    same_lead = ev_leads[1:] == ev_leads[:-1]
    same_time = same_lead & (time[1:] == time[:-1])
    if not ((same_lead & (time[1:] < time[:-1])).any() or (same_time & (points[1:] < points[:-1])).any()):
        return scored
    lead_rank = np.concatenate([[0], np.cumsum(~same_lead)])
    return scored[np.lexsort((points, time, lead_rank))]


BEHAVIOUR_JOIN_PAIRS = 2_000_000  # (snapshot, event) pairs joined at once: bounds behaviour_points' memory


def behaviour_points(snapshots: pd.DataFrame, events: pd.DataFrame, rules: PointsRules) -> np.ndarray:
    """Decayed behaviour points per snapshot row from events strictly before its ``as_of``.

    Every snapshot meets each scored event of its lead, in chunks of snapshots (ordered by lead) of about
    ``BEHAVIOUR_JOIN_PAIRS`` pairs, by position into the events table: nothing of the table is copied but
    the positions of its scored events (in lead order), so memory stays bounded however many snapshots
    and events there are. Each snapshot sums its events' points in (time, points) order, so the same events
    in another row order of the table give the same points bit for bit.
    """
    for col in (LEAD_ID, "as_of"):
        if col not in snapshots.columns:
            raise KeyError(f"behaviour points: snapshots lack column {col!r}")
    for col in (LEAD_ID, OCCURRED_AT, EVENT_TYPE):
        if col not in events.columns:
            raise KeyError(f"behaviour points: events table lacks column {col!r}")
    if not rules.behaviour or len(snapshots) == 0:
        return np.zeros(len(snapshots), dtype=float)
    codes, per_type = _type_codes(events[EVENT_TYPE], rules.behaviour)
    scored = np.flatnonzero(~np.isnan(per_type)[codes])  # positions of the scored events, in lead order:
    ev_leads = events[LEAD_ID].to_numpy()[scored]
    if len(ev_leads) > 1 and not (ev_leads[1:] >= ev_leads[:-1]).all():
        by_lead = np.argsort(ev_leads, kind="stable")
        scored, ev_leads = scored[by_lead], ev_leads[by_lead]
        del by_lead
    scored = _in_time_order(scored, ev_leads, events[OCCURRED_AT], per_type[codes[scored]])
    occurred = events[OCCURRED_AT].array
    lead = snapshots[LEAD_ID].to_numpy()
    as_of = snapshots["as_of"].array
    order = np.argsort(lead, kind="stable")
    first = np.searchsorted(ev_leads, lead[order], side="left")  # each snapshot's events: first..first+count
    count = np.searchsorted(ev_leads, lead[order], side="right") - first
    pairs = np.cumsum(count)
    cuts = np.searchsorted(pairs, np.arange(BEHAVIOUR_JOIN_PAIRS, pairs[-1], BEHAVIOUR_JOIN_PAIRS), side="right")
    total = np.zeros(len(snapshots), dtype=float)
    for chunk in np.split(np.arange(len(order)), np.unique(cuts)):
        if not len(chunk):
            continue
        rows, n = order[chunk], count[chunk]
        pair_row = np.repeat(np.arange(len(rows)), n)  # snapshot (in the chunk) of each pair
        starts = np.cumsum(n) - n
        event = scored[np.repeat(first[chunk] - starts, n) + np.arange(int(n.sum()))]  # its event
        snap_at, event_at = as_of.take(rows[pair_row]), occurred.take(event)
        before = np.asarray(event_at < snap_at)
        value = per_type[codes[event[before]]]
        if rules.half_life_days is not None:
            age_days = (snap_at[before] - event_at[before]).total_seconds() / 86400.0
            value = value * np.exp2(-np.asarray(age_days) / rules.half_life_days)
        total[rows] += np.bincount(pair_row[before], weights=value, minlength=len(rows))
    return total


def points_score(
    frame: pd.DataFrame, rules: PointsRules, events: pd.DataFrame | None = None
) -> np.ndarray:
    """Total points per row: explicit (frame columns) + behaviour (from ``events``, when rules have any)."""
    total = explicit_points(frame, rules)
    if rules.behaviour:
        if events is None:
            raise ValueError(
                f"points rules {rules.name!r} score events ({sorted(rules.behaviour)}) but no events table was given"
            )
        total = total + behaviour_points(frame, events, rules)
    return total


def score_column_baseline(values: pd.Series) -> tuple[np.ndarray, float]:
    """An existing score as a ranking, with its coverage.

    Missing scores are ranked below every scored lead (what a team sorting by the column sees);
    coverage is reported next to it so the number is read honestly.
    """
    x = to_numbers(values, errors="coerce").to_numpy(dtype=float)
    covered = ~np.isnan(x)
    coverage = float(covered.mean()) if len(x) else float("nan")
    fill = (np.nanmin(x) - 1.0) if covered.any() else 0.0
    return np.where(covered, x, fill), coverage


def _as_text(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    return frame[columns].astype(object).where(frame[columns].notna(), MISSING).astype(str)


# magnitude the logistic baseline holds numbers to: the squares its scaler sums stay finite (1e308 overflowed them)
NUMBER_LIMIT = 1e100


def _as_numbers(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The numeric columns as floats, held within +-``NUMBER_LIMIT`` (missing stays missing)."""
    return pd.DataFrame({c: to_numbers(frame[c], errors="coerce").astype(float).clip(-NUMBER_LIMIT, NUMBER_LIMIT)
                         for c in columns}, index=frame.index)


class LogisticBaseline:
    """Logistic regression: one-hot categoricals (rare levels pooled), imputed + standardised numerics.

    Its design matrix (sparse when the one-hot columns make it mostly zeros, as scikit-learn's
    ``ColumnTransformer`` decides; else dense float64) is built ``DESIGN_ROWS`` rows at a time, so only
    the matrix itself is held, never its intermediates for every row; the same matrix, fit and scores
    as ``ColumnTransformer`` -> ``LogisticRegression`` on the whole frame. Above ``max_rows`` training
    rows it is fitted on a stratified random sample of ``max_rows`` of them (each class in its share,
    rows kept in their order; ``sample_note`` says so); at or below, on every row. Scores are computed
    ``PREDICT_ROWS`` rows at a time (more rows than that: the same scores within float rounding when the
    design is dense, BLAS summing a slice along other paths than the whole).
    """

    PREDICT_ROWS = 200_000
    DESIGN_ROWS = 25_000
    SPARSE_THRESHOLD = 0.3  # ColumnTransformer's default: a sparse design below this share of stored values

    def __init__(self, C: float = 1.0, min_frequency: int = 10, max_rows: int | None = None, seed: int = 0) -> None:
        self.C = C
        self.min_frequency = min_frequency
        self.max_rows = max_rows
        self.seed = seed

    def fit(self, X: pd.DataFrame, y: Any, *, rows: np.ndarray | None = None,
            columns: Sequence[str] | None = None) -> LogisticBaseline:
        """Fit on ``X`` (its columns the features), or on its rows at positions ``rows`` (``y`` holds their
        labels) and its ``columns``: then only the rows it fits on are copied out of ``X`` (``max_rows`` of
        them above it), the same fit as on ``X[columns].iloc[rows]``."""
        y = np.asarray(y, dtype=int)
        self.n_rows_, self.n_fit_rows_ = len(y), len(y)
        picked = None if rows is None else np.asarray(rows)
        if self.max_rows is not None and len(y) > self.max_rows:
            sample = stratified_sample(y, self.max_rows, self.seed)
            picked, y = (sample if picked is None else picked[sample]), y[sample]
            self.n_fit_rows_ = len(sample)
        if picked is not None or columns is not None:
            X = take_rows(X, np.arange(len(X)) if picked is None else picked,
                          list(X.columns) if columns is None else columns)
        self.categorical_ = [c for c in X.columns if is_categorical(X[c])]
        self.numeric_ = [c for c in X.columns if c not in self.categorical_]
        self.encoder_ = self.scaler_ = None
        width, stored = 0, 0  # design columns, and values stored per row when sparse
        if self.categorical_:
            self.encoder_ = OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=self.min_frequency
                                          ).fit(_as_text(X, self.categorical_))
            width += len(self.encoder_.get_feature_names_out())
            stored += len(self.categorical_)  # one value per column of every row it was fitted on
        if self.numeric_:
            self.scaler_ = make_pipeline(SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
                                         StandardScaler()).fit(_as_numbers(X, self.numeric_))
            dense = len(self.scaler_.get_feature_names_out())
            width, stored = width + dense, stored + dense
        self.sparse_ = self.encoder_ is not None and stored / width < self.SPARSE_THRESHOLD
        self.lr_ = LogisticRegression(C=self.C, max_iter=2000).fit(self._design(X), y)
        return self

    @property
    def sample_note(self) -> str | None:
        """What the fit was sampled from, or None when it used every row."""
        if self.n_fit_rows_ == self.n_rows_:
            return None
        return (f"logistic regression baseline fitted on a stratified random sample of {self.n_fit_rows_:,} of its "
                f"{self.n_rows_:,} training rows (training.logistic_max_rows, bounding its design matrix); "
                "it scores every test row")

    def _design(self, X: pd.DataFrame) -> np.ndarray | sparse.csr_matrix:
        """The design matrix of ``X``'s rows, ``DESIGN_ROWS`` at a time (each transform is row by row)."""
        step = max(self.DESIGN_ROWS, 2)
        first = self._design_block(X.iloc[:step])
        if len(X) <= step:
            return first
        if self.sparse_:
            blocks = [first, *(self._design_block(X.iloc[i:i + step]) for i in range(step, len(X), step))]
            return sparse.vstack(blocks, format="csr")
        # dense: filled in place, in the memory order the transformers give (it decides how BLAS sums a row)
        fortran = first.flags.f_contiguous and not first.flags.c_contiguous
        out = np.empty((len(X), first.shape[1]), dtype=first.dtype, order="F" if fortran else "C")
        out[:step] = first
        for i in range(step, len(X), step):
            out[i:i + step] = self._design_block(X.iloc[i:i + step])
        return out

    def _design_block(self, X: pd.DataFrame) -> np.ndarray | sparse.csr_matrix:
        """One block, stacked as ``ColumnTransformer`` stacks its transformers' outputs."""
        parts = []
        if self.encoder_ is not None:
            parts.append(self.encoder_.transform(_as_text(X, self.categorical_)))
        if self.scaler_ is not None:
            parts.append(self.scaler_.transform(_as_numbers(X, self.numeric_)))
        if self.sparse_:
            return sparse.hstack([check_array(p, accept_sparse=True, ensure_all_finite=False) for p in parts]).tocsr()
        return np.hstack([p.toarray() if sparse.issparse(p) else p for p in parts])

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """P(positive) per row (``PREDICT_ROWS`` rows at a time)."""
        step = self.PREDICT_ROWS
        if len(X) <= step:
            return self.lr_.predict_proba(self._design(X))[:, 1]
        return np.concatenate([self.lr_.predict_proba(self._design(X.iloc[i:i + step]))[:, 1]
                               for i in range(0, len(X), step)])


def stratified_sample(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Positions of ``n`` rows of ``y`` drawn without replacement, each class in its share (largest
    remainders, at least one row of every class present), in ascending order."""
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(y, return_counts=True)
    quota = counts * n / len(y)
    take = np.maximum(np.floor(quota).astype(int), 1)
    extra = n - int(take.sum())
    if extra > 0:
        take[np.argsort(-(quota - np.floor(quota)), kind="stable")[:extra]] += 1
    else:  # a rare class's one row comes out of the largest
        take[np.argmax(take)] += extra
    take = np.minimum(take, counts)
    picked = [rng.choice(np.flatnonzero(y == c), size=t, replace=False) for c, t in zip(classes, take, strict=True)]
    return np.sort(np.concatenate(picked))
