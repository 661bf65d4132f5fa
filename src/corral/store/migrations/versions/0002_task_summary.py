"""an ended run's tasks by group (task_summary); tasks indexed by run and index, and by key
only where they ran

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
RAN = sa.text("state = 'succeeded'")
"""Only the task rows that ran are indexed by key (a re-checked run's cached rows are not)."""


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
    op.drop_index('ix_tasks_key', table_name='tasks')
    op.create_index('ix_tasks_key', 'tasks', ['key'], unique=False, sqlite_where=RAN,
                    postgresql_where=RAN)


def downgrade() -> None:
    op.drop_index('ix_tasks_key', table_name='tasks')
    op.create_index('ix_tasks_key', 'tasks', ['key'], unique=False)
    op.drop_index('ix_tasks_run_idx', table_name='tasks')
    op.drop_table('task_summary')
