"""Log records have no index by time alone

Revision ID: 0021_no_time_index
Revises: 0020_reservoir_key_index
Create Date: 2026-12-08

`ix_logrecord_time` (called_at) served two reads: the retention sweep and the part-days of a window
that starts or ends inside a day. Both now read their time ranges after a version id from
`ix_logrecord_version_time`, or after NULL for the records that named none (core.traffic.versions_of);
the sweep takes one version at a time, oldest records first. The index cost
~22 B a record ever stored on PostgreSQL: its entries come in time order, so the room a trim or a
sweep frees in its pages is never used again (1M calls over 3 days: 13.1 of a 305 MB database).
"""
from typing import Sequence, Union

from alembic import op

revision: str = "0021_no_time_index"
down_revision: Union[str, None] = "0020_reservoir_key_index"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.drop_index("ix_logrecord_time", table_name="logrecord")


def downgrade() -> None:
    op.create_index("ix_logrecord_time", "logrecord", ["called_at"])
