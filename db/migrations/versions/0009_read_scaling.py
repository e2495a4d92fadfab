"""read scaling: daily roll-ups and latest-per-employee tables kept by triggers, paging indexes

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-25 12:00:00

The tables exist on both backends (one schema); only PostgreSQL fills them, by statement-level
triggers on `predictions` (one aggregated upsert per COPY or INSERT, not one per row). SQLite
reads the history directly (persistence.rollups says which reads use them and when).
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Concurrent writers spread their roll-up updates over this many rows per key (by
# transaction id), so two batches rarely wait on each other's row lock; reads sum the slots.
SLOTS = 8

# What `persistence.queries.prediction_stats` groups by, as SQL over a `predictions` row `p`.
GROUPS = {
    'departement': "p.input ->> 'departement'",
    'poste': "p.input ->> 'poste'",
    'genre': "p.input ->> 'genre'",
    'statut_marital': "p.input ->> 'statut_marital'",
    'age_band': "CASE WHEN CAST(p.input ->> 'age' AS INTEGER) < 30 THEN '<30'"
    " WHEN CAST(p.input ->> 'age' AS INTEGER) < 45 THEN '30-44' ELSE '>=45' END",
    'day': "CAST(CAST(p.created_at AT TIME ZONE 'UTC' AS DATE) AS TEXT)",
}
BAND = (
    "CASE WHEN p.probability >= GREATEST(p.threshold, 0.5) THEN 'high'"
    " WHEN p.probability >= p.threshold THEN 'medium' ELSE 'low' END"
)
MONTH = "to_char(p.created_at AT TIME ZONE 'UTC', 'YYYY-MM')"


def _rollup_delta(rows: str, sign: str) -> str:
    groups = " UNION ALL ".join(
        f"SELECT '{name}' AS dimension, {expression} AS value, p.* FROM {rows} p"
        for name, expression in GROUPS.items()
    )
    return f"""
    INSERT INTO prediction_rollups AS r
        (dimension, value, day, model_tag, slot, count, positives, probability_sum)
    SELECT g.dimension, g.value, CAST(g.created_at AT TIME ZONE 'UTC' AS DATE), g.model_tag,
           CAST(mod(txid_current(), {SLOTS}) AS SMALLINT),
           {sign} count(*), {sign} sum(g.prediction), {sign} sum(g.probability)
    FROM ({groups}) g
    GROUP BY 1, 2, 3, 4
    ORDER BY 1, 2, 3, 4
    ON CONFLICT (dimension, value, day, model_tag, slot) DO UPDATE
    SET count = r.count + EXCLUDED.count, positives = r.positives + EXCLUDED.positives,
        probability_sum = r.probability_sum + EXCLUDED.probability_sum;
    """


LATEST_COLUMNS = (
    "employee_id, model_tag, prediction_id, created_at, probability, prediction, threshold, "
    "departement, poste, band, input"
)
LATEST_VALUES = (
    "p.employee_id, p.model_tag, p.id, p.created_at, p.probability, p.prediction, "
    f"p.threshold, p.input ->> 'departement', p.input ->> 'poste', {BAND}, p.input"
)
MONTHLY_COLUMNS = (
    "employee_id, model_tag, month, prediction_id, created_at, probability, prediction, threshold"
)
MONTHLY_VALUES = (
    f"p.employee_id, p.model_tag, {MONTH}, p.id, p.created_at, p.probability, p.prediction, "
    "p.threshold"
)


def _latest_upsert(table: str, columns: str, values: str, key: str, key_of_p: str) -> str:
    """Keep, per key, the newest row (created_at, then id) of the statement's rows `p`."""
    updates = ", ".join(
        f"{c} = EXCLUDED.{c}" for c in columns.split(", ") if c not in key.split(", ")
    )
    return f"""
    INSERT INTO {table} AS l ({columns})
    SELECT DISTINCT ON ({key_of_p}) {values} FROM new_rows p
    WHERE p.employee_id IS NOT NULL
    ORDER BY {key_of_p}, p.created_at DESC, p.id DESC
    ON CONFLICT ({key}) DO UPDATE SET {updates}
    WHERE (l.created_at, l.prediction_id) < (EXCLUDED.created_at, EXCLUDED.prediction_id);
    """


def _latest_recompute(table: str, columns: str, values: str, key: str, key_of_p: str) -> str:
    """After a delete: the keys whose kept row left get the newest row that remains; those
    with none left lose their row."""
    key_of_l = ", ".join(f"l.{k}" for k in key.split(", "))
    updates = ", ".join(
        f"{c} = EXCLUDED.{c}" for c in columns.split(", ") if c not in key.split(", ")
    )
    return f"""
    INSERT INTO {table} AS l ({columns})
    SELECT DISTINCT ON ({key_of_p}) {values} FROM predictions p
    WHERE ({key_of_p}) IN (
        SELECT {key_of_l} FROM {table} l JOIN old_rows o ON l.prediction_id = o.id
    )
    ORDER BY {key_of_p}, p.created_at DESC, p.id DESC
    ON CONFLICT ({key}) DO UPDATE SET {updates};
    DELETE FROM {table} l USING old_rows o WHERE l.prediction_id = o.id;
    """


MONTHLY_KEY_OF_P = f"p.employee_id, p.model_tag, {MONTH}"


