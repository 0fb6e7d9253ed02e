"""A covering index for the reports' roll-ups of the traffic aggregates

Revision ID: 0017_aggregate_report_index
Revises: 0016_login_failures
Create Date: 2026-12-06

The savings report and the finance dashboard sum calls and spend (and the cost moments) per day,
prompt or model. An aggregate row carries its latency sketch (~1 KB), so reading the rows meant a
page per few rows; with the summed columns in the index SQLite reads the index alone (the
dashboard's spend series on 1,500 aggregate rows: 11 → 8 ms).
"""
from typing import Sequence, Union

from alembic import op

revision: str = "0017_aggregate_report_index"
down_revision: Union[str, None] = "0016_login_failures"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

COLUMNS = ["day", "prompt_id", "model", "version_id", "records", "calls", "spend", "costed_calls", "cost_n",
           "cost_sum", "cost_sq"]


def upgrade() -> None:
    op.create_index("ix_trafficaggregate_report", "trafficaggregate", COLUMNS)


def downgrade() -> None:
    op.drop_index("ix_trafficaggregate_report", table_name="trafficaggregate")
