"""prompt labels in their own table

Revision ID: 0008_labels
Revises: 0008_prompt_health
Create Date: 2026-12-05

`promptlabel`: one row per prompt and label, naming the one version the label sits on (unique on
prompt + label). It replaces the JSON list `promptversion.labels`, so "the production version" is
one indexed lookup and a label can no longer sit on two versions. Existing labels are carried
over; where one sat on several versions of a prompt, the newest of them keeps it (the version that
was read as the labelled one before). Dropping the column needs SQLite 3.35 or newer.
"""
import logging
import sqlite3
from datetime import datetime, timezone
from typing import Sequence, Union

import sqlalchemy as sa
import sqlmodel
from alembic import op

from trimloop.core.errors import ConfigError

revision: str = "0008_labels"
down_revision: Union[str, None] = "0008_prompt_health"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

LABEL_LENGTH = 200
log = logging.getLogger("alembic.runtime.migration")

version = sa.table("promptversion", sa.column("id", sa.Integer), sa.column("prompt_id", sa.Integer),
                   sa.column("labels", sa.JSON), sa.column("created_at", sqlmodel.sql.sqltypes.UTCDateTime))
label = sa.table("promptlabel", sa.column("prompt_id", sa.Integer), sa.column("label", sa.String),
                 sa.column("version_id", sa.Integer), sa.column("moved_at", sqlmodel.sql.sqltypes.UTCDateTime))


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite" and sqlite3.sqlite_version_info < (3, 35):
        raise ConfigError(f"migration 0008_labels drops a column, which needs SQLite 3.35 or newer; this Python uses "
                          f"SQLite {sqlite3.sqlite_version}", where="the database (SQLite)",
                          hint="use a Python built with a newer SQLite, or PostgreSQL (TRIMLOOP_DATABASE_URL)")
    op.create_table(
        "promptlabel",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("prompt_id", sa.Integer(), nullable=False),
        sa.Column("label", sqlmodel.sql.sqltypes.AutoString(length=LABEL_LENGTH), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("moved_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["prompt_id"], ["prompt.id"]),
        sa.ForeignKeyConstraint(["version_id"], ["promptversion.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("prompt_id", "label"),
    )
    with op.batch_alter_table("promptlabel", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_promptlabel_prompt_id"), ["prompt_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_promptlabel_version_id"), ["version_id"], unique=False)

    placed: dict[tuple[int, str], int] = {}  # oldest first, so the newest version carrying a label wins
    for vid, pid, labels in bind.execute(sa.select(version.c.id, version.c.prompt_id, version.c.labels)
                                         .order_by(version.c.created_at, version.c.id)):
        for name in labels or []:
            if not isinstance(name, str) or not name:
                continue
            if len(name) > LABEL_LENGTH:
                log.warning("label %r… of version %s is longer than %s characters: not carried over",
                            name[:40], vid, LABEL_LENGTH)
                continue
            placed[(pid, name)] = vid
    now = datetime.now(timezone.utc)
    if placed:
        bind.execute(label.insert(), [{"prompt_id": pid, "label": name, "version_id": vid, "moved_at": now}
                                      for (pid, name), vid in sorted(placed.items())])
    # ALTER TABLE … DROP COLUMN in place: recreating promptversion (batch mode's copy) would have to
    # drop a table that logs, candidates and suggestions reference.
    with op.batch_alter_table("promptversion", schema=None, recreate="never") as batch_op:
        batch_op.drop_column("labels")


def downgrade() -> None:
    bind = op.get_bind()
    with op.batch_alter_table("promptversion", schema=None, recreate="never") as batch_op:
        batch_op.add_column(sa.Column("labels", sa.JSON(), nullable=False, server_default="[]"))
    on: dict[int, list[str]] = {}
    for vid, name in bind.execute(sa.select(label.c.version_id, label.c.label).order_by(label.c.label)):
        on.setdefault(vid, []).append(name)
    for vid, names in on.items():
        bind.execute(version.update().where(version.c.id == vid).values(labels=names))
    with op.batch_alter_table("promptlabel", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_promptlabel_version_id"))
        batch_op.drop_index(batch_op.f("ix_promptlabel_prompt_id"))
    op.drop_table("promptlabel")
