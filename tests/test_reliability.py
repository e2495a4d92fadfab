"""Nothing lost: outages, load and a crash, each against a real PostgreSQL server."""

from __future__ import annotations

import os
import re
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlmodel import Session, col, select

from persistence.engine import build_engine
from persistence.tables import PredictionRecord as P
from tests.support import REPO
from tests.support.databases import embedded_postgres, prepare_database
from tests.support.payloads import RAW
from tests.support.servers import Service, bentoml_serve, kill_server, start_service

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def stored_ids(database_url: str, prefix: str) -> set[str]:
    engine = build_engine(database_url)
    try:
        with Session(engine) as session:
            found = session.exec(select(P.id).where(col(P.request_id).startswith(prefix)))
            return {str(i) for i in found}
    finally:
        engine.dispose()


def predict(server: Service, request_id: str, client: httpx.Client) -> httpx.Response:
    return client.post(
        f"{server.url}/predict",
        json=RAW,
        timeout=30,
        headers=server.headers() | {"X-Request-ID": request_id},
    )


@pytest.mark.parametrize("server", ["postgres"], indirect=True)
def test_load_5000_calls_rows_equal_answers(server):
    prefix = f"load-{uuid.uuid4().hex[:8]}-"
    with (
        httpx.Client(limits=httpx.Limits(max_connections=32)) as client,
        ThreadPoolExecutor(32) as pool,
    ):
        answers = list(pool.map(lambda i: predict(server, f"{prefix}{i}", client), range(5000)))
    ok = {a.json()["prediction_id"] for a in answers if a.status_code == 200}
    assert all(a.status_code in (200, 503) for a in answers)
    assert len(ok) >= 4900, f"only {len(ok)} of 5000 answered"
    assert stored_ids(server.database_url, prefix) == ok


def test_database_outage_503_then_recovery_within_5_seconds(session_home, trained_tag):
    folder = session_home / "outage-pg"
    postgres = embedded_postgres(folder)
    url = postgres.get_uri()
    server = start_service(url, prepare_database(url), session_home / "serve-outage.log")
    prefix = f"outage-{uuid.uuid4().hex[:8]}-"
    answered: set[str] = set()
    try:
        with httpx.Client() as client:
            first = predict(server, f"{prefix}before", client)
            assert first.status_code == 200
            answered.add(first.json()["prediction_id"])
            postgres.cleanup()  # stops the server, keeps its data folder
            statuses = []
            for i in range(20):
                answer = predict(server, f"{prefix}down-{i}", client)
                statuses.append(answer.status_code)
                assert answer.status_code == 503, answer.text
                assert answer.json()["error"] == "database_unavailable"
            assert httpx.get(f"{server.url}/readyz", timeout=10).status_code == 503
            postgres = embedded_postgres(folder)
            back = time.monotonic()
            while True:
                answer = predict(server, f"{prefix}after", client)
                assert answer.status_code in (200, 503), answer.text
                if answer.status_code == 200:
                    answered.add(answer.json()["prediction_id"])
                    break
                time.sleep(0.1)
            assert time.monotonic() - back < 5, "no recovery within 5 s"
            assert httpx.get(f"{server.url}/readyz", timeout=10).status_code == 200
        assert stored_ids(url, prefix) == answered
    finally:
        server.stop()
        postgres.cleanup()


def test_kill_9_under_load_loses_no_answered_prediction(
    new_postgres_database, session_home, trained_tag
):
    url = new_postgres_database()
    server = start_service(url, prepare_database(url), session_home / "serve-crash.log")
    prefix = f"crash-{uuid.uuid4().hex[:8]}-"
    answered: list[str] = []
    stop = threading.Event()

    def hammer(worker: int) -> None:
        with httpx.Client() as client:
            for i in range(100_000):
                if stop.is_set():
                    return
                try:
                    answer = predict(server, f"{prefix}{worker}-{i}", client)
                except httpx.HTTPError:
                    return
                if answer.status_code == 200:
                    answered.append(answer.json()["prediction_id"])

    threads = [threading.Thread(target=hammer, args=(w,)) for w in range(16)]
    for thread in threads:
        thread.start()
    time.sleep(3)
    kill_server(server.process)  # the arbiter and both workers, mid-request
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    assert len(answered) > 50
    assert set(answered) <= stored_ids(url, prefix)


def test_an_access_log_that_cannot_be_written_fails_no_read_and_says_how_many(
    session_home, trained_tag
):
    """Person-level reads are answered, then the database goes before their events are
    written: nothing fails, and the log says how many events were lost (each worker writes
    what it holds when it stops)."""
    folder = session_home / "access-outage-pg"
    postgres = embedded_postgres(folder)
    url = postgres.get_uri()
    keys = prepare_database(url)
    log = session_home / "serve-access-outage.log"
    env = os.environ | {
        "DATABASE_URL": url,
        "BENTOML_CONFIG": str(REPO / "configuration.yaml"),
        "BENTOML_DO_NOT_TRACK": "true",
        "ATTRITION_ACCESS_FLUSH_SECONDS": "60",  # the events wait in memory
    }
    server = bentoml_serve(env=env, log=log)
    try:
        with httpx.Client(timeout=30) as client:
            made = client.post(
                f"{server.url}/predict", json=RAW, headers={"X-API-Key": keys.predict}
            )
            assert made.status_code == 200, made.text
            path = f"/predictions/{made.json()['prediction_id']}"
            for _ in range(3):
                read = httpx.get(f"{server.url}{path}", headers={"X-API-Key": keys.read})
                assert read.status_code == 200, read.text
        postgres.cleanup()  # the database goes with the three events unwritten
        server.stop()
        lost = re.findall(r"could not record (\d+) person-level reads", log.read_text())
        assert sum(int(n) for n in lost) == 3, server.log_tail()
        assert "Traceback" not in log.read_text(), server.log_tail()
    finally:
        server.stop()
        postgres.cleanup()
