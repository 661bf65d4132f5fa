"""An attempt cut off by a killed engine does not use up a retry or shift resources-by-attempt."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from .corehelp import wait_for
from .test_core_resume import SCRIPT, _query

PIPE = '''
import os, time
from corral import task, pipeline, Resources

def grow(attempt: int) -> Resources:
    return Resources(memory=f"{attempt}G")

@task(retries=0, resources=grow)
def slow() -> str:
    time.sleep(float(os.environ.get("SLOW_FOR", "0")))
    return os.environ["CORRAL_ATTEMPT"] + ":" + os.environ["CORRAL_MEMORY"]

@pipeline
def once():
    return slow()
'''


def test_abandoned_attempt_is_not_counted(tmp_path: Path) -> None:
    pipe = tmp_path / "once.py"
    pipe.write_text(PIPE)
    db = tmp_path / ".corral" / "state.db"
    first = subprocess.Popen(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", SCRIPT, str(pipe), str(tmp_path)],
        env={**os.environ, "SLOW_FOR": "60"}, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: _query(db, "SELECT COUNT(*) FROM attempts")
                 and _query(db, "SELECT COUNT(*) FROM attempts")[0][0] >= 1,
                 timeout=60, what="the attempt to be submitted")
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
    second = subprocess.run(  # noqa: S603
        [sys.executable, "-c", SCRIPT, str(pipe), str(tmp_path)],
        env={**os.environ, "SLOW_FOR": "0"}, capture_output=True, text=True, timeout=120,
        check=False,
    )
    assert "succeeded" in second.stdout, second.stdout + second.stderr
    rows = _query(db, "SELECT number, state FROM attempts ORDER BY number")
    assert rows == [(1, "abandoned"), (2, "succeeded")]
    import corral

    run_id = corral.Client(tmp_path).runs()[0]["id"]
    # the task saw attempt 1 and the first attempt's resources, despite the cut-off attempt
    assert corral.Client(tmp_path).run(run_id).task_result("slow") == f"1:{2**30}"
