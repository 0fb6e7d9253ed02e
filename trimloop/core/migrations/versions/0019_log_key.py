"""Log records are unique on a 64-bit key of their identity, not on its text

Revision ID: 0019_log_key
Revises: 0018_unversioned_log_index
Create Date: 2026-12-07

`logrecord.key` is the blake2b-64 hash of (connector, external_id) that `logseen` already keeps
(core.tables.record_key), and `ux_logrecord_key` replaces the unique (connector, external_id)
constraint. Through the OTLP receiver an external id is a 49-character `trace:span`; at 1M calls
through it the text index took 95 B a record on SQLite and 145 B on PostgreSQL, the key index 19 B
and 47 B. Existing rows get their key here, in batches; on SQLite the table is rebuilt to drop the
constraint (1M records: 18 s on SQLite, 33 s on PostgreSQL, 2 cores).
"""
import hashlib
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0019_log_key"
down_revision: Union[str, None] = "0018_unversioned_log_index"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

BATCH = 10_000
UNVERSIONED = "version_id IS NULL"  # ix_logrecord_unversioned's condition (migration 0018)
# names the SQLite constraint that migration 0001 created without one, so the rebuild can drop it
NAMING = {"uq": "uq_%(table_name)s_%(column_0_name)s"}


def _key(connector: str, external_id: str) -> int:  # core.tables.record_key, written out
    digest = hashlib.blake2b(f"{connector}\x00{external_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _fill_keys() -> None:
    conn = op.get_bind()
    log = sa.table("logrecord", sa.column("id"), sa.column("connector"), sa.column("external_id"), sa.column("key"))
    fill = log.update().where(log.c.id == sa.bindparam("row")).values(key=sa.bindparam("value"))
    last = 0
    while True:
        rows = conn.execute(sa.select(log.c.id, log.c.connector, log.c.external_id).where(log.c.id > last)
                            .order_by(log.c.id).limit(BATCH)).all()
        if not rows:
            return
        conn.execute(fill, [{"row": i, "value": _key(c, e)} for i, c, e in rows])
        last = rows[-1][0]


def upgrade() -> None:
    op.add_column("logrecord", sa.Column("key", sa.BigInteger(), nullable=True))
    _fill_keys()
    if op.get_bind().dialect.name == "sqlite":
        # the rebuild copies the table; the partial index is made again after it with its condition
        op.drop_index("ix_logrecord_unversioned", table_name="logrecord")
        with op.batch_alter_table("logrecord", recreate="always", naming_convention=NAMING) as batch_op:
            batch_op.drop_constraint("uq_logrecord_connector", type_="unique")
            batch_op.alter_column("key", existing_type=sa.BigInteger(), nullable=False)
        op.create_index("ix_logrecord_unversioned", "logrecord", ["prompt_id", "called_at"],
                        sqlite_where=sa.text(UNVERSIONED))
    else:
        op.alter_column("logrecord", "key", existing_type=sa.BigInteger(), nullable=False)
        op.drop_constraint("logrecord_connector_external_id_key", "logrecord", type_="unique")
    op.create_index("ux_logrecord_key", "logrecord", ["key"], unique=True)


def downgrade() -> None:
    op.drop_index("ux_logrecord_key", table_name="logrecord")
    if op.get_bind().dialect.name == "sqlite":
        op.drop_index("ix_logrecord_unversioned", table_name="logrecord")
        with op.batch_alter_table("logrecord", recreate="always") as batch_op:
            batch_op.create_unique_constraint("uq_logrecord_connector", ["connector", "external_id"])
            batch_op.drop_column("key")
        op.create_index("ix_logrecord_unversioned", "logrecord", ["prompt_id", "called_at"],
                        sqlite_where=sa.text(UNVERSIONED))
    else:
        op.create_unique_constraint("logrecord_connector_external_id_key", "logrecord", ["connector", "external_id"])
        op.drop_column("logrecord", "key")
