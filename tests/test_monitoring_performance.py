"""Live performance: the horizon rule, cohorts, and every figure against sklearn."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

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

from monitoring.performance import horizon_label, performance_report
from training.metrics import calibration_table

H = 365
JAN, FEB = date(2025, 1, 10), date(2025, 2, 20)

# How each hand-built row's employee turns out, and the label that must follow.
KINDS = {
    "left_inside": 1,  # left within [d, d + H]
    "left_on_last_day": 1,  # left on d + H exactly
    "stayed_past_end": 0,  # stayed as of d + H or later
    "left_after_end": 0,  # still there at the horizon's end, left later
    "stayed_not_long_enough": None,  # stayed as of a day before d + H: pending
    "no_outcome": None,  # pending
    "left_before_scored": "excluded",
}


def _outcome(kind: str, employee_id: int, scored_on: date) -> list[dict]:
    end = scored_on + timedelta(days=H)
    fact = {
        "left_inside": {"status": "left", "left_on": scored_on + timedelta(days=100)},
        "left_on_last_day": {"status": "left", "left_on": end},
        "stayed_past_end": {"status": "stayed", "as_of": end + timedelta(days=20)},
        "left_after_end": {"status": "left", "left_on": end + timedelta(days=1)},
        "stayed_not_long_enough": {"status": "stayed", "as_of": end - timedelta(days=1)},
        "no_outcome": None,
        "left_before_scored": {"status": "left", "left_on": scored_on - timedelta(days=1)},
    }[kind]
    return [] if fact is None else [{"employee_id": employee_id, **fact}]


def _build(seed: int = 0, per_kind: int = 6):
    """Rows of two cohorts, outcomes, and the labelled rows' (y, probability, decision)."""
    rng = np.random.default_rng(seed)
    rows, outcomes, expected = [], [], {"2025-01": [], "2025-02": []}
    employee = 0
    for scored_on, cohort in ((JAN, "2025-01"), (FEB, "2025-02")):
        for kind, label in KINDS.items():
            for _ in range(per_kind):
                employee += 1
                probability = float(rng.uniform(0.05, 0.95))
                # Class-correlated scores so the metrics are informative, not 0.5.
                if label == 1:
                    probability = min(0.99, probability + 0.2)
                created = datetime.combine(scored_on, datetime.min.time(), UTC) + timedelta(hours=9)
                rows.append(
                    {
                        "employee_id": employee,
                        "created_at": created,
                        "probability": probability,
                        "prediction": int(probability >= 0.5),
                        "threshold": 0.5,
                    }
                )
                outcomes += _outcome(kind, employee, scored_on)
                if label in (0, 1):
                    expected[cohort].append((label, probability, int(probability >= 0.5)))
    return rows, outcomes, expected


def _sklearn(labelled: list[tuple[int, float, int]]) -> dict:
    y = np.array([t[0] for t in labelled])
    p = np.array([t[1] for t in labelled])
    d = np.array([t[2] for t in labelled])
    return {
        "labelled": len(y),
        "positives": int(y.sum()),
        "positive_rate": y.mean(),
        "mean_probability": p.mean(),
        "precision": precision_score(y, d, zero_division=0),
        "recall": recall_score(y, d, zero_division=0),
        "f2": fbeta_score(y, d, beta=2, zero_division=0),
        "roc_auc": roc_auc_score(y, p),
        "average_precision": average_precision_score(y, p),
        "brier": brier_score_loss(y, p),
        "calibration": calibration_table(y, p),
    }


def _assert_matches(block: dict, expected: dict) -> None:
    for key, value in expected.items():
        if key == "calibration":
            assert block[key] == [
                {k: pytest.approx(v) if isinstance(v, float) else v for k, v in row.items()}
                for row in value
            ]
        else:
            assert block[key] == pytest.approx(value), key


def test_figures_equal_sklearn_on_the_labelled_rows():
    rows, outcomes, expected = _build()
    report = performance_report(rows, outcomes, horizon_days=H, threshold=0.5)

    assert report["horizon_days"] == H
    assert [c["cohort"] for c in report["cohorts"]] == ["2025-01", "2025-02"]
    for block in report["cohorts"]:
        assert block["scored"] == 6 * len(KINDS)
        assert block["pending"] == 12  # stayed not long enough + no outcome
        assert block["excluded"] == 6
        _assert_matches(block, _sklearn(expected[block["cohort"]]))
    overall = report["overall"]
    assert (overall["scored"], overall["pending"], overall["excluded"]) == (84, 24, 12)
    _assert_matches(overall, _sklearn(expected["2025-01"] + expected["2025-02"]))
    assert sum(row["count"] for row in overall["calibration"]) == overall["labelled"] == 48
    assert report["training"] is None


def test_a_shorter_horizon_turns_pending_rows_into_labels():
    rows, outcomes, _ = _build()
    short = performance_report(rows, outcomes, horizon_days=30, threshold=0.5)["overall"]
    # With 30 days, every stayed fact is past the end and every departure after d is too late.
    assert (short["pending"], short["excluded"], short["positives"]) == (12, 12, 0)
    assert short["labelled"] == 60
    assert short["roc_auc"] is None and short["recall"] is None and short["f2"] is None


