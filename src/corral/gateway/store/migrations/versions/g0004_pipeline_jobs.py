"""jobs.pipeline_file, pipeline_name, pipeline_params: pipeline jobs

Revision ID: g0004
Revises: g0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "g0004"
down_revision = "g0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("pipeline_file", sa.String(length=500), nullable=True))
        batch.add_column(sa.Column("pipeline_name", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("pipeline_params", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("pipeline_params")
        batch.drop_column("pipeline_name")
        batch.drop_column("pipeline_file")
