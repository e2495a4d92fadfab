"""Signing in to the HR page in process (Starlette's TestClient keeps the cookies)."""

from __future__ import annotations

import re
from typing import Any

from persistence.keys import Role
from tests.support import databases
from tests.support.http import Key
from tests.support.inprocess import Api

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
TEST_CLIENT = "testclient"  # the address Starlette's TestClient calls from


def new_key(api: Api, *roles: Role) -> Key:
    """A fresh key holding `roles`, in the service's database."""
    return databases.new_key(api.url, "ui", *roles)


def form_token(answer: Any) -> str:
    """The CSRF token of the form on a page."""
    match = CSRF.search(answer.text)
    assert match, answer.text[:2000]
    return match.group(1)


def sign_in(api: Api, key: str, base: str = "") -> Any:
    """Open the form (it sets its CSRF cookie), post the key with the form's token; the
    answer (303 with the session cookie, which the client keeps, on success)."""
    form = api.client.get(f"{base}/ui/sign-in")
    assert form.status_code == 200, form.text[:500]
    return api.client.post(
        f"{base}/ui/sign-in",
        data={"key": key, "csrf_token": form_token(form)},
        follow_redirects=False,
    )
