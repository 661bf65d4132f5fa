"""SSHTransport against the loopback sshd, and its URL/option parsing (no sshd needed)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest

from conftest import SSHRig
from corral.errors import CommandError, ConfigError, ExecutorError
from corral.transport.base import Transport
from corral.transport.ssh import SSHTransport, parse_transport_url, remote_command

pytestmark = pytest.mark.ssh

NASTY = [
    "two words",
    "single ' quote",
    'double " quote',
    "$(touch /tmp/corral-pwned)",
    "`id`",
    "line one\nline two",
    "back\\slash; semi & amp | pipe > gt < lt * star ~ tilde",
    "",
    "-n",
    "tab\there",
    "ünïcødé",
]


@pytest.fixture
def transport(ssh_rig: SSHRig) -> Iterator[SSHTransport]:
    t = SSHTransport.from_url(ssh_rig.url, ssh_rig.options)
    yield t
    t.close()


# ---------------------------------------------------------------------------------- parsing


def test_parse_url_and_options() -> None:
    s = parse_transport_url("ssh://alice@127.0.0.1:2222?identity_file=/k&connect_timeout=3")
    assert (s.user, s.host, s.port) == ("alice", "127.0.0.1", 2222)
    assert s.identity_file == "/k" and s.connect_timeout == 3.0
    assert s.known_hosts == "~/.ssh/known_hosts" and s.shared_filesystem is False
    assert s.label == "alice@127.0.0.1:2222"
    bare = parse_transport_url("127.0.0.1", {"known_hosts": "none", "shared_filesystem": True})
    assert bare.port == 22 and bare.user is None and bare.known_hosts is None
    assert bare.shared_filesystem is True
    # the URL's query overrides the defaults mapping
    assert parse_transport_url("ssh://h?connect_timeout=2", {"connect_timeout": 9}).connect_timeout == 2


@pytest.mark.parametrize(
    ("url", "options", "needle"),
    [
        ("http://host", {}, "not an ssh:// URL"),
        ("ssh://host:notaport", {}, "invalid port"),
        ("ssh://host/some/path", {}, "no path"),
        ("ssh://host", {"identity": "/k"}, "unknown ssh option(s) identity; valid options are"),
        ("ssh://host", {"connect_timeout": -1}, "positive number"),
        ("ssh://host", {"shared_filesystem": "maybe"}, "true or false"),
    ],
)
def test_parse_url_errors(url: str, options: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_transport_url(url, options)
    assert needle in str(err.value)
    assert "\n" not in str(err.value)


def test_remote_command_quotes_every_word() -> None:
    assert remote_command(["echo", "a b", "$x"]) == "echo 'a b' '$x'"
    assert remote_command(["printenv", "V"], {"V": "1 2"}) == "env 'V=1 2' printenv V"
    with pytest.raises(ValueError):
        remote_command([])


def test_is_a_transport_and_lazy() -> None:
    t = SSHTransport.from_url("ssh://nobody@127.0.0.1:1")
    assert isinstance(t, Transport) and t.shared_filesystem is False
    assert t._loop is None  # no thread, no connection before the first call
    t.close()


# ---------------------------------------------------------------------------------- commands


def test_quoting_arrives_intact(transport: SSHTransport) -> None:
    code = "import json, sys; sys.stdout.write(json.dumps(sys.argv[1:]))"
    res = transport.run([sys.executable, "-c", code, *NASTY])
    assert json.loads(res.stdout) == NASTY
    assert not Path("/tmp/corral-pwned").exists()


def test_env_input_and_failure(transport: SSHTransport) -> None:
    res = transport.run(["sh", "-c", 'printf %s "$V"; cat'], input="from stdin", env={"V": "a 'b' $c"})
    assert res.stdout == "a 'b' $cfrom stdin"
    with pytest.raises(CommandError) as err:
        transport.run(["sh", "-c", "echo out; echo 'it broke' >&2; exit 7"])
    assert err.value.returncode == 7 and err.value.stdout == "out\n"
    assert "it broke" in err.value.stderr and err.value.argv[0] == "sh"
    unchecked = transport.run(["sh", "-c", "exit 3"], check=False)
    assert unchecked.returncode == 3


def test_timeout(transport: SSHTransport) -> None:
    t0 = time.monotonic()
    with pytest.raises(CommandError) as err:
        transport.run(["sleep", "20"], timeout=1)
    assert time.monotonic() - t0 < 5
    assert err.value.returncode == 124 and "timed out" in err.value.stderr


def test_one_connection_reused_and_reconnect(transport: SSHTransport) -> None:
    transport.run(["true"])
    conn = transport._conn
    for _ in range(5):
        transport.run(["true"])
    assert transport.read_bytes("/nonexistent/x") is None
    assert transport._conn is conn  # commands and SFTP share one connection

    async def drop() -> None:
        assert conn is not None
        conn.close()
        await conn.wait_closed()

    transport._call(drop, 10, ["drop"])
    assert transport.run(["echo", "back"]).stdout == "back\n"
    assert transport._conn is not conn


def test_auth_failure_is_explained(ssh_rig: SSHRig, tmp_path: Path) -> None:
    key = tmp_path / "stranger"
    key.write_bytes(asyncssh.generate_private_key("ssh-ed25519").export_private_key())
    t = SSHTransport.from_url(ssh_rig.url, {"identity_file": str(key), "known_hosts": None})
    with pytest.raises(ExecutorError, match="refused authentication"):
        t.run(["true"])
    t.close()


def test_host_key_checked_by_default(ssh_rig: SSHRig, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    t = SSHTransport.from_url(ssh_rig.url, {"identity_file": ssh_rig.key, "known_hosts": str(empty)})
    with pytest.raises(ExecutorError, match="host key .* is not trusted"):
        t.run(["true"])
    t.close()


def test_missing_key_files_are_config_errors(ssh_rig: SSHRig, tmp_path: Path) -> None:
    for options in (
        {"identity_file": str(tmp_path / "nokey"), "known_hosts": None},
        {"identity_file": ssh_rig.key, "known_hosts": str(tmp_path / "no_known_hosts")},
    ):
        t = SSHTransport.from_url(ssh_rig.url, options)
        with pytest.raises(ConfigError, match="does not exist"):
            t.run(["true"])
        t.close()


def test_connection_refused_is_transient() -> None:
    t = SSHTransport.from_url("ssh://nobody@127.0.0.1:1", {"connect_timeout": 3, "known_hosts": None})
    with pytest.raises(CommandError) as err:
        t.run(["true"])
    assert err.value.returncode == 255 and err.value.transient
    t.close()


# ---------------------------------------------------------------------------------- files


def test_files(transport: SSHTransport, tmp_path: Path) -> None:
    remote = tmp_path / "remote side" / "a b"
    target = str(remote / "deep" / "f.bin")
    transport.write_bytes(target, b"\x00payload", mode=0o600)
    assert transport.read_bytes(target) == b"\x00payload"
    assert (remote / "deep" / "f.bin").stat().st_mode & 0o777 == 0o600
    transport.write_bytes(target, b"second")  # replaces atomically
    assert sorted(p.name for p in (remote / "deep").iterdir()) == ["f.bin"]
    assert transport.exists(target) and not transport.exists(target + ".no")
    transport.makedirs(str(remote / "x" / "y"))
    assert (remote / "x" / "y").is_dir()

    local = tmp_path / "local.txt"
    local.write_text("staged")
    transport.put(str(local), str(remote / "in" / "local.txt"))
    assert (remote / "in" / "local.txt").read_text() == "staged"
    back = tmp_path / "back" / "copy.txt"
    transport.get(str(remote / "in" / "local.txt"), str(back))
    assert back.read_text() == "staged"
    with pytest.raises(CommandError):
        transport.get(str(remote / "missing"), str(tmp_path / "m"))
    got = transport.get_many([(str(remote / "missing"), str(tmp_path / "m")), (target, str(back))])
    assert got == [target] and back.read_bytes() == b"second"
    assert transport.realpath("~/x").endswith("/x") and transport.realpath("~").startswith("/")


def test_listdir_and_removal(transport: SSHTransport, tmp_path: Path) -> None:
    """What staged-run cleanup uses: listdir, remove_trees (one batch), remove_dir."""
    root = tmp_path / "run dir"
    (root / "cwd" / "data").mkdir(parents=True)
    (root / "cwd" / "data" / "f.txt").write_text("x")
    (root / "att.1").mkdir()
    assert sorted(transport.listdir(str(root)) or []) == ["att.1", "cwd"]
    assert transport.listdir(str(tmp_path / "missing")) is None
    assert transport.remove_dir(str(root / "cwd")) is False  # not empty
    assert transport.remove_dir(str(root / "att.1")) is True
    transport.remove_trees([str(root / "cwd"), str(tmp_path / "missing")])
    assert transport.listdir(str(root)) == []
