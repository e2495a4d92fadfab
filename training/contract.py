"""The one input contract: an employee as the three HR extracts describe them.

Training validates every merged row with `Employee`, the service accepts exactly `Employee`,
and the model metadata stores its JSON schema, so there is no second copy of the field list.

Values are accepted both as they appear in the extracts (``"11 %"``, ``"Oui"``, ``"41"``) and
in clean form (``11``, ``true``, ``41``). Categories and rating scales are the exact sets found
in the extracts. Open-ended counts (years, euros, kilometres) are bounded by the extract's
observed range widened to a plausible human limit, because a peer that used the sample's
min/max as hard limits rejected real employees the sample did not happen to contain.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal, get_args, get_origin

import pandas as pd
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

TARGET = "a_quitte_l_entreprise"

_TRUE_WORDS = {"oui", "yes", "true", "y", "1"}
_FALSE_WORDS = {"non", "no", "false", "n", "0"}


def _parse_yes_no(value: Any) -> Any:
    """Map the extracts' ``Oui``/``Non`` (and clean booleans) to bool; pydantic does the rest."""
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
    return value


def _parse_percent(value: Any) -> Any:
    """Turn the extract's ``"11 %"`` into ``"11"`` so pydantic's number parsing takes over."""
    if isinstance(value, str):
        return value.strip().removesuffix("%").strip().replace(",", ".")
    return value


def _strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


YesNo = Annotated[bool, BeforeValidator(_parse_yes_no)]
Percent = Annotated[float, BeforeValidator(_parse_percent), Field(ge=0, le=100)]
Rating4 = Annotated[int, Field(ge=1, le=4)]
Level5 = Annotated[int, Field(ge=1, le=5)]
Years = Annotated[int, Field(ge=0, le=50)]

Gender = Annotated[Literal["F", "M"], BeforeValidator(_strip)]
MaritalStatus = Annotated[Literal["Célibataire", "Divorcé(e)", "Marié(e)"], BeforeValidator(_strip)]
Department = Annotated[
    Literal["Commercial", "Consulting", "Ressources Humaines"], BeforeValidator(_strip)
]
Job = Annotated[
    Literal[
        "Assistant de Direction",
        "Cadre Commercial",
        "Consultant",
        "Directeur Technique",
        "Manager",
        "Représentant Commercial",
        "Ressources Humaines",
        "Senior Manager",
        "Tech Lead",
    ],
    BeforeValidator(_strip),
]
StudyField = Annotated[
    Literal[
        "Autre",
        "Entrepreunariat",
        "Infra & Cloud",
        "Marketing",
        "Ressources Humaines",
        "Transformation Digitale",
    ],
    BeforeValidator(_strip),
]
TravelFrequency = Annotated[Literal["Aucun", "Frequent", "Occasionnel"], BeforeValidator(_strip)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)


class HrRecord(_Strict):
    """The columns of the HR master data extract (``extrait_sirh.csv``)."""

    id_employee: Annotated[int, Field(ge=1)] | None = None
    age: Annotated[int, Field(ge=16, le=80)]
    genre: Gender
    revenu_mensuel: Annotated[float, Field(ge=0, le=100_000)]
    statut_marital: MaritalStatus
    departement: Department
    poste: Job
    nombre_experiences_precedentes: Annotated[int, Field(ge=0, le=30)]
    nombre_heures_travailless: Annotated[int, Field(ge=0, le=168)] | None = None
    annee_experience_totale: Years
    annees_dans_l_entreprise: Years
    annees_dans_le_poste_actuel: Years


class Review(_Strict):
    """The columns of the yearly review extract (``extrait_eval.csv``)."""

    satisfaction_employee_environnement: Rating4
    note_evaluation_precedente: Rating4
    niveau_hierarchique_poste: Level5
    satisfaction_employee_nature_travail: Rating4
    satisfaction_employee_equipe: Rating4
    satisfaction_employee_equilibre_pro_perso: Rating4
    eval_number: Annotated[str, Field(pattern=r"^E_\d+$")] | None = None
    note_evaluation_actuelle: Rating4
    heure_supplementaires: YesNo
    augementation_salaire_precedente: Percent


class Survey(_Strict):
    """The columns of the survey extract (``extrait_sondage.csv``), target excepted."""

    nombre_participation_pee: Annotated[int, Field(ge=0, le=3)]
    nb_formations_suivies: Annotated[int, Field(ge=0, le=20)]
    nombre_employee_sous_responsabilite: Annotated[int, Field(ge=0)] | None = None
    code_sondage: Annotated[str, Field(pattern=r"^\d+$")] | None = None
    distance_domicile_travail: Annotated[int, Field(ge=0, le=300)]
    niveau_education: Level5
    domaine_etude: StudyField
    ayant_enfants: Annotated[Literal["Y", "N"], BeforeValidator(_strip)] | None = None
    frequence_deplacement: TravelFrequency
    annees_depuis_la_derniere_promotion: Years
    annes_sous_responsable_actuel: Years


class Employee(Survey, Review, HrRecord):
    """One employee: every column of the three extracts except the target.

    Field order follows the extracts (HR data, review, survey).
    """


# The extract each group of fields comes from, and the column that keys it.
SOURCES: dict[str, tuple[str, str, type[BaseModel]]] = {
    "sirh": ("extrait_sirh.csv", "id_employee", HrRecord),
    "eval": ("extrait_eval.csv", "eval_number", Review),
    "sondage": ("extrait_sondage.csv", "code_sondage", Survey),
}


IDENTIFIERS = ("id_employee", "eval_number", "code_sondage")
# Constant in every extract we have seen; accepted but never a feature.
CONSTANTS = ("nombre_heures_travailless", "nombre_employee_sous_responsabilite", "ayant_enfants")


def _categories(name: str) -> tuple[str, ...] | None:
    annotation = Employee.model_fields[name].annotation
    if get_origin(annotation) is not Literal:
        return None
    return tuple(get_args(annotation))


FEATURES: tuple[str, ...] = tuple(
    name for name in Employee.model_fields if name not in IDENTIFIERS + CONSTANTS
)
CATEGORIES: dict[str, tuple[str, ...]] = {
    name: cats for name in FEATURES if (cats := _categories(name)) is not None
}
CATEGORICAL_FEATURES: tuple[str, ...] = tuple(CATEGORIES)
NUMERIC_FEATURES: tuple[str, ...] = tuple(n for n in FEATURES if n not in CATEGORIES)


def contract_description() -> dict[str, Any]:
    """The contract as stored in model metadata: JSON schema plus the feature split."""
    return {
        "schema": Employee.model_json_schema(),
        "features": list(FEATURES),
        "numeric_features": list(NUMERIC_FEATURES),
        "categorical_features": {k: list(v) for k, v in CATEGORIES.items()},
        "identifiers": list(IDENTIFIERS),
        "constants": list(CONSTANTS),
        "target": TARGET,
    }


def employee_columns(employees: Sequence[Employee]) -> dict[str, list[Any]]:
    """One list per field: what the scorer takes on the hot path (`scoring.fast_transform`
    `Columns`; building a DataFrame per batch cost more than scoring it)."""
    return {name: [getattr(e, name) for e in employees] for name in Employee.model_fields}


def employees_frame(employees: list[Employee]) -> pd.DataFrame:
    """The same columns as a DataFrame (training, evaluation, sklearn's own pipeline)."""
    return pd.DataFrame(employee_columns(employees))
