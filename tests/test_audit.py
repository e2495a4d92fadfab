"""The audit trail end to end, against `bentoml serve` on SQLite and on PostgreSQL: who asked
(client and endpoint on every row), human reviews of a score, the log of person-level reads,
refused calls, and the stop switch seen by every worker.

Each test makes its own keys (unique names), so what it reads back through the filters is
what it did, whatever the other tests sharing the server did.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import psutil
import pytest
import yaml
from sqlmodel import Session, col, select

from persistence.audit import current_switch, set_switch
from persistence.engine import build_engine, session_scope
from persistence.tables import PredictionRecord, Review
from settings import Settings
from tests.support import REPO
from tests.support.commands import run_cli
from tests.support.databases import new_key
from tests.support.http import Key, ok, poll
from tests.support.payloads import RAW
from tests.support.servers import Service, process_family
from training.extracts import load_extracts

pytestmark = pytest.mark.e2e

# The service's default (the session's servers set none): access events and refusals are
# written every FLUSH seconds; a poll for them gives up WRITTEN_WITHIN seconds after a call.
FLUSH = max(Settings().access_flush_seconds, Settings().refusal_flush_seconds)
WRITTEN_WITHIN = FLUSH + 3
LANDS_WITHIN = 10  # the promise for suspend and resume, in seconds
PER_WORKER = 5  # calls in a row each worker must answer alike
PREDICT_ROUTES = ("/predict", "/predict_batch", "/predict_by_id")
PARIS_SUMMER = timezone(timedelta(hours=2))


def get(server: Service, path: str, key: Key, **params: Any) -> httpx.Response:
    """One call on a new connection (so that calls spread over the workers)."""
    return httpx.get(f"{server.url}{path}", headers=key.headers, params=params, timeout=30)


def post(server: Service, path: str, key: Key, body: Any, **headers: str) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", headers=key.headers | headers, json=body, timeout=60)


def employee_ids(generated_dir, *positions: int) -> list[int]:
    employees = load_extracts(generated_dir).employees
    return [int(employees[i].id_employee or 0) for i in positions]


def aware(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert moment.tzinfo is not None, text
    return moment


# --- who asked --------------------------------------------------------------------------------


def test_each_predict_route_stores_its_client_and_endpoint(server, generated_dir):
    predictor, reader = (
        new_key(server.database_url, "asker", "predict"),
        new_key(server.database_url, "reader", "read"),
    )
    [seeded] = employee_ids(generated_dir, 3)
    single = ok(post(server, "/predict", predictor, RAW))
    batch = ok(post(server, "/predict_batch", predictor, [RAW, RAW | {"age": 30}]))
    by_id = ok(post(server, "/predict_by_id", predictor, {"employee_id": seeded}))
    expected = {
        single["prediction_id"]: "/predict",
        batch[0]["prediction_id"]: "/predict_batch",
        batch[1]["prediction_id"]: "/predict_batch",
        by_id["prediction_id"]: "/predict_by_id",
    }

    engine = build_engine(server.database_url)
    try:
        with Session(engine) as session:
            rows = session.exec(
                select(PredictionRecord).where(
                    col(PredictionRecord.id).in_([uuid.UUID(i) for i in expected])
                )
            ).all()
    finally:
        engine.dispose()
    assert {str(r.id): (r.client, r.endpoint) for r in rows} == {
        i: (predictor.name, endpoint) for i, endpoint in expected.items()
    }

    page = ok(get(server, "/history", reader, client=predictor.name, limit=500))
    assert page["total"] == len(page["items"]) == 4
    assert {i["id"]: i["endpoint"] for i in page["items"]} == expected
    assert {i["client"] for i in page["items"]} == {predictor.name}
    one = ok(get(server, f"/predictions/{by_id['prediction_id']}", reader))
    assert (one["client"], one["endpoint"], one["employee_id"]) == (
        predictor.name,
        "/predict_by_id",
        seeded,
    )
    assert ok(get(server, "/history", reader, client=f"nobody-{uuid.uuid4().hex}"))["total"] == 0
    # The reader's reads are not predictions: nothing is stored under its name.
    assert ok(get(server, "/history", reader, client=reader.name))["total"] == 0


# --- human review ----------------------------------------------------------------------------


def test_a_review_round_trip(server):
    predictor = new_key(server.database_url, "scored", "predict")
    reviewer = new_key(server.database_url, "hr", "review")
    both = new_key(server.database_url, "hr-lead", "predict", "review")
    reader = new_key(server.database_url, "reader", "read")
    reviewed = ok(post(server, "/predict", predictor, RAW))["prediction_id"]
    untouched = ok(post(server, "/predict", predictor, RAW | {"age": 29}))["prediction_id"]

    before = datetime.now(UTC) - timedelta(seconds=1)
    posted = [
        ok(
            post(
                server,
                f"/predictions/{reviewed}/reviews",
                reviewer,
                {"decision": "disagree", "note": "Départ déjà annoncé ; entretien le 3."},
            ),
            201,
        ),
        ok(post(server, f"/predictions/{reviewed}/reviews", reviewer, {"decision": "agree"}), 201),
        ok(
            post(
                server,
                f"/predictions/{reviewed}/reviews",
                both,
                {"decision": "no_action", "note": "é" * 2000},  # the cap counts characters
            ),
            201,
        ),
    ]
    after = datetime.now(UTC) + timedelta(seconds=1)
    for review, (decision, who) in zip(
        posted,
        [("disagree", reviewer), ("agree", reviewer), ("no_action", both)],
        strict=True,
    ):
        assert set(review) == {"id", "prediction_id", "decision", "note", "reviewer", "created_at"}
        assert (review["prediction_id"], review["decision"], review["reviewer"]) == (
            reviewed,
            decision,
            who.name,
        )
        assert before <= aware(review["created_at"]) <= after
    assert posted[1]["note"] == "" and len(posted[2]["note"]) == 2000
    assert len({r["id"] for r in posted}) == 3

    detail = ok(get(server, f"/predictions/{reviewed}", reader))
    shown = detail["reviews"]
    assert [r["id"] for r in shown] == [r["id"] for r in posted]  # oldest first
    for got, sent in zip(shown, posted, strict=True):
        assert aware(got.pop("created_at")) == aware(sent["created_at"])
        assert got == {k: v for k, v in sent.items() if k != "created_at"}
    assert ok(get(server, f"/predictions/{untouched}", reader))["reviews"] == []

    def ids(**params: Any) -> set[str]:
        page = ok(get(server, "/history", reader, client=predictor.name, **params))
        return {i["id"] for i in page["items"]}

    assert ids(reviewed="true") == {reviewed}
    assert ids(reviewed="false") == {untouched}
    assert ids() == {reviewed, untouched}


def test_reviews_of_unknown_predictions_and_bad_reviews_are_refused(server):
    predictor = new_key(server.database_url, "scored", "predict")
    reviewer = new_key(server.database_url, "hr", "review")
    target = ok(post(server, "/predict", predictor, RAW))["prediction_id"]
    unknown = str(uuid.uuid4())

    missing = post(server, f"/predictions/{unknown}/reviews", reviewer, {"decision": "agree"})
    assert missing.status_code == 404, missing.text
    assert missing.json() == {"error": "not_found", "message": f"no prediction {unknown}"}

    path = f"/predictions/{target}/reviews"
    for body, field in [
        ({"decision": "maybe"}, "decision"),
        ({"decision": "AGREE"}, "decision"),
        ({}, "decision"),
        ({"decision": "agree", "note": "x" * 2001}, "note"),
        ({"decision": "agree", "note": 12}, "note"),
        ({"decision": "agree", "reviewer": "someone-else"}, "reviewer"),
        ([{"decision": "agree"}], "body"),
    ]:
        refused = post(server, path, reviewer, body)
        assert refused.status_code == 422, (body, refused.text)
        envelope = refused.json()
        assert envelope["error"] == "validation_error", envelope
        assert any(d["field"].split(".")[-1] == field for d in envelope["detail"]), envelope
    not_json = httpx.post(
        f"{server.url}{path}",
        content=b'{"decision": ',
        headers=reviewer.headers | {"Content-Type": "application/json"},
    )
    assert not_json.status_code == 422 and not_json.json()["error"] == "validation_error"
    bad_id = post(server, "/predictions/not-a-uuid/reviews", reviewer, {"decision": "agree"})
    assert bad_id.status_code == 422 and bad_id.json()["error"] == "validation_error"
    # Reviews are never edited nor deleted through the API.
    for method in ("PUT", "PATCH", "DELETE"):
        for route in (path, f"/predictions/{target}"):
            answer = httpx.request(method, f"{server.url}{route}", headers=reviewer.headers)
            assert answer.status_code == 405, (method, route, answer.text)

    engine = build_engine(server.database_url)
    try:
        with Session(engine) as session:
            stored = session.exec(
                select(Review).where(
                    col(Review.prediction_id).in_([uuid.UUID(target), uuid.UUID(unknown)])
                )
            ).all()
    finally:
        engine.dispose()
    assert stored == [], "a refused review was stored"
    assert ok(get(server, f"/predictions/{target}", reviewer))["reviews"] == []


# --- person-level reads ------------------------------------------------------------------------


def access(server: Service, auditor: Key, **params: Any) -> dict[str, Any]:
    return ok(get(server, "/audit/access", auditor, limit=500, **params))


def test_person_level_reads_are_logged_and_stats_are_not(server, generated_dir):
    predictor = new_key(server.database_url, "scorer", "predict")
    reader = new_key(server.database_url, "looker", "read")
    auditor = new_key(server.database_url, "dpo", "audit")
    first, second = employee_ids(generated_dir, 11, 12)
    began = datetime.now(UTC) - timedelta(seconds=1)

    # Aggregates first, on new connections: a worker that logged one would have written it
    # FLUSH seconds later at the latest, and the poll below waits at least that long.
    for by in ("departement", "poste", "day"):
        for _ in range(4):
            ok(get(server, "/stats", reader, by=by))
    for monitoring in ("/performance", "/drift"):  # aggregates too
        ok(get(server, monitoring, reader))
    stats_done = time.monotonic()
    ok(get(server, "/history", reader, employee_id=2**31 - 1))  # no score returned: no event

    scored = ok(post(server, "/predict_by_id", predictor, {"employee_id": first}))
    ok(post(server, "/predict_by_id", predictor, {"employee_id": second}))
    one = ok(get(server, f"/predictions/{scored['prediction_id']}", reader))
    assert one["employee_id"] == first
    of_second = ok(get(server, "/history", reader, employee_id=second, limit=3))
    assert {i["employee_id"] for i in of_second["items"]} == {second}
    of_client = ok(get(server, "/history", reader, client=predictor.name))
    assert of_client["total"] == 2
    # The at-risk list (monitoring) is a person-level list too.
    ranked = ok(get(server, "/employees/at-risk", reader, limit=5))["items"]
    assert ranked, "the list is empty although employees were scored"

    reads = poll(
        lambda: access(server, auditor, client=reader.name),
        lambda page: page["total"] >= 4 and time.monotonic() > stats_done + FLUSH + 0.5,
        timeout=FLUSH + WRITTEN_WITHIN,
    )
    assert reads["total"] == len(reads["items"]) == 4, reads
    # The route template, the id in the query: one filter selects every single-score read.
    single_route = "/predictions/{prediction_id}"
    assert sorted(e["route"] for e in reads["items"]) == sorted(
        [single_route, "/history", "/history", "/employees/at-risk"]
    ), reads
    [listed] = [e for e in reads["items"] if e["route"] == "/employees/at-risk"]
    assert listed["query"] == {"limit": "5"}
    assert listed["employee_ids"] == [i["employee_id"] for i in ranked]
    assert listed["employee_count"] == len(ranked)
    [single] = [e for e in reads["items"] if e["route"] == single_route]
    assert (single["employee_ids"], single["employee_count"], single["query"]) == (
        [first],
        1,
        {"prediction_id": scored["prediction_id"]},
    )
    queries = {
        tuple(sorted(e["query"].items())): e for e in reads["items"] if e["route"] == "/history"
    }
    by_employee = queries.pop((("employee_id", str(second)), ("limit", "3")))
    by_client = queries.pop((("client", predictor.name),))
    assert by_employee["employee_ids"] == [second]
    assert by_employee["employee_count"] == len(of_second["items"])
    assert sorted(by_client["employee_ids"]) == sorted([first, second])
    assert by_client["employee_count"] == 2
    for event in reads["items"]:
        assert event["client"] == reader.name
        assert began <= aware(event["created_at"]) <= datetime.now(UTC) + timedelta(seconds=1)
    assert [e["created_at"] for e in reads["items"]] == sorted(
        (e["created_at"] for e in reads["items"]), key=aware, reverse=True
    ), "newest first"

    # /predict_by_id reads a person's features and returns their score: logged for its caller.
    scoring = poll(
        lambda: access(server, auditor, client=predictor.name),
        lambda page: page["total"] >= 2,
        timeout=WRITTEN_WITHIN,
    )
    assert scoring["total"] == 2, scoring
    assert {e["route"] for e in scoring["items"]} == {"/predict_by_id"}
    assert sorted(e["employee_ids"][0] for e in scoring["items"]) == sorted([first, second])
    assert all(e["employee_count"] == 1 for e in scoring["items"])

    # The filters.
    def total(**params: Any) -> int:
        return int(access(server, auditor, **params)["total"])

    for person, surely in [
        (first, {single["id"], by_client["id"]}),
        (second, {by_employee["id"], by_client["id"]}),
    ]:
        # ...and the at-risk list's event when the person made its first five.
        naming = {e["id"] for e in reads["items"] if person in e["employee_ids"]}
        assert naming >= surely
        found = access(server, auditor, client=reader.name, employee_id=person)["items"]
        assert {e["id"] for e in found} == naming, (person, found)
    assert total(client=reader.name, route="/history") == 2
    for aggregate in ("/stats", "/performance", "/drift"):
        assert total(client=reader.name, route=aggregate) == 0
    assert total(client=reader.name, since=began.isoformat()) == 4
    assert (
        total(client=reader.name, since=(datetime.now(UTC) + timedelta(hours=1)).isoformat()) == 0
    )
    assert total(client=reader.name, until=began.isoformat()) == 0
    assert total(employee_id=first, route="/predict_by_id", client=predictor.name) == 1
    everyone = access(server, auditor, employee_id=first)
    assert all(first in e["employee_ids"] for e in everyone["items"])
    assert {e["client"] for e in everyone["items"]} >= {reader.name, predictor.name}
    pages = [
        ok(get(server, "/audit/access", auditor, client=reader.name, limit=1, offset=n))
        for n in range(5)
    ]
    assert [p["total"] for p in pages] == [4] * 5
    assert [e["id"] for p in pages for e in p["items"]] == [e["id"] for e in reads["items"]]

    # Who looked, never with what: no key material in the log.
    dumped = str(reads) + str(scoring)
    for key in (reader, predictor):
        assert key.secret.split(".")[1] not in dumped and key.secret not in dumped
    # Reading the access log is an audit right only.
    assert get(server, "/audit/access", reader).status_code == 403
    # The same instant in another offset is the same filter (SQLite stores timestamps as text).
    assert total(client=reader.name, since=began.astimezone(PARIS_SUMMER).isoformat()) == 4


# --- refused calls ---------------------------------------------------------------------------


def test_refusals_are_visible_to_auditors(server):
    reader = new_key(server.database_url, "intruder", "read")
    auditor = new_key(server.database_url, "dpo", "audit")
    nowhere = f"/nowhere-{uuid.uuid4().hex[:8]}"
    for _ in range(2):
        assert post(server, "/predict", reader, RAW).status_code == 403
    assert get(server, "/audit/refusals", reader).status_code == 403
    for _ in range(3):
        assert httpx.get(f"{server.url}{nowhere}", timeout=10).status_code == 401

    def refused(**params: Any) -> dict[str, Any]:
        return ok(get(server, "/audit/refusals", auditor, limit=500, **params))

    def count(page: dict[str, Any]) -> int:
        return sum(item["count"] for item in page["items"])

    by_reader = poll(lambda: refused(client=reader.name), lambda p: count(p) >= 3, WRITTEN_WITHIN)
    groups: dict[tuple[str, str, int, str], int] = {}
    for item in by_reader["items"]:
        group = (item["method"], item["endpoint"], item["status"], item["error"])
        groups[group] = groups.get(group, 0) + item["count"]
        assert item["client"] == reader.name and item["client_address"] == "127.0.0.1"
        assert aware(item["last_seen_at"]) >= aware(item["created_at"])
    assert groups == {
        ("POST", "/predict", 403, "forbidden"): 2,
        ("GET", "/audit/refusals", 403, "forbidden"): 1,
    }

    anonymous = poll(lambda: refused(route=nowhere), lambda p: count(p) >= 3, WRITTEN_WITHIN)
    assert count(anonymous) == 3, anonymous
    assert {(i["status"], i["error"], i["client"]) for i in anonymous["items"]} == {
        (401, "missing_api_key", None)
    }
    assert refused(route=nowhere, since=(datetime.now(UTC) + timedelta(hours=1)).isoformat()) == {
        "total": 0,
        "offset": 0,
        "limit": 500,
        "items": [],
    }
    assert refused(client=reader.name, route="/predict")["total"] >= 1
    assert reader.secret.split(".")[1] not in str(by_reader)


# --- the stop switch --------------------------------------------------------------------------


def cli_env(server: Service) -> dict[str, str]:
    return os.environ | {"DATABASE_URL": server.database_url}


def predict_status(server: Service, key: Key, request_id: str) -> httpx.Response:
    return post(server, "/predict", key, RAW, **{"X-Request-ID": request_id})


def workers(server: Service) -> list[int]:
    """The pids of the server's worker processes (as many as configuration.yaml says)."""
    configured = yaml.safe_load((REPO / "configuration.yaml").read_text())
    expected = configured["services"]["attrition"]["workers"]
    found = [
        p.pid
        for p in process_family(server.process.pid)[1:]
        if "_bentoml_impl.worker" in " ".join(p.cmdline())
    ]
    assert len(found) == expected, (found, expected)
    return found


