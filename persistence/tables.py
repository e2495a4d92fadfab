"""Every table of the application, in one place. Alembic migrations follow these.

JSON columns are JSONB on PostgreSQL and JSON text elsewhere (SQLite).
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

JSONType = sa.JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """A time with an offset, in UTC; one without, taken as UTC. SQLite compares timestamps as
    text, so `13:59+02:00` must reach it as `11:59` UTC, like every stored timestamp."""
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def _timestamp(**kwargs: Any) -> Any:
    return Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True), **kwargs)


class EmployeeRecord(SQLModel, table=True):
    """An employee's latest known features, scored by `/predict_by_id`."""

    __tablename__ = "employees"

    id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    features: dict[str, Any] = Field(sa_type=JSONType)
    updated_at: datetime = _timestamp()


class PredictionRecord(SQLModel, table=True):
    """One scored employee: written, with its batch, before the answer leaves."""

    __tablename__ = "predictions"
    __table_args__ = (
        # Newest first with the id as tie-break: `/history` pages walk these (keyset).
        sa.Index("ix_predictions_created_id", sa.text("created_at DESC"), "id"),
        sa.Index(
            "ix_predictions_employee_created_id", "employee_id", sa.text("created_at DESC"), "id"
        ),
        sa.Index("ix_predictions_model_created", "model_tag", "created_at"),
        sa.Index("ix_predictions_prediction_created", "prediction", "created_at"),
        sa.Index("ix_predictions_client_created", "client", "created_at"),
    )

    id: uuid.UUID = Field(primary_key=True)
    created_at: datetime = _timestamp(index=True)
    employee_id: int | None = Field(default=None, foreign_key="employees.id")
    input: dict[str, Any] = Field(sa_type=JSONType)
    probability: float
    prediction: int = Field(sa_type=sa.SmallInteger)
    threshold: float
    model_tag: str = Field(max_length=128)
    top_factors: list[dict[str, Any]] = Field(sa_type=JSONType)
    latency_ms: float
    request_id: str = Field(max_length=64)  # persistence.predictions.REQUEST_ID_LENGTH
    batch_id: uuid.UUID = Field(index=True)
    # Who asked and through which route (NULL for rows written before they were recorded).
    client: str | None = Field(default=None, max_length=64)
    endpoint: str | None = Field(default=None, max_length=32)


class ApiKey(SQLModel, table=True):
    """A client's key: only a salted SHA-256 of its secret part is kept."""

    __tablename__ = "api_keys"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64, unique=True)
    key_id: str = Field(max_length=16, unique=True)
    salt: str = Field(max_length=64)
    key_hash: str = Field(max_length=64)
    # Comma-separated, sorted: e.g. "predict,review" (persistence.keys.ROLES).
    roles: str = Field(max_length=64)
    created_at: datetime = _timestamp()
    revoked_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))
    last_used_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))


class AuditEvent(SQLModel, table=True):
    """Refused calls (auth, validation, size): who tried what, why, and how many times.

    Repeats of one refusal (same address, client, method, route, status and error) within the
    gate's flush window are one row: `count` says how many, `created_at` .. `last_seen_at` when.
    """

    __tablename__ = "audit_events"

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = _timestamp(index=True)
    last_seen_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))
    count: int = Field(default=1, ge=1)
    client_address: str | None = Field(default=None, max_length=64)
    client: str | None = Field(default=None, max_length=64, index=True)
    method: str = Field(max_length=8)
    endpoint: str = Field(max_length=256)
    status: int
    error: str = Field(max_length=64)
    detail: list[dict[str, Any]] | None = Field(default=None, sa_type=JSONType)


class Review(SQLModel, table=True):
    """What a person decided about a score: never edited, several per prediction allowed."""

    __tablename__ = "reviews"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    prediction_id: uuid.UUID = Field(foreign_key="predictions.id", index=True)
    decision: str = Field(max_length=16)
    note: str = Field(default="", max_length=2000)
    reviewer: str = Field(max_length=64)
    created_at: datetime = _timestamp(index=True)


