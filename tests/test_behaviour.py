"""Behaviour of the trained model, as a reviewer would probe it (invariance and direction).

The fields that only identify an employee carry no information about leaving: changing them
must not move a score. On generated data, overtime is the strongest push towards leaving
(training/generator.py: +1.6 on the log-odds), so switching it on must raise the scores.
"""

from __future__ import annotations

import numpy as np
import pytest

from training.contract import IDENTIFIERS, Employee, employees_frame
from training.extracts import load_extracts
from training.store import load


@pytest.fixture(scope="module")
def score(trained_tag):
    pipeline = load(trained_tag).pipeline

    def probabilities(employees: list[Employee]) -> np.ndarray:
        return pipeline.predict_proba(employees_frame(employees))[:, 1]

    return probabilities


@pytest.fixture(scope="module")
def unseen(holdout_dir) -> list[Employee]:
    return load_extracts(holdout_dir).employees


def test_identifiers_do_not_change_a_score(score, unseen):
    baseline = score(unseen)
    # Each employee with the next one's identifiers, then with none at all.
    swapped = [
        e.model_copy(update={name: getattr(other, name) for name in IDENTIFIERS})
        for e, other in zip(unseen, unseen[1:] + unseen[:1], strict=True)
    ]
    anonymous = [e.model_copy(update=dict.fromkeys(IDENTIFIERS)) for e in unseen]
    np.testing.assert_array_equal(score(swapped), baseline)
    np.testing.assert_array_equal(score(anonymous), baseline)


def test_overtime_raises_the_score(score, unseen):
    never = score([e.model_copy(update={"heure_supplementaires": False}) for e in unseen])
    always = score([e.model_copy(update={"heure_supplementaires": True}) for e in unseen])
    assert (always >= never).all(), "overtime lowered someone's score"
    # A tree ensemble may leave a few scores flat (overtime unused on their path); not most.
    assert (always > never).mean() >= 0.95
