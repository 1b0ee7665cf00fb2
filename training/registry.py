"""The model registry: aliases ``challenger`` / ``champion`` on the registered model ``lead-conversion``.

- Every training run registers a new version and points ``challenger`` at it.
- ``promote`` moves ``champion`` to the challenger only when the challenger beats the current
  champion on the SAME rows (the challenger run's stored evaluation rows; both models are
  re-scored through their pyfunc) and beats the baselines of its own run's comparison. The first
  champion only has to beat the baselines.
- The succession of champions is kept in the registered-model tag ``leadscore.champion_history``
  (JSON list of versions); ``rollback`` moves ``champion`` back one step (skipping versions deleted since).
- ``export_champion`` writes the champion's pyfunc directory + ``champion.json`` for deployment
  without a tracking server.
- The same rules serve every kind of model (version tag ``kind``): :class:`PromotionRules` says how
  a kind is re-scored on evaluation rows, which row of its comparison table is the model itself,
  and its default deciding metric. ``sales_readiness`` (``lead-conversion``, roc_auc) is built in;
  ``time_to_close`` (``lead-time-to-close``, uno_c) comes from :mod:`training.survival_tracking`.
Aliases only: no stages.
"""

from __future__ import annotations

import errno
import json
import math
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode

from features.schema import LEAD_ID
from training.config import AS_OF
from training.evaluation import probability_metrics
from training.pyfunc import pyfunc_probabilities
from training.sales_readiness import MODEL_NAME as MODEL_ROW
from training.sales_readiness import calibration_summary
from training.tracking import (
    BACKTEST_MODEL_ARTIFACT,
    COMPARISON_ARTIFACT,
    LABEL_COLUMN,
    TEST_SET_ARTIFACT,
    LoggedRun,
    load_run_frame,
    quiet_mlflow_noise,
    quiet_registration_lines,
    server_failure,
)

MODEL_NAME = "lead-conversion"
CHAMPION = "champion"
CHALLENGER = "challenger"
HISTORY_TAG = "leadscore.champion_history"
CHAMPION_FILE = "champion.json"
HIGHER_IS_BETTER = frozenset({"roc_auc", "pr_auc", "top_decile_lift", "top_decile_capture", "capture_at_capacity",
                              "harrell_c", "uno_c"})
LOWER_IS_BETTER = frozenset({"log_loss", "brier", "ece", "ibs"})
LOWER_IS_BETTER_PREFIXES = ("brier_", "calibration_")  # brier_90d, calibration_max_gap_90d, ...
SIDE_BY_SIDE = ("roc_auc", "pr_auc", "log_loss", "brier", "ece", "top_decile_capture")
VERSION_METRICS = ("roc_auc", "pr_auc", "log_loss", "brier", "ece", "top_decile_capture", "mql_cutoff",
                   "harrell_c", "uno_c", "ibs")
SALES_READINESS_KIND = "sales_readiness"
KIND_TAG = "kind"


class RegistryError(RuntimeError):
    """A registry operation cannot proceed (missing alias, no previous champion, ...)."""


class BacktestMissing(RegistryError):
    """A refit version's run holds no backtest model (logged before runs kept it, or the artifact is gone)."""


class MetricError(RegistryError):
    """The metric asked for cannot decide the promotion of the candidate's kind of model."""

    def __init__(self, metric: str, kind: str, accepted: tuple[str, ...]) -> None:
        super().__init__(f"metric {metric!r} cannot decide the promotion of a {kind} model; use one of {list(accepted)}")
        self.metric, self.kind, self.accepted = metric, kind, accepted


# ----- registration -----------------------------------------------------------------------------
def register_challenger(
    client: MlflowClient, logged: LoggedRun, metrics: Mapping[str, float], extra_tags: Mapping[str, str] | None = None,
    name: str = MODEL_NAME, description: str | None = None,
) -> ModelVersion:
    """Register the run's pyfunc as a new version of ``name`` and point ``challenger`` at it.

    Version tags record the evaluation data identity (rows, positives, as_of range, data hash),
    headline metrics, training date and leakage flag; ``description`` (where the version came from:
    :func:`training.lineage.lineage_summary`) is the version's description.
    """
    tags = {**logged.identity, "run_id": logged.run_id,
            "trained_at": logged.tags.get("leadscore.trained_at", ""),
            "leakage_flagged": logged.tags.get("leadscore.leakage_flagged", ""),
            **{k: f"{metrics[k]:.6g}" for k in VERSION_METRICS if k in metrics and math.isfinite(metrics[k])},
            **dict(extra_tags or {})}
    _bind(client)
    with _noted(f"no version of {name!r} became {CHALLENGER}"), quiet_registration_lines(), quiet_mlflow_noise():
        version = mlflow.register_model(logged.model_uri, name, tags={k: str(v) for k, v in tags.items()})
    try:
        client.set_registered_model_alias(name, CHALLENGER, version.version)
    except Exception as exc:
        exc.add_note(withdraw_version(client, name, str(version.version)))
        raise
    # registered and challenger: a failed description or read-back leaves it so (deleting it would take the alias)
    with _noted(f"version {version.version} of {name!r} was registered and is {CHALLENGER}"):
        if description:
            client.update_model_version(name, version.version, description=description)
        return client.get_model_version(name, version.version)


