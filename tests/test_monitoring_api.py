"""The monitoring issue's HTTP side, end to end against `bentoml serve` on SQLite and PostgreSQL:
outcomes (`POST /outcomes`), live performance (`GET /performance`) against sklearn on the same
rows, drift (`GET /drift`) on generated employees, the at-risk list, and the roles of each route.

The servers are shared with every other end-to-end test, so each test writes its rows under a
model tag of its own (and passes it as `?model_tag=`) and about employees of its own (ids in a
random range far above the generated ones): what it reads back is what it wrote.
"""

from __future__ import annotations

import itertools
import secrets
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import httpx
import numpy as np
import pytest
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    fbeta_score,
    precision_score,
    recall_score,
    roc_auc_score,
)
from sqlmodel import col, select

from persistence.engine import session_scope
from persistence.keys import Role
from persistence.monitoring import OutcomeFact, record_outcomes
from persistence.predictions import PredictionRow
from persistence.queries import upsert_employees
from persistence.tables import Outcome
from settings import Settings
from tests.support.databases import engine_of, new_key
from tests.support.http import Key, ok, poll
from tests.support.monitoring import (
    SHIFTED,
    Sample,
    anonymous_rows,
    prediction,
    scored_samples,
    shifted,
    write_rows,
)
from tests.support.payloads import RAW
from tests.support.servers import Service
from training.contract import Employee
from training.store import load

pytestmark = pytest.mark.e2e

MIN_ROWS = 200  # the service's default minimum sample for a drift verdict
FLUSH = Settings().access_flush_seconds  # access events are written in batches this often
ACCESS_LANDS_WITHIN = 15
# Employee ids of this module's own employees: far above the generated ones (<= 2 x rows).
_IDS = itertools.count(1_500_000_000 + secrets.randbelow(10**8))


# --- helpers ----------------------------------------------------------------------------------


def get(server: Service, path: str, key: Key | None, **params: Any) -> httpx.Response:
    headers = key.headers if key else {}
    return httpx.get(f"{server.url}{path}", headers=headers, params=params, timeout=60)


def post(server: Service, path: str, key: Key | None, body: Any) -> httpx.Response:
    headers = key.headers if key else {}
    return httpx.post(f"{server.url}{path}", headers=headers, json=body, timeout=120)


def unique_tag(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:8]}:1"


def features(employee_id: int, **changes: Any) -> dict[str, Any]:
    """An employee as the service stores one (`Employee.model_dump(mode="json")`)."""
    employee = Employee.model_validate(RAW | {"id_employee": str(employee_id)})
    return employee.model_dump(mode="json", exclude_none=True) | changes


def seed_employees(database_url: str, count: int) -> list[int]:
    """`count` new employees in the `employees` table (predictions may then name them)."""
    ids = [next(_IDS) for _ in range(count)]
    with engine_of(database_url) as engine, session_scope(engine) as session:
        upsert_employees(session, {i: features(i) for i in ids})
    return ids


def outcomes_of(database_url: str, employee_ids: Iterable[int]) -> list[Outcome]:
    with engine_of(database_url) as engine, session_scope(engine) as session:
        statement = select(Outcome).where(col(Outcome.employee_id).in_(set(employee_ids)))
        return list(session.exec(statement))


@pytest.fixture(scope="module")
def keys(server: Service) -> dict[str, Key]:
    """One key per role on this server, made for this module."""
    roles: tuple[Role, ...] = ("read", "predict", "review", "audit")
    return {role: new_key(server.database_url, role, role) for role in roles}


@pytest.fixture(scope="module")
def served(server: Service, keys: dict[str, Key]) -> Any:
    """The model this server serves (its `GET /model` tag), loaded in this process."""
    return load(ok(get(server, "/model", keys["read"]))["tag"])


# --- outcomes ---------------------------------------------------------------------------------


def test_outcomes_round_trip_is_idempotent(server, keys):
    reviewer = keys["review"]
    first, second, third = seed_employees(server.database_url, 3)
    facts = [
        {"employee_id": first, "left": True, "left_on": "2027-03-31"},
        {"employee_id": second, "left": False, "as_of": "2027-06-30"},
        {"employee_id": third, "left": False, "as_of": "2027-06-30"},
    ]
    assert ok(post(server, "/outcomes", reviewer, facts)) == {
        "received": 3,
        "recorded": 3,
        "unchanged": 0,
    }
    # The same facts again change nothing; a new fact beside known ones is the only one recorded.
    assert ok(post(server, "/outcomes", reviewer, facts)) == {
        "received": 3,
        "recorded": 0,
        "unchanged": 3,
    }
    later = {"employee_id": third, "left": True, "left_on": "2027-09-01"}
    assert ok(post(server, "/outcomes", reviewer, [facts[0], later, later])) == {
        "received": 3,
        "recorded": 1,
        "unchanged": 2,
    }

    stored = outcomes_of(server.database_url, [first, second, third])
    assert sorted((o.employee_id, o.status, o.event_date) for o in stored) == sorted(
        [
            (first, "left", date(2027, 3, 31)),
            (second, "stayed", date(2027, 6, 30)),
            (third, "stayed", date(2027, 6, 30)),
            (third, "left", date(2027, 9, 1)),
        ]
    )
    assert {o.source for o in stored} == {"api"}
    assert {o.client for o in stored} == {reviewer.name}
    assert all(o.recorded_at is not None for o in stored)


