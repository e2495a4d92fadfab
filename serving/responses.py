"""The shapes the service answers with; they are also its OpenAPI document."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    model_validator,
)
from starlette.responses import Response


def _as_utc(value: Any) -> Any:
    """SQLite hands back naive timestamps; every timestamp we write is UTC."""
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


UtcDatetime = Annotated[AwareDatetime, BeforeValidator(_as_utc)]


PROBABILITY_DESCRIPTION = (
    "Calibrated probability that the employee leaves: among employees scored 0.3, about 30 % "
    "left in cross-validation (the model card gives the calibration table)."
)
# What /model says of a model trained before probabilities were calibrated.
PROBABILITY_UNCALIBRATED = "a score in [0, 1]; this model records no calibration"


class Factor(BaseModel):
    feature: str
    value: Any = None
    label: str = Field("", description="the factor in words for HR, in French")
    contribution: float = Field(
        description="log-odds this feature adds to the score compared with the average "
        "employee of the training data (0 for an employee at the training means)"
    )
    direction: Literal["raises", "lowers"] = Field(
        description="raises / lowers the risk compared with the average employee"
    )


class RiskBand(BaseModel):
    band: Literal["low", "medium", "high"]
    lower: float = Field(description="the band starts at this probability (included)")
    upper: float = Field(description="the band ends below this probability (high includes 1)")
    meaning: str


class Prediction(BaseModel):
    prediction_id: uuid.UUID
    probability: float = Field(ge=0, le=1, description=PROBABILITY_DESCRIPTION)
    prediction: Literal[0, 1]
    label: Literal["Oui", "Non"]
    threshold: float
    risk_band: Literal["low", "medium", "high"]
    model_tag: str
    top_factors: list[Factor]
    latency_ms: float


class EmployeeId(BaseModel):
    model_config = ConfigDict(extra="forbid")

    employee_id: int = Field(ge=1, le=2**31 - 1)


class StoredPrediction(BaseModel):
    """A prediction as the audit trail holds it: inputs, score, model, who asked and how."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    created_at: UtcDatetime
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
    client: str | None = Field(description="the API key's name (NULL for older rows)")
    endpoint: str | None = Field(description="/predict, /predict_batch or /predict_by_id")


Decision = Literal["agree", "disagree", "no_action"]


class ReviewIn(BaseModel):
    """What a person decided about a score (the reviewer is the calling key's name)."""

    model_config = ConfigDict(extra="forbid")

    decision: Decision
    note: str = Field("", max_length=2000, pattern=r"^[^\x00]*$")


class ReviewOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    prediction_id: uuid.UUID
    decision: Decision
    note: str
    reviewer: str
    created_at: UtcDatetime


class ShadowScore(BaseModel):
    """The challenger's score of the same call (never part of the predict answer)."""

    model_config = ConfigDict(from_attributes=True, protected_namespaces=())

    model_tag: str
    probability: float
    prediction: int
    threshold: float
    created_at: UtcDatetime


class PredictionDetail(StoredPrediction):
    """One prediction with what people decided about it, and the shadow's score if any."""

    reviews: list[ReviewOut]
    shadow: ShadowScore | None = None


class HistoryPage(BaseModel):
    # Exact up to persistence.queries.EXACT_TOTAL_UP_TO rows, PostgreSQL's estimate beyond.
    total: int
    total_is_estimate: bool = False
    offset: int
    limit: int
    items: list[StoredPrediction]
    # Pass as `after` for the next page (keyset: as fast on page 1,000 as on page 1).
    next_after: str | None = None


class StatsGroup(BaseModel):
    group: str | None
    count: int
    positive_rate: float
    mean_probability: float


class Stats(BaseModel):
    by: str
    groups: list[StatsGroup]


class OutcomeIn(BaseModel):
    """A fact from the HR system: `{"left": true, "left_on": D}` (left on that day) or
    `{"left": false, "as_of": D}` (still employed on that day)."""

    model_config = ConfigDict(extra="forbid")

    employee_id: int = Field(ge=1, le=2**31 - 1)
    left: bool
    left_on: date | None = None
    as_of: date | None = None

    @model_validator(mode="after")
    def _one_date(self) -> OutcomeIn:
        if self.left and (self.left_on is None or self.as_of is not None):
            raise ValueError("a leaver needs left_on (and no as_of)")
        if not self.left and (self.as_of is None or self.left_on is not None):
            raise ValueError("a stayer needs as_of (and no left_on)")
        return self

    @property
    def event_date(self) -> date:
        day = self.left_on if self.left else self.as_of
        assert day is not None  # the validator guarantees it
        return day


class OutcomesRecorded(BaseModel):
    received: int
    recorded: int = Field(description="facts not known before")
    unchanged: int = Field(description="facts already recorded (re-posting is idempotent)")


class AtRiskItem(BaseModel):
    employee_id: int
    prediction_id: uuid.UUID
    probability: float
    risk_band: Literal["low", "medium", "high"]
    threshold: float
    scored_at: UtcDatetime
    model_tag: str
    departement: str | None
    poste: str | None
    top_factors: list[dict[str, Any]]
    latest_review: ReviewOut | None


class AtRiskPage(BaseModel):
    total: int
    offset: int
    limit: int
    items: list[AtRiskItem]


class ScoringState(BaseModel):
    suspended: bool
    reason: str
    since: UtcDatetime | None
    by: str | None


class AccessEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    created_at: UtcDatetime
    client: str | None
    route: str
    query: dict[str, Any] | None
    employee_ids: list[int]
    employee_count: int


class AccessPage(BaseModel):
    total: int
    offset: int
    limit: int
    items: list[AccessEventOut]


class RefusalEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    created_at: UtcDatetime
    last_seen_at: UtcDatetime | None
    count: int
    client_address: str | None
    client: str | None
    method: str
    endpoint: str
    status: int
    error: str
    detail: list[dict[str, Any]] | None


class RefusalPage(BaseModel):
    total: int
    offset: int
    limit: int
    items: list[RefusalEventOut]


class ChallengerCard(BaseModel):
    """The shadow model: scored on live traffic, answered to no one (see `/compare`)."""

    model_config = ConfigDict(protected_namespaces=())

    tag: str
    threshold: float
    training_data: dict[str, Any]
    metrics: dict[str, Any]


class ModelCard(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    tag: str
    threshold: float
    trained_threshold: float
    threshold_overridden: bool
    metrics: dict[str, Any]
    contract: dict[str, Any]
    training_data: dict[str, Any]
    explanation_method: str
    probability_meaning: str
    risk_bands: list[RiskBand]
    features_used: list[str]
    fairness: dict[str, Any] | None = Field(
        None, description="fairlearn assessment by genre, age band and marital status"
    )
    scoring: ScoringState
    shadow: ChallengerCard | None = None


class ErrorBody(BaseModel):
    """Every refusal: a machine-readable code, a sentence, and the fields at fault."""

    error: str
    message: str
    detail: list[dict[str, Any]] | None = None


_PREDICTIONS = TypeAdapter(list[Prediction])


def predictions_response(answers: list[Prediction]) -> Response:
    """A 200 with the answers serialised in one pydantic-core pass (BentoML's path for a list
    goes through `model_dump` and `json.dumps`); BentoML passes a `Response` through."""
    return Response(_PREDICTIONS.dump_json(answers), media_type="application/json")
