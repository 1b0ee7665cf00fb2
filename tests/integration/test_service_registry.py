"""A real `bentoml serve` process on a real MLflow registry (tracking URI from the environment).

The server starts on an empty registry (up, not ready), loads the ``champion`` alias once one is
registered, follows promotions without a restart while requests keep succeeding, and answers a
model failure at request time with a 500 and an error id that is in its log (no stack trace in the
response). The failing model is a real one: the champion refitted with LightGBM's
``linear_tree=True``, which predicts but for which LightGBM has no TreeSHAP, so every request for
reasons fails inside LightGBM while score-only requests still succeed.
"""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from features.build import scoring_matrix
from serving.core import ModelInfo, ScoringCore
from tests.serving_fixtures import (
    AS_OF,
    TIME_TO_CLOSE_NAME,
    ChampionRegistry,
    TrainedChampion,
    linear_tree_variant,
    payloads_from_crm,
    start_server,
    train_small_champion,
    train_small_time_to_close,
)

WAIT_SECONDS = 60


@pytest.fixture(scope="module")
def champions() -> dict[str, TrainedChampion]:
    return {"a": train_small_champion(n_leads=800, seed=4), "b": train_small_champion(n_leads=800, seed=5)}


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> ChampionRegistry:
    return ChampionRegistry(tmp_path_factory.mktemp("registry"))


@pytest.fixture(scope="module")
def versions() -> dict[str, str]:
    """Model key -> registered version; filled lazily so that the server first sees an empty registry."""
    return {}


def version_of(key: str, registry: ChampionRegistry, champions: dict[str, TrainedChampion],
               versions: dict[str, str]) -> str:
    """Register model ``key`` ("a", "b", "linear") once; its version number."""
    if key not in versions:
        model = linear_tree_variant(champions["a"]) if key == "linear" else champions[key].model
        features = champions["a" if key == "linear" else key].features
        cutoff = {"a": 4, "b": 6, "linear": 5}[key]
        versions[key] = registry.register(model, features, mql_cutoff=cutoff, trained_at=f"2026-06-0{len(versions) + 1}")
    return versions[key]


@pytest.fixture(scope="module")
def server(tmp_path_factory, registry):
    project = tmp_path_factory.mktemp("project")  # its embedded mlflow.db does not exist: only the env URI works
    stray = tmp_path_factory.mktemp("stray-registry") / "mlflow.db"  # as MLflow's set_registry_uri leaves behind
    env = {"MLFLOW_TRACKING_URI": registry.uri, "LEADSCORE_PROJECT_DIR": str(project),
           "LEADSCORE_RELOAD_SECONDS": "1", "MLFLOW_REGISTRY_URI": f"sqlite:///{stray}"}
    running = start_server(env, tmp_path_factory.mktemp("server") / "bentoml.log", ready=False)
    yield running
    running.stop()


def served_version(server) -> str | None:
    response = httpx.get(f"{server.url}/model", timeout=10)
    return response.json()["models"][0]["version"] if response.status_code == 200 else None


