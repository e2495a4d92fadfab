"""`attrition scoring suspend | resume | status`: the stop switch (human oversight).

Suspended, every worker answers the predict routes with 503 `scoring_suspended` (the reason as
message) within `ATTRITION_SWITCH_CHECK_SECONDS`; reads, reviews and `/readyz` keep answering.
Each suspend and resume is a row of `scoring_switches`, with who and why: the table is both the
state and its audit log. Switching writes, so it connects as the admin
(`ATTRITION_ADMIN_DATABASE_URL`, else `DATABASE_URL`); `status` only reads, as the service may.
"""

from __future__ import annotations

import argparse
import getpass

from cli.db import connected
from cli.serve import CommandError
from persistence.audit import current_switch, set_switch
from persistence.engine import session_scope
from persistence.tables import ScoringSwitch
from settings import get_settings

MAX_REASON = 500  # scoring_switches.reason


def _reason(value: str) -> str:
    """`--reason`: trimmed, at most `MAX_REASON` characters (argparse reports the error)."""
    value = value.strip()
    if len(value) > MAX_REASON:
        raise argparse.ArgumentTypeError(f"at most {MAX_REASON} characters, got {len(value)}")
    return value


def _actor(args: argparse.Namespace) -> str:
    """Who switches: `--actor`, else the operating-system user."""
    if args.actor:
        return str(args.actor)
    try:
        return getpass.getuser()
    except (OSError, KeyError) as exc:  # no login name and no passwd entry (some containers)
        raise CommandError("cannot tell who runs this command: pass --actor NAME") from exc


def describe(switch: ScoringSwitch | None) -> str:
    """The state in one sentence."""
    if switch is None:
        return "scoring is active (never suspended)"
    since = f"{switch.created_at:%Y-%m-%d %H:%M:%S} UTC by {switch.actor}"
    reason = f": {switch.reason}" if switch.reason else ""
    if switch.suspended:
        return f"scoring is SUSPENDED since {since}{reason}"
    return f"scoring is active (resumed {since}{reason})"


def suspend(args: argparse.Namespace) -> int:
    if not args.reason:
        raise CommandError("--reason must say why scoring stops (clients see it in the 503)")
    return _switch(args, suspended=True)


def resume(args: argparse.Namespace) -> int:
    return _switch(args, suspended=False)


def _switch(args: argparse.Namespace, *, suspended: bool) -> int:
    settings = get_settings()
    actor = _actor(args)
    with connected(settings.admin_url) as engine, session_scope(engine) as session:
        current = current_switch(session)
        if not suspended and (current is None or not current.suspended):
            print(f"{describe(current)}: nothing to resume")
            return 0
        switch = set_switch(session, suspended=suspended, reason=args.reason, actor=actor)
    print(describe(switch))
    effect = (
        "the predict routes answer 503 scoring_suspended"
        if suspended
        else "the predict routes score again"
    )
    print(
        f"{effect} on every worker within {settings.switch_check_seconds:g} s; "
        "reads, reviews and /readyz are unaffected"
    )
    return 0


def status(_args: argparse.Namespace) -> int:
    with connected(get_settings().database_url) as engine, session_scope(engine) as session:
        switch = current_switch(session)
    print(describe(switch))
    return 0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = commands.add_parser(
        "scoring", help="the stop switch: suspend or resume the predict routes everywhere"
    )
    sub = group.add_subparsers(required=True, metavar="ACTION")
    who = "who switches, recorded with it (default: the operating-system user)"
    parser = sub.add_parser("suspend", help="stop scoring on every worker; reads keep working")
    parser.add_argument("--reason", type=_reason, required=True, help="shown to clients (503)")
    parser.add_argument("--actor", help=who)
    parser.set_defaults(handler=suspend)
    parser = sub.add_parser("resume", help="score again")
    parser.add_argument("--reason", type=_reason, default="", help="recorded with the resume")
    parser.add_argument("--actor", help=who)
    parser.set_defaults(handler=resume)
    sub.add_parser("status", help="is scoring suspended, since when, by whom, why").set_defaults(
        handler=status
    )
