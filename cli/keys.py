"""`attrition keys create | list | revoke`.

Creating and revoking write `api_keys`, so they connect as the admin
(`ATTRITION_ADMIN_DATABASE_URL`, else `DATABASE_URL`); listing only reads, as the service may.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from cli.db import connected
from persistence.engine import session_scope
from persistence.keys import ROLES, Role, create_key, has_active_key, list_keys, revoke_key
from settings import get_settings

LOCAL_KEY_NAME = "local-{n}"
DEFAULT_ROLE: Role = "predict"
# `make serve`'s first key may try every route: scoring, reviews, the audit reads (read is
# implied by each).
LOCAL_KEY_ROLES: tuple[Role, ...] = ("predict", "review", "audit")


def _roles(roles: Sequence[str]) -> str:
    return ", ".join(sorted(set(roles)))


def create(args: argparse.Namespace) -> int:
    roles: list[Role] = args.role or [DEFAULT_ROLE]
    with connected(get_settings().admin_url) as engine, session_scope(engine) as session:
        key = create_key(session, args.name, *roles)
    print(f"created key {args.name!r} with roles {_roles(roles)}; it is shown once, store it now:")
    print(key)
    return 0


def show(_args: argparse.Namespace) -> int:
    with connected(get_settings().database_url) as engine, session_scope(engine) as session:
        keys = list_keys(session)
    print(f"{'name':<24} {'roles':<26} {'key id':<14} {'created':<20} {'last used':<20} revoked")
    for k in keys:
        print(
            f"{k.name:<24} {k.roles:<26} {k.key_id:<14} {k.created_at:%Y-%m-%d %H:%M:%S}  "
            f"{(f'{k.last_used_at:%Y-%m-%d %H:%M:%S}' if k.last_used_at else '-'):<20} "
            f"{k.revoked_at or '-'}"
        )
    return 0


def revoke(args: argparse.Namespace) -> int:
    with connected(get_settings().admin_url) as engine, session_scope(engine) as session:
        revoke_key(session, args.name)
    print(f"revoked {args.name!r} (effective within {get_settings().key_cache_seconds:g} s)")
    return 0


def ensure_local_key(port: str, employee_id: int) -> None:
    """`make serve` on a fresh clone: when no key may predict, make one that may do everything
    (`LOCAL_KEY_ROLES`), and show how to use it."""
    with connected(get_settings().admin_url) as engine, session_scope(engine) as session:
        if has_active_key(session, "predict"):
            print(
                "an active 'predict' key exists (attrition keys list); new one: attrition keys "
                f"create NAME {' '.join(f'--role {r}' for r in LOCAL_KEY_ROLES)}",
                flush=True,
            )
            return
        name = LOCAL_KEY_NAME.format(n=len(list_keys(session)) + 1)
        key = create_key(session, name, *LOCAL_KEY_ROLES)
    print(
        f"created local API key {name!r} with roles {_roles(LOCAL_KEY_ROLES)} (read is implied; "
        f"shown once):\n  {key}\ntry it:\n"
        f"  curl -s -X POST http://127.0.0.1:{port}/predict_by_id "
        f"-H 'X-API-Key: {key}' -H 'Content-Type: application/json' "
        f"-d '{{\"employee_id\": {employee_id}}}'",
        flush=True,
    )


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = commands.add_parser("keys", help="API keys of the service's clients")
    sub = group.add_subparsers(required=True, metavar="ACTION")
    parser = sub.add_parser("create", help="create a key; printed once, as the last line")
    parser.add_argument("name")
    parser.add_argument(
        "--role",
        choices=ROLES,
        action="append",
        help=f"repeat for several; default {DEFAULT_ROLE} (every role may also read)",
    )
    parser.set_defaults(handler=create)
    sub.add_parser("list", help="list keys (never the keys themselves)").set_defaults(handler=show)
    parser = sub.add_parser("revoke", help="revoke a key by name")
    parser.add_argument("name")
    parser.set_defaults(handler=revoke)
