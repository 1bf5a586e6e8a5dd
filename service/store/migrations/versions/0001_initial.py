"""Runs, their labels and their events.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Types are spelled out here, not imported from sql.py, so that this revision stays what it was.


def _id() -> sa.Text:
    # Bytewise order on PostgreSQL too, as on SQLite: listing and keyset pagination agree on both.
    return sa.Text().with_variant(sa.Text(collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("run_id", _id(), primary_key=True),
        sa.Column("spec", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("horizon", sa.BigInteger(), nullable=False, server_default=sa.text("-1")),
        sa.Column("incarnation", sa.Integer(), nullable=False, server_default=sa.text("1")),
        sa.Column("last_seq", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
    )
    op.create_table(
        "run_labels",
        sa.Column("run_id", _id(), sa.ForeignKey("runs.run_id", ondelete="CASCADE"), primary_key=True),
        sa.Column("key", _id(), primary_key=True),
        sa.Column("value", _id(), nullable=False),
    )
    op.create_index("ix_run_labels_key_value", "run_labels", ["key", "value"])
    op.create_table(
        "events",
        sa.Column("run_id", _id(), sa.ForeignKey("runs.run_id", ondelete="CASCADE"), primary_key=True),
        sa.Column("seq", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("payload", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("events")
    op.drop_index("ix_run_labels_key_value", table_name="run_labels")
    op.drop_table("run_labels")
    op.drop_table("runs")
