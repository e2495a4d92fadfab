import pytest
from pydantic import ValidationError

from training.contract import (
    CATEGORICAL_FEATURES,
    CONSTANTS,
    FEATURES,
    IDENTIFIERS,
    SOURCES,
    Employee,
    contract_description,
)

RAW = {  # one row exactly as it reads in the extracts
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


def test_raw_extract_values_are_cleaned():
    employee = Employee.model_validate(RAW)
    assert employee.augementation_salaire_precedente == 11.0
    assert employee.heure_supplementaires is True
    assert employee.age == 41
    assert employee.revenu_mensuel == 5993.0


def test_clean_values_are_accepted_and_identifiers_are_optional():
    clean = {k: v for k, v in RAW.items() if k not in IDENTIFIERS + CONSTANTS}
    clean |= {"augementation_salaire_precedente": 11, "heure_supplementaires": False, "age": 41}
    employee = Employee.model_validate(clean)
    assert employee.heure_supplementaires is False
    assert employee.id_employee is None


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [
        ("age", "abc", "int_parsing"),
        ("age", 12, "greater_than_equal"),
        ("age", 41.5, "int_from_float"),
        ("departement", "Finance", "literal_error"),
        ("heure_supplementaires", "peut-être", "bool_parsing"),
        ("augementation_salaire_precedente", "onze %", "float_parsing"),
        ("augementation_salaire_precedente", "150 %", "less_than_equal"),
        ("satisfaction_employee_equipe", 5, "less_than_equal"),
        ("eval_number", "X_1", "string_pattern_mismatch"),
    ],
)
def test_each_kind_of_bad_value_names_field_and_rule(field, value, rule):
    with pytest.raises(ValidationError) as caught:
        Employee.model_validate(RAW | {field: value})
    errors = caught.value.errors()
    assert [(e["loc"], e["type"]) for e in errors] == [((field,), rule)]


def test_missing_required_field_and_unknown_field_are_refused():
    row = {k: v for k, v in RAW.items() if k != "age"} | {"salary": 1}
    with pytest.raises(ValidationError) as caught:
        Employee.model_validate(row)
    assert {(e["loc"][0], e["type"]) for e in caught.value.errors()} == {
        ("age", "missing"),
        ("salary", "extra_forbidden"),
    }


def test_contract_covers_every_extract_column_once():
    per_file = [name for _, _, model in SOURCES.values() for name in model.model_fields]
    assert sorted(per_file) == sorted(Employee.model_fields)
    assert len(per_file) == len(set(per_file))
    assert not set(FEATURES) & set(IDENTIFIERS + CONSTANTS)
    assert set(CATEGORICAL_FEATURES) == {
        "genre",
        "statut_marital",
        "departement",
        "poste",
        "domaine_etude",
        "frequence_deplacement",
    }


def test_contract_description_carries_types_ranges_and_categories():
    description = contract_description()
    properties = description["schema"]["properties"]
    assert properties["age"]["minimum"] == 16 and properties["age"]["maximum"] == 80
    assert description["categorical_features"]["departement"] == [
        "Commercial",
        "Consulting",
        "Ressources Humaines",
    ]
    assert description["target"] == "a_quitte_l_entreprise"
