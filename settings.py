"""The one settings class: every knob the application reads from the environment or `.env`.

BentoML's own runtime knobs (workers, request timeout, concurrency, metrics, logging) live in
`configuration.yaml`; nothing here repeats one of them. The batcher is the application's own
(serving/batcher.py), so its caps are settings.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SQLITE = "sqlite:///var/attrition.db"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ATTRITION_", env_file=".env", extra="ignore", protected_namespaces=()
    )

    database_url: str = Field(
        DEFAULT_SQLITE, validation_alias=AliasChoices("DATABASE_URL", "ATTRITION_DATABASE_URL")
    )
    # Migrations, `db purge` and `db roles` connect with this one (a role that owns the tables);
    # unset = DATABASE_URL. On PostgreSQL the service's own role may not UPDATE or DELETE
    # predictions (db/roles.sql).
    admin_database_url: str | None = None
    model_tag: str = "attrition_pipeline:latest"
    # A challenger scored on live traffic beside the champion, off the answer path; unset = none.
    shadow_model_tag: str | None = None
    threshold_override: float | None = Field(None, ge=0, le=1)
    data_dir: Path | None = None
    reports_dir: Path = Path("reports")
    db_pool_size: int = Field(5, ge=1)
    db_max_overflow: int = Field(5, ge=0)
    # /predict's adaptive batcher: at most this many employees per predict_proba, and a call
    # that waited this long for a slot is refused with 503 (the service is overloaded).
    batch_max_size: int = Field(128, ge=1, le=5000)
    batch_max_latency_ms: int = Field(2000, ge=1)
    max_batch_rows: int = Field(5000, ge=1)
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    # Keys (and unknown key ids) are trusted for this long: a revocation lands within it.
    key_cache_seconds: float = Field(5.0, ge=0, le=10)
    key_cache_size: int = Field(10_000, ge=16)
    # Refusals are aggregated per (address, client, route, status, error) and written in
    # batches every `refusal_flush_seconds`; at most `refusal_max_pending` distinct groups wait.
    refusal_flush_seconds: float = Field(2.0, gt=0, le=60)
    refusal_max_pending: int = Field(1000, ge=1)
    # Person-level reads are logged in batches every this many seconds; at most this many wait.
    access_flush_seconds: float = Field(2.0, gt=0, le=60)
    access_max_pending: int = Field(10_000, ge=1)
    # `attrition db purge` refuses to delete anything younger (the AI Act asks for >= 6 months).
    retention_floor_days: int = Field(183, ge=1)
    # /drift and `attrition drift` give no verdict below this many employees in the window.
    drift_min_rows: int = Field(200, ge=1)
    # Workers re-read the latest monitoring snapshot (for the gauges) this often.
    gauge_refresh_seconds: float = Field(60.0, gt=0)
    # Workers re-read the scoring switch (suspend / resume) at least this often.
    switch_check_seconds: float = Field(5.0, gt=0, le=10)
    # The HR page (/ui): a session ends after this many idle minutes, and this many hours after
    # sign-in whatever happens (docs/SECURITY.md, "The HR page").
    ui_session_idle_minutes: int = Field(30, ge=1, le=24 * 60)
    ui_session_hours: int = Field(8, ge=1, le=24 * 7)
    # Sign-in back-off, per client address and per worker: this many failures within
    # `ui_signin_window_seconds` are free; each further one doubles the wait (2, 4, 8 s ...) up
    # to `ui_signin_max_wait_seconds`; an address quiet for the window is forgotten.
    ui_signin_free_failures: int = Field(5, ge=1)
    ui_signin_window_seconds: float = Field(900.0, gt=0)
    ui_signin_max_wait_seconds: float = Field(60.0, ge=1)
    # The pages show times in this zone (fr-FR formats); the database keeps UTC.
    ui_time_zone: str = "Europe/Paris"

    @field_validator("ui_time_zone")
    @classmethod
    def _known_time_zone(cls, zone: str) -> str:
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {zone!r} (an IANA name: Europe/Paris)") from exc
        return zone

    @model_validator(mode="after")
    def _champion_is_pinned_beside_a_shadow(self) -> Settings:
        """With a shadow, `latest` may well be the challenger (the newest model in a Bento that
        holds both): the champion must then be named by its version, and differ."""
        if self.shadow_model_tag:
            version = self.model_tag.partition(":")[2]
            if version in ("", "latest"):
                raise ValueError(
                    "ATTRITION_SHADOW_MODEL_TAG is set: ATTRITION_MODEL_TAG must name the "
                    f"champion's version (name:version), not {self.model_tag!r}"
                )
            if self.shadow_model_tag == self.model_tag:
                raise ValueError("the shadow model must differ from the champion")
        return self

    @property
    def admin_url(self) -> str:
        return self.admin_database_url or self.database_url


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
