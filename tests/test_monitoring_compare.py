"""Champion against shadow challenger: every figure against a direct computation (sklearn,
scipy, counts by hand), the bootstrap intervals, the promotion rule, and `attrition compare`
(its persistence reads replaced by the hand-built pairs: the end-to-end run on a database
is the serving side's test).
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone

import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

import persistence.monitoring as store
import persistence.shadow as shadow
from cli.main import main as attrition
from monitoring.compare import FLIPS, RULE, _resampled, compare_report
from settings import get_settings

JAN = datetime(2025, 1, 10, 9, 0, tzinfo=UTC)
FEB = datetime(2025, 2, 12, 9, 0, tzinfo=UTC)
CHAMPION, CHALLENGER = "attrition_pipeline:champion", "attrition_pipeline:challenger"
T_CHAMPION, T_CHALLENGER = 0.3, 0.6  # bands: champion high from 0.5, challenger from 0.6

# (employee, scored at, champion p, stored champion prediction or None, challenger p,
#  decisions agree?, band change or None, label in the outcome figures: 1, 0 or None = not
#  there / pending / excluded), all worked out by hand.
TABLE = [
    (3, JAN - timedelta(hours=2), 0.90, None, 0.10, False, "high->low", None),  # superseded
    (1, JAN, 0.10, None, 0.05, True, None, 1),
    (2, JAN, 0.35, None, 0.20, False, "medium->low", 0),
    (3, JAN, 0.60, None, 0.70, True, None, 1),
    (4, JAN, 0.20, None, 0.65, False, "low->high", None),  # pending: no outcome
    (5, JAN, 0.55, None, 0.30, False, "high->low", None),  # pending: stayed, too early
    (6, JAN, 0.45, None, 0.62, True, "medium->high", 1),
    (7, JAN, 0.05, None, 0.10, True, None, 0),
    (8, JAN, 0.80, None, 0.90, True, None, None),  # excluded: left before scored
    (9, JAN, 0.30, None, 0.59, False, "medium->low", 0),  # both on a band's edge
    (10, JAN, 0.50, None, 0.60, True, None, 0),
    (11, JAN, 0.40, 0, 0.40, True, "medium->low", 1),  # the stored prediction wins
    (None, JAN, 0.70, None, 0.20, False, "high->low", None),  # anonymous
    (1, FEB, 0.15, None, 0.12, True, None, 1),  # another month: counts again
]
OUTCOMES = [
    {"employee_id": 1, "status": "left", "left_on": date(2025, 3, 1)},
    {"employee_id": 2, "status": "stayed", "as_of": date(2026, 2, 1)},
    {"employee_id": 3, "status": "left", "left_on": date(2025, 6, 1)},
    {"employee_id": 5, "status": "stayed", "as_of": date(2025, 6, 1)},
    {"employee_id": 6, "status": "left", "left_on": date(2025, 5, 1)},
    {"employee_id": 7, "status": "stayed", "as_of": date(2026, 1, 20)},
    {"employee_id": 8, "status": "left", "left_on": date(2024, 12, 1)},
    {"employee_id": 9, "status": "left", "left_on": date(2026, 3, 1)},
    {"employee_id": 10, "status": "stayed", "as_of": date(2026, 1, 10)},
    {"employee_id": 11, "status": "left", "left_on": date(2025, 1, 10)},
]


def pair(employee, created_at, champion, challenger, *, prediction=None, tags=None, t=None):
    champion_tag, challenger_tag = tags or (CHAMPION, CHALLENGER)
    t_champion, t_challenger = t or (T_CHAMPION, T_CHALLENGER)
    return {
        "employee_id": employee,
        "created_at": created_at,
        "champion": {
            "model_tag": champion_tag,
            "probability": champion,
            "prediction": prediction,
            "threshold": t_champion,
        },
        "challenger": {
            "model_tag": challenger_tag,
            "probability": challenger,
            "prediction": None,
            "threshold": t_challenger,
        },
    }


def table_pairs() -> list[dict]:
    return [pair(e, at, p1, p2, prediction=d) for e, at, p1, d, p2, *_ in TABLE]


def synthetic(n, *, seed, challenger="good", rate=0.2):
    """`n` labelled pairs. good: the challenger tracks the truth, the champion is random;
    equal: both random, the same; overconfident: the challenger ranks as well as good but
    pushed towards 1, the champion ranks worse but is calibrated."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < rate).astype(int)
    good = np.clip(0.25 + 0.4 * y + rng.normal(0, 0.15, n), 0.01, 0.99)
    weak = np.clip(rate + 0.15 * y + rng.normal(0, 0.15, n), 0.01, 0.99)
    random = rng.uniform(0.01, 0.99, n)
    first, second = {
        "good": (random, good),
        "equal": (random, random),
        "overconfident": (weak, good**0.1),
    }[challenger]
    pairs = [pair(i, JAN, float(first[i]), float(second[i]), t=(0.5, 0.5)) for i in range(n)]
    outcomes = [
        {"employee_id": i, "status": "left", "left_on": date(2025, 4, 1)}
        if y[i]
        else {"employee_id": i, "status": "stayed", "as_of": date(2026, 2, 1)}
        for i in range(n)
    ]
    return pairs, outcomes, y, first, second


