"""Load benchmark of the attrition service: `make bench` (or `.venv/bin/python bench/run.py`).

Self-contained: it finds or starts PostgreSQL (TEST_DATABASE_URL's server, else 127.0.0.1:5432,
else an embedded pgserver), creates a throw-away database, trains a model into a temporary
BentoML store (unless the default store already holds `attrition_pipeline`), starts
`bentoml serve` with the repository's configuration.yaml, and measures
- `/predict` (one employee per call) with wrk at 1, 16 and 64 connections, each after a short
  warm-up at the same concurrency: req/s, p50/p90/p99, errors, the mean batch the adaptive
  batcher formed (from the server's /metrics) and the CPU split between the workers;
- `/predict_batch` with 1, 100 and 1000 employees: median latency of a few calls, rows/s;
- a flood of random-key calls (each refused with 401) beside a good caller at 4 connections:
  the good caller's p50 with and without the flood, and the audit rows the refusals cost;
- the same `/predict` runs with batching disabled (ATTRITION_BATCH_MAX_SIZE=1), and the ratio;
- the cost of a shadow challenger (a second model, trained with another seed into a store of
  its own): the 64-connection `/predict` run on a server with the champion pinned, then on one
  that also has the challenger (ATTRITION_SHADOW_MODEL_TAG): throughput in % of the first, the
  p99 ratio, the peak RSS of one worker in each, and the shadow's rows against the champion's
  once the second has stopped (its shutdown waits for the shadow's last batches);
- the in-process limit: scoring, validation and the batch write (COPY) without HTTP;
- the database ceiling: rows/s PostgreSQL commits from 4 processes writing 16-row batches
  (what replicas share; `--workers N` reruns the server side with N workers for scaling);
- for each server: the time from `bentoml serve` to its first `/readyz` 200, the peak RSS
  of its process tree and of its largest worker.
After every run it checks that the rows written equal the 2xx answers: each answered
prediction_id has its row, and the only extra rows are calls wrk abandoned in flight when its
clock ran out (answered by the server, never read by wrk).

Results: one table on stdout, and JSON in bench/results/<timestamp>.json. The table states
PASS/MISS against the performance targets (bench/targets.py), warns when other processes used
the CPUs during a run, and gives the load average at the start and the end. Needs `wrk`; as
root it runs `apt-get install -y wrk` when it is missing. Exit status: 0 done, 1 rows and
answers differ, 2 a step failed, 3 a target was missed (only with --fail-on-miss).

Modules, by job: run (the entry point and the order of the steps), database (PostgreSQL and
the row counts), server (the servers under test), monitor (CPU and memory while they run),
load (wrk and /predict_batch scenarios), flood (the random-key flood), shadow (the
challenger's cost), in_process (the same work without HTTP), targets (the thresholds), report
(the table and the JSON); layers, run by hand, splits py-spy samples of a worker by layer.
Servers, databases and payloads come from tests/support, as in the tests.
"""

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

BENCH = Path(__file__).resolve().parent


class BenchError(RuntimeError):
    """A step of the benchmark failed; the message says which and why."""


def run(main: Callable[[], int]) -> NoReturn:
    """Exit with `main()`'s status: 2 when a step failed (its message logged), 130 on Ctrl-C."""
    try:
        sys.exit(main())
    except BenchError as error:
        log(f"error: {error}")
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
