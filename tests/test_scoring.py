import itertools

import numpy as np
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.preprocessing import MinMaxScaler

from scoring.fast_transform import compile_preprocessor
from scoring.scorer import HIGH_FROM, Scorer, _fastest_transform, risk_band, risk_bands
from training.contract import NUMERIC_FEATURES
from training.extracts import load_extracts
from training.store import load


def test_numpy_preprocessing_equals_sklearn_on_unseen_employees(trained_tag, holdout_dir):
    stored = load(trained_tag)
    preprocess = stored.pipeline.named_steps["preprocess"]
    frame = load_extracts(holdout_dir).frame
    fast = compile_preprocessor(preprocess)
    assert fast is not None
    np.testing.assert_allclose(fast(frame), preprocess.transform(frame), rtol=1e-12, atol=0)
    scorer = stored.scorer()
    assert getattr(scorer._transform, "__self__", None) is not preprocess  # not sklearn's
    probabilities = [s.probability for s in scorer.score(frame)]
    np.testing.assert_allclose(probabilities, stored.pipeline.predict_proba(frame)[:, 1])


def test_one_list_per_column_scores_as_the_dataframe(trained_tag, holdout_dir):
    """The service passes plain columns (no DataFrame): the same scores and factors, down to
    the Python type of each factor's value (`repr` tells 1 from 1.0)."""
    stored = load(trained_tag)
    frame = load_extracts(holdout_dir).frame.iloc[:200]
    columns = {name: frame[name].tolist() for name in frame.columns}
    scorer = stored.scorer()
    assert repr(scorer.score(columns)) == repr(scorer.score(frame))
    np.testing.assert_array_equal(scorer.probabilities(columns), scorer.probabilities(frame))


def test_sklearns_own_transform_takes_plain_columns_too(generated_dir):
    frame = load_extracts(generated_dir).frame
    other = ColumnTransformer([("mm", MinMaxScaler(), list(NUMERIC_FEATURES))]).fit(frame)
    transform = _fastest_transform(other, list(NUMERIC_FEATURES))
    columns = {name: frame[name].tolist() for name in frame.columns}
    np.testing.assert_array_equal(transform(columns), other.transform(frame))


def test_unknown_preprocessing_parts_fall_back_to_sklearn(generated_dir):
    frame = load_extracts(generated_dir).frame
    other = ColumnTransformer([("mm", MinMaxScaler(), list(NUMERIC_FEATURES))]).fit(frame)
    assert compile_preprocessor(other) is None


def test_stored_model_builds_its_scorer(trained_tag):
    stored = load(trained_tag)
    assert stored.scorer().threshold == stored.threshold
    assert stored.scorer(threshold_override=0.7).threshold == 0.7
    assert "training mean" in stored.scorer().explanation_method
    assert stored.scorer().risk_bands == stored.metadata["risk_bands"]


def test_scores_follow_threshold_and_bands(trained_tag, holdout_dir):
    scorer = load(trained_tag).scorer()
    for s in scorer.score(load_extracts(holdout_dir).frame):
        assert s.prediction == int(s.probability >= scorer.threshold)
        assert s.risk_band == risk_band(s.probability, scorer.threshold)
        assert (s.risk_band != "low") == bool(s.prediction)


def test_risk_bands_are_probability_ranges():
    assert [risk_band(p, 0.16) for p in (0.1, 0.16, 0.49, 0.5, 0.9)] == [
        "low",
        "medium",
        "medium",
        "high",
        "high",
    ]
    # a threshold above one half leaves no medium band: flagged means more likely to leave
    assert [risk_band(p, 0.7) for p in (0.6, 0.7)] == ["low", "high"]
    bands = risk_bands(0.16)
    assert [b["band"] for b in bands] == ["low", "medium", "high"]
    assert [(b["from"], b["to"]) for b in bands] == [(0, 0.16), (0.16, HIGH_FROM), (HIGH_FROM, 1)]
    assert all(b["meaning"] for b in bands)


@pytest.mark.parametrize("threshold", [0.05, 0.3, 0.5, 0.8])
def test_risk_bands_cover_zero_to_one_without_gaps(threshold):
    bands = risk_bands(threshold)
    assert bands[0]["from"] == 0 and bands[-1]["to"] == 1
    assert all(a["to"] == b["from"] for a, b in itertools.pairwise(bands))
    for p in np.linspace(0, 1, 101):
        inside = [b["band"] for b in bands if b["from"] <= p < b["to"] or p == b["to"] == 1]
        assert inside[-1] == risk_band(float(p), threshold)


def test_scorer_without_baseline_says_so(trained_tag):
    stored = load(trained_tag)
    scorer = Scorer(stored.pipeline, stored.threshold)
    assert "no training means" in scorer.explanation_method