def withdraw_version(client: MlflowClient, name: str, version: str) -> str:
    """Delete a version whose registration could not be completed (it never became ``challenger``);
    returns what became of it, for the error the caller raises."""
    try:
        client.delete_model_version(name, version)
    except Exception as exc:  # the registry is gone too: say what is left, the caller raises the first error
        first = server_failure(exc) or (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        return (f"version {version} of {name!r} was registered but never became {CHALLENGER}, and could not be "
                f"deleted ({first}): delete it once the registry answers")
    return f"version {version} of {name!r} was registered but never became {CHALLENGER}; it was deleted"


def registered_kind(client: MlflowClient, name: str) -> str | None:
    """The ``leadscore.kind`` run tag of the newest version of ``name`` (None: no version, or untagged)."""
    try:
        versions = client.search_model_versions(f"name = '{name}'", max_results=1, order_by=["version_number DESC"])
    except MlflowException as exc:
        return _absent(exc)
    if not versions or not versions[0].run_id:
        return None
    try:
        return client.get_run(versions[0].run_id).data.tags.get("leadscore.kind")
    except MlflowException as exc:
        return _absent(exc)


def _absent(exc: MlflowException) -> None:
    """None for a registry answer that the thing asked for is not there; a tracking server that stopped
    answering is re-raised (it is not a missing alias, model or run)."""
    if server_failure(exc) is not None:
        raise exc
    return None


def alias_version(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """The version an alias points at, or None (no such alias / model)."""
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        return _absent(exc)


def resolve_version(client: MlflowClient, name: str, ref: str) -> ModelVersion:
    """``ref`` = an alias (``champion``, ``challenger``, ``@x``) or a version number."""
    ref = ref.removeprefix("@")
    if ref.isdigit():
        try:
            return client.get_model_version(name, ref)
        except MlflowException as exc:
            _absent(exc)
            raise RegistryError(f"model {name!r} has no version {ref}") from exc
    version = alias_version(client, name, ref)
    if version is None:
        challenger = alias_version(client, name, CHALLENGER) if ref == CHAMPION else None
        if challenger is not None:  # trained, never promoted: the step missing is the promotion
            raise RegistryError(
                f"model {name!r} has no champion yet: version {challenger.version} is the challenger; promote it "
                f"(`leadscore models promote`, with `--model-name {name}` for another model than lead-conversion), "
                f"or name it (`--model challenger`)")
        raise RegistryError(f"model {name!r} has no alias {ref!r} (train first, or check `leadscore models list`)")
    return version


def champion_history(client: MlflowClient, name: str) -> list[str]:
    """Versions that have been champion, oldest first (the last one is the current champion)."""
    try:
        tags = client.get_registered_model(name).tags
    except MlflowException as exc:
        _absent(exc)
        return []
    return [str(v) for v in json.loads(tags.get(HISTORY_TAG, "[]"))]


def version_exists(client: MlflowClient, name: str, version: str) -> bool:
    """Whether ``version`` of ``name`` is still registered (False once deleted; other errors propagate)."""
    try:
        client.get_model_version(name, version)
    except MlflowException as exc:
        if exc.error_code == ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
            return False
        raise
    return True


@contextmanager
def _noted(note: str) -> Iterator[None]:
    """An error raised inside the block carries ``note`` (what the failed writes may have changed)."""
    try:
        yield
    except Exception as exc:
        exc.add_note(note)
        raise


def _may_be_champion(name: str, version: str) -> str:
    return (f"the {CHAMPION} of {name!r} may already be version {version}: check `leadscore models list` "
            "once the registry answers")


def _set_champion(client: MlflowClient, name: str, version: str, history: list[str]) -> None:
    client.set_registered_model_alias(name, CHAMPION, version)
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))


# ----- promotion --------------------------------------------------------------------------------
def versus(a: float, b: float) -> str:
    """``"a vs b"`` with four decimals, or as many more (up to 10 significant digits) as it takes to show
    that two different values differ (an IBS of 0.01131 vs 0.01127 read "0.0113 vs 0.0113")."""
    for digits in range(4, 12):
        left, right = f"{a:.{digits}f}", f"{b:.{digits}f}"
        if left != right or a == b:
            break
    if left == right and a != b:
        left, right = f"{a:.10g}", f"{b:.10g}"
    return f"{left} vs {right}"


def better(metric: str, a: float, b: float, min_delta: float = 0.0) -> bool:
    """``a`` beats ``b`` on ``metric`` by more than ``min_delta`` (direction-aware)."""
    if metric in LOWER_IS_BETTER or metric.startswith(LOWER_IS_BETTER_PREFIXES):
        return a < b - min_delta
    if metric in HIGHER_IS_BETTER:
        return a > b + min_delta
    raise ValueError(f"metric {metric!r} has no known direction; use one of "
                     f"{sorted(HIGHER_IS_BETTER | LOWER_IS_BETTER)}")


def best_baseline(comparison: pd.DataFrame, metric: str, model_row: str = MODEL_ROW) -> tuple[str, float] | None:
    """The best non-model scorer of a run's comparison table on ``metric`` (None when none has it)."""
    if metric not in comparison.columns:
        return None
    values = comparison.drop(index=model_row, errors="ignore")[metric].astype(float).dropna()
    if values.empty:
        return None
    lower = metric in LOWER_IS_BETTER or metric.startswith(LOWER_IS_BETTER_PREFIXES)
    name = values.idxmin() if lower else values.idxmax()
    return str(name), float(values[name])


def baselines_to_beat(comparison: pd.DataFrame, metric: str, fallback_metric: str,
                      model_row: str = MODEL_ROW) -> list[tuple[str, str, float]]:
    """(scorer, metric, value) the challenger must beat: the best baseline on ``metric``, and, when some
    baselines do not report ``metric`` (a points score has no log loss), the best of those on
    ``fallback_metric`` (the kind's ranking metric), so that no baseline drops out of the rule."""
    out: list[tuple[str, str, float]] = []
    if (best := best_baseline(comparison, metric, model_row)) is not None:
        out.append((best[0], metric, best[1]))
    if metric == fallback_metric:
        return out
    others = comparison.drop(index=model_row, errors="ignore")
    lacking = others.index if metric not in others.columns else others.index[others[metric].isna()]
    if len(lacking) and (fallback := best_baseline(others.loc[lacking], fallback_metric, model_row)) is not None:
        out.append((fallback[0], fallback_metric, fallback[1]))
    return out


