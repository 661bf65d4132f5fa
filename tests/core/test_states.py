"""The transition table of corral.states: every allowed transition passes, every other raises
StateError, and the engine and the store enforce it."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

import corral
from corral.errors import StateError
from corral.states import RUN_TRANSITIONS, TASK_TRANSITIONS, RunState, TaskState, check_run, check_task
from corral.store import Store

from .corehelp import Helper


def test_every_task_transition_of_the_table() -> None:
    assert set(TASK_TRANSITIONS) == set(TaskState)
    for old, new in itertools.product(TaskState, TaskState):
        if new in TASK_TRANSITIONS[old]:
            assert check_task(old, new, "t") is new
        else:
            with pytest.raises(StateError, match=f"task t: no transition from {old.value} to {new.value}"):
                check_task(old, new, "t")


def test_every_run_transition_of_the_table() -> None:
    assert set(RUN_TRANSITIONS) == set(RunState)
    for old, new in itertools.product(RunState, RunState):
        if new in RUN_TRANSITIONS[old] or new is old:
            assert check_run(old, new) is new
        else:
            with pytest.raises(StateError, match="no transition"):
                check_run(old, new, "r")
    assert not RUN_TRANSITIONS[RunState.SUCCEEDED]  # a succeeded run never changes


def test_the_store_refuses_an_illegal_run_state(helper: Helper) -> None:
    pipe = helper.load('''
        from corral import pipeline, task

        @task
        def one() -> int:
            return 1

        @pipeline
        def p():
            return one()
    ''')
    result = helper.run(pipe)
    assert result.ok
    store = Store.open(Path(helper.workdir))
    with pytest.raises(StateError, match="no transition from succeeded to running"):
        store.update_run(result.run_id, state=RunState.RUNNING.value)
    assert corral.attach(result.run_id, helper.workdir).state is RunState.SUCCEEDED


def test_the_engine_refuses_an_illegal_task_state(helper: Helper) -> None:
    pipe = helper.load('''
        from corral import pipeline, task

        @task
        def one() -> int:
            return 1

        @pipeline
        def p():
            return one()
    ''')
    result = helper.run(pipe)
    engine = result.engine
    assert engine is not None and engine.state == [TaskState.SUCCEEDED]
    with pytest.raises(StateError, match="task one: no transition from succeeded to queued"):
        engine.set_state(0, TaskState.QUEUED)


def test_bulk_changes_follow_the_table() -> None:
    """The store's bulk cancel selects its rows by the table; attempt states cover every
    outcome an executor reports."""
    from corral.executors.base import Outcome
    from corral.states import UNFINISHED_TASK_STATES, AttemptState, may_become

    assert UNFINISHED_TASK_STATES == {TaskState.PENDING, TaskState.QUEUED, TaskState.RUNNING}
    assert may_become(TaskState.PENDING) == set(TaskState) - {TaskState.PENDING}
    assert {o.value for o in Outcome} <= {a.value for a in AttemptState}
