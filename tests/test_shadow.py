"""The shadow challenger, end to end (`ATTRITION_SHADOW_MODEL_TAG`): every call the champion
answers is also scored by a second model, stored beside it and never answered; a challenger
that fails costs no call; `bentoml build` packs both models; purge takes the shadow's rows
with their prediction.

The challenger is trained by the real CLI in a store of its own, then copied into the
session's store as one more version: `attrition_pipeline:latest` must stay the session's
champion, which every other module's server loads.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import bentoml
import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sqlmodel import Session, col, func, select

import db
from persistence import audit
from persistence.audit import purge_batch, purge_counts
from persistence.engine import session_scope
from persistence.predictions import write_predictions
from persistence.queries import get_employee
from persistence.tables import PredictionRecord, ShadowPrediction, utcnow
from scoring.scorer import Score
from serving.responses import Prediction
from tests.support import REPO, databases
from tests.support.commands import run_cli
from tests.support.databases import Keys, engine_of
from tests.support.payloads import RAW
from tests.support.rows import prediction_row
from tests.support.servers import Service, bentoml_serve
from training.contract import Employee, employees_frame
from training.extracts import load_extracts
from training.store import MODEL_NAME, load

T = TypeVar("T")

BIN = Path(sys.executable).parent
# Another seed and size than the session's champion: a model that scores differently.
CHALLENGER_TRAINING = ("--generated-rows", "400", "--seed", "7", "--folds", "3")
BROKEN_NAME = "attrition_broken_shadow"
FAILURES = "attrition_shadow_failures_total"
DEADLINE_S = 60.0  # the shadow writes after the answers: rows and counters are polled
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
# The calls of one scenario: concurrent /predict, one /predict_batch, concurrent /predict_by_id.
SINGLE_CALLS, BATCH_ROWS, BY_ID_CALLS = 24, 16, 6
CALLS = SINGLE_CALLS + BATCH_ROWS + BY_ID_CALLS


# --- the models ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Models:
    champion: str  # the session's trained model
    challenger: str  # trained by the CLI on other data
    broken: str  # loads at worker start, raises on every scoring


def _session_models() -> Path:
    return Path(os.environ["BENTOML_HOME"]) / "models"


def _train_challenger(folder: Path) -> tuple[str, Path]:
    """`attrition train` in a store of its own: its tag and its folder there."""
    env = os.environ | {
        "BENTOML_HOME": str(folder / "bentoml"),
        "ATTRITION_REPORTS_DIR": str(folder / "reports"),
    }
    run = run_cli("train", *CHALLENGER_TRAINING, env=env)
    assert run.returncode == 0, run.stderr
    found = re.search(rf"^saved ({MODEL_NAME}:\w+)", run.stdout, re.MULTILINE)
    assert found, run.stdout
    tag = found.group(1)
    return tag, folder / "bentoml" / "models" / MODEL_NAME / tag.split(":")[1]


def _save_broken(champion_tag: str) -> str:
    """The champion's fitted preprocessing (the worker builds its Scorer from it at start)
    before an estimator fitted on two columns: it loads, and every `predict_proba` raises."""
    champion = bentoml.models.get(champion_tag)
    preprocess = bentoml.sklearn.load_model(champion).named_steps["preprocess"]
    estimator = LogisticRegression().fit(np.array([[0.0, 0.0], [1.0, 1.0]]), np.array([0, 1]))
    saved = bentoml.sklearn.save_model(
        BROKEN_NAME,
        Pipeline([("preprocess", preprocess), ("model", estimator)]),
        signatures={"predict_proba": {"batchable": True, "batch_dim": 0}},
        metadata=copy.deepcopy(dict(champion.info.metadata)),
    )
    return str(saved.tag)


@pytest.fixture(scope="module")
def models(trained_tag: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Models]:
    challenger, trained_in = _train_challenger(tmp_path_factory.mktemp("challenger"))
    # A plain copy of the version's folder: importing would move `latest` to the challenger.
    copied = _session_models() / MODEL_NAME / challenger.split(":")[1]
    shutil.copytree(trained_in, copied)
    broken = _save_broken(trained_tag)  # another name: `attrition_pipeline:latest` is untouched
    try:
        assert str(bentoml.models.get(f"{MODEL_NAME}:latest").tag) == trained_tag
        assert challenger != trained_tag
        # The broken model fails where intended: not when loaded, only when scoring.
        scorer = load(broken).scorer()
        with pytest.raises(ValueError, match="features"):
            scorer.score(employees_frame([Employee.model_validate(RAW)]))
        yield Models(champion=trained_tag, challenger=challenger, broken=broken)
    finally:
        shutil.rmtree(copied, ignore_errors=True)
        bentoml.models.delete(broken)


# --- servers, databases and calls --------------------------------------------------------------


def serve(url: str, keys: Keys, log: Path, *, champion: str, shadow: str | None) -> Service:
    """`bentoml serve service:Attrition` with explicit champion and shadow tags."""
    env = os.environ | {
        "DATABASE_URL": url,
        "BENTOML_CONFIG": str(REPO / "configuration.yaml"),
        "BENTOML_DO_NOT_TRACK": "true",
        "ATTRITION_MODEL_TAG": champion,
    }
    env.pop("ATTRITION_SHADOW_MODEL_TAG", None)
    if shadow is not None:
        env["ATTRITION_SHADOW_MODEL_TAG"] = shadow
    running = bentoml_serve(env=env, log=log)
    return Service(running.url, running.process, running.log, running.ready_after_s, url, keys)


@contextmanager
def fresh_database(kind: str, request: pytest.FixtureRequest, folder: Path) -> Iterator[str]:
    """An empty database of that kind, dropped on the way out (PostgreSQL)."""
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'shadow.db'}"
    else:
        with databases.fresh_database(request.getfixturevalue("postgres_server")) as url:
            yield url


@contextmanager
def serving(
    kind: str,
    request: pytest.FixtureRequest,
    folder: Path,
    seed_dir: Path,
    *,
    champion: str,
    shadow: str | None,
) -> Iterator[Service]:
    with fresh_database(kind, request, folder) as url:
        keys = databases.prepare_database(url, seed_dir=seed_dir)
        server = serve(url, keys, folder / "serve.log", champion=champion, shadow=shadow)
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="module", params=BACKENDS)
def shadowed(
    request: pytest.FixtureRequest,
    models: Models,
    generated_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Service]:
    """The champion serving, the challenger in its shadow, on a fresh seeded database."""
    folder = tmp_path_factory.mktemp(f"shadowed-{request.param}")
    with serving(
        request.param,
        request,
        folder,
        generated_dir,
        champion=models.champion,
        shadow=models.challenger,
    ) as server:
        yield server


def wait_for(probe: Callable[[], T], done: Callable[[T], bool], what: str) -> T:
    """Poll `probe` until `done` holds; fail with the last value after DEADLINE_S."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        value = probe()
        if done(value):
            return value
        if time.monotonic() > deadline:
            shown = f"{len(value)} rows" if isinstance(value, list) else repr(value)
            raise AssertionError(f"{what}: still {shown} after {DEADLINE_S:.0f} s")
        time.sleep(0.25)


