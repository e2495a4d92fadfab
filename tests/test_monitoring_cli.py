"""The monitoring issue's command line on SQLite and PostgreSQL: `attrition outcomes import`,
`attrition drift` (its JSON and its exit codes for a CronJob or CI), and `attrition monitor
--record`, whose snapshot a running service shows on /metrics.

Commands run in process through `cli.main.main`, with DATABASE_URL pointing at the database
under test. `attrition drift` and `attrition monitor` read the rows of the served model's tag,
so they run on fresh databases of their own, never on the servers shared with other tests.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score
from sqlmodel import col, select

import db
from cli.main import main as attrition
from persistence.engine import session_scope
from persistence.monitoring import OutcomeFact, latest_snapshot, record_outcomes
from persistence.tables import MonitoringSnapshot, Outcome
from settings import get_settings
from tests.support import REPO, databases
from tests.support.databases import engine_of
from tests.support.monitoring import (
    SHIFTED,
    Sample,
    anonymous_rows,
    prediction,
    scored_samples,
    shifted,
    write_rows,
)
from tests.support.servers import Running, bentoml_serve, process_family
from training.extracts import load_extracts
from training.store import load

ENV = ("DATABASE_URL", "ATTRITION_ADMIN_DATABASE_URL", "ATTRITION_DRIFT_MIN_ROWS")
SERVED = "attrition_pipeline:latest"  # what the commands and a fresh `bentoml serve` load
GAUGES_LAND_WITHIN = 30  # the test server re-reads the snapshot every second


def use(monkeypatch: pytest.MonkeyPatch, database_url: str) -> None:
    """Run the CLI in process on this database, and nothing else of the environment's."""
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", database_url)
    get_settings.cache_clear()


@pytest.fixture(autouse=True)
def _fresh_settings() -> Iterator[None]:
    yield
    get_settings.cache_clear()  # monkeypatch has restored the environment by now


@pytest.fixture(scope="module")
def served(trained_tag: str) -> Any:
    """The model the commands load (the store's latest: the session's trained one)."""
    return load(SERVED)


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory, served: Any) -> dict[str, Sample]:
    return scored_samples(
        tmp_path_factory.mktemp("drift-cli"), served, 600, {"early": 41, "late": 42}
    )


# --- attrition outcomes import ----------------------------------------------------------------

COUNTS = re.compile(
    r"^(?P<known>\d+) outcomes as of (?P<as_of>\S+) \((?P<left>\d+) left, (?P<stayed>\d+) "
    r"stayed\): (?P<new>\d+) new, (?P<old>\d+) already recorded; (?P<unknown>\d+) unknown "
    r"employees skipped$"
)


def import_outcomes(capsys: pytest.CaptureFixture[str], folder: Path, as_of: str) -> dict:
    assert attrition(["outcomes", "import", "--data-dir", str(folder), "--as-of", as_of]) == 0
    out = capsys.readouterr().out.strip()
    match = COUNTS.match(out)
    assert match, out
    return {k: v if k == "as_of" else int(v) for k, v in match.groupdict().items()}


@pytest.mark.e2e
def test_outcomes_import_records_the_extracts_once(
    server, generated_dir, holdout_dir, monkeypatch, capsys
):
    use(monkeypatch, server.database_url)
    dataset = load_extracts(generated_dir)
    truth = {
        int(e.id_employee or 0): bool(left)
        for e, left in zip(dataset.employees, dataset.target, strict=True)
    }
    as_of = "2031-07-13"  # a day no other test records a fact on
    leavers = sum(truth.values())
    assert 0 < leavers < len(truth)

    first = import_outcomes(capsys, generated_dir, as_of)
    assert first == {
        "known": len(truth),
        "as_of": as_of,
        "left": leavers,
        "stayed": len(truth) - leavers,
        "new": len(truth),
        "old": 0,
        "unknown": 0,
    }
    again = import_outcomes(capsys, generated_dir, as_of)
    assert again == first | {"new": 0, "old": len(truth)}

    with engine_of(server.database_url) as engine, session_scope(engine) as session:
        stored = list(
            session.exec(select(Outcome).where(col(Outcome.event_date) == date(2031, 7, 13)))
        )
    assert len(stored) == len(truth)
    assert {o.employee_id: o.status == "left" for o in stored} == truth
    assert {o.source for o in stored} == {f"extracts:{dataset.source}"}
    assert {o.client for o in stored} == {None}

    # Another extract: its employees that are not in the `employees` table are skipped.
    holdout = load_extracts(holdout_dir)
    ids = {int(e.id_employee or 0) for e in holdout.employees}
    other = import_outcomes(capsys, holdout_dir, "2031-07-14")
    assert other["unknown"] == len(ids - truth.keys()) > 0
    assert other["known"] == other["new"] == len(ids & truth.keys()) > 0


