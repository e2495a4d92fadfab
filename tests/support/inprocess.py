"""The service in process: `Attrition.to_asgi()` behind Starlette's TestClient (BentoML's
documented testing path), on a real database.

`service.py` reads its settings and builds its engine when it is imported, so each database
gets its own copy of the module, imported with that database's environment: two copies never
share (or overwrite) an engine, a refusal log or a service class.
"""

from __future__ import annotations

import importlib.util
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import bentoml
import prometheus_client
import pytest
from sqlmodel import Session, select
from starlette.testclient import TestClient

from persistence.engine import build_engine
from persistence.tables import PredictionRecord
from settings import get_settings
from tests.support import REPO
from tests.support.databases import Keys

MAX_BATCH_ROWS = 10


@contextmanager
def service_module(database_url: str, model_tag: str) -> Iterator[ModuleType]:
    """A fresh import of service.py with DATABASE_URL (and a small batch cap) set."""
    name = f"service_under_test_{uuid.uuid4().hex[:8]}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DATABASE_URL", database_url)
        patch.setenv("ATTRITION_MODEL_TAG", model_tag)
        patch.setenv("ATTRITION_MAX_BATCH_ROWS", str(MAX_BATCH_ROWS))
        get_settings.cache_clear()
        spec = importlib.util.spec_from_file_location(name, REPO / "service.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # pydantic resolves the module's annotations through it
        try:
            spec.loader.exec_module(module)
            yield module
        finally:
            sys.modules.pop(name, None)
            get_settings.cache_clear()
            if hasattr(module, "ENGINE"):
                module.ENGINE.dispose()


@dataclass
class Api:
    backend: str
    url: str
    keys: Keys
    module: ModuleType
    client: TestClient
    instance: Any  # the Attrition instance BentoML created for this app

    def headers(self, key: str | None = None, **extra: str) -> dict[str, str]:
        return {"X-API-Key": key or self.keys.predict, **extra}

    def post(self, path: str, body: Any, key: str | None = None, **headers: str) -> Any:
        return self.client.post(path, json=body, headers=self.headers(key, **headers))

    def rows(self, *conditions: Any) -> list[PredictionRecord]:
        """Committed rows, as another process sees them."""
        engine = build_engine(self.url)
        try:
            with Session(engine) as session:
                return list(session.exec(select(PredictionRecord).where(*conditions)))
        finally:
            engine.dispose()


def forget_bentoml_server_metrics() -> None:
    """BentoML registers its HTTP metrics in the global registry when an app first serves, so
    a second app in one process fails with DuplicateTimeseries: drop them between apps."""
    registry = prometheus_client.REGISTRY
    for collector, names in list(registry._collector_to_names.items()):
        if any(name.startswith("bentoml_") for name in names):
            registry.unregister(collector)


@contextmanager
def running(backend: str, url: str, keys: Keys, model_tag: str) -> Iterator[Api]:
    forget_bentoml_server_metrics()
    try:
        with (
            service_module(url, model_tag) as module,
            TestClient(module.Attrition.to_asgi()) as client,
        ):
            yield Api(backend, url, keys, module, client, bentoml.get_current_service())
    finally:
        forget_bentoml_server_metrics()
