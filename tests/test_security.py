"""Keys, roles, strict input and the audit of refusals, against a running service."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest
from sqlmodel import Session, select

from persistence.engine import build_engine, session_scope
from persistence.keys import Role, create_key, revoke_key
from persistence.tables import AuditEvent, PredictionRecord
from tests.support.payloads import RAW
from training.extracts import load_extracts

pytestmark = pytest.mark.e2e
PREDICT = {"/predict", "/predict_batch", "/predict_by_id"}
# The role each documented operation needs (None: public), from the matrix in
# serving/authentication.py. Every operation of the OpenAPI document must be listed here, so a
# new route cannot ship without its line in the matrix.
MATRIX: dict[tuple[str, str], str | None] = {
    ("get", "/livez"): None,
    ("get", "/readyz"): None,
    ("get", "/healthz"): None,
    ("get", "/metrics"): None,
    ("get", "/model"): "read",
    ("post", "/model"): "read",
    ("get", "/history"): "read",
    ("get", "/predictions/{prediction_id}"): "read",
    ("get", "/stats"): "read",
    ("get", "/employees/at-risk"): "read",
    ("get", "/performance"): "read",
    ("get", "/drift"): "read",
    ("get", "/compare"): "read",
    ("post", "/predict"): "predict",
    ("post", "/predict_batch"): "predict",
    ("post", "/predict_by_id"): "predict",
    ("post", "/predictions/{prediction_id}/reviews"): "review",
    ("post", "/outcomes"): "review",
    ("get", "/audit/access"): "audit",
    ("get", "/audit/refusals"): "audit",
}
# BentoML's POST /model shares its path with the mounted GET /model, and the document keeps
# only one of them: it is checked all the same.
UNDOCUMENTED = {("post", "/model")}
# Statistics by a protected attribute: the route itself asks for `audit` (a read key may ask
# for the other dimensions).
PROTECTED_STATS = ("genre", "statut_marital", "age_band")
# Each key of the matrix test: its roles.
ROLES: dict[str, tuple[Role, ...]] = {
    "read": ("read",),
    "predict": ("predict",),
    "review": ("review",),
    "audit": ("audit",),
    "predict+review": ("predict", "review"),
    "review+audit": ("audit", "review"),
}
BODIES = {
    "/predict": RAW,
    "/predict_batch": [RAW],
    "/predict_by_id": {"employee_id": 1},
    "/predictions/{prediction_id}/reviews": {"decision": "agree", "note": "auth matrix"},
    # An employee no one has: the route refuses it (422), so the matrix records no outcome.
    "/outcomes": [{"employee_id": 2**31 - 1, "left": False, "as_of": "2026-01-01"}],
}
# What a caller allowed through the gate gets: the prediction ids are random, so the two
# routes that name one answer 404, and /outcomes names an unknown employee (422): the route
# ran, so the gate let the call in.
ALLOWED_STATUS = {
    "/predictions/{prediction_id}": 404,
    "/predictions/{prediction_id}/reviews": 404,
    "/outcomes": 422,
}


def documented(server) -> set[tuple[str, str]]:
    document = httpx.get(f"{server.url}/docs.json", timeout=10).json()
    return {
        (method, path)
        for path, item in document["paths"].items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    }


def call(server, method, template, headers, params=None, bodies=BODIES):
    path = template.replace("{prediction_id}", str(uuid.uuid4()))
    return httpx.request(
        method,
        f"{server.url}{path}",
        headers=headers,
        params=params,
        json=bodies.get(template) if method == "post" else None,
        timeout=30,
    )


@pytest.fixture(scope="module")
def bodies(generated_dir) -> dict[str, Any]:
    """BODIES, with an employee the server's database holds (`/predict_by_id` answers 200)."""
    seeded = load_extracts(generated_dir).employees[0].id_employee
    return BODIES | {"/predict_by_id": {"employee_id": seeded}}


def key_forms(key: str) -> list[dict[str, str]]:
    return [{"X-API-Key": key}, {"Authorization": f"Bearer {key}"}]


@pytest.fixture(scope="module")
def role_keys(server) -> dict[str, str]:
    """One key per line of ROLES, created for this module on the server's database."""
    engine = build_engine(server.database_url)
    suffix = uuid.uuid4().hex[:6]
    try:
        with session_scope(engine) as session:
            return {
                label: create_key(session, f"matrix-{label}-{suffix}", *roles)
                for label, roles in ROLES.items()
            }
    finally:
        engine.dispose()


