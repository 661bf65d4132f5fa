"""reported_runs, reported_tasks: runs reported by ``corral run --report-to`` (metrics ingestion)

Revision ID: g0005
Revises: g0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "g0005"
down_revision = "g0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reported_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(length=100), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=True),
        sa.Column("pipeline", sa.String(length=200), nullable=False),
        sa.Column("executor", sa.String(length=100), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("counts", sa.Text(), nullable=False),
        sa.Column("started", sa.DateTime(), nullable=True),
        sa.Column("ended", sa.DateTime(), nullable=True),
        sa.Column("first_report", sa.DateTime(), nullable=False),
        sa.Column("last_report", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"]),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("run_id"),
    )
    op.create_index(op.f("ix_reported_runs_owner_id"), "reported_runs", ["owner_id"])
    op.create_index(op.f("ix_reported_runs_project_id"), "reported_runs", ["project_id"])
    op.create_index(op.f("ix_reported_runs_first_report"), "reported_runs", ["first_report"])
    op.create_table(
        "reported_tasks",
        sa.Column("run_ref", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("wall", sa.Float(), nullable=True),
        sa.Column("cpu", sa.Float(), nullable=True),
        sa.Column("peak_memory", sa.BigInteger(), nullable=True),
        sa.Column("host", sa.String(length=200), nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["run_ref"], ["reported_runs.id"]),
        sa.PrimaryKeyConstraint("run_ref", "name"),
    )


def downgrade() -> None:
    op.drop_table("reported_tasks")
    op.drop_index(op.f("ix_reported_runs_first_report"), table_name="reported_runs")
    op.drop_index(op.f("ix_reported_runs_project_id"), table_name="reported_runs")
    op.drop_index(op.f("ix_reported_runs_owner_id"), table_name="reported_runs")
    op.drop_table("reported_runs")
