"""What a shadow challenger costs: two servers in a row on the same store, the champion pinned
in both, the second also scoring every answered batch with a challenger
(`ATTRITION_SHADOW_MODEL_TAG`); each runs the 64-connection /predict scenario after its own
warm-up. Then, once the second has stopped (its shutdown waits for the shadow's last batches),
the shadow's rows against the champion's.
"""

from __future__ import annotations

from typing import Any

from bench import log
from bench.load import Context, serve_and_measure
from bench.server import Server

SHADOW_CONNECTIONS = 64
# Rows the shadow dropped (its queue full) or failed to score or store, read before the stop.
FAILURES = "attrition_shadow_failures_total"


def measure_shadow(ctx: Context, without: Server, shadowed: Server) -> dict[str, Any]:
    """`no_shadow` and `shadow`: serve_and_measure of each at SHADOW_CONNECTIONS, the second
    with the rows of the champion and of the shadow it wrote; `shadow_cost`: the comparison."""
    baseline = serve_and_measure(ctx, without, concurrencies=(SHADOW_CONNECTIONS,))
    champion_before, shadow_before = ctx.rows.count(), ctx.rows.shadow_count()
    measured = serve_and_measure(
        ctx, shadowed, concurrencies=(SHADOW_CONNECTIONS,), counters=(FAILURES,)
    )
    champion = ctx.rows.settled() - champion_before
    shadow = ctx.rows.settled(shadow=True) - shadow_before
    log(
        f"{shadowed.name}: {champion} champion rows, {shadow} shadow rows after the drain, "
        f"{measured['counters'][FAILURES]:.0f} counted in {FAILURES}"
    )
    measured |= {"champion_rows": champion, "shadow_rows": shadow}
    return {
        "no_shadow": baseline,
        "shadow": measured,
        "shadow_cost": shadow_cost(baseline, measured),
    }


def shadow_cost(without: dict[str, Any], shadowed: dict[str, Any]) -> dict[str, Any]:
    """The run with a shadow against the one without: throughput in % of it, the p99 as a
    multiple of it, how far the shadow's rows are from the champion's, the peak RSS of one
    worker in each."""
    (base,) = without["predict"]
    (run,) = shadowed["predict"]
    return {
        "connections": SHADOW_CONNECTIONS,
        "rps_pct": round(100 * run["rps"] / base["rps"], 1) if base["rps"] else 0.0,
        "p99_ratio": round(run["p99_ms"] / base["p99_ms"], 2) if base["p99_ms"] else 0.0,
        "rows_difference": abs(shadowed["champion_rows"] - shadowed["shadow_rows"]),
        "failures_counted": shadowed["counters"][FAILURES],
        "worker_rss_mb": {"without": base["peak_worker_rss_mb"], "with": run["peak_worker_rss_mb"]},
    }