@dataclass(frozen=True)
class Call:
    employee: Employee  # what the champion scored
    answer: dict[str, Any]  # what the caller got


def single_bodies(count: int, offset: int = 0) -> list[dict[str, Any]]:
    """Distinct employees, so that the two models' scores differ from one to the next."""
    return [
        RAW
        | {
            "age": str(22 + (offset + i) * 7 % 40),
            "revenu_mensuel": str(1500 + (offset + i) * 733 % 15000),
            "heure_supplementaires": "Oui" if (offset + i) % 2 else "Non",
            "annees_depuis_la_derniere_promotion": str((offset + i) % 9),
        }
        for i in range(count)
    ]


def post(server: Service, path: str, body: Any, request_id: str) -> httpx.Response:
    headers = server.headers() | {"X-Request-ID": request_id}
    return httpx.post(f"{server.url}{path}", json=body, headers=headers, timeout=60)


def scenario(server: Service, employee_ids: Sequence[int], prefix: str) -> list[Call]:
    """Every predict route, the single ones concurrently: CALLS scored employees."""
    singles = single_bodies(SINGLE_CALLS)
    batch = single_bodies(BATCH_ROWS, offset=SINGLE_CALLS)
    with ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(
                lambda i: post(server, "/predict", singles[i], f"{prefix}-{i}"), range(SINGLE_CALLS)
            )
        )
        by_id = list(
            pool.map(
                lambda e: post(server, "/predict_by_id", {"employee_id": e}, f"{prefix}-id{e}"),
                employee_ids,
            )
        )
    batched = post(server, "/predict_batch", batch, f"{prefix}-batch")
    for answer in [*answers, *by_id, batched]:
        assert answer.status_code == 200, answer.text
    calls = [
        Call(Employee.model_validate(b), a.json()) for b, a in zip(singles, answers, strict=True)
    ]
    calls += [
        Call(Employee.model_validate(b), a) for b, a in zip(batch, batched.json(), strict=True)
    ]
    with engine_of(server.database_url) as engine, Session(engine) as session:
        for employee_id, answer in zip(employee_ids, by_id, strict=True):
            record = get_employee(session, employee_id)
            assert record is not None
            calls.append(Call(Employee.model_validate(record.features), answer.json()))
    assert len(calls) == CALLS
    return calls


