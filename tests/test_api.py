"""The service in process: `Attrition.to_asgi()` behind Starlette's TestClient (BentoML's
documented testing path), on real SQLite and PostgreSQL databases.

`service.py` reads its settings and builds its engine when it is imported, so each database
gets its own copy of the module, imported with that database's environment: two copies never
share (or overwrite) an engine, a refusal log or a service class.
"""

from __future__ import annotations

import inspect
import uuid
from datetime import UTC, timedelta, timezone
from typing import Any

import pytest
from fastapi.routing import APIRoute
from sqlmodel import Session, col, select

from persistence.audit import set_switch
from persistence.engine import build_engine, session_scope
from persistence.tables import AccessEvent, AuditEvent, EmployeeRecord, PredictionRecord
from serving.gate import Gate
from tests.support import databases
from tests.support.databases import new_key
from tests.support.inprocess import MAX_BATCH_ROWS, Api, running
from tests.support.payloads import RAW
from training.contract import Employee, employees_frame
from training.store import load


def is_envelope(answer: Any) -> dict[str, Any]:
    assert answer.headers["content-type"] == "application/json", answer.text
    body = answer.json()
    assert isinstance(body, dict) and {"error", "message"} <= set(body), body
    assert set(body) <= {"error", "message", "detail"}, body
    return body


# --- predictions and their rows --------------------------------------------------------------


def test_predict_answer_equals_its_committed_row(api, trained_tag):
    request_id = f"api-{uuid.uuid4().hex}"
    answer = api.post("/predict", RAW, **{"X-Request-ID": request_id})
    assert answer.status_code == 200, answer.text
    body = answer.json()

    [row] = api.rows(PredictionRecord.id == uuid.UUID(body["prediction_id"]))  # already there
    stored = load(trained_tag)
    employee = Employee.model_validate(RAW)
    expected = stored.pipeline.predict_proba(employees_frame([employee]))[0, 1]
    assert body["probability"] == pytest.approx(expected, abs=1e-9)
    assert row.probability == body["probability"]
    assert row.prediction == body["prediction"] == int(expected >= stored.threshold)
    assert row.threshold == body["threshold"] == stored.threshold
    assert row.model_tag == body["model_tag"] == trained_tag
    assert row.request_id == request_id
    assert row.input == employee.model_dump(mode="json", exclude_none=True)
    assert [f["feature"] for f in row.top_factors] == [f["feature"] for f in body["top_factors"]]
    engine = build_engine(api.url)
    with Session(engine) as session:
        seeded = session.get(EmployeeRecord, 1) is not None
    engine.dispose()
    assert row.employee_id == (1 if seeded else None)


def test_predict_batch_answers_in_order_each_with_its_row(api, trained_tag):
    ages = [19, 63, 27, 45, 33, 58]
    employees = [RAW | {"age": age, "id_employee": None} for age in ages]
    request_id = f"batch-{uuid.uuid4().hex}"
    answer = api.post("/predict_batch", employees, **{"X-Request-ID": request_id})
    assert answer.status_code == 200, answer.text
    answers = answer.json()
    assert len(answers) == len(ages)

    rows = {r.id: r for r in api.rows(PredictionRecord.request_id == request_id)}
    assert {uuid.UUID(a["prediction_id"]) for a in answers} == set(rows)
    assert len({r.batch_id for r in rows.values()}) == 1
    expected = load(trained_tag).pipeline.predict_proba(
        employees_frame([Employee.model_validate(e) for e in employees])
    )[:, 1]
    for age, body, probability in zip(ages, answers, expected, strict=True):
        row = rows[uuid.UUID(body["prediction_id"])]
        assert row.input["age"] == age
        assert body["probability"] == pytest.approx(probability, abs=1e-9)
        assert row.probability == body["probability"]


