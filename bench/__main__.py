"""The steps of `make bench` in order: database, model, key, the servers and their loads, the
in-process limits, then the report (bench/__init__.py says what each measures)."""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bench
from bench import BENCH, BenchError, log, run
from bench.database import Rows, bench_database
from bench.in_process import in_process
from bench.load import Context, ensure_wrk, serve_and_measure
from bench.monitor import RssSampler
from bench.report import machine, table, write_results
from bench.server import Server, server_config
from bench.shadow import measure_shadow
from bench.targets import evaluate_targets
from tests.support import REPO
from tests.support.commands import run_cli
from tests.support.payloads import ANONYMOUS

MODEL_NAME = "attrition_pipeline"
TRAINING = ("--generated-rows", "1176", "--folds", "3")
CHALLENGER_SEED = "7"  # not the CLI's default, with which the benchmark trains its champion


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(bench.__doc__ or "").split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument(
        "--warmup", type=float, default=3.0, help="seconds of wrk warm-up before each concurrency"
    )
    parser.add_argument(
        "--connections",
        type=lambda s: tuple(int(c) for c in s.split(",")),
        default=(1, 16, 64),
        help="comma-separated wrk connection counts (default 1,16,64)",
    )
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (at most conns)")
    parser.add_argument("--calls", type=int, default=5, help="timed /predict_batch calls per size")
    parser.add_argument(
        "--batch-sizes",
        type=lambda s: tuple(int(c) for c in s.split(",")),
        default=(1, 100, 1000),
        help="employees per /predict_batch call (default 1,100,1000)",
    )
    parser.add_argument(
        "--fresh-store",
        action="store_true",
        help="train into a temporary BentoML store even if the default one has a model",
    )
    parser.add_argument(
        "--skip-disabled", action="store_true", help="skip the batching-disabled server"
    )
    parser.add_argument(
        "--skip-shadow", action="store_true", help="skip the server with a shadow challenger"
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each measured run, wait up to SECONDS for other processes to go quiet",
    )
    parser.add_argument(
        "--workers", type=int, help="override services.attrition.workers (scaling runs)"
    )
    parser.add_argument(
        "--db-writers",
        type=int,
        default=4,
        help="processes committing 16-row batches for the database ceiling (0 skips it)",
    )
    parser.add_argument(
        "--flood",
        type=float,
        default=25.0,
        metavar="SECONDS",
        help="seconds of random-key flood beside a good caller (0 skips it)",
    )
    parser.add_argument("--keep-temp", action="store_true", help="keep logs and wrk outputs")
    parser.add_argument(
        "--fail-on-miss", action="store_true", help="exit 3 when a performance target is missed"
    )
    parser.add_argument("--results-dir", type=Path, default=BENCH / "results")
    return parser.parse_args(argv)


def default_store() -> Path:
    return Path(os.environ.get("BENTOML_HOME") or Path.home() / "bentoml")


def store_has_model(home: Path) -> bool:
    return (home / "models" / MODEL_NAME / "latest").is_file()


