"""The shapes the service answers with; they are also its OpenAPI document."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter
from starlette.responses import Response


def _as_utc(value: Any) -> Any:
    """SQLite hands back naive timestamps; every timestamp we write is UTC."""
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


UtcDatetime = Annotated[AwareDatetime, BeforeValidator(_as_utc)]


class Factor(BaseModel):
    feature: str
    value: Any = None
    contribution: float = Field(description="log-odds added to this score by the feature")
    direction: Literal["raises", "lowers"]


class Prediction(BaseModel):
    prediction_id: uuid.UUID
    probability: float = Field(ge=0, le=1)
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
    """A prediction as the audit trail holds it."""

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


class HistoryPage(BaseModel):
    total: int
    offset: int
    limit: int
    items: list[StoredPrediction]


class StatsGroup(BaseModel):
    group: str | None
    count: int
    positive_rate: float
    mean_probability: float


class Stats(BaseModel):
    by: str
    groups: list[StatsGroup]


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
