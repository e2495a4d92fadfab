"""Probabilities that mean what they say: the calibration metrics, and the trained model's."""

import numpy as np
import pytest

from training.extracts import load_extracts
from training.metrics import calibration_table, expected_calibration_error
from training.store import load


def test_calibration_error_of_known_cases():
    y = np.array([0, 1] * 50)
    assert expected_calibration_error(y, np.full(100, 0.9)) == pytest.approx(0.4)
    assert expected_calibration_error(y, np.full(100, 0.5)) == pytest.approx(0.0)
    # two bins, each off by 0.1 in opposite directions
    p = np.array([0.2] * 50 + [0.7] * 50)
    labels = np.array([0] * 45 + [1] * 5 + [0] * 20 + [1] * 30)
    assert expected_calibration_error(labels, p) == pytest.approx(0.1)


def test_calibration_error_of_drawn_outcomes_is_small_and_of_shifted_ones_is_not():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 20_000)
    y = (rng.random(20_000) < p).astype(int)
    assert expected_calibration_error(y, p) < 0.02
    assert expected_calibration_error(y, np.clip(p + 0.15, 0, 1)) > 0.1


def test_calibration_table_bins():
    table = calibration_table(np.array([0, 1, 1, 0]), np.array([0.05, 0.1, 0.95, 1.0]))
    assert [row["count"] for row in table] == [1, 1, 0, 0, 0, 0, 0, 0, 0, 2]
    assert table[0]["from"] == 0.0 and table[-1]["to"] == 1.0
    assert table[9]["observed_rate"] == 0.5 and table[9]["mean_probability"] == pytest.approx(0.975)
    assert table[2]["mean_probability"] is None


def test_out_of_fold_probabilities_are_calibrated(trained_tag):
    meta = load(trained_tag).metadata
    oof = meta["metrics"]["out_of_fold"]
    rate = meta["training_data"]["positive_rate"]
    assert oof["ece"] <= 0.07
    assert oof["brier"] < rate * (1 - rate)  # better than the base rate for everyone
    assert abs(oof["mean_probability"] - rate) < 0.02
    table = meta["metrics"]["calibration"]
    assert sum(row["count"] for row in table) == meta["training_data"]["rows"]


def test_served_probabilities_average_the_training_positive_rate(trained_tag, holdout_dir):
    """On employees the model never saw, the mean served probability is the leaving rate it
    learned, not the inflated 0.36-for-16 % of the reweighted model."""
    stored = load(trained_tag)
    scores = stored.scorer().score(load_extracts(holdout_dir).frame)
    mean = np.mean([s.probability for s in scores])
    assert abs(mean - stored.metadata["training_data"]["positive_rate"]) <= 0.03
