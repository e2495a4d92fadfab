"""`attrition keys create | list | revoke`."""

from __future__ import annotations

import argparse

from sqlalchemy import Engine

from persistence.engine import build_engine, session_scope
from persistence.keys import ROLES, create_key, has_active_key, list_keys, revoke_key
from settings import get_settings

LOCAL_KEY_NAME = "local-{n}"


def _engine() -> Engine:
    return build_engine(get_settings().database_url)


def create(args: argparse.Namespace) -> int:
    with session_scope(_engine()) as session:
        key = create_key(session, args.name, args.role)
    print(f"created {args.role!r} key {args.name!r}; it is shown once, store it now:")
    print(key)
    return 0


def show(_args: argparse.Namespace) -> int:
    with session_scope(_engine()) as session:
        keys = list_keys(session)
    print(f"{'name':<24} {'role':<8} {'key id':<14} {'created':<20} {'last used':<20} revoked")
    for k in keys:
        print(
            f"{k.name:<24} {k.role:<8} {k.key_id:<14} {k.created_at:%Y-%m-%d %H:%M:%S}  "
            f"{(f'{k.last_used_at:%Y-%m-%d %H:%M:%S}' if k.last_used_at else '-'):<20} "
            f"{k.revoked_at or '-'}"
        )
    return 0


def revoke(args: argparse.Namespace) -> int:
    with session_scope(_engine()) as session:
        revoke_key(session, args.name)
    print(f"revoked {args.name!r} (effective within {get_settings().key_cache_seconds:g} s)")
    return 0


def ensure_local_key(port: str, employee_id: int) -> None:
    """`make serve` on a fresh clone: make a predict key if none is active, show how to use it."""
    with session_scope(_engine()) as session:
        if has_active_key(session, "predict"):
            print(
                "an active 'predict' key exists (attrition keys list); new one: "
                "attrition keys create NAME",
                flush=True,
            )
            return
        name = LOCAL_KEY_NAME.format(n=len(list_keys(session)) + 1)
        key = create_key(session, name, "predict")
    print(
        f"created local API key {name!r} (shown once):\n  {key}\ntry it:\n"
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
    parser.add_argument("--role", choices=ROLES, default="predict")
    parser.set_defaults(handler=create)
    sub.add_parser("list", help="list keys (never the keys themselves)").set_defaults(handler=show)
    parser = sub.add_parser("revoke", help="revoke a key by name")
    parser.add_argument("name")
    parser.set_defaults(handler=revoke)