MIN_EVAL_POSITIVES = 20  # fewer converting (closing) leads in the evaluation rows: a comparison is noise


def decide_promotion(
    challenger: Mapping[str, float],
    champion: Mapping[str, float] | None,
    baselines: list[tuple[str, str, float]],
    metric: str,
    min_delta: float = 0.0,
    positives: int | None = None,
    no_champion: str = "no champion yet: the first champion only has to beat the baselines",
) -> tuple[bool, list[str]]:
    """Pure rule: beat every baseline given as (scorer, metric, value), and (when there is one) the
    champion on the same rows on ``metric``; with ``positives`` (leads that convert, or close, in the
    evaluation rows) below :data:`MIN_EVAL_POSITIVES`, nothing is promoted. ``no_champion`` is the
    reason given when there is no champion."""
    reasons: list[str] = []
    ok = True
    if positives is not None and positives < MIN_EVAL_POSITIVES:
        ok = False
        reasons.append(f"only {positives} lead(s) convert in the evaluation rows: at least {MIN_EVAL_POSITIVES} are "
                       "needed to tell models apart (more history, or a longer test period)")
    if not baselines:
        reasons.append(f"no baseline reports {metric}: baseline check skipped")
    for scorer, on, target in baselines:
        value = challenger[on]
        if better(on, value, target):
            reasons.append(f"beats the best baseline ({scorer}) on {on}: {versus(value, target)}")
        else:
            ok = False
            reasons.append(f"does NOT beat the best baseline ({scorer}) on {on}: {versus(value, target)}")
    value = challenger[metric]
    if champion is None:
        reasons.append(no_champion)
    elif better(metric, value, champion[metric], min_delta):
        reasons.append(f"beats the champion on the same evaluation rows on {metric}: "
                       f"{versus(value, champion[metric])} (required margin {min_delta:g})")
    else:
        ok = False
        reasons.append(f"does NOT beat the champion on the same evaluation rows on {metric}: "
                       f"{versus(value, champion[metric])} (required margin {min_delta:g})")
    return ok, reasons


def champion_fitted_rows_note(champion: ModelVersion, rows: pd.DataFrame) -> str | None:
    """A note when evaluation rows are dated before the start of the champion's own test slice (version tag
    ``eval_as_of_min``): a time-split champion was fitted on those snapshots (a later run with a larger
    ``test_fraction`` reaches back there), so the comparison favours it. None when no row is (or nothing says)."""
    start = champion.tags.get("eval_as_of_min")
    if not start or AS_OF not in rows.columns or not len(rows):
        return None
    try:
        cut = pd.Timestamp(start)
    except ValueError:
        return None
    before = int((pd.to_datetime(rows[AS_OF]) < cut).sum())
    if not before:
        return None
    return (f"note: {before:,} of {len(rows):,} evaluation rows are dated before {cut:%Y-%m-%d}, where champion "
            f"v{champion.version}'s test slice starts: it was fitted on those snapshots, which favours it in this "
            "comparison")


@dataclass
class PromotionDecision:
    """Outcome of ``promote``: the verdict, why, and the figures side by side."""

    promoted: bool
    name: str
    challenger_version: str
    champion_version: str | None  # the champion before the decision
    metric: str
    table: pd.DataFrame  # rows: metrics; columns: challenger, champion (same rows), best baseline
    reasons: list[str]
    evaluation: dict[str, str] = field(default_factory=dict)
    is_challenger: bool = True  # False: a version given by number that the challenger alias does not point at

    def explain(self) -> str:
        stays = f"stays {CHALLENGER}" if self.is_challenger else "is not promoted"
        verdict = (f"PROMOTED: version {self.challenger_version} is now {CHAMPION}" if self.promoted else
                   f"REFUSED: version {self.challenger_version} {stays}; champion remains "
                   f"{self.champion_version or '(none)'}")
        lines = [verdict, *[f"- {r}" for r in self.reasons], "", self.table.to_string(float_format="{:.4f}".format)]
        return "\n".join(lines)


def feature_part(rows: pd.DataFrame) -> pd.DataFrame:
    """The feature columns of stored evaluation rows (without keys and label)."""
    return rows.drop(columns=[c for c in (LEAD_ID, AS_OF, LABEL_COLUMN) if c in rows.columns])


def _bind(client: MlflowClient) -> None:
    """Make MLflow's module-level URIs (used by ``models:/`` loads and downloads) match ``client``."""
    mlflow.set_tracking_uri(client.tracking_uri)
    mlflow.set_registry_uri(getattr(client, "_registry_uri", None) or client.tracking_uri)


def score_rows(client: MlflowClient, name: str, version: str, rows: pd.DataFrame) -> np.ndarray:
    """Calibrated probabilities of a registered version (through its pyfunc's own predict, a block of rows at a
    time: :func:`training.pyfunc.pyfunc_probabilities`) on evaluation rows."""
    _bind(client)
    return pyfunc_probabilities(mlflow.pyfunc.load_model(f"models:/{name}/{version}"), feature_part(rows))


