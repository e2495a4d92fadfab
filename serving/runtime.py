"""Values of BentoML's runtime configuration (`configuration.yaml`) that the service reads."""

from __future__ import annotations

import os
from typing import Any

from bentoml._internal.configuration.containers import BentoMLContainer

DEFAULT_MAX_BATCH_SIZE = 64
DEFAULT_MAX_LATENCY_MS = 1000


def service_config(name: str) -> dict[str, Any]:
    services: dict[str, Any] = BentoMLContainer.config.services.get() or {}
    return services.get(name) or {}


def batching_caps(name: str) -> tuple[int, int]:
    """`services.<name>.batching.{max_batch_size,max_latency_ms}` from configuration.yaml."""
    batching = service_config(name).get("batching") or {}
    return (
        int(batching.get("max_batch_size") or DEFAULT_MAX_BATCH_SIZE),
        int(batching.get("max_latency_ms") or DEFAULT_MAX_LATENCY_MS),
    )


def disable_unexported_tracing() -> None:
    """Switch the OpenTelemetry SDK off when `tracing.exporter_type` names no exporter.

    BentoML's sampler (`ParentBased(TraceIdRatioBasedAlwaysRecording)`) records a span for every
    request even at `sample_rate` 0: profiled at ~17 % of a worker's CPU under load, for spans
    nobody receives. An `OTEL_SDK_DISABLED` set by the operator wins; configuring an exporter in
    `configuration.yaml` turns tracing back on.
    """
    if BentoMLContainer.config.tracing.exporter_type.get() is None:
        os.environ.setdefault("OTEL_SDK_DISABLED", "true")
