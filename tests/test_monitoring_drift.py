"""Drift against the training reference: generated employees, reference built as training does."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import chisquare

from monitoring.drift import EPSILON, column_drift_report, drift_report
from training.contract import FEATURES, Employee, employees_frame
from training.extracts import load_extracts
from training.generator import write_extracts
from training.reference import reference_statistics

SHIFTED = {"age", "heure_supplementaires"}


def _score(frame: pd.DataFrame) -> np.ndarray:
    """A fixed stand-in for the model: the same function for the reference and live rows."""
    logit = (
        -1.8
        + 1.5 * frame["heure_supplementaires"].astype(float)
        - 0.4 * (frame["satisfaction_employee_environnement"] - 2.5)
        - 0.03 * (frame["age"] - 37)
    )
    return np.asarray(1 / (1 + np.exp(-logit)))


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    data = load_extracts(write_extracts(tmp_path_factory.mktemp("ref"), rows=2000, seed=11))
    frame = data.frame
    return reference_statistics(frame, data.target, _score(frame))


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> list[Employee]:
    folder = write_extracts(tmp_path_factory.mktemp("live"), rows=1500, seed=12)
    return load_extracts(folder).employees


def _rows(employees: list[Employee]) -> tuple[list[dict], list[float]]:
    """Inputs as the service stores them, and their scores."""
    inputs = [e.model_dump(mode="json", exclude_none=True) for e in employees]
    return inputs, [float(p) for p in _score(employees_frame(employees))]


def _by_feature(report: dict) -> dict[str, dict]:
    return {f["feature"]: f for f in report["features"]}


def test_unshifted_sample_is_stable(reference, live):
    inputs, scores = _rows(live)
    report = drift_report(reference, inputs, scores)

    assert report["n"] == len(live)
    assert report["status"] == "stable"
    assert report["min_rows"] == 200
    assert [f["feature"] for f in report["features"]] == list(FEATURES)
    for feature in report["features"]:
        assert feature["status"] == "stable", feature
        assert feature["n"] == len(live)
        assert feature["test"] == "chi2"
        assert 0 <= feature["psi"] < 0.1
        assert 0 <= feature["p_value"] <= 1
    assert report["score"]["status"] == "stable"
    assert report["score"]["n"] == len(live)


def test_two_shifted_features_and_only_those_drift(reference, live):
    inputs, scores = _rows(live)
    rng = np.random.default_rng(0)
    for row in inputs:
        row["age"] += 12
        row["heure_supplementaires"] = bool(rng.random() < 0.9)
    report = drift_report(reference, inputs, scores)

    statuses = {name: f["status"] for name, f in _by_feature(report).items()}
    assert {name for name, status in statuses.items() if status == "drift"} == SHIFTED
    assert all(statuses[name] == "stable" for name in statuses if name not in SHIFTED)
    assert all(_by_feature(report)[name]["p_value"] < 1e-6 for name in SHIFTED)
    assert report["status"] == "drift"


def test_below_min_rows_gives_no_verdict(reference, live):
    inputs, scores = _rows(live[:199])
    report = drift_report(reference, inputs, scores)

    assert report["n"] == 199
    assert report["status"] == "insufficient_data"
    assert report["score"] == {
        "psi": None,
        "p_value": None,
        "test": "chi2",
        "status": "insufficient_data",
        "n": 199,
    }
    for feature in report["features"]:
        assert (feature["status"], feature["psi"], feature["p_value"]) == (
            "insufficient_data",
            None,
            None,
        )
    assert drift_report(reference, inputs, scores, min_rows=150)["status"] == "stable"


def test_min_rows_is_configurable(reference, live):
    inputs, scores = _rows(live[:500])
    assert drift_report(reference, inputs, scores, min_rows=501)["status"] == "insufficient_data"
    assert drift_report(reference, inputs, scores, min_rows=500)["status"] == "stable"


def test_extract_spellings_bin_like_contract_values(reference, live):
    inputs, scores = _rows(live[:400])
    spelled = [
        {
            **row,
            "heure_supplementaires": "Oui" if row["heure_supplementaires"] else "Non",
            "augementation_salaire_precedente": f"{row['augementation_salaire_precedente']} %",
            "age": str(row["age"]),
        }
        for row in inputs
    ]
    assert drift_report(reference, spelled, scores) == drift_report(reference, inputs, scores)


TINY = {
    "positive_rate": 0.2,
    "features": {
        "genre": {"type": "categorical", "categories": ["F", "M"], "proportions": [0.4, 0.6]},
        "age": {"type": "numeric", "edges": [30.0, 40.0], "proportions": [0.3, 0.4, 0.3]},
    },
    "score_histogram": {
        "edges": [round(x, 1) for x in np.linspace(0, 1, 11)],
        "proportions": [0.1] * 10,
    },
}


def _expected(counts: list[int], proportions: list[float]) -> tuple[float, float]:
    """PSI and chi-square p-value as the module documents them, written out longhand."""
    n = sum(counts)
    ref = np.maximum(np.array(proportions), EPSILON)
    ref = ref / ref.sum()
    psi = sum(
        (max(c / n, EPSILON) - r) * math.log(max(c / n, EPSILON) / r)
        for c, r in zip(counts, ref, strict=True)
    )
    return psi, chisquare(counts, ref * n).pvalue


def test_psi_and_p_value_follow_the_documented_formulas():
    # genre: 150 F, 100 M, 50 unknown ("X"), 20 missing; age: 100 below 30, 100 in [30, 40),
    # 100 at 40 or above (edges are left-closed: 40 falls in the last bin), 20 absent.
    inputs = (
        [{"genre": "F", "age": 25}] * 100
        + [{"genre": "F", "age": 30}] * 50
        + [{"genre": "M", "age": 39.5}] * 50
        + [{"genre": "M", "age": 40}] * 50
        + [{"genre": "X", "age": 70}] * 50
        + [{"genre": None}] * 20
    )
    scores = [0.05] * 160 + [0.95] * 160
    report = drift_report(TINY, inputs, scores, predictions=[1] * 80 + [0] * 240)
    features = _by_feature(report)

    psi, p_value = _expected([150, 100, 50], [0.4, 0.6, 0.0])
    assert features["genre"]["n"] == 300
    assert features["genre"]["psi"] == pytest.approx(psi)
    assert features["genre"]["p_value"] == pytest.approx(p_value)
    assert features["genre"]["status"] == "drift"  # an unknown category is drift

    psi, p_value = _expected([100, 100, 100], [0.3, 0.4, 0.3])
    assert features["age"]["n"] == 300
    assert features["age"]["psi"] == pytest.approx(psi)
    assert features["age"]["p_value"] == pytest.approx(p_value)
    assert features["age"]["status"] == "stable"

    psi, p_value = _expected([160] + [0] * 8 + [160], [0.1] * 10)
    assert report["score"]["psi"] == pytest.approx(psi)
    assert report["score"]["p_value"] == pytest.approx(p_value)
    assert report["status"] == "drift"
    assert report["positive_rate"] == {
        "training": 0.2,
        "live_mean_probability": pytest.approx(0.5),
        "live_predicted_positive_rate": pytest.approx(0.25),
    }


def test_watch_between_the_two_thresholds():
    # 0.55 / 0.45 against 0.4 / 0.6: PSI about 0.09 (stable); 0.6 / 0.4: about 0.16 (watch).
    near = [{"genre": "F"}] * 220 + [{"genre": "M"}] * 180
    far = [{"genre": "F"}] * 240 + [{"genre": "M"}] * 160
    assert _by_feature(drift_report(TINY, near, [0.5] * 400))["genre"]["status"] == "stable"
    assert _by_feature(drift_report(TINY, far, [0.5] * 400))["genre"]["status"] == "watch"


def test_a_feature_mostly_missing_has_no_verdict_of_its_own():
    inputs = [{"genre": "F", "age": 35}] * 100 + [{"genre": "M"}] * 150
    report = drift_report(TINY, inputs, [0.5] * 250)
    features = _by_feature(report)
    assert features["age"]["n"] == 100
    assert features["age"]["status"] == "insufficient_data"
    assert features["genre"]["n"] == 250
    assert report["status"] == features["genre"]["status"]
    assert report["positive_rate"]["live_predicted_positive_rate"] is None


def test_missing_values_left_out_of_a_column_count_as_missing():
    """PostgreSQL hands each feature over without its nulls (persistence `latest_inputs`)."""
    genre = ["F", None, "M", "X", None] * 60
    age = [25, 31, None, 44, 39.5] * 60
    scores = [0.1, 0.4, 0.6, 0.8, 0.95] * 60
    with_nones = column_drift_report(TINY, {"genre": genre, "age": age}, scores)
    left_out = {name: [v for v in values if v is not None] for name, values in
                {"genre": genre[::-1], "age": age}.items()}  # fmt: skip
    assert column_drift_report(TINY, left_out, scores) == with_nones
    assert _by_feature(with_nones)["genre"]["n"] == 180
    with pytest.raises(ValueError):
        column_drift_report(TINY, {"genre": [*genre, "F"]}, scores)


def test_rows_must_line_up():
    with pytest.raises(ValueError):
        drift_report(TINY, [{"genre": "F"}], [0.1, 0.2])
    with pytest.raises(ValueError):
        drift_report(TINY, [{"genre": "F"}], [0.1], predictions=[])
    with pytest.raises(ValueError):
        drift_report(TINY, [], [], min_rows=0)