def test_outcomes_naming_unknown_employees_are_refused_whole(server, keys):
    reviewer = keys["review"]
    [known] = seed_employees(server.database_url, 1)
    missing = [next(_IDS), next(_IDS)]  # never seeded
    body = [
        {"employee_id": known, "left": True, "left_on": "2027-01-15"},
        {"employee_id": missing[0], "left": False, "as_of": "2027-06-30"},
        {"employee_id": known, "left": False, "as_of": "2026-12-31"},
        {"employee_id": missing[1], "left": True, "left_on": "2027-02-01"},
    ]
    error = ok(post(server, "/outcomes", reviewer, body), 422)
    assert error["error"] == "validation_error"
    assert [d["field"] for d in error["detail"]] == ["body[1].employee_id", "body[3].employee_id"]
    assert {d["rule"] for d in error["detail"]} == {"unknown_employee"}
    assert str(missing[0]) in error["detail"][0]["message"]
    assert "body[1].employee_id" in error["message"]
    # Nothing of the refused call was kept, the known employee's facts included.
    assert outcomes_of(server.database_url, [known, *missing]) == []


@pytest.mark.parametrize(
    ("item", "why"),
    [
        ({"left": True}, "a leaver without left_on"),
        ({"left": True, "as_of": "2027-06-30"}, "a leaver with as_of instead"),
        ({"left": True, "left_on": "2027-03-31", "as_of": "2027-06-30"}, "a leaver with both"),
        ({"left": False}, "a stayer without as_of"),
        ({"left": False, "left_on": "2027-03-31"}, "a stayer with left_on"),
        ({"left": True, "left_on": "31/03/2027"}, "a date that is not ISO"),
        ({"left": "maybe", "left_on": "2027-03-31"}, "left that is not a boolean"),
        ({"left": True, "left_on": "2027-03-31", "reason": "x"}, "an unknown field"),
    ],
)
def test_malformed_outcomes_are_refused_naming_the_item(server, keys, item, why):
    [known] = seed_employees(server.database_url, 1)
    good = {"employee_id": known, "left": False, "as_of": "2027-06-30"}
    answer = post(server, "/outcomes", keys["review"], [good, {"employee_id": known, **item}])
    error = ok(answer, 422)
    assert error["error"] == "validation_error", why
    assert error["detail"], why
    assert all(d["field"].startswith("body[1]") for d in error["detail"]), (why, error)
    assert outcomes_of(server.database_url, [known]) == [], why


def test_outcomes_take_one_to_ten_thousand_items(server, keys):
    reviewer = keys["review"]
    [known] = seed_employees(server.database_url, 1)
    fact = {"employee_id": known, "left": False, "as_of": "2027-06-30"}

    empty = ok(post(server, "/outcomes", reviewer, []), 422)
    assert [d["field"] for d in empty["detail"]] == ["body"]
    assert empty["detail"][0]["rule"] == "too_short"
    too_many = ok(post(server, "/outcomes", reviewer, [fact] * 10_001), 422)
    assert [d["field"] for d in too_many["detail"]] == ["body"]
    assert too_many["detail"][0]["rule"] == "too_long"
    assert outcomes_of(server.database_url, [known]) == []
    assert ok(post(server, "/outcomes", reviewer, {"employee_id": known}), 422)["detail"]

    assert ok(post(server, "/outcomes", reviewer, [fact] * 10_000)) == {
        "received": 10_000,
        "recorded": 1,
        "unchanged": 9_999,
    }
    assert len(outcomes_of(server.database_url, [known])) == 1


