"""API keys: `atk_<key_id>.<secret>`; the database keeps the key_id, a salt and SHA-256.

Keys are 256-bit random tokens, so a salted SHA-256 is as strong as a slow hash here and
costs microseconds, not the 100+ ms a bcrypt check would add to a cache miss.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import sqlalchemy as sa
from sqlmodel import Session, col, select

from persistence.tables import ApiKey, AuditEvent, utcnow

Role = Literal["predict", "read"]
ROLES: tuple[Role, ...] = ("predict", "read")
PREFIX = "atk_"


class KeyProblem(ValueError):
    """A key operation that cannot be done (duplicate name, unknown name)."""


@dataclass(frozen=True)
class KeyRecord:
    """What the auth cache holds about a key: never the key itself."""

    name: str
    key_id: str
    salt: str
    key_hash: str
    role: str
    revoked: bool

    def matches(self, secret: str) -> bool:
        return hmac.compare_digest(self.key_hash, _digest(self.salt, secret))


def _digest(salt: str, secret: str) -> str:
    return hashlib.sha256(f"{salt}:{secret}".encode()).hexdigest()


def split_key(key: str) -> tuple[str, str] | None:
    """`atk_<key_id>.<secret>` -> (key_id, secret), or None when it has not that shape."""
    if not key.startswith(PREFIX) or "." not in key:
        return None
    key_id, secret = key[len(PREFIX) :].split(".", 1)
    return (key_id, secret) if key_id and secret else None


def create_key(session: Session, name: str, role: Role) -> str:
    """Store a new key and return it: the only time it exists in clear."""
    if session.exec(select(ApiKey).where(ApiKey.name == name)).first() is not None:
        raise KeyProblem(f"a key named {name!r} already exists; revoke it or pick another name")
    key_id, secret, salt = secrets.token_hex(6), secrets.token_urlsafe(32), secrets.token_hex(16)
    session.add(
        ApiKey(name=name, key_id=key_id, salt=salt, key_hash=_digest(salt, secret), role=role)
    )
    return f"{PREFIX}{key_id}.{secret}"


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.exec(select(ApiKey).order_by(col(ApiKey.created_at))))


def revoke_key(session: Session, name: str) -> None:
    key = session.exec(select(ApiKey).where(ApiKey.name == name)).first()
    if key is None:
        raise KeyProblem(f"no key named {name!r}")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        session.add(key)


def has_active_key(session: Session, role: Role) -> bool:
    statement = select(ApiKey.id).where(ApiKey.role == role, col(ApiKey.revoked_at).is_(None))
    return session.exec(statement).first() is not None


def find_key(session: Session, key_id: str) -> KeyRecord | None:
    key = session.exec(select(ApiKey).where(ApiKey.key_id == key_id)).first()
    if key is None:
        return None
    return KeyRecord(
        key.name, key.key_id, key.salt, key.key_hash, key.role, key.revoked_at is not None
    )


def touch_key(session: Session, key_id: str, when: datetime) -> None:
    session.execute(sa.update(ApiKey).where(col(ApiKey.key_id) == key_id).values(last_used_at=when))


def record_refusals(session: Session, events: Sequence[AuditEvent]) -> None:
    """Store a batch of (aggregated) refusals in the session's transaction."""
    session.add_all(events)
