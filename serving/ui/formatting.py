"""Numbers and dates as a French reader expects them (fr-FR): `1 234,5`, `12,3 %`,
`25/11/2026 14:05`; times in the pages' time zone (the database keeps UTC).

Jinja filters, registered by `serving.ui.render`. A missing value shows as an em dash.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

MISSING = "—"
GROUP = "\u202f"  # narrow no-break space: the French thousands separator
NBSP = "\u00a0"  # between a number and its unit (`12,3 %`)


def number(value: float | None, digits: int = 0) -> str:
    """`1234.5` -> `1 234,5` (with `digits=1`)."""
    if value is None:
        return MISSING
    return f"{value:,.{digits}f}".replace(",", GROUP).replace(".", ",")


def percent(value: float | None, digits: int = 1) -> str:
    """A share in [0, 1] as a percentage: `0.1234` -> `12,3 %`."""
    if value is None:
        return MISSING
    return f"{number(value * 100, digits)}{NBSP}%"


def moment(value: datetime | None, zone: ZoneInfo) -> str:
    """`25/11/2026 14:05` in `zone` (a naive time is UTC, as the database stores it)."""
    if value is None:
        return MISSING
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    return aware.astimezone(zone).strftime("%d/%m/%Y %H:%M")


def day(value: date | None) -> str:
    """`25/11/2026`."""
    return MISSING if value is None else value.strftime("%d/%m/%Y")
