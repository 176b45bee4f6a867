"""Scale-out: the tiny strategy comparison on NNI's ``remote`` training service, against an SSH server on loopback.

The test starts Debian's ``sshd`` as the current user on 127.0.0.1 and a free port, with a throw-away host key
and user key in a temporary directory; ``nniManagerIp: 127.0.0.1`` keeps every connection on loopback. NNI
uploads the trial code over SFTP (``.nniignore`` keeps the venv out) and runs each trial with this venv's
interpreter, named by absolute path. The server is stopped by its pid afterwards.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nni_experiments import NNICTL, launch
from system_programs import free_port, require_program


def _wait_for_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"sshd did not listen on 127.0.0.1:{port} within {timeout} s")


@pytest.fixture(scope="module")
def ssh_server(tmp_path_factory):
    sshd = require_program("sshd", "openssh-server", "/usr/sbin/sshd")
    keygen = require_program("ssh-keygen", "openssh-client", "/usr/bin/ssh-keygen")
    home = tmp_path_factory.mktemp("sshd")
    for name in ("host_key", "user_key"):
        subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(home / name)], check=True)
    authorized = home / "authorized_keys"
    authorized.write_text((home / "user_key.pub").read_text())
    authorized.chmod(0o600)
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation directory
    port = free_port()
    config = home / "sshd_config"
    config.write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {home / 'host_key'}",
        f"AuthorizedKeysFile {authorized}", "PubkeyAuthentication yes", "PasswordAuthentication no",
        "KbdInteractiveAuthentication no", "PermitRootLogin prohibit-password", "StrictModes no", "UsePAM no",
        f"PidFile {home / 'sshd.pid'}", "Subsystem sftp internal-sftp", ""]))
    server = subprocess.Popen([sshd, "-D", "-e", "-f", str(config)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for_port(port)
        yield {"port": port, "key": str(home / "user_key"), "user": getpass.getuser()}
    finally:
        server.terminate()  # by its pid
        server.wait(timeout=10)


@pytest.fixture(scope="module")
def remote_experiment(ssh_server, tiny_data, tmp_path_factory):
    if not NNICTL.is_file():
        pytest.fail(f"nnictl not found next to {sys.executable}")
    machine = {"host": "127.0.0.1", "port": ssh_server["port"], "user": ssh_server["user"],
               "sshKeyFile": ssh_server["key"], "pythonPath": str(Path(sys.executable).parent)}
    service = {"platform": "remote", "reuseMode": False, "machineList": [machine]}
    yield from launch(tmp_path_factory.mktemp("nni-remote"), tiny_data, ["avnas", "darts"], service,
                       nniManagerIp="127.0.0.1")


def test_remote_trials_all_succeed_over_ssh(remote_experiment):
    jobs = remote_experiment["jobs"]
    assert [job["status"] for job in jobs] == ["SUCCEEDED", "SUCCEEDED"], [job["status"] for job in jobs]
    finals = [json.loads(json.loads(job["finalMetricData"][-1]["data"])) for job in jobs]
    assert sorted(final["strategy"] for final in finals) == ["avnas", "darts"]
    assert all(0.0 <= final["default"] <= 1.0 for final in finals)
