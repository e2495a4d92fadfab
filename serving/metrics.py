"""The application's own Prometheus series, served on BentoML's `/metrics`."""

from __future__ import annotations

import bentoml

PREDICTIONS = bentoml.metrics.Counter(
    name="attrition_predictions_total",
    documentation="Predictions answered, by predicted class",
    labelnames=["label"],
)
ROWS_WRITTEN = bentoml.metrics.Counter(
    name="attrition_prediction_rows_written_total",
    documentation="Prediction rows committed to the database",
)
DB_WRITE_SECONDS = bentoml.metrics.Histogram(
    name="attrition_db_write_seconds",
    documentation="Time to insert and commit one batch of predictions",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
BATCH_SIZE = bentoml.metrics.Histogram(
    name="attrition_batch_size",
    documentation="Employees scored by one predict_proba call",
    labelnames=["endpoint"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 5000),
)
DB_ERRORS = bentoml.metrics.Counter(
    name="attrition_db_errors_total",
    documentation="Batches refused because the database could not take the write",
)
REFUSALS_UNRECORDED = bentoml.metrics.Counter(
    name="attrition_refusals_unrecorded_total",
    documentation="Refused calls that could not be written to the audit log (database down)",
)
ACCESS_UNRECORDED = bentoml.metrics.Counter(
    name="attrition_access_events_unrecorded_total",
    documentation="Person-level reads that could not be written to the access log",
)
