"""Sessions of the HR page, in process on SQLite and PostgreSQL: sign-in with a key, the cookie
(never the key, HttpOnly, SameSite=Strict, Path=/ui, Secure over HTTPS), CSRF on every POST,
sign-out, idle and absolute expiry, revocation, the cookie refused on the API and keys refused
on the pages, failed sign-ins audited and slowed down per address.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from http.cookies import SimpleCookie

import pytest
import sqlalchemy as sa
from sqlmodel import Session, col, select

from persistence.audit import cutoff_for, purge_batch, purge_counts
from persistence.engine import build_engine, session_scope
from persistence.keys import Role, revoke_key
from persistence.sessions import open_session, token_digest
from persistence.tables import AuditEvent, UiSession, utcnow
from serving.authentication import SESSION_COOKIE, SignInBackoff
from tests.support.databases import stored
from tests.support.http import poll
from tests.support.ui import TEST_CLIENT, form_token, new_key, sign_in

WRITTEN_WITHIN = 10  # seconds: the refusal log flushes every 2 s


pytestmark = pytest.mark.usefixtures("signed_out")


def set_cookies(answer) -> dict[str, SimpleCookie]:
    jars = {}
    for header in answer.headers.get_list("set-cookie"):
        jar: SimpleCookie = SimpleCookie()
        jar.load(header)
        jars.update({name: jar for name in jar})
    return jars


def session_rows(api, client: str) -> list[UiSession]:
    return stored(api.url, select(UiSession).where(UiSession.client == client))


def change_session(api, token: str, **values) -> None:
    engine = build_engine(api.url)
    try:
        with session_scope(engine) as session:
            session.execute(
                sa.update(UiSession)
                .where(col(UiSession.token_hash) == token_digest(token))
                .values(**values)
            )
    finally:
        engine.dispose()


def refusals(api, address_route: str, error: str) -> list[AuditEvent]:
    engine = build_engine(api.url)
    try:
        with Session(engine) as session:
            return list(
                session.exec(
                    select(AuditEvent).where(
                        AuditEvent.endpoint == address_route, AuditEvent.error == error
                    )
                )
            )
    finally:
        engine.dispose()


# --- sign-in ---------------------------------------------------------------------------------


def test_sign_in_opens_a_session_whose_cookie_holds_a_token_never_the_key(api):
    name, key = new_key(api, "read")
    answer = sign_in(api, key)
    assert answer.status_code == 303, answer.text[:500]
    assert answer.headers["location"] == "/ui"
    cookie = set_cookies(answer)[SESSION_COOKIE][SESSION_COOKIE]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Strict"
    assert cookie["path"] == "/ui"
    assert not cookie["secure"]  # plain HTTP here
    token = cookie.value
    assert key not in answer.headers.get("set-cookie", "") and len(token) >= 40
    [row] = session_rows(api, name)
    assert row.token_hash == token_digest(token) and row.ended_at is None
    assert row.key_id == key.split("_", 1)[1].split(".")[0]
    assert row.expires_at - row.created_at == timedelta(hours=8)
    page = api.client.get("/ui")
    assert page.status_code == 200 and "Vue d'ensemble" in page.text


def test_the_cookie_is_secure_when_the_sign_in_came_over_https(api):
    _, key = new_key(api, "read")
    answer = sign_in(api, key, base="https://testserver")
    assert answer.status_code == 303
    assert set_cookies(answer)[SESSION_COOKIE][SESSION_COOKIE]["secure"] is True


def test_a_wrong_key_is_a_401_page_and_an_audited_refusal(api):
    answer = sign_in(api, f"atk_nope{uuid.uuid4().hex[:4]}.secret")
    assert answer.status_code == 401
    assert answer.headers["content-type"].startswith("text/html")
    assert 'id="key"' in answer.text and "invalid_api_key" in answer.text
    assert "Connexion refusée" in answer.text
    assert SESSION_COOKIE not in set_cookies(answer)
    rows = poll(lambda: refusals(api, "/ui/sign-in", "invalid_api_key"), bool, WRITTEN_WITHIN)
    assert rows and all(r.status == 401 and r.method == "POST" for r in rows)


def test_a_sign_in_without_its_csrf_token_is_refused_and_opens_nothing(api):
    name, key = new_key(api, "read")
    api.client.get("/ui/sign-in")  # the cookie half of the double submit
    for data in ({"key": key}, {"key": key, "csrf_token": "forged"}):
        answer = api.client.post("/ui/sign-in", data=data, follow_redirects=False)
        assert answer.status_code == 403, answer.text[:500]
        assert "csrf_failed" in answer.text
    api.client.cookies.clear()  # a token without its cookie (another site's form)
    token = form_token(api.client.get("/ui/sign-in"))
    api.client.cookies.clear()
    answer = api.client.post(
        "/ui/sign-in", data={"key": key, "csrf_token": token}, follow_redirects=False
    )
    assert answer.status_code == 403
    assert session_rows(api, name) == []


def test_failed_sign_ins_are_slowed_down_then_a_success_forgets_them(api):
    backoff: SignInBackoff = api.module.SIGN_IN_BACKOFF
    free = backoff.free
    for _ in range(free):
        assert sign_in(api, "atk_bad.bad").status_code == 401
    slowed = sign_in(api, "atk_bad.bad")
    assert slowed.status_code == 429
    assert slowed.headers["retry-after"] == "2"
    assert "Trop de tentatives" in slowed.text and 'id="key"' in slowed.text
    # Even the right key waits its turn: no oracle while slowed down.
    _, key = new_key(api, "read")
    assert sign_in(api, key).status_code == 429
    backoff.succeeded(TEST_CLIENT)  # the wait is over (the class is tested on its clock)
    assert sign_in(api, key).status_code == 303


def test_the_backoff_doubles_up_to_its_cap_and_forgets_a_quiet_address():
    now = [0.0]
    backoff = SignInBackoff(free=5, window=900, cap=60, timer=lambda: now[0])
    for _ in range(5):
        assert backoff.wait("a") == 0
        backoff.failed("a")
    waits = []
    for _ in range(7):
        waits.append(backoff.wait("a"))
        now[0] += waits[-1]
        backoff.failed("a")
    assert waits == [2, 4, 8, 16, 32, 60, 60]
    assert backoff.wait("b") == 0  # per address
    now[0] += 901  # quiet for the window: forgotten, never locked out for good
    assert backoff.wait("a") == 0
    backoff.failed("a")
    assert backoff.wait("a") == 0  # one failure again, within the free ones
    backoff.succeeded("a")
    assert "a" not in backoff._failures


# --- sign-out, expiry, revocation ------------------------------------------------------------


def signed_in(api, *roles: Role) -> tuple[str, str, str]:
    """(name, key, session token) of a fresh key signed in on the shared client."""
    name, key = new_key(api, *roles)
    answer = sign_in(api, key)
    assert answer.status_code == 303, answer.text[:500]
    return name, key, set_cookies(answer)[SESSION_COOKIE][SESSION_COOKIE].value


def test_sign_out_ends_the_session_and_its_cookie_no_longer_works(api):
    name, _, token = signed_in(api, "read")
    page = api.client.get("/ui")
    answer = api.client.post(
        "/ui/sign-out", data={"csrf_token": form_token(page)}, follow_redirects=False
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/sign-in"
    assert set_cookies(answer)[SESSION_COOKIE][SESSION_COOKIE]["max-age"] == "0"
    [row] = session_rows(api, name)
    assert row.ended_at is not None
    api.client.cookies.clear()
    again = api.client.get("/ui", cookies={SESSION_COOKIE: token}, follow_redirects=False)
    assert again.status_code == 303 and again.headers["location"] == "/ui/sign-in"


def test_sign_out_without_the_csrf_token_is_refused_and_the_session_lives(api):
    name, _, _ = signed_in(api, "read")
    answer = api.client.post("/ui/sign-out", follow_redirects=False)
    assert answer.status_code == 403
    assert answer.headers["content-type"].startswith("text/html")
    [row] = session_rows(api, name)
    assert row.ended_at is None
    assert api.client.get("/ui").status_code == 200


@pytest.mark.parametrize(
    "change",
    [
        {"last_seen_at": utcnow() - timedelta(minutes=31)},  # idle past 30 minutes
        {"expires_at": utcnow() - timedelta(seconds=1)},  # past the absolute end
    ],
    ids=["idle", "absolute"],
)
def test_an_expired_session_sends_the_browser_back_to_sign_in(api, change):
    _, _, token = signed_in(api, "read")
    assert api.client.get("/ui").status_code == 200
    change_session(api, token, **change)
    answer = api.client.get("/ui/at-risk", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/sign-in"
    assert set_cookies(answer)[SESSION_COOKIE][SESSION_COOKIE]["max-age"] == "0"


def test_a_visit_keeps_the_session_from_idling_out(api):
    name, _, token = signed_in(api, "read")
    change_session(api, token, last_seen_at=utcnow() - timedelta(minutes=29))
    assert api.client.get("/ui").status_code == 200
    [row] = session_rows(api, name)
    assert utcnow() - row.last_seen_at.replace(tzinfo=utcnow().tzinfo) < timedelta(minutes=1)


def test_htmx_calls_without_a_session_get_a_full_page_redirect(api):
    answer = api.client.get("/ui/at-risk", headers={"HX-Request": "true"})
    assert answer.status_code == 401
    assert answer.headers["hx-redirect"] == "/ui/sign-in"


def test_a_revoked_key_ends_its_sessions(api):
    name, _, _ = signed_in(api, "read")
    assert api.client.get("/ui").status_code == 200
    engine = build_engine(api.url)
    try:
        with session_scope(engine) as session:
            revoke_key(session, name)
    finally:
        engine.dispose()
    ttl = api.module.settings.key_cache_seconds
    answer = poll(
        lambda: api.client.get("/ui", follow_redirects=False),
        lambda a: a.status_code == 303,
        ttl + 3,
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/sign-in"
    [row] = session_rows(api, name)
    assert row.ended_at is not None


# --- the cookie on the pages only, keys on the API only --------------------------------------


def test_the_session_cookie_is_refused_on_the_api_and_keys_on_the_pages(api):
    _, key, token = signed_in(api, "read")
    cookie = {"Cookie": f"{SESSION_COOKIE}={token}"}
    for path in ("/history", "/model", "/employees/at-risk"):
        answer = api.client.get(path, headers=cookie)
        assert answer.status_code == 401, path
        assert answer.headers["content-type"] == "application/json"
        assert answer.json()["error"] == "missing_api_key"
        assert api.client.get(path, headers={"X-API-Key": key}).status_code == 200, path
    api.client.cookies.clear()
    for path in ("/ui", "/ui/at-risk", "/ui/monitoring"):
        answer = api.client.get(path, headers={"X-API-Key": key}, follow_redirects=False)
        assert answer.status_code == 303, path
        assert answer.headers["location"] == "/ui/sign-in"


def test_pages_and_files_the_gate_leaves_public(api):
    assert api.client.get("/ui/sign-in").status_code == 200
    assert api.client.get("/ui/static/ui.css").status_code == 200
    assert api.client.get("/ui/static/ui.js").status_code == 200


def test_purge_takes_sessions_older_than_the_cutoff_and_keeps_the_rest(api):
    name, _, _ = signed_in(api, "read")
    engine = build_engine(api.url)
    try:
        with session_scope(engine) as session:
            old = open_session(
                session, key_id="old", client=name, address=None, lifetime=timedelta(hours=8)
            )
        change_session(api, old, created_at=utcnow() - timedelta(days=400))
        with session_scope(engine) as session:
            assert purge_counts(session, cutoff_for(365))["ui_sessions"] == 1
        with session_scope(engine) as session:
            assert purge_batch(session, cutoff_for(365))["ui_sessions"] == 1
    finally:
        engine.dispose()
    assert [r.key_id for r in session_rows(api, name)] != ["old"]
    assert len(session_rows(api, name)) == 1
