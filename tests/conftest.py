"""Shared test helpers: real binaries (fail in CI, skip elsewhere), free ports, the captured data in tests/data."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from optiinfra.demo.stack import free_port

__all__ = ["DATA", "REPO", "free_port", "parse_samples", "promtool_check_metrics", "require_binary"]

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data"
"""Captured engine payloads (``engines/``) and log excerpts (``logs/``), each folder with its PROVENANCE.md."""
IN_CI = os.environ.get("CI", "").lower() == "true"

# Under pytest-xdist (`make pytest` runs `-n 3`) each worker takes its own share of the free
# ports, child processes included, so two workers never start servers on the same port.
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if XDIST_WORKER:
    os.environ["OPTIINFRA_PORT_SLOT"] = f"{XDIST_WORKER.removeprefix('gw')}/{os.environ['PYTEST_XDIST_WORKER_COUNT']}"

#: Modules whose tests look for a stand-in engine process by name among all processes of the machine.
BY_PROCESS_NAME = frozenset({"tests/test_exporter_host.py"})


def _one_worker_modules(root: Path) -> frozenset[str]:
    """Modules whose tests run on one worker: those of BY_PROCESS_NAME (a stand-in of one worker would be seen by
    another's test) and those sharing a module-scoped fixture (e.g. one Prometheus, started once, not per worker)."""
    shared = {str(path.relative_to(root)) for path in (root / "tests").glob("test_*.py")
              if 'scope="module"' in path.read_text(encoding="utf-8")}
    return BY_PROCESS_NAME | shared


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """``-n N``: each test is its own unit of work (like ``--dist load``) except the modules of
    ``_one_worker_modules``, each one unit. (``--dist loadgroup`` cannot do this: pytest 9 ignores the node ids
    xdist rewrites for it.)"""
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    one_worker = _one_worker_modules(config.rootpath)
    config.option.loadscopereorder = False  # in collection order: the slow tests first

    class Scheduler(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return module if module in one_worker else nodeid

        def _reschedule(self, node: Any) -> None:
            """One unit queued behind the running one (not two): a long test never waits behind another on a
            busy worker while a worker is idle."""
            if not node.shutting_down and self.workqueue and self._pending_of(self.assigned_work[node]) > 1:
                return
            super()._reschedule(node)

    return Scheduler(config, log)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under xdist, end-to-end tests (marked ``slow``) first: the workers start the long waits early and none is
    left alone with one at the end."""
    if XDIST_WORKER:
        items.sort(key=lambda item: item.get_closest_marker("slow") is None)


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
