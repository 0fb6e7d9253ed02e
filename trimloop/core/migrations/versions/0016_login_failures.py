"""Failed-login counts in the database, shared by every `trimloop serve` process

Revision ID: 0016_login_failures
Revises: 0015_eval_result_ttft
Create Date: 2026-12-06

`loginfailure`: one row per client address with failed logins in its current fixed window
(api.auth.LoginLimiter); rows whose window has ended are deleted as new windows start.
"""
from typing import Sequence, Union

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0016_login_failures"
down_revision: Union[str, None] = "0015_eval_result_ttft"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "loginfailure",
        sa.Column("client", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("window_start", sa.Float(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("locked_until", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("client"),
    )
    op.create_index(op.f("ix_loginfailure_window_start"), "loginfailure", ["window_start"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_loginfailure_window_start"), table_name="loginfailure")
    op.drop_table("loginfailure")