def seeded_ids(generated_dir: Path) -> list[int]:
    employees = load_extracts(generated_dir).employees
    return [e.id_employee for e in employees if e.id_employee][:BY_ID_CALLS]


def scores(tag: str, employees: Sequence[Employee]) -> list[Score]:
    """What that model alone says of these employees, in process."""
    return load(tag).scorer().score(employees_frame(list(employees)))


def assert_champion_alone(calls: Sequence[Call], champion: str) -> None:
    """Each answer is the champion's, exactly as without a shadow, and nothing else."""
    expected = scores(champion, [c.employee for c in calls])
    threshold = load(champion).threshold
    for call, alone in zip(calls, expected, strict=True):
        answer = call.answer
        assert set(answer) == set(Prediction.model_fields), answer  # no shadow field
        assert answer["model_tag"] == champion
        assert answer["probability"] == pytest.approx(alone.probability, abs=1e-9)
        assert answer["prediction"] == alone.prediction
        assert answer["risk_band"] == alone.risk_band
        assert answer["threshold"] == threshold
        assert [f["feature"] for f in answer["top_factors"]] == [
            f["feature"] for f in alone.top_factors
        ]
        assert [f["contribution"] for f in answer["top_factors"]] == pytest.approx(
            [f["contribution"] for f in alone.top_factors], abs=2e-4
        )


def shadow_rows(url: str, prediction_ids: Sequence[uuid.UUID]) -> list[ShadowPrediction]:
    with engine_of(url) as engine, Session(engine) as session:
        statement = select(ShadowPrediction).where(
            col(ShadowPrediction.prediction_id).in_(prediction_ids)
        )
        return list(session.exec(statement))


def champion_rows(url: str, prefix: str) -> list[PredictionRecord]:
    with engine_of(url) as engine, Session(engine) as session:
        statement = select(PredictionRecord).where(
            col(PredictionRecord.request_id).startswith(f"{prefix}-")
        )
        return list(session.exec(statement))


def failures_counted(server: Service) -> float:
    """`attrition_shadow_failures_total` summed over the workers' series."""
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == FAILURES
    )


def read(server: Service, path: str) -> dict[str, Any]:
    answer = httpx.get(f"{server.url}{path}", headers=server.headers(server.keys.read), timeout=30)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


# --- with a shadow ---------------------------------------------------------------------------