@pytest.mark.parametrize(
    ("body", "status", "fields"),
    [
        ([], 422, ["body"]),
        ([RAW, RAW | {"age": 5}, RAW | {"genre": "X"}], 422, ["[1].age", "[2].genre"]),
        ({"not": "a list"}, 422, ["body"]),
        # Over the row cap: a 413, or a 422 naming the body (the cap checked by the schema).
        ([RAW] * (MAX_BATCH_ROWS + 1), (413, 422), ["body"]),
    ],
)
def test_predict_batch_refusals_are_envelopes_and_write_nothing(api, body, status, fields):
    request_id = f"refused-{uuid.uuid4().hex}"
    answer = api.post("/predict_batch", body, **{"X-Request-ID": request_id})
    statuses = status if isinstance(status, tuple) else (status,)
    assert answer.status_code in statuses, answer.text
    envelope = is_envelope(answer)
    if answer.status_code == 422:
        assert [d["field"] for d in envelope["detail"]] == fields
    assert api.rows(PredictionRecord.request_id == request_id) == []


def test_malformed_json_is_a_422_naming_the_body(api):
    for path in ("/predict", "/predict_batch"):
        answer = api.client.post(
            path, content=b'[{"age": ', headers=api.headers(**{"content-type": "application/json"})
        )
        assert answer.status_code == 422, (path, answer.text)
        assert is_envelope(answer)["error"] == "validation_error"


def test_predict_refuses_an_invalid_employee_naming_the_fields(api):
    answer = api.post("/predict", RAW | {"age": 5, "departement": "Marketing"})
    assert answer.status_code == 422
    body = is_envelope(answer)
    assert [d["field"] for d in body["detail"]] == ["age", "departement"]


def test_predict_by_id_scores_a_stored_employee_and_404s_an_unknown_one(api):
    engine = build_engine(api.url)
    with Session(engine) as session:
        known = session.exec(select(EmployeeRecord.id).limit(1)).one()
    engine.dispose()
    found = api.post("/predict_by_id", {"employee_id": known})
    assert found.status_code == 200, found.text
    [row] = api.rows(PredictionRecord.id == uuid.UUID(found.json()["prediction_id"]))
    assert row.employee_id == known

    missing = api.post("/predict_by_id", {"employee_id": 2**31 - 1})
    assert missing.status_code == 404
    assert is_envelope(missing) == {
        "error": "not_found",
        "message": f"no employee with employee_id {2**31 - 1}",
    }
    out_of_range = api.post("/predict_by_id", {"employee_id": 0})
    assert out_of_range.status_code == 422
    assert is_envelope(out_of_range)["detail"][0]["field"] == "employee_id"


def test_stored_predictions_are_read_back_and_unknown_ones_are_404(api):
    answer = api.post("/predict", RAW).json()
    read = api.client.get(
        f"/predictions/{answer['prediction_id']}", headers=api.headers(api.keys.read)
    )
    assert read.status_code == 200
    assert read.json()["probability"] == answer["probability"]
    missing = api.client.get(f"/predictions/{uuid.uuid4()}", headers=api.headers(api.keys.read))
    assert missing.status_code == 404
    assert is_envelope(missing)["error"] == "not_found"


def test_model_card_on_both_routes(api, trained_tag):
    for answer in (
        api.client.get("/model", headers=api.headers(api.keys.read)),
        api.client.post("/model", headers=api.headers(api.keys.read)),
    ):
        assert answer.status_code == 200, answer.text
        assert answer.json()["tag"] == trained_tag


def test_an_oversized_batch_is_refused_before_its_items_are_validated(api):
    """2,000 empty objects (6 KB) must not become 54,000 validation errors: BentoML validates
    the whole array before the API can count it, so the row cap belongs to the body's schema
    (a JSON array's length is checked before its items)."""
    body = b"[" + b",".join([b"{}"] * 2000) + b"]"
    headers = api.headers(**{"content-type": "application/json"})
    answer = api.client.post("/predict_batch", content=body, headers=headers)
    assert answer.status_code in (413, 422), answer.status_code
    assert len(answer.content) < 4096, f"a {len(answer.content):,}-byte refusal"
    assert is_envelope(answer)["error"] in ("payload_too_large", "validation_error")


