"""Runtime switches the service applies at import: tracing only when it is exported."""

from __future__ import annotations

import os

from bentoml._internal.configuration.containers import BentoMLContainer

from serving.runtime import disable_unexported_tracing

EXPORTER = BentoMLContainer.config.tracing.exporter_type


def test_without_an_exporter_the_sdk_is_switched_off(monkeypatch):
    monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)
    assert EXPORTER.get() is None
    disable_unexported_tracing()

    assert os.environ["OTEL_SDK_DISABLED"] == "true"


def test_an_operator_setting_wins(monkeypatch):
    monkeypatch.setenv("OTEL_SDK_DISABLED", "false")
    disable_unexported_tracing()

    assert os.environ["OTEL_SDK_DISABLED"] == "false"


def test_a_configured_exporter_keeps_tracing_on(monkeypatch):
    monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)
    EXPORTER.set("otlp")
    try:
        disable_unexported_tracing()
    finally:
        EXPORTER.set(None)

    assert "OTEL_SDK_DISABLED" not in os.environ