# --- figures against direct computations ----------------------------------------------------


def test_agreement_figures_equal_a_direct_computation():
    report = compare_report(table_pairs(), OUTCOMES, bootstrap=0)
    champion = np.array([row[2] for row in TABLE])
    challenger = np.array([row[4] for row in TABLE])

    assert report["n"] == len(TABLE) == 14
    assert (report["champion_tag"], report["challenger_tag"]) == (CHAMPION, CHALLENGER)
    assert report["agreement"] == pytest.approx(sum(row[5] for row in TABLE) / 14) == 8 / 14
    assert report["mean_abs_diff"] == pytest.approx(np.mean(np.abs(challenger - champion)))
    assert report["spearman"] == pytest.approx(spearmanr(champion, challenger).statistic)
    expected = dict.fromkeys(FLIPS, 0)
    for row in TABLE:
        if row[6]:
            expected[row[6]] += 1
    assert report["flips"] == expected
    assert expected == {
        "low->medium": 0,
        "low->high": 1,
        "medium->low": 3,
        "medium->high": 1,
        "high->low": 3,
        "high->medium": 0,
    }


def test_outcome_figures_equal_sklearn_on_the_latest_labelled_pairs():
    report = compare_report(table_pairs(), OUTCOMES, bootstrap=0)
    labelled = [row for row in TABLE if row[7] is not None]
    y = np.array([row[7] for row in labelled])
    champion = np.array([row[2] for row in labelled])
    challenger = np.array([row[4] for row in labelled])

    # 12 (employee, month) pairs; 2 pending (4, 5), 1 excluded (8); anonymous left out.
    assert report["labelled"] == {"rows": 12, "n": 9, "positives": 5, "pending": 2, "excluded": 1}
    assert report["horizon_days"] == 365
    metrics = report["metrics"]
    for side, p in (("champion", champion), ("challenger", challenger)):
        assert metrics[side]["roc_auc"]["value"] == pytest.approx(roc_auc_score(y, p))
        assert metrics[side]["average_precision"]["value"] == pytest.approx(
            average_precision_score(y, p)
        )
        assert metrics[side]["brier"]["value"] == pytest.approx(brier_score_loss(y, p))
    for name, score in (
        ("roc_auc", roc_auc_score),
        ("average_precision", average_precision_score),
        ("brier", brier_score_loss),
    ):
        assert metrics["difference"][name]["value"] == pytest.approx(
            score(y, challenger) - score(y, champion)
        )
        for side in ("champion", "challenger", "difference"):  # bootstrap=0: no interval
            assert metrics[side][name]["low"] is None and metrics[side][name]["high"] is None


def test_a_shorter_horizon_labels_fewer_rows():
    short = compare_report(table_pairs(), OUTCOMES, horizon_days=30, bootstrap=0)
    # 30 days: positive only employee 11 (left on the scored day) and employee 1's February
    # row (left 17 days later); every stayed fact and the other departures are past the end
    # (negative, employee 5 included); employees 4 and 8 as before.
    assert short["horizon_days"] == 30
    assert short["labelled"] == {"rows": 12, "n": 10, "positives": 2, "pending": 1, "excluded": 1}


