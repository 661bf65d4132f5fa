"""an ended run's tasks by group (task_summary); tasks indexed by run and index

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03 12:30:00

Runs that ended before this revision get no summary: ``corral status`` counts their tasks in
SQL as before (correct, only slower for a big run). Runs that end from now on are summarised
with their final state.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('task_summary',
    sa.Column('run_id', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=400), nullable=False),
    sa.Column('grp', sa.String(length=300), nullable=False),
    sa.Column('n', sa.Integer(), nullable=False),
    sa.Column('first', sa.Integer(), nullable=False),
    sa.Column('last', sa.Integer(), nullable=False),
    sa.Column('tries', sa.Integer(), nullable=False),
    sa.Column('states', sa.JSON(), nullable=False),
    sa.Column('wall', sa.Float(), nullable=True),
    sa.Column('cpu', sa.Float(), nullable=True),
    sa.Column('peak_rss', sa.BigInteger(), nullable=True),
    sa.Column('hosts', sa.Integer(), nullable=False),
    sa.Column('host', sa.String(length=200), nullable=True),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_id', 'name')
    )
    op.create_index('ix_tasks_run_idx', 'tasks', ['run_id', 'idx'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_tasks_run_idx', table_name='tasks')
    op.drop_table('task_summary')
