"""Token classes on logs: cached input, cache write, reasoning tokens and a batch flag

Revision ID: 0009_token_classes
Revises: 0008_watch
Create Date: 2026-12-05

`logrecord.cached_input_tokens` / `cache_write_tokens` (parts of input_tokens) and
`reasoning_tokens` (part of output_tokens): NULL where the source did not say (every existing row).
`logrecord.batch`: the call went through a provider's batch API (billed at the batch price).
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0009_token_classes"
down_revision: Union[str, None] = "0008_watch"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table("logrecord", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cached_input_tokens", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("cache_write_tokens", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("reasoning_tokens", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("batch", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("logrecord", schema=None) as batch_op:
        batch_op.drop_column("batch")
        batch_op.drop_column("reasoning_tokens")
        batch_op.drop_column("cache_write_tokens")
        batch_op.drop_column("cached_input_tokens")
