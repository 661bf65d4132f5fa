"""The dashboard's submit form takes an optional memory per node: parsed into the request, refused
next to its field when it is not a number in range, and the system's memory limit is shown."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from corral.gateway.pages.forms import JobForm, field_of, parse

FORM = JobForm(project="lab", title="t", command="true", nodes="1", cores_per_node="1", walltime_hours="1")


def test_memory_field_of_the_submit_form(tmp_path: Path) -> None:
    req, errors = parse(FORM, tmp_path)
    assert errors == {} and req is not None and req.memory_gb is None  # empty: the system's default
    req, errors = parse(replace(FORM, memory_gb="2.5"), tmp_path)
    assert errors == {} and req is not None and req.memory_gb == 2.5
    for bad, words in [("lots", "memory (GB) must be a number, not 'lots'"), ("0", "memory (GB) must be between")]:
        req, errors = parse(replace(FORM, memory_gb=bad), tmp_path)
        assert req is None and words in errors["memory_gb"], errors
    refusal = "HPC system 'c' allows at most 2 GB of memory per node; this job asks for 3 GB"
    assert field_of(refusal) == "memory_gb"  # shown next to the memory field, not the nodes one
    assert JobForm.from_data({"memory_gb": " 4 "}).memory_gb == "4"