def test_only_review_keys_record_outcomes(server, keys):
    [known] = seed_employees(server.database_url, 1)
    body = [{"employee_id": known, "left": False, "as_of": "2027-06-30"}]
    for role in ("read", "predict", "audit"):
        refused = ok(post(server, "/outcomes", keys[role], body), 403)
        assert refused["error"] == "forbidden", role
        assert "review" in refused["message"], role
    assert ok(post(server, "/outcomes", None, body), 401)["error"] == "missing_api_key"
    bogus = Key("bogus", "atk_nothing.nothing")
    assert post(server, "/outcomes", bogus, body).status_code == 401
    assert outcomes_of(server.database_url, [known]) == []

    assert ok(post(server, "/outcomes", keys["review"], body))["recorded"] == 1
    both = new_key(server.database_url, "predict-review", "predict", "review")
    assert ok(post(server, "/outcomes", both, body)) == {
        "received": 1,
        "recorded": 0,
        "unchanged": 1,
    }


# --- live performance -------------------------------------------------------------------------


def _utc_day(moment: datetime) -> date:
    return moment.astimezone(UTC).date()


def horizon_label(scored_on: date, facts: Sequence[tuple[str, date]], horizon: int) -> str:
    """The issue's rule, written out: positive if left within [d, d + h], negative if still there
    at d + h (stayed as of a day >= d + h, or left after d + h), excluded if gone before d (and
    not seen since), else pending."""
    end = scored_on + timedelta(days=horizon)
    left = [day for status, day in facts if status == "left"]
    stayed = [day for status, day in facts if status == "stayed"]
    if any(scored_on <= day <= end for day in left):
        return "positive"
    if any(day >= end for day in stayed) or any(day > end for day in left):
        return "negative"
    if any(day < scored_on for day in left) and not any(day >= scored_on for day in stayed):
        return "excluded"
    return "pending"


def _calibration(y: np.ndarray, p: np.ndarray) -> list[tuple[int, float | None, float | None]]:
    bins = np.minimum((p * 10).astype(int), 9)
    table = []
    for b in range(10):
        chosen = bins == b
        n = int(chosen.sum())
        table.append(
            (n, float(p[chosen].mean()) if n else None, float(y[chosen].mean()) if n else None)
        )
    return table


def expected_block(entries: list[tuple[str, float, int]]) -> dict[str, Any]:
    """What a block of /performance must say about (label, probability, decision) entries,
    computed with sklearn."""
    labelled = [e for e in entries if e[0] in ("positive", "negative")]
    y = np.array([int(e[0] == "positive") for e in labelled], dtype=int)
    p = np.array([e[1] for e in labelled], dtype=float)
    decision = np.array([e[2] for e in labelled], dtype=int)
    both = 0 < y.sum() < len(y)
    return {
        "scored": len(entries),
        "labelled": len(labelled),
        "pending": sum(e[0] == "pending" for e in entries),
        "excluded": sum(e[0] == "excluded" for e in entries),
        "positives": int(y.sum()),
        "positive_rate": float(y.mean()) if len(y) else None,
        "mean_probability": float(p.mean()) if len(p) else None,
        "precision": float(precision_score(y, decision)) if decision.sum() else None,
        "recall": float(recall_score(y, decision)) if y.sum() else None,
        "f2": float(fbeta_score(y, decision, beta=2, zero_division=0)) if y.sum() else None,
        "roc_auc": float(roc_auc_score(y, p)) if both else None,
        "average_precision": float(average_precision_score(y, p)) if both else None,
        "brier": float(brier_score_loss(y, p)) if len(y) else None,
        "calibration": _calibration(y, p),
    }


def assert_block(actual: dict[str, Any], expected: dict[str, Any], where: str) -> None:
    for name in ("scored", "labelled", "pending", "excluded", "positives"):
        assert actual[name] == expected[name], (where, name, actual[name], expected[name])
    for name in (
        "positive_rate",
        "mean_probability",
        "precision",
        "recall",
        "f2",
        "roc_auc",
        "average_precision",
        "brier",
    ):
        if expected[name] is None:
            assert actual[name] is None, (where, name, actual[name])
        else:
            assert actual[name] == pytest.approx(expected[name], rel=1e-9, abs=1e-12), (
                where,
                name,
            )
    bins = actual["calibration"]
    assert len(bins) == 10, where
    assert [(b["from"], b["to"]) for b in bins] == [
        (round(i / 10, 2), round((i + 1) / 10, 2)) for i in range(10)
    ], where
    for got, (count, mean_p, observed) in zip(bins, expected["calibration"], strict=True):
        assert got["count"] == count, (where, got)
        assert got["mean_probability"] == pytest.approx(mean_p), (where, got)
        assert got["observed_rate"] == pytest.approx(observed), (where, got)