class AccessEvent(SQLModel, table=True):
    """A read that returned person-level scores: who looked, at what, when (never the key).

    `employee_ids` holds at most `persistence.audit.MAX_LOGGED_IDS` distinct ids;
    `employee_count` is how many person-level items (scores) the answer held.
    """

    __tablename__ = "access_events"

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = _timestamp(index=True)
    client: str | None = Field(default=None, max_length=64, index=True)
    route: str = Field(max_length=64)
    query: dict[str, Any] | None = Field(default=None, sa_type=JSONType)
    employee_ids: list[int] = Field(default_factory=list, sa_type=JSONType)
    employee_count: int = 0


class ScoringSwitch(SQLModel, table=True):
    """Each `attrition scoring suspend | resume`: the latest row is the current state."""

    __tablename__ = "scoring_switches"

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = _timestamp(index=True)
    suspended: bool
    reason: str = Field(default="", max_length=500)
    actor: str = Field(max_length=64)


class Outcome(SQLModel, table=True):
    """A fact from the HR system: the employee left on `event_date`, or stayed as of it.

    One row per fact: re-recording the same (employee, status, date) changes nothing.
    """

    __tablename__ = "outcomes"
    __table_args__ = (
        sa.UniqueConstraint("employee_id", "status", "event_date", name="uq_outcomes_fact"),
    )

    id: int | None = Field(default=None, primary_key=True)
    employee_id: int = Field(foreign_key="employees.id", index=True)
    status: str = Field(max_length=8)  # "left" | "stayed"
    event_date: date
    source: str = Field(max_length=64)
    recorded_at: datetime = _timestamp()
    client: str | None = Field(default=None, max_length=64)


class MonitoringSnapshot(SQLModel, table=True):
    """Drift and live performance as the periodic job (`attrition monitor --record`) computed
    them; the service's Prometheus gauges show the latest one."""

    __tablename__ = "monitoring_snapshots"

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = _timestamp(index=True)
    model_tag: str = Field(max_length=128)
    drift: dict[str, Any] = Field(sa_type=JSONType)
    performance: dict[str, Any] = Field(sa_type=JSONType)


class ShadowPrediction(SQLModel, table=True):
    """The challenger's score of a call the champion answered: never returned by the predict
    routes; compared with the champion's by `/compare`."""

    __tablename__ = "shadow_predictions"

    id: int | None = Field(default=None, primary_key=True)
    prediction_id: uuid.UUID = Field(foreign_key="predictions.id", index=True)
    model_tag: str = Field(max_length=128, index=True)
    probability: float
    prediction: int = Field(sa_type=sa.SmallInteger)
    threshold: float
    created_at: datetime = _timestamp(index=True)


class UiSession(SQLModel, table=True):
    """A sign-in to the HR page (`/ui`): the browser holds a random token in an HttpOnly cookie;
    only its SHA-256 is kept here, never the API key it was opened with.

    The rows are also the audit of sign-ins (who, from where, when, until when); failed sign-ins
    are refusals (`audit_events`). A session ends at `ended_at` (signed out), after an idle gap
    past `last_seen_at`, or at `expires_at` (absolute), whichever comes first.
    """

    __tablename__ = "ui_sessions"

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(max_length=64, unique=True)
    # The key it was opened with: a revoked key ends its sessions (the gate's key cache TTL).
    key_id: str = Field(max_length=16, index=True)
    client: str = Field(max_length=64)
    csrf_token: str = Field(max_length=64)
    address: str | None = Field(default=None, max_length=64)
    created_at: datetime = _timestamp(index=True)
    last_seen_at: datetime = _timestamp()
    expires_at: datetime = Field(sa_type=sa.DateTime(timezone=True))
    ended_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))


# --- Read models, kept by PostgreSQL triggers (migration 0009); empty on SQLite ---------------


