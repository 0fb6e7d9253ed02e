"""the post-deploy watch: one row per deployed suggestion, and the paired shadow scores

Revision ID: 0008_watch
Revises: 0008_labels
Create Date: 2026-12-05

`watch` keeps the verdict (holding, regressed, inconclusive) of a deployed version against the one
it replaced and the numbers behind it; `shadowscore` keeps each live input that was also run
through the old version, so an input is shadowed once and the daily shadow budget can be counted.
"""
from typing import Sequence, Union

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0008_watch"
down_revision: Union[str, None] = "0008_labels"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_S = sqlmodel.sql.sqltypes.AutoString
_T = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "watch",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("suggestion_id", sa.Integer(), nullable=False),
        sa.Column("prompt_id", sa.Integer(), nullable=False),
        sa.Column("old_version_id", sa.Integer(), nullable=False),
        sa.Column("new_version_id", sa.Integer(), nullable=False),
        sa.Column("started_at", _T(), nullable=False),
        sa.Column("verdict", _S(length=20), nullable=False),
        sa.Column("checks", sa.JSON(), nullable=False),
        sa.Column("baseline_window", _S(length=20), nullable=True),
        sa.Column("n_new", sa.Integer(), nullable=False),
        sa.Column("n_old", sa.Integer(), nullable=False),
        sa.Column("shadow_items", sa.Integer(), nullable=False),
        sa.Column("shadow_cost", sa.Float(), nullable=False),
        sa.Column("looks", sa.Integer(), nullable=False),
        sa.Column("history", sa.JSON(), nullable=False),
        sa.Column("action", _S(length=20), nullable=True),
        sa.Column("action_at", _T(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("checked_at", _T(), nullable=True),
        sa.Column("created_at", _T(), nullable=False),
        sa.ForeignKeyConstraint(["suggestion_id"], ["suggestion.id"]),
        sa.ForeignKeyConstraint(["prompt_id"], ["prompt.id"]),
        sa.ForeignKeyConstraint(["old_version_id"], ["promptversion.id"]),
        sa.ForeignKeyConstraint(["new_version_id"], ["promptversion.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("watch", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_watch_suggestion_id"), ["suggestion_id"], unique=True)
        batch_op.create_index(batch_op.f("ix_watch_prompt_id"), ["prompt_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_watch_verdict"), ["verdict"], unique=False)
    op.create_table(
        "shadowscore",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("watch_id", sa.Integer(), nullable=False),
        sa.Column("log_id", sa.Integer(), nullable=False),
        sa.Column("new_scores", sa.JSON(), nullable=False),
        sa.Column("old_scores", sa.JSON(), nullable=False),
        sa.Column("old_output", sa.Text(), nullable=True),
        sa.Column("cost", sa.Float(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", _T(), nullable=False),
        sa.ForeignKeyConstraint(["watch_id"], ["watch.id"]),
        sa.ForeignKeyConstraint(["log_id"], ["logrecord.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("watch_id", "log_id"),
    )
    with op.batch_alter_table("shadowscore", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_shadowscore_watch_id"), ["watch_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_shadowscore_created_at"), ["created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("shadowscore", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_shadowscore_created_at"))
        batch_op.drop_index(batch_op.f("ix_shadowscore_watch_id"))
    op.drop_table("shadowscore")
    with op.batch_alter_table("watch", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_watch_verdict"))
        batch_op.drop_index(batch_op.f("ix_watch_prompt_id"))
        batch_op.drop_index(batch_op.f("ix_watch_suggestion_id"))
    op.drop_table("watch")
