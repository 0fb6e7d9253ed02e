"""An index on shadowscore.log_id

Revision ID: 0014_shadow_log_index
Revises: 0013_cache_token_classes
Create Date: 2026-12-06

The reservoir's trim and the retention sweep keep every record a shadow score points at
(`NOT EXISTS (... shadowscore.log_id = logrecord.id)`), and PostgreSQL checks the foreign key
for every record deleted: without this index each is a scan of shadowscore (the unique
(watch_id, log_id) constraint cannot serve a lookup by log_id alone).
"""
from typing import Sequence, Union

from alembic import op

revision: str = "0014_shadow_log_index"
down_revision: Union[str, None] = "0013_cache_token_classes"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_index("ix_shadowscore_log_id", "shadowscore", ["log_id"])


def downgrade() -> None:
    op.drop_index("ix_shadowscore_log_id", table_name="shadowscore")
