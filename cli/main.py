"""Entry point of the `attrition` console script."""

from __future__ import annotations

import argparse
import sys

from cli import db, keys, train
from persistence.keys import KeyProblem
from training.extracts import ExtractError
from training.store import ModelNotFound

COMMAND_GROUPS = (train, db, keys)


class CommandError(RuntimeError):
    """A failure whose message is the whole story: printed without a traceback."""


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
    except (ExtractError, ModelNotFound, KeyProblem, CommandError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