def served(
    server: Service, pids: list[int], method: str, path: str, key: Key, body: Any = None, **h: str
) -> tuple[int, httpx.Response]:
    """One call on a new connection, and the pid of the worker that answered it (the worker
    that holds the server end of the still-open connection)."""
    with httpx.Client(timeout=60) as client:
        answer = client.request(method, f"{server.url}{path}", headers=key.headers | h, json=body)
        port = answer.extensions["network_stream"].get_extra_info("client_addr")[1]
        for pid in pids:
            for connection in psutil.Process(pid).net_connections("tcp"):
                if connection.raddr and connection.raddr.port == port:
                    return pid, answer
    raise AssertionError(f"no worker of {pids} holds the connection from port {port}")


def until_every_worker_answers(
    server: Service, key: Key, status: int, started: float, prefix: str
) -> tuple[float, list[str]]:
    """Seconds from `started` until every worker has answered PER_WORKER predict calls in a
    row with `status` (each call on a new connection; fails past LANDS_WITHIN seconds), and the
    request ids answered so."""
    pids = workers(server)
    in_a_row = dict.fromkeys(pids, 0)
    answered: list[str] = []
    while min(in_a_row.values()) < PER_WORKER:
        elapsed = time.monotonic() - started
        assert elapsed < LANDS_WITHIN, (
            f"not {status} on every worker after {elapsed:.1f} s: {in_a_row} in a row"
        )
        request_id = f"{prefix}{uuid.uuid4().hex[:8]}"
        pid, answer = served(
            server, pids, "POST", "/predict", key, RAW, **{"X-Request-ID": request_id}
        )
        assert answer.status_code in (200, 503), answer.text
        if answer.status_code == 503:
            assert answer.json()["error"] == "scoring_suspended", answer.text
        if answer.status_code == status:
            in_a_row[pid] += 1
            answered.append(request_id)
        else:
            in_a_row[pid] = 0
    return time.monotonic() - started, answered


