"""shadow predictions: the challenger's scores of the champion's calls

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('shadow_predictions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('prediction_id', sa.Uuid(), nullable=False),
    sa.Column('model_tag', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('probability', sa.Float(), nullable=False),
    sa.Column('prediction', sa.SmallInteger(), nullable=False),
    sa.Column('threshold', sa.Float(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['prediction_id'], ['predictions.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_shadow_predictions_created_at'), 'shadow_predictions', ['created_at'], unique=False)
    op.create_index(op.f('ix_shadow_predictions_model_tag'), 'shadow_predictions', ['model_tag'], unique=False)
    op.create_index(op.f('ix_shadow_predictions_prediction_id'), 'shadow_predictions', ['prediction_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_shadow_predictions_prediction_id'), table_name='shadow_predictions')
    op.drop_index(op.f('ix_shadow_predictions_model_tag'), table_name='shadow_predictions')
    op.drop_index(op.f('ix_shadow_predictions_created_at'), table_name='shadow_predictions')
    op.drop_table('shadow_predictions')
