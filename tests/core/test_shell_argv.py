"""Simple commands run without a shell; anything with shell syntax goes through bash."""

from __future__ import annotations

import subprocess

import pytest

from corral.worker.execute import shell_argv, simple_command


@pytest.mark.parametrize(("command", "argv"), [
    ("true", ["true"]),
    ("true # a comment", ["true"]),
    ("ls -l   /tmp", ["ls", "-l", "/tmp"]),
])
def test_simple_commands_are_executed_directly(command: str, argv: list[str]) -> None:
    assert simple_command(command) == argv
    assert shell_argv(command) == argv


@pytest.mark.parametrize("command", [
    "echo hi > out.txt", "a | b", "x=1 env", "echo $HOME", "echo 'quoted'", "ls *.txt",
    "cd /tmp", "exit 3", "export A=1", "no-such-command-here 1", "a#b", "echo a\tb",
    "sleep 1 &", "(true)", "echo ~",
])
def test_shell_syntax_and_builtins_use_bash(command: str) -> None:
    assert simple_command(command) is None
    argv = shell_argv(command)
    assert argv[:2] == ["bash", "-c"] and argv[2].endswith(command)


@pytest.mark.parametrize("command", ["true", "false", "ls /nonexistent-dir", "echo a  b"])
def test_direct_and_bash_agree(command: str) -> None:
    direct = subprocess.run(shell_argv(command), capture_output=True, text=True, check=False)  # noqa: S603
    bash = subprocess.run(["bash", "-c", command], capture_output=True, text=True, check=False)  # noqa: S603
    assert (direct.returncode, direct.stdout) == (bash.returncode, bash.stdout)
