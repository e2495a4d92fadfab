"""Monitoring gauges on /metrics, from the latest snapshot the periodic job stored.

Drift and live performance are computed once per run of `attrition monitor --record` (a
CronJob), never per scrape and never once per worker: each worker only re-reads the latest
snapshot row (one indexed SELECT) every `interval` seconds and sets the gauges, so every
worker shows the same values. The scoring switch gauge comes from the switch reader.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import anyio
import sqlalchemy as sa

from persistence.engine import session_scope
from persistence.errors import StoreError
from persistence.monitoring import latest_snapshot
from persistence.tables import MonitoringSnapshot
from serving import metrics
from serving.background import Periodic
from serving.switch import ScoringSwitchReader

logger = logging.getLogger(__name__)
STATUS_VALUES = {"insufficient_data": -1, "stable": 0, "watch": 1, "drift": 2}
LIVE_METRICS = ("roc_auc", "average_precision", "brier", "precision", "recall")


def _set(gauge: Any, value: Any, **labels: str) -> None:
    """A figure the snapshot has no value for (too few rows) is NaN, not the last value shown:
    an alert must not keep firing on a stale number."""
    number = float(value) if isinstance(value, int | float) else math.nan
    (gauge.labels(**labels) if labels else gauge).set(number)


def show(snapshot: MonitoringSnapshot) -> None:
    """Set every monitoring gauge from one snapshot."""
    drift, performance = snapshot.drift, snapshot.performance
    for feature in drift.get("features", []):
        name = str(feature.get("feature"))
        _set(metrics.DRIFT_PSI, feature.get("psi"), feature=name)
        _set(metrics.DRIFT_STATUS, STATUS_VALUES.get(feature.get("status", "")), feature=name)
    score = drift.get("score") or {}
    _set(metrics.DRIFT_PSI, score.get("psi"), feature="score")
    _set(metrics.DRIFT_STATUS, STATUS_VALUES.get(drift.get("status", "")), feature="overall")
    overall, training = performance.get("overall") or {}, performance.get("training") or {}
    for name in (*LIVE_METRICS, "labelled", "pending"):
        _set(metrics.LIVE_METRIC, overall.get(name), metric=name)
    for name in LIVE_METRICS:
        _set(metrics.TRAINING_METRIC, training.get(name), metric=name)
    _set(metrics.SNAPSHOT_TIMESTAMP, snapshot.created_at.timestamp())


class GaugeRefresher(Periodic):
    what = "refreshing the monitoring gauges"

    def __init__(
        self,
        engine: sa.Engine,
        model_tag: str,
        switch: ScoringSwitchReader,
        *,
        interval: float = 60.0,
    ) -> None:
        super().__init__(interval)
        self.engine = engine
        self.model_tag = model_tag
        self.switch = switch

    def _latest(self) -> MonitoringSnapshot | None:
        with session_scope(self.engine) as session:
            return latest_snapshot(session, self.model_tag)

    async def tick(self) -> None:
        state = await self.switch.state()
        metrics.SCORING_SUSPENDED.set(1.0 if state.suspended else 0.0)
        try:
            snapshot = await anyio.to_thread.run_sync(self._latest)
        except StoreError:
            logger.warning("monitoring gauges not refreshed: the database is unavailable")
            return
        if snapshot is not None:
            show(snapshot)

    async def start(self) -> None:
        """Show the latest snapshot at once, then every `interval` seconds."""
        await self.tick()
        await super().start()
