"""Fixtures of the browser tests: one headless Chromium per session, and a service on a fresh
PostgreSQL database with scored employees and a key per role."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, sync_playwright
from sqlmodel import Session, select

from persistence.engine import build_engine
from persistence.tables import EmployeeRecord
from tests.support import databases
from tests.support.browser import Visit, chromium_path, launch_arguments, open_visit
from tests.support.databases import new_key
from tests.support.http import Key, ok
from tests.support.servers import Service, start_service

SCORED_EMPLOYEES = 40


@dataclass
class Site:
    """The running service, a key per role, and the employees it has scored."""

    service: Service
    read: Key
    review: Key
    audit: Key
    employee_ids: list[int]

    @property
    def url(self) -> str:
        return self.service.url


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Module-scoped, not session-scoped: Playwright's sync API keeps an asyncio loop marked as
    running on the main thread while it is open, and tests elsewhere call `asyncio.run`."""
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=chromium_path(), headless=True, args=launch_arguments()
        )
        yield chromium
        chromium.close()


def _employees(url: str) -> list[int]:
    engine = build_engine(url)
    try:
        with Session(engine) as session:
            query = select(EmployeeRecord.id).order_by(EmployeeRecord.id).limit(SCORED_EMPLOYEES)
            return [int(employee_id) for employee_id in session.exec(query)]
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def site(
    postgres_server: str, trained_tag: str, generated_dir: Path, session_home: Path
) -> Iterator[Site]:
    with databases.fresh_database(postgres_server) as url:
        keys = databases.prepare_database(url, seed_dir=generated_dir)
        read, review, audit = (new_key(url, "browser", r) for r in ("read", "review", "audit"))
        employee_ids = _employees(url)
        service = start_service(url, keys, session_home / "serve-browser.log")
        try:
            with httpx.Client(base_url=service.url, headers=service.headers()) as client:
                for employee_id in employee_ids:  # twice: every employee has a score history
                    for _ in range(2):
                        ok(client.post("/predict_by_id", json={"employee_id": employee_id}))
                # A refusal, so that the audit page has one to show.
                client.get("/history", headers={"X-API-Key": "not-a-key"})
            yield Site(service, read, review, audit, employee_ids)
        finally:
            service.stop()


@pytest.fixture
def visit(browser: Browser, site: Site) -> Iterator[Visit]:
    """A fresh browser context (no cookies); fails the test if any page fetched from another
    host."""
    opened = open_visit(browser, site.url)
    yield opened
    opened.context.close()
    assert opened.foreign_requests() == [], opened.foreign_requests()
