"""Request bodies: one employee exactly as the extracts spell it."""

from __future__ import annotations

from typing import Any

from training.contract import IDENTIFIERS

RAW: dict[str, Any] = {  # one row exactly as it reads in the extracts
    "id_employee": "1",
    "age": "41",
    "genre": "F",
    "revenu_mensuel": "5993",
    "statut_marital": "Célibataire",
    "departement": "Commercial",
    "poste": "Cadre Commercial",
    "nombre_experiences_precedentes": "8",
    "nombre_heures_travailless": "80",
    "annee_experience_totale": "8",
    "annees_dans_l_entreprise": "6",
    "annees_dans_le_poste_actuel": "4",
    "satisfaction_employee_environnement": "2",
    "note_evaluation_precedente": "3",
    "niveau_hierarchique_poste": "2",
    "satisfaction_employee_nature_travail": "4",
    "satisfaction_employee_equipe": "1",
    "satisfaction_employee_equilibre_pro_perso": "1",
    "eval_number": "E_1",
    "note_evaluation_actuelle": "3",
    "heure_supplementaires": "Oui",
    "augementation_salaire_precedente": "11 %",
    "nombre_participation_pee": "0",
    "nb_formations_suivies": "0",
    "nombre_employee_sous_responsabilite": "1",
    "code_sondage": "000001",
    "distance_domicile_travail": "1",
    "niveau_education": "2",
    "domaine_etude": "Infra & Cloud",
    "ayant_enfants": "Y",
    "frequence_deplacement": "Occasionnel",
    "annees_depuis_la_derniere_promotion": "0",
    "annes_sous_responsable_actuel": "5",
}

# The same employee as a client that knows no identifiers sends it.
ANONYMOUS: dict[str, Any] = {k: v for k, v in RAW.items() if k not in IDENTIFIERS}
