"""Out of memory on the real Grid Engine: the conformance case SLURM has in test_conformance.

With ``-l h_vmem`` the job runs under an address-space limit; Python usually gets a MemoryError
(the worker's marker then says out_of_memory), and a process killed by the limit shows in qacct
as ``failed 37``: both must end OUT_OF_MEMORY, not FAILED.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from test_conformance import hog  # the same memory hog as SLURM's case there

from corral.executors.base import Outcome
from corral.resources import Resources


@pytest.mark.sge
def test_sge_out_of_memory_then_a_bigger_request_succeeds(
    harness_for: Callable[[str], Any]
) -> None:
    h = harness_for("sge")
    ex = h.executor()
    hungry = h.spec(h.py(hog, 600), group="hog", resources=Resources(memory="300M"))
    ex.submit([hungry])
    c = h.wait(ex, 1, timeout=90)[hungry.attempt_id]
    assert c.outcome is Outcome.OUT_OF_MEMORY, c.error
    # the same task with room to spare (what a retry with resources=lambda attempt: ... does)
    roomy = h.spec(h.py(hog, 50), group="hog", resources=Resources(memory="2G"))
    ex.submit([roomy])
    c = h.wait(ex, 1, timeout=90)[roomy.attempt_id]
    assert c.outcome is Outcome.SUCCEEDED, c.error
    ex.shutdown()
