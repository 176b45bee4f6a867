"""Helpers for tests that need programs from Debian's packages (sshd, chromium): skip, or fail under CI."""

from __future__ import annotations

import os
import shutil
import socket

import pytest

#: Set by .ci/run, which installs the programs: a missing one is then a failure, not a skip.
REQUIRED = os.environ.get("AVNAS_REQUIRE_SYSTEM_TESTS") == "1"


def require_program(name: str, package: str, *candidates: str) -> str:
    """Path of program ``name`` (PATH, then ``candidates``); skip (or fail under CI) when it is absent."""
    for path in (shutil.which(name), *candidates):
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    message = f"{name} not found: install Debian's {package} (.ci/run does)"
    if REQUIRED:
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