def attrition(env: dict[str, str], *args: str) -> str:
    done = run_cli(*args, env=env)
    if done.returncode != 0:
        raise BenchError(f"attrition {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def shadow_store(home: Path, tmp: Path, env: dict[str, str]) -> tuple[Path, str, str]:
    """(store, champion, challenger): a store of its own holding a copy of the benchmark's
    model (the champion) and a challenger trained with another seed. The benchmark's store,
    which may be the user's, is left as it was: its `latest` stays the champion."""
    store = tmp / "bentoml-shadow"
    log(f"training a challenger into {store} (generated data, seed {CHALLENGER_SEED})")
    out = attrition(
        env | {"BENTOML_HOME": str(store), "ATTRITION_REPORTS_DIR": str(tmp / "reports-shadow")},
        *("train", *TRAINING, "--seed", CHALLENGER_SEED),
    )
    found = re.search(rf"^saved ({MODEL_NAME}:\w+)", out, re.MULTILINE)
    if found is None:
        raise BenchError(f"attrition train printed no saved tag:\n{out[-2000:]}")
    version = (home / "models" / MODEL_NAME / "latest").read_text().strip()
    models = home / "models" / MODEL_NAME
    shutil.copytree(models / version, store / "models" / MODEL_NAME / version)
    return store, f"{MODEL_NAME}:{version}", found.group(1)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not ensure_wrk():
        log("wrk is not installed and could not be: apt-get install -y wrk (or brew install wrk)")
        return 2
    began = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="attrition-bench-"))
    employee = ANONYMOUS
    body_file = tmp / "employee.json"
    body_file.write_text(json.dumps(employee))
    results: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
    }
    sampler = RssSampler()
    sampler.start()
    rows: Rows | None = None
    try:
        with bench_database(tmp) as (url, where):
            results["database"] = where
            home = default_store()
            if args.fresh_store or not store_has_model(home):
                home = tmp / "bentoml"
            env = {k: v for k, v in os.environ.items() if k != "ATTRITION_SHADOW_MODEL_TAG"}
            env |= {
                "BENTOML_HOME": str(home),
                "DATABASE_URL": url,
                "ATTRITION_DATABASE_URL": url,
                "ATTRITION_REPORTS_DIR": str(tmp / "reports"),
                "BENTOML_DO_NOT_TRACK": "True",
                "PYTHONUNBUFFERED": "1",
            }
            if not store_has_model(home):
                log(f"training a model into {home} (generated data, 1176 rows, 3 folds)")
                attrition(env, "train", *TRAINING)
            results["bentoml_home"] = "temporary" if home.is_relative_to(tmp) else str(home)
            attrition(env, "db", "upgrade")
            key = attrition(env, "keys", "create", f"bench-{secrets.token_hex(3)}")
            key = key.strip().splitlines()[-1].strip()
            rows = Rows(url)
            ctx = Context(args, tmp, rows, key, body_file, employee, sampler)

            workers = args.workers
            config = server_config(tmp, "bench", workers=workers)
            shadow_pair: tuple[Server, Server] | None = None
            if not args.skip_shadow:  # trained first: training would stand between the runs
                store, champion, challenger = shadow_store(home, tmp, env)
                results["shadow_models"] = {"champion": champion, "challenger": challenger}
                pinned = {"ATTRITION_MODEL_TAG": champion}
                shadow_env = env | {"BENTOML_HOME": str(store)}
                shadow_pair = (
                    Server("no-shadow", config, shadow_env, tmp, pinned),
                    Server(
                        *("shadow", config, shadow_env, tmp),
                        pinned | {"ATTRITION_SHADOW_MODEL_TAG": challenger},
                    ),
                )
            batching = Server("batching", config, env, tmp)
            results["batching"] = serve_and_measure(
                ctx, batching, batch_sizes=args.batch_sizes, flood=args.flood
            )
            if shadow_pair is not None:
                results |= measure_shadow(ctx, *shadow_pair)
            if not args.skip_disabled:
                # Batch size 1 = batching disabled: every call is its own batch.
                disabled = Server("disabled", config, env, tmp, {"ATTRITION_BATCH_MAX_SIZE": "1"})
                results["disabled"] = serve_and_measure(ctx, disabled)
                results["ratio"] = {
                    str(on["connections"]): round(on["rps"] / off["rps"], 2) if off["rps"] else 0
                    for on, off in zip(
                        results["batching"]["predict"],
                        results["disabled"]["predict"],
                        strict=True,
                    )
                }
            results["in_process"] = in_process(
                home, url, employee, args.batch_sizes, db_writers=args.db_writers
            )
            results["checks"] = ctx.checks
            rows.close()
            rows = None
    finally:
        sampler.stop()
        if rows is not None:
            rows.close()
        if args.keep_temp:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    results["elapsed_s"] = round(time.monotonic() - began, 1)
    results["load_average_end"] = [round(load, 2) for load in os.getloadavg()]
    results["targets"] = evaluate_targets(results)
    path = write_results(results, args.results_dir)
    print(table(results))
    shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path
    print(f"whole run {results['elapsed_s']:.0f} s; results: {shown}")
    if not all(c["ok"] for c in results["checks"]):
        return 1
    if args.fail_on_miss and not all(t["pass"] for t in results["targets"]):
        return 3
    return 0


if __name__ == "__main__":
    run(main)
