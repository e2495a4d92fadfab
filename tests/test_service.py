"""End to end: `bentoml serve` on SQLite and on a real PostgreSQL, checked against the rows."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import bentoml
import httpx
import numpy as np
import pytest
from sqlmodel import Session, col, select

from persistence.engine import build_engine
from persistence.tables import PredictionRecord as P
from tests.support.payloads import RAW
from training.contract import Employee, employees_frame
from training.extracts import load_extracts
from training.store import load

pytestmark = pytest.mark.e2e


def rows(server, *conditions) -> list[P]:
    engine = build_engine(server.database_url)
    try:
        with Session(engine) as session:
            return list(session.exec(select(P).where(*conditions)))
    finally:
        engine.dispose()


def post(server, path, body, key=None, request_id=None, timeout=60.0):
    headers = server.headers(key)
    if request_id:
        headers["X-Request-ID"] = request_id
    return httpx.post(f"{server.url}{path}", json=body, headers=headers, timeout=timeout)


def test_predict_answer_matches_its_row_and_the_trained_model(server, trained_tag):
    answer = post(server, "/predict", RAW)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    stored = load(trained_tag)
    expected = stored.pipeline.predict_proba(employees_frame([Employee.model_validate(RAW)]))[0, 1]
    assert body["probability"] == pytest.approx(expected, abs=1e-9)
    assert body["threshold"] == stored.threshold
    assert body["prediction"] == int(expected >= stored.threshold)
    assert body["label"] == ("Oui" if body["prediction"] else "Non")
    assert body["model_tag"] == trained_tag
    assert 3 <= len(body["top_factors"]) <= 5
    contributions = [abs(f["contribution"]) for f in body["top_factors"]]
    assert contributions == sorted(contributions, reverse=True)
    [row] = rows(server, P.id == uuid.UUID(body["prediction_id"]))
    assert row.probability == pytest.approx(body["probability"])
    assert row.model_tag == trained_tag and row.threshold == stored.threshold


def test_served_threshold_is_the_trained_one(server, trained_tag):
    card = httpx.get(f"{server.url}/model", headers=server.headers(server.keys.read)).json()
    assert card["threshold"] == bentoml.models.get(trained_tag).info.metadata["threshold"]
    assert card["threshold_overridden"] is False
    assert card["tag"] == trained_tag
    assert card["contract"]["features"] and card["training_data"]["generated"] is True


def test_concurrent_single_calls_are_batched_and_each_has_its_row(server):
    prefix = uuid.uuid4().hex[:8]
    employees = [RAW | {"age": 20 + i % 40} for i in range(200)]

    def call(i):
        return post(server, "/predict", employees[i], request_id=f"{prefix}-{i}")

    with ThreadPoolExecutor(64) as pool:
        answers = list(pool.map(call, range(200)))
    assert [a.status_code for a in answers] == [200] * 200
    stored = {str(r.id): r for r in rows(server, col(P.request_id).startswith(f"{prefix}-"))}
    assert len(stored) == 200
    for answer in answers:
        body = answer.json()
        assert stored[body["prediction_id"]].probability == pytest.approx(body["probability"])
    batches = {r.batch_id for r in stored.values()}
    assert len(batches) < 200, "concurrent calls never shared a batch"


def test_batch_size_histogram_shows_batches_above_one(server):
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda _: post(server, "/predict", RAW), range(96)))
    metrics = httpx.get(f"{server.url}/metrics").text
    sums = [
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith("attrition_batch_size_sum") and 'endpoint="predict"' in line
    ]
    counts = [
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith("attrition_batch_size_count") and 'endpoint="predict"' in line
    ]
    assert sum(counts) > 0 and sum(sums) / sum(counts) > 1


def test_batch_of_1000_answers_in_order_with_1000_rows(server, holdout_dir, trained_tag):
    employees = load_extracts(holdout_dir).employees
    batch = [e.model_dump(mode="json", exclude_none=True) for e in employees]
    batch = (batch * 4)[:1000]
    request_id = uuid.uuid4().hex
    answer = post(server, "/predict_batch", batch, request_id=request_id)
    assert answer.status_code == 200, answer.text[:500]
    body = answer.json()
    assert len(body) == 1000
    expected = load(trained_tag).pipeline.predict_proba(
        employees_frame([Employee.model_validate(e) for e in batch])
    )[:, 1]
    np.testing.assert_allclose([b["probability"] for b in body], expected, atol=1e-9)
    stored = rows(server, P.request_id == request_id)
    assert len(stored) == 1000
    assert {str(r.id) for r in stored} == {b["prediction_id"] for b in body}


def test_predict_by_id_scores_the_stored_employee(server, generated_dir, trained_tag):
    employee = load_extracts(generated_dir).employees[5]
    answer = post(server, "/predict_by_id", {"employee_id": employee.id_employee})
    assert answer.status_code == 200, answer.text
    expected = load(trained_tag).pipeline.predict_proba(employees_frame([employee]))[0, 1]
    assert answer.json()["probability"] == pytest.approx(expected, abs=1e-9)
    [row] = rows(server, P.id == uuid.UUID(answer.json()["prediction_id"]))
    assert row.employee_id == employee.id_employee
    missing = post(server, "/predict_by_id", {"employee_id": 2_000_000})
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"


def test_history_filters_return_what_the_rows_say(server, generated_dir):
    employee = load_extracts(generated_dir).employees[7]
    made = [
        post(server, "/predict_by_id", {"employee_id": employee.id_employee}).json()
        for _ in range(3)
    ]
    read = server.headers(server.keys.read)
    page = httpx.get(
        f"{server.url}/history",
        headers=read,
        params={"employee_id": employee.id_employee, "limit": 2},
    ).json()
    assert page["total"] == len(rows(server, P.employee_id == employee.id_employee)) >= 3
    assert len(page["items"]) == 2
    assert {i["id"] for i in page["items"]} <= {m["prediction_id"] for m in made}  # newest
    assert all(i["employee_id"] == employee.id_employee for i in page["items"])
    positive = httpx.get(
        f"{server.url}/history", headers=read, params={"prediction": 1, "limit": 500}
    ).json()
    assert positive["total"] == len(rows(server, P.prediction == 1))
    assert all(i["prediction"] == 1 for i in positive["items"])
    none = httpx.get(
        f"{server.url}/history", headers=read, params={"model_tag": "attrition_pipeline:nope"}
    ).json()
    assert none["total"] == 0
    future = httpx.get(
        f"{server.url}/history", headers=read, params={"since": "2999-01-01T00:00:00Z"}
    ).json()
    assert future["total"] == 0
    one = httpx.get(f"{server.url}/predictions/{made[0]['prediction_id']}", headers=read)
    assert one.status_code == 200 and one.json()["probability"] == made[0]["probability"]


def test_stats_match_a_hand_computed_expectation(server):
    post(server, "/predict_batch", [RAW, RAW | {"departement": "Consulting"}])
    stats = httpx.get(
        f"{server.url}/stats",
        headers=server.headers(server.keys.read),
        params={"by": "departement"},
    ).json()
    expected: dict[str, list] = {}
    for row in rows(server):
        # Rows other tests wrote without a department form the `None` group, as in /stats.
        expected.setdefault(row.input.get("departement"), []).append(row)
    assert {g["group"] for g in stats["groups"]} == set(expected)
    for group in stats["groups"]:
        members = expected[group["group"]]
        assert group["count"] == len(members)
        assert group["positive_rate"] == pytest.approx(np.mean([r.prediction for r in members]))
        assert group["mean_probability"] == pytest.approx(np.mean([r.probability for r in members]))


def test_bentoml_client_with_a_key(server, generated_dir):
    employee_id = load_extracts(generated_dir).employees[0].id_employee
    with bentoml.SyncHTTPClient(server.url, token=server.keys.predict) as client:
        single = client.predict(RAW)
        answers = client.predict_batch([RAW, RAW])
        assert len(answers) == 2
        # Equal up to float rounding: BLAS may sum a batch of 2 and of 1 in another order.
        assert answers[0]["probability"] == pytest.approx(single["probability"], abs=1e-12)
        assert answers[1]["probability"] == pytest.approx(single["probability"], abs=1e-12)
        by_id = client.predict_by_id({"employee_id": employee_id})
        assert 0 <= by_id["probability"] <= 1
        card = client.model_card()
        assert card["threshold"] == single["threshold"]
