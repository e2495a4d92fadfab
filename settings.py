"""The one settings class: every knob the application reads from the environment or `.env`.

BentoML's own runtime knobs (workers, batching caps, timeouts) live in `configuration.yaml`.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SQLITE = "sqlite:///var/attrition.db"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ATTRITION_", env_file=".env", extra="ignore", protected_namespaces=()
    )

    database_url: str = Field(
        DEFAULT_SQLITE, validation_alias=AliasChoices("DATABASE_URL", "ATTRITION_DATABASE_URL")
    )
    model_tag: str = "attrition_pipeline:latest"
    threshold_override: float | None = Field(None, ge=0, le=1)
    data_dir: Path | None = None
    reports_dir: Path = Path("reports")
    db_pool_size: int = Field(5, ge=1)
    db_max_overflow: int = Field(5, ge=0)
    max_batch_rows: int = Field(5000, ge=1)
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    key_cache_seconds: float = Field(5.0, ge=0, le=10)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
