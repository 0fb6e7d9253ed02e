"""The prompt-and-time log index holds only records that named no version

Revision ID: 0018_unversioned_log_index
Revises: 0017_report_indexes
Create Date: 2026-12-07

`ix_logrecord_prompt_time` (prompt_id, called_at) covered every record, although a record with a
version is found through `ix_logrecord_version_time`: it served only the reservoir of records
that named no version (trimmed by prompt and day) and the baseline's read of a prompt's records,
which now asks for the prompt's versions or no version. The index keeps its columns and holds only
the records without a version; on PostgreSQL the full index took ~46 B a record (records of 50
prompts interleave in time, so its pages split half empty): ~140 MB of a 10M-call store.
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0018_unversioned_log_index"
down_revision: Union[str, None] = "0017_report_indexes"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

UNVERSIONED = "version_id IS NULL"  # core.tables.UNVERSIONED, written out: a migration stays as it was


def upgrade() -> None:
    op.create_index("ix_logrecord_unversioned", "logrecord", ["prompt_id", "called_at"],
                    sqlite_where=sa.text(UNVERSIONED), postgresql_where=sa.text(UNVERSIONED))
    op.drop_index("ix_logrecord_prompt_time", table_name="logrecord")


def downgrade() -> None:
    op.create_index("ix_logrecord_prompt_time", "logrecord", ["prompt_id", "called_at"])
    op.drop_index("ix_logrecord_unversioned", table_name="logrecord")