@dataclass
class Cohorts:
    """Hand-built predictions and outcomes of this test's own employees."""

    tag: str
    threshold: float
    rows: list[PredictionRow]
    facts: dict[int, list[tuple[str, date]]]

    def expected(
        self, horizon: int, since: datetime | None = None, until: datetime | None = None
    ) -> dict[str, Any]:
        latest: dict[tuple[int, str], PredictionRow] = {}
        for row in self.rows:
            if row.model_tag != self.tag or row.employee_id is None:
                continue
            if (since and row.created_at < since) or (until and row.created_at >= until):
                continue
            key = (row.employee_id, f"{_utc_day(row.created_at):%Y-%m}")
            if key not in latest or row.created_at > latest[key].created_at:
                latest[key] = row
        entries: dict[str, list[tuple[str, float, int]]] = defaultdict(list)
        for (employee, month), row in latest.items():
            label = horizon_label(_utc_day(row.created_at), self.facts[employee], horizon)
            entries[month].append((label, row.probability, row.prediction))
        return {
            "overall": expected_block([e for month in entries.values() for e in month]),
            "cohorts": {month: expected_block(rows) for month, rows in entries.items()},
        }


# Scored days of the three cohorts, with edge times: the last half hour of January (UTC) and
# the first of February belong to their own UTC months.
SCORED = {
    "2024-01": [datetime(2024, 1, 5, 9, tzinfo=UTC), datetime(2024, 1, 31, 23, 30, tzinfo=UTC)],
    "2024-02": [datetime(2024, 2, 1, 0, 30, tzinfo=UTC), datetime(2024, 2, 20, 14, tzinfo=UTC)],
    "2024-03": [datetime(2024, 3, 12, 8, tzinfo=UTC)],
}
KINDS = (
    "left_inside",
    "left_on_scored_day",
    "left_on_horizon_end",
    "left_after_end",
    "left_before_scored",
    "stayed_past_end",
    "stayed_at_end",
    "stayed_short",
    "stayed_then_left_inside",
    "no_outcome",
)


def _facts(kind: str, scored_on: date, rng: np.random.Generator) -> list[tuple[str, date]]:
    def day(offset: int) -> date:
        return scored_on + timedelta(days=int(offset))

    return {
        "left_inside": [("left", day(rng.integers(1, 365)))],
        "left_on_scored_day": [("left", day(0))],
        "left_on_horizon_end": [("left", day(365))],
        "left_after_end": [("left", day(rng.integers(366, 500)))],
        "left_before_scored": [("left", day(-rng.integers(1, 40)))],
        "stayed_past_end": [("stayed", day(rng.integers(366, 500)))],
        "stayed_at_end": [("stayed", day(365))],
        "stayed_short": [("stayed", day(rng.integers(0, 365)))],
        "stayed_then_left_inside": [
            ("stayed", day(rng.integers(0, 100))),
            ("left", day(rng.integers(100, 300))),
        ],
        "no_outcome": [],
    }[kind]


@pytest.fixture(scope="module")
def cohorts(server: Service, served: Any) -> Cohorts:
    """About 120 employees scored in 2024's first three months under a tag of their own, some
    twice in a month (the earlier score must not count), some in two months (one row per
    cohort), with outcomes of every kind; plus decoy rows of another tag."""
    rng = np.random.default_rng(14)
    threshold = served.scorer().threshold
    tag, decoy = unique_tag("perf-test"), unique_tag("perf-decoy")
    employees = seed_employees(server.database_url, 120)
    rows: list[PredictionRow] = []
    facts: dict[int, list[tuple[str, date]]] = {}
    months = list(SCORED)
    for index, employee in enumerate(employees):
        kind = KINDS[index % len(KINDS)]
        chosen = sorted(rng.choice(len(months), size=1 + index % 2, replace=False))
        moments = [SCORED[months[m]][rng.integers(len(SCORED[months[m]]))] for m in chosen]
        facts[employee] = _facts(kind, moments[0].date(), rng)
        leaves = kind in ("left_inside", "left_on_scored_day", "left_on_horizon_end")
        for moment in moments:
            probability = float(rng.beta(4, 2) if leaves else rng.beta(2, 4))
            rows.append(
                prediction(tag, moment, probability, employee_id=employee, threshold=threshold)
            )
            if rng.random() < 0.4:  # an earlier score the same month: superseded
                earlier = moment - timedelta(hours=int(rng.integers(1, 6)))
                if earlier.month == moment.month:
                    rows.append(
                        prediction(
                            tag, earlier, 1 - probability, employee_id=employee, threshold=threshold
                        )
                    )
            if rng.random() < 0.2:  # another model's later score: not this tag's
                rows.append(
                    prediction(
                        decoy,
                        moment + timedelta(minutes=5),
                        0.99,
                        employee_id=employee,
                        threshold=threshold,
                    )
                )
    # The data exercises what it should: superseded scores and another tag's later ones.
    assert any(r.model_tag == decoy for r in rows)
    assert len({(r.employee_id, r.created_at.month) for r in rows if r.model_tag == tag}) < sum(
        r.model_tag == tag for r in rows
    )
    write_rows(server.database_url, rows)
    with engine_of(server.database_url) as engine, session_scope(engine) as session:
        record_outcomes(
            session,
            [
                OutcomeFact(employee, "left" if status == "left" else "stayed", day)
                for employee, items in facts.items()
                for status, day in items
            ],
            source="tests",
            client=None,
        )
    return Cohorts(tag, threshold, rows, facts)


