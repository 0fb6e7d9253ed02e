"""cachedresponse: the token classes of the answer it replays

Revision ID: 0013_cache_token_classes
Revises: 0012_notification_retry
Create Date: 2026-12-06

A cache hit reported no cached, cache-write or reasoning tokens, so a rerun (or a resumed run)
measured a reasoning lever's candidate at 0 reasoning tokens. Rows written before this have NULL
(unknown), as a provider that does not report them.
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0013_cache_token_classes"
down_revision: Union[str, None] = "0012_notification_retry"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table("cachedresponse", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cached_tokens", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("cache_write_tokens", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("reasoning_tokens", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cachedresponse", schema=None) as batch_op:
        batch_op.drop_column("reasoning_tokens")
        batch_op.drop_column("cache_write_tokens")
        batch_op.drop_column("cached_tokens")
