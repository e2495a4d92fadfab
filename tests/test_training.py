import json
from pathlib import Path

import bentoml
import pytest

from training.contract import FEATURES, contract_description
from training.extracts import load_extracts
from training.fit import train
from training.store import MODEL_NAME, load

from .conftest import REAL_DATA_DIR as REAL_DATA
from .conftest import run_cli


def test_saved_model_metadata_is_complete(trained_tag):
    model = bentoml.models.get(trained_tag)
    assert model.tag.name == MODEL_NAME
    meta = model.info.metadata
    assert 0 < meta["threshold"] < 1
    metrics = meta["metrics"]
    assert set(metrics["cross_validation"]) == {
        "logistic_regression",
        "hist_gradient_boosting",
        "random_forest",
    }
    chosen = metrics["cross_validation"][metrics["estimator"]]
    assert chosen["average_precision_mean"] == max(
        m["average_precision_mean"] for m in metrics["cross_validation"].values()
    )
    assert {"roc_auc_mean", "roc_auc_std", "average_precision_std"} <= set(chosen)
    assert "F2" in metrics["threshold_rule"]
    assert meta["contract"]["features"] == list(FEATURES)
    assert (
        meta["contract"]["categorical_features"] == contract_description()["categorical_features"]
    )
    data = meta["training_data"]
    assert data["generated"] is True and data["rows"] == 600 and len(data["sha256"]) == 64
    assert {"scikit-learn", "bentoml", "python"} <= set(meta["libraries"])
    assert model.info.labels["data"] == "generated"


def test_stored_pipeline_scores_raw_fields_alone(trained_tag, holdout_dir):
    stored = load(trained_tag)
    frame = load_extracts(holdout_dir).frame
    probability = stored.pipeline.predict_proba(frame)[:, 1]  # raw columns, extras ignored
    assert probability.shape == (len(frame),)
    assert ((probability >= 0) & (probability <= 1)).all()


def test_evaluate_json_on_other_extracts(trained_tag, holdout_dir):
    run = run_cli("evaluate", "--data-dir", str(holdout_dir), "--model", trained_tag, "--json")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert {"roc_auc", "average_precision", "precision", "recall", "f1", "threshold", "n"} <= set(
        report
    )
    assert report["n"] == 300
    assert report["threshold"] == bentoml.models.get(trained_tag).info.metadata["threshold"]
    # generated data carries a real signal: a model trained on one seed ranks another
    assert report["roc_auc"] > 0.7


def test_evaluate_unknown_model_says_how_to_train(holdout_dir):
    run = run_cli(
        "evaluate", "--data-dir", str(holdout_dir), "--model", "attrition_pipeline:doesnotexist"
    )
    assert run.returncode == 2
    assert "attrition train" in run.stderr and "Traceback" not in run.stderr


def test_model_card_and_pr_curve_written(trained_tag, session_home):
    reports = session_home / "reports"
    assert trained_tag in (reports / "model_card.md").read_text()
    assert (reports / "precision_recall.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.skipif(not REAL_DATA, reason="ATTRITION_DATA_DIR is not set: no real extracts")
def test_quality_on_real_extracts():
    dataset = load_extracts(Path(REAL_DATA))
    result = train(dataset, folds=5, seed=0, progress=lambda _: None)
    chosen = result.cv[result.estimator]
    assert chosen["roc_auc_mean"] >= 0.80
    assert chosen["average_precision_mean"] >= 0.58
