"""Keys, roles, strict input and the audit of refusals, against a running service."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
from sqlmodel import Session, select

from persistence.engine import build_engine, session_scope
from persistence.keys import create_key, revoke_key
from persistence.tables import AuditEvent, PredictionRecord
from tests.support.payloads import RAW

pytestmark = pytest.mark.e2e
PUBLIC = {("get", "/livez"), ("get", "/readyz"), ("get", "/metrics"), ("get", "/healthz")}
PREDICT = {"/predict", "/predict_batch", "/predict_by_id"}
BODIES = {"/predict": RAW, "/predict_batch": [RAW], "/predict_by_id": {"employee_id": 1}}


def operations(server) -> list[tuple[str, str]]:
    document = httpx.get(f"{server.url}/docs.json", timeout=10).json()
    found = [
        (method, path.replace("{prediction_id}", str(uuid.uuid4())))
        for path, item in document["paths"].items()
        for method in item
        if method in {"get", "post"}
    ]
    assert {p for _, p in found} >= PREDICT | {"/model", "/history", "/stats"}
    return found


def call(server, method, path, headers):
    return httpx.request(
        method,
        f"{server.url}{path}",
        headers=headers,
        json=BODIES.get(path) if method == "post" else None,
        timeout=30,
    )


def key_forms(key: str) -> list[dict[str, str]]:
    return [{"X-API-Key": key}, {"Authorization": f"Bearer {key}"}]


def test_auth_matrix_over_every_route(server):
    for method, path in operations(server):

        def answer(headers, method=method, path=path):
            return call(server, method, path, headers)

        if (method, path) in PUBLIC:
            assert answer({}).status_code == 200, path
            continue
        for headers in [
            {},
            *key_forms("atk_0000.not-a-key"),
            *key_forms("garbage"),
            *key_forms(server.keys.revoked),
        ]:
            refused = answer(headers)
            assert refused.status_code == 401, (method, path, headers, refused.text)
            assert refused.json()["error"] in {
                "missing_api_key",
                "invalid_api_key",
                "revoked_api_key",
            }
        for headers in key_forms(server.keys.read):
            status = answer(headers).status_code
            if path in PREDICT:
                assert status == 403, (method, path)
            else:
                assert status not in (401, 403, 500), (method, path, status)
        for headers in key_forms(server.keys.predict):
            assert answer(headers).status_code not in (401, 403, 500), (method, path)


def test_public_routes_need_no_key(server):
    for path in ("/livez", "/readyz", "/metrics", "/docs.json"):
        assert httpx.get(f"{server.url}{path}", timeout=10).status_code == 200, path


def test_revocation_lands_within_ten_seconds(server):
    engine = build_engine(server.database_url)
    name = f"short-lived-{uuid.uuid4().hex[:6]}"
    with session_scope(engine) as session:
        key = create_key(session, name, "read")
    assert call(server, "get", "/model", {"X-API-Key": key}).status_code == 200
    with session_scope(engine) as session:
        revoke_key(session, name)
    revoked_at = time.monotonic()
    refused_in_a_row = 0  # each worker has its own cache: every one of them must refuse
    while refused_in_a_row < 8:
        assert time.monotonic() - revoked_at < 10, "revocation not effective within 10 s"
        status = call(server, "get", "/model", {"X-API-Key": key}).status_code
        refused_in_a_row = refused_in_a_row + 1 if status == 401 else 0
        time.sleep(0.1)


def test_non_number_is_a_422_naming_the_field_and_nothing_is_stored(server):
    marker = uuid.uuid4().hex
    headers = server.headers() | {"X-Request-ID": marker}
    for body, field, rule in [
        (RAW | {"age": "abc"}, "age", "int_parsing"),
        (RAW | {"age": -5}, "age", "greater_than_equal"),
        (RAW | {"departement": "Finance"}, "departement", "literal_error"),
        (RAW | {"salary": 1}, "salary", "extra_forbidden"),
    ]:
        answer = httpx.post(f"{server.url}/predict", json=body, headers=headers, timeout=30)
        assert answer.status_code == 422, answer.text
        error = answer.json()
        assert error["error"] == "validation_error"
        assert {"field": field, "rule": rule} in [
            {"field": d["field"], "rule": d["rule"]} for d in error["detail"]
        ]
    batch = httpx.post(
        f"{server.url}/predict_batch", json=[RAW, RAW | {"age": "x"}], headers=headers, timeout=30
    )
    assert batch.status_code == 422
    assert batch.json()["detail"][0]["field"] == "[1].age"
    not_json = httpx.post(f"{server.url}/predict", content=b"{oops", headers=headers)
    assert not_json.status_code == 422
    for body, rule in [(b"[{oops", "json_invalid"), (b'{"a": 1}', "list_type"), (b"", "list_type")]:
        refused = httpx.post(f"{server.url}/predict_batch", content=body, headers=headers)
        assert refused.status_code == 422, refused.text
        first = refused.json()["detail"][0]
        assert (first["field"], first["rule"]) == ("body", rule)
    with Session(build_engine(server.database_url)) as session:
        stored = session.exec(
            select(PredictionRecord).where(PredictionRecord.request_id == marker)
        ).all()
    assert stored == []


def test_size_caps_are_refused_with_the_cap_in_the_message(server):
    too_many = httpx.post(
        f"{server.url}/predict_batch", json=[RAW] * 5001, headers=server.headers(), timeout=60
    )
    # The bound is in the schema: refused before any item is validated, naming the cap.
    assert too_many.status_code == 422
    [problem] = too_many.json()["detail"]
    assert problem["field"] == "body" and problem["rule"] == "too_long"
    assert "5000" in problem["message"]
    empty = httpx.post(f"{server.url}/predict_batch", json=[], headers=server.headers())
    assert empty.status_code == 422
    huge = httpx.post(
        f"{server.url}/predict",
        content=b" " * (9 * 1024 * 1024),
        headers=server.headers() | {"Content-Type": "application/json"},
        timeout=60,
    )
    assert huge.status_code == 413 and str(8 * 1024 * 1024) in huge.json()["message"]


def test_refusals_are_audited_without_the_key(server):
    wrong = f"atk_{uuid.uuid4().hex[:12]}.secret-{uuid.uuid4().hex}"
    assert call(server, "post", "/predict_batch", {"X-API-Key": wrong}).status_code == 401
    assert (
        httpx.post(
            f"{server.url}/predict", json=RAW | {"age": "abc"}, headers=server.headers()
        ).status_code
        == 422
    )
    with Session(build_engine(server.database_url)) as session:
        events = session.exec(select(AuditEvent)).all()
    unauthorised = [e for e in events if e.endpoint == "/predict_batch" and e.status == 401]
    invalid = [e for e in events if e.endpoint == "/predict" and e.status == 422]
    assert any(e.error == "invalid_api_key" and e.client is None for e in unauthorised)
    assert any(e.client and e.detail and e.detail[0]["field"] == "age" for e in invalid)
    dumped = " ".join(str(e.model_dump()) for e in events)
    assert wrong not in dumped and wrong.split(".")[1] not in dumped
    assert server.keys.predict.split(".")[1] not in dumped