@pytest.mark.parametrize(
    ("facts", "label"),
    [
        ([], "pending"),
        ([{"status": "left", "left_on": date(2025, 1, 10)}], "positive"),  # the scored day
        ([{"status": "left", "left_on": date(2026, 1, 10)}], "positive"),  # d + 365
        ([{"status": "left", "left_on": date(2026, 1, 11)}], "negative"),
        ([{"status": "stayed", "as_of": date(2026, 1, 10)}], "negative"),
        ([{"status": "stayed", "as_of": date(2026, 1, 9)}], "pending"),
        ([{"status": "left", "left_on": date(2025, 1, 9)}], "excluded"),
        (
            [
                {"status": "left", "left_on": date(2024, 6, 1)},
                {"status": "stayed", "as_of": date(2025, 3, 1)},
            ],
            "pending",  # left, came back: known to be there after d
        ),
        (
            [
                {"status": "stayed", "as_of": date(2026, 6, 1)},
                {"status": "left", "left_on": date(2025, 5, 1)},
            ],
            "positive",  # a departure in the window wins
        ),
        ([{"status": "left", "left_on": "2025-05-01"}], "positive"),  # ISO strings
    ],
)
def test_horizon_rule(facts, label):
    assert horizon_label(date(2025, 1, 10), facts, 365) == label


def test_unknown_status_is_an_error():
    with pytest.raises(ValueError, match="unknown outcome status"):
        horizon_label(date(2025, 1, 10), [{"status": "fired"}], 365)


def test_cohort_and_scored_day_are_utc():
    late_evening = datetime(2025, 1, 31, 20, 0, tzinfo=timezone(timedelta(hours=-5)))
    rows = [{"employee_id": 1, "created_at": late_evening, "probability": 0.7}]
    # Scored on 2025-02-01 (UTC): a departure on 2025-01-31 is before it.
    outcomes = [{"employee_id": 1, "status": "left", "left_on": date(2025, 1, 31)}]
    report = performance_report(rows, outcomes, threshold=0.5)
    assert [c["cohort"] for c in report["cohorts"]] == ["2025-02"]
    assert report["overall"]["excluded"] == 1


def test_single_class_gives_nulls_not_errors():
    rows = [
        {
            "employee_id": i,
            "created_at": datetime(2025, 3, 1, tzinfo=UTC),
            "probability": p,
            "prediction": int(p >= 0.5),
        }
        for i, p in enumerate([0.2, 0.4, 0.6], start=1)
    ]
    stayed = [{"employee_id": i, "status": "stayed", "as_of": date(2026, 3, 1)} for i in (1, 2, 3)]
    block = performance_report(rows, stayed, threshold=0.5)["overall"]
    assert (block["labelled"], block["positives"]) == (3, 0)
    assert block["roc_auc"] is None
    assert block["average_precision"] is None
    assert block["recall"] is None and block["f2"] is None
    assert block["precision"] == 0.0  # one flagged, wrongly
    assert block["brier"] == pytest.approx(brier_score_loss([0, 0, 0], [0.2, 0.4, 0.6]))

    left = [{"employee_id": i, "status": "left", "left_on": date(2025, 6, 1)} for i in (1, 2)]
    block = performance_report(rows[:2], left, threshold=0.5)["overall"]
    assert block["precision"] is None  # nobody flagged
    assert (block["recall"], block["f2"]) == (0.0, 0.0)
    assert block["roc_auc"] is None


def test_nothing_labelled_or_nothing_at_all():
    rows = [{"employee_id": 9, "created_at": datetime(2025, 3, 1, tzinfo=UTC), "probability": 0.3}]
    for given in (rows, []):
        block = performance_report(given, [], threshold=0.5)["overall"]
        assert block["labelled"] == 0 and block["pending"] == len(given)
        assert all(
            block[k] is None
            for k in ("precision", "recall", "f2", "roc_auc", "average_precision", "brier")
        )
        assert [b["count"] for b in block["calibration"]] == [0] * 10


def test_decision_uses_the_served_prediction_then_the_row_threshold_then_the_argument():
    created = datetime(2025, 3, 1, tzinfo=UTC)
    rows = [
        # stored prediction 1 although 0.3 < 0.5: what the caller was told counts.
        {"employee_id": 1, "created_at": created, "probability": 0.3, "prediction": 1},
        # no prediction, own threshold 0.2: flagged.
        {"employee_id": 2, "created_at": created, "probability": 0.25, "threshold": 0.2},
        # neither: the argument (0.5) decides: not flagged.
        {"employee_id": 3, "created_at": created, "probability": 0.45},
    ]
    outcomes = [
        {"employee_id": i, "status": "left", "left_on": date(2025, 4, 1)} for i in (1, 2, 3)
    ]
    block = performance_report(rows, outcomes, threshold=0.5)["overall"]
    assert block["recall"] == pytest.approx(2 / 3)
    assert block["precision"] == 1.0


def test_training_figures_come_from_the_metadata_metrics():
    metrics = {
        "out_of_fold": {
            "n": 1176,
            "roc_auc": 0.81,
            "average_precision": 0.52,
            "brier": 0.11,
            "precision": 0.4,
            "recall": 0.7,
            "f2": 0.61,
            "positive_rate": 0.16,
            "mean_probability": 0.17,
            "threshold": 0.21,
            "log_loss": 0.35,
        },
        "calibration": [{"from": 0.0, "to": 0.1, "count": 3}],
    }
    training = performance_report([], [], threshold=0.21, training=metrics)["training"]
    assert training == {
        **{k: v for k, v in metrics["out_of_fold"].items() if k != "log_loss"},
        "calibration": metrics["calibration"],
    }
    alone = performance_report([], [], threshold=0.21, training=metrics["out_of_fold"])
    assert alone["training"]["roc_auc"] == 0.81 and alone["training"]["calibration"] is None