def test_an_employee_id_out_of_the_tables_range_is_no_server_error(api):
    """`id_employee` has no upper bound in the contract; the `employees.id` column is 32-bit.
    An id no employee can have is an unknown employee (stored as NULL), never a 500/503."""
    request_id = f"big-id-{uuid.uuid4().hex}"
    huge = 10**30
    answer = api.post("/predict", RAW | {"id_employee": huge}, **{"X-Request-ID": request_id})
    assert answer.status_code in (200, 422), answer.text
    if answer.status_code == 200:
        [row] = api.rows(PredictionRecord.request_id == request_id)
        assert row.employee_id is None
    else:
        assert is_envelope(answer)["detail"][0]["field"] == "id_employee"


def test_a_long_request_id_does_not_cost_the_prediction(api):
    """`request_id` is a 64-character column: a longer X-Request-ID (any client may send one)
    must not turn into a 422 (PostgreSQL refuses the row) for this caller, nor for the other
    callers scored in the same batch."""
    request_id = "r" * 200
    answer = api.post("/predict", RAW, **{"X-Request-ID": request_id})
    assert answer.status_code == 200, answer.text
    [row] = api.rows(PredictionRecord.id == uuid.UUID(answer.json()["prediction_id"]))
    assert len(row.request_id) <= 64


# --- the audit trail ---------------------------------------------------------------------------


def seeded_employee(api: Api, position: int) -> int:
    engine = build_engine(api.url)
    try:
        with Session(engine) as session:
            return int(
                session.exec(
                    select(EmployeeRecord.id).order_by(EmployeeRecord.id).offset(position).limit(1)
                ).one()
            )
    finally:
        engine.dispose()


def test_every_predict_route_stores_its_caller_and_route(api):
    name, key = new_key(api.url, "asker", "predict")
    employee_id = seeded_employee(api, 2)
    single = api.post("/predict", RAW, key=key).json()
    batch = api.post("/predict_batch", [RAW, RAW], key=key).json()
    by_id = api.post("/predict_by_id", {"employee_id": employee_id}, key=key).json()
    expected = {
        uuid.UUID(single["prediction_id"]): "/predict",
        uuid.UUID(batch[0]["prediction_id"]): "/predict_batch",
        uuid.UUID(batch[1]["prediction_id"]): "/predict_batch",
        uuid.UUID(by_id["prediction_id"]): "/predict_by_id",
    }
    rows = api.rows(col(PredictionRecord.id).in_(list(expected)))
    assert {r.id: (r.client, r.endpoint) for r in rows} == {
        i: (name, endpoint) for i, endpoint in expected.items()
    }
    page = api.client.get(
        "/history", params={"client": name}, headers=api.headers(api.keys.read)
    ).json()
    assert {uuid.UUID(i["id"]): i["endpoint"] for i in page["items"]} == expected


def test_reads_of_scores_are_logged_when_the_log_flushes_and_stats_are_not(api):
    scorer, scorer_key = new_key(api.url, "scorer", "predict")
    reader, reader_key = new_key(api.url, "reader", "read")
    employee_id = seeded_employee(api, 3)
    made = api.post("/predict_by_id", {"employee_id": employee_id}, key=scorer_key).json()
    headers = api.headers(reader_key)
    assert api.client.get(f"/predictions/{made['prediction_id']}", headers=headers).is_success
    assert api.client.get(
        "/history", params={"employee_id": employee_id}, headers=headers
    ).is_success
    for by in ("departement", "day"):
        assert api.client.get("/stats", params={"by": by}, headers=headers).is_success
    assert api.client.get("/model", headers=headers).is_success
    api.client.portal.call(api.module.ACCESS.flush)

    engine = build_engine(api.url)
    try:
        with Session(engine) as session:
            events = session.exec(
                select(AccessEvent).where(col(AccessEvent.client).in_([reader, scorer]))
            ).all()
    finally:
        engine.dispose()
    assert sorted((e.client, e.route, e.query) for e in events) == sorted(
        [
            (reader, "/predictions/{prediction_id}", {"prediction_id": made["prediction_id"]}),
            (reader, "/history", {"employee_id": str(employee_id)}),
            (scorer, "/predict_by_id", None),
        ]
    )
    assert all(e.employee_ids == [employee_id] for e in events), events


