"""API keys: `atk_<key_id>.<secret>`; the database keeps the key_id, a salt and SHA-256.

Keys are 256-bit random tokens, so a salted SHA-256 is as strong as a slow hash here and
costs microseconds, not the 100+ ms a bcrypt check would add to a cache miss.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import sqlalchemy as sa
from sqlmodel import Session, col, select

from persistence.tables import ApiKey, utcnow

Role = Literal["read", "predict", "review", "audit"]
# Every role may read (history, one prediction, stats, model, monitoring); each adds its own.
ROLES: tuple[Role, ...] = ("read", "predict", "review", "audit")
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
    roles: frozenset[str]
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


def create_key(session: Session, name: str, *roles: Role) -> str:
    """Store a new key holding `roles` (one or more) and return it: the only time it exists in
    clear."""
    if not roles or not set(roles) <= set(ROLES):
        raise KeyProblem(f"a key needs one or more of the roles {', '.join(ROLES)}")
    if session.exec(select(ApiKey).where(ApiKey.name == name)).first() is not None:
        raise KeyProblem(f"a key named {name!r} already exists; revoke it or pick another name")
    key_id, secret, salt = secrets.token_hex(6), secrets.token_urlsafe(32), secrets.token_hex(16)
    session.add(
        ApiKey(
            name=name,
            key_id=key_id,
            salt=salt,
            key_hash=_digest(salt, secret),
            roles=",".join(sorted(set(roles))),
        )
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
    active = session.exec(select(ApiKey.roles).where(col(ApiKey.revoked_at).is_(None)))
    return any(role in roles.split(",") for roles in active)


def find_key(session: Session, key_id: str) -> KeyRecord | None:
    key = session.exec(select(ApiKey).where(ApiKey.key_id == key_id)).first()
    if key is None:
        return None
    return KeyRecord(
        key.name,
        key.key_id,
        key.salt,
        key.key_hash,
        frozenset(key.roles.split(",")),
        key.revoked_at is not None,
    )


def touch_key(session: Session, key_id: str, when: datetime) -> None:
    session.execute(sa.update(ApiKey).where(col(ApiKey.key_id) == key_id).values(last_used_at=when))
