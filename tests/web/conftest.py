"""Fixtures of the dashboard's tests: real headless Chromium (Debian's, through Playwright; no
browser download) with every console error and page error collected, and pipelines to run."""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

SUMS = textwrap.dedent('''
    from corral import pipeline, shell, task

    @task
    def square(x: int) -> int:
        return x * x

    @task
    def total(values: list[int], scale: int) -> int:
        return sum(values) * scale

    @task
    def boom(x: int) -> int:
        print("about to fail")
        raise ValueError(f"bad value {x}")

    @pipeline
    def sums(n: int = 3, scale: int = 1, fail: bool = False):
        t = total(square.map(x=range(n)), scale)
        shell("echo {params.t} > {output}", outputs="total.txt", params={"t": t}, name="write")
        if fail:
            boom(n)
        return t
    ''')

CHAIN = textwrap.dedent('''
    import time
    from corral import pipeline, task

    @task
    def step(prev: int, seconds: float) -> int:
        time.sleep(seconds)
        return prev + 1

    @pipeline
    def chain(n: int = 3, seconds: float = 0.5):
        x = 0
        for i in range(n):
            x = step.options(name=f"step{i}")(x, seconds)
        return x
    ''')


def require_slurm() -> None:
    """Skip unless the rig's real SLURM answers (fail instead with CORRAL_REQUIRE_CLUSTERS=1)."""
    reason = None
    if shutil.which("sinfo") is None:
        reason = "sinfo is not on PATH"
    else:
        proc = subprocess.run(["sinfo", "-h"], capture_output=True, text=True, timeout=15, check=False)
        if proc.returncode != 0:
            reason = f"sinfo failed: {proc.stderr.strip()[-200:]}"
    if reason is not None:
        if os.environ.get("CORRAL_REQUIRE_CLUSTERS") == "1":
            pytest.fail(f"SLURM required (CORRAL_REQUIRE_CLUSTERS=1) but {reason}")
        pytest.skip(f"SLURM not available: {reason}")


def chromium_path() -> str:
    found = os.environ.get("CORRAL_TEST_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("CORRAL_REQUIRE_CLUSTERS") == "1":
        pytest.fail("chromium is required (CORRAL_REQUIRE_CLUSTERS=1); apt-get install chromium")
    pytest.skip("chromium not installed (set CORRAL_TEST_CHROMIUM)")


@dataclass
class Browser:
    """A page of real Chromium; ``errors`` collects console errors and uncaught page errors."""

    page: Any
    errors: list[str] = field(default_factory=list)


@pytest.fixture
def browser() -> Iterator[Browser]:
    path = chromium_path()
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=path,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        try:
            context = chromium.new_context(viewport={"width": 1366, "height": 900}, accept_downloads=True)
            page = context.new_page()
            page.set_default_timeout(20_000)
            out = Browser(page)
            page.on("console", lambda m: out.errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: out.errors.append(str(e)))
            yield out
            context.close()
        finally:
            chromium.close()