def test_the_stop_switch_in_process(api, monkeypatch):
    """The switch re-read on every call (ttl 0): the exact answers while suspended."""
    monkeypatch.setattr(api.module.SWITCH, "ttl", 0)
    engine = build_engine(api.url)
    reason = "stopped by the tests"
    employee_id = seeded_employee(api, 4)
    try:
        with session_scope(engine) as session:
            set_switch(session, suspended=True, reason=reason, actor="tests-api")
        for path, body in [
            ("/predict", RAW),
            ("/predict_batch", [RAW]),
            ("/predict_by_id", {"employee_id": employee_id}),
        ]:
            answer = api.post(path, body)
            assert answer.status_code == 503, (path, answer.text)
            assert is_envelope(answer) == {"error": "scoring_suspended", "message": reason}
        read = api.headers(api.keys.read)
        for card in (
            api.client.get("/model", headers=read),
            api.client.post("/model", headers=read),
        ):
            state = card.json()["scoring"]
            assert (state["suspended"], state["reason"], state["by"]) == (True, reason, "tests-api")
            assert state["since"] is not None
        assert api.client.get("/history", headers=read).status_code == 200
        assert api.client.get("/readyz").status_code == 200
    finally:
        with session_scope(engine) as session:
            set_switch(session, suspended=False, reason="", actor="tests-api")
        engine.dispose()
    assert api.post("/predict", RAW).status_code == 200
    state = api.client.get("/model", headers=api.headers(api.keys.read)).json()["scoring"]
    assert (state["suspended"], state["by"]) == (False, "tests-api")


def test_time_filters_mean_one_instant_whatever_its_offset(api):
    """`since` and `until` are instants: 13:59+02:00 is 11:59Z, on SQLite (which stores text)
    as on PostgreSQL, for the history and for the audit trail."""
    name, key = new_key(api.url, "timed", "predict")
    _, auditor = new_key(api.url, "auditor", "audit")
    made = api.post("/predict", RAW, key=key).json()
    api.client.get(f"/predictions/{made['prediction_id']}", headers=api.headers(key))
    api.client.portal.call(api.module.ACCESS.flush)
    [row] = api.rows(PredictionRecord.id == uuid.UUID(made["prediction_id"]))
    scored = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC)
    offsets = [UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5))]
    for zone in offsets:
        before = (scored - timedelta(minutes=1)).astimezone(zone).isoformat()
        after = (scored + timedelta(minutes=1)).astimezone(zone).isoformat()
        for path, headers in [
            ("/history", api.headers(api.keys.read)),
            ("/audit/access", api.headers(auditor)),
        ]:

            def total(path=path, headers=headers, **window: str) -> int:
                answer = api.client.get(path, params={"client": name, **window}, headers=headers)
                assert answer.status_code == 200, answer.text
                return int(answer.json()["total"])

            context = (path, zone)
            assert total(since=before) == 1, context
            assert total(since=after) == 0, context
            assert total(until=after) == 1, context
            assert total(until=before) == 0, context


