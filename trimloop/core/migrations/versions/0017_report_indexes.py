"""Reports read the traffic aggregates: a covering index for their roll-ups; the log indexes slimmed

Revision ID: 0017_report_indexes
Revises: 0016_login_failures
Create Date: 2026-12-06

The savings report and the finance dashboard sum calls and spend (and the cost moments) per day,
prompt or model of the traffic aggregates. An aggregate row carries its latency sketch (~1 KB), so
reading the rows meant a page per few rows; with the summed columns in an index SQLite reads the
index alone (the dashboard's spend series on 1,500 aggregate rows: 11 → 8 ms).

The log indexes that 0003 widened so the reports could read costs from the index alone are slimmed
back: reports no longer read the records, except the part-days at a window's ends (at most a
reservoir's records per version and day). `ix_logrecord_version_id` duplicated the first column of
`ix_logrecord_version_time`. On 1M calls kept as 385k records these three indexes took 70 of the
database's 233 MB.
"""
from typing import Sequence, Union

from alembic import op

revision: str = "0017_report_indexes"
down_revision: Union[str, None] = "0016_login_failures"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

REPORT = ["day", "prompt_id", "model", "version_id", "records", "calls", "spend", "costed_calls", "cost_n",
          "cost_sum", "cost_sq"]


def upgrade() -> None:
    op.create_index("ix_trafficaggregate_report", "trafficaggregate", REPORT)
    op.drop_index("ix_logrecord_version_id", table_name="logrecord")
    op.drop_index("ix_logrecord_time", table_name="logrecord")
    op.create_index("ix_logrecord_time", "logrecord", ["called_at"])
    op.drop_index("ix_logrecord_version_time", table_name="logrecord")
    op.create_index("ix_logrecord_version_time", "logrecord", ["version_id", "called_at"])


def downgrade() -> None:
    op.drop_index("ix_logrecord_version_time", table_name="logrecord")
    op.create_index("ix_logrecord_version_time", "logrecord", ["version_id", "called_at", "cost"])
    op.drop_index("ix_logrecord_time", table_name="logrecord")
    op.create_index("ix_logrecord_time", "logrecord", ["called_at", "prompt_id", "model", "cost"])
    op.create_index("ix_logrecord_version_id", "logrecord", ["version_id"])
    op.drop_index("ix_trafficaggregate_report", table_name="trafficaggregate")
