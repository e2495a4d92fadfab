import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.preprocessing import MinMaxScaler

from scoring.fast_transform import compile_preprocessor
from scoring.scorer import Scorer, risk_band
from training.contract import FEATURES, NUMERIC_FEATURES
from training.extracts import load_extracts
from training.pipeline import candidates
from training.store import load


def test_numpy_preprocessing_equals_sklearn_on_unseen_employees(trained_tag, holdout_dir):
    stored = load(trained_tag)
    preprocess = stored.pipeline.named_steps["preprocess"]
    frame = load_extracts(holdout_dir).frame
    fast = compile_preprocessor(preprocess)
    assert fast is not None
    np.testing.assert_allclose(fast(frame), preprocess.transform(frame), rtol=1e-12, atol=0)
    scorer = Scorer(stored.pipeline, stored.threshold)
    assert getattr(scorer._transform, "__self__", None) is not preprocess  # not sklearn's
    probabilities = [s.probability for s in scorer.score(frame)]
    np.testing.assert_allclose(probabilities, stored.pipeline.predict_proba(frame)[:, 1])


def test_unknown_preprocessing_parts_fall_back_to_sklearn(generated_dir):
    frame = load_extracts(generated_dir).frame
    other = ColumnTransformer([("mm", MinMaxScaler(), list(NUMERIC_FEATURES))]).fit(frame)
    assert compile_preprocessor(other) is None


def test_tree_models_are_explained_by_occlusion(generated_dir):
    dataset = load_extracts(generated_dir)
    frame = dataset.frame[list(FEATURES)]
    pipeline = candidates(seed=0)["hist_gradient_boosting"].fit(frame, dataset.target)
    scorer = Scorer(pipeline, threshold=0.5, top_k=3)
    assert scorer.explanation_method.startswith("occlusion")
    scores = scorer.score(frame.iloc[:20])
    assert all(len(s.top_factors) == 3 for s in scores)
    assert all(s.prediction == int(s.probability >= 0.5) for s in scores)


def test_risk_bands_follow_the_threshold():
    assert risk_band(0.6, 0.5) == "high"
    assert risk_band(0.3, 0.5) == "medium"
    assert risk_band(0.2, 0.5) == "low"