def rows_metrics(rows: pd.DataFrame, probability: np.ndarray, ece_bins: int = 10,
                 ece_binning: str = "equal_mass") -> dict[str, float]:
    """Probability metrics of scores on evaluation rows (label column ``label``), with calibration at the
    top (``top_decile_predicted`` / ``_observed``, as a training run reports them); ECE with the given bins
    (a project's ``training.ece_bins`` / ``ece_binning``)."""
    y = rows[LABEL_COLUMN].to_numpy(dtype=float)
    summary = calibration_summary(y, np.asarray(probability, dtype=float))
    return {**probability_metrics(y, probability, ece_bins, ece_binning),
            **{k: v for k, v in summary.items() if k.startswith("top_decile_")}}


# (client, registered name, version, evaluation rows, run id of the candidate) -> metrics on the rows
# (client, name, version, rows, candidate run_id, notes=): notes given on the champion's side of a promotion
RowsScorer = Callable[..., dict[str, float]]


@dataclass(frozen=True)
class PromotionRules:
    """How one kind of model is judged: re-scoring on rows, its own comparison row, default metric."""

    kind: str
    model_row: str
    default_metric: str
    side_by_side: tuple[str, ...]
    metrics_on_rows: RowsScorer
    # metrics that may decide a promotion (not calibration errors alone: a constant score wins those)
    deciding_metrics: tuple[str, ...] = ()
    positive_column: str = LABEL_COLUMN  # the evaluation rows' outcome (1 = converted / closed)


PREDICTIONS_ARTIFACT = "evaluation/predictions.parquet"


# the version tags of a version refit for deployment (training.refit, time_to_close.refit): the start of its backtest's
# test slice, and its data end, the latest instant whose outcomes its labels, calibrator or fit could read
REFIT_TAGS = ("backtest_cut", "data_end")
_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")


def refit_tags(refit: bool, cut: Any = None, end: Any = None) -> dict[str, str]:
    """Version tags saying whether the registered model was refit for deployment and, if so, its backtest's cut and
    its data end (:data:`REFIT_TAGS`), up to which rows are graded with its run's backtest model
    (:func:`backtest_graded`). The instants keep their time of day (ISO 8601); an unknown one is left out."""
    if not refit:
        return {"refit": "false"}
    return {"refit": "true", **{tag: pd.Timestamp(when).isoformat()
                                for tag, when in zip(REFIT_TAGS, (cut, end), strict=True) if when is not None}}


def tagged_data_end(version: ModelVersion) -> str | None:
    """A refit version's data end as tagged: ``data_end``, else ``fitted_until`` (sales-readiness versions registered
    before ``data_end``: a refit's ``fitted_until`` is its data end); None when it has neither."""
    return version.tags.get("data_end") or version.tags.get("fitted_until") or None


def backtest_graded(version: ModelVersion, rows: pd.DataFrame) -> np.ndarray | None:
    """Which of ``rows`` a refit version (tag ``refit``) must be graded on with its run's backtest model: every row
    dated up to its data end (:func:`tagged_data_end`). A row dated d is labelled by outcomes after d, and the refit
    learnt from outcomes up to the data end: a sales-readiness refit's calibrator from its run's test slice, a
    time-to-close refit from every snapshot with its outcomes followed to the end. The backtest model saw none of
    those outcomes, as a ``refit: false`` version would not have. A data end tagged with its date only (older tags)
    covers that whole day. None: the version is no refit (every row is its own to score)."""
    if version.tags.get("refit") != "true":
        return None
    text = tagged_data_end(version)
    if text is None or AS_OF not in rows.columns:
        raise RegistryError(f"version {version.version} of {version.name!r} was refit for deployment but "
                            + ("lacks the version tag 'data_end'" if text is None else f"the rows have no {AS_OF!r}")
                            + ": cannot tell the rows whose outcomes it learnt from from the rows it may be graded on")
    try:
        end = pd.Timestamp(text)
    except ValueError:
        end = pd.NaT
    if pd.isna(end):  # compared false with every row: all of them would go to the refit
        raise RegistryError(f"version {version.version} of {version.name!r} was refit for deployment but its data end "
                            f"{text!r} (version tag 'data_end' or 'fitted_until') is no instant: cannot tell the rows "
                            "whose outcomes it learnt from from the rows it may be graded on")
    as_of = pd.to_datetime(rows[AS_OF])
    if _DATE_ONLY.fullmatch(text.strip()):
        return (as_of < end.normalize() + pd.Timedelta(days=1)).to_numpy()
    return (as_of <= end).to_numpy()


