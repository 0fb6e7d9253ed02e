"""Traffic aggregates, bounded samples of full records and their retention

Revision ID: 0010_traffic_aggregates
Revises: 0009_token_classes
Create Date: 2026-12-05

`trafficaggregate`: every call summed per prompt version × model × day (core.traffic).
`logseen`: the identities of ingested records, so a dropped record sent again adds nothing.
`reservoirday`: how many full records each version keeps per day (core.reservoir).
`logrecord.sample_key`: a record's place in its reservoir (NULL for existing rows: they sort last).
`datasetitem.log_id` gets an index: the reservoir and the retention sweep never drop those records.
The upgrade aggregates every stored record (in batches of 5,000).
"""
from typing import Sequence, Union

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0010_traffic_aggregates"
down_revision: Union[str, None] = "0010_repair"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "trafficaggregate",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("prompt_id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("model", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("records", sa.Integer(), nullable=False),
        sa.Column("calls", sa.Float(), nullable=False),
        sa.Column("input_tokens", sa.Float(), nullable=False),
        sa.Column("output_tokens", sa.Float(), nullable=False),
        sa.Column("cached_input_tokens", sa.Float(), nullable=False),
        sa.Column("cache_write_tokens", sa.Float(), nullable=False),
        sa.Column("reasoning_tokens", sa.Float(), nullable=False),
        sa.Column("spend", sa.Float(), nullable=False),
        sa.Column("costed_calls", sa.Float(), nullable=False),
        sa.Column("cost_n", sa.Integer(), nullable=False),
        sa.Column("cost_sum", sa.Float(), nullable=False),
        sa.Column("cost_sq", sa.Float(), nullable=False),
        sa.Column("errors", sa.Float(), nullable=False),
        sa.Column("feedback", sa.JSON(), nullable=False),
        sa.Column("latency_sketch", sa.LargeBinary(), nullable=True),
        sa.Column("latency_min", sa.Float(), nullable=True),
        sa.Column("latency_max", sa.Float(), nullable=True),
        sa.Column("dropped", sa.Integer(), nullable=False),
        sa.Column("dropped_calls", sa.Float(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("day", "prompt_id", "version_id", "model"),
    )
    op.create_index("ix_trafficaggregate_day", "trafficaggregate", ["day"])
    op.create_index("ix_trafficaggregate_version_day", "trafficaggregate", ["version_id", "day"])
    op.create_table(
        "logseen",
        sa.Column("day", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("key", sa.BigInteger(), nullable=False, autoincrement=False),
        sa.PrimaryKeyConstraint("day", "key"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "reservoirday",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("prompt_id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("kept", sa.Integer(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("prompt_id", "version_id", "day"),
    )
    op.create_index("ix_reservoirday_day", "reservoirday", ["day"])
    with op.batch_alter_table("logrecord", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sample_key", sa.Float(), nullable=True))
    op.create_index("ix_datasetitem_log_id", "datasetitem", ["log_id"])

    from trimloop.core import reservoir, traffic

    conn = op.get_bind()
    traffic.rebuild(conn)
    reservoir.recount(conn)


def downgrade() -> None:
    op.drop_index("ix_datasetitem_log_id", table_name="datasetitem")
    with op.batch_alter_table("logrecord", schema=None) as batch_op:
        batch_op.drop_column("sample_key")
    op.drop_index("ix_reservoirday_day", table_name="reservoirday")
    op.drop_table("reservoirday")
    op.drop_table("logseen")
    op.drop_index("ix_trafficaggregate_version_day", table_name="trafficaggregate")
    op.drop_index("ix_trafficaggregate_day", table_name="trafficaggregate")
    op.drop_table("trafficaggregate")