@pytest.mark.e2e
def test_every_call_is_answered_by_the_champion_and_shadowed_once(
    shadowed: Service, models: Models, generated_dir: Path
):
    prefix = uuid.uuid4().hex[:10]
    calls = scenario(shadowed, seeded_ids(generated_dir), prefix)
    assert_champion_alone(calls, models.champion)

    ids = [uuid.UUID(c.answer["prediction_id"]) for c in calls]
    assert len(set(ids)) == CALLS
    stored = champion_rows(shadowed.database_url, prefix)
    assert {r.id for r in stored} == set(ids)
    assert {r.model_tag for r in stored} == {models.champion}

    shadows = wait_for(
        lambda: shadow_rows(shadowed.database_url, ids),
        lambda rows: len(rows) >= CALLS,
        "shadow rows",
    )
    time.sleep(0.5)  # a duplicate written late would show now
    shadows = shadow_rows(shadowed.database_url, ids)
    by_prediction = {s.prediction_id: s for s in shadows}
    assert len(shadows) == len(by_prediction) == CALLS, "one shadow row per champion row"

    challenger = load(models.challenger)
    expected = scores(models.challenger, [c.employee for c in calls])
    differ = 0
    for call, prediction_id, alone in zip(calls, ids, expected, strict=True):
        shadow = by_prediction[prediction_id]
        assert shadow.model_tag == models.challenger
        assert shadow.threshold == challenger.threshold  # its own, not the champion's
        assert shadow.probability == pytest.approx(alone.probability, abs=1e-9)
        assert shadow.prediction == int(shadow.probability >= challenger.threshold)
        differ += abs(shadow.probability - call.answer["probability"]) > 1e-6
    # The models disagree, so the answers above could not have been the challenger's.
    assert differ >= CALLS // 2


@pytest.mark.e2e
def test_a_prediction_shows_its_shadow_score_in_a_field_of_its_own(
    shadowed: Service, models: Models
):
    answer = post(shadowed, "/predict", RAW, uuid.uuid4().hex).json()
    prediction_id = uuid.UUID(answer["prediction_id"])
    [shadow] = wait_for(
        lambda: shadow_rows(shadowed.database_url, [prediction_id]), bool, "shadow row"
    )

    detail = read(shadowed, f"/predictions/{prediction_id}")
    assert detail["model_tag"] == models.champion
    assert detail["probability"] == answer["probability"]
    assert detail["shadow"]["model_tag"] == models.challenger
    assert detail["shadow"]["probability"] == pytest.approx(shadow.probability)
    assert detail["shadow"]["prediction"] == shadow.prediction
    assert detail["shadow"]["threshold"] == load(models.challenger).threshold
    assert detail["shadow"]["created_at"]


@pytest.mark.e2e
def test_the_model_card_lists_the_champion_and_the_shadow(shadowed: Service, models: Models):
    challenger = bentoml.models.get(models.challenger).info.metadata
    get = read(shadowed, "/model")
    post_ = httpx.post(
        f"{shadowed.url}/model", json={}, headers=shadowed.headers(), timeout=30
    ).json()
    for card in (get, post_):
        assert card["tag"] == models.champion
        assert card["shadow"]["tag"] == models.challenger
        assert card["shadow"]["threshold"] == challenger["threshold"]
        assert card["shadow"]["metrics"] == challenger["metrics"]
        assert card["shadow"]["training_data"] == challenger["training_data"]
        assert card["shadow"]["training_data"] != card["training_data"]


# --- a shadow that fails ---------------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.parametrize("kind", BACKENDS)
def test_a_failing_shadow_costs_no_call_and_is_counted(
    kind: str,
    request: pytest.FixtureRequest,
    models: Models,
    generated_dir: Path,
    tmp_path: Path,
):
    with serving(
        kind, request, tmp_path, generated_dir, champion=models.champion, shadow=models.broken
    ) as server:
        assert failures_counted(server) == 0
        prefix = uuid.uuid4().hex[:10]
        calls = scenario(server, seeded_ids(generated_dir), prefix)  # every call 200
        assert_champion_alone(calls, models.champion)
        ids = [uuid.UUID(c.answer["prediction_id"]) for c in calls]
        assert {r.id for r in champion_rows(server.database_url, prefix)} == set(ids)

        # Every row the shadow could not score is counted, across the workers.
        counted = wait_for(lambda: failures_counted(server), lambda n: n >= CALLS, f"{FAILURES}")
        assert counted == CALLS
        assert shadow_rows(server.database_url, ids) == []
        detail = read(server, f"/predictions/{ids[0]}")
        assert detail["shadow"] is None
        assert read(server, "/model")["shadow"]["tag"] == models.broken
        # Logged at most once a minute per worker, not once per call.
        log = server.log.read_text(errors="replace")
        assert 1 <= log.count("the shadow model failed") <= 2, server.log_tail()