def _sane(expected: dict[str, Any]) -> None:
    """The hand-built data exercises what it should: every kind of label, in every cohort."""
    for block in [expected["overall"], *expected["cohorts"].values()]:
        assert block["positives"] >= 3 and block["labelled"] - block["positives"] >= 3, block
        assert block["pending"] >= 2 and block["excluded"] >= 1, block
        assert block["precision"] is not None and block["roc_auc"] is not None, block


@pytest.mark.parametrize("horizon", [365, 90])
def test_performance_equals_sklearn_on_the_same_rows(server, keys, cohorts, served, horizon):
    params: dict[str, Any] = {"model_tag": cohorts.tag}
    if horizon != 365:
        params["horizon_days"] = horizon
    answer = ok(get(server, "/performance", keys["read"], **params))
    expected = cohorts.expected(horizon)
    if horizon == 365:
        _sane(expected)

    assert answer["horizon_days"] == horizon
    assert answer["threshold"] == pytest.approx(cohorts.threshold)
    assert_block(answer["overall"], expected["overall"], "overall")
    assert [c["cohort"] for c in answer["cohorts"]] == sorted(expected["cohorts"])
    for cohort in answer["cohorts"]:
        assert_block(cohort, expected["cohorts"][cohort["cohort"]], cohort["cohort"])

    training = served.metadata["metrics"]["out_of_fold"]
    for name in ("n", "positive_rate", "precision", "recall", "f2", "roc_auc", "brier"):
        assert answer["training"][name] == pytest.approx(training[name]), name
    assert answer["training"]["average_precision"] == pytest.approx(training["average_precision"])
    assert answer["training"]["calibration"] == served.metadata["metrics"]["calibration"]


def test_performance_window_selects_rows_by_time(server, keys, cohorts):
    since = datetime(2024, 2, 1, tzinfo=UTC)
    until = datetime(2024, 3, 1, tzinfo=UTC)
    expected = cohorts.expected(365, since, until)
    assert list(expected["cohorts"]) == ["2024-02"]

    def performance(**window: str) -> dict[str, Any]:
        return ok(get(server, "/performance", keys["read"], model_tag=cohorts.tag, **window))

    answer = performance(since=since.isoformat(), until=until.isoformat())
    assert_block(answer["overall"], expected["overall"], "window")
    assert [c["cohort"] for c in answer["cohorts"]] == ["2024-02"]
    # The same instants spelled in another offset select the same rows (the window starts at
    # 00:00 UTC, and a row was scored at 00:30 UTC).
    paris = timezone(timedelta(hours=2))
    same = performance(since=since.astimezone(paris).isoformat(), until=until.isoformat())
    assert same["overall"]["scored"] == expected["overall"]["scored"]
    assert same == answer


def test_performance_of_a_tag_without_rows_is_empty_not_an_error(server, keys):
    answer = ok(get(server, "/performance", keys["read"], model_tag=unique_tag("nothing")))
    assert answer["cohorts"] == []
    overall = answer["overall"]
    assert (overall["scored"], overall["labelled"], overall["pending"]) == (0, 0, 0)
    for name in ("precision", "recall", "f2", "roc_auc", "average_precision", "brier"):
        assert overall[name] is None, name
    assert answer["training"] is not None


@pytest.mark.parametrize(
    "params",
    [
        {"horizon_days": 0},
        {"horizon_days": 3651},
        {"horizon_days": "a year"},
        {"since": "yesterday"},
        {"model_tag": "not a tag!"},
    ],
)
def test_performance_refuses_bad_parameters(server, keys, params):
    error = ok(get(server, "/performance", keys["read"], **params), 422)
    assert [d["field"] for d in error["detail"]] == [f"query.{next(iter(params))}"]


# --- drift ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory, served: Any) -> dict[str, Sample]:
    """Two unshifted generated samples of 1,000 employees (seeds the model never saw)."""
    return scored_samples(tmp_path_factory.mktemp("drift"), served, 1000, {"early": 31, "late": 32})


def statuses(report: dict[str, Any]) -> dict[str, str]:
    return {f["feature"]: f["status"] for f in report["features"]}