def load_backtest_model(client: MlflowClient, version: ModelVersion, load: Callable[[str], Any]) -> Any:
    """The backtest model a refit version's run logged (:data:`training.tracking.BACKTEST_MODEL_ARTIFACT`), read from
    its downloaded directory by ``load`` (the model class's own ``load``)."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = client.download_artifacts(version.run_id, BACKTEST_MODEL_ARTIFACT, tmp)
        except (MlflowException, OSError) as exc:
            raise BacktestMissing(f"version {version.version} of {version.name!r} was refit for deployment but its run "
                                f"{version.run_id} holds no {BACKTEST_MODEL_ARTIFACT}/ ({exc}): cannot grade it on "
                                f"the rows dated up to its data end {tagged_data_end(version)}, whose outcomes it "
                                "learnt from (a version trained again has it)") from exc
        return load(local)


def grade_refit_apart(version: ModelVersion, rows: pd.DataFrame, score: Callable[[pd.DataFrame], np.ndarray],
                      score_backtest: Callable[[pd.DataFrame], np.ndarray],
                      progress: Callable[[str], None] | None = None) -> np.ndarray:
    """Scores of ``version`` on ``rows`` (one a row, or a row of them) that never come from outcomes it learnt from:
    a refit version's rows dated up to its data end (:func:`backtest_graded`) go to ``score_backtest`` (its run's
    backtest model), the others to ``score`` (the version itself), a mix row by row."""
    graded = backtest_graded(version, rows)
    if graded is None or not graded.any():
        return score(rows)
    if progress is not None:
        cut = version.tags.get("backtest_cut")
        progress(f"{int(graded.sum()):,} of {len(rows):,} rows are dated up to {tagged_data_end(version)}, the data "
                 f"end of version {version.version}, whose refit learnt from the outcomes up to it: graded with its "
                 "run's backtest model" + (f" (fitted before {cut})" if cut else ""))
    if graded.all():  # the run's own rows: as they are (a mask of all True copied them whole)
        return score_backtest(rows)
    parts = {True: score_backtest(rows[graded]), False: score(rows[~graded])}
    out = np.empty((len(rows), *parts[True].shape[1:]))
    for where, values in parts.items():
        out[graded == where] = values
    return out


def _run_probabilities(client: MlflowClient, version: ModelVersion, rows: pd.DataFrame) -> np.ndarray:
    """The probabilities ``version``'s run logged for ``rows`` (:data:`PREDICTIONS_ARTIFACT`; out-of-fold or its
    backtest model's), matched by ``lead_id`` and ``as_of`` where both have it; NaN for rows the run does not hold."""
    oof = load_run_frame(client, version.run_id, PREDICTIONS_ARTIFACT)
    if LEAD_ID not in oof.columns or "probability" not in oof.columns:
        raise RegistryError(f"version {version.version}: its run's {PREDICTIONS_ARTIFACT} lacks lead_id/probability; "
                            "cannot tell its training rows from new ones")
    keys = [LEAD_ID, AS_OF] if AS_OF in oof.columns and AS_OF in rows.columns else [LEAD_ID]

    def keyed(frame: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({k: frame[k].astype(str) if k == LEAD_ID else pd.to_datetime(frame[k]) for k in keys})

    known = keyed(oof).assign(probability=oof["probability"].to_numpy(dtype=float)).drop_duplicates(keys)
    return keyed(rows).merge(known, on=keys, how="left")["probability"].to_numpy(dtype=float)


def backtest_probabilities(client: MlflowClient, version: ModelVersion, rows: pd.DataFrame,
                           without_backtest: Callable[[pd.DataFrame], np.ndarray] | None = None) -> np.ndarray:
    """Probabilities of a refit version's run's backtest model on ``rows``: on its run's test rows those it logged
    (the run's figures), on others those of the backtest model the run logged, through the pyfunc's own path.
    A run without the backtest model: those others are refused (:class:`BacktestMissing`), or go to
    ``without_backtest`` when given (a champion's side of a promotion: :func:`out_of_sample_probabilities`)."""
    from training.model import SalesReadinessModel
    from training.pyfunc import SalesReadinessPyfunc

    p = _run_probabilities(client, version, rows) if LEAD_ID in rows.columns else np.full(len(rows), np.nan)
    new = np.isnan(p)
    if new.any():
        rest = rows[new] if not new.all() else rows
        try:
            model = load_backtest_model(client, version, SalesReadinessModel.load)
        except BacktestMissing:
            if without_backtest is None:
                raise
            p[new] = without_backtest(rest)
            return p
        backtest = SalesReadinessPyfunc()
        backtest.model_ = model
        p[new] = pyfunc_probabilities(backtest, feature_part(rest))
    return p


def backtest_missing_note(version: ModelVersion, rows: int) -> str:
    """What a champion's side of a promotion says when its run holds no backtest model for ``rows`` rows."""
    return (f"note: {CHAMPION} version {version.version} was refit for deployment and its run holds no "
            f"{BACKTEST_MODEL_ARTIFACT}/ (registered before runs logged it): {rows:,} rows dated up to its data end "
            f"{tagged_data_end(version)} were graded with the version itself, which learnt their outcomes: "
            "its figures there are flattered (the challenger had to beat them)")


def out_of_sample_probabilities(client: MlflowClient, version: ModelVersion, rows: pd.DataFrame,
                                score: Callable[[pd.DataFrame], np.ndarray],
                                progress: Callable[[str], None] | None = None,
                                notes: list[str] | None = None) -> np.ndarray:
    """Probabilities of ``version`` on ``rows`` that never come from rows, or outcomes, it was fitted on.

    A K-fold flat version (tag ``out_of_fold``) is refit on every row of its run: re-scoring those
    rows would grade it on its training data. For them its run's cross-validated (out-of-fold)
    probabilities are used, matched by ``lead_id``; other rows (new leads) are scored by ``score``.
    A version refit for deployment (tag ``refit``, ``training.refit``) was calibrated on its run's test
    rows, labelled by outcomes up to its data end: every row dated up to that end is graded by its run's backtest
    model (:func:`grade_refit_apart`, :func:`backtest_probabilities`), later rows by ``score``; undated rows (flat
    rows by time) are matched by ``lead_id``, as out-of-fold ones. Other time-split versions are tested on later rows
    than they were fitted on: all of their rows are scored. With ``notes`` (a champion's side of a promotion: it
    cannot be trained again), rows a refit version's run holds no backtest model for are scored by ``score``, and a
    note says so (:func:`backtest_missing_note`); without, they are refused."""
    # versions registered before the tag: every flat version was K-fold then
    out_of_fold = version.tags.get("out_of_fold", str(version.tags.get("data_mode") == "flat").lower()) == "true"
    refit = version.tags.get("refit") == "true"
    if not (out_of_fold or refit) or not version.run_id:
        return score(rows)
    if refit and AS_OF in rows.columns and tagged_data_end(version):
        def by_itself(part: pd.DataFrame) -> np.ndarray:
            notes.append(backtest_missing_note(version, len(part)))
            return score(part)

        return grade_refit_apart(version, rows, score, lambda part: backtest_probabilities(
            client, version, part, None if notes is None else by_itself), progress)
    if LEAD_ID not in rows.columns:
        return score(rows)
    p = _run_probabilities(client, version, rows)
    seen = ~np.isnan(p)
    if (~seen).any():
        p[~seen] = score(rows[~seen])
    return p


def run_ece_bins(client: MlflowClient, run_id: str) -> tuple[int, str]:
    """The ECE bins a sales-readiness run measured with (params ``training.ece_bins`` / ``ece_binning``;
    runs without them: 10 equal-mass bins, the default)."""
    params = client.get_run(run_id).data.params if run_id else {}
    bins = params.get("training.ece_bins", "10")
    return (int(bins) if bins.isdigit() and int(bins) >= 2 else 10,
            params.get("training.ece_binning") if params.get("training.ece_binning") in ("equal_mass", "equal_width")
            else "equal_mass")


def _sales_readiness_rows_metrics(client: MlflowClient, name: str, version: str, rows: pd.DataFrame,
                                  run_id: str, notes: list[str] | None = None) -> dict[str, float]:
    """Metrics of ``version`` on the candidate run's rows, ECE with that run's bins (as its baselines'); ``notes``:
    the champion's side (:func:`out_of_sample_probabilities`)."""
    return rows_metrics(rows, out_of_sample_probabilities(
        client, client.get_model_version(name, version), rows, lambda part: score_rows(client, name, version, part),
        notes=notes), *run_ece_bins(client, run_id))


def promotion_rules(kind: str | None) -> PromotionRules:
    """The rules of a model kind (version tag ``kind``; versions without it are sales readiness)."""
    if kind in (None, "", SALES_READINESS_KIND):
        return PromotionRules(SALES_READINESS_KIND, MODEL_ROW, "roc_auc", SIDE_BY_SIDE, _sales_readiness_rows_metrics,
                              ("roc_auc", "pr_auc", "log_loss", "brier", "top_decile_lift", "top_decile_capture"))
    if kind == "time_to_close":
        from training.survival_tracking import PROMOTION_RULES

        return PROMOTION_RULES
    raise RegistryError(f"no promotion rules for model kind {kind!r}")


def deciding_metrics() -> dict[str, tuple[str, ...]]:
    """The metrics that may decide a promotion, per model kind (checked before the registry is read)."""
    return {rules.kind: rules.deciding_metrics for rules in (promotion_rules(None), promotion_rules("time_to_close"))}


def _input_names(name: str, version: str) -> list[str] | None:
    """The input columns of a registered version's signature (None: no signature, or unreadable)."""
    try:
        signature = mlflow.models.get_model_info(f"models:/{name}/{version}").signature
    except (MlflowException, OSError, ValueError):
        return None
    return None if signature is None or signature.inputs is None else list(signature.inputs.input_names())


def _few(columns: list[str], shown: int = 5) -> str:
    """The first ``shown`` column names, then "..." when there are more."""
    return ", ".join(columns[:shown]) + (", ..." if len(columns) > shown else "")


def unscorable_message(client: MlflowClient, name: str, version: str, rows: pd.DataFrame, exc: Exception) -> str:
    """One short line on why the champion ``version`` cannot score a challenger's evaluation ``rows``: the
    feature columns it needs that they lack (and those it does not know), else the error's first line."""
    _bind(client)
    head = f"{CHAMPION} version {version} cannot score the challenger's evaluation rows"
    needed = _input_names(name, version)
    if needed is not None:
        present = list(feature_part(rows).columns)
        have, want = set(present), set(needed)
        missing = [c for c in needed if c not in have]
        extra = [c for c in present if c not in want]
        gaps = ([f"it needs {len(missing)} feature column(s) they lack ({_few(missing)})"] if missing else []) + (
            [f"they have {len(extra)} it does not know ({_few(extra)})"] if extra else [])
        if gaps:
            return f"{head}: {'; '.join(gaps)}; the two were built with different feature specs"
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    detail = detail if len(detail) <= 200 else detail[:200] + "..."
    return f"{head} ({detail}); compare them by hand or retrain both on the same features"


def _no_champion_reason(client: MlflowClient, name: str, history: list[str]) -> str:
    """Why a candidate only has to beat the baselines: no champion ever, or the champion alias lost its version."""
    if not history:
        return "no champion yet: the first champion only has to beat the baselines"
    last = history[-1]
    gone = "was deleted" if not version_exists(client, name, last) else f"lost its {CHAMPION} alias"
    return f"no current {CHAMPION} (version {last}, the last one, {gone}): this one only has to beat the baselines"


def promote(
    client: MlflowClient,
    name: str = MODEL_NAME,
    *,
    version: str | None = None,
    metric: str | None = None,
    min_delta: float = 0.0,
) -> PromotionDecision:
    """Move ``champion`` to the challenger (or ``version``) when it earns it; otherwise refuse with reasons.

    ``metric`` defaults to the kind's deciding metric (roc_auc for sales readiness, uno_c for time to close).
    """
    if not (math.isfinite(min_delta) and min_delta >= 0):  # nan fails every comparison, inf no challenger clears
        raise RegistryError(f"min_delta must be a finite number >= 0 (a negative margin would let a worse challenger "
                            f"win, an infinite one none), got {min_delta}")
    candidate = resolve_version(client, name, version or CHALLENGER)
    rules = promotion_rules(candidate.tags.get(KIND_TAG))
    metric = metric or rules.default_metric
    if metric not in rules.deciding_metrics:
        raise MetricError(metric, rules.kind, rules.deciding_metrics)
    current = alias_version(client, name, CHAMPION)
    if current is not None and str(current.version) == str(candidate.version):
        raise RegistryError(f"version {candidate.version} of {name!r} is already the {CHAMPION}")
    if not candidate.run_id:
        raise RegistryError(f"version {candidate.version} of {name!r} has no training run to read evaluation rows from")
    rows = load_run_frame(client, candidate.run_id, TEST_SET_ARTIFACT)
    comparison = load_run_frame(client, candidate.run_id, COMPARISON_ARTIFACT)
    challenger_metrics = rules.metrics_on_rows(client, name, candidate.version, rows, candidate.run_id)
    if metric not in challenger_metrics:
        raise RegistryError(f"metric {metric!r} is not measured for {rules.kind} models; use one of "
                            f"{sorted(challenger_metrics)}")
    champion_metrics = None
    champion_notes: list[str] = []  # a refit champion whose run holds no backtest model: graded by itself, said
    if current is not None:
        try:
            champion_metrics = rules.metrics_on_rows(client, name, current.version, rows, candidate.run_id,
                                                     notes=champion_notes)
        except (KeyError, ValueError, MlflowException) as exc:
            raise RegistryError(unscorable_message(client, name, str(current.version), rows, exc)) from exc
    baselines = baselines_to_beat(comparison, metric, rules.default_metric, rules.model_row)
    positives = None
    if rules.positive_column in rows.columns:  # converting (closing) leads, not positive snapshot rows
        hit = rows[rules.positive_column].to_numpy(dtype=float) == 1
        positives = int(rows.loc[hit, LEAD_ID].nunique()) if LEAD_ID in rows.columns else int(hit.sum())
    history = champion_history(client, name)
    no_champion = _no_champion_reason(client, name, history) if current is None else ""
    promoted, reasons = decide_promotion(challenger_metrics, champion_metrics, baselines, metric, min_delta, positives,
                                         no_champion)
    if candidate.tags.get("leakage_flagged") == "true":
        reasons.append("note: the leakage alarm flagged this version (see the run's leakage/leakage.txt)")
    if current is not None:
        reasons.extend(filter(None, [champion_fitted_rows_note(current, rows), *champion_notes]))
    # the deciding metric and the baselines' metrics are always rows of the table
    shown = tuple(dict.fromkeys((*rules.side_by_side, metric, *(b[1] for b in baselines))))
    challenger = alias_version(client, name, CHALLENGER)
    is_challenger = challenger is not None and str(challenger.version) == str(candidate.version)
    label = CHALLENGER if is_challenger else "candidate"
    table = pd.DataFrame({f"{label} v{candidate.version}": {m: challenger_metrics.get(m) for m in shown}})
    if champion_metrics is not None:
        table[f"champion v{current.version}"] = pd.Series({m: champion_metrics.get(m) for m in shown})
    for scorer in dict.fromkeys(b[0] for b in baselines):
        row = comparison.loc[scorer]
        table[f"baseline: {scorer}"] = pd.Series({m: row.get(m) for m in shown}, dtype=float)
    table.index.name = "metric"
    evaluation = {k: v for k, v in candidate.tags.items() if k.startswith("eval_")}
    if promoted:
        if current is not None and (not history or history[-1] != str(current.version)):
            history.append(str(current.version))
        with _noted(_may_be_champion(name, str(candidate.version))):
            _set_champion(client, name, str(candidate.version), [*history, str(candidate.version)])
            client.set_model_version_tag(name, candidate.version, "promoted_at",
                                         datetime.now(UTC).replace(microsecond=0).isoformat())
    return PromotionDecision(promoted, name, str(candidate.version), str(current.version) if current else None, metric,
                             table, reasons, evaluation, is_challenger)


@dataclass
class RollbackResult:
    name: str
    from_version: str
    to_version: str
    skipped: list[str] = field(default_factory=list)  # earlier champions passed over: deleted since
    challenger_cleared: bool = False  # the rolled-back version also held challenger: removed

    def explain(self) -> str:
        skipped = (f" (skipped deleted version{'s' if len(self.skipped) > 1 else ''} {', '.join(self.skipped)})"
                   if self.skipped else "")
        cleared = (f"; version {self.from_version} is no longer {CHALLENGER}, so the next `models promote` does not "
                   f"put it back (`models promote --version {self.from_version}` still can)"
                   if self.challenger_cleared else "")
        return f"{CHAMPION} of {self.name}: version {self.from_version} -> {self.to_version}{skipped}{cleared}"


def rollback(client: MlflowClient, name: str = MODEL_NAME) -> RollbackResult:
    """Point ``champion`` back at the previous champion that still exists (history kept in a
    registered-model tag); earlier champions deleted since are skipped and dropped from the history. The
    rolled-back version loses ``challenger`` too when it held it (else the next promote would restore it)."""
    current = alias_version(client, name, CHAMPION)
    if current is None:
        raise RegistryError(f"model {name!r} has no {CHAMPION} to roll back")
    history = champion_history(client, name)
    skipped: list[str] = []
    while history and (history[-1] == str(current.version) or not version_exists(client, name, history[-1])):
        if (gone := history.pop()) != str(current.version) and gone not in skipped:
            skipped.append(gone)
    if not history and skipped:
        raise RegistryError(f"model {name!r}: no earlier {CHAMPION} than version {current.version} still exists "
                            f"(deleted: version {', '.join(skipped)}); nothing to roll back to")
    if not history:
        raise RegistryError(f"model {name!r}: version {current.version} is the first champion; nothing to roll back to")
    previous = history[-1]
    challenger = alias_version(client, name, CHALLENGER)
    cleared = challenger is not None and str(challenger.version) == str(current.version)
    with _noted(_may_be_champion(name, previous)):
        _set_champion(client, name, previous, history)
        client.set_model_version_tag(name, current.version, "rolled_back_at",
                                     datetime.now(UTC).replace(microsecond=0).isoformat())
        if cleared:  # else the next promote (of the challenger, by default) undoes the rollback
            client.delete_registered_model_alias(name, CHALLENGER)
    return RollbackResult(name, str(current.version), previous, skipped, cleared)


# ----- listing, export --------------------------------------------------------------------------
def list_versions(client: MlflowClient, name: str = MODEL_NAME) -> pd.DataFrame:
    """One row per version: aliases, run, training date, evaluation window, headline metrics, description."""
    versions = client.search_model_versions(f"name = '{name}'")
    history = champion_history(client, name)
    rows = []
    for v in sorted(versions, key=lambda v: int(v.version)):
        full = client.get_model_version(name, v.version)
        rows.append({
            "version": int(v.version),
            "aliases": ", ".join(sorted(full.aliases)),
            "was_champion": str(v.version) in history,
            "run_id": v.run_id,
            "trained_at": full.tags.get("trained_at", ""),
            "eval_as_of": f"{full.tags.get('eval_as_of_min', '')[:10]}..{full.tags.get('eval_as_of_max', '')[:10]}",
            "eval_rows": full.tags.get("eval_rows", ""),
            "roc_auc": full.tags.get("roc_auc", ""),
            "log_loss": full.tags.get("log_loss", ""),
            "uno_c": full.tags.get("uno_c", ""),
            "ibs": full.tags.get("ibs", ""),
            "leakage_flagged": full.tags.get("leakage_flagged", ""),
            "description": full.description or "",  # where it came from (data, code, seed), when recorded
        })
    return pd.DataFrame(rows)


LINEAGE_TAGS = ("leadscore_version", "git_commit", "git_dirty", "data_hash", "config_hash", "seed")


def champion_info(client: MlflowClient, name: str, version: ModelVersion, alias: str) -> dict[str, Any]:
    """What a deployment needs to know about an exported model (``champion.json``). The MQL cut-off
    (``threshold``, ``threshold_unit``) only for a sales-readiness model: a time-to-close model has none."""
    tags = version.tags
    cutoff = tags.get("mql_cutoff")
    horizon = None
    if version.run_id:
        params = client.get_run(version.run_id).data.params
        horizon = params.get("model.horizon_days")
    mql = {}
    if tags.get(KIND_TAG) in (None, "", SALES_READINESS_KIND):
        mql = {"threshold": None if cutoff is None else float(cutoff),
               "threshold_unit": "score 0-100 (MQL cut-off recommended for capacity)"}
    return {
        "name": name,
        "version": str(version.version),
        "alias": alias,
        "run_id": version.run_id,
        "training_date": tags.get("trained_at"),
        "horizon_days": None if horizon in (None, "None") else float(horizon),
        **mql,
        "evaluation": {k: v for k, v in tags.items() if k.startswith("eval_")},
        # the latest outcomes it was fitted or calibrated on (a forecast before it is in-sample); a version refit
        # for deployment before the tag existed: at least the end of the test slice it was calibrated on
        **({"fitted_until": until} if (until := tags.get("fitted_until") or (
            tags.get("eval_as_of_max") if tags.get("refit") == "true" else None)) else {}),
        "metrics": {k: float(tags[k]) for k in VERSION_METRICS if k in tags and k != "mql_cutoff"},
        # where it came from (data, code, config, seed: training.lineage), for a deployment without the registry
        "lineage": {**{k: tags[k] for k in LINEAGE_TAGS if k in tags}, "description": version.description or ""},
        "exported_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
    }


# errors only the folder written to gives (a copy's source is only read): disk full, quota, file too large, read-only
_DESTINATION_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS})


