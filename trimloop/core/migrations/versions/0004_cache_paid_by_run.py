"""cached responses remember the run that paid for them

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02

A run resumed after a crash seeds its spend ledger from the responses its earlier attempt paid
for (written in the same commit as each response), so its dollar cap holds across the crash.
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: Union[str, None] = "0003"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table("cachedresponse", schema=None) as batch_op:
        batch_op.add_column(sa.Column("run_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_cachedresponse_run_id"), ["run_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("cachedresponse", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cachedresponse_run_id"))
        batch_op.drop_column("run_id")