def _functions() -> list[str]:
    latest = ("latest_predictions", LATEST_COLUMNS, LATEST_VALUES, "employee_id, model_tag",
              "p.employee_id, p.model_tag")
    monthly = ("latest_monthly_predictions", MONTHLY_COLUMNS, MONTHLY_VALUES,
               "employee_id, model_tag, month", MONTHLY_KEY_OF_P)
    # SECURITY DEFINER: the service's role may only read these tables (db.SERVICE_PRIVILEGES);
    # the triggers write them as the tables' owner, with a fixed search_path.
    header = "RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS"
    return [
        f"""CREATE FUNCTION predictions_after_insert() {header} $$
        BEGIN
        {_rollup_delta('new_rows', '')}
        {_latest_upsert(*latest)}
        {_latest_upsert(*monthly)}
        RETURN NULL;
        END $$""",
        f"""CREATE FUNCTION predictions_after_delete() {header} $$
        BEGIN
        {_rollup_delta('old_rows', '-')}
        {_latest_recompute(*latest)}
        {_latest_recompute(*monthly)}
        RETURN NULL;
        END $$""",
    ]


def upgrade() -> None:
    op.create_table('prediction_rollups',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('dimension', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('value', sa.Text(), nullable=True),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('model_tag', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('slot', sa.SmallInteger(), nullable=False),
    sa.Column('count', sa.BigInteger(), nullable=False),
    sa.Column('positives', sa.BigInteger(), nullable=False),
    sa.Column('probability_sum', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('latest_predictions',
    sa.Column('employee_id', sa.Integer(), nullable=False),
    sa.Column('model_tag', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('prediction_id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('probability', sa.Float(), nullable=False),
    sa.Column('prediction', sa.SmallInteger(), nullable=False),
    sa.Column('threshold', sa.Float(), nullable=False),
    sa.Column('departement', sa.Text(), nullable=True),
    sa.Column('poste', sa.Text(), nullable=True),
    sa.Column('band', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('input', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.PrimaryKeyConstraint('employee_id', 'model_tag')
    )
    op.create_index('ix_latest_predictions_model_created', 'latest_predictions', ['model_tag', 'created_at'], unique=False)
    op.create_index('ix_latest_predictions_probability', 'latest_predictions', [sa.text('probability DESC'), 'employee_id'], unique=False)
    op.create_table('latest_monthly_predictions',
    sa.Column('employee_id', sa.Integer(), nullable=False),
    sa.Column('model_tag', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('month', sqlmodel.sql.sqltypes.AutoString(length=7), nullable=False),
    sa.Column('prediction_id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('probability', sa.Float(), nullable=False),
    sa.Column('prediction', sa.SmallInteger(), nullable=False),
    sa.Column('threshold', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('employee_id', 'model_tag', 'month')
    )
    op.create_index('ix_latest_monthly_predictions_model_created', 'latest_monthly_predictions', ['model_tag', 'created_at'], unique=False)
    # History pages, newest first with the id as tie-break, one index per filter.
    op.create_index('ix_predictions_created_id', 'predictions', [sa.text('created_at DESC'), 'id'], unique=False)
    op.create_index('ix_predictions_employee_created_id', 'predictions', ['employee_id', sa.text('created_at DESC'), 'id'], unique=False)
    op.drop_index('ix_predictions_employee_created', table_name='predictions')
    if op.get_bind().dialect.name != "postgresql":
        return
    # Rows that name no employee count once each in drift: found without scanning the rest.
    op.execute("CREATE INDEX ix_predictions_anonymous_model_created ON predictions"
               " (model_tag, created_at) WHERE employee_id IS NULL")
    op.execute("CREATE UNIQUE INDEX uq_prediction_rollups_key ON prediction_rollups"
               " (dimension, value, day, model_tag, slot) NULLS NOT DISTINCT")
    for statement in _functions():
        op.execute(statement)
    op.execute("CREATE TRIGGER predictions_rollups_insert AFTER INSERT ON predictions"
               " REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT"
               " EXECUTE FUNCTION predictions_after_insert()")
    op.execute("CREATE TRIGGER predictions_rollups_delete AFTER DELETE ON predictions"
               " REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT"
               " EXECUTE FUNCTION predictions_after_delete()")
    _backfill()


def _backfill() -> None:
    """Rows written before this revision, as if each had been inserted now."""
    op.execute("CREATE TEMPORARY VIEW new_rows AS SELECT * FROM predictions")
    op.execute(_rollup_delta('new_rows', '').replace(
        f"CAST(mod(txid_current(), {SLOTS}) AS SMALLINT)", "CAST(0 AS SMALLINT)"))
    op.execute(_latest_upsert("latest_predictions", LATEST_COLUMNS, LATEST_VALUES,
                              "employee_id, model_tag", "p.employee_id, p.model_tag"))
    op.execute(_latest_upsert("latest_monthly_predictions", MONTHLY_COLUMNS, MONTHLY_VALUES,
                              "employee_id, model_tag, month", MONTHLY_KEY_OF_P))
    op.execute("DROP VIEW new_rows")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER predictions_rollups_delete ON predictions")
        op.execute("DROP TRIGGER predictions_rollups_insert ON predictions")
        op.execute("DROP FUNCTION predictions_after_delete()")
        op.execute("DROP FUNCTION predictions_after_insert()")
        op.execute("DROP INDEX ix_predictions_anonymous_model_created")
    op.create_index('ix_predictions_employee_created', 'predictions', ['employee_id', 'created_at'], unique=False)
    op.drop_index('ix_predictions_employee_created_id', table_name='predictions')
    op.drop_index('ix_predictions_created_id', table_name='predictions')
    op.drop_index('ix_latest_monthly_predictions_model_created', table_name='latest_monthly_predictions')
    op.drop_table('latest_monthly_predictions')
    op.drop_index('ix_latest_predictions_probability', table_name='latest_predictions')
    op.drop_index('ix_latest_predictions_model_created', table_name='latest_predictions')
    op.drop_table('latest_predictions')
    op.drop_table('prediction_rollups')
