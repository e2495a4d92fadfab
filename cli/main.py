"""Entry point of the `attrition` console script.

Every command fails the same way: it raises one of the errors below, `main` prints
`error: <message>` on stderr and exits 2, without a traceback.
"""

from __future__ import annotations

import argparse
import sys

from cli import compare, db, keys, monitor, outcomes, scoring, serve, train
from cli.serve import CommandError
from persistence.errors import StoreError
from persistence.keys import KeyProblem
from training.extracts import ExtractError
from training.store import ModelNotFound

COMMAND_GROUPS = (train, db, keys, outcomes, monitor, compare, scoring, serve)
FAILURES = (ExtractError, ModelNotFound, KeyProblem, CommandError, StoreError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="attrition", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    for group in COMMAND_GROUPS:
        group.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except FAILURES as exc:
        message = str(exc) or type(exc).__name__
        if isinstance(exc, StoreError):
            message = f"the database refused or could not take the command: {message}"
        print(f"error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
