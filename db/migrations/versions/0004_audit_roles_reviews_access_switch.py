"""audit: who asked (client, endpoint), roles, reviews, access events, the scoring switch

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 09:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    op.add_column('predictions', sa.Column('client', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
    op.add_column('predictions', sa.Column('endpoint', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True))
    op.create_index('ix_predictions_client_created', 'predictions', ['client', 'created_at'], unique=False)
    with op.batch_alter_table('api_keys') as batch:
        batch.add_column(sa.Column('roles', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
    op.execute("UPDATE api_keys SET roles = role")
    with op.batch_alter_table('api_keys') as batch:
        batch.alter_column('roles', existing_type=sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False)
        batch.drop_column('role')
    op.create_table('reviews',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('prediction_id', sa.Uuid(), nullable=False),
    sa.Column('decision', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('note', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
    sa.Column('reviewer', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['prediction_id'], ['predictions.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_reviews_created_at'), 'reviews', ['created_at'], unique=False)
    op.create_index(op.f('ix_reviews_prediction_id'), 'reviews', ['prediction_id'], unique=False)
    op.create_table('access_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('client', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('route', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('query', JSON, nullable=True),
    sa.Column('employee_ids', JSON, nullable=False),
    sa.Column('employee_count', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_access_events_client'), 'access_events', ['client'], unique=False)
    op.create_index(op.f('ix_access_events_created_at'), 'access_events', ['created_at'], unique=False)
    op.create_table('scoring_switches',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('suspended', sa.Boolean(), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
    sa.Column('actor', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_scoring_switches_created_at'), 'scoring_switches', ['created_at'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_scoring_switches_created_at'), table_name='scoring_switches')
    op.drop_table('scoring_switches')
    op.drop_index(op.f('ix_access_events_created_at'), table_name='access_events')
    op.drop_index(op.f('ix_access_events_client'), table_name='access_events')
    op.drop_table('access_events')
    op.drop_index(op.f('ix_reviews_prediction_id'), table_name='reviews')
    op.drop_index(op.f('ix_reviews_created_at'), table_name='reviews')
    op.drop_table('reviews')
    with op.batch_alter_table('api_keys') as batch:
        batch.add_column(sa.Column('role', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True))
    op.execute("UPDATE api_keys SET role = CASE WHEN roles LIKE '%predict%' THEN 'predict' ELSE 'read' END")
    with op.batch_alter_table('api_keys') as batch:
        batch.alter_column('role', existing_type=sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False)
        batch.drop_column('roles')
    op.drop_index('ix_predictions_client_created', table_name='predictions')
    op.drop_column('predictions', 'endpoint')
    op.drop_column('predictions', 'client')
