"""Small helpers for end-to-end tests that talk HTTP to a running service."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

import httpx

T = TypeVar("T")


class Key(NamedTuple):
    """An API key a test created: its name (what the audit shows) and the secret it sends."""

    name: str
    secret: str

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.secret}


def ok(answer: httpx.Response, status: int = 200) -> Any:
    """The JSON of an answer that must have `status` (the body is shown when it has not)."""
    assert answer.status_code == status, answer.text[:1000]
    return answer.json()


def poll(fetch: Callable[[], T], done: Callable[[T], bool], timeout: float) -> T:
    """`fetch()` until `done` says yes or `timeout` seconds have passed; the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.2)
