"""Shared test helpers: real binaries (fail in CI, skip elsewhere), free ports, reference data paths."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
REFDATA = SHARED / "refdata"
IN_CI = os.environ.get("CI", "").lower() == "true"


def require_binary(name: str) -> str:
    """Path of a real binary the test needs. Missing: fail under CI=true, skip elsewhere."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} not found: apt-get install prometheus prometheus-alertmanager postgresql"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


def require_path(path: Path) -> Path:
    if not path.exists():
        message = f"{path} not found (../shared must sit beside the repository)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def refdata() -> Path:
    return require_path(REFDATA)
