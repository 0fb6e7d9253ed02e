"""API tokens stored as a SHA-256 digest under a unique index

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05

`apitoken.digest`: a token is 32 random bytes, so its SHA-256 is enough, and one indexed lookup
replaces the prefix scan and PBKDF2. Existing tokens keep their PBKDF2 `salt` and `token_hash`
(now nullable) until their first use checks them once and stores the digest; new tokens have none.
"""
from datetime import datetime, timezone
from typing import Sequence, Union

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0007"
down_revision: Union[str, None] = "0006"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table("apitoken", schema=None) as batch_op:
        batch_op.add_column(sa.Column("digest", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch_op.alter_column("salt", existing_type=sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True)
        batch_op.alter_column("token_hash", existing_type=sqlmodel.sql.sqltypes.AutoString(length=128),
                              nullable=True)
        batch_op.create_index(batch_op.f("ix_apitoken_digest"), ["digest"], unique=True)


def downgrade() -> None:
    # A token that has only a digest (made, or first used, since 0007) has no PBKDF2 hash to go back
    # to: it is revoked, with a hash that matches nothing, so its row and audit trail stay.
    revoke = sa.text("UPDATE apitoken SET salt = '', token_hash = '', revoked_at = COALESCE(revoked_at, :now) "
                     "WHERE token_hash IS NULL").bindparams(
        sa.bindparam("now", datetime.now(timezone.utc), type_=sqlmodel.sql.sqltypes.UTCDateTime()))
    op.get_bind().execute(revoke)
    with op.batch_alter_table("apitoken", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_apitoken_digest"))
        batch_op.alter_column("token_hash", existing_type=sqlmodel.sql.sqltypes.AutoString(length=128),
                              nullable=False)
        batch_op.alter_column("salt", existing_type=sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False)
        batch_op.drop_column("digest")
