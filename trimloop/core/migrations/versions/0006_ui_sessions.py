"""web UI sessions in the database

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29

They lived in one server process's memory: a restart signed everyone out, and two `trimloop serve`
processes behind one address did not know each other's sessions. Keyed by a digest of the id.
"""
from typing import Sequence, Union

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0006"
down_revision: Union[str, None] = "0005"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "uisession",
        sa.Column("digest", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("csrf", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("token_id", sa.Integer(), nullable=True),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("role", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True),
        sa.Column("flash", sa.JSON(), nullable=False),
        sa.Column("expires_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("digest"),
    )
    with op.batch_alter_table("uisession", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_uisession_token_id"), ["token_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_uisession_expires_at"), ["expires_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("uisession", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_uisession_expires_at"))
        batch_op.drop_index(batch_op.f("ix_uisession_token_id"))
    op.drop_table("uisession")