def wait_for_version(server, version: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if served_version(server) == version and httpx.get(f"{server.url}/readyz").status_code == 200:
            return
        time.sleep(0.5)
    raise AssertionError(f"server still serves {served_version(server)!r}, not version {version}, "
                         f"after {WAIT_SECONDS}s:\n{server.log.read_text()[-3000:]}")


def serve(key: str, server, registry, champions, versions) -> str:
    version = version_of(key, registry, champions, versions)
    registry.promote(version)
    wait_for_version(server, version)
    return version


def score(server, leads, top_k: int = 3) -> httpx.Response:
    return httpx.post(f"{server.url}/score", json={"leads": leads, "as_of": AS_OF.isoformat(), "top_k": top_k},
                      timeout=30)


def test_ready_only_once_a_champion_is_registered(server, registry, champions, versions) -> None:
    assert not versions, "this test checks the empty registry: it must run first in the module (file order)"
    assert httpx.get(f"{server.url}/livez").status_code == 200
    assert httpx.get(f"{server.url}/readyz").status_code == 503
    first = int(champions["a"].crm.leads["lead_id"].iloc[0])
    not_yet = score(server, payloads_from_crm(champions["a"].crm, [first], AS_OF))
    assert not_yet.status_code == 503 and "no model loaded" in not_yet.text
    assert httpx.get(f"{server.url}/model").status_code == 503
    reload = httpx.post(f"{server.url}/reload", timeout=30)  # nothing to keep serving: 503 with the reason
    assert reload.status_code == 503 and "no model is loaded" in reload.text and reload.json()["detail"]
    serve("a", server, registry, champions, versions)
    assert httpx.get(f"{server.url}/readyz").status_code == 200


def test_champion_comes_from_the_registry(server, registry, champions, versions) -> None:
    version = serve("a", server, registry, champions, versions)
    info = httpx.get(f"{server.url}/model").json()["models"][0]
    assert info["source"] == "models:/lead-conversion@champion"
    assert (info["name"], info["version"], info["mql_cutoff"]) == ("lead-conversion", version, 4)
    assert info["training_date"].startswith("2026-06-0") and info["horizon_days"] == 90
    champion = champions["a"]
    ids = [int(i) for i in champion.crm.leads["lead_id"].iloc[:10]]
    answer = score(server, payloads_from_crm(champion.crm, ids, AS_OF))
    assert answer.status_code == 200, answer.text
    core = ScoringCore(champion.model, ModelInfo("lead-conversion", version, mql_cutoff=4))
    all_ids, matrix = scoring_matrix(champion.crm, core.spec, AS_OF, eligible_only=False)
    rows = [list(all_ids).index(i) for i in ids]
    expected = core.score_matrix(all_ids[rows], matrix[rows], 3).to_records()
    for got, want in zip(answer.json()["scores"], expected, strict=True):
        assert got["probability"] == pytest.approx(want["probability"], abs=1e-12)
        assert [r["feature"] for r in got["reasons"]] == [r["feature"] for r in want["reasons"]]
        assert got["p_close_90d"] is None and got["median_days"] is None  # no time-to-close model registered
    assert answer.json()["time_to_close_model"] is None


def test_promotion_is_picked_up_while_requests_succeed(server, registry, champions, versions) -> None:
    serve("a", server, registry, champions, versions)
    new_version = version_of("b", registry, champions, versions)
    leads = payloads_from_crm(champions["b"].crm, [int(i) for i in champions["b"].crm.leads["lead_id"].iloc[:3]],
                              AS_OF)
    statuses: list[int] = []
    seen: set[str] = set()
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(timeout=30) as client:
            for _ in range(2000):  # bounded; stops once the new champion answered a while
                response = client.post(f"{server.url}/score", json={"leads": leads, "as_of": AS_OF.isoformat()})
                statuses.append(response.status_code)
                if response.status_code == 200:
                    seen.add(response.json()["model"]["version"])
                if stop.is_set():
                    return

    worker = threading.Thread(target=hammer)
    worker.start()
    try:
        time.sleep(0.5)
        registry.promote(new_version)
        wait_for_version(server, new_version)
        time.sleep(0.5)
    finally:
        stop.set()
        worker.join(60)
    assert statuses and set(statuses) == {200}, sorted(set(statuses))
    assert new_version in seen and len(seen) == 2, seen
    info = httpx.get(f"{server.url}/model").json()["models"][0]
    assert info["mql_cutoff"] == 6


def test_time_to_close_champion_is_served_beside(server, registry, champions, versions) -> None:
    """Promoting a time-to-close model is picked up like a new champion; the answers gain its fields."""
    readiness = serve("b", server, registry, champions, versions)
    closing = train_small_time_to_close(n_leads=800, seed=4)
    ttc_version = registry.register_time_to_close(closing, champions["a"].features, trained_at="2026-06-09")
    registry.promote(ttc_version, TIME_TO_CLOSE_NAME)
    deadline = time.monotonic() + WAIT_SECONDS
    models: list[dict] = []
    while time.monotonic() < deadline and len(models) < 2:
        models = httpx.get(f"{server.url}/model", timeout=10).json()["models"]
        time.sleep(0.5)
    assert [(m["name"], m["version"]) for m in models] == [("lead-conversion", readiness),
                                                           (TIME_TO_CLOSE_NAME, ttc_version)], models
    ids = [int(i) for i in champions["b"].crm.leads["lead_id"].iloc[:5]]
    answer = score(server, payloads_from_crm(champions["b"].crm, ids, AS_OF))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["time_to_close_model"]["version"] == ttc_version
    for lead in body["scores"]:
        assert lead["p_close_90d"] == pytest.approx(lead["probability"], abs=1e-12)  # 90-day horizon
        assert 0 <= lead["p_close_30d"] <= lead["p_close_60d"] <= lead["p_close_90d"]


def test_model_failure_is_a_500_with_an_error_id_in_the_log(server, registry, champions, versions) -> None:
    version = serve("linear", server, registry, champions, versions)
    model_info = httpx.get(f"{server.url}/model").json()
    assert "linear trees" in model_info["explain_error"]
    leads = payloads_from_crm(champions["a"].crm, [int(champions["a"].crm.leads["lead_id"].iloc[0])], AS_OF)
    scores_only = score(server, leads, top_k=0)
    assert scores_only.status_code == 200 and scores_only.json()["model"]["version"] == version
    failed = score(server, leads, top_k=3)
    assert failed.status_code == 500, failed.text
    body = failed.json()
    assert set(body) == {"error", "error_id"} and len(body["error_id"]) == 12
    for leak in ("Traceback", "LightGBM", "File \"", ".py", "linear"):
        assert leak not in failed.text, failed.text
    deadline = time.monotonic() + 10
    while body["error_id"] not in server.log.read_text() and time.monotonic() < deadline:
        time.sleep(0.2)  # the log is flushed by the server process
    log = server.log.read_text()
    assert f"error_id={body['error_id']}" in log
    assert "not implemented for linear trees" in log[log.index(body["error_id"]):]
    assert httpx.get(f"{server.url}/readyz").status_code == 200  # still serving scores


def test_log_has_no_lead_attributes(server, registry, champions, versions) -> None:
    if served_version(server) is None:  # run on its own: a champion first
        serve("a", server, registry, champions, versions)
    lead = payloads_from_crm(champions["a"].crm, [int(champions["a"].crm.leads["lead_id"].iloc[1])], AS_OF)[0]
    lead["attributes"]["industry"] = "zeppelin-salvage"
    lead["attributes"]["employees"] = "a-great-many"
    assert score(server, [lead], top_k=0).status_code == 400
    lead["attributes"]["employees"] = 12
    assert score(server, [lead], top_k=0).status_code == 200
    time.sleep(0.5)
    log = server.log.read_text()
    assert "zeppelin-salvage" not in log and "a-great-many" not in log
    assert "serving model lead-conversion version" in log  # INFO lines of the service do reach the log