def test_drift_stable_then_two_shifted_features(server, keys, samples, served):
    """One tag: an unshifted sample 20 days ago, the shifted one 2 days ago; the window picks."""
    tag, threshold = unique_tag("drift-test"), served.scorer().threshold
    now = datetime.now(UTC)
    early, late = samples["early"], shifted(samples["late"])
    write_rows(
        server.database_url,
        anonymous_rows(tag, early, now - timedelta(days=20), threshold)
        + anonymous_rows(tag, late, now - timedelta(days=2), threshold),
    )
    reference = served.metadata["reference"]
    middle = (now - timedelta(days=10)).isoformat()

    stable = ok(get(server, "/drift", keys["read"], model_tag=tag, until=middle))
    assert stable["n"] == len(early.inputs)
    assert stable["status"] == "stable", [f for f in stable["features"] if f["status"] != "stable"]
    assert [f["feature"] for f in stable["features"]] == list(reference["features"])
    for feature in stable["features"]:
        assert feature["status"] == "stable", feature
        assert 0 <= feature["psi"] < 0.1, feature
        assert 0 <= feature["p_value"] <= 1, feature
    assert stable["score"]["n"] == len(early.inputs)
    assert stable["score"]["psi"] is not None
    rates = stable["positive_rate"]
    assert rates["training"] == pytest.approx(reference["positive_rate"])
    assert rates["live_mean_probability"] == pytest.approx(np.mean(early.probabilities))
    assert rates["live_predicted_positive_rate"] == pytest.approx(
        np.mean([p >= threshold for p in early.probabilities])
    )

    drifted = ok(get(server, "/drift", keys["read"], model_tag=tag, since=middle))
    assert drifted["n"] == len(late.inputs)
    assert drifted["status"] == "drift"
    flagged = {name for name, status in statuses(drifted).items() if status == "drift"}
    assert flagged == SHIFTED
    for feature in drifted["features"]:
        if feature["feature"] in SHIFTED:
            assert feature["psi"] >= 0.25 and feature["p_value"] < 0.001, feature
        else:
            assert feature["status"] == "stable", feature


def test_drift_below_the_minimum_sample_gives_no_verdict(server, keys, samples, served):
    """150 anonymous rows and 10 employees scored 30 times each: 160 in the window, not 450."""
    tag, threshold = unique_tag("drift-small"), served.scorer().threshold
    now = datetime.now(UTC)
    sample = shifted(samples["early"])  # a verdict would be drift
    rows = anonymous_rows(
        tag, Sample(sample.inputs[:150], sample.probabilities[:150]), now, threshold
    )
    for employee, row, p in zip(
        seed_employees(server.database_url, 10),
        sample.inputs[150:],
        sample.probabilities[150:],
        strict=False,
    ):
        rows += [
            prediction(
                tag,
                now - timedelta(minutes=k),
                p,
                employee_id=employee,
                threshold=threshold,
                input=row,
            )
            for k in range(30)
        ]
    write_rows(server.database_url, rows)

    report = ok(get(server, "/drift", keys["read"], model_tag=tag))
    assert report["n"] == 160
    assert report["status"] == "insufficient_data"
    for feature in report["features"]:
        assert feature["status"] == "insufficient_data", feature
        assert feature["psi"] is None and feature["p_value"] is None, feature
    assert report["score"]["status"] == "insufficient_data"
    assert report["score"]["psi"] is None
    assert report["min_rows"] == MIN_ROWS

    empty = ok(get(server, "/drift", keys["read"], model_tag=unique_tag("nothing")))
    assert empty["n"] == 0 and empty["status"] == "insufficient_data"


def test_drift_refuses_bad_parameters(server, keys):
    for params in ({"since": "last week"}, {"until": "2024-13-01"}, {"model_tag": "a b"}):
        error = ok(get(server, "/drift", keys["read"], **params), 422)
        assert [d["field"] for d in error["detail"]] == [f"query.{next(iter(params))}"]


# --- the at-risk list -------------------------------------------------------------------------


@dataclass
class Scored:
    employee_id: int
    row: PredictionRow  # the latest, the one the list must show
    band: str


def _band(probability: float, threshold: float) -> str:
    if probability >= max(threshold, 0.5):
        return "high"
    return "medium" if probability >= threshold else "low"