@pytest.mark.parametrize(
    ("path", "parameter"),
    [
        ("/history", "client"),
        ("/audit/access", "client"),
        ("/audit/access", "route"),
        ("/audit/refusals", "client"),
        ("/audit/refusals", "route"),
        ("/employees/at-risk", "departement"),
        ("/employees/at-risk", "poste"),
    ],
)
def test_a_nul_in_a_text_filter_is_no_server_error(api, path, parameter):
    """PostgreSQL text cannot hold U+0000 and psycopg2 refuses it before sending the query
    (a ValueError, not a database error): a filter holding one must be refused as the
    caller's 422, or match nothing, never a 500."""
    _, key = new_key(api.url, "nul", "audit")
    answer = api.client.get(path, params={parameter: "a\x00b"}, headers=api.headers(key))
    assert answer.status_code in (200, 422), answer.text
    if answer.status_code == 422:
        assert is_envelope(answer)["detail"][0]["field"] == f"query.{parameter}"
    else:
        assert answer.json()["total"] == 0


def test_reviews_in_process_and_a_nul_in_a_note_is_no_server_error(api):
    reviewer, review_key = new_key(api.url, "reviewer", "review")
    made = api.post("/predict", RAW).json()
    path = f"/predictions/{made['prediction_id']}/reviews"
    stored = api.post(path, {"decision": "disagree", "note": "vu en entretien"}, key=review_key)
    assert stored.status_code == 201, stored.text
    assert stored.json()["reviewer"] == reviewer
    # U+0000 is valid JSON but PostgreSQL text cannot hold it: refused, or kept, never a 500.
    nul = api.post(path, {"decision": "agree", "note": "a\x00b"}, key=review_key)
    assert nul.status_code in (201, 422), nul.text
    if nul.status_code == 422:
        assert is_envelope(nul)["detail"][0]["field"].endswith("note")
    shown = api.client.get(f"/predictions/{made['prediction_id']}", headers=api.headers())
    notes = [r["note"] for r in shown.json()["reviews"]]
    assert notes == ["vu en entretien"] + (["a\x00b"] if nul.status_code == 201 else [])


# --- one engine -------------------------------------------------------------------------------


def _gate_of(app: Any) -> Gate:
    layer = app.middleware_stack
    while layer is not None:
        if isinstance(layer, Gate):
            return layer
        layer = getattr(layer, "app", None)
    raise AssertionError("no Gate in the app's middleware stack")


def test_the_gate_the_apis_and_the_reads_share_the_services_one_engine(api):
    engine = api.module.ENGINE
    [(_gate_class, options)] = [m for m in api.module.Attrition.middlewares if m[0] is Gate]
    assert options["engine"] is engine
    assert options["refusals"] is api.module.REFUSALS

    gate = _gate_of(api.client.app)  # the instance BentoML built and serves through
    assert gate.engine is engine
    assert gate.auth.keys.engine is engine
    assert gate.refusals.engine is engine

    assert api.instance.engine is engine
    assert api.instance.predictor.engine is engine
    assert api.module.ACCESS.engine is engine
    assert api.module.SWITCH.engine is engine
    routes = [r for r in api.module.routes.routes if isinstance(r, APIRoute)]
    assert {r.path for r in routes} >= {
        "/history",
        "/predictions/{prediction_id}",
        "/predictions/{prediction_id}/reviews",
        "/stats",
        "/audit/access",
        "/audit/refusals",
    }
    for route in routes:
        captured = inspect.getclosurevars(route.endpoint).nonlocals
        if "engine" in captured:
            assert captured["engine"] is engine, route.path
        if "access" in captured:
            assert captured["access"] is api.module.ACCESS, route.path


