"""jobs.memory_gb, backend_parameters: a job's memory per node and its scheduler parameters

Revision ID: g0006
Revises: g0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "g0006"
down_revision = "g0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("memory_gb", sa.Float(), nullable=True))
        batch.add_column(sa.Column("backend_parameters", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("backend_parameters")
        batch.drop_column("memory_gb")
