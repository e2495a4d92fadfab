"""Schema-faithful synthetic HR extracts, for every run where no real extracts are configured.

The three files have the real columns (typos included), value domains, string formats
(``"11 %"``, ``"Oui"``, ``E_12``, ``000012``) and join keys. Departure follows a logistic model
of overtime, satisfaction, seniority, pay, travel and age, so a model has a real signal to
learn. Deterministic by seed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from training.contract import CATEGORIES, SOURCES, TARGET

DEFAULT_ROWS = 1176

# Department -> jobs found in that department in the real extracts.
_JOBS_BY_DEPARTMENT = {
    "Commercial": ["Cadre Commercial", "Représentant Commercial", "Manager", "Senior Manager"],
    "Consulting": ["Consultant", "Tech Lead", "Directeur Technique", "Manager", "Senior Manager"],
    "Ressources Humaines": ["Ressources Humaines", "Assistant de Direction", "Manager"],
}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-x)))


def generate_extracts(rows: int = DEFAULT_ROWS, seed: int = 0) -> dict[str, pd.DataFrame]:
    """Return the three extracts, keyed like `training.contract.SOURCES`, as raw strings."""
    rng = np.random.default_rng(seed)
    ids = np.sort(rng.choice(np.arange(1, rows * 2 + 1), size=rows, replace=False))

    age = rng.integers(18, 61, rows)
    total_years = np.minimum(age - 18, rng.gamma(2.0, 5.0, rows).astype(int))
    company_years = np.minimum(total_years, rng.gamma(1.5, 4.0, rows).astype(int))
    role_years = np.minimum(company_years, rng.integers(0, 19, rows))
    manager_years = np.minimum(company_years, rng.integers(0, 18, rows))
    promotion_years = np.minimum(company_years, rng.integers(0, 16, rows))
    level = np.clip(1 + total_years // 8 + rng.integers(0, 2, rows), 1, 5)
    income = np.clip(1009 + level * 3000 + rng.normal(0, 1500, rows), 1009, 19999).astype(int)
    department = rng.choice(list(_JOBS_BY_DEPARTMENT), rows, p=[0.3, 0.65, 0.05])
    job = np.array([rng.choice(_JOBS_BY_DEPARTMENT[d]) for d in department])
    overtime = rng.random(rows) < 0.28
    satisfaction = {
        name: rng.integers(1, 5, rows)
        for name in (
            "satisfaction_employee_environnement",
            "satisfaction_employee_nature_travail",
            "satisfaction_employee_equipe",
            "satisfaction_employee_equilibre_pro_perso",
        )
    }
    travel = rng.choice(CATEGORIES["frequence_deplacement"], rows, p=[0.1, 0.2, 0.7])
    stock = rng.choice(4, rows, p=[0.43, 0.4, 0.11, 0.06])
    marital = rng.choice(CATEGORIES["statut_marital"], rows, p=[0.32, 0.22, 0.46])
    distance = rng.integers(1, 30, rows)
    raise_pct = rng.integers(11, 26, rows)
    last_rating = np.where(raise_pct >= 20, 4, 3)

    logit = (
        -2.2
        + 1.6 * overtime
        - 0.35 * (sum(satisfaction.values()) - 10)
        - 0.06 * (company_years - 7)
        - 0.00012 * (income - 6500)
        + 0.8 * (travel == "Frequent")
        - 0.04 * (age - 37)
        - 0.45 * (stock > 0)
        + 0.5 * (marital == "Célibataire")
        + 0.03 * (distance - 9)
    )
    left = rng.random(rows) < _sigmoid(logit)

    sirh = pd.DataFrame(
        {
            "id_employee": ids,
            "age": age,
            "genre": rng.choice(CATEGORIES["genre"], rows, p=[0.4, 0.6]),
            "revenu_mensuel": income,
            "statut_marital": marital,
            "departement": department,
            "poste": job,
            "nombre_experiences_precedentes": rng.integers(0, 10, rows),
            "nombre_heures_travailless": 80,
            "annee_experience_totale": total_years,
            "annees_dans_l_entreprise": company_years,
            "annees_dans_le_poste_actuel": role_years,
        }
    )
    review = pd.DataFrame(
        {
            "satisfaction_employee_environnement": satisfaction[
                "satisfaction_employee_environnement"
            ],
            "note_evaluation_precedente": rng.integers(1, 5, rows),
            "niveau_hierarchique_poste": level,
            "satisfaction_employee_nature_travail": satisfaction[
                "satisfaction_employee_nature_travail"
            ],
            "satisfaction_employee_equipe": satisfaction["satisfaction_employee_equipe"],
            "satisfaction_employee_equilibre_pro_perso": satisfaction[
                "satisfaction_employee_equilibre_pro_perso"
            ],
            "eval_number": [f"E_{i}" for i in ids],
            "note_evaluation_actuelle": last_rating,
            "heure_supplementaires": np.where(overtime, "Oui", "Non"),
            "augementation_salaire_precedente": [f"{p} %" for p in raise_pct],
        }
    )
    survey = pd.DataFrame(
        {
            TARGET: np.where(left, "Oui", "Non"),
            "nombre_participation_pee": stock,
            "nb_formations_suivies": rng.integers(0, 7, rows),
            "nombre_employee_sous_responsabilite": 1,
            "code_sondage": [f"{i:06d}" for i in ids],
            "distance_domicile_travail": distance,
            "niveau_education": rng.integers(1, 6, rows),
            "domaine_etude": rng.choice(CATEGORIES["domaine_etude"], rows),
            "ayant_enfants": "Y",
            "frequence_deplacement": travel,
            "annees_depuis_la_derniere_promotion": promotion_years,
            "annes_sous_responsable_actuel": manager_years,
        }
    )
    return {"sirh": sirh, "eval": review, "sondage": survey}


def write_extracts(folder: Path, rows: int = DEFAULT_ROWS, seed: int = 0) -> Path:
    """Write the three generated extracts into `folder` under their real file names."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for source, frame in generate_extracts(rows, seed).items():
        frame.to_csv(folder / SOURCES[source][0], index=False)
    return folder