class PredictionRollup(SQLModel, table=True):
    """Per UTC day, model and value of one `/stats` dimension: count, positives and the sum of
    probabilities of the stored predictions. Each key has up to 8 rows (`slot`, by transaction
    id, so concurrent writers rarely wait on one row lock): readers sum them. A purge subtracts
    what it deletes, so a key can end at count 0 (readers skip those)."""

    __tablename__ = "prediction_rollups"

    id: int | None = Field(default=None, primary_key=True, sa_type=sa.BigInteger)
    dimension: str = Field(max_length=16)
    value: str | None = Field(default=None, sa_type=sa.Text)
    day: date
    model_tag: str = Field(max_length=128)
    slot: int = Field(sa_type=sa.SmallInteger)
    count: int = Field(sa_type=sa.BigInteger)
    positives: int = Field(sa_type=sa.BigInteger)
    probability_sum: float


class LatestPrediction(SQLModel, table=True):
    """The newest prediction (by created_at, then id) of each employee and model, with what
    `/employees/at-risk` filters on and `/drift` reads."""

    __tablename__ = "latest_predictions"
    __table_args__ = (
        sa.Index("ix_latest_predictions_model_created", "model_tag", "created_at"),
        sa.Index("ix_latest_predictions_probability", sa.text("probability DESC"), "employee_id"),
    )

    employee_id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    model_tag: str = Field(primary_key=True, max_length=128)
    prediction_id: uuid.UUID
    created_at: datetime = Field(sa_type=sa.DateTime(timezone=True))
    probability: float
    prediction: int = Field(sa_type=sa.SmallInteger)
    threshold: float
    departement: str | None = Field(default=None, sa_type=sa.Text)
    poste: str | None = Field(default=None, sa_type=sa.Text)
    band: str = Field(max_length=8)
    # A copy of the prediction's input, and each feature of it as text (`INPUT_COLUMNS`):
    # `/drift` reads 10,000 of them without a join into the history (the join and the
    # detoasting cost ~45 ms at 1M predictions) nor a JSON extraction (~40 ms).
    input: dict[str, Any] = Field(sa_type=JSONType)


# The model features (training.contract.FEATURES) as columns of `latest_predictions` besides
# `departement` and `poste`: generated from `input` by the database on every write (migration
# 0010), read only; a test keeps them equal to the contract's features.
INPUT_COLUMNS: tuple[str, ...] = (
    "age", "genre", "revenu_mensuel", "statut_marital", "nombre_experiences_precedentes",
    "annee_experience_totale", "annees_dans_l_entreprise", "annees_dans_le_poste_actuel",
    "satisfaction_employee_environnement", "note_evaluation_precedente",
    "niveau_hierarchique_poste", "satisfaction_employee_nature_travail",
    "satisfaction_employee_equipe", "satisfaction_employee_equilibre_pro_perso",
    "note_evaluation_actuelle", "heure_supplementaires", "augementation_salaire_precedente",
    "nombre_participation_pee", "nb_formations_suivies", "distance_domicile_travail",
    "niveau_education", "domaine_etude", "frequence_deplacement",
    "annees_depuis_la_derniere_promotion", "annes_sous_responsable_actuel",
)  # fmt: skip
LATEST_PREDICTIONS: sa.Table = LatestPrediction.__table__  # type: ignore[attr-defined]
for _name in INPUT_COLUMNS:  # Core columns: no ORM attribute, nothing ever writes them
    LATEST_PREDICTIONS.append_column(sa.Column(_name, sa.Text, sa.Computed(f"input ->> '{_name}'")))


class LatestMonthlyPrediction(SQLModel, table=True):
    """The newest prediction of each employee, model and UTC month (`YYYY-MM`)."""

    __tablename__ = "latest_monthly_predictions"
    __table_args__ = (
        sa.Index("ix_latest_monthly_predictions_model_created", "model_tag", "created_at"),
    )

    employee_id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    model_tag: str = Field(primary_key=True, max_length=128)
    month: str = Field(primary_key=True, max_length=7)
    prediction_id: uuid.UUID
    created_at: datetime = Field(sa_type=sa.DateTime(timezone=True))
    probability: float
    prediction: int = Field(sa_type=sa.SmallInteger)
    threshold: float
