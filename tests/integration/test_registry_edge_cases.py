"""Registry edge cases on a real SQLite tracking store: champions deleted from the history, a champion
built with another feature spec, the deciding metric in the side-by-side table, the column labels."""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path

import pytest

from features.build import build_training_set
from tests.integration.mlflow_support import SMALL_TRAINING, fitted, shared_project
from training.registry import (
    CHALLENGER,
    CHAMPION,
    HISTORY_TAG,
    MODEL_NAME,
    RegistryError,
    alias_version,
    promote,
    rollback,
)
from training.sales_readiness import TrainingResult
from training.tracking import connect, tracking_target
from training.workflow import fit_training_set, track_and_register


@pytest.fixture
def registry(tmp_path: Path):
    """(tracking target, client, register(kind) -> model version) on a fresh store."""
    project, training_set, _ = shared_project()
    target = tracking_target(None, tmp_path / "store")

    def register(kind: str, refit: bool = True) -> str:
        # the rules read versions, aliases and tags, not the run's figures: not logged here (the figures of
        # "good" are checked in test_tracking.py)
        result = dataclasses.replace(fitted(kind, refit), figures={})
        return track_and_register(target, project, training_set, result).model_version

    return target, connect(target), register


@functools.cache
def _short_windows() -> tuple[object, TrainingResult]:
    """A training set with count windows (7, 30) instead of the default (7, 30, 90), and a model on it."""
    project, _, data = shared_project()
    spec = project.features.model_copy(update={"windows": (7, 30)})
    training_set = build_training_set(data, spec, set_aside=project.training.score_columns)
    return training_set, fit_training_set(training_set, data, SMALL_TRAINING.model_copy(update={"make_plots": False}))


def _champion(client) -> str | None:
    version = alias_version(client, MODEL_NAME, CHAMPION)
    return None if version is None else str(version.version)


def _history(client) -> list[str]:
    return json.loads(client.get_registered_model(MODEL_NAME).tags[HISTORY_TAG])


def _cli(*args: str) -> tuple[int, str, BaseException | None]:
    from typer.testing import CliRunner

    from leadscore.cli import app

    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200", "NO_COLOR": "1"})
    return result.exit_code, result.output, result.exception


def test_deleted_champions_labels_and_the_deciding_metric_row(registry) -> None:
    target, client, register = registry
    medium = register("medium")
    assert promote(client).promoted
    good = register("good")
    decision = promote(client, metric="top_decile_lift")
    assert decision.promoted, decision.explain()
    # the deciding metric is a row of the side-by-side table, even though it is not a default row
    assert decision.table.loc["top_decile_lift", f"challenger v{good}"] > decision.table.loc[
        "top_decile_lift", f"champion v{medium}"]
    assert any("on top_decile_lift" in r for r in decision.reasons)

    constant = register("constant")  # the challenger alias now points at it
    client.delete_model_version(MODEL_NAME, good)  # the champion is deleted: its alias goes with it
    assert _champion(client) is None
    again = promote(client, version=medium)
    assert again.promoted, again.explain()
    assert list(again.table.columns)[0] == f"candidate v{medium}"  # not the challenger (v{constant})
    assert str(alias_version(client, MODEL_NAME, CHALLENGER).version) == constant
    assert f"no current champion (version {good}, the last one, was deleted)" in " ".join(again.reasons)
    assert not any("first champion" in r for r in again.reasons)
    assert _history(client) == [medium, good, medium]

    # the only earlier champion (v{good}) was deleted: a clear refusal, not an MLflow traceback
    with pytest.raises(RegistryError, match=rf"no earlier champion than version {medium} .*deleted: version {good}"):
        rollback(client)
    code, output, exception = _cli("models", "rollback", "--tracking-uri", target.uri)
    assert code == 1 and isinstance(exception, SystemExit), output
    assert "Traceback" not in output and "MlflowException" not in output
    assert len(output.strip().splitlines()) == 1 and "nothing to roll back to" in output
    assert _champion(client) == medium


def test_rollback_skips_a_deleted_previous_champion(registry) -> None:
    target, client, register = registry
    first = register("medium")
    assert promote(client).promoted
    second = register("good")
    assert promote(client).promoted
    client.delete_model_version(MODEL_NAME, second)
    third = register("medium")
    assert promote(client).promoted  # no current champion: it only has to beat the baselines
    assert _history(client) == [first, second, third]

    code, output, exception = _cli("models", "rollback", "--tracking-uri", target.uri)
    assert code == 0, (output, exception)
    assert f"version {third} -> {first} (skipped deleted version {second})" in output
    assert _champion(client) == first
    assert _history(client) == [first]


def test_champion_built_with_another_feature_spec_is_named_briefly(registry) -> None:
    target, client, register = registry
    # default windows (7, 30, 90); the backtest model: a refit one takes these rows' probabilities from its run
    register("medium", refit=False)
    assert promote(client).promoted
    project, _, _ = shared_project()
    training_set, result = _short_windows()
    track_and_register(target, project, training_set, result)
    with pytest.raises(RegistryError) as caught:
        promote(client)
    message = str(caught.value)
    assert len(message) < 500 and "\n" not in message, message
    assert "Failed to enforce schema" not in message
    assert "feature column(s) they lack" in message and "email_open_count_90d" in message
    assert "different feature specs" in message


def test_a_champion_asked_for_before_any_promotion_says_to_promote_the_challenger(tmp_path: Path) -> None:
    """After `leadscore train`, `evaluate --model champion` said "train first" to a user who had just trained:
    the version is the challenger, and promotion is the step missing."""
    from training.registry import resolve_version

    client = connect(tracking_target(None, tmp_path / "store"))
    client.create_registered_model(MODEL_NAME)
    version = client.create_model_version(MODEL_NAME, source=str(tmp_path / "artifacts"))
    client.set_registered_model_alias(MODEL_NAME, CHALLENGER, version.version)
    with pytest.raises(RegistryError) as error:
        resolve_version(client, MODEL_NAME, CHAMPION)
    message = str(error.value)
    assert f"no champion yet: version {version.version} is the challenger" in message
    assert "leadscore models promote" in message and "train first" not in message
    client.delete_registered_model_alias(MODEL_NAME, CHALLENGER)
    with pytest.raises(RegistryError, match="train first"):
        resolve_version(client, MODEL_NAME, CHAMPION)