@pytest.fixture(scope="module")
def at_risk_rows(server: Service) -> tuple[str, list[Scored], dict[int, PredictionRow]]:
    """Twelve employees under a tag of their own: departments and jobs, bands from each row's
    own threshold, an older higher score (never shown) for some."""
    tag = unique_tag("atrisk-test")
    now = datetime.now(UTC).replace(microsecond=0)
    layout = [  # departement, poste, probability, threshold
        ("Consulting", "Consultant", 0.91, 0.3),
        ("Consulting", "Manager", 0.77, 0.3),
        ("Commercial", "Manager", 0.62, 0.3),
        ("Commercial", "Cadre Commercial", 0.45, 0.3),
        ("Consulting", "Consultant", 0.41, 0.3),
        ("Ressources Humaines", "Manager", 0.33, 0.3),
        ("Consulting", "Tech Lead", 0.55, 0.6),  # above 0.5 but below its own threshold: low
        ("Commercial", "Manager", 0.12, 0.3),
        ("Consulting", "Manager", 0.62, 0.3),  # a tie with the third: by employee id
        ("Consulting", "Consultant", 0.05, 0.3),
        ("Commercial", "Cadre Commercial", 0.29, 0.3),
        ("Consulting", "Tech Lead", 0.68, 0.6),
    ]
    employees = seed_employees(server.database_url, len(layout))
    rows: list[PredictionRow] = []
    shown: list[Scored] = []
    older: dict[int, PredictionRow] = {}
    for i, (employee, (departement, poste, p, threshold)) in enumerate(
        zip(employees, layout, strict=True)
    ):
        factors = [
            {
                "feature": "age",
                "value": 30 + i,
                "label": "Âge",
                "contribution": 0.1 * i,
                "direction": "raises",
            }
        ]
        inputs = features(employee, departement=departement, poste=poste)
        latest = prediction(
            tag,
            now - timedelta(hours=1, minutes=i),
            p,
            employee_id=employee,
            threshold=threshold,
            input=inputs,
            top_factors=factors,
        )
        rows.append(latest)
        shown.append(Scored(employee, latest, _band(p, threshold)))
        if i % 3 == 0:  # scored higher, earlier, in another department: superseded
            earlier = prediction(
                tag,
                now - timedelta(days=3),
                0.99,
                employee_id=employee,
                threshold=threshold,
                input=features(employee, departement="Ressources Humaines", poste="Manager"),
            )
            rows.append(earlier)
            older[employee] = earlier
    write_rows(server.database_url, rows)
    shown.sort(key=lambda s: (-s.row.probability, s.employee_id))
    return tag, shown, older


def _ids(page: dict[str, Any]) -> list[int]:
    return [item["employee_id"] for item in page["items"]]


def test_at_risk_is_the_latest_score_per_employee_highest_first(server, keys, at_risk_rows):
    tag, shown, older = at_risk_rows
    page = ok(get(server, "/employees/at-risk", keys["read"], model_tag=tag))
    assert page["total"] == len(shown)
    assert (page["offset"], page["limit"]) == (0, 50)
    assert _ids(page) == [s.employee_id for s in shown]
    for item, scored in zip(page["items"], shown, strict=True):
        row = scored.row
        assert item["prediction_id"] == str(row.id)
        assert item["probability"] == pytest.approx(row.probability)
        assert item["threshold"] == pytest.approx(row.threshold)
        assert item["risk_band"] == scored.band
        assert item["model_tag"] == tag
        assert item["departement"] == row.input["departement"]
        assert item["poste"] == row.input["poste"]
        assert item["top_factors"] == row.top_factors
        assert datetime.fromisoformat(item["scored_at"]) == row.created_at
        assert item["latest_review"] is None
    # An older, higher score is never what the list shows.
    assert {str(r.id) for r in older.values()}.isdisjoint(i["prediction_id"] for i in page["items"])
    assert max(i["probability"] for i in page["items"]) < 0.99


@pytest.mark.parametrize(
    "filters",
    [
        {"departement": "Consulting"},
        {"departement": "Ressources Humaines"},  # only one employee's latest score is there
        {"poste": "Manager"},
        {"departement": "Commercial", "poste": "Manager"},
        {"band": "high"},
        {"band": "medium"},
        {"band": "low"},
        {"band": "high", "departement": "Consulting"},
        {"departement": "Finance"},
    ],
)
def test_at_risk_filters(server, keys, at_risk_rows, filters):
    tag, shown, _ = at_risk_rows

    def matches(scored: Scored) -> bool:
        return all(
            (scored.band if name == "band" else scored.row.input[name]) == value
            for name, value in filters.items()
        )

    expected = [s.employee_id for s in shown if matches(s)]
    page = ok(get(server, "/employees/at-risk", keys["read"], model_tag=tag, **filters))
    assert _ids(page) == expected
    assert page["total"] == len(expected)