def test_scored_day_and_month_are_utc():
    evening = datetime(2025, 1, 31, 20, 0, tzinfo=timezone(timedelta(hours=-5)))  # Feb 1 UTC
    pairs = [
        pair(1, datetime(2025, 2, 3, 9, 0), 0.2, 0.3),  # naive: UTC, February
        pair(1, evening, 0.9, 0.8),  # the same month, earlier: superseded
        pair(2, evening.isoformat(), 0.4, 0.5),  # ISO string
    ]
    outcomes = [
        {"employee_id": 1, "status": "left", "left_on": date(2025, 5, 1)},
        {"employee_id": 2, "status": "left", "left_on": date(2025, 1, 31)},  # before Feb 1
    ]
    report = compare_report(pairs, outcomes, bootstrap=0)
    assert report["labelled"] == {"rows": 2, "n": 1, "positives": 1, "pending": 0, "excluded": 1}
    assert report["metrics"]["champion"]["brier"]["value"] == pytest.approx(0.8**2)


def test_several_tags_are_listed():
    pairs = [
        pair(1, JAN, 0.2, 0.3, tags=("m:2", "c:1")),
        pair(2, JAN, 0.2, 0.3, tags=("m:1", "c:1")),
    ]
    report = compare_report(pairs, [], bootstrap=0)
    assert (report["champion_tag"], report["challenger_tag"]) == ("m:1, m:2", "c:1")


def test_undefined_figures_are_null_not_errors():
    empty = compare_report([], [], bootstrap=100)
    assert empty["n"] == 0
    assert empty["champion_tag"] is None and empty["challenger_tag"] is None
    assert empty["agreement"] is None and empty["mean_abs_diff"] is None
    assert empty["spearman"] is None
    assert set(empty["flips"].values()) == {0}
    assert empty["labelled"] == {"rows": 0, "n": 0, "positives": 0, "pending": 0, "excluded": 0}
    for side in ("champion", "challenger", "difference"):
        for estimate in empty["metrics"][side].values():
            assert estimate == {"value": None, "low": None, "high": None}
    assert empty["recommendation"]["promote"] is False

    # A constant score: no rank correlation. One class only: no ROC-AUC nor AP, a Brier.
    constant = [pair(i, JAN, 0.4, 0.1 * i) for i in range(1, 6)]
    stayed = [{"employee_id": i, "status": "stayed", "as_of": date(2026, 6, 1)} for i in range(6)]
    report = compare_report(constant, stayed, bootstrap=50)
    assert report["spearman"] is None
    metrics = report["metrics"]
    assert metrics["champion"]["roc_auc"] == {"value": None, "low": None, "high": None}
    assert metrics["difference"]["average_precision"]["value"] is None
    assert metrics["champion"]["brier"]["value"] == pytest.approx(0.16)
    assert metrics["champion"]["brier"]["low"] == pytest.approx(0.16)


# --- bootstrap ------------------------------------------------------------------------------


def test_resampled_metrics_equal_sklearn_on_the_drawn_rows():
    rng = np.random.default_rng(7)
    y = (rng.random(80) < 0.3).astype(int)
    p = np.round(rng.random(80), 1)  # many ties
    picks = rng.integers(0, 80, size=(5, 80))
    counts = np.stack([np.bincount(row, minlength=80) for row in picks]).astype(float)
    got = _resampled(y, p, counts)
    for b, row in enumerate(picks):
        assert got["roc_auc"][b] == pytest.approx(roc_auc_score(y[row], p[row]))
        assert got["average_precision"][b] == pytest.approx(average_precision_score(y[row], p[row]))
        assert got["brier"][b] == pytest.approx(brier_score_loss(y[row], p[row]))
    one_class = _resampled(np.zeros(80, dtype=int), p, counts)
    assert np.isnan(one_class["roc_auc"]).all() and np.isnan(one_class["average_precision"]).all()


