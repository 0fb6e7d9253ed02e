"""suggestion kind: cost or repair

Revision ID: 0010_repair
Revises: 0009_token_classes
Create Date: 2026-12-05

`suggestion.kind`: `cost` (a cheaper version that holds quality; every existing row) or `repair`
(a better version, certified by the superiority test, possibly dearer). The queue marks and
filters by it.
"""
from typing import Sequence, Union

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0010_repair"
down_revision: Union[str, None] = "0009_token_classes"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table("suggestion", schema=None) as batch_op:
        batch_op.add_column(sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False,
                                      server_default="cost"))
        batch_op.create_index(batch_op.f("ix_suggestion_kind"), ["kind"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("suggestion", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_suggestion_kind"))
        batch_op.drop_column("kind")
