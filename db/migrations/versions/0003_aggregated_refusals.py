"""aggregated refusals: count, last_seen_at and client address on audit_events

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('audit_events', sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('audit_events', sa.Column('count', sa.Integer(), server_default='1', nullable=False))
    op.add_column('audit_events', sa.Column('client_address', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))


def downgrade() -> None:
    op.drop_column('audit_events', 'client_address')
    op.drop_column('audit_events', 'count')
    op.drop_column('audit_events', 'last_seen_at')
