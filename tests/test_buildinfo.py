"""Every OptiInfra server names its build on /metrics (one helper), and ``optiinfra simulate`` says where it
listens when it starts."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from pathlib import Path

from conftest import free_port, parse_samples
from prometheus_client import generate_latest

from optiinfra import __version__, buildinfo
from optiinfra.alertmanager.service import ReceiverMetrics
from optiinfra.metrics import by_name

OPTIINFRA = Path(sys.executable).parent / "optiinfra"


def test_build_info_labels_follow_the_catalogue() -> None:
    assert "optiinfra_build_info" in by_name()
    assert buildinfo.labels() == {"version": __version__, "python": platform.python_version()}


def test_receiver_metrics_carry_build_info() -> None:
    samples = parse_samples(generate_latest(ReceiverMetrics().registry).decode())
    key = ("optiinfra_build_info", frozenset(buildinfo.labels().items()))
    assert samples[key] == 1


def test_simulate_logs_its_address_on_start() -> None:
    port = free_port()
    proc = subprocess.Popen([str(OPTIINFRA), "simulate", "--listen", f"127.0.0.1:{port}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 30
        line = ""
        while not line and time.monotonic() < deadline:
            line = proc.stderr.readline()
        record = json.loads(line)
        assert record["level"] == "info" and record["logger"] == "optiinfra.demo.cli", record
        assert f"http://127.0.0.1:{port}" in record["message"]
        assert record["listen"] == f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
