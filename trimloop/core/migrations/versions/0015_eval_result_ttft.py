"""eval result: time to first token

Revision ID: 0015_eval_result_ttft
Revises: 0014_shadow_log_index
Create Date: 2026-12-06

`evalresult.ttft_s`: the time to the first token of a streamed call (params `stream = true`),
measured by the gateway beside its total latency; NULL for calls that were not streamed, for
answers from the response cache, and for every existing row.
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0015_eval_result_ttft"
down_revision: Union[str, None] = "0014_shadow_log_index"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table("evalresult", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ttft_s", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("evalresult", schema=None) as batch_op:
        batch_op.drop_column("ttft_s")