def test_intervals_are_the_percentiles_of_paired_resamples():
    pairs, outcomes, y, champion, challenger = synthetic(150, seed=3)
    report = compare_report(pairs, outcomes, bootstrap=200, seed=11)
    # The draws the report makes: one block of 200 resamples of the 150 labelled rows.
    picks = np.random.default_rng(11).integers(0, 150, size=(200, 150))
    for name, score in (
        ("roc_auc", roc_auc_score),
        ("average_precision", average_precision_score),
        ("brier", brier_score_loss),
    ):
        first = np.array([score(y[row], champion[row]) for row in picks])
        second = np.array([score(y[row], challenger[row]) for row in picks])
        for side, values in (
            ("champion", first),
            ("challenger", second),
            ("difference", second - first),
        ):
            estimate = report["metrics"][side][name]
            assert [estimate["low"], estimate["high"]] == pytest.approx(
                np.percentile(values, [5, 95])
            ), (side, name)


def test_intervals_contain_the_estimate_and_narrow_with_more_rows():
    widths = []
    for n in (200, 4000):
        pairs, outcomes, *_ = synthetic(n, seed=5)
        metrics = compare_report(pairs, outcomes, bootstrap=500)["metrics"]
        for side in ("champion", "challenger", "difference"):
            for name, estimate in metrics[side].items():
                assert estimate["low"] <= estimate["value"] <= estimate["high"], (n, side, name)
        widths.append(
            {
                (side, name): estimate["high"] - estimate["low"]
                for side in ("champion", "challenger", "difference")
                for name, estimate in metrics[side].items()
            }
        )
    small, large = widths
    for key in small:
        assert large[key] < small[key] / 2, key  # ~ 1 / sqrt(20): about 4.5 times narrower


def test_the_order_of_the_pairs_changes_nothing():
    pairs, outcomes, *_ = synthetic(300, seed=4)
    shuffled = [pairs[i] for i in np.random.default_rng(0).permutation(300)]
    assert compare_report(shuffled, outcomes[::-1], bootstrap=200) == compare_report(
        pairs, outcomes, bootstrap=200
    )


def test_the_seed_fixes_the_intervals():
    pairs, outcomes, *_ = synthetic(300, seed=4)
    first = compare_report(pairs, outcomes, bootstrap=300, seed=1)
    assert compare_report(pairs, outcomes, bootstrap=300, seed=1) == first
    other = compare_report(pairs, outcomes, bootstrap=300, seed=2)
    assert other["metrics"]["difference"] != first["metrics"]["difference"]


# --- the rule -------------------------------------------------------------------------------


def test_a_clearly_better_challenger_is_promoted():
    pairs, outcomes, *_ = synthetic(600, seed=1)
    report = compare_report(pairs, outcomes)
    recommendation = report["recommendation"]
    assert recommendation["promote"] is True, recommendation["reason"]
    assert recommendation["rule"] == RULE
    assert "0.005" in RULE and "90%" in RULE and "average precision" in RULE
    assert recommendation["reason"].endswith(f"promote {CHALLENGER}")
    assert report["metrics"]["difference"]["average_precision"]["low"] > 0


def test_equal_models_are_not_promoted():
    pairs, outcomes, *_ = synthetic(600, seed=1, challenger="equal")
    report = compare_report(pairs, outcomes)
    assert report["agreement"] == 1.0 and report["mean_abs_diff"] == 0.0
    assert report["spearman"] == pytest.approx(1.0)
    assert report["metrics"]["difference"]["average_precision"] == {
        "value": 0.0,
        "low": 0.0,
        "high": 0.0,
    }
    recommendation = report["recommendation"]
    assert recommendation["promote"] is False
    assert "is not higher" in recommendation["reason"]


def test_a_better_ranking_with_a_worse_brier_is_not_promoted():
    # Same truth-tracking scores, but pushed towards 1: better ranking, far worse calibration.
    pairs, outcomes, *_ = synthetic(600, seed=1, challenger="overconfident")
    report = compare_report(pairs, outcomes)
    difference = report["metrics"]["difference"]
    assert difference["average_precision"]["low"] > 0
    assert difference["brier"]["value"] > 0.005
    assert report["recommendation"]["promote"] is False
    assert "Brier worse" in report["recommendation"]["reason"]