def test_at_risk_pages(server, keys, at_risk_rows):
    tag, shown, _ = at_risk_rows
    pages = [
        ok(get(server, "/employees/at-risk", keys["read"], model_tag=tag, limit=5, offset=o))
        for o in (0, 5, 10, 15)
    ]
    assert [p["total"] for p in pages] == [len(shown)] * 4
    assert [len(p["items"]) for p in pages] == [5, 5, 2, 0]
    assert [i for p in pages for i in _ids(p)] == [s.employee_id for s in shown]
    for params in ({"limit": 0}, {"limit": 501}, {"offset": -1}, {"band": "extreme"}):
        error = ok(get(server, "/employees/at-risk", keys["read"], **params), 422)
        assert [d["field"] for d in error["detail"]] == [f"query.{next(iter(params))}"]


def test_at_risk_shows_the_latest_review_and_logs_the_read(server, keys, at_risk_rows):
    tag, shown, older = at_risk_rows
    reviewer = keys["review"]
    top, second = shown[0], shown[1]
    for decision, note in (("agree", "first look"), ("disagree", "after the interview")):
        ok(
            post(
                server,
                f"/predictions/{top.row.id}/reviews",
                reviewer,
                {"decision": decision, "note": note},
            ),
            201,
        )
    superseded = older.get(second.employee_id)
    if superseded is not None:  # a review of an older score is not the latest score's review
        ok(
            post(server, f"/predictions/{superseded.id}/reviews", reviewer, {"decision": "agree"}),
            201,
        )

    reader = new_key(server.database_url, "at-risk-reader", "read")
    page = ok(get(server, "/employees/at-risk", reader, model_tag=tag, limit=3))
    review = page["items"][0]["latest_review"]
    assert review["decision"] == "disagree" and review["note"] == "after the interview"
    assert review["prediction_id"] == str(top.row.id)
    assert review["reviewer"] == reviewer.name
    assert page["items"][1]["employee_id"] == second.employee_id
    assert page["items"][1]["latest_review"] is None

    def events() -> dict[str, Any]:
        return ok(get(server, "/audit/access", keys["audit"], client=reader.name))

    logged = poll(events, lambda page: page["total"] >= 1, ACCESS_LANDS_WITHIN)
    assert logged["total"] == 1, logged
    [event] = logged["items"]
    assert event["route"] == "/employees/at-risk"
    assert event["employee_ids"] == _ids(page)
    assert event["employee_count"] == 3
    assert event["query"] == {"model_tag": tag, "limit": "3"}

    # An empty page names nobody: nothing to log (a later read that names someone is).
    quiet = new_key(server.database_url, "at-risk-quiet", "read")
    assert ok(get(server, "/employees/at-risk", quiet, model_tag=unique_tag("x")))["items"] == []
    ok(get(server, "/employees/at-risk", quiet, model_tag=tag, limit=1))

    def quiet_events() -> dict[str, Any]:
        return ok(get(server, "/audit/access", keys["audit"], client=quiet.name))

    poll(quiet_events, lambda page: page["total"] >= 1, ACCESS_LANDS_WITHIN)
    time.sleep(FLUSH)  # the other worker's flush, had it logged the empty read
    assert [e["employee_count"] for e in quiet_events()["items"]] == [1]


def test_at_risk_bands_match_what_predict_answered(server, keys):
    """A real score of the served model shows in the list as /predict_by_id answered it."""
    [employee] = seed_employees(server.database_url, 1)
    answer = ok(post(server, "/predict_by_id", keys["predict"], {"employee_id": employee}))
    found = None
    offset = 0
    while found is None:
        page = ok(
            get(
                server,
                "/employees/at-risk",
                keys["read"],
                model_tag=answer["model_tag"],
                limit=500,
                offset=offset,
            )
        )
        found = next((i for i in page["items"] if i["employee_id"] == employee), None)
        if not page["items"]:
            break
        offset += 500
    assert found is not None
    assert found["prediction_id"] == answer["prediction_id"]
    assert found["probability"] == pytest.approx(answer["probability"])
    assert found["risk_band"] == answer["risk_band"]
    assert found["threshold"] == pytest.approx(answer["threshold"])
    assert found["top_factors"] == answer["top_factors"]


# --- roles ------------------------------------------------------------------------------------

READS = ("/performance", "/drift", "/employees/at-risk")


@pytest.mark.parametrize("path", READS)
def test_monitoring_reads_take_any_role_and_need_a_key(server, keys, path):
    for role, key in keys.items():
        assert get(server, path, key).status_code == 200, (path, role)
    missing = ok(get(server, path, None), 401)
    assert missing["error"] == "missing_api_key"
    assert get(server, path, Key("bogus", "atk_nothing.nothing")).status_code == 401
    revoked = Key("revoked", server.keys.revoked)
    assert get(server, path, revoked).status_code == 401
