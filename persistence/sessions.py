"""Sessions of the HR page (`/ui`): opened by a sign-in with an API key, held by the browser as
a random token in a cookie; the database keeps only the token's SHA-256.

A session is alive while it is not ended (`ended_at`), not past its absolute end
(`expires_at`) and was seen within the idle limit (`last_seen_at`). `resume` checks all three
and records the visit in one statement. Plain functions taking a session; none of them commits.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa
from sqlmodel import Session, col

from persistence.tables import UiSession, utcnow

ADDRESS_LENGTH = 64


@dataclass(frozen=True, slots=True)
class LiveSession:
    """What a request needs of its session: which key it stands for and its CSRF token."""

    id: int
    key_id: str
    client: str
    csrf_token: str


def token_digest(token: str) -> str:
    """The stored form of a session token (256 random bits: a plain SHA-256 is enough)."""
    return hashlib.sha256(token.encode()).hexdigest()


def open_session(
    session: Session,
    *,
    key_id: str,
    client: str,
    address: str | None,
    lifetime: timedelta,
) -> str:
    """Store a new session and return its token (the only time it exists in clear)."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    session.add(
        UiSession(
            token_hash=token_digest(token),
            key_id=key_id,
            client=client,
            csrf_token=secrets.token_urlsafe(32),
            address=address[:ADDRESS_LENGTH] if address else None,
            created_at=now,
            last_seen_at=now,
            expires_at=now + lifetime,
        )
    )
    return token


def resume(session: Session, token: str, *, idle: timedelta) -> LiveSession | None:
    """The live session holding `token`, its visit recorded; None when there is none (unknown,
    ended, past its absolute end, or idle for longer than `idle`)."""
    now = utcnow()
    statement = (
        sa.update(UiSession)
        .where(
            col(UiSession.token_hash) == token_digest(token),
            col(UiSession.ended_at).is_(None),
            col(UiSession.expires_at) > now,
            col(UiSession.last_seen_at) > now - idle,
        )
        .values(last_seen_at=now)
        .returning(
            col(UiSession.id),
            col(UiSession.key_id),
            col(UiSession.client),
            col(UiSession.csrf_token),
        )
    )
    row = session.execute(statement).first()
    return LiveSession(*row) if row is not None else None


def end_session(session: Session, session_id: int) -> None:
    """Sign out (or end a session whose key was revoked); ending twice keeps the first time."""
    session.execute(
        sa.update(UiSession)
        .where(col(UiSession.id) == session_id, col(UiSession.ended_at).is_(None))
        .values(ended_at=utcnow())
    )
