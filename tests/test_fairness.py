"""The fairness assessment: its block in the model metadata, and that it sees a bias."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import precision_score, recall_score

from training.contract import CATEGORIES
from training.fairness import AGE_BANDS, RATES, age_band, assess
from training.store import load

ATTRIBUTES = {"genre", "age_band", "statut_marital"}


def test_age_bands():
    bands = age_band(pd.Series([18, 29, 30, 44, 45, 60]))
    assert bands.tolist() == ["<30", "<30", "30-44", "30-44", ">=45", ">=45"]


def test_fairness_block_in_the_model_metadata(trained_tag):
    meta = load(trained_tag).metadata
    fairness = meta["fairness"]
    assert fairness["threshold"] == meta["threshold"]
    assert set(fairness["attributes"]) == ATTRIBUTES
    orders = {**CATEGORIES, "age_band": AGE_BANDS}
    for attribute, block in fairness["attributes"].items():
        groups = block["groups"]
        assert list(groups) == [g for g in orders[attribute] if g in groups]
        assert sum(row["count"] for row in groups.values()) == meta["training_data"]["rows"]
        for row in groups.values():
            assert set(row) == {"count", *RATES}
            for name in RATES:
                low, high = row[name]["ci90"]
                assert 0 <= low <= row[name]["value"] <= high <= 1
        rates = [row["selection_rate"]["value"] for row in groups.values()]
        assert block["demographic_parity_ratio"] == pytest.approx(min(rates) / max(rates), abs=2e-3)
        assert 0 <= block["equalized_odds_difference"] <= 1
    flagged = [
        name
        for name, block in fairness["attributes"].items()
        if block["demographic_parity_ratio"] < fairness["dp_ratio_floor"]
    ]
    assert len(fairness["warnings"]) == len(flagged)
    assert all(
        f"ratio for {name} is" in w for name, w in zip(flagged, fairness["warnings"], strict=True)
    )


@pytest.fixture(scope="module")
def biased():
    """400 employees, decisions that flag every under-30 and nobody else, whatever genre."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "genre": rng.choice(["F", "M"], 400),
            "age": rng.integers(20, 60, 400),
            "statut_marital": rng.choice(list(CATEGORIES["statut_marital"]), 400),
        }
    )
    y = (rng.random(400) < 0.3).astype(int)
    probability = np.where(frame["age"] < 30, 0.8, 0.1)
    return frame, y, probability, assess(frame, y, probability, threshold=0.5, seed=0)


def test_assessment_sees_a_biased_decision(biased):
    _, _, _, fairness = biased
    age = fairness["attributes"]["age_band"]
    assert age["demographic_parity_ratio"] == 0
    assert age["groups"]["<30"]["selection_rate"]["value"] == 1
    assert age["groups"]["<30"]["recall"]["value"] == 1
    assert age["groups"][">=45"]["recall"]["value"] == 0
    assert age["equalized_odds_difference"] == 1
    assert fairness["warnings"][0].startswith(
        "WARNING fairness: demographic-parity ratio for age_band is 0.00"
    )
    assert fairness["attributes"]["genre"]["demographic_parity_ratio"] > 0.7


def test_group_rates_agree_with_sklearn(biased):
    frame, y, probability, fairness = biased
    flagged = (probability >= 0.5).astype(int)
    for group, row in fairness["attributes"]["genre"]["groups"].items():
        mask = (frame["genre"] == group).to_numpy()
        assert row["count"] == mask.sum()
        assert row["recall"]["value"] == pytest.approx(
            recall_score(y[mask], flagged[mask]), abs=1e-4
        )
        assert row["precision"]["value"] == pytest.approx(
            precision_score(y[mask], flagged[mask]), abs=1e-4
        )
        negatives = mask & (y == 0)
        assert row["false_positive_rate"]["value"] == pytest.approx(
            flagged[negatives].mean(), abs=1e-4
        )
        low, high = row["recall"]["ci90"]
        assert low < row["recall"]["value"] < high  # ~130 employees: a real interval


def test_undefined_rates_are_absent_not_zero():
    frame = pd.DataFrame(
        {"genre": ["F", "M"] * 10, "age": [35] * 20, "statut_marital": ["Marié(e)"] * 20}
    )
    y = np.zeros(20, dtype=int)  # nobody left: recall is undefined everywhere
    fairness = assess(frame, y, np.full(20, 0.1), threshold=0.5, seed=0)
    cell = fairness["attributes"]["genre"]["groups"]["F"]["recall"]
    assert cell == {"value": None, "ci90": None}
