"""Registry rules on a real SQLite tracking store: first champion, refusals, promotion, rollback,
strict leakage, export and listing (aliases only)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from tests.integration.mlflow_support import fitted, shared_project
from training.config import BoosterConfig
from training.registry import (
    CHALLENGER,
    CHAMPION,
    CHAMPION_FILE,
    HISTORY_TAG,
    MODEL_NAME,
    RegistryError,
    alias_version,
    champion_info,
    export_champion,
    list_versions,
    promote,
    rollback,
)
from training.tracking import TEST_SET_ARTIFACT, connect, load_run_frame, tracking_target
from training.workflow import track_and_register


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory):
    project, training_set, _ = shared_project()
    target = tracking_target(None, tmp_path_factory.mktemp("registry"))

    def register(kind: str, strict: bool | None = None):
        # the registry rules read metrics, aliases and tags, never the run's figures: not logged here (the
        # figures "good" logs are checked in test_tracking.py)
        result = dataclasses.replace(fitted(kind), figures={})
        return track_and_register(target, project, training_set, result, strict_leakage=strict)

    return target, connect(target), register


def _champion(client) -> str | None:
    version = alias_version(client, MODEL_NAME, CHAMPION)
    return None if version is None else str(version.version)


def test_promotion_rules_and_rollback(registry) -> None:
    target, client, register = registry
    constant = register("constant")
    assert str(alias_version(client, MODEL_NAME, CHALLENGER).version) == constant.model_version
    refused = promote(client)
    assert not refused.promoted and refused.champion_version is None
    assert any("NOT beat the best baseline" in r for r in refused.reasons)
    assert _champion(client) is None

    medium = register("medium")
    first = promote(client)
    assert first.promoted, first.explain()
    assert any("first champion" in r for r in first.reasons)
    assert _champion(client) == medium.model_version

    worse = register("constant")
    decision = promote(client)
    assert not decision.promoted
    assert any("NOT beat the champion" in r for r in decision.reasons)
    assert not any("was fitted on those snapshots" in r for r in decision.reasons)  # same split: none of them
    assert f"champion v{medium.model_version}" in decision.table.columns
    assert _champion(client) == medium.model_version
    assert str(alias_version(client, MODEL_NAME, CHALLENGER).version) == worse.model_version

    good = register("good")
    # a champion whose test slice starts after some of the rows (a later run with a larger test_fraction) was
    # fitted on them: the decision says how many
    rows = load_run_frame(client, good.run_id, TEST_SET_ARTIFACT)
    latest = pd.Timestamp(rows["as_of"].max())
    own_start = client.get_model_version(MODEL_NAME, medium.model_version).tags["eval_as_of_min"]
    client.set_model_version_tag(MODEL_NAME, medium.model_version, "eval_as_of_min", latest.isoformat())
    better = promote(client)
    client.set_model_version_tag(MODEL_NAME, medium.model_version, "eval_as_of_min", own_start)
    fitted_rows = int((rows["as_of"] < latest).sum())
    assert 0 < fitted_rows < len(rows)
    assert (f"note: {fitted_rows:,} of {len(rows):,} evaluation rows are dated before {latest:%Y-%m-%d}, where "
            f"champion v{medium.model_version}'s test slice starts: it was fitted on those snapshots, which favours "
            "it in this comparison") in better.reasons, better.reasons
    assert better.promoted, better.explain()
    table = better.table
    assert table.loc["roc_auc", f"challenger v{good.model_version}"] > table.loc["roc_auc", f"champion v{medium.model_version}"]
    assert _champion(client) == good.model_version
    history = json.loads(client.get_registered_model(MODEL_NAME).tags[HISTORY_TAG])
    assert history == [medium.model_version, good.model_version]

    with pytest.raises(RegistryError, match="already the champion"):
        promote(client, version=good.model_version)
    with pytest.raises(RegistryError, match="cannot decide the promotion .* use one of"):
        promote(client, version=worse.model_version, metric="ece")  # a constant score would win on it

    back = rollback(client)
    assert (back.from_version, back.to_version) == (good.model_version, medium.model_version)
    assert _champion(client) == medium.model_version
    # the rolled-back version was the challenger too: the next promote must not restore it
    assert back.challenger_cleared and alias_version(client, MODEL_NAME, CHALLENGER) is None
    assert back.explain().endswith(f"version {good.model_version} is no longer challenger, so the next `models "
                                   f"promote` does not put it back (`models promote --version {good.model_version}` "
                                   "still can)"), back.explain()
    with pytest.raises(RegistryError, match="challenger"):
        promote(client)
    with pytest.raises(RegistryError, match="first champion"):
        rollback(client)

    listing = list_versions(client)
    assert len(listing) == 4
    row = listing.set_index("version").loc[int(medium.model_version)]
    assert row["aliases"] == CHAMPION and bool(row["was_champion"])


def test_strict_leakage_refuses_registration(registry) -> None:
    _, client, register = registry
    before = len(client.search_model_versions(f"name = '{MODEL_NAME}'"))
    run = register("leaky", strict=True)
    assert run.model_version is None and run.refusal and "leakage" in run.refusal
    assert client.get_run(run.run_id).data.tags["leadscore.registration"].startswith("refused")
    assert len(client.search_model_versions(f"name = '{MODEL_NAME}'")) == before
    relaxed = register("leaky", strict=False)
    assert relaxed.model_version is not None
    assert client.get_model_version(MODEL_NAME, relaxed.model_version).tags["leakage_flagged"] == "true"


def test_export_champion_for_deployment(registry, tmp_path: Path) -> None:
    target, client, register = registry
    if _champion(client) is None:
        register("good")
        assert promote(client).promoted
    champion = alias_version(client, MODEL_NAME, CHAMPION)
    path = export_champion(client, tmp_path / "models")
    assert path == tmp_path / "models" / MODEL_NAME
    info = json.loads((path / CHAMPION_FILE).read_text())
    assert info["version"] == str(champion.version) and info["run_id"] == champion.run_id
    assert info["horizon_days"] == 90 and info["training_date"] == champion.tags["trained_at"]
    assert info["threshold"] == float(champion.tags["mql_cutoff"])  # the MQL cut-off the version was registered with
    # where the deployed model came from, without a tracking server to ask
    assert info["lineage"]["description"] == champion.description and "; data: leads " in champion.description
    for key in ("leadscore_version", "git_commit", "git_dirty", "data_hash", "config_hash", "seed"):
        assert info["lineage"][key] == champion.tags[key]
    project, training_set, _ = shared_project()
    local = mlflow.pyfunc.load_model(str(path))
    registered = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@{CHAMPION}")
    from training.pyfunc import to_pyfunc_input

    rows = to_pyfunc_input(training_set.frame[training_set.spec.columns_].iloc[:50])
    np.testing.assert_allclose(local.predict(rows), registered.predict(rows))
    again = export_champion(client, tmp_path / "models")
    assert again == path and sorted(p.name for p in (tmp_path / "models").iterdir()) == [MODEL_NAME]
    # another alias never lands where the deployed champion is loaded from
    other = export_champion(client, tmp_path / "models", alias=CHALLENGER)
    assert other == tmp_path / "models" / f"{MODEL_NAME}@{CHALLENGER}"
    assert json.loads((other / CHAMPION_FILE).read_text())["alias"] == CHALLENGER
    assert json.loads((path / CHAMPION_FILE).read_text())["version"] == str(champion.version)


def test_champion_json_names_an_mql_cut_off_only_for_sales_readiness(tmp_path: Path) -> None:
    """``threshold`` / ``threshold_unit`` (score 0-100 MQL cut-off) mean nothing for a time-to-close model:
    its champion.json leaves them out; a sales-readiness version keeps them (null when no cut-off fitted)."""
    client = connect(tracking_target(None, tmp_path))
    experiment = client.create_experiment("champion-json")
    infos = {}
    for name, tags in (("lead-time-to-close", {"kind": "time_to_close", "uno_c": "0.71"}),
                       ("lead-conversion", {"kind": "sales_readiness", "mql_cutoff": "12"}),
                       ("untagged", {})):
        run = client.create_run(experiment)
        client.log_param(run.info.run_id, "model.horizon_days", "180")
        client.create_registered_model(name)
        version = client.create_model_version(name, f"runs:/{run.info.run_id}/model", run.info.run_id, tags=tags)
        infos[name] = champion_info(client, name, client.get_model_version(name, version.version), CHAMPION)
    ttc = infos["lead-time-to-close"]
    assert "threshold" not in ttc and "threshold_unit" not in ttc, ttc
    assert ttc["horizon_days"] == 180 and ttc["metrics"] == {"uno_c": 0.71}
    assert infos["lead-conversion"]["threshold"] == 12 and "MQL" in infos["lead-conversion"]["threshold_unit"]
    assert infos["untagged"]["threshold"] is None and "threshold_unit" in infos["untagged"]


def test_promote_measures_ece_with_the_runs_bins(tmp_path: Path) -> None:
    """The promotion table's ECE is the one the run reported (its training.ece_bins / ece_binning), not
    10 equal-mass bins beside baselines measured with the project's bins."""
    from training.workflow import fit_training_set

    project, training_set, data = shared_project()
    training = project.training.model_copy(update={
        "make_plots": False, "ece_bins": 4, "ece_binning": "equal_width",
        "booster": BoosterConfig(max_rounds=20, num_leaves=3, max_depth=2, learning_rate=0.3)})
    result = fit_training_set(training_set, data, training)
    project = project.model_copy(update={"training": training})
    target = tracking_target(None, tmp_path)
    run = track_and_register(target, project, training_set, result)
    client = connect(target)
    logged = client.get_run(run.run_id).data.metrics["ece"]
    decision = promote(client)
    assert decision.table.loc["ece", f"challenger v{run.model_version}"] == pytest.approx(logged, abs=1e-9)


def test_an_export_the_disk_cannot_hold_is_an_os_error_and_leaves_nothing(registry, tmp_path: Path) -> None:
    """A disk that fills while the model files are copied (a tmpfs of 2 MB; here the process's file size limit,
    the same refusal of the bytes) made MLflow's download raise "The following failures occurred while
    downloading one or more artifacts", and `models export` print its 140-line traceback. Now an OSError with
    the system's reason, which `models export` prints as one line, and no staging folder left behind."""
    import errno
    import resource

    _, client, register = registry
    if _champion(client) is None:
        register("good")
        assert promote(client).promoted
    out = tmp_path / "models"
    out.mkdir()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))  # writing past 4 KiB: EFBIG (Python ignores SIGXFSZ)
    try:
        with pytest.raises(OSError) as raised:
            export_champion(client, out)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert raised.value.errno == errno.EFBIG and raised.value.strerror == "File too large", raised.value
    assert list(out.iterdir()) == []