def test_a_difference_within_the_noise_is_not_promoted():
    # As good as the champion, scored differently: a higher AP by chance, with the interval
    # of the difference holding 0.
    pairs, outcomes, _, first, _ = synthetic(400, seed=2, challenger="equal")
    nudged = np.clip(first + np.random.default_rng(1).normal(0, 0.1, 400), 0, 1)
    for p, value in zip(pairs, nudged, strict=True):
        p["challenger"]["probability"] = float(value)
    report = compare_report(pairs, outcomes)
    difference = report["metrics"]["difference"]["average_precision"]
    assert difference["value"] > 0
    assert difference["low"] < 0 < difference["high"]
    assert report["recommendation"]["promote"] is False
    assert "does not exclude 0" in report["recommendation"]["reason"]


def test_too_few_labelled_outcomes_are_not_enough():
    pairs, outcomes, *_ = synthetic(60, seed=1, rate=0.4)
    report = compare_report(pairs, outcomes)
    assert report["labelled"]["n"] == 60
    recommendation = report["recommendation"]
    assert recommendation["promote"] is False
    assert recommendation["reason"].startswith("not enough labelled outcomes")
    # The count, not the evidence, held it back.
    assert compare_report(pairs, outcomes, min_labelled=50)["recommendation"]["promote"] is True
    # Pending rows do not count.
    pending = [o for o in outcomes if o["employee_id"] >= 20]
    few = compare_report(pairs, pending, min_labelled=50)
    assert few["labelled"]["pending"] == 20
    assert few["recommendation"]["reason"].startswith("not enough labelled outcomes")


def test_no_positive_is_not_enough():
    pairs, _, *_ = synthetic(200, seed=1)
    stayed = [{"employee_id": i, "status": "stayed", "as_of": date(2026, 6, 1)} for i in range(200)]
    report = compare_report(pairs, stayed)
    assert (report["labelled"]["n"], report["labelled"]["positives"]) == (200, 0)
    assert report["recommendation"]["promote"] is False
    assert report["recommendation"]["reason"].startswith("not enough labelled outcomes")


# --- attrition compare ----------------------------------------------------------------------


@pytest.fixture
def reads(monkeypatch, tmp_path):
    """`attrition compare` on an empty SQLite file, its two reads answering the table."""
    for name in ("DATABASE_URL", "ATTRITION_ADMIN_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'compare.db'}")
    get_settings.cache_clear()
    calls = {}

    def shadow_pairs(session, since, until):
        calls["window"] = (since, until)
        return table_pairs()

    def outcome_facts(session, employee_ids):
        calls["employee_ids"] = list(employee_ids)
        return [o for o in OUTCOMES if o["employee_id"] in set(employee_ids)]

    monkeypatch.setattr(shadow, "shadow_pairs", shadow_pairs)
    monkeypatch.setattr(store, "outcome_facts", outcome_facts)
    yield calls
    get_settings.cache_clear()


def test_compare_command_prints_the_report_as_json(reads, capsys):
    argv = ["compare", "--since", "2025-01-01T10:00+02:00", "--until", "2025-03-01", "--json"]
    assert attrition([*argv, "--horizon-days", "30"]) == 0
    assert reads["window"] == (
        datetime(2025, 1, 1, 8, 0, tzinfo=UTC),
        datetime(2025, 3, 1, tzinfo=UTC),
    )
    assert reads["employee_ids"] == list(range(1, 12))
    printed = json.loads(capsys.readouterr().out)
    assert printed == compare_report(table_pairs(), OUTCOMES, horizon_days=30)
    assert printed["horizon_days"] == 30


def test_compare_command_prints_a_summary_and_the_recommendation(reads, capsys):
    assert attrition(["compare"]) == 0
    assert reads["window"] == (None, None)
    out = capsys.readouterr().out.strip().splitlines()
    assert (
        out[0] == f"champion {CHAMPION} vs challenger {CHALLENGER}: 14 predictions scored by both"
    )
    assert "agreement 57.1%" in out[1]
    assert "medium->low 3" in out[2] and "low->medium" not in out[2]
    assert "9 labelled (5 left), 2 pending, 1 excluded" in out[3]
    assert [line.split()[0] for line in out[5:8]] == ["ROC-AUC", "average", "Brier"]
    assert out[-1].startswith(
        "recommendation: keep the champion: not enough labelled outcomes (9 labelled"
    )
