"""The persistence layer's own errors: callers never see a SQLAlchemy or driver exception.

Two kinds matter to a caller: the store cannot be reached or could not finish
(`StoreUnavailable`: retry later), and the store refused a value (`StoreRejected`: the
caller's data is at fault, e.g. out of a column's range or a NUL byte in JSONB).
"""

from __future__ import annotations

from sqlalchemy.exc import DataError, SQLAlchemyError, StatementError


class StoreError(Exception):
    """Base of every error persistence raises."""


class StoreUnavailable(StoreError):
    """The database cannot be reached, or the transaction failed: nothing was written."""


class StoreRejected(StoreError):
    """The database refused a value: nothing was written, and retrying will not help."""


def translate(exc: SQLAlchemyError) -> StoreError:
    """A refused value is `StoreRejected` (first line of the driver's reason), else unavailable."""
    if isinstance(exc, DataError) or (
        isinstance(exc, StatementError) and isinstance(exc.orig, ValueError)
    ):
        return StoreRejected(str(getattr(exc, "orig", exc)).strip().splitlines()[0])
    return StoreUnavailable(type(exc).__name__)
