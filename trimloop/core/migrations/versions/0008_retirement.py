"""model retirements and traffic sampling

Revision ID: 0008_retirement
Revises: 0007
Create Date: 2026-12-05

`logrecord.sample_rate`: the share of calls the source logged (NULL, every existing row: all of
them). `suggestion.retires_on`: the day the baseline's model retires, on a migration suggestion
(the queue sorts by it). `notification`: notifications sent once each (`model.retiring` at 60, 30
and 7 days), under a unique key.
"""
from typing import Sequence, Union

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0008_retirement"
down_revision: Union[str, None] = "0007"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table("logrecord", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sample_rate", sa.Float(), nullable=True))
    with op.batch_alter_table("suggestion", schema=None) as batch_op:
        batch_op.add_column(sa.Column("retires_on", sa.Date(), nullable=True))
        batch_op.create_index(batch_op.f("ix_suggestion_retires_on"), ["retires_on"], unique=False)
    op.create_table(
        "notification",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event", sqlmodel.sql.sqltypes.AutoString(length=50), nullable=False),
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=400), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("delivered", sa.Boolean(), nullable=False),
        sa.Column("sent_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
    )


def downgrade() -> None:
    op.drop_table("notification")
    with op.batch_alter_table("suggestion", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_suggestion_retires_on"))
        batch_op.drop_column("retires_on")
    with op.batch_alter_table("logrecord", schema=None) as batch_op:
        batch_op.drop_column("sample_rate")
