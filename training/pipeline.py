"""The candidate sklearn pipelines: raw contract fields in, probability of leaving out.

Only sklearn and numpy callables go into a pipeline, so the pickled artifact in the model
store needs no code of this project to load and predict.
"""

from __future__ import annotations

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from training.contract import CATEGORIES, NUMERIC_FEATURES

# Right-skewed amounts: a log makes "twice the pay" one step wherever it starts.
SKEWED_FEATURES = (
    "revenu_mensuel",
    "distance_domicile_travail",
    "annee_experience_totale",
    "annees_dans_l_entreprise",
    "annees_dans_le_poste_actuel",
    "annees_depuis_la_derniere_promotion",
    "annes_sous_responsable_actuel",
    "nombre_experiences_precedentes",
)
PLAIN_FEATURES = tuple(f for f in NUMERIC_FEATURES if f not in SKEWED_FEATURES)


def build_preprocessor(categorical: tuple[str, ...] = tuple(CATEGORIES)) -> ColumnTransformer:
    """Scale numbers, log-scale skewed amounts, one-hot the contract's categories."""
    return ColumnTransformer(
        [
            ("num", StandardScaler(), list(PLAIN_FEATURES)),
            (
                "log",
                make_pipeline(
                    FunctionTransformer(np.log1p, feature_names_out="one-to-one"), StandardScaler()
                ),
                list(SKEWED_FEATURES),
            ),
            (
                "cat",
                OneHotEncoder(
                    categories=[list(CATEGORIES[c]) for c in categorical],
                    handle_unknown="ignore",
                    sparse_output=False,
                ),
                list(categorical),
            ),
        ],
        verbose_feature_names_out=True,
    )


def _with_preprocessing(estimator: object) -> Pipeline:
    return Pipeline([("preprocess", build_preprocessor()), ("model", estimator)])


def candidates(seed: int) -> dict[str, Pipeline]:
    """Estimators compared by cross-validation; class weights offset the 16 % positive rate."""
    estimators = {
        "logistic_regression": LogisticRegression(C=0.3, class_weight="balanced", max_iter=2000),
        "hist_gradient_boosting": HistGradientBoostingClassifier(
            learning_rate=0.05,
            max_depth=3,
            max_iter=250,
            l2_regularization=1.0,
            class_weight="balanced",
            random_state=seed,
        ),
        "random_forest": RandomForestClassifier(
            n_estimators=300,
            min_samples_leaf=3,
            class_weight="balanced_subsample",
            n_jobs=1,
            random_state=seed,
        ),
    }
    return {name: _with_preprocessing(e) for name, e in estimators.items()}
