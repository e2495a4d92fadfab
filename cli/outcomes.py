"""`attrition outcomes import --data-dir DIR --as-of DATE`: the extracts' `a_quitte_l_entreprise`
as outcomes (Oui: left on DATE; Non: stayed as of DATE). Idempotent, like `POST /outcomes`.

Employees not in the `employees` table are skipped (and counted): an outcome must name a
known employee. Writes as the service may (outcomes are insert-only for it too).
"""

from __future__ import annotations

import argparse
from datetime import date
from pathlib import Path

from cli.db import connected
from cli.serve import CommandError
from persistence.engine import session_scope
from persistence.monitoring import OutcomeFact, record_outcomes, unknown_employees
from settings import get_settings
from training.extracts import load_extracts


def import_outcomes(args: argparse.Namespace) -> int:
    dataset = load_extracts(args.data_dir)
    facts = [
        OutcomeFact(int(e.id_employee), "left" if left else "stayed", args.as_of)
        for e, left in zip(dataset.employees, dataset.target, strict=True)
        if e.id_employee is not None
    ]
    if not facts:
        raise CommandError(f"no employee with an id_employee in {args.data_dir}")
    with connected(get_settings().database_url) as engine, session_scope(engine) as session:
        unknown = unknown_employees(session, [f.employee_id for f in facts])
        known = [f for f in facts if f.employee_id not in unknown]
        new = record_outcomes(session, known, source=f"extracts:{dataset.source}", client=None)
    left = sum(f.status == "left" for f in known)
    print(
        f"{len(known)} outcomes as of {args.as_of} ({left} left, {len(known) - left} stayed): "
        f"{new} new, {len(known) - new} already recorded; {len(unknown)} unknown employees skipped"
    )
    return 0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = commands.add_parser("outcomes", help="who left or stayed (for live performance)")
    sub = group.add_subparsers(required=True, metavar="ACTION")
    parser = sub.add_parser("import", help="record the extracts' a_quitte_l_entreprise")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument(
        "--as-of", type=date.fromisoformat, required=True, help="YYYY-MM-DD of the extract"
    )
    parser.set_defaults(handler=import_outcomes)