def _destination_error(exc: MlflowException, folder: Path) -> OSError | None:
    """The OSError of ``folder`` that MLflow's download folded into its message ("[Errno 28] No space left on
    device: ..." per file), or None when the failure is another (the store, a missing artifact)."""
    found = re.search(r"\[Errno (\d+)\] ([^:\n]+)", exc.message)
    if found is None or int(found.group(1)) not in _DESTINATION_ERRNOS:
        return None
    return OSError(int(found.group(1)), found.group(2).strip(), str(folder))


def export_champion(client: MlflowClient, out_dir: str | Path, name: str = MODEL_NAME, alias: str = CHAMPION) -> Path:
    """Write ``<out_dir>/<name>/`` = the pyfunc model directory + ``champion.json``; replaces an older export.

    Only the champion goes to ``<out_dir>/<name>/``, where ``serve`` / ``rescore --model-dir`` look;
    another alias or a version number goes to ``<out_dir>/<name>@<alias>/`` (point ``--model-dir``
    at that folder to use it), so exporting the challenger never replaces the deployed champion.
    """
    version = resolve_version(client, name, alias)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    alias = alias.removeprefix("@")
    final = out_dir / (name if alias == CHAMPION else f"{name}@{alias}")
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=out_dir))
    try:
        _bind(client)
        try:
            mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version.version}", dst_path=str(staging))
        except MlflowException as exc:
            if (error := _destination_error(exc, staging)) is not None:
                raise error from exc
            raise
        info = champion_info(client, name, version, alias)
        (staging / CHAMPION_FILE).write_text(json.dumps(info, indent=2), encoding="utf-8")
        if final.exists():
            shutil.rmtree(final)
        staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final
