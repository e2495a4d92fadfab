import pytest
from pydantic import ValidationError

from tests.support.payloads import RAW
from training.contract import (
    CATEGORICAL_FEATURES,
    CONSTANTS,
    FEATURES,
    IDENTIFIERS,
    SOURCES,
    Employee,
    contract_description,
)


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
