"""``optiinfra_build_info{version, python}``: one series every OptiInfra server exports on its ``/metrics``.

The labels come from here and the metric from the catalogue (``optiinfra.metrics``); the exporter writes it
through its own encoder (``labels()``), the receiver through prometheus_client (``register``).
"""

from __future__ import annotations

import platform
from functools import cache

from prometheus_client import CollectorRegistry, Gauge

from optiinfra import __version__
from optiinfra.metrics import SIDECAR_METRICS

BUILD_INFO = next(m for m in SIDECAR_METRICS if m.name == "optiinfra_build_info")


@cache
def labels() -> dict[str, str]:
    """The build's label values, in the catalogue's label order."""
    values = {"version": __version__, "python": platform.python_version()}
    return {name: values[name] for name in BUILD_INFO.labels}


def register(registry: CollectorRegistry) -> None:
    """Add ``optiinfra_build_info`` (value 1) to a prometheus_client registry."""
    Gauge(BUILD_INFO.name, BUILD_INFO.help, list(BUILD_INFO.labels), registry=registry).labels(**labels()).set(1)
