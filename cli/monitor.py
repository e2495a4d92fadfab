"""`attrition drift` and `attrition monitor`: the served model's drift and live performance,
for a person (text), a script (`--json`), a CronJob (`--fail-above`, `--record`).

- `attrition drift [--since --until] [--json] [--fail-above PSI]`: exit 1 when a feature's (or
  the score's) PSI is above PSI; no verdict, and exit 0, when the window holds too few
  employees (`insufficient_data`).
- `attrition monitor [--record]`: drift over the last `--days` (30) and live performance over
  all stored predictions; `--record` stores them as the snapshot the service's Prometheus
  gauges show (the CronJob in deploy/k8s runs it daily).
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from cli.db import connected
from monitoring.live import DRIFT_DAYS, live_drift, live_performance
from persistence.engine import session_scope
from persistence.monitoring import record_snapshot
from persistence.tables import as_utc
from settings import get_settings
from training.store import load


def _when(value: str) -> datetime:
    return as_utc(datetime.fromisoformat(value))


def _worst_psi(report: dict[str, Any]) -> float:
    values = [f["psi"] for f in report["features"]] + [report["score"]["psi"]]
    return max((v for v in values if v is not None), default=0.0)


def _drift_lines(report: dict[str, Any]) -> list[str]:
    lines = [f"drift over {report['n']} employees: {report['status']}"]
    for item in [*report["features"], {"feature": "score", **report["score"]}]:
        psi = "-" if item["psi"] is None else f"{item['psi']:.3f}"
        lines.append(f"  {item['feature']:<42} PSI {psi:>7}  {item['status']}")
    return lines


def drift(args: argparse.Namespace) -> int:
    settings = get_settings()
    stored = load(settings.model_tag)
    with connected(settings.database_url) as engine, session_scope(engine) as session:
        report = live_drift(
            session,
            stored.metadata,
            model_tag=stored.tag,
            since=args.since,
            until=args.until,
            min_rows=settings.drift_min_rows,
        )
    print(json.dumps(report, default=str) if args.json else "\n".join(_drift_lines(report)))
    if args.fail_above is not None and report["status"] != "insufficient_data":
        return 1 if _worst_psi(report) > args.fail_above else 0
    return 0


def monitor(args: argparse.Namespace) -> int:
    settings = get_settings()
    stored = load(settings.model_tag)
    since = datetime.now(UTC) - timedelta(days=args.days)
    with connected(settings.database_url) as engine, session_scope(engine) as session:
        drift_now = live_drift(
            session,
            stored.metadata,
            model_tag=stored.tag,
            since=since,
            until=None,
            min_rows=settings.drift_min_rows,
        )
        performance = live_performance(
            session,
            stored.metadata,
            model_tag=stored.tag,
            since=None,
            until=None,
            horizon_days=args.horizon_days,
            threshold=stored.threshold
            if settings.threshold_override is None
            else settings.threshold_override,
        )
        if args.record:
            record_snapshot(
                session,
                stored.tag,
                json.loads(json.dumps(drift_now, default=str)),
                json.loads(json.dumps(performance, default=str)),
            )
    overall = performance["overall"]
    print("\n".join(_drift_lines(drift_now)))
    print(
        f"live performance ({args.horizon_days}-day horizon): {overall['labelled']} labelled, "
        f"{overall['pending']} pending; average precision {overall['average_precision']}, "
        f"ROC-AUC {overall['roc_auc']}, Brier {overall['brier']}"
    )
    if args.record:
        print("recorded as the monitoring snapshot")
    return 0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("drift", help="drift of live inputs against training")
    parser.add_argument("--since", type=_when)
    parser.add_argument("--until", type=_when)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--fail-above", type=float, metavar="PSI")
    parser.set_defaults(handler=drift)
    parser = commands.add_parser("monitor", help="drift and live performance (--record)")
    parser.add_argument(
        "--days", type=int, default=DRIFT_DAYS, help=f"drift window (default {DRIFT_DAYS})"
    )
    parser.add_argument("--horizon-days", type=int, default=365)
    parser.add_argument("--record", action="store_true", help="store the snapshot for /metrics")
    parser.set_defaults(handler=monitor)
