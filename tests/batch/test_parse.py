"""Parsing of the schedulers' real output formats.

``sacct_mixed.txt``, ``qstat.xml``, ``qacct_ok.txt`` and ``qacct_mixed.txt`` were captured from
the local SLURM 22.05 and Grid Engine 8.1.9; ``sacct_synthetic.txt`` and ``squeue_sample.txt``
are hand-written in the same format (states that are slow or impossible to produce here);
``pbs_qstat_f.txt`` and ``lsf_bjobs.txt`` are hand-written in the PBS Pro / LSF formats.
"""

from __future__ import annotations

from pathlib import Path

from corral.executors.batch.lsf import parse_bjobs
from corral.executors.batch.pbs import parse_qstat_full
from corral.executors.batch.sge import parse_qacct, parse_qstat_xml
from corral.executors.batch.slurm import parse_sacct, parse_squeue
from corral.executors.batch.status import JobState, expand_range, parse_size

SAMPLES = Path(__file__).parent / "samples"


def read(name: str) -> str:
    return (SAMPLES / name).read_text()


def test_sacct_captured() -> None:
    st = parse_sacct(read("sacct_mixed.txt"))
    assert st["2"].state is JobState.FAILED and st["2"].exit_code == 3
    assert st["2"].max_rss == 1080 * 1024
    assert st["3"].state is JobState.OUT_OF_MEMORY
    assert {k for k in st if k.startswith("1_")} == {"1_1", "1_2", "1_3"}
    assert all(st[f"1_{i}"].state is JobState.COMPLETED for i in (1, 2, 3))
    assert st["1_1"].started is not None and st["1_1"].ended is not None
    assert st["1_1"].host == "vm"


def test_sacct_synthetic_states() -> None:
    st = parse_sacct(read("sacct_synthetic.txt"))
    assert [st[f"4_{i}"].state for i in range(1, 6)] == [JobState.RUNNING] + [JobState.PENDING] * 4
    assert st["5"].state is JobState.CANCELLED and st["5"].reason == "cancelled by 0"
    assert st["6"].state is JobState.TIMEOUT
    assert st["7"].state is JobState.NODE_FAILURE
    assert st["4_2"].host is None


def test_squeue() -> None:
    st = parse_squeue(read("squeue_sample.txt"))
    assert st["8_1"].state is JobState.RUNNING
    assert st["8_2"].state is JobState.COMPLETED
    assert st["8_5"].state is JobState.PENDING and st["8_5"].reason == "JobArrayTaskLimit"
    assert st["9"].state is JobState.OUT_OF_MEMORY
    assert st["10"].state is JobState.PREEMPTED


def test_qstat_xml_captured() -> None:
    st = parse_qstat_xml(read("qstat.xml"))
    assert st["3"].state is JobState.RUNNING
    assert st["5"].state is JobState.ERROR_HELD and "Eqw" in (st["5"].reason or "")
    assert st["6.1"].state is JobState.RUNNING
    assert [st[f"6.{i}"].state for i in (2, 3, 4)] == [JobState.PENDING] * 3


def test_qacct_captured() -> None:
    ok = parse_qacct(read("qacct_ok.txt"))
    assert ok["1"].state is JobState.COMPLETED and ok["1"].exit_code == 0
    assert {"2.1", "2.2", "2.3"} <= set(ok)
    assert ok["2.1"].max_rss == int(4.855 * 1024**2)
    assert ok["1"].started is not None and ok["1"].host == "vm"
    mixed = parse_qacct(read("qacct_mixed.txt"))
    by_state = {k: v.state for k, v in mixed.items()}
    assert JobState.TIMEOUT in by_state.values()  # failed 37 with -l h_rt=3
    assert JobState.CANCELLED in by_state.values()  # qdel: failed 100, exit 137
    assert JobState.FAILED in by_state.values()  # exit 100 (Eqw), failed 30


def test_pbs_qstat_full() -> None:
    st = parse_qstat_full(read("pbs_qstat_f.txt"))
    assert st["1201.pbs01"].state is JobState.TIMEOUT and st["1201.pbs01"].exit_code == -29
    assert st["1201.pbs01"].max_rss == 5236 * 1024 and st["1201.pbs01"].host == "node07"
    assert st["1202[].pbs01"].state is JobState.RUNNING
    assert st["1202[1].pbs01"].state is JobState.COMPLETED
    assert st["1202[2].pbs01"].state is JobState.RUNNING
    assert st["1202[3].pbs01"].state is JobState.PENDING
    assert "and more text" in (st["1202[3].pbs01"].reason or "")
    assert st["1203.pbs01"].state is JobState.OUT_OF_MEMORY
    assert st["1204.pbs01"].state is JobState.CANCELLED
    assert st["1205.pbs01"].state is JobState.CANCELLED
    assert st["1206.pbs01"].state is JobState.FAILED and st["1206.pbs01"].exit_code == 2


def test_bjobs() -> None:
    st = parse_bjobs(read("lsf_bjobs.txt"))
    assert st["5001"].state is JobState.COMPLETED and st["5001"].exit_code == 0
    assert st["5002"].state is JobState.FAILED and st["5002"].exit_code == 1
    assert st["5003"].state is JobState.TIMEOUT
    assert st["5004"].state is JobState.OUT_OF_MEMORY and st["5004"].max_rss == 1024**3
    assert st["5005"].state is JobState.CANCELLED
    assert st["5006[1]"].state is JobState.COMPLETED and st["5006[1]"].host == "node04"
    assert st["5006[2]"].state is JobState.RUNNING
    assert st["5006[3]"].state is JobState.PENDING
    assert st["5007"].state is JobState.PREEMPTED


def test_helpers() -> None:
    assert expand_range("1-10:3") == [1, 4, 7, 10]
    assert expand_range("2-5%2") == [2, 3, 4, 5]
    assert expand_range("1,3,7-8") == [1, 3, 7, 8]
    assert parse_size("1234K") == 1234 * 1024
    assert parse_size("4.750MB") == int(4.75 * 1024**2)
    assert parse_size("12345kb") == 12345 * 1024
    assert parse_size("77", "K") == 77 * 1024
    assert parse_size("") is None and parse_size("lots") is None
