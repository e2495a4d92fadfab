"""`top_factors`: contributions against the average training employee, with French labels."""

import numpy as np
import pandas as pd
import pytest

from scoring.labels import TEMPLATES, label
from scoring.scorer import Scorer, _log_odds
from training.contract import FEATURES
from training.extracts import load_extracts
from training.pipeline import SENSITIVE_FEATURES, candidates
from training.reference import explanation_baseline
from training.store import load


@pytest.fixture(scope="module")
def training_frame(generated_dir) -> pd.DataFrame:
    """The rows the session's model was trained on (same generator, rows and seed)."""
    return load_extracts(generated_dir).frame


@pytest.fixture(scope="module")
def every_factor(trained_tag):
    """The session's scorer, reporting every feature instead of the top five."""
    stored = load(trained_tag)
    scorer = stored.scorer()
    scorer.top_k = len(scorer.features)
    return scorer


def _contributions(scorer: Scorer, frame: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        [{f["feature"]: f["contribution"] for f in s.top_factors} for s in scorer.score(frame)]
    )


def test_the_average_employee_has_no_contributions(every_factor):
    baseline = every_factor._baseline[None, :]
    probability = every_factor.model.predict_proba(baseline)[:, 1]
    np.testing.assert_allclose(every_factor._contributions(baseline, probability), 0, atol=1e-12)


def test_contributions_average_zero_over_the_training_employees(every_factor, training_frame):
    """Compared with the average employee, the training employees are on average average."""
    contributions = _contributions(every_factor, training_frame)
    assert list(contributions.columns.sort_values()) == sorted(every_factor.features)
    np.testing.assert_allclose(contributions.mean(), 0, atol=1e-3)
    assert contributions.abs().mean().max() > 0.1  # and not all zero


def test_overtime_raises_the_score_compared_with_the_average_employee(every_factor, training_frame):
    """The generator gives overtime +1.6 log-odds: "oui" raises, "non" lowers."""
    employee = training_frame.iloc[[0, 0]].reset_index(drop=True)
    employee["heure_supplementaires"] = [True, False]
    with_overtime, without = every_factor.score(employee)
    by_feature = [{f["feature"]: f for f in s.top_factors} for s in (with_overtime, without)]
    yes, no = (factors["heure_supplementaires"] for factors in by_feature)
    assert yes["direction"] == "raises" and yes["contribution"] > 0.5
    assert no["direction"] == "lowers" and no["contribution"] < 0
    assert yes["label"] == "Heures supplémentaires : oui"
    assert no["label"] == "Heures supplémentaires : non"
    assert with_overtime.probability > without.probability


def test_contributions_add_up_to_the_change_from_the_average_employee(every_factor, training_frame):
    """Exact for a logistic regression; for a sigmoid-calibrated one, whose probability
    averages its members', close (measured: 0.03 mean error for totals around 0.8)."""
    transformed = np.asarray(every_factor._transform(training_frame), dtype=float)
    probability = every_factor.model.predict_proba(transformed)[:, 1]
    average = every_factor.model.predict_proba(every_factor._baseline[None, :])[:, 1]
    total = every_factor._contributions(transformed, probability).sum(axis=1)
    change = _log_odds(probability) - _log_odds(average)
    assert np.mean(np.abs(total - change)) < 0.1 * np.mean(np.abs(change))


def test_every_feature_has_a_french_label():
    assert set(TEMPLATES) == set(FEATURES)
    assert label("age", 34) == "Âge : 34 ans"
    assert label("revenu_mensuel", 5993.0) == "Revenu mensuel : 5 993 €"
    assert label("augementation_salaire_precedente", 11.5) == "Dernière augmentation : 11.5 %"
    assert label("frequence_deplacement", "Frequent") == "Déplacements : fréquents"
    assert label("nombre_participation_pee", 1) == "Participation au PEE : 1"


def test_tree_models_are_explained_by_occlusion_against_the_mean(training_frame, generated_dir):
    y = load_extracts(generated_dir).target
    frame = training_frame[list(FEATURES)]
    pipeline = candidates(seed=0)["hist_gradient_boosting"].fit(frame, y)
    scorer = Scorer(pipeline, 0.5, top_k=3, baseline=explanation_baseline(pipeline, frame))
    assert scorer.explanation_method.startswith("occlusion")
    assert "training mean" in scorer.explanation_method
    scores = scorer.score(frame.iloc[:20])
    assert all(len(s.top_factors) == 3 for s in scores)
    baseline = scorer._baseline[None, :]
    at_mean = scorer._contributions(baseline, pipeline[-1].predict_proba(baseline)[:, 1])
    np.testing.assert_allclose(at_mean, 0, atol=1e-12)


def test_features_the_model_does_not_use_never_explain(training_frame, generated_dir):
    y = load_extracts(generated_dir).target
    pipeline = candidates(seed=0, excluded=SENSITIVE_FEATURES)["logistic_regression"]
    pipeline.fit(training_frame[list(FEATURES)], y)
    scorer = Scorer(
        pipeline, 0.2, top_k=30, baseline=explanation_baseline(pipeline, training_frame)
    )
    assert not set(scorer.features) & set(SENSITIVE_FEATURES)
    assert getattr(scorer._transform, "__self__", None) is None  # the numpy fast path
    for s in scorer.score(training_frame.iloc[:50]):  # every contract field, some ignored
        assert len(s.top_factors) == len(FEATURES) - len(SENSITIVE_FEATURES)
        assert not {f["feature"] for f in s.top_factors} & set(SENSITIVE_FEATURES)
