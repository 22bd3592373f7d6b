"""notifications

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

User notifications (API.md §10): `users.notify` (channel switches, all on),
`users.phone` (E.164) and `users.phone_verified`; `phone_codes`, the pending
texted code of a phone by keyed hash with its expiry and wrong tries;
`known_devices`, the (user agent, IP) pairs a user signed in from, by hash,
so `login.new_device` is one primary-key lookup.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column(
            'notify', sa.JSON(), nullable=False,
            server_default='{"push": true, "sms": true, "email": true}',
        ))
        batch_op.add_column(sa.Column('phone', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column(
            'phone_verified', sa.Boolean(), nullable=False, server_default=sa.false()
        ))
    op.create_table('phone_codes',
    sa.Column('user_id', sa.String(length=36), nullable=False),
    sa.Column('phone', sa.String(length=16), nullable=False),
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False, server_default='0'),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_phone_codes_user_id_users'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', name=op.f('pk_phone_codes'))
    )
    op.create_table('known_devices',
    sa.Column('user_id', sa.String(length=36), nullable=False),
    sa.Column('device_hash', sa.String(length=64), nullable=False),
    sa.Column('last_seen', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'],
                            name=op.f('fk_known_devices_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', 'device_hash', name=op.f('pk_known_devices'))
    )


def downgrade() -> None:
    op.drop_table('known_devices')
    op.drop_table('phone_codes')
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('phone_verified')
        batch_op.drop_column('phone')
        batch_op.drop_column('notify')