def test_every_documented_route_is_in_the_matrix(server):
    found = documented(server)
    assert found <= set(MATRIX), f"routes missing from the matrix: {found - set(MATRIX)}"
    assert set(MATRIX) - found <= UNDOCUMENTED, set(MATRIX) - found


def test_auth_matrix_over_every_route_and_role(server, role_keys, bodies):
    for (method, template), needed in MATRIX.items():

        def answer(headers, method=method, template=template):
            return call(server, method, template, headers, bodies=bodies)

        if needed is None:
            assert answer({}).status_code == 200, template
            continue
        for headers, code in [
            ({}, "missing_api_key"),
            *[(h, "invalid_api_key") for h in key_forms("atk_0000.not-a-key")],
            *[(h, "invalid_api_key") for h in key_forms("garbage")],
            *[(h, "revoked_api_key") for h in key_forms(server.keys.revoked)],
        ]:
            refused = answer(headers)
            assert refused.status_code == 401, (method, template, headers, refused.text)
            assert refused.json()["error"] == code, (method, template, refused.text)
            assert refused.headers["www-authenticate"].startswith("Bearer")
        for label, roles in ROLES.items():
            allowed = needed == "read" or needed in roles
            for headers in key_forms(role_keys[label]):
                got = answer(headers)
                context = (method, template, label, got.status_code, got.text[:300])
                if allowed:
                    assert got.status_code == ALLOWED_STATUS.get(template, 200), context
                    if got.status_code == 404:
                        assert got.json()["message"].startswith("no prediction"), context
                    if got.status_code == 422:
                        assert got.json()["detail"][0]["rule"] == "unknown_employee", context
                else:
                    assert got.status_code == 403, context
                    assert got.json()["error"] == "forbidden", context
                    assert repr(needed) in got.json()["message"], context


def test_statistics_by_a_protected_attribute_need_the_audit_role(server, role_keys):
    for by in PROTECTED_STATS:
        for label, roles in ROLES.items():
            got = call(server, "get", "/stats", {"X-API-Key": role_keys[label]}, {"by": by})
            if "audit" in roles:
                assert got.status_code == 200, (by, label, got.text)
                assert got.json()["by"] == by
            else:
                assert got.status_code == 403, (by, label, got.text)
                assert got.json()["error"] == "forbidden"
        # The historical keys of the fixture: neither audits.
        for key in (server.keys.read, server.keys.predict):
            assert call(server, "get", "/stats", {"X-API-Key": key}, {"by": by}).status_code == 403
    for by in ("departement", "poste", "day"):
        got = call(server, "get", "/stats", {"X-API-Key": role_keys["read"]}, {"by": by})
        assert got.status_code == 200, (by, got.text)


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
    engine = build_engine(server.database_url)
    name = f"refused-{uuid.uuid4().hex[:6]}"
    try:
        with session_scope(engine) as session:
            key = create_key(session, name, "predict")
        assert call(server, "post", "/predict_batch", {"X-API-Key": wrong}).status_code == 401
        invalid_age = httpx.post(
            f"{server.url}/predict", json=RAW | {"age": "abc"}, headers={"X-API-Key": key}
        )
        assert invalid_age.status_code == 422

        # Refusals are written off the request path, every ATTRITION_REFUSAL_FLUSH_SECONDS.
        deadline = time.monotonic() + 10
        while True:
            with Session(engine) as session:
                events = list(session.exec(select(AuditEvent)).all())
            unauthorised = [
                e
                for e in events
                if (e.endpoint, e.error, e.client) == ("/predict_batch", "invalid_api_key", None)
            ]
            invalid = [e for e in events if e.client == name]
            if (unauthorised and invalid) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    finally:
        engine.dispose()
    assert unauthorised, "the 401 never reached the audit table"
    [row] = invalid
    assert (row.method, row.endpoint, row.status, row.error) == (
        "POST",
        "/predict",
        422,
        "validation_error",
    )
    assert row.detail and row.detail[0]["field"] == "age"
    dumped = " ".join(str(e.model_dump()) for e in events)
    for secret in (wrong, key, server.keys.predict):
        assert secret.split(".")[1] not in dumped
