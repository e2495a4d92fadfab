"""monitoring snapshots: drift and live performance computed by the periodic job

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 09:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    op.create_table('monitoring_snapshots',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('model_tag', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('drift', JSON, nullable=False),
    sa.Column('performance', JSON, nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_monitoring_snapshots_created_at'), 'monitoring_snapshots', ['created_at'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_monitoring_snapshots_created_at'), table_name='monitoring_snapshots')
    op.drop_table('monitoring_snapshots')
