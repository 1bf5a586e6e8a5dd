"""A generation id per run: a run deleted and created again under the same id is never taken for the old one.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Runs created before this revision get '': every later creation draws a random id, so none can match them.
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("generation", sa.Text(), nullable=False, server_default=sa.text("''")))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("generation")
