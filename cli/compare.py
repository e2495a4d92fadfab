"""`attrition compare [--since --until] [--json] [--horizon-days N]`: the served champion
against its shadow challenger on the predictions both scored, and whether to promote it.

The rows come from `persistence.shadow.shadow_pairs` (every champion prediction in the
window that the challenger scored too), the outcomes from
`persistence.monitoring.outcome_facts`; the figures and the rule are `monitoring.compare`'s.
Text: one summary block and the recommendation line; `--json`: the report. Exit 0 whatever
the recommendation: it is advice for the reviewed change that promotes a model, not a gate.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from typing import Any

import persistence.monitoring as store
import persistence.shadow as shadow
from cli.db import connected
from monitoring.compare import compare_report
from monitoring.performance import DEFAULT_HORIZON_DAYS
from persistence.engine import session_scope
from persistence.tables import as_utc
from settings import get_settings


def _when(value: str) -> datetime:
    return as_utc(datetime.fromisoformat(value))


def _number(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _estimate(estimate: dict[str, Any], *, signed: bool = False) -> str:
    value, low, high = estimate["value"], estimate["low"], estimate["high"]
    if value is None:
        return "-"
    shown = f"{value:+.3f}" if signed else f"{value:.3f}"
    if low is None or high is None:
        return shown
    bounds = f"{low:+.3f}, {high:+.3f}" if signed else f"{low:.3f}, {high:.3f}"
    return f"{shown} [{bounds}]"


def lines(report: dict[str, Any]) -> list[str]:
    """The summary block and, last, the recommendation line."""
    agreement = report["agreement"]
    flips = ", ".join(f"{k} {v}" for k, v in report["flips"].items() if v) or "none"
    labelled, metrics = report["labelled"], report["metrics"]
    out = [
        f"champion {report['champion_tag'] or '-'} vs challenger "
        f"{report['challenger_tag'] or '-'}: {report['n']} predictions scored by both",
        f"  agreement {'-' if agreement is None else f'{agreement:.1%}'}, mean |dp| "
        f"{_number(report['mean_abs_diff'])}, Spearman {_number(report['spearman'])}",
        f"  risk band changes: {flips}",
        f"  outcomes ({report['horizon_days']}-day horizon, latest per employee and month): "
        f"{labelled['n']} labelled ({labelled['positives']} left), {labelled['pending']} "
        f"pending, {labelled['excluded']} excluded",
        f"  {'':<18} {'champion':<22} {'challenger':<22} "
        f"difference ({metrics['confidence']:.0%} intervals)",
    ]
    for name, title in (
        ("roc_auc", "ROC-AUC"),
        ("average_precision", "average precision"),
        ("brier", "Brier"),
    ):
        out.append(
            f"  {title:<18} {_estimate(metrics['champion'][name]):<22} "
            f"{_estimate(metrics['challenger'][name]):<22} "
            f"{_estimate(metrics['difference'][name], signed=True)}"
        )
    recommendation = report["recommendation"]
    verdict = "promote the challenger" if recommendation["promote"] else "keep the champion"
    out.append(f"recommendation: {verdict}: {recommendation['reason']}")
    return out


def compare(args: argparse.Namespace) -> int:
    settings = get_settings()
    with connected(settings.database_url) as engine, session_scope(engine) as session:
        pairs = shadow.shadow_pairs(session, args.since, args.until)
        ids = sorted({p["employee_id"] for p in pairs if p.get("employee_id") is not None})
        facts = store.outcome_facts(session, ids)
    report = compare_report(pairs, facts, horizon_days=args.horizon_days)
    print(json.dumps(report, default=str) if args.json else "\n".join(lines(report)))
    return 0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "compare", help="champion against shadow challenger, and whether to promote"
    )
    parser.add_argument("--since", type=_when, help="ISO time; naive is UTC")
    parser.add_argument("--until", type=_when, help="ISO time, excluded; naive is UTC")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--horizon-days", type=int, default=DEFAULT_HORIZON_DAYS)
    parser.set_defaults(handler=compare)
