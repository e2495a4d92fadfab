"""The benchmark's throw-away PostgreSQL database, and the count of its prediction rows."""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import psycopg2
from sqlalchemy.engine import make_url

from bench import BenchError, log
from tests.support.databases import (
    LOCAL_POSTGRES,
    TEST_DATABASE_ENV,
    answers,
    create_database,
    drop_database,
    libpq,
    postgres_server,
)


def _where(server: str) -> str:
    if server == os.environ.get(TEST_DATABASE_ENV):
        return f"{TEST_DATABASE_ENV} server"
    return f"{LOCAL_POSTGRES} server" if server == LOCAL_POSTGRES else "embedded pgserver"


@contextlib.contextmanager
def bench_database(tmp: Path) -> Iterator[tuple[str, str]]:
    """(url, where): a fresh `attrition_bench_<random>` database, dropped on the way out; on
    a TEST_DATABASE_URL server that refuses to create one, that database as it is."""
    with postgres_server(tmp / "pgdata") as server:
        url: str | None
        try:
            url = create_database(server, prefix="attrition_bench")
        except psycopg2.Error as exc:
            if server != os.environ.get(TEST_DATABASE_ENV):
                raise
            if not answers(server):
                raise BenchError(f"{TEST_DATABASE_ENV} does not answer: {exc}") from exc
            log(f"cannot create a database there ({exc}); using {TEST_DATABASE_ENV} as it is")
            url = None
        if url is None:
            yield libpq(server), f"{TEST_DATABASE_ENV} as is"
            return
        name = make_url(url).database
        log(f"created database {name}")
        try:
            yield url, f"{_where(server)}, fresh database"
        finally:
            drop_database(server, url)
            log(f"dropped database {name}")


class Rows:
    """Counts of the `predictions` and `shadow_predictions` tables, on one autocommit
    connection."""

    def __init__(self, url: str) -> None:
        self.connection = psycopg2.connect(libpq(url), connect_timeout=5)
        self.connection.autocommit = True

    def _count(self, sql: str, *params: object) -> int:
        with self.connection.cursor() as cursor:
            cursor.execute(sql, params)
            (value,) = cursor.fetchone() or (0,)
            return int(value)

    def count(self) -> int:
        return self._count("SELECT count(*) FROM predictions")

    def shadow_count(self) -> int:
        return self._count("SELECT count(*) FROM shadow_predictions")

    def refusals_since(self, since: datetime) -> tuple[int, int]:
        """(audit rows, refused calls they count) of invalid keys since `since`."""
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*), coalesce(sum(count), 0) FROM audit_events "
                "WHERE error = 'invalid_api_key' AND created_at >= %s",
                (since,),
            )
            rows, counted = cursor.fetchone() or (0, 0)
        return int(rows), int(counted)

    def settled(self, timeout: float = 15.0, *, shadow: bool = False) -> int:
        """The count (of the shadow's rows with `shadow`) once calls still in the server have
        landed (stable for 0.6 s)."""
        count = self.shadow_count if shadow else self.count
        deadline = time.monotonic() + timeout
        last = count()
        while time.monotonic() < deadline:
            time.sleep(0.3)
            now = count()
            if now == last:
                time.sleep(0.3)
                again = count()
                if again == now:
                    return now
                now = again
            last = now
        return last

    def found(self, ids: list[str]) -> int:
        wanted = [i for i in ids if re.fullmatch(r"[0-9a-fA-F-]{32,36}", i)]
        if not wanted:
            return 0
        return self._count("SELECT count(*) FROM predictions WHERE id = ANY(%s::uuid[])", wanted)

    def close(self) -> None:
        self.connection.close()
