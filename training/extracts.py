"""Load, validate and merge the three HR extracts into one clean, contract-checked table.

Every failure is an `ExtractError` whose message names the file and the column, so the CLI
can print it and exit non-zero without a traceback.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import ValidationError

from training.contract import SOURCES, TARGET, Employee, employees_frame

MAX_REPORTED_ERRORS = 5


class ExtractError(ValueError):
    """An extract is missing, malformed, or does not join with the others."""


@dataclass(frozen=True)
class Dataset:
    """Employees that passed the contract, their labels, and where they came from."""

    employees: list[Employee]
    target: np.ndarray
    fingerprint: str
    generated: bool
    source: str

    @property
    def frame(self) -> pd.DataFrame:
        return employees_frame(self.employees)

    @property
    def positive_rate(self) -> float:
        return float(self.target.mean()) if len(self.target) else 0.0

    def describe(self) -> dict[str, object]:
        """The training-data fingerprint stored in the model's metadata."""
        return {
            "sha256": self.fingerprint,
            "rows": len(self.employees),
            "positive_rate": round(self.positive_rate, 4),
            "generated": self.generated,
            "source": self.source,
        }


def _key(source: str, series: pd.Series) -> pd.Series:
    """Normalise each extract's spelling of the employee key to the integer id."""
    text = series.astype("string").str.strip()
    if source == "eval":
        text = text.str.removeprefix("E_")
    return pd.to_numeric(text, errors="coerce")


def _read(folder: Path, source: str) -> pd.DataFrame:
    filename, key_column, model = SOURCES[source]
    path = folder / filename
    if not path.is_file():
        raise ExtractError(f"{path}: file not found (expected the {source} extract)")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ExtractError(f"{filename}: cannot be read as UTF-8 CSV ({exc})") from exc
    expected = list(model.model_fields)
    if source == "sondage":
        expected.append(TARGET)
    missing = [c for c in expected if c not in frame.columns]
    if missing:
        raise ExtractError(f"{filename}: missing column(s) {', '.join(missing)}")
    keys = _key(source, frame[key_column])
    if keys.isna().any():
        row = int(np.flatnonzero(keys.isna().to_numpy())[0]) + 2
        raise ExtractError(f"{filename}: column {key_column} has an unreadable key on line {row}")
    duplicated = keys[keys.duplicated()]
    if not duplicated.empty:
        raise ExtractError(
            f"{filename}: column {key_column} repeats employee key(s) "
            f"{', '.join(str(int(k)) for k in duplicated.unique()[:MAX_REPORTED_ERRORS])}"
        )
    return frame.assign(_key=keys.astype(int)).set_index("_key")


def _check_join(frames: dict[str, pd.DataFrame]) -> None:
    reference = set(frames["sirh"].index)
    for source in ("eval", "sondage"):
        filename, key_column, _ = SOURCES[source]
        keys = set(frames[source].index)
        if keys != reference:
            unmatched = sorted(keys ^ reference)[:MAX_REPORTED_ERRORS]
            raise ExtractError(
                f"{filename}: column {key_column} does not join one to one with "
                f"{SOURCES['sirh'][0]} (id_employee); unmatched key(s): "
                f"{', '.join(map(str, unmatched))}"
            )


def _parse_target(frame: pd.DataFrame) -> np.ndarray:
    words = frame[TARGET].str.strip().str.lower()
    bad = ~words.isin(["oui", "non"])
    if bad.any():
        raise ExtractError(
            f"{SOURCES['sondage'][0]}: column {TARGET} must be Oui or Non, "
            f"found {frame[TARGET][bad].iloc[0]!r}"
        )
    return (words == "oui").to_numpy(dtype=np.int8)


def _validate_rows(merged: pd.DataFrame) -> list[Employee]:
    records = merged[list(Employee.model_fields)].to_dict(orient="records")
    employees: list[Employee] = []
    problems: list[str] = []
    for key, record in zip(merged.index, records, strict=True):
        try:
            employees.append(Employee.model_validate(record))
        except ValidationError as exc:
            for err in exc.errors(include_url=False):
                column = ".".join(str(p) for p in err["loc"])
                owner = next(f for f, _, m in SOURCES.values() if column in m.model_fields)
                problems.append(
                    f"{owner}: column {column}, employee {key}: {err['msg']} "
                    f"(value {record.get(column)!r})"
                )
    if problems:
        more = len(problems) - MAX_REPORTED_ERRORS
        tail = f"\n... and {more} more" if more > 0 else ""
        raise ExtractError("\n".join(problems[:MAX_REPORTED_ERRORS]) + tail)
    return employees


def fingerprint(folder: Path) -> str:
    """A hash of the three files' bytes: the exact data a model was trained on."""
    digest = hashlib.sha256()
    for filename, _, _ in SOURCES.values():
        digest.update((folder / filename).read_bytes())
    return digest.hexdigest()


def load_extracts(folder: Path, *, generated: bool = False) -> Dataset:
    """Read the three extracts of `folder`, check that they join one to one, clean and label."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ExtractError(f"{folder}: data folder not found")
    frames = {source: _read(folder, source) for source in SOURCES}
    _check_join(frames)
    merged = frames["sirh"].join(frames["eval"]).join(frames["sondage"]).sort_index()
    # Empty cells of optional identifier/constant columns mean "absent", not "".
    merged = merged.replace("", None)
    return Dataset(
        employees=_validate_rows(merged),
        target=_parse_target(merged),
        fingerprint=fingerprint(folder),
        generated=generated,
        source="generated" if generated else str(folder.resolve()),
    )
