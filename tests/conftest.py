"""Shared test helpers: real binaries (fail in CI, skip elsewhere), free ports, the captured data in tests/data."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from optiinfra.demo.stack import free_port

__all__ = ["DATA", "REPO", "free_port", "parse_samples", "promtool_check_metrics", "require_binary"]

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data"
"""Captured engine payloads (``engines/``) and log excerpts (``logs/``), each folder with its PROVENANCE.md."""
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


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse_samples(text: str) -> Samples:
    """Every sample of an exposition keyed by name and label set; parsing validates it, and a duplicate
    series fails the test."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = (s.name, frozenset(s.labels.items()))
            assert key not in out, f"duplicate series {key}"
            out[key] = s.value
    return out


def promtool_check_metrics(text: str) -> tuple[int, list[str]]:
    """Real ``promtool check metrics`` on ``text``: its exit status (0 clean, 3 lint findings only, 1 parse
    error) and its non-empty output lines."""
    promtool = require_binary("promtool")
    proc = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True,
                          timeout=30, check=False)
    return proc.returncode, [line.strip() for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
