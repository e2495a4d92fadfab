"""latest input columns: each model feature of the kept latest input as its own column

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-25 15:00:00

`/drift` reads the 27 features of the latest input of every employee. Extracted from the JSONB
copy at read time (one `jsonb_to_record` per row) that cost ~40 ms of SQL for 10,000 employees;
as columns PostgreSQL computes once per write (stored generated columns, so the triggers of
0009 are unchanged and a purge's recompute keeps them exact), the read costs ~10 ms.
`departement` and `poste` are columns since 0009. A contract feature added later needs its
column here too (tests/test_read_scaling.py compares the contract with the table); until
then `/drift` reads the history, as on SQLite. On SQLite the columns are virtual (unused).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The contract's features (training.contract.FEATURES) of this revision, but departement and
# poste; text, as `->>` reads them, so a value never fails a write.
COLUMNS = (
    'age', 'genre', 'revenu_mensuel', 'statut_marital', 'nombre_experiences_precedentes',
    'annee_experience_totale', 'annees_dans_l_entreprise', 'annees_dans_le_poste_actuel',
    'satisfaction_employee_environnement', 'note_evaluation_precedente',
    'niveau_hierarchique_poste', 'satisfaction_employee_nature_travail',
    'satisfaction_employee_equipe', 'satisfaction_employee_equilibre_pro_perso',
    'note_evaluation_actuelle', 'heure_supplementaires', 'augementation_salaire_precedente',
    'nombre_participation_pee', 'nb_formations_suivies', 'distance_domicile_travail',
    'niveau_education', 'domaine_etude', 'frequence_deplacement',
    'annees_depuis_la_derniere_promotion', 'annes_sous_responsable_actuel',
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":  # one rewrite of the table, not 25
        op.execute("ALTER TABLE latest_predictions " + ", ".join(
            f"ADD COLUMN {name} TEXT GENERATED ALWAYS AS (input ->> '{name}') STORED"
            for name in COLUMNS))
        return
    for name in COLUMNS:
        op.add_column('latest_predictions',
                      sa.Column(name, sa.Text(), sa.Computed(f"input ->> '{name}'")))


def downgrade() -> None:
    with op.batch_alter_table('latest_predictions') as batch:
        for name in reversed(COLUMNS):
            batch.drop_column(name)
