"""tokens not before

Revision ID: 0004
Revises: 0002
Create Date: 2026-12-02

Logout-all, password change, admin disable, delete and revoke-sessions, and
`gatehouse sessions revoke-all`, used to revoke only the session rows that
existed. After a database restore those rows can be gone while their access
tokens still circulate. They now also record a not-before time per user (and
`*` for everyone, from `sessions revoke-all` without `--user`): access tokens
issued at or before it answer `session_revoked` (API.md §3).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('token_not_before',
    sa.Column('subject', sa.String(length=36), nullable=False),
    sa.Column('not_before', sa.DateTime(timezone=True), nullable=False),
    sa.Column('keep_session', sa.String(length=36), nullable=True),
    sa.PrimaryKeyConstraint('subject', name=op.f('pk_token_not_before'))
    )
    with op.batch_alter_table('token_not_before', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_token_not_before_not_before'), ['not_before'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('token_not_before', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_token_not_before_not_before'))
    op.drop_table('token_not_before')