def test_outcomes_import_fails_cleanly(tmp_path, migrated_database, monkeypatch, capsys):
    use(monkeypatch, migrated_database)
    missing = tmp_path / "nowhere"
    assert (
        attrition(["outcomes", "import", "--data-dir", str(missing), "--as-of", "2031-01-01"]) == 2
    )
    assert capsys.readouterr().err.startswith("error: ")
    with pytest.raises(SystemExit) as bad_date:
        attrition(["outcomes", "import", "--data-dir", str(tmp_path), "--as-of", "13/07/2031"])
    assert bad_date.value.code == 2


def test_outcomes_import_skips_every_unknown_employee(
    migrated_database, generated_dir, monkeypatch, capsys
):
    """A database whose `employees` table is empty: nothing to record, and it says so."""
    use(monkeypatch, migrated_database)
    counts = import_outcomes(capsys, generated_dir, "2031-07-13")
    assert counts["known"] == counts["new"] == 0
    assert counts["unknown"] == len(load_extracts(generated_dir).employees)


# --- attrition drift --------------------------------------------------------------------------


def run_drift(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = attrition(["drift", *args])
    return code, capsys.readouterr().out


def test_drift_command_exit_codes(migrated_database, samples, served, monkeypatch, capsys):
    """Stable rows 20 days ago, two shifted features 2 days ago, nothing in the last hour."""
    now = datetime.now(UTC)
    threshold = served.scorer().threshold
    write_rows(
        migrated_database,
        anonymous_rows(served.tag, samples["early"], now - timedelta(days=20), threshold)
        + anonymous_rows(served.tag, shifted(samples["late"]), now - timedelta(days=2), threshold)
        # another model's rows in the stable window: not the served model's, never read
        + anonymous_rows("other:1", shifted(samples["early"]), now - timedelta(days=20), threshold),
    )
    use(monkeypatch, migrated_database)
    middle = (now - timedelta(days=10)).isoformat()

    code, out = run_drift(capsys, "--json", "--fail-above", "0.25", "--until", middle)
    report = json.loads(out)
    assert (code, report["status"], report["n"]) == (0, "stable", 600), report
    assert {f["status"] for f in report["features"]} == {"stable"}

    code, out = run_drift(capsys, "--json", "--fail-above", "0.25", "--since", middle)
    report = json.loads(out)
    assert (code, report["status"], report["n"]) == (1, "drift", 600)
    assert {f["feature"] for f in report["features"] if f["status"] == "drift"} == SHIFTED
    worst = max(f["psi"] for f in report["features"])
    # The threshold decides: above the worst PSI, the same drift passes.
    code, _ = run_drift(capsys, "--json", "--fail-above", str(worst + 0.5), "--since", middle)
    assert code == 0
    code, out = run_drift(capsys, "--json", "--since", middle)  # no --fail-above: a report only
    assert code == 0 and json.loads(out)["status"] == "drift"

    # The same instant in another offset is the same window: an hour before the shifted rows,
    # spelled in UTC+2, still holds all of them.
    shortly_before = (now - timedelta(days=2, hours=1)).astimezone(timezone(timedelta(hours=2)))
    code, out = run_drift(capsys, "--json", "--since", shortly_before.isoformat())
    assert (code, json.loads(out)["n"]) == (0, 600)

    # Too few employees in the window: no verdict, so nothing to fail on.
    recent = (now - timedelta(hours=1)).isoformat()
    code, out = run_drift(capsys, "--json", "--fail-above", "0.25", "--since", recent)
    report = json.loads(out)
    assert (code, report["status"], report["n"]) == (0, "insufficient_data", 0)

    # Text for a person: the verdict, then one line per feature and the score.
    code, out = run_drift(capsys, "--since", middle)
    lines = out.splitlines()
    assert code == 0
    assert lines[0] == "drift over 600 employees: drift"
    assert len(lines) == 1 + len(served.metadata["reference"]["features"]) + 1
    assert any(line.split()[0] == "age" and line.endswith("drift") for line in lines[1:])


def test_drift_command_minimum_sample_is_a_setting(
    migrated_database, samples, served, monkeypatch, capsys
):
    now = datetime.now(UTC)
    sample = shifted(samples["early"])
    few = Sample(sample.inputs[:120], sample.probabilities[:120])
    write_rows(migrated_database, anonymous_rows(served.tag, few, now, served.scorer().threshold))
    use(monkeypatch, migrated_database)

    code, out = run_drift(capsys, "--json", "--fail-above", "0.25")
    assert (code, json.loads(out)["status"]) == (0, "insufficient_data")
    monkeypatch.setenv("ATTRITION_DRIFT_MIN_ROWS", "100")
    get_settings.cache_clear()
    code, out = run_drift(capsys, "--json", "--fail-above", "0.25")
    report = json.loads(out)
    assert (code, report["status"], report["min_rows"]) == (1, "drift", 100)


# --- attrition monitor --record and the gauges ------------------------------------------------


def gauges(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the monitoring gauges on /metrics, by name and labels."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith(("attrition_drift", "attrition_live", "attrition_training"))
    }


def overall_status(values: dict) -> float | None:
    return values.get(("attrition_drift_status", (("feature", "overall"),)))


def live(values: dict, metric: str) -> float | None:
    return values.get(("attrition_live_metric", (("metric", metric),)))


def wait_for(url: str, done: Any, timeout: float = GAUGES_LAND_WITHIN) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        values = gauges(url)
        if done(values) or time.monotonic() > deadline:
            return values
        time.sleep(0.5)


@pytest.mark.e2e
def test_monitor_record_feeds_the_gauges(
    migrated_database, generated_dir, samples, served, session_home, monkeypatch, capsys
):
    url = migrated_database
    databases.prepare_database(url, seed_dir=generated_dir)
    now = datetime.now(UTC)
    threshold = served.scorer().threshold
    rng = np.random.default_rng(5)
    # Drift: 600 stable anonymous rows three days ago (inside the default 30-day window).
    rows = anonymous_rows(served.tag, samples["early"], now - timedelta(days=3), threshold)
    # Performance: 40 seeded employees scored 400 days ago, 30 with a known outcome.
    employees = [int(e.id_employee or 0) for e in load_extracts(generated_dir).employees[:40]]
    scored_at = now - timedelta(days=400)
    facts, y, p = [], [], []
    for i, employee in enumerate(employees):
        leaves = i % 3 == 0
        probability = float(rng.beta(4, 2) if leaves else rng.beta(2, 4))
        rows.append(prediction(served.tag, scored_at, probability, employee_id=employee))
        if i >= 30:
            continue  # pending: no outcome yet
        day = scored_at.date() + timedelta(days=100 if leaves else 380)
        facts.append(OutcomeFact(employee, "left" if leaves else "stayed", day))
        y.append(int(leaves))
        p.append(probability)
    write_rows(url, rows)
    with engine_of(url) as engine, session_scope(engine) as session:
        record_outcomes(session, facts, source="tests", client=None)

    env = os.environ | {
        "DATABASE_URL": url,
        "BENTOML_CONFIG": str(REPO / "configuration.yaml"),
        "BENTOML_DO_NOT_TRACK": "true",
        "ATTRITION_GAUGE_REFRESH_SECONDS": "1",
    }
    log = session_home / f"serve-monitoring-{os.path.basename(url)[:40]}.log"
    server = bentoml_serve(env=env, log=log)
    try:
        assert overall_status(gauges(server.url)) is None  # no snapshot yet: no value

        use(monkeypatch, url)
        assert attrition(["monitor", "--record"]) == 0
        out = capsys.readouterr().out
        assert "drift over 600 employees: stable" in out
        assert "30 labelled, 10 pending" in out
        assert "recorded as the monitoring snapshot" in out
        with engine_of(url) as engine, session_scope(engine) as session:
            snapshot = latest_snapshot(session, served.tag)
            snapshots = len(list(session.exec(select(MonitoringSnapshot))))
        assert snapshots == 1 and snapshot is not None
        assert snapshot.drift["status"] == "stable" and snapshot.drift["n"] == 600
        assert snapshot.performance["overall"]["labelled"] == 30

        values = wait_for(server.url, lambda v: overall_status(v) is not None)
        assert overall_status(values) == 0, server.log_tail()  # stable
        assert live(values, "labelled") == 30
        assert live(values, "pending") == 10
        assert live(values, "roc_auc") == pytest.approx(roc_auc_score(y, p))
        assert live(values, "average_precision") == pytest.approx(average_precision_score(y, p))
        assert live(values, "brier") == pytest.approx(brier_score_loss(y, p))
        training = served.metadata["metrics"]["out_of_fold"]
        assert values[("attrition_training_metric", (("metric", "roc_auc"),))] == pytest.approx(
            training["roc_auc"]
        )
        for feature in ("age", "score"):
            assert ("attrition_drift_psi", (("feature", feature),)) in values, feature

        # Two features shift in the last day; a snapshot of the last two days (the shifted rows
        # only) turns the gauges to drift (2).
        shifted_rows = anonymous_rows(
            served.tag, shifted(samples["late"]), now - timedelta(hours=1), threshold
        )
        write_rows(url, shifted_rows)
        assert attrition(["monitor", "--record", "--days", "2"]) == 0
        capsys.readouterr()
        values = wait_for(server.url, lambda v: overall_status(v) == 2)
        assert overall_status(values) == 2, values
        for feature in SHIFTED:
            status = values[("attrition_drift_status", (("feature", feature),))]
            assert status == 2, feature
    finally:
        server.stop()


def worker_pids(server: Running) -> list[int]:
    """The server's live worker processes (a killed one is gone, or a zombie until reaped)."""
    pids = []
    for process in process_family(server.process.pid)[1:]:
        try:
            if process.status() != psutil.STATUS_ZOMBIE and "_bentoml_impl.worker" in " ".join(
                process.cmdline()
            ):
                pids.append(process.pid)
        except psutil.Error:
            continue
    return sorted(pids)


@pytest.mark.e2e
def test_gauges_follow_the_latest_snapshot_after_a_worker_restart(
    tmp_path, samples, served, session_home, monkeypatch, capsys
):
    """A worker that crashed and was restarted leaves no stale value behind: once every live
    worker has re-read a newer snapshot, /metrics shows the newer one, even when it is lower."""
    url = f"sqlite:///{tmp_path / 'restart.db'}"
    db.upgrade(url)
    threshold = served.scorer().threshold
    rows = anonymous_rows(
        served.tag, shifted(samples["late"]), datetime.now(UTC) - timedelta(hours=1), threshold
    )
    write_rows(url, rows)
    use(monkeypatch, url)
    assert attrition(["monitor", "--record"]) == 0  # drift
    env = os.environ | {
        "DATABASE_URL": url,
        "BENTOML_CONFIG": str(REPO / "configuration.yaml"),
        "BENTOML_DO_NOT_TRACK": "true",
        "ATTRITION_GAUGE_REFRESH_SECONDS": "1",
    }
    server = bentoml_serve(env=env, log=session_home / "serve-monitoring-restart.log")
    try:
        assert overall_status(wait_for(server.url, lambda v: overall_status(v) == 2)) == 2
        time.sleep(3)  # three refresh periods: every worker has shown the drift snapshot
        before = worker_pids(server)
        assert len(before) == 2, before
        psutil.Process(before[0]).kill()  # a crash: no clean-up of its own

        def restarted() -> bool:
            pids = worker_pids(server)
            return len(pids) == 2 and before[0] not in pids

        deadline = time.monotonic() + 60
        while not restarted() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert restarted(), server.log_tail()

        # Nothing in the last 0 days: the newer snapshot has no verdict (-1).
        assert attrition(["monitor", "--record", "--days", "0"]) == 0
        assert "insufficient_data" in capsys.readouterr().out
        values = wait_for(server.url, lambda v: overall_status(v) == -1)
        assert overall_status(values) == -1, values
        for feature in SHIFTED:
            assert values[("attrition_drift_status", (("feature", feature),))] == -1, feature
            # No PSI in the latest snapshot: the gauge must not keep the older one (>= 0.25 keeps
            # the drift alert of deploy/prometheus firing on a verdict nobody holds any more).
            psi = values.get(("attrition_drift_psi", (("feature", feature),)))
            assert psi is None or math.isnan(psi), (feature, psi)
    finally:
        server.stop()
