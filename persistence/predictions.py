"""The prediction row, written once: its typed form, its foreign key, its batch write.

The layout is the `predictions` table (`PredictionRecord`); `PredictionRow` mirrors it field
for field, checked at import, so a column added to one and not the other fails every test run.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, fields
from datetime import datetime
from operator import attrgetter
from typing import Any

import sqlalchemy as sa
from pydantic_core import to_json
from sqlmodel import Session, col, select

from persistence.tables import EmployeeRecord, PredictionRecord

PREDICTIONS: sa.Table = PredictionRecord.__table__  # type: ignore[attr-defined]
REQUEST_ID_LENGTH = 64
# `employees.id` is a 32-bit integer: an id past it names no stored employee.
MAX_EMPLOYEE_ID = 2**31 - 1


@dataclass(slots=True)
class PredictionRow:
    """One scored employee as it is stored; `employee_id` may name an unknown employee."""

    id: uuid.UUID
    created_at: datetime
    employee_id: int | None
    input: dict[str, Any]
    probability: float
    prediction: int
    threshold: float
    model_tag: str
    top_factors: list[dict[str, Any]]
    latency_ms: float
    request_id: str
    batch_id: uuid.UUID
    client: str | None
    endpoint: str | None


COLUMNS = tuple(f.name for f in fields(PredictionRow))
if set(COLUMNS) != set(PREDICTIONS.c.keys()):  # pragma: no cover - a layout edit gone wrong
    raise RuntimeError(f"PredictionRow {COLUMNS} differs from the table {PREDICTIONS.c.keys()}")
# A row's values in column order; `dataclasses.astuple` would deep-copy the JSON columns.
_values = attrgetter(*COLUMNS)


def write_predictions(session: Session, rows: Sequence[PredictionRow]) -> None:
    """Write a batch's rows in the session's transaction, in one statement.

    An `employee_id` that names no stored employee (or no possible one) is kept as NULL (the
    input still holds the caller's `id_employee`): a score is never refused for want of a
    seeded employee.
    PostgreSQL gets `COPY`; elsewhere a Core multi-row INSERT (SQLAlchemy's insertmanyvalues):
    the ORM bulk path adds ~0.05 ms a row of bookkeeping for objects we never load back.
    """
    if not rows:
        return
    referenced = {r.employee_id for r in rows if r.employee_id and r.employee_id <= MAX_EMPLOYEE_ID}
    known = _known_employee_ids(session, referenced) if referenced else set()
    for row in rows:
        if row.employee_id is not None and row.employee_id not in known:
            row.employee_id = None
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        _copy_rows(connection, rows)
    else:
        connection.execute(
            sa.insert(PREDICTIONS), [dict(zip(COLUMNS, _values(r), strict=True)) for r in rows]
        )


def _known_employee_ids(session: Session, ids: set[int]) -> set[int]:
    found = session.exec(select(EmployeeRecord.id).where(col(EmployeeRecord.id).in_(ids)))
    return set(found)


def _copy_rows(connection: sa.Connection, rows: Sequence[PredictionRow]) -> None:
    """`COPY ... FROM STDIN`: for 1,000 predictions about half the time of the INSERT.

    The INSERT spends its time rendering ~13k bound parameters; COPY streams one text in
    PostgreSQL's text format (tab-separated, backslash escapes, `\\N` for NULL). Built here
    rather than with the csv module: quoting the JSON columns as CSV took 54 ms for 1,000 rows,
    the text format 10 ms. The text is encoded as the driver reads it (`_CopyReader`), so
    PostgreSQL parses the first rows while the last are being encoded.
    """
    preparer = connection.dialect.identifier_preparer
    columns = ", ".join(preparer.quote(c) for c in COLUMNS)
    statement = f"COPY {preparer.format_table(PREDICTIONS)} ({columns}) FROM STDIN"
    driver_error = connection.dialect.loaded_dbapi.Error
    with closing(connection.connection.cursor()) as cursor:
        try:
            cursor.copy_expert(statement, _CopyReader(_copy_lines(rows)))
        except driver_error as exc:
            # The raw cursor is outside SQLAlchemy: wrap as it would (OperationalError,
            # DataError, ...), so callers handle one family of exceptions.
            raw = connection.connection.dbapi_connection
            gone = connection.dialect.is_disconnect(exc, raw, cursor)
            if gone:
                connection.invalidate(exc)
            raise sa.exc.DBAPIError.instance(
                statement, None, exc, driver_error, dialect=connection.dialect,
                connection_invalidated=gone,
            ) from exc  # fmt: skip


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
# The fields of `_copy_lines`, in its order: the table's columns, checked at import.
_LINE_COLUMNS = (
    "id", "created_at", "employee_id", "input", "probability", "prediction", "threshold",
    "model_tag", "top_factors", "latency_ms", "request_id", "batch_id", "client", "endpoint",
)  # fmt: skip
if _LINE_COLUMNS != COLUMNS:  # pragma: no cover - a layout edit gone wrong
    raise RuntimeError(f"_copy_lines writes {_LINE_COLUMNS}, the rows hold {COLUMNS}")


def _json(value: Any) -> str:
    """JSON text never holds a raw tab or newline (they are escaped); only `\\` needs doubling."""
    text = to_json(value).decode()
    return text.replace("\\", "\\\\") if "\\" in text else text


def _copy_lines(rows: Sequence[PredictionRow]) -> Iterator[str]:
    """Each row as one line of COPY's text format.

    One f-string per row, and the values a batch repeats (its time, batch, model, caller, route)
    escaped once per batch: encoding 1,000 rows took 17 ms with one encoder call per value,
    10-11 ms this way (the same text; most of the rest is the two JSON columns). With the
    streaming, a 1,000-row COPY + COMMIT went from 78-84 to 63-65 ms (issue 17's notes).
    """
    seen: dict[Any, str] = {None: "\\N"}

    def once(value: Any) -> str:
        text = seen.get(value)
        if text is None:
            text = seen[value] = str(value).translate(_COPY_ESCAPES)
        return text

    times: dict[datetime, str] = {}
    for r in rows:
        created = times.get(r.created_at) or times.setdefault(
            r.created_at, r.created_at.isoformat()
        )
        yield (
            f"{r.id}\t{created}\t{once(r.employee_id)}\t{_json(r.input)}\t{r.probability!r}\t"
            f"{r.prediction}\t{r.threshold!r}\t{once(r.model_tag)}\t{_json(r.top_factors)}\t"
            f"{r.latency_ms!r}\t{once(r.request_id)}\t{once(r.batch_id)}\t{once(r.client)}\t"
            f"{once(r.endpoint)}\n"
        )


class _CopyReader:
    """The file `copy_expert` reads: lines encoded as the driver asks for the next chunk."""

    def __init__(self, lines: Iterator[str]) -> None:
        self._lines = lines

    def read(self, size: int = -1) -> str:
        chunk: list[str] = []
        length = 0
        for line in self._lines:
            chunk.append(line)
            length += len(line)
            if 0 <= size <= length:
                break
        return "".join(chunk)
