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
# Monitoring gauges, set from the latest snapshot the periodic job (`attrition monitor
# --record`) stored: every worker shows the same values; none computes them. Mode `mostrecent`:
# a crashed worker's last value loses to the live workers' newer ones (`max` kept it for good).
DRIFT_PSI = bentoml.metrics.Gauge(
    name="attrition_drift_psi",
    documentation="Population stability index of a feature (or `score`) against training",
    labelnames=["feature"],
    multiprocess_mode="mostrecent",
)
DRIFT_STATUS = bentoml.metrics.Gauge(
    name="attrition_drift_status",
    documentation="Drift status: -1 insufficient data, 0 stable, 1 watch, 2 drift "
    "(feature `overall` is the worst)",
    labelnames=["feature"],
    multiprocess_mode="mostrecent",
)
LIVE_METRIC = bentoml.metrics.Gauge(
    name="attrition_live_metric",
    documentation="Live performance on labelled predictions (horizon rule): roc_auc, "
    "average_precision, brier, precision, recall, labelled, pending",
    labelnames=["metric"],
    multiprocess_mode="mostrecent",
)
TRAINING_METRIC = bentoml.metrics.Gauge(
    name="attrition_training_metric",
    documentation="The served model's cross-validated figure for the same metric",
    labelnames=["metric"],
    multiprocess_mode="mostrecent",
)
SNAPSHOT_TIMESTAMP = bentoml.metrics.Gauge(
    name="attrition_monitoring_snapshot_timestamp_seconds",
    documentation="When the monitoring snapshot behind these gauges was computed (Unix time)",
    multiprocess_mode="mostrecent",
)
SCORING_SUSPENDED = bentoml.metrics.Gauge(
    name="attrition_scoring_suspended",
    documentation="1 while scoring is suspended (attrition scoring suspend), else 0",
    multiprocess_mode="mostrecent",
)
SHADOW_ROWS = bentoml.metrics.Counter(
    name="attrition_shadow_rows_written_total",
    documentation="Rows the shadow challenger scored and stored",
)
SHADOW_FAILURES = bentoml.metrics.Counter(
    name="attrition_shadow_failures_total",
    documentation="Rows the shadow challenger could not score or store (never fails a call)",
)