# --- the Bento -------------------------------------------------------------------------------


@pytest.mark.e2e
def test_make_bento_packs_the_champion_and_the_shadow_the_models_file_names(
    models: Models, tmp_path: Path
):
    """`make bento` reads the models file (deploy/models.env in CD) and `bentoml build` packs
    both models, through the service's declaration of each: the bentofile names none, and the
    store's `latest` (the session's champion here, its newest other version in CD) adds none."""
    models_file = tmp_path / "models.env"
    models_file.write_text(
        f"ATTRITION_MODEL_TAG={models.champion}\nATTRITION_SHADOW_MODEL_TAG={models.challenger}\n"
    )
    env = os.environ | {
        # Building imports service.py, which builds an engine: keep it out of the repository.
        "DATABASE_URL": f"sqlite:///{tmp_path}/build.db",
        # The file wins over the caller's environment.
        "ATTRITION_SHADOW_MODEL_TAG": models.broken,
    }
    run = subprocess.run(
        # -o install: the venv is the one running this test; never re-sync it from here.
        ["make", "--no-print-directory", "-o", "install", "bento", f"MODELS={models_file}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    built = re.search(r'Successfully built Bento\(tag="([^"]+)"\)', run.stdout + run.stderr)
    assert built, run.stdout + run.stderr
    try:
        info = bentoml.get(built.group(1)).info
        [service] = info.services
        assert {str(m.tag) for m in service.models} == {models.champion, models.challenger}
        assert {str(m.tag) for m in info.all_models} == {models.champion, models.challenger}
        assert not info.models
        # The image says which is which (service.py `_model_envs`): no deployment must.
        envs = {e.name: e.value for e in info.envs}
        assert envs["ATTRITION_MODEL_TAG"] == models.champion
        assert envs["ATTRITION_SHADOW_MODEL_TAG"] == models.challenger
    finally:
        bentoml.delete(built.group(1))


# --- retention -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", BACKENDS)
def test_purge_deletes_shadow_rows_with_their_prediction(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'purge.db'}"
    else:
        url = request.getfixturevalue("new_postgres_database")()
    db.upgrade(url)
    now = utcnow()
    old = [prediction_row(created_at=now - timedelta(days=400 + i)) for i in range(3)]
    new = [prediction_row(created_at=now - timedelta(days=10))]

    def shadow(prediction_id: uuid.UUID, days_ago: float) -> ShadowPrediction:
        return ShadowPrediction(
            prediction_id=prediction_id,
            model_tag="challenger:1",
            probability=0.4,
            prediction=0,
            threshold=0.5,
            created_at=now - timedelta(days=days_ago),
        )

    with engine_of(url) as engine:
        with session_scope(engine) as session:
            write_predictions(session, old + new)
        with session_scope(engine) as session:
            session.add_all(
                [
                    shadow(old[0].id, 400),
                    shadow(old[0].id, 1),  # a recent shadow row of an old prediction leaves too
                    shadow(old[1].id, 401),
                    shadow(new[0].id, 10),  # stays with its prediction
                ]
            )
        cutoff = now - timedelta(days=365)
        with session_scope(engine) as session:
            counts = purge_counts(session, cutoff)
        assert counts["shadow_predictions"] == 3 and counts["predictions"] == 3

        monkeypatch.setattr(audit, "PURGE_BATCH", 2)  # several transactions, as the CLI does
        deleted = {"shadow_predictions": 0, "predictions": 0}
        while True:
            with session_scope(engine) as session:
                batch = purge_batch(session, cutoff)
            if not any(batch.values()):
                break
            for table in deleted:
                deleted[table] += batch[table]
        assert deleted == {"shadow_predictions": 3, "predictions": 3}

        with Session(engine) as session:
            left = list(session.exec(select(ShadowPrediction)))
            assert [s.prediction_id for s in left] == [new[0].id]
            assert session.exec(select(func.count()).select_from(PredictionRecord)).one() == 1
