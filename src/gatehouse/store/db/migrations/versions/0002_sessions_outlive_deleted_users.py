"""sessions outlive a deleted user

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26

Deleting a user used to delete its sessions (ON DELETE CASCADE), so the fact
that they were revoked lived on only in the key-value store: a restart, or an
instance without a shared store, then forgot it, and the deleted user's
refresh tokens answered `refresh_invalid` instead of `session_revoked`
(API.md §3). The revoked sessions now stay, detached (`user_id` NULL), until
the janitor prunes ended sessions.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

_FK = 'fk_sessions_user_id_users'


def upgrade() -> None:
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.drop_constraint(_FK, type_='foreignkey')
        batch_op.alter_column('user_id', existing_type=sa.String(length=36), nullable=True)
        batch_op.create_foreign_key(_FK, 'users', ['user_id'], ['id'], ondelete='SET NULL')


def downgrade() -> None:
    # Detached sessions belong to no user any more; they cannot go back under NOT NULL.
    op.execute("DELETE FROM sessions WHERE user_id IS NULL")
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.drop_constraint(_FK, type_='foreignkey')
        batch_op.alter_column('user_id', existing_type=sa.String(length=36), nullable=False)
        batch_op.create_foreign_key(_FK, 'users', ['user_id'], ['id'], ondelete='CASCADE')
