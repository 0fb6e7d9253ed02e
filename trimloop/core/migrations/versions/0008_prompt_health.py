"""prompt health: each prompt's last verdict and the report behind it

Revision ID: 0008_prompt_health
Revises: 0008_retirement (chained after it when main was merged in)
Create Date: 2026-12-05

One row per prompt (evals.health): the verdict (healthy, degraded, broken, unknown) is what the
scheduler reads to skip broken prompts, and what a `prompt.unhealthy` notification compares with
so that it goes out once per change of verdict.
"""
from typing import Sequence, Union

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0008_prompt_health"
down_revision: Union[str, None] = "0008_retirement"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "prompthealth",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("prompt_id", sa.Integer(), nullable=False),
        sa.Column("verdict", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.Column("checked_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("changed_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["prompt_id"], ["prompt.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("prompthealth", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_prompthealth_prompt_id"), ["prompt_id"], unique=True)
        batch_op.create_index(batch_op.f("ix_prompthealth_verdict"), ["verdict"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("prompthealth", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_prompthealth_verdict"))
        batch_op.drop_index(batch_op.f("ix_prompthealth_prompt_id"))
    op.drop_table("prompthealth")
