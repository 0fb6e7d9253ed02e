"""notification: attempts and failed hooks, so a failed `model.retiring` delivery is retried

Revision ID: 0012_notification_retry
Revises: 0010_traffic_aggregates
Create Date: 2026-12-06

A notice whose delivery failed (a receiver down for the scheduler's pass) was marked undelivered
and never sent again. `attempts` counts the passes that sent it; `failed_hooks` names (by a hash
of their URL) the webhooks that did not take it, so a later pass retries those only.
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0012_notification_retry"
down_revision: Union[str, None] = "0010_traffic_aggregates"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table("notification", schema=None) as batch_op:
        batch_op.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="1"))
        batch_op.add_column(sa.Column("failed_hooks", sa.JSON(), nullable=False, server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("notification", schema=None) as batch_op:
        batch_op.drop_column("failed_hooks")
        batch_op.drop_column("attempts")