# --- every error is the envelope ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/predict", 405),
        ("GET", "/predict_batch", 405),
        ("GET", "/nonexistent", 404),
        ("POST", "/nonexistent", 404),
        ("PUT", "/history", 405),
        ("DELETE", "/predictions/00000000-0000-0000-0000-000000000000", 405),
        ("GET", "/predictions/..%2F..%2Fetc%2Fpasswd", 404),
        ("GET", "/predictions/not-a-uuid", 422),
        ("POST", "/livez", 405),
        ("POST", "/readyz", 405),
        ("GET", "/static/../../etc/passwd", 404),
    ],
)
def test_routing_refusals_are_the_envelope(api, method, path, status):
    answer = api.client.request(method, path, headers=api.headers())
    assert answer.status_code == status, answer.text
    body = is_envelope(answer)
    assert (
        body["error"]
        == {404: "not_found", 405: "method_not_allowed", 422: "validation_error"}[status]
    )


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [("GET", "/predict", "POST"), ("PUT", "/history", "GET"), ("POST", "/livez", "GET")],
)
def test_a_405_still_says_which_methods_are_allowed(api, method, path, allowed):
    """RFC 9110 15.5.6: a 405 MUST carry an Allow header; the envelope must not drop it."""
    answer = api.client.request(method, path, headers=api.headers())
    assert answer.status_code == 405
    is_envelope(answer)
    assert allowed in answer.headers.get("allow", "").replace(" ", "").split(",")


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "query.limit"),
        ("limit=501", "query.limit"),
        ("limit=many", "query.limit"),
        ("offset=-1", "query.offset"),
        ("prediction=2", "query.prediction"),
        ("since=yesterday", "query.since"),
        ("model_tag=a%20b", "query.model_tag"),
    ],
)
def test_bad_query_parameters_are_422s_naming_them(api, query, field):
    answer = api.client.get(f"/history?{query}", headers=api.headers(api.keys.read))
    assert answer.status_code == 422
    body = is_envelope(answer)
    assert body["error"] == "validation_error"
    assert [d["field"] for d in body["detail"]] == [field]


def test_keys_are_checked_in_process(api):
    assert api.client.post("/predict", json=RAW).status_code == 401
    read_key = api.post("/predict", RAW, key=api.keys.read)
    assert read_key.status_code == 403 and is_envelope(read_key)["error"] == "forbidden"
    revoked = api.post("/predict", RAW, key=api.keys.revoked)
    assert revoked.status_code == 401 and is_envelope(revoked)["error"] == "revoked_api_key"
    assert api.client.get("/livez").status_code == 200
    assert api.client.get("/readyz").status_code == 200


def test_refusals_reach_the_audit_table_aggregated(api):
    path = f"/refused-{uuid.uuid4().hex[:8]}"
    for _ in range(3):
        assert api.client.get(path).status_code == 401
    api.client.portal.call(api.module.REFUSALS.flush)
    engine = build_engine(api.url)
    with Session(engine) as session:
        rows = list(session.exec(select(AuditEvent).where(AuditEvent.endpoint == path)))
    engine.dispose()
    assert [(r.count, r.status, r.error) for r in rows] == [(3, 401, "missing_api_key")]


# --- the database goes away ----------------------------------------------------------------------


@pytest.mark.postgres
def test_a_database_gone_is_a_503_envelope_never_a_500(
    postgres_server, new_postgres_database, trained_tag
):
    url = new_postgres_database()
    keys = databases.prepare_database(url)
    with running("postgres", url, keys, trained_tag) as api:
        # Both keys are now in the gate's cache.
        assert api.post("/predict", RAW).status_code == 200
        assert api.client.get("/history", headers=api.headers(api.keys.read)).status_code == 200
        databases.drop_database(postgres_server, url)

        answers = {
            "predict": api.post("/predict", RAW),
            "predict_batch": api.post("/predict_batch", [RAW, RAW]),
            "predict_by_id": api.post("/predict_by_id", {"employee_id": 1}),
            "history": api.client.get("/history", headers=api.headers(api.keys.read)),
            "stats": api.client.get("/stats", headers=api.headers(api.keys.read)),
            # A key the gate has not cached cannot be checked: 503, not 401 nor 500.
            "uncached key": api.post("/predict", RAW, key=api.keys.revoked),
        }
        for name, answer in answers.items():
            assert answer.status_code == 503, (name, answer.text)
            assert is_envelope(answer)["error"] == "database_unavailable", name
        assert "retry" in answers["predict"].json()["message"]

        ready = api.client.get("/readyz")
        assert ready.status_code == 503
        is_envelope(ready)