@contextmanager
def resumed_at_the_end(server: Service, key: Key) -> Iterator[None]:
    """Whatever happens in the block, scoring is resumed and scores again on the way out (the
    other tests share the server)."""
    try:
        yield
    finally:
        engine = build_engine(server.database_url)
        try:
            with session_scope(engine) as session:
                current = current_switch(session)
                if current is not None and current.suspended:
                    set_switch(session, suspended=False, reason="test cleanup", actor="tests")
        finally:
            engine.dispose()
        until_every_worker_answers(server, key, 200, time.monotonic(), "cleanup-")


def test_the_stop_switch_stops_every_worker_and_only_scoring(server, generated_dir):
    predictor = new_key(server.database_url, "scorer", "predict")
    reviewer = new_key(server.database_url, "hr", "review")
    reader = new_key(server.database_url, "reader", "read")
    auditor = new_key(server.database_url, "dpo", "audit")
    [seeded] = employee_ids(generated_dir, 20)
    earlier = ok(post(server, "/predict", predictor, RAW))["prediction_id"]
    reason = f"DPIA under review ({uuid.uuid4().hex[:6]}): scoring paused, reads continue"
    prefix = f"suspended-{uuid.uuid4().hex[:8]}-"
    actor = f"operator-{uuid.uuid4().hex[:6]}"

    with resumed_at_the_end(server, predictor):
        before = datetime.now(UTC) - timedelta(seconds=1)
        done = run_cli(
            "scoring", "suspend", "--reason", reason, "--actor", actor, env=cli_env(server)
        )
        suspended_at = time.monotonic()  # the switch is committed when the command returns
        assert done.returncode == 0, done.stderr
        took, refused = until_every_worker_answers(server, predictor, 503, suspended_at, prefix)
        print(f"suspended everywhere after {took:.1f} s")
        during = f"during-{prefix}"

        expected = {"error": "scoring_suspended", "message": reason}
        bodies = {
            "/predict": RAW,
            "/predict_batch": [RAW, RAW],
            "/predict_by_id": {"employee_id": seeded},
        }
        for route in PREDICT_ROUTES:
            for n in range(6):
                answer = post(server, route, predictor, bodies[route], **{"X-Request-ID": during})
                assert answer.status_code == 503, (route, n, answer.text)
                assert answer.json() == expected
                assert answer.headers["content-type"] == "application/json"
        # A key that may not predict is still told so first: the switch is no oracle of keys.
        assert post(server, "/predict", reader, RAW).status_code == 403

        # Reads, reviews, audits and readiness keep answering.
        for path, key, params in [
            ("/history", reader, {}),
            (f"/predictions/{earlier}", reader, {}),
            ("/stats", reader, {}),
            ("/audit/access", auditor, {}),
            ("/audit/refusals", auditor, {}),
        ]:
            for _ in range(3):
                assert get(server, path, key, **params).status_code == 200, path
        assert httpx.get(f"{server.url}/readyz", timeout=10).status_code == 200
        assert httpx.get(f"{server.url}/livez", timeout=10).status_code == 200
        review = post(server, f"/predictions/{earlier}/reviews", reviewer, {"decision": "agree"})
        assert review.status_code == 201, review.text
        # Every worker's card says so (each has answered 503 above, so each has re-read it).
        pids = workers(server)
        cards = dict.fromkeys(pids, 0)
        deadline = time.monotonic() + 10
        while min(cards.values()) < 2 and time.monotonic() < deadline:
            for method in ("GET", "POST"):
                pid, card = served(server, pids, method, "/model", reader)
                state = ok(card)["scoring"]
                assert (state["suspended"], state["reason"], state["by"]) == (True, reason, actor)
                assert before <= aware(state["since"]) <= datetime.now(UTC)
                cards[pid] += 1
        assert min(cards.values()) >= 2, cards
        # ...and the last 20 calls, each on a new connection, all of them refused.
        for _ in range(20):
            answer = predict_status(server, predictor, during)
            assert (answer.status_code, answer.json()) == (503, expected)

        # Nothing was scored nor stored while suspended.
        engine = build_engine(server.database_url)
        try:
            with Session(engine) as session:
                stored = session.exec(
                    select(PredictionRecord.id).where(
                        col(PredictionRecord.request_id).in_([during, *refused])
                    )
                ).all()
        finally:
            engine.dispose()
        assert stored == []

        done = run_cli("scoring", "resume", "--actor", actor, env=cli_env(server))
        resumed_at = time.monotonic()
        assert done.returncode == 0, done.stderr
        took, _ = until_every_worker_answers(server, predictor, 200, resumed_at, prefix)
        print(f"resumed everywhere after {took:.1f} s")
        for route in PREDICT_ROUTES:
            assert post(server, route, predictor, bodies[route]).status_code == 200, route
        for _ in range(6):
            pid, card = served(server, workers(server), "GET", "/model", reader)
            state = ok(card)["scoring"]
            assert (state["suspended"], state["by"]) == (False, actor), (pid, state)
